//! Declared inputs → their key state: walking directories, expanding globs, hashing contents.
//!
//! Each declared pattern is either a literal path (a file, a directory walked recursively, or a
//! missing path keyed as absent) or a glob (`*.h`, `src/**/*.rs`; `*` stays within one path
//! component). Paths in the key are relative as declared, so the same checkout in another
//! directory, or on another machine, gives the same key with `--no-cwd`.
//!
//! Content digests come from the [`StatCache`] when stat fields are unchanged; the rest are hashed
//! in parallel (rayon), large files through mmap.

use crate::key::glob::Matcher;
use crate::key::statcache::{Stamp, StatCache};
use crate::key::{InputKind, InputState};
use crate::paths::{encode_os, normalize};
use anyhow::{Context, Result, anyhow};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
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
    stamp: Stamp,
}

/// Gathers the states of one pattern's paths: a file whose stat fields match its stat cache
/// entry is resolved at once, the rest are hashed together (in parallel) at the end.
struct Resolver<'a> {
    cache: &'a mut StatCache,
    /// Every state so far, in the order found (see [`into_map`]).
    out: &'a mut Vec<(String, InputState)>,
    pending: Vec<Pending>,
}

impl Resolver<'_> {
    fn file(&mut self, key: String, abs: &Path, stamp: Stamp) {
        match self.cache.get(abs, &stamp) {
            Some(d) => self.out.push((key, file_state(&stamp, d))),
            None => self.pending.push(Pending {
                key,
                abs: abs.to_path_buf(),
                stamp,
            }),
        }
    }

    fn finish(self) -> Result<()> {
        let hashed: Vec<Result<(Pending, [u8; 32])>> = if self.pending.len() > 1 {
            self.pending.into_par_iter().map(hash_pending).collect()
        } else {
            self.pending.into_iter().map(hash_pending).collect()
        };
        for r in hashed {
            let (p, d) = r?;
            self.cache.put(&p.abs, &p.stamp, d);
            self.out.push((p.key, file_state(&p.stamp, d)));
        }
        Ok(())
    }
}

/// Resolve and hash every declared input pattern, relative to `cwd`.
pub fn collect(
    cwd: &Path,
    patterns: &[String],
    caches: &dyn StatCacheDir,
) -> Result<BTreeMap<String, InputState>> {
    let mut out = Vec::new();
    for pattern in patterns {
        let id = blake3::hash(
            [cwd.as_os_str().as_bytes(), b"\0", pattern.as_bytes()]
                .concat()
                .as_slice(),
        )
        .to_hex()
        .to_string();
        let mut cache = StatCache::load(caches.stat_cache_file(&id));
        let mut r = Resolver {
            cache: &mut cache,
            out: &mut out,
            pending: Vec::new(),
        };
        if is_glob(pattern) {
            expand_glob(cwd, &crate::paths::display_encoded(pattern), &mut r)?;
        } else {
            let rel = normalize(Path::new(&crate::paths::decode_os(pattern)));
            add_path(cwd, &rel, &mut r)?;
        }
        r.finish()?;
        if let Some(tmp) = caches.tmp_dir() {
            cache.save(&tmp);
        }
    }
    Ok(into_map(out))
}

/// The states as a map. A path found twice (two overlapping patterns) keeps the state found
/// last, as inserting them one by one would. Walks are sorted by name, so `out` is nearly
/// sorted already and the stable sort is close to linear; `BTreeMap` then builds from sorted
/// input in one pass instead of 100 000 inserts.
fn into_map(mut out: Vec<(String, InputState)>) -> BTreeMap<String, InputState> {
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            std::mem::swap(later, kept);
            true
        } else {
            false
        }
    });
    out.into_iter().collect()
}

/// Digest one file through a stat cache file named by `id` (used for the executable).
pub fn digest_with_cache(abs: &Path, id: &str, caches: &dyn StatCacheDir) -> Result<String> {
    let stamp = stat_path(abs).with_context(|| format!("reading {}", abs.display()))?;
    let mut cache = StatCache::load(caches.stat_cache_file(id));
    let digest = match cache.get(abs, &stamp) {
        Some(d) => d,
        None => {
            let d =
                hash_file(abs, stamp.size).with_context(|| format!("hashing {}", abs.display()))?;
            cache.put(abs, &stamp, d);
            if let Some(tmp) = caches.tmp_dir() {
                cache.save(&tmp);
            }
            d
        }
    };
    Ok(blake3::Hash::from_bytes(digest).to_hex().to_string())
}

fn hash_pending(p: Pending) -> Result<(Pending, [u8; 32])> {
    let d = hash_file(&p.abs, p.stamp.size)
        .with_context(|| format!("reading input {}", p.abs.display()))?;
    Ok((p, d))
}

fn file_state(stamp: &Stamp, digest: [u8; 32]) -> InputState {
    InputState {
        kind: InputKind::File,
        exec: stamp.is_exec(),
        digest: blake3::Hash::from_bytes(digest).to_hex().to_string(),
    }
}

fn dir_state() -> InputState {
    InputState {
        kind: InputKind::Dir,
        exec: false,
        digest: String::new(),
    }
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// `stat` (symlinks followed) of `name` relative to the directory `dir`, or of a whole path with
/// `libc::AT_FDCWD`. Every input is stat'ed this one way, so stamps compare alike.
fn stat_at(dir: libc::c_int, name: &CStr) -> io::Result<Stamp> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated and `st` is a valid buffer for one `stat`.
    if unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Ok(Stamp::from_stat(&st))
}

fn stat_path(p: &Path) -> io::Result<Stamp> {
    stat_at(libc::AT_FDCWD, &cstring(p.as_os_str().as_bytes())?)
}

/// Add one literal path (relative to `cwd`, or absolute): a file, a directory (recursively), a
/// dangling symlink, or an absent path.
fn add_path(cwd: &Path, rel: &Path, r: &mut Resolver) -> Result<()> {
    let abs = cwd.join(rel);
    let key = encode_os(rel.as_os_str());
    match stat_path(&abs) {
        Ok(st) if st.is_dir() => {
            r.out.push((key, dir_state()));
            let mut w = Walk {
                root: &abs,
                abs: abs.as_os_str().as_bytes().to_vec(),
                key: rel.as_os_str().as_bytes().to_vec(),
                ancestors: Vec::new(),
            };
            let dir = open_dir(&abs).with_context(|| format!("walking input {}", abs.display()))?;
            w.dir(dir, r)
        }
        Ok(st) => {
            r.file(key, &abs, st);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            r.out.push((key, missing_state(&abs)));
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

fn open_dir(p: &Path) -> io::Result<OwnedFd> {
    let c = cstring(p.as_os_str().as_bytes())?;
    // SAFETY: `c` is NUL-terminated; the flags open a directory for reading only.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An open directory stream, closed on drop.
struct DirStream(*mut libc::DIR);

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: the stream came from fdopendir and is closed exactly once.
        unsafe { libc::closedir(self.0) };
    }
}

/// Set errno to 0 (it is thread-local; setting it is always allowed).
fn clear_errno() {
    // SAFETY: the location of the calling thread's errno, valid for the thread's lifetime.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "emscripten"))]
    unsafe {
        *libc::__errno_location() = 0
    };
    // SAFETY: as above.
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    unsafe {
        *libc::__error() = 0
    };
}

/// The names in a directory (without `.` and `..`), sorted, each NUL-terminated.
fn read_names(dir: &DirStream) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    loop {
        // readdir reports errors only through errno.
        clear_errno();
        // SAFETY: the stream is open; the entry is valid until the next readdir call, and its
        // name is copied out before that.
        let ent = unsafe { libc::readdir(dir.0) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(0) {
                break;
            }
            return Err(e);
        }
        // SAFETY: d_name is NUL-terminated within the entry.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// A directory walk in the order of sorted names, following symlinks, with each entry's
/// relative key and absolute path built in reused buffers. Every entry is stat'ed once, by
/// name relative to its open directory (no path resolution from `/` per file).
///
/// What it yields matches walkdir's `follow_links(true)` walk that came before it: the
/// directory itself, every file and directory under it, dangling symlinks keyed by their link
/// text (and entries removed while walking as absent), and an error for a directory loop or
/// anything unreadable, since the inputs are then unknown.
struct Walk<'p> {
    root: &'p Path,
    /// The directory being read: absolute path, and key (relative as declared) as OS bytes.
    abs: Vec<u8>,
    key: Vec<u8>,
    /// (device, inode) of the directories above the one being read, to detect loops.
    ancestors: Vec<(u64, u64)>,
}

/// Append `/name` to a path buffer (`Path::join`: no second slash after a trailing one).
fn push_name(buf: &mut Vec<u8>, name: &[u8]) {
    if !buf.is_empty() && !buf.ends_with(b"/") {
        buf.push(b'/');
    }
    buf.extend_from_slice(name);
}

impl Walk<'_> {
    fn err(&self, e: io::Error) -> anyhow::Error {
        anyhow!(
            "walking input {}: {}: {e}",
            self.root.display(),
            Path::new(OsStr::from_bytes(&self.abs)).display()
        )
    }

    fn dir(&mut self, fd: OwnedFd, r: &mut Resolver) -> Result<()> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `fd` is open and `st` is a valid buffer.
        if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
            return Err(self.err(io::Error::last_os_error()));
        }
        // SAFETY: fstat succeeded.
        let st = unsafe { st.assume_init() };
        let me = Stamp::from_stat(&st);
        let id = me.dev_ino();
        if self.ancestors.contains(&id) {
            return Err(self.err(io::Error::other(
                "file system loop: a directory contains itself",
            )));
        }
        let raw = fd.into_raw_fd();
        // SAFETY: fdopendir takes ownership of the descriptor (closed by closedir).
        let stream = unsafe { libc::fdopendir(raw) };
        if stream.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so the descriptor is still ours to close.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
            return Err(self.err(e));
        }
        let stream = DirStream(stream);
        let names = read_names(&stream).map_err(|e| self.err(e))?;
        // SAFETY: the stream is open.
        let dirfd = unsafe { libc::dirfd(stream.0) };
        let (abs_len, key_len) = (self.abs.len(), self.key.len());
        let mut subdirs = Vec::new();
        for name in &names {
            push_name(&mut self.abs, name.to_bytes());
            push_name(&mut self.key, name.to_bytes());
            let key = encode_os(OsStr::from_bytes(&self.key));
            let abs = Path::new(OsStr::from_bytes(&self.abs));
            match stat_at(dirfd, name) {
                Ok(st) if st.is_dir() => {
                    r.out.push((key, dir_state()));
                    subdirs.push(name);
                }
                Ok(st) => r.file(key, abs, st),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    r.out.push((key, missing_state(abs)));
                }
                Err(e) => return Err(self.err(e)),
            }
            self.abs.truncate(abs_len);
            self.key.truncate(key_len);
        }
        // Closed before descending, so open descriptors do not grow with the depth.
        drop(stream);
        self.ancestors.push(id);
        for name in subdirs {
            push_name(&mut self.abs, name.to_bytes());
            push_name(&mut self.key, name.to_bytes());
            let fd = open_dir(Path::new(OsStr::from_bytes(&self.abs))).map_err(|e| self.err(e))?;
            self.dir(fd, r)?;
            self.abs.truncate(abs_len);
            self.key.truncate(key_len);
        }
        self.ancestors.pop();
        Ok(())
    }
}

/// Expand a glob: add every match (a matched directory with all it contains).
fn expand_glob(cwd: &Path, pattern: &str, r: &mut Resolver) -> Result<()> {
    for rel in glob_paths(cwd, pattern)? {
        add_path(cwd, &rel, r)?;
    }
    Ok(())
}

/// The paths (relative to `cwd`, sorted) that a glob matches, walking only from its literal
/// prefix, and no deeper than a match can be. `*` stays within one path component, `**`
/// crosses them; a matched directory is not descended into. Shared by input globs and
/// `warm`'s `for_each`.
pub fn glob_paths(cwd: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let norm = normalize(Path::new(pattern));
    let norm_str = norm.to_string_lossy().into_owned();
    let matcher = Matcher::new(&norm_str).with_context(|| format!("invalid glob `{pattern}`"))?;
    let mut base = PathBuf::new();
    for c in norm.components() {
        if is_glob(&c.as_os_str().to_string_lossy()) {
            break;
        }
        base.push(c.as_os_str());
    }
    let walk_root = cwd.join(&base);
    let mut matched = Vec::new();
    match std::fs::metadata(&walk_root) {
        Ok(m) if m.is_dir() => {}
        // Nothing to match: the prefix is absent, or not a directory.
        Ok(_) => return Ok(matched),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(matched);
        }
        // Unknown (a parent without search permission): the matches cannot be known.
        Err(e) => return Err(e).with_context(|| format!("reading {}", walk_root.display())),
    }
    if matcher.slashes().is_some() && norm.components().count() == base.components().count() + 1 {
        // The pattern's last component is its only glob (`*.h`, `src/*.rs`): the matches are
        // names in one directory, so list it and stat nothing. (What each match is, is found
        // out when it is keyed; a dangling symlink matches like any name, as below.)
        for entry in std::fs::read_dir(&walk_root)
            .with_context(|| format!("listing {}", walk_root.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", walk_root.display()))?;
            let rel = base.join(entry.file_name());
            if matcher.is_match(&rel) {
                matched.push(rel);
            }
        }
        matched.sort_unstable();
        return Ok(matched);
    }
    let mut walk = walkdir::WalkDir::new(&walk_root)
        .follow_links(true)
        .min_depth(1)
        .sort_by_file_name();
    if matcher.slashes().is_some() {
        // Without `**`, each component of the pattern matches exactly one of the path's: no
        // match lies deeper than the pattern's components below its literal prefix.
        walk = walk.max_depth(norm.components().count() - base.components().count());
    }
    let mut it = walk.into_iter();
    while let Some(entry) = it.next() {
        let entry = match entry {
            Ok(e) => e,
            // The same policy as the directory walk: a path that does not resolve (a dangling
            // symlink, or an entry removed while walking) is what it is; anything else (an
            // unreadable directory, a loop) leaves the inputs unknown, and the run uncached.
            Err(e) if e.io_error().map(io::Error::kind) == Some(io::ErrorKind::NotFound) => {
                // A dangling symlink matches like any path (and is keyed by its link text),
                // as it is when a directory is walked.
                if let Some(p) = e.path()
                    && p.symlink_metadata()
                        .is_ok_and(|m| m.file_type().is_symlink())
                    && let Ok(sub) = p.strip_prefix(&walk_root)
                    && matcher.is_match(&base.join(sub))
                {
                    matched.push(base.join(sub));
                }
                continue;
            }
            Err(e) => {
                let at = e.path().unwrap_or(&walk_root).to_path_buf();
                return Err(anyhow!(
                    "walking input glob `{pattern}`: {}: {e}",
                    at.display()
                ));
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

    /// The walk as it was done with walkdir (`follow_links(true)`, two stats per entry): the
    /// reference the hand-written walk must agree with.
    fn walkdir_reference(abs: &Path, rel: &Path) -> BTreeMap<String, InputState> {
        let mut out = BTreeMap::new();
        for entry in walkdir::WalkDir::new(abs).follow_links(true) {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let p = e.path().unwrap();
                    assert_eq!(e.io_error().unwrap().kind(), io::ErrorKind::NotFound);
                    let sub = p.strip_prefix(abs).unwrap();
                    out.insert(encode_os(rel.join(sub).as_os_str()), missing_state(p));
                    continue;
                }
            };
            let sub = entry.path().strip_prefix(abs).unwrap();
            let key_path = if sub.as_os_str().is_empty() {
                rel.to_path_buf()
            } else {
                rel.join(sub)
            };
            let meta = entry.metadata().unwrap();
            let state = if meta.is_dir() {
                dir_state()
            } else {
                let d = hash_file(entry.path(), meta.len()).unwrap();
                file_state(&Stamp::of(&meta), d)
            };
            out.insert(encode_os(key_path.as_os_str()), state);
        }
        out
    }

    fn tricky_tree(root: &Path) {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let t = root.join("t");
        for d in ["a", "a/b", "a-b", "a.b", "empty", "z/y/x"] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        for f in [
            "a/b/c",
            "a/1",
            "a-b/2",
            "a.b/3",
            "a-",
            "a0",
            "z/y/x/deep",
            "é",
        ] {
            std::fs::write(t.join(f), f).unwrap();
        }
        std::fs::write(t.join(OsStr::from_bytes(b"bad\xffname")), "x").unwrap();
        std::fs::write(t.join("run.sh"), "#!/bin/sh").unwrap();
        std::fs::set_permissions(t.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        symlink("a/1", t.join("link-to-file")).unwrap();
        symlink("z/y", t.join("link-to-dir")).unwrap();
        symlink("nowhere", t.join("dangling")).unwrap();
    }

    #[test]
    fn walk_matches_walkdir() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        tricky_tree(root);
        for (pattern, rel) in [("t", "t"), ("./t/", "t"), ("t/a", "t/a")] {
            let got = collect(root, &[pattern.into()], &NoCache).unwrap();
            let want = walkdir_reference(&root.join(rel), Path::new(rel));
            assert_eq!(got, want, "{pattern}");
        }
        // The walk from `.` (keys `./t/...`) and from an absolute path.
        let got = collect(root, &[".".into()], &NoCache).unwrap();
        assert_eq!(got, walkdir_reference(&root.join("."), Path::new(".")));
        let abs = root.join("t").to_string_lossy().into_owned();
        let got = collect(Path::new("/"), std::slice::from_ref(&abs), &NoCache).unwrap();
        assert_eq!(got, walkdir_reference(Path::new(&abs), Path::new(&abs)));
        let keys: Vec<&String> = got.keys().collect();
        assert!(keys.iter().any(|k| k.ends_with("t/link-to-dir/x/deep")));
        assert_eq!(got[&format!("{abs}/dangling")].kind, InputKind::Symlink);
        assert!(got[&format!("{abs}/run.sh")].exec);
    }

    #[test]
    fn a_directory_loop_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("t/sub")).unwrap();
        std::os::unix::fs::symlink("..", root.join("t/sub/up")).unwrap();
        let err = collect(root, &["t".into()], &NoCache).unwrap_err();
        assert!(format!("{err:#}").contains("loop"), "{err:#}");
    }

    /// Overlapping patterns give one state per path, and a second computation through the
    /// stat caches gives the very same states.
    #[test]
    fn overlapping_patterns_and_stat_caches() {
        struct Dir(PathBuf);
        impl StatCacheDir for Dir {
            fn stat_cache_file(&self, id: &str) -> Option<PathBuf> {
                Some(self.0.join(id))
            }
            fn tmp_dir(&self) -> Option<PathBuf> {
                Some(self.0.clone())
            }
        }
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("w");
        std::fs::create_dir(&root).unwrap();
        tricky_tree(&root);
        let caches = Dir(d.path().join("stat"));
        std::fs::create_dir(&caches.0).unwrap();
        let patterns: Vec<String> = vec!["t".into(), "t/a".into(), "t/**/deep".into()];
        let first = collect(&root, &patterns, &NoCache).unwrap();
        assert_eq!(first, walkdir_reference(&root.join("t"), Path::new("t")));
        // Files are too fresh for the stat cache on the first pass; age them.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        for (k, st) in &first {
            if st.kind == InputKind::File {
                let p = root.join(crate::paths::decode_os(k));
                std::fs::File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_modified(old)
                    .unwrap();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let second = collect(&root, &patterns, &caches).unwrap();
        let third = collect(&root, &patterns, &caches).unwrap();
        assert_eq!(first, second);
        assert_eq!(first, third);
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
