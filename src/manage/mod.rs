//! The management commands' logic: each returns data (serialisable for `--json`); the command
//! files in `commands/` print it.

pub mod explain;
pub mod gc;
pub mod invalidate;
pub mod stats;
pub mod verify;

use crate::store::Store;
use crate::store::index::Index;
use anyhow::{Result, bail};
use std::path::PathBuf;

/// Open the store at `root` with its index, folding pending usage events in.
pub fn open(root: Option<PathBuf>) -> Result<(Store, Index)> {
    let Some(root) = root else {
        bail!("no cache directory: set CACHECTL_DIR or HOME, or pass --dir");
    };
    let store = Store::at(root);
    store.check_safe()?;
    if !store.root.exists() {
        // Nothing cached yet: answer from an empty index rather than create a cache.
        return Ok((store, Index::empty()?));
    }
    // A damaged index (garbage pages) shows up on open or on the first real query: it is only
    // derived data, so it is rebuilt from the files and the command goes on.
    let attempt = Index::open(&store).and_then(|mut i| {
        i.fold_journal(&store)?;
        i.entry_count()?;
        Ok(i)
    });
    let index = match attempt {
        Ok(i) => i,
        Err(e) if crate::store::index::is_corrupt(&e) => {
            let mut i = Index::rebuild(&store, &e)?;
            i.fold_journal(&store)?;
            i
        }
        Err(e) => return Err(e),
    };
    Ok((store, index))
}

/// Rebuild the index of the configured cache after `err` showed it damaged.
pub fn rebuild_index(
    dir: Option<(PathBuf, crate::config::Source)>,
    err: &anyhow::Error,
) -> Result<()> {
    let (_, cfg) = crate::config::load_from_cwd(dir)?;
    let Some(root) = cfg.dir.value else {
        bail!("no cache directory");
    };
    Index::rebuild(&Store::at(root), err).map(|_| ())
}
