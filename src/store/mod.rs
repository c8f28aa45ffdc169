//! The local store.
//!
//! ```text
//! $CACHECTL_DIR (or $XDG_CACHE_HOME/cachectl, or ~/.cache/cachectl), mode 0700
//! ├── CACHEDIR.TAG, .gitignore   so backup tools and git leave the cache alone
//! ├── ac-v1/ab/<key>             one record per key (record.rs), checksummed
//! ├── cas-v1/ab/<digest>         zstd blobs named by blake3 of their content (cas.rs)
//! ├── mf-v1/ab/<key>             manifests of `--trace auto` commands (manifest.rs)
//! ├── stat-v1/ab/<id>            stat caches for input patterns and executables (key/statcache.rs)
//! ├── locks-v1/ab/<key>          per-key flock files (lock.rs)
//! ├── tmp/                       temp files, renamed into place (same filesystem)
//! ├── journal-v1.log             appended usage events (journal.rs)
//! ├── index-v1.sqlite            derived index for the management commands (index/)
//! ├── size-v1                    running total of bytes stored (decides when to auto-gc)
//! └── *.lock, remote-v1.down     gc, fold, index and blob locks; the remote breaker
//! ```
//!
//! `layout.rs` names every one of these (`Item`); nothing else spells a name.
//!
//! Files are the truth. Every write is temp-then-rename; a record is written only after all the
//! blobs it references are in place, so a crash (even kill -9) at any point leaves either the old
//! state or the new one. Readers verify checksums and treat any mismatch as a miss (and drop the
//! record). The format version is in each folder name: a future format gets new folders, and old
//! ones are pruned, never migrated.
//!
//! The hit path touches exactly: the stat caches of the declared inputs and executable, one
//! record file, the blobs it references, and one append to the journal. No directory scan, no
//! index, no lock.

pub mod cas;

pub mod index;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod record;

use crate::fsutil::{self, fanout};
use crate::key::KeyComponents;
use crate::key::inputs::StatCacheDir;
use anyhow::{Context, Result, bail};
use cas::Cas;
use layout::Item;
use record::{Decoded, Record, RecordError};
use serde::de::IgnoredAny;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::PathBuf;

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by cachectl.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

pub struct Store {
    pub root: PathBuf,
    pub ac: PathBuf,
    pub cas: Cas,
    pub stat: PathBuf,
    pub locks: PathBuf,
    pub tmp: PathBuf,
    pub journal: PathBuf,
    /// The build this process's events belong to (`--session`, `CACHECTL_SESSION`): written
    /// with every journal event so that `stats --session` can report that build alone.
    pub session: Option<String>,
}

/// Outcome of looking a key up (`C`: how the key components are held, see [`Record`]).
pub enum Lookup<C = KeyComponents> {
    Found(Box<Decoded<C>>),
    Missing,
    /// The record existed but did not verify; it has been removed.
    Corrupt(RecordError),
}

impl Store {
    /// Describe the store at `root` (no I/O).
    pub fn at(root: PathBuf) -> Store {
        Store {
            ac: Item::Records.path(&root),
            cas: Cas {
                dir: Item::Blobs.path(&root),
            },
            stat: Item::StatCaches.path(&root),
            locks: Item::KeyLocks.path(&root),
            tmp: Item::Tmp.path(&root),
            journal: Item::Journal.path(&root),
            root,
            session: None,
        }
    }

    /// Refuse a cache directory another user could tamper with: owned by someone else, or
    /// writable by everyone. A missing directory is fine (it will be created 0700).
    pub fn check_safe(&self) -> Result<()> {
        let meta = match std::fs::metadata(&self.root) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.root.display())),
        };
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if meta.uid() != uid {
            bail!(
                "cache directory {} is owned by another user (uid {}); fix: use --dir or CACHECTL_DIR to pick your own",
                self.root.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o002 != 0 {
            bail!(
                "cache directory {} is writable by everyone; fix: chmod 700 {}",
                self.root.display(),
                self.root.display()
            );
        }
        Ok(())
    }

    /// Create the directory tree (0700) and its tags if missing. Needed before any write.
    pub fn init(&self) -> Result<()> {
        let tag = Item::CachedirTag.path(&self.root);
        if tag.is_file() && self.tmp.is_dir() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .with_context(|| format!("creating cache directory {}", self.root.display()))?;
        for d in [&self.ac, &self.cas.dir, &self.stat, &self.locks, &self.tmp] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        fsutil::write_atomic(&Item::Gitignore.path(&self.root), &self.tmp, b"*\n")
            .with_context(|| format!("writing {}", self.root.display()))?;
        fsutil::write_atomic(&tag, &self.tmp, CACHEDIR_TAG.as_bytes())
            .with_context(|| format!("writing {}", tag.display()))?;
        Ok(())
    }

    /// The keys of the records whose key starts with `prefix` (lowercase hex), sorted. Reads
    /// one fan-out directory (16 for a one-digit prefix), never the index.
    pub fn keys_with_prefix(&self, prefix: &str) -> io::Result<Vec<String>> {
        let dirs: Vec<String> = if prefix.len() >= 2 {
            vec![prefix[..2].to_owned()]
        } else {
            (0..16).map(|i| format!("{prefix}{i:x}")).collect()
        };
        let mut found = Vec::new();
        for d in dirs {
            let rd = match std::fs::read_dir(self.ac.join(d)) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(prefix) {
                    found.push(name);
                }
            }
        }
        found.sort();
        Ok(found)
    }

    pub fn record_path(&self, key: &str) -> PathBuf {
        fanout(&self.ac, key)
    }

    pub fn lock_path(&self, key: &str) -> PathBuf {
        fanout(&self.locks, key)
    }

    pub fn refresh_lock_path(&self, key: &str) -> PathBuf {
        let mut p = fanout(&self.locks, key);
        p.set_extension("refresh");
        p
    }

    /// Read and verify the record for `key`. A record that fails verification is removed.
    pub fn lookup(&self, key: &str) -> io::Result<Lookup> {
        self.lookup_with(key, record::decode)
    }

    /// [`Store::lookup`] for serving the entry: the key components are skipped, not decoded
    /// (see [`record::HitRecord`]); the record is verified all the same.
    pub fn lookup_for_hit(&self, key: &str) -> io::Result<Lookup<IgnoredAny>> {
        self.lookup_with(key, record::decode_for_hit)
    }

    fn lookup_with<C>(
        &self,
        key: &str,
        decode: fn(&[u8]) -> Result<Decoded<C>, RecordError>,
    ) -> io::Result<Lookup<C>> {
        let path = self.record_path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Missing),
            Err(e) => return Err(e),
        };
        match decode(&bytes) {
            Ok(d) if d.record.key == key => Ok(Lookup::Found(Box::new(d))),
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
                Ok(Lookup::Corrupt(RecordError::Malformed))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Ok(Lookup::Corrupt(e))
            }
        }
    }

    /// Drop the record for `key` (its blobs are left for gc: other records may share them).
    pub fn remove_record(&self, key: &str) {
        let _ = std::fs::remove_file(self.record_path(key));
    }

    /// Write a record atomically (its blobs must already be stored). Returns the bytes written.
    pub fn write_record(
        &self,
        rec: &Record,
        inline_stdout: &[u8],
        inline_stderr: &[u8],
    ) -> Result<u64> {
        let bytes = record::encode(rec, inline_stdout, inline_stderr);
        fsutil::write_atomic(&self.record_path(&rec.key), &self.tmp, &bytes)
            .with_context(|| format!("writing record in {}", self.ac.display()))?;
        Ok(bytes.len() as u64)
    }

    /// The lock that orders stores against gc's blob deletion. A store holds it shared from
    /// the moment it may reuse an existing blob until its record is written; gc holds it
    /// exclusively while it makes its last check and deletes blobs. So a blob a store has just
    /// reused is either seen referenced by gc (the record exists) or gone before the store
    /// looked (and written again).
    pub fn blob_lock(&self, exclusive: bool) -> io::Result<std::fs::File> {
        let f = self.lock_file(Item::CasLock)?;
        if exclusive {
            f.lock()?;
        } else {
            f.lock_shared()?;
        }
        Ok(f)
    }

    /// Open (creating) one of the cache's lock files. The lock is taken on the open file
    /// (`File::lock`), never on its content, which stays empty.
    pub fn lock_file(&self, item: Item) -> io::Result<std::fs::File> {
        let path = item.path(&self.root);
        std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))
    }

    fn ledger_path(&self) -> PathBuf {
        Item::SizeLedger.path(&self.root)
    }

    /// Add `delta` bytes to the running size total and return the new total. The total is exact after
    /// each gc (which measures the disk) and drifts only by what failed stores leave behind, so
    /// a store can decide whether to start an automatic gc without opening the index.
    pub fn add_to_ledger(&self, delta: i64) -> io::Result<u64> {
        use std::io::{Read, Seek, Write};
        let mut f = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.ledger_path())?;
        f.lock()?;
        let mut buf = [0u8; 8];
        let total = match f.read_exact(&mut buf) {
            Ok(()) => u64::from_le_bytes(buf),
            Err(_) => 0,
        };
        let total = total.saturating_add_signed(delta);
        f.rewind()?;
        f.write_all(&total.to_le_bytes())?;
        Ok(total)
    }

    /// Set the running size total (after gc measured it).
    pub fn set_ledger(&self, total: u64) {
        let _ = fsutil::write_atomic(&self.ledger_path(), &self.tmp, &total.to_le_bytes());
    }

    /// Append a usage event. Returns whether the journal has grown past
    /// [`journal::FOLD_THRESHOLD`] and should be folded. A store that was never created (a
    /// `--no-store` lookup on an empty cache) has nothing to record usage against: `Ok(false)`.
    pub fn log(&self, event: &journal::Event) -> io::Result<bool> {
        match journal::append(&self.journal, event, self.session.as_deref()) {
            Ok(len) => Ok(len > journal::FOLD_THRESHOLD),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.root.exists() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The store as the place where stat caches live.
pub struct StoreStatCaches<'a>(pub Option<&'a Store>);

impl StatCacheDir for StoreStatCaches<'_> {
    fn stat_cache_file(&self, id: &str) -> Option<PathBuf> {
        self.0.map(|s| fanout(&s.stat, id))
    }
    fn tmp_dir(&self) -> Option<PathBuf> {
        self.0.filter(|s| s.tmp.is_dir()).map(|s| s.tmp.clone())
    }
}
