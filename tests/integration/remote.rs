//! The remote tier against real servers (fixtures in `servers.rs`). Two cache dirs stand for two
//! machines sharing one remote; each machine has its own work dir holding the same `build`
//! script, and runs with `--no-cwd` so that both compute the same key. Every scenario runs
//! against each backend (Redis, WebDAV, S3): see the modules at the end.

use crate::servers::{Kind, Server};
use crate::util::*;
use assert_cmd::assert::Assert;
use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `CACHECTL_REMOTE_TIMEOUT` of every run.
const TIMEOUT: &str = "2s";
/// Variables that would point the S3 client somewhere else; removed from every run.
const FOREIGN_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
];
/// The output files the build script writes (all declared, via `out.bin` and `outdir`).
const OUTPUT_FILES: &[&str] = &["out.bin", "outdir/a.txt", "outdir/sub/b.bin"];

/// A test's temp dir and its server, with the ~200 KiB of data the build copies.
fn setup(kind: Kind) -> Option<(TestContext, Server)> {
    let server = Server::start(kind)?;
    let t = TestContext::new();
    fs::write(data_path(&t), binary_data(200 * 1024)).unwrap();
    Some((t, server))
}

fn data_path(t: &TestContext) -> PathBuf {
    t.root.join("data.bin")
}

/// `./build CODE [WORDS]`: writes `out.bin` (the 200 KiB of data) and `outdir/` (two files),
/// prints two lines on stdout and one on stderr, and exits CODE.
fn build_script(t: &TestContext) -> String {
    let data = data_path(t);
    let data = data.display();
    format!(
        "mkdir -p outdir/sub
cp '{data}' out.bin
printf 'alpha\\n' > outdir/a.txt
head -c 5000 '{data}' > outdir/sub/b.bin
printf 'line one\\nline two: %s\\n' \"$*\"
printf 'build says: %s\\n' \"$*\" >&2
exit \"$1\""
    )
}

fn expected_stdout(args: &[&str]) -> String {
    format!("line one\nline two: {}\n", args.join(" "))
}

fn expected_stderr(args: &[&str]) -> String {
    format!("build says: {}\n", args.join(" "))
}

/// One "machine": its own cache dir and work dir, pointed at the shared server.
struct Machine<'a> {
    t: &'a TestContext,
    env: Vec<(&'static str, String)>,
    cache: PathBuf,
    work: PathBuf,
}

impl<'a> Machine<'a> {
    fn new(t: &'a TestContext, server: &Server, name: &str) -> Machine<'a> {
        let work = t.root.join(name).join("work");
        fs::create_dir_all(&work).unwrap();
        t.counted_in(&work, "build", &build_script(t));
        Machine {
            t,
            env: server.env(),
            cache: t.root.join(name).join("cache"),
            work,
        }
    }

    /// `cachectl ARGS` on this machine, with the remote configured by the environment.
    fn cachectl(&self, args: &[&str]) -> Run {
        let mut r = self
            .t
            .cachectl(args)
            .env("CACHECTL_DIR", &self.cache)
            .env("CACHECTL_REMOTE_TIMEOUT", TIMEOUT)
            .dir(&self.work);
        for name in FOREIGN_ENV {
            r = r.env_remove(name);
        }
        for (name, value) in &self.env {
            r = r.env(name, value);
        }
        r
    }

    /// `cachectl run --no-cwd -o out.bin -o outdir OPTS -- ./build ARGS`.
    fn run(&self, opts: &[&str], args: &[&str]) -> Run {
        self.cachectl(&["run", "--no-cwd", "-o", "out.bin", "-o", "outdir"])
            .args(opts)
            .args(&["--", "./build"])
            .args(args)
    }

    /// The output files in the work dir (path, bytes); panics if one is missing.
    fn outputs(&self) -> Vec<(&'static str, Vec<u8>)> {
        OUTPUT_FILES
            .iter()
            .map(|f| {
                let p = self.work.join(f);
                let bytes = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                (*f, bytes)
            })
            .collect()
    }

    fn remove_outputs(&self) {
        let _ = fs::remove_file(self.work.join("out.bin"));
        let _ = fs::remove_dir_all(self.work.join("outdir"));
    }

    /// `stats --json`'s `remote` object.
    fn remote_stats(&self) -> Value {
        let a = self.cachectl(&["stats", "--json"]).assert().success();
        let v: Value = serde_json::from_slice(&a.get_output().stdout)
            .unwrap_or_else(|e| panic!("stats --json: {e}\n{}", summary(&a)));
        v["remote"].clone()
    }

    fn breaker(&self) -> PathBuf {
        self.cache.join("remote-v1.down")
    }

    /// Close the circuit breaker, so that the next run uses the remote again.
    fn clear_breaker(&self) {
        let _ = fs::remove_file(self.breaker());
    }
}

/// `(hits, misses, stores)` of a `remote` stats object.
fn hms(remote: &Value) -> (u64, u64, u64) {
    let n = |k: &str| {
        remote[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no `{k}` in {remote}"))
    };
    (n("hits"), n("misses"), n("stores"))
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no `{k}` in {v}"))
}

/// Total of `errors{kind}`.
fn error_total(remote: &Value) -> u64 {
    remote["errors"]
        .as_object()
        .unwrap_or_else(|| panic!("no errors object in {remote}"))
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

/// Stderr without cachectl's own warning lines: what the wrapped command wrote.
fn command_stderr(a: &Assert) -> String {
    stderr_of(a)
        .lines()
        .filter(|l| !l.starts_with("cachectl: warning"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The run produced exactly what `./build ARGS` produces: stdout, the command's stderr (exact,
/// with no warnings when `clean`) and, for exit 0, the output files.
#[track_caller]
fn assert_result(m: &Machine, a: &Assert, args: &[&str], clean: bool) {
    let out = a.get_output();
    let code: i32 = args[0].parse().unwrap();
    assert_eq!(out.status.code(), Some(code), "{}", summary(a));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected_stdout(args),
        "{}",
        summary(a)
    );
    if clean {
        assert_eq!(stderr_of(a), expected_stderr(args), "{}", summary(a));
    } else {
        assert_eq!(command_stderr(a), expected_stderr(args), "{}", summary(a));
    }
    if code == 0 {
        let outputs = m.outputs();
        let data = fs::read(data_path(m.t)).unwrap();
        assert!(
            outputs[0].1 == data,
            "out.bin differs from what the build wrote"
        );
        assert_eq!(outputs[1].1, b"alpha\n");
        assert!(outputs[2].1 == data[..5000], "outdir/sub/b.bin differs");
    }
}

/// Exactly one cachectl warning, about this remote; returns it.
#[track_caller]
fn one_remote_warning(a: &Assert, server: &Server) -> String {
    let stderr = stderr_of(a);
    let w = warnings(&stderr);
    assert_eq!(w.len(), 1, "expected one warning:\n{stderr}");
    let url = server.url();
    assert!(
        w[0].contains(&format!("remote {url}")),
        "the warning does not name `remote {url}`:\n{stderr}"
    );
    w[0].to_owned()
}

/// The first stored object whose path starts with `prefix` (`ac/`, `pr1/cas/`).
#[track_caller]
fn object(server: &Server, prefix: &str) -> String {
    let objects = server.objects().unwrap();
    objects
        .iter()
        .find(|o| o.starts_with(prefix))
        .unwrap_or_else(|| panic!("no object under {prefix}: {objects:?}"))
        .clone()
}

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

// ---------------------------------------------------------------------------------------------
// Scenarios, each taking the backend.

/// A stores; B, with an empty cache, gets a byte-exact hit from the remote (streams, exit code,
/// output files); the command ran once; B's second run is a local hit. The same for a stored
/// failure (`--cache-failures`, exit 3).
fn machines_share_results(kind: Kind) {
    let Some((t, server)) = setup(kind) else {
        return;
    };
    let a = Machine::new(&t, &server, "a");
    let b = Machine::new(&t, &server, "b");
    let ok = ["0"];

    let ra = t.miss(a.run(&[], &ok));
    assert_result(&a, &ra, &ok, true);
    assert_eq!(
        hms(&a.remote_stats()),
        (0, 1, 1),
        "A: one remote miss, one store"
    );

    let rb = t.hit(b.run(&[], &ok));
    assert_result(&b, &rb, &ok, true);
    assert!(stdout_of(&rb) == stdout_of(&ra));
    assert_eq!(stderr_of(&rb), stderr_of(&ra));
    assert!(
        b.outputs() == a.outputs(),
        "B's output files differ from A's"
    );
    assert_eq!(t.count(), 1, "the command ran more than once");
    assert_eq!(hms(&b.remote_stats()), (1, 0, 0), "B: one remote hit");

    // B again: a local hit, the remote is not asked.
    b.remove_outputs();
    let rb2 = t.hit(b.run(&[], &ok));
    assert_result(&b, &rb2, &ok, true);
    assert_eq!(
        hms(&b.remote_stats()),
        (1, 0, 0),
        "B's second run asked the remote"
    );

    // A stored failure travels too, with its exit code.
    let fail = ["3", "failing"];
    let fa = t.miss(a.run(&["--cache-failures"], &fail));
    assert_result(&a, &fa, &fail, true);
    let fb = t.hit(b.run(&["--cache-failures"], &fail));
    assert_result(&b, &fb, &fail, true);
    assert_eq!(t.count(), 2);
}

/// `--remote ro`, `CACHECTL_REMOTE_MODE=ro`, `[remote] mode = "ro"` and `--remote off` read at
/// most and never write: the remote stays empty and a third machine misses everything.
fn read_only_never_writes(kind: Kind) {
    let Some((t, server)) = setup(kind) else {
        return;
    };
    let a = Machine::new(&t, &server, "a");
    let cases: [&[&str]; 4] = [&["0", "flag"], &["0", "env"], &["0", "file"], &["0", "off"]];
    t.miss(a.run(&["--remote", "ro"], cases[0])).success();
    t.miss(a.run(&[], cases[1]).env("CACHECTL_REMOTE_MODE", "ro"))
        .success();
    fs::write(a.work.join("cachectl.toml"), "[remote]\nmode = \"ro\"\n").unwrap();
    t.miss(a.run(&[], cases[2])).success();
    fs::remove_file(a.work.join("cachectl.toml")).unwrap();
    t.miss(a.run(&["--remote", "off"], cases[3])).success();
    let remote = a.remote_stats();
    assert_eq!(
        hms(&remote),
        (0, 3, 0),
        "ro runs look up (3 misses) and never store; off does nothing: {remote}"
    );
    assert_eq!(u(&remote, "bytes_up"), 0, "{remote}");
    assert_eq!(error_total(&remote), 0, "{remote}");
    if let Some(objects) = server.objects() {
        assert!(
            objects.is_empty(),
            "ro mode wrote to the remote: {objects:?}"
        );
    }

    let c = Machine::new(&t, &server, "c");
    for args in cases {
        let r = t.miss(c.run(&["--remote", "ro"], args));
        assert_result(&c, &r, args, true);
    }
    assert_eq!(hms(&c.remote_stats()), (0, 4, 0));
}

/// A killed server: B still gets the right result quickly, with one warning; the circuit breaker
/// then keeps the next run from trying the remote at all.
fn dead_server_then_breaker(kind: Kind) {
    let Some((t, mut server)) = setup(kind) else {
        return;
    };
    let a = Machine::new(&t, &server, "a");
    let b = Machine::new(&t, &server, "b");
    let ok = ["0"];
    t.miss(a.run(&[], &ok)).success();
    server.kill();

    let start = Instant::now();
    let rb = t.miss(b.run(&[], &ok));
    let took = start.elapsed();
    assert_result(&b, &rb, &ok, false);
    assert!(
        took < Duration::from_secs(10),
        "a dead remote cost {took:?} (timeout {TIMEOUT})"
    );
    one_remote_warning(&rb, &server);
    let until: u64 = fs::read_to_string(b.breaker())
        .expect("the breaker is open after the failure")
        .trim()
        .parse()
        .expect("the breaker file holds a timestamp");
    let left = until.saturating_sub(now_ms());
    assert!(
        (20_000..=31_000).contains(&left),
        "the breaker is open for {left} ms more, not ~30 s"
    );
    let remote = b.remote_stats();
    assert_eq!(error_total(&remote), 1, "{remote}");
    assert_eq!(hms(&remote), (0, 0, 0), "{remote}");

    // Breaker open: another local miss does not try the remote (no error, no warning, fast).
    let next = ["0", "next"];
    let start = Instant::now();
    let rn = t.miss(b.run(&[], &next));
    let took = start.elapsed();
    assert_result(&b, &rn, &next, true);
    assert!(
        took < Duration::from_secs(1),
        "with the breaker open the run took {took:?}"
    );
    assert_eq!(
        error_total(&b.remote_stats()),
        1,
        "the remote was tried again"
    );

    // It was the breaker that skipped it: closed, the (still dead) remote is tried again.
    b.clear_breaker();
    let again = ["0", "again"];
    let rg = t.miss(b.run(&[], &again));
    assert_result(&b, &rg, &again, false);
    one_remote_warning(&rg, &server);
    assert_eq!(error_total(&b.remote_stats()), 2);
    assert!(b.breaker().exists(), "the breaker did not open again");
}

/// A frozen server (accepts connections, never answers): B gets the right result within a few
/// timeouts, with one warning, counted as a timeout.
fn frozen_server_times_out(kind: Kind) {
    let Some((t, server)) = setup(kind) else {
        return;
    };
    let a = Machine::new(&t, &server, "a");
    let b = Machine::new(&t, &server, "b");
    let ok = ["0"];
    t.miss(a.run(&[], &ok)).success();
    server.freeze();

    let start = Instant::now();
    let rb = t.miss(b.run(&[], &ok));
    let took = start.elapsed();
    assert_result(&b, &rb, &ok, false);
    assert!(
        took < Duration::from_secs(10),
        "a frozen remote cost {took:?} (timeout {TIMEOUT})"
    );
    one_remote_warning(&rb, &server);
    let remote = b.remote_stats();
    assert_eq!(u(&remote, "timeouts"), 1, "{remote}");
    assert!(b.breaker().exists(), "the breaker did not open");

    // The server comes back and the breaker is closed: the remote is used again.
    server.thaw();
    b.clear_breaker();
    let next = ["0", "next"];
    let rn = t.miss(b.run(&[], &next));
    assert_result(&b, &rn, &next, true);
    let remote = b.remote_stats();
    assert_eq!(
        (u(&remote, "misses"), u(&remote, "stores")),
        (1, 1),
        "{remote}"
    );
}

/// A flipped byte in the stored record: refused, B runs the command, with one warning.
fn tampered_record_is_refused(kind: Kind) {
    let Some((t, server)) = setup(kind) else {
        return;
    };
    if !server.inspectable() {
        eprintln!("note: redis-cli is missing: cannot tamper with a Redis record; skipped");
        return;
    }
    let a = Machine::new(&t, &server, "a");
    let b = Machine::new(&t, &server, "b");
    let ok = ["0"];
    t.miss(a.run(&[], &ok)).success();
    let record = object(&server, "ac/");
    let len = server.read(&record).len() as isize;
    server.flip_byte(&record, len / 2);

    let rb = t.miss(b.run(&[], &ok));
    assert_result(&b, &rb, &ok, false);
    one_remote_warning(&rb, &server);
    let remote = b.remote_stats();
    assert!(u(&remote, "refused") >= 1, "{remote}");
    assert_eq!(u(&remote, "hits"), 0, "{remote}");

    // B's rerun uploaded a good record over the bad one: C hits.
    let c = Machine::new(&t, &server, "c");
    let rc = t.hit(c.run(&[], &ok));
    assert_result(&c, &rc, &ok, true);
}

/// A flipped byte in the stored output blob: refused likewise.
fn tampered_blob_is_refused(kind: Kind) {
    let Some((t, server)) = setup(kind) else {
        return;
    };
    if !server.inspectable() {
        eprintln!("note: redis-cli is missing: cannot tamper with a Redis blob; skipped");
        return;
    }
    let a = Machine::new(&t, &server, "a");
    let b = Machine::new(&t, &server, "b");
    let ok = ["0"];
    t.miss(a.run(&[], &ok)).success();
    // The largest blob: out.bin's content.
    let blob = server
        .objects()
        .unwrap()
        .into_iter()
        .filter(|o| o.starts_with("cas/"))
        .max_by_key(|o| server.read(o).len())
        .expect("no blob on the remote");
    server.flip_byte(&blob, -100);

    let rb = t.miss(b.run(&[], &ok));
    assert_result(&b, &rb, &ok, false);
    one_remote_warning(&rb, &server);
    let remote = b.remote_stats();
    assert!(u(&remote, "refused") >= 1, "{remote}");
    assert_eq!(u(&remote, "hits"), 0, "{remote}");
}

/// After a refused blob, the rerun's upload repairs the remote (as a rerun repairs a corrupt
/// local blob): the next machine hits.
fn tampered_blob_is_repaired_by_the_rerun(kind: Kind) {
    let Some((t, server)) = setup(kind) else {
        return;
    };
    if !server.inspectable() {
        eprintln!("note: redis-cli is missing: cannot tamper with a Redis blob; skipped");
        return;
    }
    let a = Machine::new(&t, &server, "a");
    let b = Machine::new(&t, &server, "b");
    let c = Machine::new(&t, &server, "c");
    let ok = ["0"];
    t.miss(a.run(&[], &ok)).success();
    let blob = server
        .objects()
        .unwrap()
        .into_iter()
        .filter(|o| o.starts_with("cas/"))
        .max_by_key(|o| server.read(o).len())
        .expect("no blob on the remote");
    server.flip_byte(&blob, -100);
    t.miss(b.run(&[], &ok)).success();
    assert_eq!(
        u(&b.remote_stats(), "stores"),
        1,
        "B's rerun did not upload"
    );

    let rc = t.hit(c.run(&[], &ok));
    assert_result(&c, &rc, &ok, true);
}

/// `CACHECTL_REMOTE_SECRET`: the same secret hits; another secret, or a secret reading an
/// unsigned record, is refused (the command runs, with the right result).
fn signed_records(kind: Kind) {
    let Some((t, server)) = setup(kind) else {
        return;
    };
    let secret =
        |m: &Machine, s: &str, args: &[&str]| m.run(&[], args).env("CACHECTL_REMOTE_SECRET", s);
    let signed = ["0", "signed"];
    let a = Machine::new(&t, &server, "a");
    t.miss(secret(&a, "s1", &signed)).success();
    if server.inspectable() {
        let rec = server.read(&object(&server, "ac/"));
        assert!(
            rec.starts_with(b"CCSIG001"),
            "the stored record is not signed"
        );
    }

    let b = Machine::new(&t, &server, "b");
    let rb = t.hit(secret(&b, "s1", &signed));
    assert_result(&b, &rb, &signed, true);

    let c = Machine::new(&t, &server, "c");
    let rc = t.miss(secret(&c, "s2", &signed));
    assert_result(&c, &rc, &signed, false);
    one_remote_warning(&rc, &server);
    assert_eq!(u(&c.remote_stats(), "refused"), 1);

    // E stores without a secret; D, with one, refuses that unsigned record.
    let unsigned = ["0", "unsigned"];
    let e = Machine::new(&t, &server, "e");
    t.miss(e.run(&[], &unsigned)).success();
    let d = Machine::new(&t, &server, "d");
    let rd = t.miss(secret(&d, "s1", &unsigned));
    assert_result(&d, &rd, &unsigned, false);
    one_remote_warning(&rd, &server);
    let remote = d.remote_stats();
    assert_eq!(u(&remote, "refused"), 1, "{remote}");
    assert_eq!(u(&remote, "hits"), 0, "{remote}");
}

/// `CACHECTL_REMOTE_NAMESPACE=pr1` writes under `pr1/`: a reader without it misses, a reader
/// with it (from `[remote] namespace` in cachectl.toml) hits, and reads fall back to the root.
fn namespaces(kind: Kind) {
    let Some((t, server)) = setup(kind) else {
        return;
    };
    let ok = ["0"];
    let a = Machine::new(&t, &server, "a");
    t.miss(a.run(&[], &ok).env("CACHECTL_REMOTE_NAMESPACE", "pr1"))
        .success();
    if let Some(objects) = server.objects() {
        assert!(
            !objects.is_empty() && objects.iter().all(|o| o.starts_with("pr1/")),
            "namespaced writes outside pr1/: {objects:?}"
        );
        object(&server, "pr1/ac/");
        object(&server, "pr1/cas/");
    }

    // C reads pr1 (from its cachectl.toml) before anything is at the root.
    let c = Machine::new(&t, &server, "c");
    fs::write(
        c.work.join("cachectl.toml"),
        "[remote]\nnamespace = \"pr1\"\ntimeout = \"2s\"\n",
    )
    .unwrap();
    let rc = t.hit(c.run(&[], &ok));
    assert_result(&c, &rc, &ok, true);

    let b = Machine::new(&t, &server, "b");
    let rb = t.miss(b.run(&[], &ok));
    assert_result(&b, &rb, &ok, true);
    assert_eq!(hms(&b.remote_stats()), (0, 1, 1));
    if server.inspectable() {
        object(&server, "ac/");
    }

    // B stored at the root: a reader in another namespace finds it there.
    let d = Machine::new(&t, &server, "d");
    let rd = t.hit(d.run(&[], &ok).env("CACHECTL_REMOTE_NAMESPACE", "pr2"));
    assert_result(&d, &rd, &ok, true);
}

/// `cachectl remote check`: 0 when it works, 2 with no remote, 1 when it is dead.
fn remote_check_exit_codes(kind: Kind) {
    let Some((t, mut server)) = setup(kind) else {
        return;
    };
    let m = Machine::new(&t, &server, "m");
    let code = |a: &Assert| a.get_output().status.code();
    let live = m.cachectl(&["remote", "check"]).assert();
    assert_eq!(code(&live), Some(0), "{}", summary(&live));
    let json = m.cachectl(&["remote", "check", "--json"]).assert();
    assert_eq!(code(&json), Some(0), "{}", summary(&json));
    let v: Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    if let Some(objects) = server.objects() {
        assert!(
            objects.is_empty(),
            "check left its probe behind: {objects:?}"
        );
    }

    let none = m
        .cachectl(&["remote", "check"])
        .env_remove("CACHECTL_REMOTE")
        .assert();
    assert_eq!(code(&none), Some(2), "{}", summary(&none));
    assert!(
        stderr_of(&none).contains("no remote is configured"),
        "{}",
        summary(&none)
    );

    server.kill();
    let start = Instant::now();
    let dead = m.cachectl(&["remote", "check"]).assert();
    assert_eq!(code(&dead), Some(1), "{}", summary(&dead));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

/// `cachectl remote check` in ro mode (a read of an object that does not exist) on a live,
/// empty remote: 0, and nothing written.
fn remote_check_read_only(kind: Kind) {
    let Some((t, server)) = setup(kind) else {
        return;
    };
    let m = Machine::new(&t, &server, "m");
    let ro = m
        .cachectl(&["remote", "check"])
        .env("CACHECTL_REMOTE_MODE", "ro")
        .assert();
    assert_eq!(
        ro.get_output().status.code(),
        Some(0),
        "ro check:\n{}",
        summary(&ro)
    );
    if let Some(objects) = server.objects() {
        assert!(objects.is_empty(), "an ro check wrote: {objects:?}");
    }
}

/// `warm --remote rw` uploads what it stores (over `CACHECTL_REMOTE_MODE=off`): B then hits.
fn warm_fills_the_remote(kind: Kind) {
    let Some((t, server)) = setup(kind) else {
        return;
    };
    let a = Machine::new(&t, &server, "a");
    fs::write(
        a.work.join("warm.toml"),
        "[[command]]\nrun = [\"./build\", \"0\"]\noutputs = [\"out.bin\", \"outdir\"]\nno_cwd = true\n",
    )
    .unwrap();
    let w = a
        .cachectl(&["warm", "--remote", "rw", "warm.toml"])
        .env("CACHECTL_REMOTE_MODE", "off")
        .assert();
    assert_eq!(w.get_output().status.code(), Some(0), "{}", summary(&w));
    assert_eq!(t.count(), 1, "warm did not run the command");
    assert_eq!(hms(&a.remote_stats()), (0, 1, 1), "warm did not upload");

    let b = Machine::new(&t, &server, "b");
    let ok = ["0"];
    let rb = t.hit(b.run(&[], &ok));
    assert_result(&b, &rb, &ok, true);
}

/// Exact remote counters after a scripted sequence on three machines.
fn stats_counters(kind: Kind) {
    let Some((t, server)) = setup(kind) else {
        return;
    };
    let (a, b, c) = (
        Machine::new(&t, &server, "a"),
        Machine::new(&t, &server, "b"),
        Machine::new(&t, &server, "c"),
    );
    let (x, y, z) = (["0", "x"], ["0", "y"], ["0", "z"]);
    t.miss(a.run(&[], &x)).success(); // remote miss, store
    t.hit(a.run(&[], &x)).success(); // local hit
    t.hit(b.run(&[], &x)).success(); // remote hit
    t.hit(b.run(&[], &x)).success(); // local hit
    t.miss(b.run(&[], &y)).success(); // remote miss, store
    t.hit(c.run(&["--remote", "ro"], &y)).success(); // remote hit
    t.miss(c.run(&["--remote", "ro"], &z)).success(); // remote miss, no store
    let (ra, rb, rc) = (a.remote_stats(), b.remote_stats(), c.remote_stats());
    assert_eq!(hms(&ra), (0, 1, 1), "A: {ra}");
    assert_eq!(hms(&rb), (1, 1, 1), "B: {rb}");
    assert_eq!(hms(&rc), (1, 1, 0), "C: {rc}");
    // B downloaded exactly what A uploaded (its miss moves no bytes).
    assert!(u(&ra, "bytes_up") > 100 * 1024, "A: {ra}");
    assert_eq!(u(&ra, "bytes_down"), 0, "A: {ra}");
    assert_eq!(u(&rb, "bytes_down"), u(&ra, "bytes_up"), "B: {rb}\nA: {ra}");
    assert!(u(&rb, "bytes_up") > 0, "B: {rb}");
    assert!(u(&rc, "bytes_down") > 100 * 1024, "C: {rc}");
    assert_eq!(u(&rc, "bytes_up"), 0, "C: {rc}");
    for r in [&ra, &rb, &rc] {
        assert_eq!(error_total(r), 0, "{r}");
        assert_eq!((u(r, "timeouts"), u(r, "refused")), (0, 0), "{r}");
    }
}

/// S3 with a wrong secret: `run` still succeeds, warning once about the CREDENTIALS; `remote
/// check` fails with kind `auth`.
fn wrong_credentials(kind: Kind) {
    assert_eq!(kind, Kind::S3);
    let Some((t, server)) = setup(kind) else {
        return;
    };
    let a = Machine::new(&t, &server, "a");
    let ok = ["0"];
    let ra = t.miss(a.run(&[], &ok).env("AWS_SECRET_ACCESS_KEY", "wrong"));
    assert_result(&a, &ra, &ok, false);
    let w = one_remote_warning(&ra, &server);
    assert!(w.contains("CREDENTIALS"), "{w}");
    assert!(!w.contains("wrong"), "the warning shows the secret: {w}");
    let remote = a.remote_stats();
    assert_eq!(remote["errors"]["auth"], 1, "{remote}");

    let check = a
        .cachectl(&["remote", "check", "--json"])
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .assert();
    assert_eq!(
        check.get_output().status.code(),
        Some(1),
        "{}",
        summary(&check)
    );
    let v: Value = serde_json::from_slice(&check.get_output().stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["outcome"]["kind"], "auth", "{v}");
}

/// `remote check` with a wrong S3 secret says that the credentials are the problem.
fn check_names_the_credentials(kind: Kind) {
    assert_eq!(kind, Kind::S3);
    let Some((t, server)) = setup(kind) else {
        return;
    };
    let a = Machine::new(&t, &server, "a");
    let check = a
        .cachectl(&["remote", "check"])
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .assert();
    assert_eq!(
        check.get_output().status.code(),
        Some(1),
        "{}",
        summary(&check)
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&check.get_output().stdout),
        stderr_of(&check)
    );
    assert!(text.contains("auth"), "{text}");
    assert!(
        text.to_lowercase().contains("credentials"),
        "remote check does not say the credentials are wrong:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// One test per scenario and backend.

/// `--trace auto`: an entry travels with its manifest. A stores; B (empty cache, same files)
/// hits through the remote manifest, byte-exact; B's other input state adds a candidate that A
/// then hits; a manifest pointing one input state at another state's entry is refused.
fn auto_entries_travel_with_their_manifest(kind: Kind) {
    let Some((t, server)) = setup(kind) else {
        return;
    };
    let machines = [
        Machine::new(&t, &server, "a"),
        Machine::new(&t, &server, "b"),
    ];
    for m in &machines {
        fs::write(m.work.join("in.txt"), "one\n").unwrap();
        t.counted_in(
            &m.work,
            "tool",
            "cat in.txt; mkdir -p gen; tr a-z A-Z < in.txt > gen/up.txt",
        );
    }
    // (Files read must be older than the run that reads them.)
    std::thread::sleep(Duration::from_millis(25));
    let [a, b] = &machines;
    let run = |m: &Machine| m.cachectl(&["run", "--trace", "auto", "--no-cwd", "--", "./tool"]);
    t.miss(run(a)).success().stdout("one\n");
    assert!(
        server
            .objects()
            .unwrap()
            .iter()
            .any(|o| o.starts_with("mf/")),
        "no manifest uploaded: {:?}",
        server.objects()
    );
    t.hit(run(b)).success().stdout("one\n");
    assert_eq!(fs::read(b.work.join("gen/up.txt")).unwrap(), b"ONE\n");
    assert_eq!(hms(&b.remote_stats()).0, 1, "B: one remote hit");

    // B's other state: a miss, stored and merged into the remote manifest; A hits it.
    for m in &machines {
        fs::write(m.work.join("in.txt"), "two\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(25));
    t.miss(run(b)).success().stdout("two\n");
    t.hit(run(a)).success().stdout("two\n");
    assert_eq!(fs::read(a.work.join("gen/up.txt")).unwrap(), b"TWO\n");

    // Swap the entries of the two candidates: each input state now names the other's result.
    let name = object(&server, "mf/");
    let mut m = cachectl::store::manifest::Manifest::decode(&server.read(&name)).unwrap();
    assert_eq!(m.candidates.len(), 2, "{m:?}");
    let first = m.candidates[0].entry.clone();
    m.candidates[0].entry = m.candidates[1].entry.clone();
    m.candidates[1].entry = first;
    server.write(&name, &m.encode());
    let c = Machine::new(&t, &server, "c");
    fs::write(c.work.join("in.txt"), "two\n").unwrap();
    // (B's run of "two" found `gen` there: `mkdir -p gen` looked at it, so it is keyed.)
    fs::create_dir(c.work.join("gen")).unwrap();
    t.counted_in(
        &c.work,
        "tool",
        "cat in.txt; mkdir -p gen; tr a-z A-Z < in.txt > gen/up.txt",
    );
    std::thread::sleep(Duration::from_millis(25));
    let rc = t.miss(run(&c)).success().stdout("two\n");
    one_remote_warning(&rc, &server);
    assert_eq!(fs::read(c.work.join("gen/up.txt")).unwrap(), b"TWO\n");
}

/// `backend_tests!(Kind: [#[attr]] scenario, ...)`: a `#[test]` per scenario for that backend.
macro_rules! backend_tests {
    ($kind:ident: $($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $(
            #[test]
            $(#[$attr])*
            fn $name() {
                super::$name(super::Kind::$kind);
            }
        )*
    };
}

mod redis {
    backend_tests!(Redis:
        machines_share_results,
        read_only_never_writes,
        dead_server_then_breaker,
        frozen_server_times_out,
        tampered_record_is_refused,
        tampered_blob_is_refused,
        tampered_blob_is_repaired_by_the_rerun,
        signed_records,
        namespaces,
        remote_check_exit_codes,
        remote_check_read_only,
        warm_fills_the_remote,
        stats_counters,
        auto_entries_travel_with_their_manifest,
    );
}

mod webdav {
    backend_tests!(Webdav:
        machines_share_results,
        read_only_never_writes,
        dead_server_then_breaker,
        frozen_server_times_out,
        tampered_record_is_refused,
        tampered_blob_is_refused,
        tampered_blob_is_repaired_by_the_rerun,
        signed_records,
        namespaces,
        remote_check_exit_codes,
        remote_check_read_only,
        warm_fills_the_remote,
        stats_counters,
        auto_entries_travel_with_their_manifest,
    );
}

mod s3 {
    backend_tests!(S3:
        machines_share_results,
        read_only_never_writes,
        dead_server_then_breaker,
        frozen_server_times_out,
        tampered_record_is_refused,
        tampered_blob_is_refused,
        tampered_blob_is_repaired_by_the_rerun,
        signed_records,
        namespaces,
        remote_check_exit_codes,
        remote_check_read_only,
        warm_fills_the_remote,
        stats_counters,
        wrong_credentials,
        check_names_the_credentials,
        auto_entries_travel_with_their_manifest,
    );
}
