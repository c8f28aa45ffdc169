//! `cachectl show`.

use crate::cli::ShowArgs;
use crate::config::Source;
use crate::error::usage;
use crate::key::observed::{Seen, SeenKind};
use crate::paths::display_encoded;
use crate::store::record::{Decoded, OutputKind};
use crate::store::{Lookup, Store};
use crate::ui;
use anyhow::{Result, bail};
use std::io::Write;
use std::path::PathBuf;

/// The one key starting with `prefix`.
fn resolve(store: &Store, prefix: &str) -> Result<String> {
    let prefix = prefix.to_ascii_lowercase();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(usage(format!(
            "`{prefix}` is not a key prefix (hex digits, as `cachectl ls` shows)"
        )));
    }
    let mut found = store.keys_with_prefix(&prefix)?;
    match found.len() {
        0 => bail!("no entry whose key starts with {prefix} (see `cachectl ls`)"),
        1 => Ok(found.remove(0)),
        n => Err(usage(format!(
            "key prefix {prefix} is ambiguous ({n} entries: {}...); give more characters",
            found
                .iter()
                .take(4)
                .map(|k| ui::short(k))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

pub fn run(dir: Option<(PathBuf, Source)>, args: &ShowArgs) -> Result<i32> {
    let (_, cfg) = super::load(dir)?;
    let (store, idx) = crate::manage::open(cfg.dir.value)?;
    let key = resolve(&store, &args.key)?;
    let d = match store.lookup(&key)? {
        Lookup::Found(d) => d,
        Lookup::Missing => bail!("entry {key} disappeared"),
        Lookup::Corrupt(e) => bail!("entry {key} is corrupt ({e}) and has been removed"),
    };
    if args.stdout || args.stderr {
        let (inline, blob) = if args.stdout {
            (&d.inline_stdout, &d.record.stdout.blob)
        } else {
            (&d.inline_stderr, &d.record.stderr.blob)
        };
        let mut out = std::io::stdout().lock();
        match blob {
            None => out.write_all(inline)?,
            Some(digest) => {
                std::io::copy(&mut store.cas.open_verified(digest)?, &mut out)?;
            }
        }
        out.flush()?;
        return Ok(0);
    }
    if args.json {
        ui::print_json(&d.record)?;
        return Ok(0);
    }
    let usage_row = idx.entry(&key)?;
    describe(&d, usage_row.as_ref());
    Ok(0)
}

fn describe(d: &Decoded, usage_row: Option<&crate::store::index::EntryRow>) {
    let r = &d.record;
    let c = &r.components;
    println!("Key         {}", r.key);
    println!("Command     {}", r.command);
    let keyed = if c.cwd.is_some() {
        "keyed"
    } else {
        "not keyed"
    };
    println!("Cwd         {} ({keyed})", display_encoded(&r.cwd));
    println!("Namespace   {}", r.namespace);
    if !r.tags.is_empty() {
        println!("Tags        {}", r.tags.join(", "));
    }
    println!(
        "Created     {} ({})",
        ui::rfc3339(r.created_ms),
        ui::ago(r.created_ms)
    );
    println!("Duration    {}", ui::duration_ms(r.duration_ms));
    println!("Exit code   {}", r.exit_code);
    if let Some(u) = usage_row {
        println!(
            "Hits        {} (last used {})",
            u.hits,
            ui::ago(u.last_used_ms)
        );
    }
    if let Some(e) = &c.exe {
        println!(
            "Executable  {} ({})",
            display_encoded(&e.path),
            e.check.as_str()
        );
    }
    if !c.env.is_empty() {
        let names: Vec<String> = c
            .env
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}{}",
                    display_encoded(k),
                    if v.is_none() { " (unset)" } else { "" }
                )
            })
            .collect();
        println!("Env         {}", names.join(", "));
    }
    let stream = |s: &crate::store::record::StreamRef| match &s.blob {
        None => format!("{} (inline)", ui::size(s.size)),
        Some(b) => format!("{} (blob {})", ui::size(s.size), ui::short(b)),
    };
    println!("Stdout      {}", stream(&r.stdout));
    println!("Stderr      {}", stream(&r.stderr));
    if !c.inputs.is_empty() {
        let mut t = ui::table(&["Input", "Kind", "Digest"]);
        for (p, st) in &c.inputs {
            t.add_row(vec![
                display_encoded(p),
                format!("{:?}{}", st.kind, if st.exec { " +x" } else { "" }).to_lowercase(),
                ui::short(&st.digest).to_owned(),
            ]);
        }
        println!("{t}");
    }
    if !r.outputs.is_empty() {
        let mut t = ui::table(&["Output", "Kind", "Mode", "Size", "Digest"]);
        for o in &r.outputs {
            let kind = match o.kind {
                OutputKind::File => "file".to_owned(),
                OutputKind::Dir => "dir".to_owned(),
                OutputKind::Symlink => format!("symlink → {}", display_encoded(&o.target)),
            };
            t.add_row(vec![
                display_encoded(&o.path),
                kind,
                format!("{:o}", o.mode),
                ui::size(o.size),
                ui::short(&o.digest).to_owned(),
            ]);
        }
        println!("{t}");
    }
    if let Some(observed) = &c.observed {
        println!(
            "Traced      {} observed input(s) (--trace auto)",
            observed.len()
        );
        if !observed.is_empty() {
            let mut t = ui::table(&["Observed input", "Kind", "Keyed by"]);
            for (p, seen) in observed {
                t.add_row(vec![display_encoded(p), kind_of(seen), keyed_by(seen)]);
            }
            println!("{t}");
        }
    }
    if !r.side_effects.is_empty() {
        println!(
            "Side effects (written outside the working directory; a hit does not write them):"
        );
        for p in &r.side_effects {
            println!("  {}", display_encoded(p));
        }
    }
    if !r.peers.is_empty() {
        println!("Talked to (outside the command; its answers are not keyed):");
        for p in &r.peers {
            println!("  {p}");
        }
    }
}

fn kind_of(seen: &Seen) -> String {
    let mut kind = seen.kind.as_str().to_owned();
    if seen.exec {
        kind.push_str(" +x");
    }
    if let Some(link) = &seen.link {
        kind = format!("symlink → {} ({kind})", display_encoded(link));
    }
    kind
}

/// What of the path the key holds.
fn keyed_by(seen: &Seen) -> String {
    if let Some(d) = &seen.content {
        return format!("content {}", ui::short(d));
    }
    if let Some(s) = &seen.stamp {
        return format!(
            "size {} and mtime {}",
            s.size,
            ui::rfc3339((s.mtime_s.max(0) as u64) * 1000 + u64::from(s.mtime_ns) / 1_000_000)
        );
    }
    if let Some(l) = &seen.listing {
        let left_out = if seen.unlisted.is_empty() {
            String::new()
        } else {
            format!(" (without its {} output(s))", seen.unlisted.len())
        };
        return format!("entries {}{left_out}", ui::short(l));
    }
    match seen.kind {
        SeenKind::Absent => "absence".to_owned(),
        _ => "kind".to_owned(),
    }
}
