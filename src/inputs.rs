//! Declared inputs → their key state: walking directories, expanding globs, hashing contents.
//!
//! Each declared pattern is either a literal path (a file, a directory walked recursively, or a
//! missing path keyed as absent) or a glob (`*.h`, `src/**/*.rs`; `*` stays within one path
//! component). Paths in the key are relative as declared, so the same checkout in another
//! directory, or on another machine, gives the same key with `--no-cwd`.
//!
//! Content digests come from the [`StatCache`] when stat fields are unchanged; the rest are hashed
//! in parallel (rayon), large files through mmap.

use crate::key::{InputKind, InputState};
use crate::paths::{encode_os, normalize};
use crate::statcache::StatCache;
use anyhow::{Context, Result};
use globset::GlobBuilder;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Files larger than this are hashed with mmap + rayon.
const MMAP_THRESHOLD: u64 = 1 << 20;

/// Where stat cache files for one computation live (`None`: no persistent stat cache).
pub trait StatCacheDir {
    fn stat_cache_file(&self, id: &str) -> Option<PathBuf>;
    fn tmp_dir(&self) -> Option<PathBuf>;
}

/// Hash one file's content.
pub fn hash_file(path: &Path, size: u64) -> std::io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    if size >= MMAP_THRESHOLD {
        hasher.update_mmap_rayon(path)?;
    } else {
        let mut f = std::fs::File::open(path)?;
        let mut buf = Vec::with_capacity(size as usize + 1);
        f.read_to_end(&mut buf)?;
        hasher.update(&buf);
    }
    Ok(*hasher.finalize().as_bytes())
}

/// A file whose digest is still to be found.
struct Pending {
    key: String,
    abs: PathBuf,
    meta: Metadata,
}

/// Resolve and hash every declared input pattern, relative to `cwd`.
pub fn collect(
    cwd: &Path,
    patterns: &[String],
    caches: &dyn StatCacheDir,
) -> Result<BTreeMap<String, InputState>> {
    let mut out = BTreeMap::new();
    for pattern in patterns {
        let id = blake3::hash(
            [cwd.as_os_str().as_bytes(), b"\0", pattern.as_bytes()]
                .concat()
                .as_slice(),
        )
        .to_hex()
        .to_string();
        let mut cache = StatCache::load(caches.stat_cache_file(&id));
        let mut pending = Vec::new();
        if is_glob(pattern) {
            expand_glob(
                cwd,
                &crate::paths::display_encoded(pattern),
                &mut out,
                &mut pending,
            )?;
        } else {
            let rel = normalize(Path::new(&crate::paths::decode_os(pattern)));
            add_path(cwd, &rel, &mut out, &mut pending)?;
        }
        resolve_pending(pending, &mut cache, &mut out)?;
        if let Some(tmp) = caches.tmp_dir() {
            cache.save(&tmp);
        }
    }
    Ok(out)
}

/// Digest one file through a stat cache file named by `id` (used for the executable).
pub fn digest_with_cache(abs: &Path, id: &str, caches: &dyn StatCacheDir) -> Result<String> {
    let meta = std::fs::metadata(abs).with_context(|| format!("reading {}", abs.display()))?;
    let mut cache = StatCache::load(caches.stat_cache_file(id));
    let digest = match cache.get(abs, &meta) {
        Some(d) => d,
        None => {
            let d =
                hash_file(abs, meta.len()).with_context(|| format!("hashing {}", abs.display()))?;
            cache.put(abs, &meta, d);
            if let Some(tmp) = caches.tmp_dir() {
                cache.save(&tmp);
            }
            d
        }
    };
    Ok(blake3::Hash::from_bytes(digest).to_hex().to_string())
}

fn resolve_pending(
    pending: Vec<Pending>,
    cache: &mut StatCache,
    out: &mut BTreeMap<String, InputState>,
) -> Result<()> {
    let mut to_hash = Vec::new();
    for p in pending {
        match cache.get(&p.abs, &p.meta) {
            Some(d) => {
                out.insert(p.key, file_state(&p.meta, d));
            }
            None => to_hash.push(p),
        }
    }
    let hashed: Vec<Result<(Pending, [u8; 32])>> = if to_hash.len() > 1 {
        to_hash.into_par_iter().map(hash_pending).collect()
    } else {
        to_hash.into_iter().map(hash_pending).collect()
    };
    for r in hashed {
        let (p, d) = r?;
        cache.put(&p.abs, &p.meta, d);
        out.insert(p.key, file_state(&p.meta, d));
    }
    Ok(())
}

fn hash_pending(p: Pending) -> Result<(Pending, [u8; 32])> {
    let d = hash_file(&p.abs, p.meta.len())
        .with_context(|| format!("reading input {}", p.abs.display()))?;
    Ok((p, d))
}

fn file_state(meta: &Metadata, digest: [u8; 32]) -> InputState {
    InputState {
        kind: InputKind::File,
        exec: meta.permissions().mode() & 0o111 != 0,
        digest: blake3::Hash::from_bytes(digest).to_hex().to_string(),
    }
}

/// Add one literal path (relative to `cwd`, or absolute): a file, a directory (recursively), a
/// dangling symlink, or an absent path.
fn add_path(
    cwd: &Path,
    rel: &Path,
    out: &mut BTreeMap<String, InputState>,
    pending: &mut Vec<Pending>,
) -> Result<()> {
    let abs = cwd.join(rel);
    let key = encode_os(rel.as_os_str());
    match std::fs::metadata(&abs) {
        Ok(meta) if meta.is_dir() => walk_dir(&abs, rel, out, pending),
        Ok(meta) => {
            pending.push(Pending { key, abs, meta });
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            out.insert(key, missing_state(&abs));
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("reading input {}", abs.display())),
    }
}

/// A path that does not resolve: absent, or a dangling symlink keyed by its link text.
fn missing_state(abs: &Path) -> InputState {
    match std::fs::read_link(abs) {
        Ok(target) => InputState {
            kind: InputKind::Symlink,
            exec: false,
            digest: blake3::hash(target.as_os_str().as_bytes())
                .to_hex()
                .to_string(),
        },
        Err(_) => InputState {
            kind: InputKind::Absent,
            exec: false,
            digest: String::new(),
        },
    }
}

fn walk_dir(
    abs: &Path,
    rel: &Path,
    out: &mut BTreeMap<String, InputState>,
    pending: &mut Vec<Pending>,
) -> Result<()> {
    for entry in walkdir::WalkDir::new(abs).follow_links(true) {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // A dangling symlink inside the tree is keyed by its link text; anything else
                // (a loop, an unreadable directory) means we cannot know the inputs.
                if let Some(p) = e.path()
                    && e.io_error().map(|io| io.kind()) == Some(std::io::ErrorKind::NotFound)
                    && let Ok(sub) = p.strip_prefix(abs)
                {
                    out.insert(encode_os(rel.join(sub).as_os_str()), missing_state(p));
                    continue;
                }
                return Err(e).with_context(|| format!("walking input {}", abs.display()));
            }
        };
        let sub = entry.path().strip_prefix(abs).unwrap_or(entry.path());
        let key_path = if sub.as_os_str().is_empty() {
            rel.to_path_buf()
        } else {
            rel.join(sub)
        };
        let key = encode_os(key_path.as_os_str());
        let meta = entry
            .metadata()
            .with_context(|| format!("reading input {}", entry.path().display()))?;
        if meta.is_dir() {
            out.insert(
                key,
                InputState {
                    kind: InputKind::Dir,
                    exec: false,
                    digest: String::new(),
                },
            );
        } else {
            pending.push(Pending {
                key,
                abs: entry.path().to_path_buf(),
                meta,
            });
        }
    }
    Ok(())
}

/// Expand a glob: add every match (a matched directory with all it contains).
fn expand_glob(
    cwd: &Path,
    pattern: &str,
    out: &mut BTreeMap<String, InputState>,
    pending: &mut Vec<Pending>,
) -> Result<()> {
    for rel in glob_paths(cwd, pattern)? {
        add_path(cwd, &rel, out, pending)?;
    }
    Ok(())
}

/// The paths (relative to `cwd`, sorted) that a glob matches, walking only from its literal
/// prefix. `*` stays within one path component, `**` crosses them; a matched directory is not
/// descended into. Shared by input globs and `warm`'s `for_each`.
pub fn glob_paths(cwd: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let norm = normalize(Path::new(pattern));
    let norm_str = norm.to_string_lossy().into_owned();
    let matcher = GlobBuilder::new(&norm_str)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .with_context(|| format!("invalid glob `{pattern}`"))?
        .compile_matcher();
    let mut base = PathBuf::new();
    for c in norm.components() {
        if is_glob(&c.as_os_str().to_string_lossy()) {
            break;
        }
        base.push(c.as_os_str());
    }
    let walk_root = cwd.join(&base);
    let mut matched = Vec::new();
    if !walk_root.is_dir() {
        return Ok(matched);
    }
    let mut it = walkdir::WalkDir::new(&walk_root)
        .follow_links(true)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = it.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                // A dangling symlink matches like any path (and is keyed by its link text),
                // as it is when a directory is walked.
                if let Some(p) = e.path()
                    && p.symlink_metadata()
                        .is_ok_and(|m| m.file_type().is_symlink())
                    && let Ok(sub) = p.strip_prefix(&walk_root)
                    && matcher.is_match(base.join(sub))
                {
                    matched.push(base.join(sub));
                }
                continue;
            }
        };
        let sub = entry
            .path()
            .strip_prefix(&walk_root)
            .unwrap_or(entry.path());
        let rel = base.join(sub);
        if matcher.is_match(&rel) {
            matched.push(rel);
            if entry.file_type().is_dir() {
                it.skip_current_dir();
            }
        }
    }
    Ok(matched)
}

/// Whether a declared pattern is a glob rather than a literal path.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoCache;
    impl StatCacheDir for NoCache {
        fn stat_cache_file(&self, _: &str) -> Option<PathBuf> {
            None
        }
        fn tmp_dir(&self) -> Option<PathBuf> {
            None
        }
    }

    #[test]
    fn literal_dir_glob_and_absent() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("src/sub")).unwrap();
        std::fs::write(root.join("src/a.h"), "a").unwrap();
        std::fs::write(root.join("src/sub/b.h"), "b").unwrap();
        std::fs::write(root.join("x.h"), "x").unwrap();
        let got = collect(
            root,
            &["./src".into(), "*.h".into(), "nope".into()],
            &NoCache,
        )
        .unwrap();
        let keys: Vec<&str> = got.keys().map(|s| s.as_str()).collect();
        assert_eq!(
            keys,
            ["nope", "src", "src/a.h", "src/sub", "src/sub/b.h", "x.h"]
        );
        assert_eq!(got["nope"].kind, InputKind::Absent);
        assert_eq!(got["src"].kind, InputKind::Dir);
        assert_eq!(got["x.h"].digest, blake3::hash(b"x").to_hex().to_string());
    }

    #[test]
    fn globs_see_dangling_symlinks_as_walks_do() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::os::unix::fs::symlink("nowhere", root.join("src/dangling")).unwrap();
        let walked = collect(root, &["src".into()], &NoCache).unwrap();
        let globbed = collect(root, &["src/*".into()], &NoCache).unwrap();
        assert_eq!(walked["src/dangling"].kind, InputKind::Symlink);
        assert_eq!(globbed["src/dangling"], walked["src/dangling"]);
    }

    #[test]
    fn recursive_glob() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/c.rs"), "c").unwrap();
        std::fs::write(root.join("a/d.txt"), "d").unwrap();
        let got = collect(root, &["a/**/*.rs".into()], &NoCache).unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), ["a/b/c.rs"]);
    }
}
