//! Reliability, fault and security tests (issue 7), fast part: concurrency, corruption, full and
//! read-only cache filesystems, unusable cache directories, hostile entries, signals, odd and
//! large outputs. The long randomized trials (kill -9 during stores, 16-process load, a 2 GiB
//! output) live in `tests/stress/run.sh`; `docs/reliability.md` describes both.
//!
//! Every test checks the wrapped command's result first (stdout, stderr, exit code, output files,
//! byte for byte), then what cachectl did with the cache. Tests that need `mount` (tmpfs, bind
//! mounts) skip with a note when it is not permitted, except under `CI=true`, where they fail.
//!
//! Each bug these tests found (docs/reliability.md, "Bugs found") is fixed, and its test runs in
//! the normal suite; nothing here tolerates a known failure, so a regression fails.

use crate::util::*;
use cachectl::store::record::{self, OutputEntry, OutputKind, Record};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Run a system tool (mount, chown...) with the harness's exec guard; whether it succeeded.
fn tool(program: &str, args: &[&OsStr]) -> bool {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    let child = spawn_guarded(&mut cmd);
    let out = child.wait_with_output().expect("waiting for a tool");
    if !out.status.success() {
        eprintln!(
            "note: {program} {:?} failed: {}",
            args,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status.success()
}

/// A mount made by a test, unmounted on drop (lazily if something still holds it).
struct Mounted {
    dir: PathBuf,
}

impl Mounted {
    /// `mount -t tmpfs -o OPTS tmpfs DIR`; `None` (after a note) when mounting is not permitted
    /// here. Under `CI=true` that is a failure instead.
    fn tmpfs(dir: &Path, opts: &str) -> Option<Mounted> {
        fs::create_dir_all(dir).unwrap();
        let ok = tool(
            "mount",
            &[
                OsStr::new("-t"),
                OsStr::new("tmpfs"),
                OsStr::new("-o"),
                OsStr::new(opts),
                OsStr::new("tmpfs"),
                dir.as_os_str(),
            ],
        );
        if ok {
            Some(Mounted {
                dir: dir.to_path_buf(),
            })
        } else {
            mount_unavailable(&format!("mount -t tmpfs -o {opts} on {}", dir.display()))
        }
    }

    /// A read-only bind mount of `src` on `dst`.
    fn bind_ro(src: &Path, dst: &Path) -> Option<Mounted> {
        fs::create_dir_all(dst).unwrap();
        if !tool(
            "mount",
            &[OsStr::new("--bind"), src.as_os_str(), dst.as_os_str()],
        ) {
            return mount_unavailable(&format!("mount --bind on {}", dst.display()));
        }
        let m = Mounted {
            dir: dst.to_path_buf(),
        };
        if !m.remount("remount,bind,ro") {
            return mount_unavailable(&format!("remounting {} read-only", dst.display()));
        }
        Some(m)
    }

    fn remount(&self, opts: &str) -> bool {
        tool(
            "mount",
            &[OsStr::new("-o"), OsStr::new(opts), self.dir.as_os_str()],
        )
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !tool("umount", &[self.dir.as_os_str()]) {
            tool("umount", &[OsStr::new("-l"), self.dir.as_os_str()]);
        }
    }
}

fn mount_unavailable(what: &str) -> Option<Mounted> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is not permitted, and CI=true: these tests must run (as root) in CI");
    }
    eprintln!("note: skipping this test: {what} is not permitted here (not root?)");
    None
}

/// The uid of `nobody` (65534 when it cannot be looked up).
fn nobody_uid() -> u32 {
    let mut cmd = Command::new("id");
    cmd.args(["-u", "nobody"]).stdout(Stdio::piped());
    let out = spawn_guarded(&mut cmd).wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(65534)
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Run with a deadline: a run that does not end within `limit` is killed and the test fails
/// (a deadlock or a hang).
#[track_caller]
fn output_within(run: Run, limit: Duration) -> Output {
    let (mut child, input) = run.spawn();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            if let Some(bytes) = input {
                let _ = stdin.write_all(&bytes);
            }
        });
        let out = child.wait_with_output();
        let _ = writer.join();
        let _ = tx.send(out);
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("waiting for cachectl"),
        Err(_) => {
            // SAFETY: kill on the pid of our own child, not reaped yet (its waiter is blocked).
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            panic!("cachectl (pid {pid}) did not finish within {limit:?}: deadlock or hang");
        }
    }
}

/// Split cachectl's stderr into the command's own stderr and at most one cachectl warning line,
/// which comes either before the command's output (a lookup problem) or after it (a store
/// problem). `Err` when stderr is anything else.
fn own_stderr_and_warning(stderr: &[u8], own: &[u8]) -> Result<Option<String>, String> {
    const W: &[u8] = b"cachectl: warning";
    if stderr == own {
        return Ok(None);
    }
    if stderr.starts_with(W)
        && let Some(nl) = stderr.iter().position(|&b| b == b'\n')
        && &stderr[nl + 1..] == own
    {
        return Ok(Some(String::from_utf8_lossy(&stderr[..nl]).into_owned()));
    }
    if let Some(rest) = stderr.strip_prefix(own)
        && rest.starts_with(W)
        && rest.iter().filter(|&&b| b == b'\n').count() == 1
        && rest.ends_with(b"\n")
    {
        return Ok(Some(String::from_utf8_lossy(rest).trim_end().to_owned()));
    }
    Err(format!(
        "stderr is not the command's own stderr plus at most one cachectl warning line:\n{}",
        String::from_utf8_lossy(stderr)
    ))
}

/// Assert the exact result of a run: exit code, stdout, and a stderr that is the command's own
/// stderr plus at most one cachectl warning line. Returns the warning, if any.
#[track_caller]
fn assert_result(
    out: &Output,
    code: i32,
    stdout: &[u8],
    own_stderr: impl AsRef<[u8]>,
) -> Option<String> {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code; stderr: {}",
        &err[..err.len().min(2000)]
    );
    assert!(
        out.stdout == stdout,
        "stdout differs: {} bytes, expected {}; first bytes {:?}; stderr: {}",
        out.stdout.len(),
        stdout.len(),
        String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(200)]),
        &err[..err.len().min(2000)]
    );
    own_stderr_and_warning(&out.stderr, own_stderr.as_ref()).unwrap_or_else(|e| panic!("{e}"))
}

/// A file-tree node, for byte-exact comparison of output trees.
#[derive(Debug, PartialEq, Eq, Clone)]
enum Node {
    File(Vec<u8>, u32),
    Dir(u32),
    Link(Vec<u8>),
}

/// Everything under `dir` (names as raw bytes, relative), recursively, without following links.
fn tree(dir: &Path) -> BTreeMap<Vec<u8>, Node> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, Node>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p
                .strip_prefix(base)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.mode() & 0o7777;
            if m.file_type().is_symlink() {
                let target = fs::read_link(&p).unwrap();
                out.insert(rel, Node::Link(target.as_os_str().as_bytes().to_vec()));
            } else if m.is_dir() {
                out.insert(rel, Node::Dir(mode));
                walk(base, &p, out);
            } else {
                out.insert(rel, Node::File(fs::read(&p).unwrap(), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

/// Flip one bit of byte `i` of a file.
fn flip_at(path: &Path, i: usize) {
    let mut b = fs::read(path).unwrap();
    b[i] ^= 0x01;
    fs::write(path, b).unwrap();
}

fn file_len(path: &Path) -> usize {
    fs::metadata(path).unwrap().len() as usize
}

fn truncate_to(path: &Path, len: usize) {
    let b = fs::read(path).unwrap();
    fs::write(path, &b[..len.min(b.len())]).unwrap();
}

/// The single file under `cache/<sub>` (a record or a blob).
#[track_caller]
fn only_file(t: &TestContext, sub: &str) -> PathBuf {
    let files = t.cache_files(sub);
    assert_eq!(files.len(), 1, "expected one file under {sub}: {files:?}");
    files[0].clone()
}

/// `cachectl verify`: exit code and report.
fn verify(t: &TestContext) -> (i32, String) {
    let out = output_within(t.cachectl(&["verify"]), Duration::from_secs(60));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[track_caller]
fn assert_verify_clean(t: &TestContext) {
    let (code, text) = verify(t);
    assert_eq!(code, 0, "cachectl verify is not clean:\n{text}");
}

/// xorshift64*, for reproducible random choices in the load tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Set a file's mtime to an hour ago (old enough for the stat cache to record it).
fn age(path: &Path) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2. Concurrency (small version of the stress script's load phase)
// ---------------------------------------------------------------------------------------------

/// Sizes of the load commands' stdout payloads, by key: inline, inline, blob, blob, inline
/// failure (exit 3, stored with --cache-failures), blob.
const LOAD_SIZES: [usize; 6] = [10, 1024, 70_000, 150_000, 5, 200_000];

/// A load command `gen K [file]`: stdout `key K` + LOAD_SIZES[K] bytes of the pool at offset
/// K*1000; stderr `err K`; with `file`, also writes out.bin (5000 pool bytes at offset K*7).
/// Exit 3 for K = 4, else 0. Each real run appends a line to `runs/K`. With `SLOW` set (the
/// environment is not keyed) it sleeps 0.4 s first.
fn load_fixture(t: &TestContext) -> (PathBuf, Vec<u8>) {
    let pool = binary_data(260_000);
    let pool_path = write_file(&t.root.join("pool.bin"), &pool);
    let runs = t.root.join("runs");
    fs::create_dir_all(&runs).unwrap();
    let sizes: Vec<String> = LOAD_SIZES.iter().map(|s| s.to_string()).collect();
    let bin = t.root.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let gen_path = t.script_in(
        &bin,
        "gen",
        &format!(
            r#"k=$1
echo run >> '{runs}'/$k
set -- "$1" "$2" {sizes}
eval n=\${{$(($k + 3))}}
sleep 0.0$(($k % 3))
if [ -n "$SLOW" ]; then sleep 0.4; fi
printf 'key %s\n' "$k"
tail -c +$(($k * 1000 + 1)) '{pool}' | head -c $n
printf 'err %s\n' "$k" >&2
if [ "$2" = file ]; then tail -c +$(($k * 7 + 1)) '{pool}' | head -c 5000 > out.bin; fi
if [ "$k" = 4 ]; then exit 3; fi
exit 0"#,
            runs = runs.display(),
            pool = pool_path.display(),
            sizes = sizes.join(" "),
        ),
    );
    (gen_path, pool)
}

fn load_expected_stdout(pool: &[u8], k: usize) -> Vec<u8> {
    let mut v = format!("key {k}\n").into_bytes();
    v.extend_from_slice(&pool[k * 1000..k * 1000 + LOAD_SIZES[k]]);
    v
}

fn load_expected_code(k: usize) -> i32 {
    if k == 4 { 3 } else { 0 }
}

fn real_runs(t: &TestContext, k: usize) -> usize {
    fs::read_to_string(t.root.join("runs").join(k.to_string()))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// A management command run under load succeeded. (It once failed with `database is locked`,
/// BUG-2: a regression must fail here.)
#[track_caller]
fn management_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed under load: {out:?}");
}

#[test]
fn concurrent_hits_misses_force_gc_and_invalidate_give_right_output_and_a_clean_cache() {
    let t = TestContext::new();
    let (gen_path, pool) = load_fixture(&t);
    let gen_s = gen_path.to_str().unwrap().to_owned();
    // No index yet: the first management commands of the load create it concurrently (BUG-3).
    let threads = 8;
    let budget = Duration::from_millis(2500);
    let limit = Duration::from_secs(60);
    let stop_at = Instant::now() + budget;
    let counts = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let t = &t;
                let pool = &pool;
                let gen_s = &gen_s;
                s.spawn(move || {
                    let dir = t.work.join(format!("w{i}"));
                    fs::create_dir_all(&dir).unwrap();
                    let mut rng = Rng(0x9E37_79B9 + i as u64 * 0x1000_0001);
                    let mut ops = [0u32; 5];
                    while Instant::now() < stop_at {
                        let k = rng.below(LOAD_SIZES.len() as u64) as usize;
                        let ks = k.to_string();
                        let op = rng.below(10);
                        let base = ["--no-cwd", "--cache-failures"];
                        match op {
                            0..=6 => {
                                let force = op == 6;
                                let mut args = base.to_vec();
                                if force {
                                    args.push("--force");
                                }
                                args.extend(["--", gen_s.as_str(), ks.as_str()]);
                                let out = output_within(t.run(&args).dir(&dir), limit);
                                assert_result(
                                    &out,
                                    load_expected_code(k),
                                    &load_expected_stdout(pool, k),
                                    format!("err {k}\n"),
                                );
                                ops[usize::from(force)] += 1;
                            }
                            7 => {
                                let _ = fs::remove_file(dir.join("out.bin"));
                                let mut args = base.to_vec();
                                args.extend(["-o", "out.bin", "--", gen_s.as_str(), &ks, "file"]);
                                let out = output_within(t.run(&args).dir(&dir), limit);
                                assert_result(
                                    &out,
                                    load_expected_code(k),
                                    &load_expected_stdout(pool, k),
                                    format!("err {k}\n"),
                                );
                                if k != 4 {
                                    let got = fs::read(dir.join("out.bin")).unwrap();
                                    assert!(got == pool[k * 7..k * 7 + 5000], "wrong out.bin");
                                }
                                ops[2] += 1;
                            }
                            8 => {
                                let out = output_within(
                                    t.cachectl(&["gc", "--max-size", "150K"]).dir(&dir),
                                    limit,
                                );
                                management_ok(&out, "gc");
                                ops[3] += 1;
                            }
                            _ => {
                                let pattern = format!("{gen_s} {}*", rng.below(6));
                                let args: Vec<&str> = if rng.below(2) == 0 {
                                    vec!["invalidate", "--all"]
                                } else {
                                    vec!["invalidate", &pattern]
                                };
                                let out = output_within(t.cachectl(&args).dir(&dir), limit);
                                management_ok(&out, "invalidate");
                                ops[4] += 1;
                            }
                        }
                    }
                    ops
                })
            })
            .collect();
        let mut total = [0u32; 5];
        for h in handles {
            for (a, b) in total
                .iter_mut()
                .zip(h.join().expect("a load thread failed"))
            {
                *a += b;
            }
        }
        total
    });
    eprintln!(
        "load: {} runs, {} --force, {} with an output file, {} gc, {} invalidate",
        counts[0], counts[1], counts[2], counts[3], counts[4]
    );
    assert!(counts.iter().sum::<u32>() >= 40, "too few operations ran");
    assert_verify_clean(&t);
    // And every key still gives the right result.
    for k in 0..LOAD_SIZES.len() {
        let ks = k.to_string();
        let out = output_within(
            t.run(&["--no-cwd", "--cache-failures", "--", &gen_s, &ks]),
            limit,
        );
        assert_result(
            &out,
            load_expected_code(k),
            &load_expected_stdout(&pool, k),
            format!("err {k}\n"),
        );
    }
    assert_verify_clean(&t);
}

#[test]
fn identical_concurrent_misses_run_once_in_every_round() {
    let t = TestContext::new();
    let (gen_path, pool) = load_fixture(&t);
    let gen_s = gen_path.to_str().unwrap();
    let procs = 10;
    for round in 0..4 {
        let salt = format!("round-{round}");
        let k = [3, 5, 0, 2][round];
        let ks = k.to_string();
        let before = real_runs(&t, k);
        let dirs: Vec<PathBuf> = (0..procs)
            .map(|i| {
                let d = t.work.join(format!("r{round}-{i}"));
                fs::create_dir_all(&d).unwrap();
                d
            })
            .collect();
        // Started together; the command sleeps long enough for all of them to find the miss.
        let children: Vec<_> = dirs
            .iter()
            .map(|d| {
                let run = t
                    .run(&[
                        "--no-cwd", "--salt", &salt, "-o", "out.bin", "--", gen_s, &ks, "file",
                    ])
                    .env("SLOW", "1")
                    .dir(d);
                run.spawn().0
            })
            .collect();
        let (tx, rx) = mpsc::channel();
        for c in children {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(c.wait_with_output()).unwrap());
        }
        drop(tx);
        for _ in 0..procs {
            let out = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("a concurrent run did not finish: deadlock?")
                .unwrap();
            assert_result(
                &out,
                0,
                &load_expected_stdout(&pool, k),
                format!("err {k}\n"),
            );
        }
        for d in &dirs {
            assert!(fs::read(d.join("out.bin")).unwrap() == pool[k * 7..k * 7 + 5000]);
        }
        assert_eq!(
            real_runs(&t, k) - before,
            1,
            "round {round}: {procs} identical concurrent misses ran the command more than once"
        );
    }
    assert_verify_clean(&t);
}

// ---------------------------------------------------------------------------------------------
// 3. Corruption
// ---------------------------------------------------------------------------------------------

/// A counted command with inline stdout, stderr and an output file; returns its run.
fn small_entry(t: &TestContext) -> impl Fn() -> Run + '_ {
    t.counted(
        "cmd",
        "printf 'result\\n'; printf 'note\\n' >&2; printf 'artifact' > out.txt",
    );
    move || t.run(&["-o", "out.txt", "--", "./cmd"])
}

#[track_caller]
fn assert_small_entry_result(t: &TestContext, out: &Output) {
    assert_result(out, 0, b"result\n", "note\n");
    assert_eq!(t.read("out.txt"), b"artifact");
}

#[test]
fn flipped_bytes_anywhere_in_a_record_are_misses_with_the_right_result() {
    let t = TestContext::new();
    let run = small_entry(&t);
    t.miss(run());
    let path = only_file(&t, "ac-v1");
    // Magic, checksum, body length, start/middle/end of the JSON body, inline streams. Offsets
    // from the end are taken from the current length (a re-stored record's length varies by a
    // byte or two with the recorded duration).
    let from_start = [0, 7, 8, 39, 40, 43, 44, 60].map(|i| (i, false));
    let from_end = [usize::MAX, 12, 6, 1].map(|i| (i, true));
    for (off, at_end) in from_start.into_iter().chain(from_end) {
        let len = file_len(&path);
        let i = match (off, at_end) {
            (usize::MAX, true) => len / 2,
            (k, true) => len - k,
            (k, false) => k,
        };
        flip_at(&path, i);
        let _ = fs::remove_file(t.work.join("out.txt"));
        let before = t.count();
        let out = run().output();
        assert_eq!(t.count(), before + 1, "flip at {i}: expected a miss");
        assert_small_entry_result(&t, &out);
        // The rerun stored a fresh, intact entry.
        let _ = fs::remove_file(t.work.join("out.txt"));
        let out = t.hit(run()).get_output().clone();
        assert_result(&out, 0, b"result\n", "note\n");
        assert_eq!(t.read("out.txt"), b"artifact");
    }
    assert_verify_clean(&t);
}

/// A counted command whose stdout (100 KiB), stderr (80 KiB) and output file (120 KiB) are all
/// stored as blobs. Returns (run, stdout, stderr, output) with the blob digests' data.
struct BlobEntry {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    output: Vec<u8>,
}

impl BlobEntry {
    fn new(t: &TestContext) -> BlobEntry {
        let data = binary_data(300 * 1024);
        let e = BlobEntry {
            stdout: data[..100 * 1024].to_vec(),
            stderr: data[100 * 1024..180 * 1024].to_vec(),
            output: data[180 * 1024..].to_vec(),
        };
        let src = t.root.join("src");
        write_file(&src.join("o"), &e.stdout);
        write_file(&src.join("e"), &e.stderr);
        write_file(&src.join("f"), &e.output);
        let s = src.display();
        t.counted(
            "big",
            &format!("cat '{s}/o'; cat '{s}/e' >&2; cat '{s}/f' > out.bin"),
        );
        e
    }

    fn run(&self, t: &TestContext) -> Run {
        t.run(&["-o", "out.bin", "--", "./big"])
    }

    /// Run (after removing out.bin, so a hit must restore it) and check everything.
    #[track_caller]
    fn check(&self, t: &TestContext) -> Option<String> {
        let _ = fs::remove_file(t.work.join("out.bin"));
        let out = self.run(t).output();
        let w = assert_result(&out, 0, &self.stdout, &self.stderr);
        assert!(t.read("out.bin") == self.output, "out.bin differs");
        w
    }

    fn blob(&self, t: &TestContext, which: &[u8]) -> PathBuf {
        let d = blake3::hash(which).to_hex().to_string();
        t.cache.join("cas-v1").join(&d[..2]).join(&d)
    }
}

#[test]
fn truncated_records_and_blobs_are_detected_and_are_misses() {
    let t = TestContext::new();
    let e = BlobEntry::new(&t);
    let before = t.count();
    e.check(&t);
    assert_eq!(t.count(), before + 1);
    let record = only_file(&t, "ac-v1");
    // Lengths: absolute, or relative to the file's length at the time (a re-stored record's
    // length varies by a byte or two with the recorded duration).
    #[derive(Clone, Copy, Debug)]
    enum Cut {
        To(usize),
        Half,
        LastByte,
    }
    let mut damaged = Vec::new();
    for cut in [
        Cut::To(0),
        Cut::To(10),
        Cut::To(43),
        Cut::To(44),
        Cut::Half,
        Cut::LastByte,
    ] {
        damaged.push((record.clone(), cut));
    }
    for which in [&e.stdout, &e.stderr, &e.output] {
        let blob = e.blob(&t, which);
        for cut in [
            Cut::To(0),
            Cut::To(20),
            Cut::To(47),
            Cut::To(48),
            Cut::Half,
            Cut::LastByte,
        ] {
            damaged.push((blob.clone(), cut));
        }
    }
    for (i, (path, cut)) in damaged.iter().enumerate() {
        // An existing index (a cache without one is the subject of a separate test).
        t.cachectl(&["ls"]).assert().success();
        let now = file_len(path);
        let len = match *cut {
            Cut::To(n) => n,
            Cut::Half => now / 2,
            Cut::LastByte => now - 1,
        };
        truncate_to(path, len);
        if i % 4 == 0 {
            // verify names the damaged file (or the record referencing the damaged blob).
            let (code, text) = verify(&t);
            assert_eq!(code, 1, "verify missed a file truncated to {len}:\n{text}");
        }
        let before = t.count();
        e.check(&t);
        assert_eq!(
            t.count(),
            before + 1,
            "{} truncated to {len}: expected a miss",
            path.display()
        );
        // Re-stored intact: a clean hit.
        let before = t.count();
        assert_eq!(e.check(&t), None);
        assert_eq!(t.count(), before);
    }
    assert_verify_clean(&t);
}

#[test]
fn deleted_blobs_are_misses_and_are_stored_again() {
    let t = TestContext::new();
    let e = BlobEntry::new(&t);
    e.check(&t);
    for which in [&e.stdout, &e.stderr, &e.output] {
        fs::remove_file(e.blob(&t, which)).unwrap();
        let before = t.count();
        e.check(&t);
        assert_eq!(t.count(), before + 1, "a deleted blob must be a miss");
        let before = t.count();
        assert_eq!(e.check(&t), None);
        assert_eq!(t.count(), before, "the rerun did not store the entry again");
    }
    // Every blob gone at once.
    for f in t.cache_files("cas-v1") {
        fs::remove_file(f).unwrap();
    }
    let before = t.count();
    e.check(&t);
    assert_eq!(t.count(), before + 1);
    assert_verify_clean(&t);
}

/// Record bytes with a valid header and checksum around an arbitrary body and tail.
fn checksummed_record(body: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut out = b"CCREC001".to_vec();
    out.extend_from_slice(&[0u8; 32]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(tail);
    let sum = blake3::hash(&out[40..]);
    out[8..40].copy_from_slice(sum.as_bytes());
    out
}

#[test]
fn garbage_records_are_misses_never_wrong_hits() {
    let t = TestContext::new();
    let run = small_entry(&t);
    t.counted("other", "printf 'OTHER RESULT\\n'");
    t.miss(run());
    t.miss(t.run(&["--", "./other"]));
    let records = t.cache_files("ac-v1");
    assert_eq!(records.len(), 2);
    let decoded: Vec<_> = records
        .iter()
        .map(|p| record::decode(&fs::read(p).unwrap()).unwrap())
        .collect();
    let mine = if decoded[0].record.command == "./cmd" {
        0
    } else {
        1
    };
    let (path, other_path) = (&records[mine], &records[1 - mine]);
    let good = fs::read(path).unwrap();
    let mut valid_json_bad_lengths = decoded[mine].record.clone();
    valid_json_bad_lengths.stdout.size += 5;
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", binary_data(700)),
        ("random bytes behind the magic", {
            let mut b = b"CCREC001".to_vec();
            b.extend(binary_data(300));
            b
        }),
        ("another key's intact record", fs::read(other_path).unwrap()),
        (
            "a checksummed body that is not JSON",
            checksummed_record(b"{not json", b""),
        ),
        (
            "a checksummed JSON body of the wrong shape",
            checksummed_record(br#"{"key":1,"outputs":"x"}"#, b""),
        ),
        (
            "a checksummed record whose inline streams are too short",
            record::encode(
                &valid_json_bad_lengths,
                &decoded[mine].inline_stdout,
                b"note\n",
            ),
        ),
        ("an empty file", Vec::new()),
    ];
    for (what, bytes) in garbage {
        fs::write(path, &bytes).unwrap();
        let _ = fs::remove_file(t.work.join("out.txt"));
        let before = t.count();
        let out = run().output();
        assert_eq!(t.count(), before + 1, "{what}: expected a miss");
        assert_small_entry_result(&t, &out);
        assert!(fs::read(path).unwrap() != bytes, "{what}: not replaced");
    }
    // A directory where the record file goes: the command runs, the store fails (one warning).
    fs::remove_file(path).unwrap();
    fs::create_dir(path).unwrap();
    for _ in 0..2 {
        let before = t.count();
        let out = run().output();
        assert_eq!(t.count(), before + 1);
        assert_small_entry_result(&t, &out);
    }
    fs::remove_dir(path).unwrap();
    // A stray file among the records: runs are unaffected, verify reports it, --fix removes it.
    fs::write(path, &good).unwrap();
    let stray = path.parent().unwrap().join("not-a-key");
    fs::write(&stray, b"junk").unwrap();
    t.hit(run()).success().stdout("result\n");
    let (code, text) = verify(&t);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not-a-key"), "{text}");
    t.cachectl(&["verify", "--fix"]).assert().success();
    assert!(!stray.exists());
    assert_verify_clean(&t);
    t.hit(run()).success().stdout("result\n");
    t.hit(t.run(&["--", "./other"])).stdout("OTHER RESULT\n");
}

#[test]
fn a_corrupt_index_is_rebuilt_from_the_files() {
    let t = TestContext::new();
    let run = small_entry(&t);
    t.counted("other", "printf 'OTHER\\n'");
    t.miss(run());
    t.miss(t.run(&["--", "./other"]));
    let index = t.cache.join("index-v1.sqlite");
    type Damage<'a> = Box<dyn Fn() + 'a>;
    let damage: Vec<(&str, Damage)> = vec![
        (
            "garbage bytes",
            Box::new(|| fs::write(&index, binary_data(8192)).unwrap()),
        ),
        (
            "a truncated database",
            Box::new(|| truncate_to(&index, 100)),
        ),
        (
            "garbage write-ahead log",
            Box::new(|| fs::write(t.cache.join("index-v1.sqlite-wal"), binary_data(5000)).unwrap()),
        ),
        (
            "an empty file",
            Box::new(|| fs::write(&index, b"").unwrap()),
        ),
    ];
    for (what, damage) in damage {
        // Build (or rebuild) the index, then damage it.
        let a = t.cachectl(&["ls", "--json"]).assert().success();
        assert!(index.exists());
        drop(a);
        damage();
        for args in [
            &["ls", "--json"][..],
            &["stats", "--json"],
            &["verify"],
            &["gc"],
        ] {
            let out = output_within(t.cachectl(args), Duration::from_secs(60));
            assert!(
                out.status.success(),
                "{what}: cachectl {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let ls =
            String::from_utf8_lossy(&t.cachectl(&["ls", "--json"]).output().stdout).into_owned();
        assert!(
            ls.contains("./cmd") && ls.contains("./other"),
            "{what}: {ls}"
        );
        let _ = fs::remove_file(t.work.join("out.txt"));
        let out = t.hit(run()).get_output().clone();
        assert_small_entry_result(&t, &out);
    }
}

#[test]
fn a_corrupt_stat_cache_never_changes_the_result() {
    let t = TestContext::new();
    let input = t.write("in.txt", "v1-content");
    age(&input);
    let cmd = t.counted("cmd", "cat in.txt");
    age(&cmd);
    let run = || t.run(&["-i", "in.txt", "--", "./cmd"]);
    t.miss(run()).stdout("v1-content");
    t.hit(run()).stdout("v1-content");
    let stat_files = t.cache_files("stat-v1");
    assert!(!stat_files.is_empty(), "no stat cache was written");
    let originals: Vec<Vec<u8>> = stat_files.iter().map(|f| fs::read(f).unwrap()).collect();
    type Damage = Box<dyn Fn(&Path, &[u8])>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "a flipped byte",
            Box::new(|p, o| {
                let mut b = o.to_vec();
                let i = b.len() / 2;
                b[i] ^= 0x10;
                fs::write(p, b).unwrap();
            }),
        ),
        (
            "a flipped digest byte",
            Box::new(|p, o| {
                let mut b = o.to_vec();
                let i = b.len() - 40;
                b[i] ^= 0x01;
                fs::write(p, b).unwrap();
            }),
        ),
        (
            "truncation",
            Box::new(|p, o| fs::write(p, &o[..o.len() / 2]).unwrap()),
        ),
        (
            "garbage",
            Box::new(|p, o| fs::write(p, binary_data(o.len())).unwrap()),
        ),
        (
            "a huge entry count",
            Box::new(|p, o| {
                let mut b = o.to_vec();
                b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
                fs::write(p, b).unwrap();
            }),
        ),
        ("an empty file", Box::new(|p, _| fs::write(p, b"").unwrap())),
    ];
    for (i, (what, damage)) in damages.iter().enumerate() {
        for (f, o) in stat_files.iter().zip(&originals) {
            damage(f, o);
        }
        // Same content: still a hit, with the right output.
        t.hit(run()).success().stdout("v1-content");
        // Changed content (same size, same mtime): a miss that sees the new content.
        for (f, o) in stat_files.iter().zip(&originals) {
            damage(f, o);
        }
        // Same size as v1, and old: only the content (and ctime) differ.
        let v2 = format!("v2-conten{i}");
        fs::write(&input, &v2).unwrap();
        age(&input);
        let a = t.miss(run()).success();
        assert_eq!(stdout_of(&a), v2.as_bytes(), "{what}");
        fs::write(&input, "v1-content").unwrap();
        age(&input);
        t.hit(run()).success().stdout("v1-content");
    }
    // A directory where a stat cache file goes.
    for f in &stat_files {
        fs::remove_file(f).unwrap();
        fs::create_dir(f).unwrap();
    }
    let a = t.hit(run()).success().stdout("v1-content");
    assert!(warnings(&stderr_of(&a)).len() <= 1);
}

#[test]
fn garbage_journal_lines_are_skipped_and_counts_stay_exact() {
    let t = TestContext::new();
    t.counted("a", "echo a");
    t.counted("b", "echo b");
    t.miss(t.run(&["--", "./a"]));
    t.hit(t.run(&["--", "./a"]));
    t.miss(t.run(&["--", "./b"]));
    let journal = t.cache.join("journal-v1.log");
    let mut garbage = Vec::new();
    garbage.extend_from_slice(b"\x00\xff\xfe binary garbage \x01\n");
    garbage.extend_from_slice(b"{\"ev\":\"hit\"\n");
    garbage.extend_from_slice(b"{\"ev\":\"hit\",\"ts\":1}\n");
    garbage.extend_from_slice(b"{\"ev\":\"teleport\",\"ts\":1,\"key\":\"x\"}\n");
    garbage.extend_from_slice(b"not json at all\n\n\r\n");
    garbage.extend_from_slice(&vec![b'x'; 100_000]);
    garbage.push(b'\n');
    garbage.extend_from_slice("{\"ev\":\"miss\",\"ts\":\"\u{fffd}\"}\n".as_bytes());
    let mut f = fs::File::options().append(true).open(&journal).unwrap();
    std::io::Write::write_all(&mut f, &garbage).unwrap();
    drop(f);
    t.hit(t.run(&["--", "./b"]));
    t.hit(t.run(&["--", "./a"]));
    let stats = |t: &TestContext| -> serde_json::Value {
        let a = t.cachectl(&["stats", "--json"]).assert().success();
        serde_json::from_slice(&a.get_output().stdout).unwrap()
    };
    let s = stats(&t);
    assert_eq!(
        (s["hits"].as_u64(), s["misses"].as_u64()),
        (Some(3), Some(2)),
        "{s}"
    );
    assert_eq!(s["stores"].as_u64(), Some(2), "{s}");
    assert_eq!(s["entries"].as_u64(), Some(2), "{s}");
    // Garbage in a journal that is being folded (a crash mid-fold left it): skipped too.
    fs::write(
        t.cache.join("journal-v1.1.1.folding"),
        b"\xff\xff{{{{\n{\"ev\":\"error\"}\n",
    )
    .unwrap();
    // A torn last line (no newline) at the very end (the fold above moved the journal away).
    let mut f = fs::File::options()
        .append(true)
        .create(true)
        .open(&journal)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"ev\":\"hit\",\"ts\":17000").unwrap();
    drop(f);
    let s = stats(&t);
    assert_eq!(
        (s["hits"].as_u64(), s["misses"].as_u64()),
        (Some(3), Some(2)),
        "{s}"
    );
    assert_verify_clean(&t);
    t.hit(t.run(&["--", "./a"])).stdout("a\n");
}

#[test]
fn garbage_pages_inside_the_index_are_rebuilt() {
    let t = TestContext::new();
    let run = small_entry(&t);
    t.counted("other", "printf 'OTHER\\n'");
    t.miss(run());
    t.miss(t.run(&["--", "./other"]));
    t.cachectl(&["ls"]).assert().success();
    let index = t.cache.join("index-v1.sqlite");
    let mut b = fs::read(&index).unwrap();
    let n = b.len();
    b[n / 4..n / 2].copy_from_slice(&binary_data(n / 2 - n / 4));
    fs::write(&index, b).unwrap();
    for args in [
        &["ls", "--json"][..],
        &["stats"],
        &["gc"],
        &["verify", "--fix"],
    ] {
        let out = t.cachectl(args).output();
        assert!(
            out.status.success(),
            "cachectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ls = String::from_utf8_lossy(&t.cachectl(&["ls", "--json"]).output().stdout).into_owned();
    assert!(ls.contains("./cmd") && ls.contains("./other"), "{ls}");
}

#[test]
fn verify_reports_a_corrupt_record_when_the_cache_has_no_index_yet() {
    let t = TestContext::new();
    let run = small_entry(&t);
    t.miss(run());
    let record = only_file(&t, "ac-v1");
    truncate_to(&record, 30);
    // No management command has run yet: verify is the first to open the index.
    let (code, text) = verify(&t);
    assert_eq!(code, 1, "a truncated record was not reported:\n{text}");
    assert!(
        record.exists(),
        "verify without --fix deleted {}",
        record.display()
    );
}

#[test]
fn verify_is_clean_after_a_crash_between_record_and_journal() {
    let t = TestContext::new();
    t.counted("a", "echo a");
    t.counted("b", "echo b");
    t.miss(t.run(&["--", "./a"]));
    t.cachectl(&["ls"]).assert().success();
    // The state a kill -9 of `cachectl run -- ./b` leaves right after the record's rename and
    // before the journal append: the record is on disk, its `store` event is not in the journal.
    t.miss(t.run(&["--", "./b"]));
    let journal = t.cache.join("journal-v1.log");
    let kept: String = fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"ev\":\"store\""))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&journal, kept).unwrap();
    t.hit(t.run(&["--", "./b"])).stdout("b\n");
    assert_verify_clean(&t);
}

#[test]
fn verify_is_clean_after_a_run_dropped_a_corrupt_entry() {
    let t = TestContext::new();
    t.counted("cmd", "echo out; exit ${FAIL:-0}");
    t.miss(t.run(&["--", "./cmd"]));
    t.cachectl(&["ls"]).assert().success();
    fs::write(only_file(&t, "ac-v1"), b"garbage").unwrap();
    // The rerun fails (FAIL is not keyed), so nothing replaces the dropped record.
    t.miss(t.run(&["--", "./cmd"]).env("FAIL", "1"))
        .code(1)
        .stdout("out\n");
    assert!(t.cache_files("ac-v1").is_empty());
    assert_verify_clean(&t);
}

#[test]
fn concurrent_gc_and_invalidate_all_succeed() {
    let t = TestContext::new();
    for i in 0..10 {
        t.run(&["--", "echo", &i.to_string()]).assert().success();
    }
    t.cachectl(&["ls"]).assert().success();
    let mut failures = Vec::new();
    for _ in 0..15 {
        for i in 0..3 {
            t.run(&["--", "echo", &i.to_string()]).assert().success();
        }
        let children: Vec<_> = [
            &["invalidate", "--all"][..],
            &["gc", "--max-size", "1K"],
            &["invalidate", "echo 1*"],
            &["invalidate", "--all"],
        ]
        .iter()
        .map(|args| (args.to_vec(), t.cachectl(args).spawn().0))
        .collect();
        for (args, c) in children {
            let out = c.wait_with_output().unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("")
    );
}

#[test]
fn concurrent_first_use_of_a_new_index_succeeds() {
    let t = TestContext::new();
    let mut failures = Vec::new();
    for round in 0..10 {
        let dir = t.root.join(format!("cache{round}"));
        t.run(&["--", "echo", "x"])
            .env("CACHECTL_DIR", &dir)
            .assert()
            .success();
        let children: Vec<_> = (0..4)
            .map(|_| t.cachectl(&["ls"]).env("CACHECTL_DIR", &dir).spawn().0)
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            if !out.status.success() || !out.stderr.is_empty() {
                failures.push(format!(
                    "exit {:?}: {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 40 failed:\n{}",
        failures.len(),
        failures.join("")
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Full, read-only and foreign cache directories
// ---------------------------------------------------------------------------------------------

/// A command whose output does not fit in the cache filesystem: (name, run args, stdout,
/// stderr, exit code, expected out.bin).
type Oversized = (
    &'static str,
    Vec<&'static str>,
    Vec<u8>,
    Vec<u8>,
    i32,
    Option<Vec<u8>>,
);

/// Counted commands whose streams and output file are bigger than the 1 MiB cache filesystem.
fn oversized_commands(t: &TestContext) -> Vec<Oversized> {
    let data = binary_data(3 << 20);
    let big = write_file(&t.root.join("big.bin"), &data);
    let b = big.display();
    t.counted("out", &format!("cat '{b}'"));
    t.counted("fail", &format!("cat '{b}'; exit 3"));
    t.counted("err", &format!("echo start; cat '{b}' >&2; echo done"));
    t.counted("file", &format!("cp '{b}' out.bin; echo made"));
    t.counted(
        "mixed",
        &format!("head -c 1000000 '{b}'; head -c 1500000 '{b}' >&2; exit 0"),
    );
    vec![
        ("out", vec!["--", "./out"], data.clone(), vec![], 0, None),
        (
            "fail",
            vec!["--cache-failures", "--", "./fail"],
            data.clone(),
            vec![],
            3,
            None,
        ),
        (
            "err",
            vec!["--", "./err"],
            b"start\ndone\n".to_vec(),
            data.clone(),
            0,
            None,
        ),
        (
            "file",
            vec!["-o", "out.bin", "--", "./file"],
            b"made\n".to_vec(),
            vec![],
            0,
            Some(data.clone()),
        ),
        (
            "mixed",
            vec!["--", "./mixed"],
            data[..1_000_000].to_vec(),
            data[..1_500_000].to_vec(),
            0,
            None,
        ),
    ]
}

#[test]
fn a_full_cache_filesystem_never_changes_the_result() {
    let t = TestContext::new();
    let Some(_m) = Mounted::tmpfs(&t.cache, "size=1m,mode=0700") else {
        return;
    };
    let cmds = oversized_commands(&t);
    for round in 0..2 {
        for (name, args, stdout, stderr, code, file) in &cmds {
            let _ = fs::remove_file(t.work.join("out.bin"));
            let before = t.count();
            let out = output_within(t.run(args), Duration::from_secs(60));
            assert_eq!(t.count(), before + 1, "{name} (round {round}): must run");
            assert_result(&out, *code, stdout, stderr);
            if let Some(f) = file {
                assert!(t.read("out.bin") == *f, "{name}: out.bin differs");
            }
        }
    }
    // The cache fills up gradually with 200 KiB results: every result is right, the first ones
    // are stored and hit, later ones are not stored.
    let mut hits = 0;
    for round in 0..2 {
        for i in 0..8 {
            let data = binary_data(200 * 1024 + i);
            let f = write_file(&t.root.join(format!("part{i}")), &data);
            t.counted(&format!("p{i}"), &format!("cat '{}'", f.display()));
            let before = t.count();
            let out = output_within(t.run(&["--", &format!("./p{i}")]), Duration::from_secs(60));
            assert_result(&out, 0, &data, "");
            if round == 1 && t.count() == before {
                hits += 1;
            }
        }
    }
    assert!(hits >= 1, "nothing was stored before the cache filled up");
    t.counted("small", "echo small");
    let out = t.run(&["--", "./small"]).output();
    assert_result(&out, 0, b"small\n", "");
    // Failed stores leave no temp files behind to keep the filesystem full.
    let left = files_under(&t.cache.join("tmp"));
    assert!(left.is_empty(), "temp files left in the cache: {left:?}");
}

#[test]
fn stdin_reaches_the_command_in_full_when_the_cache_filesystem_is_full() {
    let t = TestContext::new();
    let Some(_m) = Mounted::tmpfs(&t.cache, "size=1m,mode=0700") else {
        return;
    };
    let input = binary_data(3 << 20);
    t.counted("count", "wc -c");
    for _ in 0..2 {
        let out = output_within(
            t.run(&["--stdin", "--", "./count"]).stdin(input.clone()),
            Duration::from_secs(60),
        );
        assert_result(&out, 0, format!("{}\n", input.len()).as_bytes(), "");
    }
}

/// An entry stored before the cache went read-only: a counted command with a blob stdout and an
/// output file.
fn read_only_fixture(t: &TestContext) -> (Vec<u8>, impl Fn() -> Run + '_) {
    let data = binary_data(100 * 1024);
    let src = write_file(&t.root.join("ro-src"), &data);
    t.counted(
        "stored",
        &format!("cat '{}'; echo artifact > out.txt", src.display()),
    );
    t.counted("new", "echo new-result; echo new-note >&2; exit 4");
    (data, move || t.run(&["-o", "out.txt", "--", "./stored"]))
}

#[track_caller]
fn check_read_only_cache(t: &TestContext, data: &[u8], stored: &dyn Fn() -> Run) {
    for _ in 0..2 {
        // A hit still serves the entry (the journal append fails: at most one warning).
        let _ = fs::remove_file(t.work.join("out.txt"));
        let before = t.count();
        let out = stored().output();
        assert_eq!(t.count(), before, "the stored entry was not served");
        assert_result(&out, 0, data, "");
        assert_eq!(t.read("out.txt"), b"artifact\n");
        // A miss runs the command with its exact result.
        for extra in [&[][..], &["--cache-failures"][..]] {
            let before = t.count();
            let out = t.run(extra).args(&["--", "./new"]).output();
            assert_eq!(t.count(), before + 1);
            assert_result(&out, 4, b"new-result\n", "new-note\n");
        }
    }
}

#[test]
fn a_read_only_tmpfs_cache_serves_hits_and_runs_misses() {
    let t = TestContext::new();
    let Some(m) = Mounted::tmpfs(&t.cache, "size=4m,mode=0700") else {
        return;
    };
    let (data, stored) = read_only_fixture(&t);
    t.miss(stored());
    assert!(m.remount("remount,ro"), "cannot remount read-only");
    check_read_only_cache(&t, &data, &stored);
}

#[test]
fn a_read_only_bind_mounted_cache_serves_hits_and_runs_misses() {
    let t = TestContext::new();
    let real = t.root.join("real-cache");
    let (data, stored) = read_only_fixture(&t);
    t.miss(stored().env("CACHECTL_DIR", &real));
    let Some(_m) = Mounted::bind_ro(&real, &t.cache) else {
        return;
    };
    check_read_only_cache(&t, &data, &stored);
    // An empty read-only cache directory (nothing can be created in it) behaves the same.
    let empty = t.root.join("empty-cache");
    fs::create_dir(&empty).unwrap();
    set_mode(&empty, 0o700);
    let ro = t.root.join("ro-empty");
    let Some(_m2) = Mounted::bind_ro(&empty, &ro) else {
        return;
    };
    for _ in 0..2 {
        let before = t.count();
        let out = t.run(&["--", "./new"]).env("CACHECTL_DIR", &ro).output();
        assert_eq!(t.count(), before + 1);
        assert_result(&out, 4, b"new-result\n", "new-note\n");
    }
}

#[test]
fn a_read_only_cache_gives_the_command_its_stdin() {
    let t = TestContext::new();
    let Some(m) = Mounted::tmpfs(&t.cache, "size=4m,mode=0700") else {
        return;
    };
    t.counted("count", "wc -c");
    // A store first, so that the cache is initialised before it goes read-only.
    t.run(&["--", "true"]).assert().success();
    assert!(m.remount("remount,ro"));
    for input in [b"hello\n".to_vec(), binary_data(200 * 1024)] {
        let out = t
            .run(&["--stdin", "--", "./count"])
            .stdin(input.clone())
            .output();
        assert_result(&out, 0, format!("{}\n", input.len()).as_bytes(), "");
    }
}

/// Skip (with a note) unless root, as chown needs; under CI=true, fail instead.
fn need_root(what: &str) -> bool {
    if euid() == 0 {
        return true;
    }
    mount_unavailable(what).is_some()
}

#[test]
fn a_cache_dir_owned_by_another_user_is_not_used() {
    let t = TestContext::new();
    if !need_root("chown to nobody") {
        return;
    }
    t.counted("cmd", "echo result; echo note >&2; exit 5");
    t.counted("reader", "wc -c");
    t.miss(t.run(&["--cache-failures", "--", "./cmd"])).code(5);
    let nobody = nobody_uid();
    std::os::unix::fs::chown(&t.cache, Some(nobody), Some(nobody)).unwrap();
    let before_tree = tree(&t.cache);
    for _ in 0..2 {
        let before = t.count();
        let out = t.run(&["--cache-failures", "--", "./cmd"]).output();
        assert_eq!(
            t.count(),
            before + 1,
            "an entry in another user's cache was used"
        );
        let w = assert_result(&out, 5, b"result\n", "note\n").expect("one warning");
        assert!(
            w.contains(&t.cache.display().to_string()) && w.contains("another user"),
            "{w}"
        );
        let input = binary_data(150 * 1024);
        let out = t
            .run(&["--stdin", "--", "./reader"])
            .stdin(input.clone())
            .output();
        assert_result(&out, 0, format!("{}\n", input.len()).as_bytes(), "").expect("one warning");
    }
    assert_eq!(
        tree(&t.cache),
        before_tree,
        "cachectl wrote into another user's cache"
    );
}

#[test]
fn world_writable_cache_dirs_are_not_used() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    for (i, mode) in [0o777, 0o1777, 0o702].into_iter().enumerate() {
        let dir = t.root.join(format!("ww{i}"));
        fs::create_dir(&dir).unwrap();
        set_mode(&dir, mode);
        for _ in 0..2 {
            let before = t.count();
            let out = t.run(&["--", "./cmd"]).env("CACHECTL_DIR", &dir).output();
            assert_eq!(t.count(), before + 1);
            let w = assert_result(&out, 0, b"ok\n", "").expect("one warning");
            assert!(
                w.contains("writable by everyone") && w.contains("chmod 700"),
                "{w}"
            );
        }
        assert!(tree(&dir).is_empty(), "mode {mode:o}: {:?}", tree(&dir));
    }
}

#[test]
fn the_cache_dir_is_created_0700_even_under_umask_0() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    let dir = t.root.join("deep/er/cache");
    let mut run = t.run(&["--", "./cmd"]).env("CACHECTL_DIR", &dir);
    // SAFETY: umask is async-signal-safe.
    unsafe {
        run.cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let out = run.output();
    assert_result(&out, 0, b"ok\n", "");
    assert_eq!(mode(&dir), 0o700, "cache dir mode");
    assert_eq!(t.cache_files("ac-v1").len(), 0);
    assert_eq!(files_under(&dir.join("ac-v1")).len(), 1, "not stored");
}

#[test]
fn an_unsafe_cachectl_toml_on_the_way_up_is_refused_with_exit_2() {
    let t = TestContext::new();
    t.counted("cmd", "echo ran");
    let sub = t.work.join("sub/deeper");
    fs::create_dir_all(&sub).unwrap();
    let config = t.write("cachectl.toml", "namespace = \"proj\"\n");
    // Positive control: a private file owned by us applies.
    t.miss(t.run(&["--", "../../cmd"]).dir(&sub)).success();
    let nobody = nobody_uid();
    let world_file = t.root.join("shared.toml");
    type Setup<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, &str, Setup)> = vec![
        (
            "world-writable",
            "chmod o-w",
            Box::new(|| set_mode(&config, 0o666)),
        ),
        (
            "owned by another user",
            "chown it to yourself",
            Box::new(|| {
                set_mode(&config, 0o644);
                std::os::unix::fs::chown(&config, Some(nobody), Some(nobody)).unwrap();
            }),
        ),
        (
            "a symlink to a world-writable file",
            "chmod o-w",
            Box::new(|| {
                fs::remove_file(&config).unwrap();
                fs::write(&world_file, "namespace = \"evil\"\n").unwrap();
                set_mode(&world_file, 0o666);
                std::os::unix::fs::symlink(&world_file, &config).unwrap();
            }),
        ),
    ];
    for (what, fix, setup) in cases {
        if what == "owned by another user" && euid() != 0 && !need_root("chown to nobody") {
            continue;
        }
        setup();
        let before = t.count();
        let out = t.run(&["--", "../../cmd"]).dir(&sub).output();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert_eq!(t.count(), before, "{what}: the command ran");
        assert!(out.stdout.is_empty());
        assert!(
            err.contains(&config.display().to_string()) && err.contains("fix") && err.contains(fix),
            "{what}: the error must name the file and the fix: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Hostile entries
// ---------------------------------------------------------------------------------------------

/// `paths::encode_os` form of arbitrary bytes (what a record holds for a non-UTF-8 path).
fn encoded(bytes: &[u8]) -> String {
    let mut s = String::from("\0");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A stored entry (`-o out.txt -- ./cmd`) whose record a test rewrites, and a canary directory
/// outside the work dir that nothing may touch.
struct Hostile<'a> {
    t: &'a TestContext,
    record: PathBuf,
    original: Vec<u8>,
    /// The stored out.txt blob: a real, intact blob for hostile file entries to point at.
    digest: String,
    size: u64,
    canary: PathBuf,
    canary_tree: BTreeMap<Vec<u8>, Node>,
}

impl<'a> Hostile<'a> {
    fn new(t: &'a TestContext) -> Hostile<'a> {
        let canary = t.root.join("canary");
        write_file(&canary.join("keep.txt"), b"canary");
        fs::create_dir_all(canary.join("inner")).unwrap();
        set_mode(&canary, 0o755);
        t.counted("cmd", "printf ran; printf made > out.txt");
        t.miss(t.run(&["-o", "out.txt", "--", "./cmd"]));
        let record = only_file(t, "ac-v1");
        let original = fs::read(&record).unwrap();
        let d = record::decode(&original).unwrap();
        assert_eq!(d.record.outputs.len(), 1);
        Hostile {
            t,
            digest: d.record.outputs[0].digest.clone(),
            size: d.record.outputs[0].size,
            record,
            original,
            canary_tree: tree(&canary),
            canary,
        }
    }

    fn file(&self, path: &str) -> OutputEntry {
        OutputEntry {
            path: path.to_owned(),
            kind: OutputKind::File,
            mode: 0o644,
            digest: self.digest.clone(),
            size: self.size,
            target: String::new(),
        }
    }

    fn link(&self, path: &str, target: &str) -> OutputEntry {
        OutputEntry {
            path: path.to_owned(),
            kind: OutputKind::Symlink,
            mode: 0,
            digest: String::new(),
            size: 0,
            target: target.to_owned(),
        }
    }

    fn dir(&self, path: &str, mode: u32) -> OutputEntry {
        OutputEntry {
            path: path.to_owned(),
            kind: OutputKind::Dir,
            mode,
            digest: String::new(),
            size: 0,
            target: String::new(),
        }
    }

    /// Replace the stored entry's outputs (a validly checksummed record).
    fn plant(&self, edit: impl FnOnce(&mut Record)) {
        let d = record::decode(&self.original).unwrap();
        let mut rec = d.record;
        edit(&mut rec);
        fs::write(
            &self.record,
            record::encode(&rec, &d.inline_stdout, &d.inline_stderr),
        )
        .unwrap();
    }

    /// Nothing outside the work dir changed: the canary is intact (content and modes) and no
    /// `pwn` file or link appeared anywhere under the test's root except inside the work dir.
    #[track_caller]
    fn assert_nothing_outside(&self, what: &str) {
        assert_eq!(
            tree(&self.canary),
            self.canary_tree,
            "{what}: canary changed"
        );
        assert_eq!(mode(&self.canary), 0o755, "{what}: canary mode changed");
        for (p, _) in tree(&self.t.root) {
            let p = String::from_utf8_lossy(&p).into_owned();
            if p.starts_with("work/") || p.starts_with("cache/") {
                continue;
            }
            assert!(
                !p.contains("pwn"),
                "{what}: {p} was written outside the work dir"
            );
        }
        let leftovers: Vec<_> = tree(&self.t.work)
            .into_keys()
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .filter(|k| k.contains(".cachectl-restore"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{what}: staging files left: {leftovers:?}"
        );
    }

    /// The entry is refused: the command runs (and stores a fresh entry), nothing is written
    /// outside the work dir.
    #[track_caller]
    fn assert_refused(&self, what: &str) {
        let _ = fs::remove_file(self.t.work.join("out.txt"));
        let before = self.t.count();
        let out = output_within(
            self.t.run(&["-o", "out.txt", "--", "./cmd"]),
            Duration::from_secs(60),
        );
        assert_eq!(
            self.t.count(),
            before + 1,
            "{what}: the command did not run (exit {:?}, stderr: {})",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_result(&out, 0, b"ran", "");
        assert_eq!(self.t.read("out.txt"), b"made", "{what}");
        self.assert_nothing_outside(what);
    }
}

#[test]
fn hostile_output_paths_and_links_are_refused_and_nothing_is_written_outside() {
    let t = TestContext::new();
    let h = Hostile::new(&t);
    let canary = h.canary.to_str().unwrap().to_owned();
    let abs_pwn = format!("{canary}/pwn");
    let cases: Vec<(&str, Vec<OutputEntry>)> = vec![
        ("absolute file path", vec![h.file(&abs_pwn)]),
        ("`..` file path", vec![h.file("../canary/pwn")]),
        ("`..` inside the path", vec![h.file("out/../../canary/pwn")]),
        ("`.` and `..` mixed", vec![h.file("./a/./../../canary/pwn")]),
        (
            "encoded (non-UTF-8 form) `..` path",
            vec![h.file(&encoded(b"../canary/pwn"))],
        ),
        (
            "encoded absolute path",
            vec![h.file(&encoded(abs_pwn.as_bytes()))],
        ),
        (
            "a valid file, then an absolute one",
            vec![h.file("fine.txt"), h.file(&abs_pwn)],
        ),
        (
            "symlink to an absolute path",
            vec![h.link("pwn-link", &canary)],
        ),
        ("symlink with `..`", vec![h.link("pwn-link", "../canary")]),
        (
            "symlink climbing from a subdirectory",
            vec![
                h.dir("d", 0o755),
                h.link("d/pwn-link", "../../canary/keep.txt"),
            ],
        ),
        (
            "encoded symlink target",
            vec![h.link("pwn-link", &encoded(b"../canary"))],
        ),
        (
            "symlink out, then a file through it",
            vec![h.link("esc", "../canary"), h.file("esc/pwn")],
        ),
        (
            "a file through a symlink stored after it",
            vec![h.file("esc/pwn"), h.link("esc", "../canary")],
        ),
        (
            "an absolute directory",
            vec![h.dir(&format!("{canary}/inner"), 0o777)],
        ),
    ];
    for (what, outputs) in cases {
        h.plant(|r| r.outputs = outputs);
        h.assert_refused(what);
        for extra in ["fine.txt", "pwn-link", "d", "esc"] {
            let p = t.work.join(extra);
            let _ = fs::remove_file(&p);
            let _ = fs::remove_dir_all(&p);
        }
    }
}

#[test]
fn restoring_through_a_symlinked_directory_leading_outside_is_refused() {
    let t = TestContext::new();
    let h = Hostile::new(&t);
    fs::create_dir(t.work.join("real")).unwrap();
    type Setup = fn(&TestContext, &Path);
    let cases: Vec<(&str, Setup, Vec<OutputEntry>)> = vec![
        (
            "absolute symlink to the canary",
            |t, c| std::os::unix::fs::symlink(c, t.work.join("sub")).unwrap(),
            vec![h.file("sub/pwn")],
        ),
        (
            "relative symlink to the canary",
            |t, _| std::os::unix::fs::symlink("../canary", t.work.join("sub")).unwrap(),
            vec![h.file("sub/pwn")],
        ),
        (
            "symlink deeper in the path",
            |t, _| std::os::unix::fs::symlink("../../canary", t.work.join("real/sub")).unwrap(),
            vec![h.file("real/sub/pwn")],
        ),
        (
            "symlink inside, then one leading out",
            |t, _| {
                std::os::unix::fs::symlink("real", t.work.join("in")).unwrap();
                std::os::unix::fs::symlink("../../canary", t.work.join("real/out")).unwrap();
            },
            vec![h.file("in/out/pwn")],
        ),
        (
            "a stored directory over the symlink",
            |t, c| std::os::unix::fs::symlink(c, t.work.join("sub")).unwrap(),
            vec![h.dir("sub", 0o777), h.file("sub/pwn")],
        ),
        (
            "a file into the canary's subdirectory",
            |t, c| std::os::unix::fs::symlink(c, t.work.join("sub")).unwrap(),
            vec![h.file("sub/inner/pwn")],
        ),
        (
            "a link into the symlinked directory",
            |t, c| std::os::unix::fs::symlink(c, t.work.join("sub")).unwrap(),
            vec![h.link("sub/pwn", "keep.txt")],
        ),
    ];
    for (what, setup, outputs) in cases {
        setup(&t, &h.canary);
        h.plant(|r| r.outputs = outputs);
        h.assert_refused(what);
        for p in ["sub", "in", "real/sub", "real/out"] {
            let _ = fs::remove_file(t.work.join(p));
        }
    }
}

#[test]
fn a_restore_replaces_a_symlink_at_the_output_path_instead_of_writing_through_it() {
    let t = TestContext::new();
    let h = Hostile::new(&t);
    let out = t.work.join("out.txt");
    fs::remove_file(&out).unwrap();
    std::os::unix::fs::symlink(h.canary.join("keep.txt"), &out).unwrap();
    let a = t
        .hit(t.run(&["-o", "out.txt", "--", "./cmd"]))
        .success()
        .stdout("ran");
    assert!(warnings(&stderr_of(&a)).is_empty());
    assert!(fs::symlink_metadata(&out).unwrap().is_file());
    assert_eq!(fs::read(&out).unwrap(), b"made");
    h.assert_nothing_outside("symlink at the output path");
}

#[test]
fn a_malformed_encoded_path_in_a_record_is_refused_not_a_crash() {
    let t = TestContext::new();
    let h = Hostile::new(&t);
    for path in ["\0aéb", "\0é", "\0\u{1F600}00"] {
        h.plant(|r| r.outputs = vec![h.file(path)]);
        h.assert_refused(&format!("path {path:?}"));
        h.plant(|r| r.outputs = vec![h.link("l", path)]);
        h.assert_refused(&format!("link target {path:?}"));
    }
}

#[test]
fn a_record_with_impossible_stream_sizes_is_refused_not_a_crash() {
    let t = TestContext::new();
    let h = Hostile::new(&t);
    h.plant(|r| {
        r.stdout.size = 1 << 63;
        r.stderr.size = 1 << 63;
    });
    // The inline stdout ("ran") is still appended by `plant`; the sizes cannot match it.
    h.assert_refused("stream sizes of 2^63");
}

#[test]
fn output_symlinks_pointing_outside_are_not_stored() {
    let t = TestContext::new();
    let canary = t.root.join("canary");
    write_file(&canary.join("keep.txt"), b"canary");
    t.counted(
        "mk",
        &format!(
            "ln -sfn ../canary esc; mkdir -p d; ln -sfn '{}' d/abs; ln -sfn ../d in-link; echo made",
            canary.display()
        ),
    );
    for args in [&["-o", "esc"][..], &["-o", "d"]] {
        let mut full = args.to_vec();
        full.extend(["--", "./mk"]);
        for _ in 0..2 {
            let before = t.count();
            let out = t.run(&full).output();
            assert_eq!(t.count(), before + 1, "{args:?}: must not be stored");
            let w = assert_result(&out, 0, b"made\n", "").expect("one warning");
            assert!(w.contains("outside the working directory"), "{w}");
        }
    }
    assert!(t.cache_files("ac-v1").is_empty());
    assert_eq!(fs::read(canary.join("keep.txt")).unwrap(), b"canary");
    // Control: a link that stays inside is stored and restored as a link.
    t.counted("inside", "mkdir -p o; echo x > o/t; ln -sfn t o/l; echo ok");
    t.miss(t.run(&["-o", "o", "--", "./inside"]));
    fs::remove_dir_all(t.work.join("o")).unwrap();
    t.hit(t.run(&["-o", "o", "--", "./inside"])).stdout("ok\n");
    assert_eq!(fs::read_link(t.work.join("o/l")).unwrap(), Path::new("t"));
}

#[test]
fn an_output_reached_through_a_symlinked_dir_leading_outside_is_not_stored() {
    let t = TestContext::new();
    let canary = t.root.join("canary");
    fs::create_dir_all(&canary).unwrap();
    std::os::unix::fs::symlink("../canary", t.work.join("sub")).unwrap();
    t.counted("mk", "echo x > sub/f.txt; echo made");
    for _ in 0..3 {
        let before = t.count();
        let out = t.run(&["-o", "sub/f.txt", "--", "./mk"]).output();
        assert_eq!(t.count(), before + 1);
        assert_result(&out, 0, b"made\n", "");
    }
    assert!(
        t.cache_files("ac-v1").is_empty(),
        "an output outside the working directory was stored"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Signals
// ---------------------------------------------------------------------------------------------

/// A counted command that writes partial output (stdout and its declared output file), reports
/// that it started, then waits; on SIGINT/SIGTERM/SIGHUP it appends `got SIG` to `marker` and
/// dies of that signal (or, with `EXIT_CODE` set, exits with that code). Without `block` in the
/// work dir it just finishes. It waits in a foreground loop of short sleeps: a background
/// `sleep` could outlive the shell (dash loses a `kill` that races the job's fork+exec) and hold
/// cachectl's capture pipes open.
fn signal_fixture(t: &TestContext) {
    let mut body = String::new();
    for sig in ["INT", "TERM", "HUP"] {
        body.push_str(&format!(
            "trap 'echo got {sig} >> marker; if [ -n \"$EXIT_CODE\" ]; then exit $EXIT_CODE; fi; trap - {sig}; kill -{sig} $$' {sig}\n"
        ));
    }
    body.push_str(
        "echo partial\nprintf half > out.txt\nif [ -e block ]; then\n  echo started > started\n  while :; do sleep 0.05; done\nfi\nprintf ' whole' >> out.txt\necho finished\n",
    );
    t.counted("sig", &body);
}

#[test]
fn sigint_and_sigterm_reach_the_command_and_nothing_partial_is_stored() {
    let t = TestContext::new();
    signal_fixture(&t);
    let cases = [
        ("INT", libc::SIGINT, None),
        ("TERM", libc::SIGTERM, None),
        ("HUP", libc::SIGHUP, None),
        ("INT", libc::SIGINT, Some(0)),
        ("TERM", libc::SIGTERM, Some(7)),
    ];
    for (name, sig, exit_code) in cases {
        for extra in [&[][..], &["--cache-failures"][..]] {
            fs::write(t.work.join("block"), b"").unwrap();
            let _ = fs::remove_file(t.work.join("started"));
            let _ = fs::remove_file(t.work.join("marker"));
            let mut run = t.run(extra).args(&["-o", "out.txt", "--", "./sig"]);
            if let Some(c) = exit_code {
                run = run.env("EXIT_CODE", c.to_string());
            }
            let (child, _) = run.spawn();
            wait_until(Duration::from_secs(10), "the command to start", || {
                t.work.join("started").exists()
            });
            // SAFETY: kill on the pid of our own running child.
            unsafe {
                libc::kill(child.id() as i32, sig);
            }
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || tx.send(child.wait_with_output()).unwrap());
            let out = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("SIG{name} {extra:?}: cachectl did not exit"))
                .unwrap();
            let want = exit_code.unwrap_or(128 + sig);
            assert_result(&out, want, b"partial\n", "");
            assert_eq!(
                fs::read_to_string(t.work.join("marker")).unwrap(),
                format!("got {name}\n"),
                "SIG{name} did not reach the command exactly once"
            );
            assert!(
                t.cache_files("ac-v1").is_empty(),
                "SIG{name} {extra:?}: an interrupted run was stored"
            );
        }
    }
    // Uninterrupted, the same command is stored whole, and hits.
    fs::remove_file(t.work.join("block")).unwrap();
    t.miss(t.run(&["-o", "out.txt", "--", "./sig"]))
        .success()
        .stdout("partial\nfinished\n");
    fs::remove_file(t.work.join("out.txt")).unwrap();
    t.hit(t.run(&["-o", "out.txt", "--", "./sig"]))
        .stdout("partial\nfinished\n");
    assert_eq!(t.read("out.txt"), b"half whole");
}

// ---------------------------------------------------------------------------------------------
// 8. Odd and large outputs (the 2 GiB round trip is in tests/stress/run.sh)
// ---------------------------------------------------------------------------------------------

#[test]
fn binary_streams_with_nul_bytes_round_trip_byte_exact() {
    let t = TestContext::new();
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let small = write_file(&t.root.join("small"), b"\0\0a\0\xff\xfe\r\n\0");
    let all = write_file(&t.root.join("all"), &every_byte);
    let big = write_file(&t.root.join("big"), &binary_data(300 * 1024));
    let (s, a, b) = (small.display(), all.display(), big.display());
    t.counted(
        "bin",
        &format!("cat '{s}'; cat '{a}' >&2; cat '{b}'; cat '{s}' >&2; cat '{a}'"),
    );
    let mut stdout = fs::read(&small).unwrap();
    stdout.extend(binary_data(300 * 1024));
    stdout.extend(&every_byte);
    let mut stderr = every_byte.clone();
    stderr.extend(fs::read(&small).unwrap());
    let out = t.miss(t.run(&["--", "./bin"])).get_output().clone();
    assert_result(&out, 0, &stdout, &stderr);
    for _ in 0..2 {
        let out = t.hit(t.run(&["--", "./bin"])).get_output().clone();
        assert_eq!(assert_result(&out, 0, &stdout, &stderr), None);
    }
    // The same bytes through one pipe keep their order.
    let (merged_miss, _) = t.run(&["--force", "--", "./bin"]).merged_output();
    let (merged_hit, _) = t.run(&["--", "./bin"]).merged_output();
    assert!(merged_miss == merged_hit, "interleaving differs");
}

/// A template tree (made by the test) that the command copies into its output dir with `cp -a`.
fn copy_command(t: &TestContext, name: &str, template: &Path, dest: &str) {
    t.counted(
        name,
        &format!(
            "rm -rf '{dest}'; mkdir -p '{dest}'; cp -a '{}'/. '{dest}'/; echo copied",
            template.display()
        ),
    );
}

#[test]
fn three_thousand_output_files_round_trip() {
    let t = TestContext::new();
    let tpl = t.root.join("tpl");
    for d in 0..30 {
        for f in 0..100 {
            let p = tpl.join(format!("d{d:02}/f{f:03}.txt"));
            let content = if f % 10 == 0 {
                Vec::new()
            } else {
                format!("file {d} {f}\n").repeat(f % 7 + 1).into_bytes()
            };
            write_file(&p, &content);
            if f % 13 == 0 {
                set_mode(&p, 0o755);
            }
        }
    }
    fs::create_dir_all(tpl.join("empty/nested")).unwrap();
    std::os::unix::fs::symlink("d00/f001.txt", tpl.join("link")).unwrap();
    let want = tree(&tpl);
    assert!(want.len() > 3000);
    copy_command(&t, "mkmany", &tpl, "many");
    let start = Instant::now();
    t.miss(t.run(&["-o", "many", "--", "./mkmany"]))
        .stdout("copied\n");
    let stored = start.elapsed();
    fs::remove_dir_all(t.work.join("many")).unwrap();
    let start = Instant::now();
    let a = t
        .hit(t.run(&["-o", "many", "--", "./mkmany"]))
        .stdout("copied\n");
    let restored = start.elapsed();
    assert!(warnings(&stderr_of(&a)).is_empty());
    assert!(
        tree(&t.work.join("many")) == want,
        "the restored tree differs"
    );
    eprintln!("3000 files: store {stored:?}, restore {restored:?}");
    assert_verify_clean(&t);
}

#[test]
fn odd_file_names_round_trip_byte_exact() {
    let t = TestContext::new();
    let tpl = t.root.join("odd-tpl");
    let names: Vec<&[u8]> = vec![
        b"with space",
        b" leading space",
        b"trailing space ",
        b"new\nline",
        b"\nstarts with newline",
        b"tab\there",
        b"non-utf8 \xff\xfe\x80",
        b"\xc3\x28 invalid sequence",
        "é unicode ✓ 日本".as_bytes(),
        b"-dash",
        b"back\\slash",
        b"glob*?[x]{a,b}",
        b"quote'\"",
        b".hidden",
        b"..dots..",
        b"\\0hex-looking",
        b"%s%n",
    ];
    for (i, n) in names.iter().enumerate() {
        let p = tpl.join(OsStr::from_bytes(n));
        write_file(&p, format!("content {i}\n").as_bytes());
    }
    let sub = tpl.join(OsStr::from_bytes(b"dir with\nnewline \xff"));
    write_file(
        &sub.join(OsStr::from_bytes(b"inner \xfe name")),
        b"inner\0binary",
    );
    std::os::unix::fs::symlink(
        OsStr::from_bytes(b"new\nline"),
        tpl.join(OsStr::from_bytes(b"link \xff to newline")),
    )
    .unwrap();
    let want = tree(&tpl);
    copy_command(&t, "mkodd", &tpl, "odd");
    // Also directly declared outputs with odd (UTF-8) names; a non-UTF-8 declared name has its
    // own test.
    let direct: Vec<&[u8]> = vec![b"direct\nnewline.txt", b" direct 'quoted' *.txt"];
    t.counted(
        "direct",
        "for n in \"$@\"; do printf 'direct:%s' \"$n\" > \"$n\"; done; echo direct",
    );
    let run_direct = || {
        let mut run = t.run(&[]);
        for n in &direct {
            run.cmd.arg("-o").arg(OsStr::from_bytes(n));
        }
        run.cmd.arg("--").arg("./direct");
        for n in &direct {
            run.cmd.arg(OsStr::from_bytes(n));
        }
        run
    };
    t.miss(t.run(&["-o", "odd", "--", "./mkodd"]))
        .stdout("copied\n");
    t.miss(run_direct()).stdout("direct\n");
    fs::remove_dir_all(t.work.join("odd")).unwrap();
    for n in &direct {
        fs::remove_file(t.work.join(OsStr::from_bytes(n))).unwrap();
    }
    t.hit(t.run(&["-o", "odd", "--", "./mkodd"]))
        .stdout("copied\n");
    t.hit(run_direct()).stdout("direct\n");
    assert!(
        tree(&t.work.join("odd")) == want,
        "the restored tree differs"
    );
    for n in &direct {
        let mut want = b"direct:".to_vec();
        want.extend_from_slice(n);
        assert_eq!(fs::read(t.work.join(OsStr::from_bytes(n))).unwrap(), want);
    }
    // The management commands cope with these names too.
    for args in [&["ls", "--json"][..], &["stats"], &["verify"]] {
        t.cachectl(args).assert().success();
    }
}

#[test]
fn a_declared_output_with_a_non_utf8_name_round_trips() {
    let t = TestContext::new();
    let name = OsStr::from_bytes(b"out \xff\xfe.bin");
    t.counted("mk", "printf 'bytes\\0' > \"$1\"; echo made");
    let run = || {
        let mut run = t.run(&["-o"]);
        run.cmd.arg(name).arg("--").arg("./mk").arg(name);
        run
    };
    t.miss(run()).success().stdout("made\n");
    fs::remove_file(t.work.join(name)).unwrap();
    t.hit(run()).success().stdout("made\n");
    assert_eq!(fs::read(t.work.join(name)).unwrap(), b"bytes\0");
}

#[test]
fn gc_never_deletes_a_blob_a_concurrent_store_just_reused() {
    let t = TestContext::new();
    let data = write_file(&t.root.join("data"), &binary_data(400_000));
    // Two keys with the same stdout: the second store deduplicates onto the first one's blob.
    t.script(
        "cmd",
        &format!(
            "cat '{}'; if [ \"$1\" = b ]; then echo x > out.bin; fi",
            data.display()
        ),
    );
    t.run(&["--", "./cmd", "a"]).assert().success();
    t.cachectl(&["ls"]).assert().success();
    for round in 0..40 {
        t.run(&["--", "./cmd", "a"]).assert().success();
        let gc = t.cachectl(&["gc", "--max-size", "1"]).spawn().0;
        t.run(&["--force", "-o", "out.bin", "--", "./cmd", "b"])
            .assert()
            .success();
        gc.wait_with_output().unwrap();
        let (code, text) = verify(&t);
        assert_eq!(
            code, 0,
            "round {round}: torn entry after a concurrent gc:\n{text}"
        );
    }
}

#[test]
fn identical_concurrent_misses_of_a_fast_command_run_it_once() {
    let t = TestContext::new();
    let (gen_path, _) = load_fixture(&t);
    let gen_s = gen_path.to_str().unwrap();
    let mut twice = Vec::new();
    for round in 0..200 {
        let salt = format!("fast-{round}");
        let before = real_runs(&t, 0);
        let children: Vec<_> = (0..8)
            .map(|_| t.run(&["--salt", &salt, "--", gen_s, "0"]).spawn().0)
            .collect();
        for c in children {
            assert!(c.wait_with_output().unwrap().status.success());
        }
        let runs = real_runs(&t, 0) - before;
        if runs != 1 {
            twice.push(format!("round {round}: {runs} runs"));
        }
    }
    assert!(twice.is_empty(), "{} of 200 rounds: {twice:?}", twice.len());
}

/// Closed standard descriptors must be opened on /dev/null before cachectl opens anything (std's
/// start-up does it): otherwise the first file it opens would become "stdout".
/// (Found this way: a hit with stdout closed wrote into the record's read-only descriptor, got
/// EBADF, dropped the entry and ran the command again.)
#[test]
fn closed_standard_descriptors_never_become_cache_files() {
    let t = TestContext::new();
    let script = t.counted("two", "echo out; echo err >&2");
    let s = script.to_str().unwrap();
    for closed in [&[1][..], &[0, 1], &[1, 2], &[2]] {
        let salt = format!("{closed:?}");
        let before = t.count();
        for _ in 0..2 {
            let mut run = t.run(&["--salt", &salt, "--", s]);
            let fds = closed.to_vec();
            // SAFETY: close(2) is async-signal-safe; the child is about to exec.
            unsafe {
                run.cmd.pre_exec(move || {
                    for &fd in &fds {
                        libc::close(fd);
                    }
                    Ok(())
                });
            }
            let out = run.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            let out = out.output().unwrap();
            assert!(out.status.success(), "with {closed:?} closed: {out:?}");
            if !closed.contains(&2) {
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(err, "err\n", "with {closed:?} closed");
            }
        }
        assert_eq!(t.count(), before + 1, "with {closed:?} closed: not a hit");
        // The entry is intact and replays both streams exactly.
        let a = t.hit(t.run(&["--salt", &salt, "--", s]));
        assert_eq!(stdout_of(&a), b"out\n", "with {closed:?} closed");
        assert_eq!(stderr_of(&a), "err\n", "with {closed:?} closed");
    }
    let (code, text) = verify(&t);
    assert_eq!(code, 0, "{text}");
}
