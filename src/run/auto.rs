//! `--trace auto`: the lookup through the command's manifest, and, after a traced miss, what
//! the run depended on (its observed inputs) and what it produced (its observed outputs).
//!
//! The job's key is the manifest's: everything known before running. Each stored run adds a
//! candidate to it (see [`crate::store::manifest`]); the entry's own key adds the observed
//! inputs to the manifest's components, so an entry names everything it was made from and the
//! remote tier can check it like any other.

use super::Job;
use super::fault::{self, Fault};
use super::policy::NotStored;
use crate::key::observed::{Ignore, ObservedInputs, Recipe, Seen, SeenKind, key_path};
use crate::store::manifest::Selection;
use crate::trace::{Access, Observed};
use crate::warn;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the manifest says about this run.
pub(super) enum Selected {
    /// Every observed input of this entry's run is as it was.
    Entry(String),
    /// No candidate can be served: why (for `-v` and `--explain`), and the entry of a matching
    /// candidate that is gone, if one matched.
    Miss(String, Option<String>),
}

/// Check the manifest's candidates, newest first, against the file system now.
pub(super) fn select(job: &Job) -> Selected {
    let store = &job.store;
    let selected = store.select(&job.key, job.cwd);
    tracing::debug!(
        key = %job.key,
        found = matches!(selected, Ok(Selection::Entry(_))),
        "lookup (manifest)"
    );
    match selected {
        Ok(Selection::Entry(e)) => Selected::Entry(e),
        Ok(Selection::NoMatch(no)) => Selected::Miss(no.why, no.gone),
        Ok(Selection::Missing) => Selected::Miss("no entry".to_owned(), None),
        Ok(Selection::Corrupt(e)) => {
            fault::report(
                Some(store),
                Fault::Corrupt,
                warn::CACHE,
                format_args!("dropped a corrupt manifest ({e}); running the command"),
            );
            Selected::Miss("corrupt manifest".to_owned(), None)
        }
        Err(e) => {
            fault::report(
                Some(store),
                Fault::Read,
                warn::CACHE,
                format_args!("cannot read the cache: {e}; running the command"),
            );
            Selected::Miss("unreadable manifest".to_owned(), None)
        }
    }
}

/// What a traced run depended on and produced.
pub(super) struct Traced {
    pub inputs: ObservedInputs,
    /// Paths under the working directory it created or wrote and left there (relative).
    pub outputs: Vec<PathBuf>,
    /// Paths outside the working directory and the temp dir it wrote: a hit does not write
    /// them again.
    pub side_effects: Vec<String>,
    /// What it connected to outside the traced tree.
    pub peers: Vec<String>,
}

/// Why a traced run is not stored.
pub(super) struct Refused {
    pub reason: NotStored,
    pub why: String,
}

fn refused(reason: NotStored, why: String) -> Refused {
    Refused { reason, why }
}

/// Judge a traced run: its observed inputs as they are now (refused if one changed while it
/// ran), its outputs and its side effects. `started` is [`crate::clock::coarse_now`] before it started.
pub(super) fn judge(
    job: &Job,
    trace: Option<&Result<Observed, String>>,
    started: (i64, i64),
) -> Result<Traced, Refused> {
    let observed = match trace {
        Some(Ok(o)) => o,
        Some(Err(why)) => return Err(refused(NotStored::Untraced, why.clone())),
        None => {
            return Err(refused(
                NotStored::Untraced,
                "the command was not traced".to_owned(),
            ));
        }
    };
    if let Some(why) = &observed.not_traced {
        return Err(refused(NotStored::Untraced, why.clone()));
    }
    if !observed.untraceable.is_empty() {
        let list: Vec<&str> = observed.untraceable.iter().map(String::as_str).collect();
        return Err(refused(NotStored::Untraceable, list.join(", ")));
    }
    if observed.outlived {
        return Err(refused(
            NotStored::Untraceable,
            "a process it started was still running when it ended".to_owned(),
        ));
    }
    let cwd = job.cwd;
    let skip = Skip::new(job);
    // (As the command sees it: TMPDIR, else /tmp.)
    let temp = std::env::temp_dir();
    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    let mut outputs = Vec::new();
    let mut side_effects = Vec::new();
    // Directory → names of the run's outputs in it; directories whose entries the run changed.
    let mut made: BTreeMap<&Path, Vec<String>> = BTreeMap::new();
    let mut changed_dirs: BTreeSet<&Path> = BTreeSet::new();
    for (abs, a) in &observed.paths {
        if skip.skips(abs, cwd) || !a.changed() {
            continue;
        }
        if let Some(parent) = abs.parent() {
            changed_dirs.insert(parent);
        }
        if !a.written || !exists(abs) {
            continue;
        }
        match abs.strip_prefix(cwd) {
            Ok(rel) if !rel.as_os_str().is_empty() => {
                outputs.push(rel.to_path_buf());
                if let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) {
                    made.entry(parent)
                        .or_default()
                        .push(crate::paths::encode_os(name));
                }
            }
            Ok(_) => {}
            Err(_) if abs.starts_with(&temp) => {}
            Err(_) => side_effects.push(crate::paths::encode_os(abs.as_os_str())),
        }
    }
    let mut cache = job.store.manifest_stat_cache(&job.key);
    let mut inputs = ObservedInputs::new();
    for (abs, a) in &observed.paths {
        if skip.skips(abs, cwd) {
            continue;
        }
        let key = key_path(abs, cwd);
        if let Some(seen) = changed_input(abs, cwd, a, &exists)? {
            inputs.insert(key, seen);
            continue;
        }
        if a.changed() || !a.is_input() {
            continue;
        }
        let recipe = Recipe {
            content: a.read || a.executed,
            stamp: a.probed && !(a.read || a.executed),
            listing: a
                .listed
                .then(|| made.get(abs.as_path()).cloned().unwrap_or_default()),
            rewritten: false,
        };
        let seen = Seen::look(abs, &recipe, &mut cache).map_err(|e| {
            refused(
                NotStored::Untraceable,
                format!("cannot look at {} again: {e}", abs.display()),
            )
        })?;
        // (Since its first use: a change before that is what the run saw.)
        let since = a.first_use.unwrap_or(started);
        let changed = match seen.kind {
            SeenKind::File => touched_since(abs, since),
            // A listed directory's entries; one only looked at must not have appeared since
            // (its mtime moves with every entry the run itself adds).
            SeenKind::Dir if seen.listing.is_some() && !changed_dirs.contains(abs.as_path()) => {
                touched_since(abs, since)
            }
            SeenKind::Dir | SeenKind::Other => born_since(abs, since),
            _ => false,
        };
        if changed {
            return Err(refused(
                NotStored::TracedInputChanged,
                format!("{} changed while the command ran", abs.display()),
            ));
        }
        inputs.insert(key, seen);
    }
    if job.store.tmp.is_dir() {
        cache.save(&job.store.tmp);
    }
    let peers: Vec<String> = observed.peers.iter().cloned().collect();
    if job.opts.verbose {
        for s in &side_effects {
            crate::note!(
                "cachectl: wrote outside the working directory (a hit does not redo it): {}",
                crate::paths::display_encoded(s)
            );
        }
        for p in &peers {
            crate::note!(
                "cachectl: talked to something outside the command (its answers are not keyed): {p}"
            );
        }
    }
    Ok(Traced {
        inputs,
        outputs,
        side_effects,
        peers,
    })
}

/// The key's state of a path the run changed: a file it read first is keyed by what it read
/// (`sed -i`); one it removed without having written it is keyed as absent (a hit cannot
/// remove it, so it may only be served where the path is already gone). `None`: not an input
/// (its outputs and temporaries), or not changed.
fn changed_input(
    abs: &Path,
    cwd: &Path,
    a: &Access,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Option<Seen>, Refused> {
    if !a.changed() {
        return Ok(None);
    }
    if a.written {
        // Kept content the run did not read (`>>`) matters only for an output, which a hit
        // restores whole: outside the working directory it is a side effect.
        let kept = a.read || abs.starts_with(cwd);
        return Ok(match &a.digest_before_change {
            Some(d) if kept && exists(abs) => Some(Seen::rewritten(d.clone())),
            _ => None,
        });
    }
    if exists(abs) {
        return Err(refused(
            NotStored::TracedInputChanged,
            format!(
                "{} was removed by the command and exists again",
                abs.display()
            ),
        ));
    }
    Ok(Some(Seen::absent()))
}

/// Whether what is at `abs` came into being at or after `since` (its birth time, where the
/// file system keeps one).
fn born_since(abs: &Path, since: (i64, i64)) -> bool {
    let Ok(born) = std::fs::metadata(abs).and_then(|m| m.created()) else {
        return false;
    };
    let Ok(d) = born.duration_since(std::time::UNIX_EPOCH) else {
        return false;
    };
    (d.as_secs() as i64, i64::from(d.subsec_nanos())) >= since
}

/// Whether the file (or listed directory) at `abs` was modified, or its inode changed, at or
/// after `since`.
fn touched_since(abs: &Path, since: (i64, i64)) -> bool {
    match std::fs::metadata(abs) {
        Ok(m) => (m.mtime(), m.mtime_nsec()) >= since || (m.ctime(), m.ctime_nsec()) >= since,
        Err(_) => true,
    }
}

/// What tracing leaves out: the cache directory and `trace_ignore` (the kernel's views are left
/// out by the tracer).
struct Skip {
    roots: Vec<PathBuf>,
    ignore: Ignore,
}

impl Skip {
    fn new(job: &Job) -> Skip {
        let root = job.cwd.join(&job.store.root);
        let mut roots = vec![crate::paths::resolve_lexically(&root)];
        if let Ok(real) = std::fs::canonicalize(&root) {
            roots.push(real);
        }
        Skip {
            roots,
            ignore: Ignore::new(&job.opts.trace_ignore),
        }
    }

    fn skips(&self, abs: &Path, cwd: &Path) -> bool {
        self.roots.iter().any(|r| abs.starts_with(r))
            || self.ignore.matches(&key_path(abs, cwd), abs)
    }
}
