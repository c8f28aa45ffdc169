//! Per-key locks: identical concurrent misses run the command once.
//!
//! `locks-v1/ab/<key>` is locked exclusively (flock, released by the kernel if the holder dies,
//! even under kill -9) by the process that runs a miss; others wait for it, then look again and
//! usually hit. Waiting is bounded by `lock_timeout`, after which the waiter runs uncached.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

/// A held lock; released on drop.
pub struct KeyLock {
    _file: File,
}

pub enum LockOutcome {
    /// Acquired without waiting.
    Acquired(KeyLock),
    /// Acquired after another process released it: look the key up again.
    AcquiredAfterWait(KeyLock),
    TimedOut,
}

fn open(path: &Path) -> std::io::Result<File> {
    let open = || {
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p)?;
            }
            open()
        }
        other => other,
    }
}

/// Take the lock at `path`, waiting up to `timeout`.
pub fn acquire(path: &Path, timeout: Duration) -> std::io::Result<LockOutcome> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => return Ok(LockOutcome::Acquired(KeyLock { _file: file })),
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(e)) => return Err(e),
    }
    tracing::debug!(lock = %path.display(), "waiting for a concurrent identical run");
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        std::thread::sleep(pause);
        match file.try_lock() {
            Ok(()) => return Ok(LockOutcome::AcquiredAfterWait(KeyLock { _file: file })),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(e),
        }
        if start.elapsed() >= timeout {
            return Ok(LockOutcome::TimedOut);
        }
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Take the lock only if it is free right now (stale refresh: one refresher per key).
pub fn try_acquire(path: &Path) -> std::io::Result<Option<KeyLock>> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(KeyLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}
