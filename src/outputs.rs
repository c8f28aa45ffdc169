//! Output files: validated when declared, collected into the store after a successful run,
//! restored on a hit.
//!
//! Restoring is all-or-nothing: every file is first written (and its content verified) to a temp
//! file beside its destination, and only when all are ready are they renamed into place. A missing
//! or corrupt blob therefore leaves the working tree untouched and the hit becomes a miss.
//! Restored files get mtime = now, so make sees them as fresh.
//!
//! Safety (DESIGN.md invariant 3): paths are relative and free of `..`; no directory on the way to
//! a restored path may be a symlink leading outside the working directory; symlinks restored (or
//! stored) must point inside it.

use crate::error::usage;
use crate::paths::{check_inside, decode_os, encode_os};
use crate::store::Store;
use crate::store::record::{OutputEntry, OutputKind};
use anyhow::{Context, Result, anyhow, bail};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Check declared outputs before anything runs: absolute or `..` paths are usage errors.
pub fn validate_declared(declared: &[String]) -> Result<Vec<PathBuf>> {
    declared
        .iter()
        .map(|d| {
            check_inside(Path::new(d)).map_err(|why| {
                usage(format!(
                    "output `{d}` {why}; outputs must be relative paths inside the working directory (fix: run cachectl from a directory that contains the output)"
                ))
            })
        })
        .collect()
}

/// What collecting the declared outputs found.
pub enum Collected {
    Stored {
        entries: Vec<OutputEntry>,
        bytes: u64,
    },
    /// A declared output the command did not produce (or one that may not be stored), and why.
    Uncacheable(String),
}

/// Store every declared output's content in the CAS and describe it.
pub fn collect(store: &Store, cwd: &Path, declared: &[PathBuf], level: i32) -> Result<Collected> {
    let mut entries = Vec::new();
    let mut bytes = 0u64;
    for rel in declared {
        let abs = cwd.join(rel);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Collected::Uncacheable(format!(
                    "declared output {} was not produced",
                    rel.display()
                )));
            }
            Err(e) => return Err(e).with_context(|| format!("reading output {}", abs.display())),
        };
        if meta.is_dir() {
            for entry in walkdir::WalkDir::new(&abs).follow_links(false) {
                let entry = entry.with_context(|| format!("walking output {}", abs.display()))?;
                let sub = entry.path().strip_prefix(&abs).unwrap_or(entry.path());
                let path = if sub.as_os_str().is_empty() {
                    rel.clone()
                } else {
                    rel.join(sub)
                };
                let m = entry.path().symlink_metadata()?;
                match describe(store, cwd, &path, &m, level)? {
                    Ok((e, b)) => {
                        bytes += b;
                        entries.push(e);
                    }
                    Err(why) => return Ok(Collected::Uncacheable(why)),
                }
            }
        } else {
            match describe(store, cwd, rel, &meta, level)? {
                Ok((e, b)) => {
                    bytes += b;
                    entries.push(e);
                }
                Err(why) => return Ok(Collected::Uncacheable(why)),
            }
        }
    }
    Ok(Collected::Stored { entries, bytes })
}

type Described = std::result::Result<(OutputEntry, u64), String>;

fn describe(
    store: &Store,
    cwd: &Path,
    rel: &Path,
    meta: &fs::Metadata,
    level: i32,
) -> Result<Described> {
    let abs = cwd.join(rel);
    let path = encode_os(rel.as_os_str());
    let mode = meta.mode() & 0o7777;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(&abs)?;
        if !symlink_stays_inside(rel, &target) {
            return Ok(Err(format!(
                "output symlink {} points outside the working directory",
                rel.display()
            )));
        }
        return Ok(Ok((
            OutputEntry {
                path,
                kind: OutputKind::Symlink,
                mode: 0,
                digest: String::new(),
                size: 0,
                target: encode_os(target.as_os_str()),
            },
            0,
        )));
    }
    if ft.is_dir() {
        return Ok(Ok((
            OutputEntry {
                path,
                kind: OutputKind::Dir,
                mode,
                digest: String::new(),
                size: 0,
                target: String::new(),
            },
            0,
        )));
    }
    if !ft.is_file() {
        return Ok(Err(format!(
            "output {} is not a regular file",
            rel.display()
        )));
    }
    let mut f = File::open(&abs).with_context(|| format!("reading output {}", abs.display()))?;
    let put = store
        .cas
        .put_reader(&store.tmp, &mut f, level)
        .with_context(|| format!("storing output {}", abs.display()))?;
    Ok(Ok((
        OutputEntry {
            path,
            kind: OutputKind::File,
            mode,
            digest: put.digest,
            size: put.size,
            target: String::new(),
        },
        put.stored_bytes,
    )))
}

/// A link at `link` (relative to the working directory) with text `target` resolves inside it.
fn symlink_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = 0;
    let parent = link.parent().unwrap_or(Path::new(""));
    for c in parent.components().chain(target.components()) {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::CurDir => {}
            _ => return false,
        }
    }
    true
}

/// Make sure every directory leading to `rel` (exclusive) exists inside `cwd`, refusing any that
/// is a symlink resolving outside it.
fn safe_parent(cwd: &Path, cwd_canon: &Path, rel: &Path) -> Result<PathBuf> {
    let mut cur = cwd.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c.as_os_str());
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    let real = fs::canonicalize(&cur)
                        .with_context(|| format!("resolving {}", cur.display()))?;
                    if !real.starts_with(cwd_canon) || !real.is_dir() {
                        bail!(
                            "refusing to restore through {}: it leads outside the working directory",
                            cur.display()
                        );
                    }
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => bail!(
                    "cannot restore into {}: it is not a directory",
                    cur.display()
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).with_context(|| format!("creating {}", cur.display()))?;
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", cur.display())),
            }
        }
    }
    Ok(cur)
}

/// Temp files written so far; removed unless committed.
struct Staged(Vec<(PathBuf, PathBuf)>);

impl Drop for Staged {
    fn drop(&mut self) {
        for (tmp, _) in &self.0 {
            let _ = fs::remove_file(tmp);
        }
    }
}

fn staging_name(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!(".cachectl-restore.{}.{n}", std::process::id()))
}

/// Restore `entries` under `cwd`, all or nothing.
pub fn restore(store: &Store, cwd: &Path, entries: &[OutputEntry]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let cwd_canon = fs::canonicalize(cwd).context("resolving the working directory")?;
    let mut staged = Staged(Vec::new());
    let mut dirs = Vec::new();
    for (n, e) in entries.iter().enumerate() {
        let rel = check_inside(Path::new(&decode_os(&e.path)))
            .map_err(|why| anyhow!("refusing stored output `{}`: it {why}", e.path))?;
        let parent = safe_parent(cwd, &cwd_canon, &rel)?;
        let dest = cwd.join(&rel);
        match e.kind {
            OutputKind::Dir => {
                if rel != Path::new(".") {
                    match fs::symlink_metadata(&dest) {
                        Ok(m) if m.is_dir() => {}
                        Ok(_) => bail!(
                            "cannot restore directory {}: something else is there",
                            dest.display()
                        ),
                        Err(_) => fs::create_dir(&dest)
                            .with_context(|| format!("creating {}", dest.display()))?,
                    }
                }
                dirs.push((dest, e.mode));
            }
            OutputKind::File => {
                let tmp = staging_name(&parent, n);
                let mut reader = store.cas.open_verified(&e.digest)?;
                let mut f = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                staged.0.push((tmp.clone(), dest));
                io::copy(&mut reader, &mut f).with_context(|| format!("restoring {}", e.path))?;
                f.set_permissions(fs::Permissions::from_mode(e.mode & 0o7777))?;
            }
            OutputKind::Symlink => {
                let target = PathBuf::from(decode_os(&e.target));
                if !symlink_stays_inside(&rel, &target) {
                    bail!(
                        "refusing stored symlink {}: it points outside the working directory",
                        rel.display()
                    );
                }
                let tmp = staging_name(&parent, n);
                std::os::unix::fs::symlink(&target, &tmp)?;
                staged.0.push((tmp, dest));
            }
        }
    }
    for (tmp, dest) in std::mem::take(&mut staged.0) {
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("restoring {}", dest.display()));
        }
    }
    for (dir, mode) in dirs {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(mode & 0o7777));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_escape_rules() {
        assert!(symlink_stays_inside(
            Path::new("out/link"),
            Path::new("a.txt")
        ));
        assert!(symlink_stays_inside(
            Path::new("out/link"),
            Path::new("../b.txt")
        ));
        assert!(!symlink_stays_inside(
            Path::new("out/link"),
            Path::new("../../b.txt")
        ));
        assert!(!symlink_stays_inside(
            Path::new("link"),
            Path::new("/etc/passwd")
        ));
    }

    #[test]
    fn declared_outputs_must_stay_inside() {
        assert!(validate_declared(&["../x".into()]).is_err());
        assert!(validate_declared(&["/abs".into()]).is_err());
        assert!(validate_declared(&["out/a.o".into(), "./b".into()]).is_ok());
    }
}
