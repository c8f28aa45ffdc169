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

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 8] = b"CCSTAT01";

/// Absolute path bytes → (stat fields, content digest).
type Entries = HashMap<Vec<u8>, (Stamp, [u8; 32])>;
/// Files modified this recently (2 s, covering coarse filesystem timestamps) are always re-hashed.
pub const RACY_WINDOW_NS: i128 = 2_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    size: u64,
    mtime_s: i64,
    mtime_ns: i64,
    ctime_s: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
    mode: u32,
}

impl Stamp {
    fn of(m: &Metadata) -> Self {
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
}

/// One stat cache file, loaded in memory for the duration of a key computation.
#[derive(Default)]
pub struct StatCache {
    file: Option<PathBuf>,
    entries: Entries,
    used: Entries,
    changed: bool,
}

impl StatCache {
    /// Load the cache stored at `file` (`None`: an in-memory cache that is never saved).
    pub fn load(file: Option<PathBuf>) -> Self {
        let entries = file
            .as_deref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        StatCache {
            file,
            entries,
            used: HashMap::new(),
            changed: false,
        }
    }

    /// The cached digest of `path` if its stat fields are unchanged.
    pub fn get(&mut self, path: &Path, meta: &Metadata) -> Option<[u8; 32]> {
        let k = path.as_os_str().as_bytes();
        let (stamp, digest) = self.entries.get(k)?;
        if *stamp != Stamp::of(meta) {
            return None;
        }
        let digest = *digest;
        self.used.insert(k.to_vec(), (*stamp, digest));
        Some(digest)
    }

    /// Record a freshly computed digest (unless the file is too recently modified to trust).
    pub fn put(&mut self, path: &Path, meta: &Metadata, digest: [u8; 32]) {
        self.changed = true;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let mtime = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
        let ctime = meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128;
        if now - mtime.max(ctime) < RACY_WINDOW_NS {
            return;
        }
        self.used.insert(
            path.as_os_str().as_bytes().to_vec(),
            (Stamp::of(meta), digest),
        );
    }

    /// Write back the entries used by this computation (dropping files no longer matched), if
    /// anything changed. Failures are ignored: the stat cache is only an accelerator.
    pub fn save(&self, tmp_dir: &Path) {
        let Some(file) = &self.file else { return };
        if !self.changed && self.used.len() == self.entries.len() {
            return;
        }
        let bytes = encode(&self.used);
        let _ = crate::store::fsutil::write_atomic(file, tmp_dir, &bytes);
    }
}

fn encode(entries: &Entries) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + entries.len() * 128);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (path, (s, digest)) in entries {
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
        for v in [
            s.size,
            s.mtime_s as u64,
            s.mtime_ns as u64,
            s.ctime_s as u64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [s.ctime_ns as u64, s.ino, s.dev, s.mode as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(digest);
    }
    let sum = blake3::hash(&out);
    out.write_all(sum.as_bytes()).expect("writing to a Vec");
    out
}

fn decode(bytes: &[u8]) -> Option<Entries> {
    if bytes.len() < MAGIC.len() + 8 + 32 || &bytes[..8] != MAGIC {
        return None;
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let mut r = Reader(&body[8..]);
    let count = r.u64()?;
    let mut map = HashMap::with_capacity(count.min(1 << 20) as usize);
    for _ in 0..count {
        let len = r.u32()? as usize;
        let path = r.take(len)?.to_vec();
        let stamp = Stamp {
            size: r.u64()?,
            mtime_s: r.u64()? as i64,
            mtime_ns: r.u64()? as i64,
            ctime_s: r.u64()? as i64,
            ctime_ns: r.u64()? as i64,
            ino: r.u64()?,
            dev: r.u64()?,
            mode: r.u64()? as u32,
        };
        let digest: [u8; 32] = r.take(32)?.try_into().ok()?;
        map.insert(path, (stamp, digest));
    }
    Some(map)
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

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        std::fs::write(&f, b"x").unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        let mut map = HashMap::new();
        map.insert(b"/a".to_vec(), (Stamp::of(&meta), [7u8; 32]));
        let mut bytes = encode(&map);
        assert_eq!(decode(&bytes).unwrap(), map);
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
        c.put(&f, &meta, [1; 32]);
        assert!(c.used.is_empty());
    }
}
