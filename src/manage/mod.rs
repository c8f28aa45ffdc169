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
    let mut index = Index::open(&store)?;
    index.fold_journal(&store)?;
    Ok((store, index))
}
