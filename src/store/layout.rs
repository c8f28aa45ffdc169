//! Every file and folder of a cache directory, named in one place (uv's `CacheBucket` is the
//! model). Code asks for an [`Item`]'s path instead of spelling a name, and a test checks that
//! docs/format.md describes each of them, so the layout cannot grow a file nobody documented.
//!
//! The format version is in every versioned name (`ac-v1`, `journal-v1.log`): a new format gets
//! new names, and old ones are pruned, never migrated.

use std::path::{Path, PathBuf};

/// One file or folder of the cache directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// `CACHEDIR.TAG`: backup tools skip the directory.
    CachedirTag,
    /// `.gitignore` (`*`): git ignores the directory.
    Gitignore,
    /// `ac-v1/ab/<key>`: one record per key.
    Records,
    /// `cas-v1/ab/<digest>`: blobs named by the blake3 of their content.
    Blobs,
    /// `mf-v1/ab/<key>`: manifests of `--trace auto` commands (observed-input sets → entries).
    Manifests,
    /// `stat-v1/ab/<id>`: stat caches of input patterns and executables.
    StatCaches,
    /// `locks-v1/ab/<key>` (and `<key>.refresh`): per-key flock files.
    KeyLocks,
    /// `tmp/`: temp files, renamed into place (same filesystem).
    Tmp,
    /// `journal-v1.log`: appended usage events.
    Journal,
    /// `index-v1.sqlite` (with SQLite's `-wal` and `-shm`): the derived index.
    Index,
    /// `size-v1`: the running total of bytes stored (decides when to auto-gc).
    SizeLedger,
    /// `remote-v1.down`: the remote tier's circuit breaker.
    RemoteBreaker,
    /// `gc.lock`: one gc at a time.
    GcLock,
    /// `fold.lock`: one journal fold at a time.
    FoldLock,
    /// `index.lock`: creating, migrating or rebuilding the index.
    IndexLock,
    /// `cas.lock`: stores share it while reusing blobs; gc and invalidate take it alone.
    CasLock,
}

impl Item {
    /// Every item, for the documentation test and for tools that list the layout.
    pub const ALL: [Item; 16] = [
        Item::CachedirTag,
        Item::Gitignore,
        Item::Records,
        Item::Blobs,
        Item::Manifests,
        Item::StatCaches,
        Item::KeyLocks,
        Item::Tmp,
        Item::Journal,
        Item::Index,
        Item::SizeLedger,
        Item::RemoteBreaker,
        Item::GcLock,
        Item::FoldLock,
        Item::IndexLock,
        Item::CasLock,
    ];

    /// The file or folder name under the cache root.
    pub fn name(self) -> &'static str {
        match self {
            Item::CachedirTag => "CACHEDIR.TAG",
            Item::Gitignore => ".gitignore",
            Item::Records => "ac-v1",
            Item::Blobs => "cas-v1",
            Item::Manifests => "mf-v1",
            Item::StatCaches => "stat-v1",
            Item::KeyLocks => "locks-v1",
            Item::Tmp => "tmp",
            Item::Journal => "journal-v1.log",
            Item::Index => "index-v1.sqlite",
            Item::SizeLedger => "size-v1",
            Item::RemoteBreaker => "remote-v1.down",
            Item::GcLock => "gc.lock",
            Item::FoldLock => "fold.lock",
            Item::IndexLock => "index.lock",
            Item::CasLock => "cas.lock",
        }
    }

    /// The item's path under `root`.
    pub fn path(self, root: &Path) -> PathBuf {
        root.join(self.name())
    }
}

/// A journal being folded: `journal-v1.log` renamed to `journal-v1.<ms>.<pid>.folding`.
pub fn folding_journal(root: &Path, ms: u64, pid: u32) -> PathBuf {
    root.join(format!("journal-v1.{ms}.{pid}.folding"))
}

/// Whether a file name is a journal being folded (see [`folding_journal`]).
pub fn is_folding_journal(name: &str) -> bool {
    name.starts_with("journal-v1.") && name.ends_with(".folding")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/format.md is the reference of the on-disk format: every file and folder of the
    /// cache must be in it.
    #[test]
    fn docs_format_md_names_every_item() {
        let doc = include_str!("../../docs/format.md");
        for item in Item::ALL {
            assert!(
                doc.contains(item.name()),
                "docs/format.md does not mention `{}` ({item:?})",
                item.name()
            );
        }
        assert!(
            doc.contains(".folding"),
            "docs/format.md: the folding journal"
        );
    }

    #[test]
    fn names_are_distinct() {
        let mut names: Vec<&str> = Item::ALL.iter().map(|i| i.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Item::ALL.len());
    }
}
