//! When entries are used, refreshed or written: ttl, stale, --force, --no-store.

use crate::util::*;
use std::time::{Duration, Instant};

#[test]
fn ttl_expiry_with_fake_clock() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    let run = |now| t.run(&["--ttl", "1m", "--", "./cmd"]).now(now);
    t.miss(run(T0));
    t.hit(run(T0 + 30 * SEC));
    t.hit(run(T0 + MIN));
    t.miss(run(T0 + MIN + 1));
    // The rerun stored a fresh entry, created at T0 + 1m.
    t.hit(run(T0 + 90 * SEC));
}

#[test]
fn without_ttl_entries_never_expire() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.miss(t.run(&["--", "./cmd"]).now(T0));
    t.hit(t.run(&["--", "./cmd"]).now(T0 + 1000 * 24 * 60 * MIN));
}

#[test]
fn stale_entry_served_at_once_then_refreshed_in_background() {
    let t = TestContext::new();
    // The output comes from a file that is not an input, so a refresh can change it. A rerun is
    // slow (the marker file exists from the second run on), so "served at once" is measurable.
    t.write("ver.txt", "old-output");
    t.counted("cmd", "cat ver.txt; [ -f slow ] && sleep 2; true");
    let run = |now| {
        t.run(&["--ttl", "1h", "--stale", "1m", "--", "./cmd"])
            .now(now)
    };
    t.miss(run(T0)).stdout("old-output");
    t.hit(run(T0 + 30 * SEC)).stdout("old-output");

    t.write("ver.txt", "new-output");
    t.write("slow", "");
    let start = Instant::now();
    t.run(&["--ttl", "1h", "--stale", "1m", "--", "./cmd"])
        .now(T0 + 2 * MIN)
        .assert()
        .success()
        .stdout("old-output");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "stale hit waited for the refresh"
    );

    // The detached refresh runs the command once and stores its result.
    wait_until(
        Duration::from_secs(10),
        "the background refresh to run",
        || t.count() == 2,
    );
    wait_until(
        Duration::from_secs(10),
        "the refreshed entry to be stored",
        || {
            t.cache_files("ac-v1")
                .iter()
                .any(|f| contains(&std::fs::read(f).unwrap_or_default(), b"new-output"))
        },
    );
    t.hit(run(T0 + 2 * MIN + SEC)).stdout("new-output");
    assert_eq!(t.count(), 2);
}

#[test]
fn expired_entry_is_a_miss_even_with_stale() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    let run = |now| {
        t.run(&["--ttl", "1h", "--stale", "1m", "--", "./cmd"])
            .now(now)
    };
    t.miss(run(T0));
    t.miss(run(T0 + 61 * MIN));
}

#[test]
fn force_reruns_and_overwrites() {
    let t = TestContext::new();
    t.write("ver.txt", "v1");
    t.counted("cmd", "cat ver.txt");
    t.miss(t.run(&["--", "./cmd"])).stdout("v1");
    t.write("ver.txt", "v2");
    t.hit(t.run(&["--", "./cmd"])).stdout("v1");
    t.miss(t.run(&["--force", "--", "./cmd"])).stdout("v2");
    t.hit(t.run(&["--", "./cmd"])).stdout("v2");
}

#[test]
fn force_overwrites_outputs_too() {
    let t = TestContext::new();
    t.write("ver.txt", "v1");
    t.counted("cmd", "cp ver.txt out.txt");
    t.miss(t.run(&["-o", "out.txt", "--", "./cmd"]));
    t.write("ver.txt", "v2");
    t.miss(t.run(&["--force", "-o", "out.txt", "--", "./cmd"]));
    std::fs::remove_file(t.work.join("out.txt")).unwrap();
    t.hit(t.run(&["-o", "out.txt", "--", "./cmd"]));
    assert_eq!(t.read("out.txt"), b"v2");
}

#[test]
fn no_store_never_creates_the_cache() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.miss(t.run(&["--no-store", "--", "./cmd"]))
        .success()
        .stdout("ok\n");
    t.miss(t.run(&["--no-store", "--", "./cmd"]))
        .success()
        .stdout("ok\n");
    assert!(
        !t.cache.exists(),
        "cache dir created: {:?}",
        files_under(&t.cache)
    );
}

#[test]
fn no_store_with_stdin_never_creates_the_cache() {
    let t = TestContext::new();
    t.counted("cmd", "cat");
    t.miss(t.run(&["--no-store", "--stdin", "--", "./cmd"]).stdin("in"))
        .success()
        .stdout("in");
    assert!(
        !t.cache.exists(),
        "cache dir created: {:?}",
        files_under(&t.cache)
    );
}

#[test]
fn no_store_looks_up_but_never_writes_entries() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.counted("other", "echo other");
    t.miss(t.run(&["--", "./cmd"]));
    let snapshot = |sub| files_under(&t.cache.join(sub));
    let (ac, cas) = (snapshot("ac-v1"), snapshot("cas-v1"));
    // A stored entry is served...
    t.hit(t.run(&["--no-store", "--", "./cmd"])).stdout("ok\n");
    // ...a miss runs the command without storing it.
    t.miss(t.run(&["--no-store", "--", "./other"]))
        .stdout("other\n");
    t.miss(t.run(&["--no-store", "--", "./other"]))
        .stdout("other\n");
    assert_eq!((snapshot("ac-v1"), snapshot("cas-v1")), (ac, cas));
    t.miss(t.run(&["--", "./other"]));
}

#[test]
fn no_store_with_force_runs_without_overwriting() {
    let t = TestContext::new();
    t.write("ver.txt", "v1");
    t.counted("cmd", "cat ver.txt");
    t.miss(t.run(&["--", "./cmd"])).stdout("v1");
    t.write("ver.txt", "v2");
    t.miss(t.run(&["--force", "--no-store", "--", "./cmd"]))
        .stdout("v2");
    t.hit(t.run(&["--", "./cmd"])).stdout("v1");
}

#[test]
fn stale_refresh_with_stdin_refreshes_the_same_entry() {
    let t = TestContext::new();
    t.write("ver.txt", "old-");
    t.counted("cmd", "cat ver.txt -");
    let run = |now| {
        t.run(&["--stdin", "--ttl", "1h", "--stale", "1m", "--", "./cmd"])
            .now(now)
            .stdin("input")
    };
    t.miss(run(T0)).stdout("old-input");
    t.write("ver.txt", "new-");
    // Served from the cache (the detached refresh may already be counting its own run).
    run(T0 + 2 * MIN).assert().success().stdout("old-input");
    wait_until(Duration::from_secs(10), "the refreshed entry", || {
        t.cache_files("ac-v1")
            .iter()
            .any(|f| contains(&std::fs::read(f).unwrap_or_default(), b"new-input"))
    });
    wait_until(Duration::from_secs(10), "the refresh to run", || {
        t.count() == 2
    });
    t.hit(run(T0 + 2 * MIN + SEC)).stdout("new-input");
}

/// Start `cachectl run -- ./cmd` (a counted `exec sleep 5`), wait until the command runs plus
/// `settle`, send SIGTERM to cachectl; returns its exit code and how long it took to exit.
fn sigterm_after_start(t: &TestContext, settle: Duration) -> (Option<i32>, Duration) {
    let before = t.count();
    let (child, _) = t.run(&["--cache-failures", "--", "./cmd"]).spawn();
    wait_until(Duration::from_secs(5), "the command to start", || {
        t.count() > before
    });
    std::thread::sleep(settle);
    let mut kill = std::process::Command::new("kill");
    kill.args(["-TERM", &child.id().to_string()]);
    assert!(spawn_guarded(&mut kill).wait().unwrap().success());
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), start.elapsed())
}

#[test]
fn sigterm_to_cachectl_is_forwarded_and_not_stored() {
    let t = TestContext::new();
    t.counted("cmd", "exec sleep 5");
    let (code, took) = sigterm_after_start(&t, Duration::from_millis(200));
    assert_eq!(code, Some(143));
    assert!(took < Duration::from_secs(4), "the command was not stopped");
    assert!(t.cache_files("ac-v1").is_empty());
}

#[test]
fn sigterm_right_after_start_is_not_swallowed() {
    let t = TestContext::new();
    t.counted("cmd", "exec sleep 5");
    // Keep the CPUs busy so that cachectl is often still returning from spawn() when the
    // command has already started.
    let _busy = Busy::start(4);
    for _ in 0..60 {
        let (code, took) = sigterm_after_start(&t, Duration::ZERO);
        assert_eq!(code, Some(143), "exited after {took:?}");
    }
}

/// Threads spinning until dropped.
struct Busy(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Busy {
    fn start(n: usize) -> Busy {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for _ in 0..n {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
        }
        Busy(stop)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `max_entry_size` (issue 16): a result larger than the limit once stored is not stored
/// (`too_large` in stats), whatever sets the limit (flag, env var, config); the command's own
/// result is unchanged, and a result under the limit is stored as usual.
#[test]
fn results_over_max_entry_size_are_not_stored() {
    let t = TestContext::new();
    t.write("big.bin", binary_data(20_000));
    t.counted("big", "cat big.bin");
    t.counted("small", "echo small");
    let big = || t.run(&["--", "./big"]);
    let data = binary_data(20_000);
    t.miss(big().env("CACHECTL_MAX_ENTRY_SIZE", "8KiB"))
        .success()
        .stdout(data.clone());
    t.miss(t.run(&["--max-entry-size", "8KiB", "--", "./big"]))
        .success()
        .stdout(data.clone());
    t.write("cachectl.toml", "max_entry_size = 8192\n");
    let a = t.miss(t.run(&["-v", "--", "./big"])).success();
    assert!(
        stderr_of(&a).contains("not stored (larger than max_entry_size"),
        "{}",
        stderr_of(&a)
    );
    // Under the limit: stored and hit.
    t.miss(t.run(&["--", "./small"]))
        .success()
        .stdout("small\n");
    t.hit(t.run(&["--", "./small"])).success().stdout("small\n");
    // The flag beats the file: a limit above the size stores it.
    t.miss(t.run(&["--max-entry-size", "1MiB", "--", "./big"]))
        .success();
    t.hit(t.run(&["--max-entry-size", "1MiB", "--", "./big"]))
        .success()
        .stdout(data);
    let s = crate::manage::json(t.cachectl(&["stats", "--json"]));
    assert_eq!(s["uncacheable"]["too_large"], 3, "{s}");
    // A bad value is a usage error naming where it came from.
    t.run(&["--", "./small"])
        .env("CACHECTL_MAX_ENTRY_SIZE", "lots")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("CACHECTL_MAX_ENTRY_SIZE"));
}
