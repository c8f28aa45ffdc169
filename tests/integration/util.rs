//! Test harness: every test gets a private temp dir holding its own cache, work dir, home and
//! config dirs, and runs the real `cachectl` binary with a clean `CACHECTL_*` environment.
//!
//! Hits are proven by a counter: [`TestContext::counted`] makes a script that appends one line to
//! a file outside the work dir each time it really runs; [`TestContext::hit`] and
//! [`TestContext::miss`] assert that a run left that count unchanged or bumped it by one.

#![allow(dead_code)]

use assert_cmd::assert::{Assert, OutputAssertExt};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Guards against ETXTBSY: a script being written must not be open (as a copy of the writer's fd
/// in a child forked by another test thread) when something execs it. Writes of executables take
/// this lock exclusively; spawns take it shared, and only for the fork+exec itself.
static EXEC_GUARD: RwLock<()> = RwLock::new(());

/// A fixed "now" for tests that use `CACHECTL_TEST_NOW` (2023-11-14T22:13:20Z).
pub const T0: u64 = 1_700_000_000_000;
pub const SEC: u64 = 1000;
pub const MIN: u64 = 60 * SEC;

pub struct TestContext {
    _tmp: tempfile::TempDir,
    /// The temp dir holding everything below.
    pub root: PathBuf,
    /// `CACHECTL_DIR` (not created: cachectl creates it on the first store).
    pub cache: PathBuf,
    /// The working directory of every command (unless a test picks another).
    pub work: PathBuf,
    /// `HOME`, `XDG_CONFIG_HOME`, `XDG_CACHE_HOME` point in here.
    pub home: PathBuf,
    /// Counter file of [`TestContext::counted`] scripts (outside the work dir).
    pub counter: PathBuf,
}

impl TestContext {
    pub fn new() -> TestContext {
        let tmp = tempfile::Builder::new()
            .prefix("cachectl-it-")
            .tempdir()
            .expect("temp dir");
        // Canonical, so that paths compare equal to what cachectl sees as its cwd.
        let root = tmp.path().canonicalize().expect("canonical temp dir");
        let work = root.join("work");
        let home = root.join("home");
        fs::create_dir_all(&work).unwrap();
        fs::create_dir_all(home.join("config")).unwrap();
        TestContext {
            cache: root.join("cache"),
            counter: root.join("count"),
            work,
            home,
            root,
            _tmp: tmp,
        }
    }

    /// `cachectl <args>` in the work dir, with a clean environment and `CACHECTL_TRACE=off`:
    /// most tests are about declared keys, and a traced run of a script written a moment
    /// before is not stored (its file is as new as the run's first look at it). Tests of
    /// tracing pass `--trace` (which wins over the variable) or remove the variable.
    pub fn cachectl(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cachectl"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CACHECTL_") {
                cmd.env_remove(&name);
            }
        }
        cmd.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("CACHECTL_DIR", &self.cache)
            .env("CACHECTL_TRACE", "off")
            .current_dir(&self.work)
            .args(args);
        Run { cmd, stdin: None }
    }

    /// `cachectl run <args>` (args include `--` and the command).
    pub fn run(&self, args: &[&str]) -> Run {
        self.cachectl(&["run"]).args(args)
    }

    /// Times a counted script has really run.
    pub fn count(&self) -> usize {
        fs::read_to_string(&self.counter)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Run and assert that the wrapped command really ran (once).
    #[track_caller]
    pub fn miss(&self, run: Run) -> Assert {
        let before = self.count();
        let a = run.assert();
        let n = self.count();
        assert_eq!(
            n,
            before + 1,
            "expected a miss (one real run)\n{}",
            summary(&a)
        );
        a
    }

    /// Run and assert that the wrapped command did not run.
    #[track_caller]
    pub fn hit(&self, run: Run) -> Assert {
        let before = self.count();
        let a = run.assert();
        let n = self.count();
        assert_eq!(n, before, "expected a hit (no real run)\n{}", summary(&a));
        a
    }

    /// Write a file relative to the work dir (parents created).
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        write_file(&self.work.join(rel), contents.as_ref())
    }

    /// Read a file relative to the work dir.
    pub fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.work.join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    /// Create an executable `#!/bin/sh` script `dir/name` running `body`.
    pub fn script_in(&self, dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        let _guard = EXEC_GUARD.write().unwrap_or_else(|e| e.into_inner());
        write_file(&path, format!("#!/bin/sh\n{body}\n").as_bytes());
        set_mode(&path, 0o755);
        path
    }

    /// Executable script in the work dir.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        self.script_in(&self.work, name, body)
    }

    /// Executable script in `dir` that counts each real run, then runs `body`.
    pub fn counted_in(&self, dir: &Path, name: &str, body: &str) -> PathBuf {
        let count = format!("echo run >> '{}'\n", self.counter.display());
        self.script_in(dir, name, &(count + body))
    }

    /// Counted script in the work dir.
    pub fn counted(&self, name: &str, body: &str) -> PathBuf {
        self.counted_in(&self.work, name, body)
    }

    /// Every file under `cache/<sub>`, sorted.
    pub fn cache_files(&self, sub: &str) -> Vec<PathBuf> {
        files_under(&self.cache.join(sub))
    }

    /// Whether the process runs as root (file permissions do not stop root's writes).
    pub fn is_root(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&self.root).unwrap().uid() == 0
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        // Tests may leave read-only dirs behind; make the temp dir removable again.
        if !self.is_root() {
            let _ = chmod_r(&self.root, "u+rwx");
        }
    }
}

/// A `cachectl` invocation being built (by value, so calls chain).
pub struct Run {
    pub cmd: Command,
    stdin: Option<Vec<u8>>,
}

impl Run {
    /// Another program with the same environment and directory (e.g. `script` to give
    /// cachectl a terminal).
    pub fn program(self, program: &str, args: &[&str]) -> Run {
        let mut cmd = Command::new(program);
        for (name, value) in self.cmd.get_envs() {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
        if let Some(dir) = self.cmd.get_current_dir() {
            cmd.current_dir(dir);
        }
        cmd.args(args);
        Run {
            cmd,
            stdin: self.stdin,
        }
    }

    pub fn args(mut self, args: &[&str]) -> Run {
        self.cmd.args(args);
        self
    }
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Run {
        self.cmd.env(name, value);
        self
    }
    pub fn env_remove(mut self, name: &str) -> Run {
        self.cmd.env_remove(name);
        self
    }
    /// Fake "now" in unix milliseconds.
    pub fn now(self, ms: u64) -> Run {
        self.env("CACHECTL_TEST_NOW", ms.to_string())
    }
    pub fn dir(mut self, dir: &Path) -> Run {
        self.cmd.current_dir(dir);
        self
    }
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Run {
        self.stdin = Some(bytes.into());
        self
    }

    /// Spawn with piped stdio (stdin: the given bytes, or empty).
    pub fn spawn(mut self) -> (Child, Option<Vec<u8>>) {
        self.cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = spawn_guarded(&mut self.cmd);
        (child, self.stdin)
    }

    pub fn output(self) -> Output {
        let (mut child, input) = self.spawn();
        let mut stdin = child.stdin.take().expect("piped stdin");
        let writer = std::thread::spawn(move || {
            if let Some(bytes) = input {
                let _ = stdin.write_all(&bytes);
            }
        });
        let out = child.wait_with_output().expect("waiting for cachectl");
        writer.join().unwrap();
        out
    }

    pub fn assert(self) -> Assert {
        self.output().assert()
    }

    /// Run with stdout and stderr both going into ONE pipe; returns what came out of it, in order.
    pub fn merged_output(mut self) -> (Vec<u8>, i32) {
        let (mut reader, writer) = std::io::pipe().expect("pipe");
        self.cmd
            .stdin(Stdio::null())
            .stdout(writer.try_clone().expect("dup"))
            .stderr(writer);
        let mut child = spawn_guarded(&mut self.cmd);
        drop(self.cmd); // our copies of the write end
        let mut merged = Vec::new();
        reader.read_to_end(&mut merged).unwrap();
        let status = child.wait().unwrap();
        (merged, status.code().unwrap_or(-1))
    }
}

pub fn spawn_guarded(cmd: &mut Command) -> Child {
    let _guard = EXEC_GUARD.read().unwrap_or_else(|e| e.into_inner());
    cmd.spawn().expect("spawning cachectl")
}

/// `chmod -R <how> <path>`; whether it succeeded.
pub fn chmod_r(path: &Path, how: &str) -> bool {
    let mut cmd = Command::new("chmod");
    cmd.args(["-R", how]).arg(path);
    spawn_guarded(&mut cmd).wait().is_ok_and(|s| s.success())
}

pub fn write_file(path: &Path, contents: &[u8]) -> PathBuf {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path.to_path_buf()
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Every regular file under `dir` (recursively), sorted; empty if `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Flip one bit of the byte at `offset` (negative: from the end).
pub fn flip_byte(path: &Path, offset: isize) {
    let mut bytes = fs::read(path).unwrap();
    let i = if offset < 0 {
        bytes.len() - offset.unsigned_abs()
    } else {
        offset as usize
    };
    bytes[i] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

/// `len` deterministic pseudo-random bytes (xorshift), with plenty of NULs.
pub fn binary_data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if i % 7 == 0 { 0 } else { x as u8 }
        })
        .collect()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Poll `f` every 2 ms until it is true; panic after `timeout`.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Exit code, stdout (cut short) and stderr of a finished run, for failure messages.
pub fn summary(a: &Assert) -> String {
    let out = a.get_output();
    let stdout = String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(400)]);
    format!(
        "status: {}\nstdout ({} bytes): {stdout:?}\nstderr: {}",
        out.status,
        out.stdout.len(),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stderr_of(a: &Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

pub fn stdout_of(a: &Assert) -> Vec<u8> {
    a.get_output().stdout.clone()
}

/// Lines of cachectl's own warnings in `stderr`.
pub fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("cachectl: warning"))
        .collect()
}
