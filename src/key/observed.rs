//! Observed inputs (`--trace auto`): what a traced run could have learned about each path it
//! depended on, as the key records it, and the same look at a path now.
//!
//! The rules (issue 14, "what a path's key records"):
//! - content read through a descriptor or executed: the content digest;
//! - probed by path only (stat, access, readlink): a file's kind, size and mtime; that a
//!   directory is one; a symlink's text; that a missing path is absent;
//! - listed: the sorted names (without the names of the run's own outputs);
//! - read and then changed by the run (`sed -i`): the content it read, nothing else.
//!
//! A stored [`Seen`] carries its own recipe: a lookup looks at the path the same way
//! ([`Recipe::of`]) and compares. Content goes through the stat cache, so an unchanged file is
//! one `stat`, not a read.

use super::Digest;
use super::inputs::hash_file;
use super::statcache::{Stamp, StatCache};
use crate::paths::{decode_os, display_encoded, encode_os};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Observed inputs: path (relative to the working directory when under it, else absolute;
/// encoded with [`encode_os`]) → what the run could have learned about it.
pub type ObservedInputs = BTreeMap<String, Seen>;

/// What a path was.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SeenKind {
    File,
    Dir,
    Absent,
    /// A fifo, socket or device.
    Other,
    /// A file the run read and then changed: only the content it read is keyed.
    Rewritten,
    /// Out of reach: a directory on the way may not be searched (a `PATH` entry of another
    /// user's), so the run learned only that.
    Denied,
}

impl SeenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SeenKind::File => "file",
            SeenKind::Dir => "dir",
            SeenKind::Absent => "absent",
            SeenKind::Other => "other",
            SeenKind::Rewritten => "rewritten",
            SeenKind::Denied => "denied",
        }
    }
}

/// A probed file's size and modification time (what make or Python's imports decide on).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_s: i64,
    pub mtime_ns: u32,
}

/// One path's state, as much of it as the run could have learned.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// What the path leads to (symlinks followed).
    pub kind: SeenKind,
    /// The path itself is a symlink with this text (encoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The content digest (files read or executed; `Rewritten`: the content before the run
    /// changed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Digest>,
    /// Size and mtime (files probed but not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<FileStamp>,
    /// Any execute bit (files).
    #[serde(default, skip_serializing_if = "is_false")]
    pub exec: bool,
    /// Digest of the sorted names (directories listed), without `unlisted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<Digest>,
    /// Names left out of `listing`: the run's own outputs in that directory, which a hit
    /// restores (so whether they are there before does not matter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlisted: Vec<String>,
    /// The names themselves (encoded, sorted), for a listing of at most [`NAMED_LISTING`]:
    /// so that `explain` can say which entry is new or gone. Not keyed apart: `listing` is
    /// their digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
}

/// Listings up to this many names keep the names (see [`Seen::names`]).
pub const NAMED_LISTING: usize = 64;

fn is_false(b: &bool) -> bool {
    !b
}

/// How to look at a path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Recipe {
    /// Hash a file's content.
    pub content: bool,
    /// Keep a file's size and mtime (when its content is not hashed).
    pub stamp: bool,
    /// List a directory, leaving these names out.
    pub listing: Option<Vec<String>>,
    /// The run changed the path after reading it: only its content counts.
    pub rewritten: bool,
}

impl Recipe {
    /// The recipe a stored state was made with.
    pub fn of(seen: &Seen) -> Recipe {
        Recipe {
            content: seen.content.is_some() || seen.kind == SeenKind::Rewritten,
            stamp: seen.stamp.is_some(),
            listing: seen.listing.as_ref().map(|_| seen.unlisted.clone()),
            rewritten: seen.kind == SeenKind::Rewritten,
        }
    }
}

impl Seen {
    fn of_kind(kind: SeenKind) -> Seen {
        Seen {
            kind,
            link: None,
            content: None,
            stamp: None,
            exec: false,
            listing: None,
            unlisted: Vec::new(),
            names: None,
        }
    }

    /// A file the run read and then changed: `digest` is what it read.
    pub fn rewritten(digest: Digest) -> Seen {
        Seen {
            content: Some(digest),
            ..Seen::of_kind(SeenKind::Rewritten)
        }
    }

    /// A path the run removed without having created it: a hit cannot remove it, so it is
    /// keyed as absent.
    pub fn absent() -> Seen {
        Seen::of_kind(SeenKind::Absent)
    }

    /// Look at `abs` as `recipe` says. Errors other than "not there" are errors: the state is
    /// unknown.
    pub fn look(abs: &Path, recipe: &Recipe, cache: &mut StatCache) -> io::Result<Seen> {
        if recipe.rewritten {
            return Ok(match std::fs::metadata(abs) {
                Ok(m) if m.is_file() => Seen::rewritten(content(abs, &m, cache)?),
                Ok(_) => Seen::of_kind(SeenKind::Rewritten),
                Err(e) if gone(&e) => Seen::of_kind(SeenKind::Rewritten),
                Err(e) => return Err(e),
            });
        }
        let lmeta = match std::fs::symlink_metadata(abs) {
            Ok(m) => m,
            Err(e) if gone(&e) => return Ok(Seen::absent()),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Ok(Seen::of_kind(SeenKind::Denied));
            }
            Err(e) => return Err(e),
        };
        let (link, meta) = if lmeta.file_type().is_symlink() {
            let text = std::fs::read_link(abs)?;
            let link = Some(encode_os(text.as_os_str()));
            match std::fs::metadata(abs) {
                Ok(m) => (link, m),
                Err(e) if gone(&e) || e.raw_os_error() == Some(libc::ELOOP) => {
                    return Ok(Seen {
                        link,
                        ..Seen::absent()
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Ok(Seen {
                        link,
                        ..Seen::of_kind(SeenKind::Denied)
                    });
                }
                Err(e) => return Err(e),
            }
        } else {
            (None, lmeta)
        };
        let mut seen = Seen {
            link,
            ..Seen::of_kind(SeenKind::Other)
        };
        if meta.is_file() {
            seen.kind = SeenKind::File;
            seen.exec = meta.mode() & 0o111 != 0;
            if recipe.content {
                seen.content = Some(content(abs, &meta, cache)?);
            } else if recipe.stamp {
                seen.stamp = Some(FileStamp {
                    size: meta.size(),
                    mtime_s: meta.mtime(),
                    mtime_ns: meta.mtime_nsec() as u32,
                });
            }
        } else if meta.is_dir() {
            seen.kind = SeenKind::Dir;
            if let Some(unlisted) = &recipe.listing {
                let (digest, names) = listing(abs, unlisted)?;
                seen.listing = Some(digest);
                seen.names = (names.len() <= NAMED_LISTING).then(|| {
                    names
                        .iter()
                        .map(|n| encode_os(OsStr::from_bytes(n)))
                        .collect()
                });
                seen.unlisted = unlisted.clone();
            }
        }
        Ok(seen)
    }

    /// How this state differs from `before`, in words (`explain`): "content differs", "now
    /// exists"...
    pub fn difference(&self, before: &Seen) -> String {
        let what = |k: SeenKind| match k {
            SeenKind::Absent => "absent",
            SeenKind::Dir => "a directory",
            SeenKind::Other => "not a file",
            SeenKind::Denied => "out of reach",
            SeenKind::File | SeenKind::Rewritten => "a file",
        };
        if self.kind != before.kind {
            return match (before.kind, self.kind) {
                (SeenKind::Absent, _) => "now exists".to_owned(),
                (_, SeenKind::Absent) => "now absent".to_owned(),
                (SeenKind::Rewritten, _) => "now absent".to_owned(),
                (b, n) => format!("was {}, now {}", what(b), what(n)),
            };
        }
        if self.link != before.link {
            return "symlink changed".to_owned();
        }
        if self.content != before.content {
            return "content differs".to_owned();
        }
        if self.stamp != before.stamp {
            return "size or modification time differs".to_owned();
        }
        if self.exec != before.exec {
            return "execute permission changed".to_owned();
        }
        if self.listing != before.listing {
            if let (Some(now), Some(then)) = (&self.names, &before.names) {
                let shown = |n: &String| display_encoded(n);
                if let Some(new) = now.iter().find(|n| !then.contains(n)) {
                    return format!("new entry {}", shown(new));
                }
                if let Some(gone) = then.iter().find(|n| !now.contains(n)) {
                    return format!("entry {} gone", shown(gone));
                }
            }
            return "directory entries differ".to_owned();
        }
        "differs".to_owned()
    }
}

fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// A file's content digest through the stat cache.
fn content(abs: &Path, meta: &std::fs::Metadata, cache: &mut StatCache) -> io::Result<Digest> {
    let stamp = Stamp::of(meta);
    let digest = match cache.get(abs, &stamp) {
        Some(d) => d,
        None => {
            let d = hash_file(abs, stamp.size)?;
            cache.put(abs, &stamp, d);
            d
        }
    };
    Ok(blake3::Hash::from_bytes(digest).to_hex().to_string())
}

/// The digest of a directory's sorted names, leaving `unlisted` out, and the names.
fn listing(abs: &Path, unlisted: &[String]) -> io::Result<(Digest, Vec<Vec<u8>>)> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    for entry in std::fs::read_dir(abs)? {
        let name = entry?.file_name().into_vec();
        if !unlisted
            .iter()
            .any(|u| decode_os(u).as_bytes() == name.as_slice())
        {
            names.push(name);
        }
    }
    names.sort();
    let mut h = blake3::Hasher::new();
    for n in &names {
        h.update(&(n.len() as u64).to_le_bytes());
        h.update(n);
    }
    Ok((h.finalize().to_hex().to_string(), names))
}

/// The key's name for `abs`: relative to `cwd` when under it (`.` for `cwd` itself), so that
/// entries of `--no-cwd` commands are shared between checkouts; absolute otherwise.
pub fn key_path(abs: &Path, cwd: &Path) -> String {
    match abs.strip_prefix(cwd) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_owned(),
        Ok(rel) => encode_os(rel.as_os_str()),
        Err(_) => encode_os(abs.as_os_str()),
    }
}

/// The absolute path a key's name stands for in `cwd`.
pub fn abs_path(key: &str, cwd: &Path) -> PathBuf {
    let p = PathBuf::from(decode_os(key));
    if p.is_absolute() {
        p
    } else if key == "." {
        cwd.to_path_buf()
    } else {
        cwd.join(p)
    }
}

/// The first observed input whose state now differs from `inputs`, with the state now (`Err`:
/// it cannot be looked at). `None`: every input is as it was. With a `memo` (several
/// candidates to check), each look is made once.
pub fn first_change(
    inputs: &ObservedInputs,
    cwd: &Path,
    cache: &mut StatCache,
    mut memo: Option<&mut Memo>,
) -> Option<(String, io::Result<Seen>)> {
    for (key, seen) in inputs {
        let recipe = Recipe::of(seen);
        let now = match memo.as_deref_mut() {
            Some(m) => m.look(key, &recipe, cwd, cache).clone(),
            None => Seen::look(&abs_path(key, cwd), &recipe, cache).map_err(|e| e.kind()),
        };
        match now {
            Ok(now) if now == *seen => continue,
            Ok(now) => return Some((key.clone(), Ok(now))),
            Err(kind) => return Some((key.clone(), Err(io::Error::from(kind)))),
        }
    }
    None
}

/// Looks already made during one lookup: candidates share most of their paths.
#[derive(Default)]
pub struct Memo {
    looked: std::collections::HashMap<(String, Recipe), Result<Seen, io::ErrorKind>>,
}

impl Memo {
    fn look(
        &mut self,
        key: &str,
        recipe: &Recipe,
        cwd: &Path,
        cache: &mut StatCache,
    ) -> &Result<Seen, io::ErrorKind> {
        self.looked
            .entry((key.to_owned(), recipe.clone()))
            .or_insert_with(|| Seen::look(&abs_path(key, cwd), recipe, cache).map_err(|e| e.kind()))
    }
}

/// The `trace_ignore` patterns: relative ones match paths under the working directory
/// (relative to it), absolute ones absolute paths.
pub struct Ignore {
    set: globset::GlobSet,
}

impl Ignore {
    /// Patterns were checked when the config was read; one that still fails is skipped.
    pub fn new(patterns: &[String]) -> Ignore {
        let mut b = globset::GlobSetBuilder::new();
        for p in patterns {
            if let Ok(g) = crate::config::trace_ignore_glob(p) {
                b.add(g);
            }
        }
        Ignore {
            set: b.build().unwrap_or_else(|_| globset::GlobSet::empty()),
        }
    }

    /// Whether the path `abs`, named `key` in the key, is left out.
    pub fn matches(&self, key: &str, abs: &Path) -> bool {
        !self.set.is_empty() && (self.set.is_match(decode_os(key)) || self.set.is_match(abs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(p: &Path, r: &Recipe) -> Seen {
        Seen::look(p, r, &mut StatCache::default()).unwrap()
    }

    #[test]
    fn each_recipe_records_what_it_says() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        let content = Recipe {
            content: true,
            ..Recipe::default()
        };
        let stamp = Recipe {
            stamp: true,
            ..Recipe::default()
        };
        let s = look(&f, &content);
        assert_eq!(s.kind, SeenKind::File);
        assert_eq!(s.content.as_deref(), Some(&*crate::key::hex_digest(b"x")));
        assert!(s.stamp.is_none());
        assert_eq!(Recipe::of(&s), content);
        let s = look(&f, &stamp);
        assert_eq!(s.stamp.unwrap().size, 1);
        assert!(s.content.is_none());
        assert_eq!(Recipe::of(&s), stamp);
        assert_eq!(look(&dir.path().join("none"), &content), Seen::absent());
        // Through a file: ENOTDIR is absent too.
        assert_eq!(look(&f.join("below"), &content), Seen::absent());
    }

    #[test]
    fn listings_leave_out_the_runs_outputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "").unwrap();
        let r = Recipe {
            listing: Some(vec!["out".into()]),
            ..Recipe::default()
        };
        let before = look(dir.path(), &r);
        std::fs::write(dir.path().join("out"), "").unwrap();
        assert_eq!(look(dir.path(), &r), before);
        std::fs::write(dir.path().join("b"), "").unwrap();
        let after = look(dir.path(), &r);
        assert_ne!(after, before);
        assert_eq!(after.difference(&before), "new entry b");
        assert_eq!(before.difference(&after), "entry b gone");
    }

    #[test]
    fn symlinks_record_their_text_and_what_they_lead_to() {
        let dir = tempfile::tempdir().unwrap();
        let l = dir.path().join("l");
        std::os::unix::fs::symlink("missing", &l).unwrap();
        let r = Recipe {
            content: true,
            ..Recipe::default()
        };
        let dangling = look(&l, &r);
        assert_eq!(dangling.kind, SeenKind::Absent);
        assert_eq!(dangling.link.as_deref(), Some("missing"));
        std::fs::write(dir.path().join("missing"), "y").unwrap();
        let now = look(&l, &r);
        assert_eq!(now.kind, SeenKind::File);
        assert_eq!(now.difference(&dangling), "now exists");
    }

    #[test]
    fn ignore_patterns_are_relative_to_the_working_directory() {
        let cwd = Path::new("/w");
        let i = Ignore::new(&["*.log".into(), "cache/**".into(), "/var/**".into()]);
        let m = |abs: &str| i.matches(&key_path(Path::new(abs), cwd), Path::new(abs));
        assert!(m("/w/build.log"));
        assert!(!m("/w/sub/build.log"), "* stays in one directory");
        assert!(m("/w/cache/a/b"));
        assert!(m("/var/lib/x"));
        assert!(!m("/w/src/a.c"));
        assert!(
            !m("/tmp/x.log"),
            "relative patterns are relative to the working directory"
        );
    }

    #[test]
    fn key_paths_are_relative_under_the_working_directory() {
        let cwd = Path::new("/w/proj");
        assert_eq!(key_path(Path::new("/w/proj/src/a.c"), cwd), "src/a.c");
        assert_eq!(key_path(Path::new("/w/proj"), cwd), ".");
        assert_eq!(
            key_path(Path::new("/usr/include/stdio.h"), cwd),
            "/usr/include/stdio.h"
        );
        for k in ["src/a.c", ".", "/usr/include/stdio.h"] {
            assert_eq!(key_path(&abs_path(k, cwd), cwd), k);
        }
    }
}
