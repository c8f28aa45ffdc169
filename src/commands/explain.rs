//! `cachectl explain`: exit 0 whether hit or miss; 2 on usage errors.

use crate::cli::ExplainArgs;
use crate::config::{RunOptions, Source};
use crate::store::Store;
use crate::store::index::Index;
use crate::ui;
use anyhow::Result;
use std::path::PathBuf;

pub fn run(dir: Option<(PathBuf, Source)>, args: &ExplainArgs) -> Result<i32> {
    let (cwd, cfg) = super::load(dir)?;
    let opts = RunOptions::resolve(&args.run, &cfg)?;
    // An empty machine has no cache yet: explain without creating one.
    let (store, idx) = match cfg.dir.value.clone() {
        Some(root) if crate::store::layout::Item::CachedirTag.path(&root).exists() => {
            let (s, i) = crate::manage::open(Some(root))?;
            (Some(s), Some(i))
        }
        Some(root) => (Some(Store::at(root)), None::<Index>),
        None => (None, None),
    };
    let e = crate::manage::explain::explain(store.as_ref(), idx.as_ref(), &opts, &cwd)?;
    if args.json {
        ui::print_json(&e)?;
        return Ok(0);
    }
    println!("Command: {}", e.command);
    println!("Key:     {}", e.key);
    println!("Result:  {}", e.verdict);
    for r in &e.matched_rules {
        println!("Rule:    {r}");
    }
    println!("Components:");
    for line in crate::key::describe::describe_components(&e.key_components, &e.command) {
        println!("{line}");
    }
    match &e.closest {
        Some(c) => {
            let same = if c.command == e.command {
                "same command"
            } else {
                "same program"
            };
            println!(
                "\nMost similar stored entry: {} ({same}, namespace {}, created {})",
                ui::short(&c.key),
                c.namespace,
                c.created
            );
            if c.differences.is_empty() {
                println!(
                    "  (no difference in the key components: the entry was stored under another key format)"
                );
            }
            for d in &c.differences {
                println!("  - {}", d.message);
            }
        }
        None if !e.hit => {
            println!("\nNo stored entry for this command or program to compare with.")
        }
        None => {}
    }
    Ok(0)
}
