//! The stat cache: (path, size, mtime, ctime, inode, device, mode) → content digest.
//!
//! Re-keying a command whose inputs did not change must not re-read them. Each declared input
//! pattern (and each executable) has one small cache file under `stat-v1/` holding the entries of
//! the files it resolved to last time; an entry is trusted only when every stat field still
//! matches. Like git's "racy" rule, a file whose mtime is within [`RACY_WINDOW_NS`] of the moment
//! it was hashed is never recorded, so a write in the same second as the hash is always re-read.
//!
//! A wrong digest here would be a wrong hit, so the file carries a blake3 checksum and anything
//! that does not verify is ignored as a whole.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 8] = b"CCSTAT01";
/// Files modified this recently (2 s, covering coarse filesystem timestamps) are always re-hashed.
pub const RACY_WINDOW_NS: i128 = 2_000_000_000;
/// Bytes of one encoded [`Stamp`]: eight little-endian u64.
const STAMP_LEN: usize = 64;

/// The stat fields an entry is trusted on (symlinks followed).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stamp {
    pub size: u64,
    mtime_s: i64,
    mtime_ns: i64,
    ctime_s: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
    /// File type and permission bits (`st_mode`).
    pub mode: u32,
}

impl Stamp {
    pub fn of(m: &Metadata) -> Self {
        Stamp {
            size: m.size(),
            mtime_s: m.mtime(),
            mtime_ns: m.mtime_nsec(),
            ctime_s: m.ctime(),
            ctime_ns: m.ctime_nsec(),
            ino: m.ino(),
            dev: m.dev(),
            mode: m.mode(),
        }
    }

    /// From a `stat` buffer filled by the C library (the walk uses `fstatat`, which resolves one
    /// name relative to an open directory instead of a whole path per file).
    // The field types differ between platforms (`st_dev` is signed on macOS).
    #[allow(clippy::unnecessary_cast)]
    pub fn from_stat(st: &libc::stat) -> Self {
        Stamp {
            size: st.st_size as u64,
            mtime_s: st.st_mtime as i64,
            mtime_ns: st.st_mtime_nsec as i64,
            ctime_s: st.st_ctime as i64,
            ctime_ns: st.st_ctime_nsec as i64,
            ino: st.st_ino as u64,
            dev: st.st_dev as u64,
            mode: st.st_mode as u32,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// The file's identity: (device, inode).
    pub fn dev_ino(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Any execute bit set.
    pub fn is_exec(&self) -> bool {
        self.mode & 0o111 != 0
    }

    /// The on-disk form. The encoding is injective, so comparing encoded stamps compares every
    /// field.
    fn encode(&self) -> [u8; STAMP_LEN] {
        let mut out = [0u8; STAMP_LEN];
        let fields = [
            self.size,
            self.mtime_s as u64,
            self.mtime_ns as u64,
            self.ctime_s as u64,
            self.ctime_ns as u64,
            self.ino,
            self.dev,
            self.mode as u64,
        ];
        for (chunk, v) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// One entry of a loaded cache file: where its path, stamp and digest are in the file's bytes.
/// Entries point into the file rather than owning copies, so loading 100 000 of them is a
/// checksum and one pass, with no allocation per entry.
struct Entry {
    /// Offset of the path; its encoded stamp and then its digest follow it.
    start: usize,
    len: u32,
    /// Matched by this computation: written back on save.
    used: bool,
}

/// One stat cache file, loaded in memory for the duration of a key computation.
///
/// Lookups are by absolute path. Entries are kept sorted by path and files are saved sorted,
/// and inputs are resolved in walk order (sorted by name), so a lookup is nearly always the
/// entry after the previous one: that is tried first, then a binary search. No hashing.
#[derive(Default)]
pub struct StatCache {
    file: Option<PathBuf>,
    /// The verified file contents (empty without a usable file).
    bytes: Vec<u8>,
    /// Sorted by path.
    entries: Vec<Entry>,
    /// The entry after the last one found.
    cursor: usize,
    used: usize,
    /// Digests computed by this computation (trusted ones only).
    added: Vec<(Vec<u8>, Stamp, [u8; 32])>,
    changed: bool,
}

impl StatCache {
    /// Load the cache stored at `file` (`None`: an in-memory cache that is never saved).
    pub fn load(file: Option<PathBuf>) -> Self {
        let (bytes, entries) = file
            .as_deref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|bytes| {
                let entries = decode(&bytes)?;
                Some((bytes, entries))
            })
            .unwrap_or_default();
        StatCache {
            file,
            bytes,
            entries,
            ..StatCache::default()
        }
    }

    fn path_of(&self, e: &Entry) -> &[u8] {
        &self.bytes[e.start..e.start + e.len as usize]
    }

    /// The cached digest of the file at absolute `path` if its stat fields are unchanged.
    pub fn get(&mut self, path: &Path, stamp: &Stamp) -> Option<[u8; 32]> {
        let k = path.as_os_str().as_bytes();
        let i = match self.entries.get(self.cursor) {
            Some(e) if self.path_of(e) == k => self.cursor,
            _ => self
                .entries
                .binary_search_by(|e| self.path_of(e).cmp(k))
                .ok()?,
        };
        self.cursor = i + 1;
        let at = self.entries[i].start + self.entries[i].len as usize;
        if self.bytes[at..at + STAMP_LEN] != stamp.encode() {
            return None;
        }
        let digest: [u8; 32] = self.bytes[at + STAMP_LEN..at + STAMP_LEN + 32]
            .try_into()
            .expect("32 bytes");
        let e = &mut self.entries[i];
        if !e.used {
            e.used = true;
            self.used += 1;
        }
        Some(digest)
    }

    /// Record a freshly computed digest (unless the file is too recently modified to trust).
    pub fn put(&mut self, path: &Path, stamp: &Stamp, digest: [u8; 32]) {
        self.changed = true;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let mtime = stamp.mtime_s as i128 * 1_000_000_000 + stamp.mtime_ns as i128;
        let ctime = stamp.ctime_s as i128 * 1_000_000_000 + stamp.ctime_ns as i128;
        if now - mtime.max(ctime) < RACY_WINDOW_NS {
            return;
        }
        self.added
            .push((path.as_os_str().as_bytes().to_vec(), *stamp, digest));
    }

    /// Write back the entries used by this computation (dropping files no longer matched), if
    /// anything changed. Failures are ignored: the stat cache is only an accelerator.
    pub fn save(&self, tmp_dir: &Path) {
        let Some(file) = &self.file else { return };
        if !self.changed && self.used == self.entries.len() {
            return;
        }
        let mut keep: Vec<(&[u8], [u8; STAMP_LEN], [u8; 32])> =
            Vec::with_capacity(self.used + self.added.len());
        for e in self.entries.iter().filter(|e| e.used) {
            let at = e.start + e.len as usize;
            keep.push((
                self.path_of(e),
                self.bytes[at..at + STAMP_LEN].try_into().expect("64 bytes"),
                self.bytes[at + STAMP_LEN..at + STAMP_LEN + 32]
                    .try_into()
                    .expect("32 bytes"),
            ));
        }
        for (path, stamp, digest) in &self.added {
            keep.push((path, stamp.encode(), *digest));
        }
        let bytes = encode(keep);
        let _ = crate::fsutil::write_atomic(file, tmp_dir, &bytes);
    }
}

/// Encode entries sorted by path, one per path (the last given wins).
fn encode(mut entries: Vec<(&[u8], [u8; STAMP_LEN], [u8; 32])>) -> Vec<u8> {
    // Stable: of two entries for one path, the later (a fresh digest) stays last.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut unique: Vec<(&[u8], [u8; STAMP_LEN], [u8; 32])> = Vec::with_capacity(entries.len());
    for e in entries {
        match unique.last_mut() {
            Some(last) if last.0 == e.0 => *last = e,
            _ => unique.push(e),
        }
    }
    let size: usize = unique.iter().map(|e| 4 + e.0.len() + STAMP_LEN + 32).sum();
    let mut out = Vec::with_capacity(16 + size + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(unique.len() as u64).to_le_bytes());
    for (path, stamp, digest) in unique {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
        out.extend_from_slice(&stamp);
        out.extend_from_slice(&digest);
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Verify a cache file and index its entries, sorted by path (files written before entries were
/// saved sorted are sorted here).
fn decode(bytes: &[u8]) -> Option<Vec<Entry>> {
    if bytes.len() < MAGIC.len() + 8 + 32 || &bytes[..8] != MAGIC {
        return None;
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let mut r = Reader(&body[8..]);
    let count = r.u64()?;
    let mut entries = Vec::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        let len = r.u32()?;
        let start = body.len() - r.0.len();
        r.take(len as usize + STAMP_LEN + 32)?;
        entries.push(Entry {
            start,
            len,
            used: false,
        });
    }
    let path = |e: &Entry| &bytes[e.start..e.start + e.len as usize];
    if !entries.is_sorted_by(|a, b| path(a) <= path(b)) {
        entries.sort_unstable_by(|a, b| path(a).cmp(path(b)));
    }
    Some(entries)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old_file(dir: &Path, name: &str) -> (PathBuf, Stamp) {
        let f = dir.join(name);
        std::fs::write(&f, name).unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        (f, Stamp::of(&meta))
    }

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (_, stamp) = old_file(dir.path(), "a");
        let mut bytes = encode(vec![(b"/a".as_slice(), stamp.encode(), [7u8; 32])]);
        let entries = decode(&bytes).unwrap();
        assert_eq!(entries.len(), 1);
        let mut c = StatCache {
            bytes: bytes.clone(),
            entries,
            ..StatCache::default()
        };
        assert_eq!(c.get(Path::new("/a"), &stamp), Some([7u8; 32]));
        bytes[20] ^= 1;
        assert!(decode(&bytes).is_none());
    }

    #[test]
    fn racy_files_are_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("fresh");
        std::fs::write(&f, b"x").unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        let mut c = StatCache::default();
        c.put(&f, &Stamp::of(&meta), [1; 32]);
        assert!(c.added.is_empty());
    }

    /// Save keeps exactly the entries this computation used or added, sorted; a file saved in
    /// any order (older versions wrote hash-map order) loads and answers the same.
    #[test]
    fn save_keeps_used_entries_and_lookups_survive_any_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        let file = dir.path().join("cache");
        let names = ["b", "a", "c-d", "c/e", "c"];
        std::fs::create_dir(dir.path().join("c")).unwrap();
        let files: Vec<(PathBuf, Stamp)> = names
            .iter()
            .map(|n| {
                if *n == "c" {
                    let f = dir.path().join("cfile");
                    let (_, s) = old_file(dir.path(), "cfile");
                    (f, s)
                } else {
                    old_file(dir.path(), n)
                }
            })
            .collect();
        // Unsorted on disk, as a hash map would have written it.
        let mut body = Vec::new();
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&(files.len() as u64).to_le_bytes());
        for (i, (f, s)) in files.iter().enumerate() {
            let p = f.as_os_str().as_bytes();
            body.extend_from_slice(&(p.len() as u32).to_le_bytes());
            body.extend_from_slice(p);
            body.extend_from_slice(&s.encode());
            body.extend_from_slice(&[i as u8; 32]);
        }
        let sum = blake3::hash(&body);
        body.extend_from_slice(sum.as_bytes());
        std::fs::write(&file, &body).unwrap();

        let mut c = StatCache::load(Some(file.clone()));
        for (i, (f, s)) in files.iter().enumerate().rev() {
            assert_eq!(c.get(f, s), Some([i as u8; 32]));
        }
        // A changed stamp is not trusted.
        let mut other = files[0].1;
        other.size += 1;
        assert_eq!(c.get(&files[0].0, &other), None);
        assert_eq!(c.get(&dir.path().join("nope"), &files[0].1), None);
        c.save(&dir.path().join("tmp"));
        assert_eq!(std::fs::read(&file).unwrap(), body, "nothing changed");

        // Use two of them and add one: the saved file holds exactly those three.
        let mut c = StatCache::load(Some(file.clone()));
        assert_eq!(c.get(&files[1].0, &files[1].1), Some([1; 32]));
        assert_eq!(c.get(&files[3].0, &files[3].1), Some([3; 32]));
        let (g, mut gs) = old_file(dir.path(), "g");
        // Setting the mtime made the ctime recent: as if the file had been there a while.
        gs.ctime_s -= 60;
        c.put(&g, &gs, [9; 32]);
        c.save(&dir.path().join("tmp"));
        let mut c = StatCache::load(Some(file.clone()));
        assert_eq!(c.entries.len(), 3);
        assert_eq!(c.get(&g, &gs), Some([9; 32]));
        assert_eq!(c.get(&files[3].0, &files[3].1), Some([3; 32]));
        assert_eq!(c.get(&files[1].0, &files[1].1), Some([1; 32]));
        assert_eq!(c.get(&files[0].0, &files[0].1), None);
        let paths: Vec<&[u8]> = c.entries.iter().map(|e| c.path_of(e)).collect();
        assert!(paths.is_sorted());
    }
}
