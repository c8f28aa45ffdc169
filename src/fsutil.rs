//! Filesystem primitives every store write goes through.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temp path in `tmp_dir` (same filesystem as the store, so `rename` is atomic).
pub fn temp_path(tmp_dir: &Path, tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    tmp_dir.join(format!("{tag}.{}.{n}.{nanos:08x}", std::process::id()))
}

/// A temp file removed on drop unless it was persisted.
pub struct TempFile {
    pub path: PathBuf,
    pub file: File,
    keep: bool,
}

impl TempFile {
    pub fn new(tmp_dir: &Path, tag: &str) -> std::io::Result<Self> {
        let path = temp_path(tmp_dir, tag);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempFile {
            path,
            file,
            keep: false,
        })
    }

    /// Atomically move the temp file to `dest`, creating `dest`'s parent directory if needed.
    pub fn persist(mut self, dest: &Path) -> std::io::Result<()> {
        rename_creating_parent(&self.path, dest)?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `rename(from, to)`, creating `to`'s parent on `NotFound`.
pub fn rename_creating_parent(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(from, to)
        }
        other => other,
    }
}

/// Write `bytes` to `dest` atomically: temp file in `tmp_dir`, then rename.
pub fn write_atomic(dest: &Path, tmp_dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut t = TempFile::new(tmp_dir, "w")?;
    t.file.write_all(bytes)?;
    t.persist(dest)
}

/// `ab/abcdef…` fan-out so that no directory holds more than a few thousand entries.
pub fn fanout(dir: &Path, name: &str) -> PathBuf {
    let prefix = name.get(..2).unwrap_or("00");
    dir.join(prefix).join(name)
}
