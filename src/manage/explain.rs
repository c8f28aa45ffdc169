//! `explain`: compute a command's key without running it, say hit or miss, and on a miss name
//! the most similar stored entry and exactly what differs.

use crate::clock::now_ms;
use crate::config::RunOptions;
use crate::key::KeyComponents;
use crate::paths::display_encoded;
use crate::store::index::Index;
use crate::store::manifest::Selection;
use crate::store::{Lookup, Store};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Difference {
    pub component: &'static str,
    /// The argument index, input path or env name concerned, if any.
    pub item: Option<String>,
    pub message: String,
}

#[derive(Serialize, Debug)]
pub struct Component {
    pub name: &'static str,
    pub digest: String,
}

#[derive(Serialize, Debug)]
pub struct Closest {
    pub key: String,
    pub command: String,
    pub namespace: String,
    pub created: String,
    pub differences: Vec<Difference>,
}

#[derive(Serialize, Debug)]
pub struct Explanation {
    pub key: String,
    pub command: String,
    pub hit: bool,
    /// `hit`, or why it is a miss.
    pub verdict: String,
    pub matched_rules: Vec<String>,
    pub components: Vec<Component>,
    pub key_components: KeyComponents,
    pub closest: Option<Closest>,
}

pub fn explain(
    store: Option<&Store>,
    idx: Option<&Index>,
    opts: &RunOptions,
    cwd: &Path,
) -> Result<Explanation> {
    // With --stdin, stdin is part of the key: hash it as `run` would (nothing runs here).
    let stdin = if opts.stdin {
        let mut hasher = blake3::Hasher::new();
        std::io::copy(&mut std::io::stdin().lock(), &mut hasher)?;
        Some(hasher.finalize().to_hex().to_string())
    } else {
        None
    };
    let now = crate::key::compute::compute_components(
        opts,
        cwd,
        &crate::store::StoreStatCaches(store),
        stdin,
    )?;
    let key = now.key();
    // `--trace auto`: the key names a manifest, whose matching candidate names the entry.
    let (entry, no_match) = match (now.traced, store) {
        (true, Some(s)) => match s.select(&key, cwd)? {
            Selection::Entry(e) => (Some(e), None),
            Selection::NoMatch(no) => (None, Some(no.why)),
            Selection::Missing => (None, None),
            Selection::Corrupt(e) => (
                None,
                Some(format!(
                    "the manifest was corrupt ({e}) and has been dropped"
                )),
            ),
        },
        _ => (Some(key.clone()), None),
    };
    let found = match (&entry, store) {
        (Some(e), Some(s)) => Some(s.lookup(e)?),
        _ => None,
    };
    let (hit, verdict) = match found {
        None if no_match.is_some() => (false, format!("miss: {}", no_match.unwrap_or_default())),
        None | Some(Lookup::Missing) => (false, "miss: no entry for this key".to_owned()),
        Some(Lookup::Corrupt(e)) => (
            false,
            format!("miss: the stored entry was corrupt ({e}) and has been dropped"),
        ),
        Some(Lookup::Found(d)) => {
            let age = now_ms().saturating_sub(d.record.created_ms);
            if let Some(why) = crate::run::policy::policy_miss(opts, &d.record) {
                (false, format!("miss: {why}"))
            } else if opts.stale.is_some_and(|s| age > s.as_millis() as u64) {
                (
                    true,
                    "hit (stale: a run would serve it and refresh it in the background)".to_owned(),
                )
            } else if now.traced {
                (
                    true,
                    format!("hit (entry {})", crate::ui::short(&d.record.key)),
                )
            } else {
                (true, "hit".to_owned())
            }
        }
    };
    // Only when nothing is stored under this key is another entry worth comparing with: an
    // entry refused by policy (ttl, stored failure) is explained by the verdict itself.
    let closest = match (verdict.starts_with("miss: no entry"), store, idx) {
        (true, Some(s), Some(i)) => closest(s, i, opts, &now, &key)?,
        _ => None,
    };
    Ok(Explanation {
        components: now
            .component_digests()
            .into_iter()
            .map(|(name, digest)| Component { name, digest })
            .collect(),
        key,
        command: opts.command_line.clone(),
        hit,
        verdict,
        matched_rules: opts.matched_rules.clone(),
        key_components: now,
        closest,
    })
}

/// The stored entry most like `now`: same command line first, else same program.
fn closest(
    store: &Store,
    idx: &Index,
    opts: &RunOptions,
    now: &KeyComponents,
    key: &str,
) -> Result<Option<Closest>> {
    let mut rows = idx.recent_with_command(&opts.command_line, key, 50)?;
    if rows.is_empty() {
        let program = opts.argv[0].to_string_lossy().into_owned();
        rows = idx.recent_with_program(&program, key, 50)?;
    }
    let mut best: Option<Closest> = None;
    for row in rows {
        let Ok(Lookup::Found(d)) = store.lookup(&row.key) else {
            continue;
        };
        let differences = diff(&d.record.components, now);
        if best
            .as_ref()
            .is_none_or(|b| differences.len() < b.differences.len())
        {
            best = Some(Closest {
                key: row.key,
                command: row.command,
                namespace: row.namespace,
                created: crate::ui::rfc3339(row.created_ms),
                differences,
            });
        }
    }
    Ok(best)
}

fn d(component: &'static str, item: Option<String>, message: String) -> Difference {
    Difference {
        component,
        item,
        message,
    }
}

fn shown(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|s| display_encoded(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Every difference between a stored entry's components and the current ones.
pub fn diff(stored: &KeyComponents, now: &KeyComponents) -> Vec<Difference> {
    let mut out = Vec::new();
    if stored.version != now.version {
        out.push(d(
            "version",
            None,
            format!(
                "stored with key format {}, now {}",
                stored.version, now.version
            ),
        ));
    }
    if stored.namespace != now.namespace {
        out.push(d(
            "namespace",
            None,
            format!(
                "namespace: stored `{}`, now `{}`",
                stored.namespace, now.namespace
            ),
        ));
    }
    if stored.salt != now.salt {
        out.push(d(
            "salt",
            None,
            format!("salt: stored {:?}, now {:?}", stored.salt, now.salt),
        ));
    }
    let n = stored.argv.len().max(now.argv.len());
    for i in 0..n {
        let (a, b) = (stored.argv.get(i), now.argv.get(i));
        if a != b {
            let show = |x: Option<&String>| {
                x.map(|s| format!("`{}`", display_encoded(s)))
                    .unwrap_or_else(|| "(none)".into())
            };
            out.push(d(
                "argv",
                Some(i.to_string()),
                format!("argument {i}: stored {}, now {}", show(a), show(b)),
            ));
        }
    }
    if stored.cwd != now.cwd {
        let show = |c: &Option<String>| {
            c.as_deref()
                .map(display_encoded)
                .unwrap_or_else(|| "(not keyed)".into())
        };
        out.push(d(
            "cwd",
            None,
            format!(
                "working directory: stored {}, now {} (--no-cwd shares entries across directories)",
                show(&stored.cwd),
                show(&now.cwd)
            ),
        ));
    }
    match (&stored.exe, &now.exe) {
        (Some(a), Some(b)) if a.check != b.check => out.push(d(
            "exe",
            None,
            format!(
                "exe_check: stored {}, now {}",
                a.check.as_str(),
                b.check.as_str()
            ),
        )),
        (Some(a), Some(b)) if a.digest != b.digest => out.push(d(
            "exe",
            Some(display_encoded(&b.path)),
            format!(
                "executable {} changed since the entry was stored",
                display_encoded(&b.path)
            ),
        )),
        (None, Some(b)) => out.push(d(
            "exe",
            None,
            format!("executable {} now exists", display_encoded(&b.path)),
        )),
        (Some(a), None) => out.push(d(
            "exe",
            None,
            format!("executable {} no longer found", display_encoded(&a.path)),
        )),
        _ => {}
    }
    if stored.env_patterns != now.env_patterns {
        out.push(d(
            "env",
            None,
            format!(
                "declared env: stored {}, now {}",
                shown(&stored.env_patterns),
                shown(&now.env_patterns)
            ),
        ));
    }
    let names: BTreeSet<&String> = stored.env.keys().chain(now.env.keys()).collect();
    for name in names {
        let (a, b) = (stored.env.get(name), now.env.get(name));
        let msg = match (a, b) {
            (Some(Some(x)), Some(Some(y))) if x != y => {
                format!("env {} changed", display_encoded(name))
            }
            (Some(None), Some(Some(_))) => {
                format!("env {} was unset, now set", display_encoded(name))
            }
            (Some(Some(_)), Some(None)) => {
                format!("env {} was set, now unset", display_encoded(name))
            }
            (None, Some(_)) => format!("env {} is newly matched", display_encoded(name)),
            (Some(_), None) => format!("env {} is no longer matched", display_encoded(name)),
            _ => continue,
        };
        out.push(d("env", Some(display_encoded(name)), msg));
    }
    if stored.input_patterns != now.input_patterns {
        out.push(d(
            "inputs",
            None,
            format!(
                "declared inputs: stored {}, now {}",
                shown(&stored.input_patterns),
                shown(&now.input_patterns)
            ),
        ));
    }
    let paths: BTreeSet<&String> = stored.inputs.keys().chain(now.inputs.keys()).collect();
    for p in paths {
        let shown_p = display_encoded(p);
        let msg = match (stored.inputs.get(p), now.inputs.get(p)) {
            (Some(a), Some(b)) if a.kind != b.kind => format!(
                "input {shown_p}: was {}, now {}",
                format!("{:?}", a.kind).to_lowercase(),
                format!("{:?}", b.kind).to_lowercase()
            ),
            (Some(a), Some(b)) if a.digest != b.digest => {
                format!("input {shown_p} changed (content differs)")
            }
            (Some(a), Some(b)) if a.exec != b.exec => {
                format!("input {shown_p}: execute bit changed")
            }
            (None, Some(_)) => format!("input {shown_p} added"),
            (Some(_), None) => format!("input {shown_p} removed"),
            _ => continue,
        };
        out.push(d("inputs", Some(shown_p), msg));
    }
    if stored.outputs != now.outputs {
        out.push(d(
            "outputs",
            None,
            format!(
                "declared outputs: stored {}, now {}",
                shown(&stored.outputs),
                shown(&now.outputs)
            ),
        ));
    }
    if stored.stdin != now.stdin {
        let msg = match (&stored.stdin, &now.stdin) {
            (Some(_), Some(_)) => "stdin content differs",
            (None, Some(_)) => "stdin is now keyed (--stdin)",
            _ => "stdin was keyed (--stdin), now it is not",
        };
        out.push(d("stdin", None, msg.into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{InputKind, InputState};

    #[test]
    fn names_changed_input_env_and_arg() {
        let base = crate::store::record::tests::sample().components;
        let mut a = base.clone();
        a.inputs.insert(
            "a.c".into(),
            InputState {
                kind: InputKind::File,
                exec: false,
                digest: "1".into(),
            },
        );
        a.env.insert("CC".into(), Some("x".into()));
        let mut b = a.clone();
        b.inputs.get_mut("a.c").unwrap().digest = "2".into();
        b.env.insert("CC".into(), Some("y".into()));
        b.argv[1] = "bye".into();
        let msgs: Vec<String> = diff(&a, &b).into_iter().map(|x| x.message).collect();
        assert_eq!(
            msgs,
            [
                "argument 1: stored `hi`, now `bye`",
                "env CC changed",
                "input a.c changed (content differs)"
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }
}
