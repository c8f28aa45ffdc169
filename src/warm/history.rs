//! `warm --from-history`: the commands used most recently, re-keyed with today's inputs.
//!
//! Usage (hits + misses per command line and namespace) comes from the index. For each of the top
//! commands, the newest stored entry supplies the options it was run with: its argv, working
//! directory, declared inputs, outputs and env, namespace, salt, tags, whether the cwd was keyed,
//! and whether it stored a failure. Commands keyed on stdin cannot be replayed and are skipped.
//! Their misses start longest first (by the stored run's duration: what one hit saves).

use super::manifest::{Configs, WarmCommand};
use crate::cli::RunArgs;
use crate::clock::{HOUR_MS, now_ms};
use crate::config::RunOptions;
use crate::paths::decode_os;
use crate::store::index::Index;
use crate::store::{Lookup, Store};
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

pub fn commands(
    store: &Store,
    idx: &Index,
    top: usize,
    since: Option<Duration>,
    configs: &mut Configs,
) -> Result<Vec<WarmCommand>> {
    let from_hour = since
        .map(|s| now_ms().saturating_sub(s.as_millis() as u64) / HOUR_MS)
        .unwrap_or(0) as i64;
    let used = idx.most_used(from_hour, top)?;
    let mut out = Vec::new();
    for (command, namespace) in used {
        let Some(row) = idx.newest_entry(&command, &namespace)? else {
            continue;
        };
        let Ok(Lookup::Found(d)) = store.lookup(&row.key) else {
            continue;
        };
        let rec = &d.record;
        let c = &rec.components;
        if c.stdin.is_some() {
            continue;
        }
        let cwd = PathBuf::from(decode_os(&rec.cwd));
        if !cwd.is_dir() {
            continue;
        }
        let args = RunArgs {
            inputs: c.input_patterns.clone(),
            outputs: c
                .outputs
                .iter()
                .map(|o| decode_os(o).to_string_lossy().into_owned())
                .collect(),
            env: c.env_patterns.clone(),
            tags: rec.tags.clone(),
            namespace: Some(c.namespace.clone()),
            salt: (!c.salt.is_empty()).then(|| c.salt.clone()),
            cache_failures: rec.exit_code != 0,
            no_cwd: c.cwd.is_none(),
            command: c.argv.iter().map(|a| decode_os(a)).collect(),
            ..Default::default()
        };
        let cfg = configs.for_cwd(&cwd)?;
        let Ok(args) = args.reparse() else { continue };
        let Ok(opts) = RunOptions::resolve(&args, cfg) else {
            continue;
        };
        out.push(WarmCommand {
            cwd,
            args,
            opts,
            origin: format!("history ({command})"),
            // The history comes from this cache; its commands are warmed into it.
            root: store.root.clone(),
            // The longest runs start first: they save the most when they hit.
            priority: row.duration_ms.min(i64::MAX as u64) as i64,
        });
    }
    Ok(out)
}
