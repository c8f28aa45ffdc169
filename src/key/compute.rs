//! Computing a run's key components: the executable, declared env vars and inputs, the rest of
//! the command line as resolved by `config`. Also the check, after a run, that the inputs are
//! still what the key says.

use super::inputs::StatCacheDir;
use super::{ExeCheck, ExeIdentity, KEY_VERSION, KeyComponents};
use crate::config::RunOptions;
use crate::paths::{decode_os, display_encoded, encode_os, resolve_lexically};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Resolve the program as `execvp` would: a path with `/` relative to `cwd`, else through PATH.
pub fn resolve_exe(program: &OsString, cwd: &Path) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.as_bytes().contains(&b'/') {
        let p = cwd.join(crate::paths::normalize(Path::new(program)));
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                cwd.join(program)
            } else {
                cwd.join(dir).join(program)
            }
        })
        .find(|p| is_exec(p))
}

/// Sorted and deduplicated.
fn canonical(items: impl Iterator<Item = String>) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = items.collect();
    set.into_iter().collect()
}

/// Every component of the key for this run.
pub fn compute_components(
    opts: &RunOptions,
    cwd: &Path,
    caches: &dyn StatCacheDir,
    stdin: Option<String>,
) -> Result<KeyComponents> {
    let exe = match resolve_exe(&opts.argv[0], cwd) {
        None => None,
        Some(path) => {
            let shown = encode_os(path.as_os_str());
            let digest = match opts.exe_check {
                ExeCheck::Content => {
                    let id = blake3::hash(path.as_os_str().as_bytes())
                        .to_hex()
                        .to_string();
                    super::inputs::digest_with_cache(&path, &id, caches)?
                }
                ExeCheck::Mtime => {
                    let m = std::fs::metadata(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let stamp = format!("{shown}\0{}\0{}.{}", m.size(), m.mtime(), m.mtime_nsec());
                    blake3::hash(stamp.as_bytes()).to_hex().to_string()
                }
                ExeCheck::None => String::new(),
            };
            Some(ExeIdentity {
                path: shown,
                check: opts.exe_check,
                digest,
            })
        }
    };
    let mut env = BTreeMap::new();
    for pattern in &opts.env {
        if pattern.contains(['*', '?', '[']) {
            let glob = globset::Glob::new(pattern)
                .with_context(|| format!("invalid env glob `{pattern}`"))?
                .compile_matcher();
            for (name, value) in std::env::vars_os() {
                if glob.is_match(name.to_string_lossy().as_ref()) {
                    env.insert(
                        encode_os(&name),
                        Some(blake3::hash(value.as_bytes()).to_hex().to_string()),
                    );
                }
            }
        } else {
            let value =
                std::env::var_os(pattern).map(|v| blake3::hash(v.as_bytes()).to_hex().to_string());
            env.insert(pattern.clone(), value);
        }
    }
    // Declared lists are keyed as sets: `-i b -i a`, `-i a -i b` and `-i ./a -i b` are alike.
    let input_patterns = canonical(opts.inputs.iter().map(|p| {
        let n = crate::paths::normalize(Path::new(&crate::paths::decode_os(p)));
        encode_os(n.as_os_str())
    }));
    let inputs = super::inputs::collect(cwd, &input_patterns, caches)?;
    Ok(KeyComponents {
        version: KEY_VERSION,
        namespace: opts.namespace.clone(),
        salt: opts.salt.clone(),
        argv: opts.argv.iter().map(|a| encode_os(a)).collect(),
        cwd: opts.key_cwd.then(|| encode_os(cwd.as_os_str())),
        exe,
        env_patterns: canonical(opts.env.iter().cloned()),
        env,
        input_patterns,
        inputs,
        outputs: canonical(opts.outputs.iter().map(|o| encode_os(o.as_os_str()))),
        stdin,
        traced: opts.trace == crate::cli::TraceMode::Auto,
        observed: None,
    })
}

/// What of the key's inputs changed while the command ran (`input a.c`, `the executable`), if
/// anything did. The result may then come from the new content, and storing it under the key of
/// the old content would serve it to a later run that sees the old content: a wrong hit. The
/// inputs are keyed again, through the stat cache: files with unchanged stat fields are not read
/// again, files modified within its racy window are.
///
/// `restored` are the declared outputs the entry will restore (none unless the run exited 0).
/// Inputs under them are written by design (`-i . -o build`, or `-i f -o f` for a command that
/// rewrites `f`): a hit restores them, so the state they are left in is the one the entry
/// reproduces.
pub fn changed_input(
    opts: &RunOptions,
    cwd: &Path,
    caches: &dyn StatCacheDir,
    before: &KeyComponents,
    restored: &[PathBuf],
) -> Option<String> {
    let after = match compute_components(opts, cwd, caches, before.stdin.clone()) {
        Ok(after) => after,
        Err(e) => return Some(format!("an input ({e:#})")),
    };
    if after.exe != before.exe {
        return Some("the executable".to_owned());
    }
    if after.inputs == before.inputs {
        return None;
    }
    let exempt = exempt_dirs(cwd, restored);
    let watched = |path: &String| {
        let p = resolve_lexically(&cwd.join(decode_os(path)));
        !exempt.iter().any(|o| p.starts_with(o))
    };
    let changed = after
        .inputs
        .iter()
        .filter(|(p, _)| watched(p))
        .find(|(p, state)| before.inputs.get(*p) != Some(*state))
        .or_else(|| {
            before
                .inputs
                .iter()
                .filter(|(p, _)| watched(p))
                .find(|(p, _)| !after.inputs.contains_key(*p))
        })?;
    Some(format!("input {}", display_encoded(changed.0)))
}

/// The absolute paths of the outputs whose inputs are exempt: only an output reached without a
/// symlink on the way (inputs are compared by path, and a restore follows no link), and not the
/// working directory itself (`-o .`), whose exemption would cover every input.
fn exempt_dirs(cwd: &Path, outputs: &[PathBuf]) -> Vec<PathBuf> {
    let root = resolve_lexically(cwd);
    outputs
        .iter()
        .map(|o| resolve_lexically(&cwd.join(o)))
        .filter(|abs| *abs != root && abs.starts_with(&root))
        .filter(|abs| {
            let mut p = root.clone();
            abs.strip_prefix(&root).is_ok_and(|rel| {
                rel.components().all(|c| {
                    p.push(c);
                    !std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink())
                })
            })
        })
        .collect()
}
