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

use crate::paths::{check_inside, decode_os, encode_os};
use crate::store::Store;
use crate::store::cas::BlobError;
use crate::store::record::{OutputEntry, OutputKind};
use anyhow::{Context, Result, anyhow};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What collecting the declared outputs found.
pub enum Collected {
    Stored {
        entries: Vec<OutputEntry>,
        bytes: u64,
    },
    /// A declared output the command did not produce (or one that may not be stored), and why.
    Uncacheable(String),
}

/// Store every declared output's content in the CAS and describe it (directories with all
/// they hold).
pub fn collect(store: &Store, cwd: &Path, declared: &[PathBuf], level: i32) -> Result<Collected> {
    gather(store, cwd, declared, level, true)
}

/// Store the outputs a traced run was seen to write, each path alone: a directory it created
/// is restored as a directory, not with everything it holds (the files the run wrote in it
/// are listed themselves).
pub fn collect_observed(
    store: &Store,
    cwd: &Path,
    written: &[PathBuf],
    level: i32,
) -> Result<Collected> {
    gather(store, cwd, written, level, false)
}

fn gather(
    store: &Store,
    cwd: &Path,
    declared: &[PathBuf],
    level: i32,
    walk: bool,
) -> Result<Collected> {
    let mut entries = Vec::new();
    let mut bytes = 0u64;
    let cwd_canon = fs::canonicalize(cwd).context("resolving the working directory")?;
    for rel in declared {
        let abs = cwd.join(rel);
        // Reached through a symlinked directory leading outside? Then it is not ours to store
        // (and could never be restored: restore refuses such paths).
        if let Some(parent) = abs.parent()
            && let Ok(real) = fs::canonicalize(parent)
            && !real.starts_with(&cwd_canon)
        {
            return Ok(Collected::Uncacheable(format!(
                "declared output {} is reached through a symlink leading outside the working directory",
                rel.display()
            )));
        }
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
        if meta.is_dir() && walk {
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
        if !symlink_stays_inside(cwd, rel, &target) {
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

/// A link at `link` (relative to `cwd`) with text `target` resolves inside `cwd`. Checked
/// against the real working directory, at store and again at restore time: a link that stays
/// inside one checkout may escape another.
fn symlink_stays_inside(cwd: &Path, link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let parent = link.parent().unwrap_or(Path::new(""));
    let resolved = crate::paths::resolve_lexically(&cwd.join(parent).join(target));
    resolved.starts_with(crate::paths::resolve_lexically(cwd))
}

/// Make sure every directory leading to `rel` (exclusive) exists inside `cwd`, refusing any that
/// is a symlink resolving outside it.
fn safe_parent(
    cwd: &Path,
    cwd_canon: &Path,
    rel: &Path,
    created: &mut Vec<PathBuf>,
) -> Result<PathBuf, RestoreError> {
    let mut cur = cwd.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c.as_os_str());
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    let real = fs::canonicalize(&cur)
                        .with_context(|| format!("resolving {}", cur.display()))?;
                    // The link is the working tree's, not the entry's (a stored link is
                    // staged under a temp name until commit, never passed through): the
                    // tree is in the way, the entry is fine.
                    if !real.starts_with(cwd_canon) || !real.is_dir() {
                        return Err(RestoreError::Conflict(anyhow!(
                            "refusing to restore through {}: it leads outside the working directory",
                            cur.display()
                        )));
                    }
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(RestoreError::Conflict(anyhow!(
                        "cannot restore into {}: it is not a directory",
                        cur.display()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).with_context(|| format!("creating {}", cur.display()))?;
                    created.push(cur.clone());
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e)
                        .context(format!("reading {}", cur.display()))
                        .into());
                }
            }
        }
    }
    Ok(cur)
}

/// Why outputs could not be restored; the caller decides whether the entry survives.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A blob is missing or corrupt: the entry is unusable.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The record names a path or link that would escape the working directory.
    #[error("{0}")]
    Refused(String),
    /// The working tree is in the way (a file where a directory goes, permissions, a full
    /// disk): the entry is fine, this restore is not possible. Run the command instead.
    #[error("{0:#}")]
    Conflict(anyhow::Error),
}

impl From<anyhow::Error> for RestoreError {
    fn from(e: anyhow::Error) -> Self {
        RestoreError::Conflict(e)
    }
}

impl From<io::Error> for RestoreError {
    fn from(e: io::Error) -> Self {
        RestoreError::Conflict(e.into())
    }
}

/// Temp files written and directories created so far; removed unless committed, so a failed
/// restore leaves the tree as it found it (directories only if still empty).
struct Staged {
    files: Vec<(PathBuf, PathBuf)>,
    created_dirs: Vec<PathBuf>,
    /// Files already in place with the stored content: only their mode and mtime are set,
    /// on commit.
    in_place: Vec<(PathBuf, u32)>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (tmp, _) in &self.files {
            let _ = fs::remove_file(tmp);
        }
        for d in self.created_dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// Whether `path` is a regular file (not a symlink) holding exactly the content `digest`.
///
/// A hit whose outputs are already in place (a rebuild after `touch`, a second `make` of a
/// target that did not change) then rewrites nothing. Besides the copy, that avoids renaming
/// over an existing file, which ext4 turns into an immediate flush of the new data
/// (`auto_da_alloc`): half a millisecond for a 15 KB object file.
fn holds_content(path: &Path, size: u64, digest: &str) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.file_type().is_file() || meta.len() != size {
        return false;
    }
    let Ok(mut file) = File::open(path) else {
        return false;
    };
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; (size as usize).clamp(1, 1 << 20)];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    hasher.finalize().to_hex().as_str() == digest
}

fn staging_name(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!(".cachectl-restore.{}.{n}", std::process::id()))
}

/// Restore `entries` under `cwd`, all or nothing.
pub fn restore(store: &Store, cwd: &Path, entries: &[OutputEntry]) -> Result<(), RestoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let cwd_canon = fs::canonicalize(cwd).context("resolving the working directory")?;
    let mut staged = Staged {
        files: Vec::new(),
        created_dirs: Vec::new(),
        in_place: Vec::new(),
    };
    let mut dirs = Vec::new();
    for (n, e) in entries.iter().enumerate() {
        let rel = check_inside(Path::new(&decode_os(&e.path))).map_err(|why| {
            RestoreError::Refused(format!("refusing stored output `{}`: it {why}", e.path))
        })?;
        let parent = safe_parent(cwd, &cwd_canon, &rel, &mut staged.created_dirs)?;
        let dest = cwd.join(&rel);
        match e.kind {
            OutputKind::Dir => {
                if rel != Path::new(".") {
                    match fs::symlink_metadata(&dest) {
                        Ok(m) if m.is_dir() => {}
                        Ok(_) => {
                            return Err(RestoreError::Conflict(anyhow!(
                                "cannot restore directory {}: something else is there",
                                dest.display()
                            )));
                        }
                        Err(_) => {
                            fs::create_dir(&dest)
                                .with_context(|| format!("creating {}", dest.display()))?;
                            staged.created_dirs.push(dest.clone());
                        }
                    }
                }
                dirs.push((dest, e.mode));
            }
            OutputKind::File => {
                if holds_content(&dest, e.size, &e.digest) {
                    staged.in_place.push((dest, e.mode));
                    continue;
                }
                let tmp = staging_name(&parent, n);
                let mut reader = store.cas.open_verified(&e.digest)?;
                let mut f = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?;
                staged.files.push((tmp.clone(), dest));
                if let Err(err) = reader.copy_to_file(&mut f) {
                    if let Some(blob) = err.get_ref().and_then(|i| i.downcast_ref::<BlobError>()) {
                        return Err(RestoreError::Blob(match blob {
                            BlobError::Corrupt(d) => BlobError::Corrupt(d.clone()),
                            BlobError::Missing(d) => BlobError::Missing(d.clone()),
                            BlobError::Io(_) => BlobError::Corrupt(e.digest.clone()),
                        }));
                    }
                    return Err(anyhow::Error::from(err)
                        .context(format!("restoring {}", e.path))
                        .into());
                }
                f.set_permissions(fs::Permissions::from_mode(e.mode & 0o7777))?;
            }
            OutputKind::Symlink => {
                let target = PathBuf::from(decode_os(&e.target));
                if !symlink_stays_inside(cwd, &rel, &target) {
                    return Err(RestoreError::Refused(format!(
                        "refusing stored symlink {}: it points outside the working directory",
                        rel.display()
                    )));
                }
                let tmp = staging_name(&parent, n);
                std::os::unix::fs::symlink(&target, &tmp)?;
                staged.files.push((tmp, dest));
            }
        }
    }
    for (tmp, dest) in std::mem::take(&mut staged.files) {
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(anyhow::Error::from(e)
                .context(format!("restoring {}", dest.display()))
                .into());
        }
    }
    for (dest, mode) in std::mem::take(&mut staged.in_place) {
        let current =
            fs::symlink_metadata(&dest).with_context(|| format!("restoring {}", dest.display()))?;
        if current.permissions().mode() & 0o7777 != mode & 0o7777 {
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode & 0o7777))
                .with_context(|| format!("restoring {}", dest.display()))?;
        }
        // As if just written: build tools compare mtimes.
        crate::store::cas::touch(&dest);
    }
    staged.created_dirs.clear();
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
        let cwd = Path::new("/w/out");
        let inside = |link: &str, target: &str| {
            symlink_stays_inside(cwd, Path::new(link), Path::new(target))
        };
        assert!(inside("d/link", "a.txt"));
        assert!(inside("d/link", "../b.txt"));
        assert!(!inside("d/link", "../../b.txt"));
        assert!(!inside("link", "/etc/passwd"));
        // Leaves and re-enters the working directory: inside.
        assert!(inside("link", "../out/build.sh"));
        assert!(!inside("link", "../outside"));
    }

    #[test]
    fn declared_outputs_must_stay_inside() {
        assert!(crate::config::validate_declared(&["../x".into()]).is_err());
        assert!(crate::config::validate_declared(&["/abs".into()]).is_err());
        assert!(crate::config::validate_declared(&["out/a.o".into(), "./b".into()]).is_ok());
    }
}
