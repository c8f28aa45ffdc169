//! Management commands: shared helpers for the `manage_*` modules, and `stats`.

use crate::util::*;
use assert_cmd::assert::Assert;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const HOUR: u64 = 60 * MIN;
pub const DAY: u64 = 24 * HOUR;

/// Parse a successful run's stdout as JSON.
#[track_caller]
pub fn json(run: Run) -> Value {
    let a = run.assert().success();
    json_of(&a)
}

#[track_caller]
pub fn json_of(a: &Assert) -> Value {
    serde_json::from_slice(&a.get_output().stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", summary(a)))
}

/// `ls --json`, parsed.
pub fn ls(t: &TestContext) -> Vec<Value> {
    match json(t.cachectl(&["ls", "--json"])) {
        Value::Array(v) => v,
        other => panic!("ls --json is not an array: {other}"),
    }
}

/// The command lines of every entry, sorted.
pub fn commands(t: &TestContext) -> Vec<String> {
    let mut v: Vec<String> = ls(t)
        .iter()
        .map(|e| e["command"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// The key of the one entry whose command line is `cmd`.
#[track_caller]
pub fn key_of(t: &TestContext, cmd: &str) -> String {
    let all = ls(t);
    let found: Vec<&Value> = all.iter().filter(|e| e["command"] == cmd).collect();
    assert_eq!(found.len(), 1, "entries for `{cmd}`: {all:?}");
    found[0]["key"].as_str().unwrap().to_owned()
}

/// `<cache>/ac-v1/ab/<key>`.
pub fn record_path(t: &TestContext, key: &str) -> PathBuf {
    t.cache.join("ac-v1").join(&key[..2]).join(key)
}

/// `<cache>/cas-v1/ab/<digest>`.
pub fn blob_path(t: &TestContext, digest: &str) -> PathBuf {
    t.cache.join("cas-v1").join(&digest[..2]).join(digest)
}

/// The blob holding the stored stdout of entry `key` (which must be > 64 KiB).
#[track_caller]
pub fn stdout_blob(t: &TestContext, key: &str) -> PathBuf {
    let rec = json(t.cachectl(&["show", key, "--json"]));
    let digest = rec["stdout"]["blob"]
        .as_str()
        .unwrap_or_else(|| panic!("stdout of {key} is not a blob: {rec}"));
    blob_path(t, digest)
}

/// Bytes of every file under the cache directory.
pub fn cache_size(t: &TestContext) -> u64 {
    files_under(&t.cache)
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Set a file's mtime (real filesystem time) to `ago` before now.
pub fn set_mtime_ago(path: &Path, ago: Duration) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

/// Counted script `name` printing `bytes` random (incompressible) bytes; `$1` is ignored, so
/// `./name 1`, `./name 2`... are distinct entries.
pub fn random_script(t: &TestContext, name: &str, bytes: usize) -> PathBuf {
    t.counted(name, &format!("head -c {bytes} /dev/urandom"))
}

/// Whether a gc holds `gc.lock` right now.
pub fn gc_running(t: &TestContext) -> bool {
    match fs::File::open(t.cache.join("gc.lock")) {
        Ok(f) => match f.try_lock_shared() {
            Ok(()) => false,
            Err(fs::TryLockError::WouldBlock) => true,
            Err(fs::TryLockError::Error(e)) => panic!("locking gc.lock: {e}"),
        },
        Err(_) => false,
    }
}

pub fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not an unsigned number: {v}"))
}

fn row<'a>(breakdown: &'a Value, name: &str) -> &'a Value {
    breakdown
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no breakdown row `{name}`: {breakdown}"))
}

// ---------------------------------------------------------------------------------------------
// stats

/// 3 hits, 4 misses (2 stored, 2 failed with exit 3) over commands `./ok a`, `./ok b`, `./fail`.
fn scripted_mix(t: &TestContext) {
    t.counted("ok", "echo ok \"$1\"");
    t.counted("fail", "echo failing; exit 3");
    t.miss(t.run(&["--", "./ok", "a"]))
        .success()
        .stdout("ok a\n");
    t.hit(t.run(&["--", "./ok", "a"]))
        .success()
        .stdout("ok a\n");
    t.hit(t.run(&["--", "./ok", "a"])).success();
    t.miss(t.run(&["--", "./ok", "b"])).success();
    t.hit(t.run(&["--", "./ok", "b"]))
        .success()
        .stdout("ok b\n");
    t.miss(t.run(&["--", "./fail"])).code(3);
    t.miss(t.run(&["--", "./fail"])).code(3);
}

#[test]
fn stats_counts_a_scripted_mix_exactly() {
    let t = TestContext::new();
    scripted_mix(&t);
    let s = json(t.cachectl(&["stats", "--json"]));
    for field in [
        "hits",
        "misses",
        "hit_rate",
        "stores",
        "time_saved_ms",
        "entries",
        "size_bytes",
        "errors",
        "uncacheable",
        "bytes_replayed",
        "blobs",
        "uncompressed_bytes",
        "compression_ratio",
        "max_size_bytes",
        "oldest",
        "newest",
        "breakdown",
        "history",
    ] {
        assert!(s.get(field).is_some(), "stats --json lacks `{field}`: {s}");
    }
    assert_eq!(u(&s["hits"]), 3, "{s}");
    assert_eq!(u(&s["misses"]), 4, "{s}");
    assert_eq!(u(&s["stores"]), 2, "{s}");
    assert_eq!(u(&s["entries"]), 2, "{s}");
    assert_eq!(u(&s["uncacheable"]["non_zero_exit"]), 2, "{s}");
    assert_eq!(s["uncacheable"].as_object().unwrap().len(), 1, "{s}");
    assert_eq!(s["errors"], serde_json::json!({}), "{s}");
    let rate = s["hit_rate"].as_f64().unwrap();
    assert!((rate - 3.0 / 7.0).abs() < 1e-9, "hit_rate {rate}");
    // "ok a\n" and "ok b\n" replayed: 5 + 5 + 5 bytes.
    assert_eq!(u(&s["bytes_replayed"]), 15, "{s}");
    assert_eq!(u(&s["blobs"]), 0, "{s}");
    assert!(u(&s["size_bytes"]) > 0, "{s}");

    let b = &s["breakdown"];
    let a = row(b, "./ok a");
    assert_eq!(
        (u(&a["hits"]), u(&a["misses"]), u(&a["entries"])),
        (2, 1, 1)
    );
    let okb = row(b, "./ok b");
    assert_eq!(
        (u(&okb["hits"]), u(&okb["misses"]), u(&okb["entries"])),
        (1, 1, 1)
    );
    let f = row(b, "./fail");
    assert_eq!(
        (u(&f["hits"]), u(&f["misses"]), u(&f["entries"])),
        (0, 2, 0)
    );
    let (h, m) = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0), |(h, m), d| (h + u(&d["hits"]), m + u(&d["misses"])));
    assert_eq!((h, m), (3, 4), "history: {}", s["history"]);

    // Folding is idempotent: asking again counts nothing twice.
    let again = json(t.cachectl(&["stats", "--json"]));
    assert_eq!(
        (again["hits"].clone(), again["misses"].clone()),
        (s["hits"].clone(), s["misses"].clone())
    );
    // The human report says the same.
    let text = t.cachectl(&["stats"]).assert().success();
    let out = String::from_utf8_lossy(&stdout_of(&text)).into_owned();
    assert!(out.contains("3 of 7 lookups"), "{out}");
}

#[test]
fn stats_counts_errors_and_uncacheable_runs_by_kind() {
    let t = TestContext::new();
    t.counted("cmd", "echo hello");
    t.miss(t.run(&["--", "./cmd"])).success();
    let key = key_of(&t, "./cmd");
    flip_byte(&record_path(&t, &key), -2);
    // The corrupt entry is dropped and the command runs: one `corrupt` error.
    t.miss(t.run(&["--", "./cmd"])).success().stdout("hello\n");
    t.hit(t.run(&["--", "./cmd"])).success();
    // Not stored: a declared output that was not written, a death by signal.
    t.counted("no-output", "echo forgot");
    t.miss(t.run(&["-o", "missing.txt", "--", "./no-output"]))
        .success();
    t.counted("killed", "kill -TERM $$");
    let a = t.miss(t.run(&["--", "./killed"]));
    assert!(!a.get_output().status.success());
    let s = json(t.cachectl(&["stats", "--json"]));
    assert_eq!(s["errors"], serde_json::json!({"corrupt": 1}), "{s}");
    assert_eq!(
        s["uncacheable"],
        serde_json::json!({"missing_output": 1, "signal": 1}),
        "{s}"
    );
    assert_eq!(
        (u(&s["hits"]), u(&s["misses"]), u(&s["stores"])),
        (1, 4, 2),
        "{s}"
    );
    assert_eq!(u(&s["entries"]), 1, "{s}");
}

#[test]
fn stats_time_saved_is_the_original_duration_of_every_hit() {
    let t = TestContext::new();
    t.counted("slow", "sleep 0.3; echo done");
    t.miss(t.run(&["--", "./slow"])).success();
    for _ in 0..3 {
        t.hit(t.run(&["--", "./slow"])).success().stdout("done\n");
    }
    let s = json(t.cachectl(&["stats", "--json"]));
    let saved = u(&s["time_saved_ms"]);
    assert!(saved >= 900, "time_saved_ms {saved} < 3 × 300 ms");
    assert!(saved < 3 * 5000, "time_saved_ms {saved} is implausible");
    let dur = u(&ls(&t)[0]["duration_ms"]);
    assert_eq!(saved, 3 * dur, "saved is 3 × the stored run duration");
    assert_eq!(u(&row(&s["breakdown"], "./slow")["time_saved_ms"]), saved);
}

#[test]
fn stats_by_namespace_breaks_down_per_namespace() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"");
    t.miss(t.run(&["-n", "alpha", "--", "./cmd", "1"]));
    t.hit(t.run(&["-n", "alpha", "--", "./cmd", "1"]));
    t.hit(t.run(&["-n", "alpha", "--", "./cmd", "1"]));
    t.miss(t.run(&["-n", "alpha", "--", "./cmd", "2"]));
    // Same command line, other namespace: its own entry.
    t.miss(t.run(&["-n", "beta", "--", "./cmd", "1"]));
    t.miss(t.run(&["--", "./cmd", "3"]));
    t.hit(t.run(&["--", "./cmd", "3"]));

    let s = json(t.cachectl(&["stats", "--json", "--by", "namespace"]));
    let b = &s["breakdown"];
    let mut names: Vec<&str> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta", "default"], "{b}");
    let get = |n: &str| {
        let r = row(b, n);
        (u(&r["hits"]), u(&r["misses"]), u(&r["entries"]))
    };
    assert_eq!(get("alpha"), (2, 2, 2));
    assert_eq!(get("beta"), (0, 1, 1));
    assert_eq!(get("default"), (1, 1, 1));
    for r in b.as_array().unwrap() {
        assert!(u(&r["size_bytes"]) > 0, "{r}");
    }
    // The same activity by command line folds alpha's and beta's `./cmd 1` together.
    let s = json(t.cachectl(&["stats", "--json", "--by", "command"]));
    let r = row(&s["breakdown"], "./cmd 1");
    assert_eq!(
        (u(&r["hits"]), u(&r["misses"]), u(&r["entries"])),
        (2, 2, 2)
    );
}

#[test]
fn stats_since_counts_only_recent_activity() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"");
    let old = T0 - 3 * DAY;
    t.miss(t.run(&["--", "./cmd", "old"]).now(old));
    t.hit(t.run(&["--", "./cmd", "old"]).now(old + MIN));
    t.hit(t.run(&["--", "./cmd", "old"]).now(old + 2 * MIN));
    t.miss(t.run(&["--", "./cmd", "new"]).now(T0 - 2 * HOUR));
    t.hit(t.run(&["--", "./cmd", "old"]).now(T0 - HOUR));
    t.counted("fail", "exit 3");
    t.miss(t.run(&["--", "./fail"]).now(old + 3 * MIN)).code(3);

    let all = json(t.cachectl(&["stats", "--json"]).now(T0));
    assert_eq!(
        (u(&all["hits"]), u(&all["misses"]), u(&all["stores"])),
        (3, 3, 2),
        "{all}"
    );
    assert_eq!(all["history"].as_array().unwrap().len(), 2, "{all}");
    assert!(all["since"].is_null());
    assert_eq!(all["oldest"], "2023-11-11T22:13:20.000Z", "{all}");
    assert_eq!(all["newest"], "2023-11-14T20:13:20.000Z", "{all}");

    let recent = json(t.cachectl(&["stats", "--json", "--since", "1d"]).now(T0));
    assert_eq!(
        (
            u(&recent["hits"]),
            u(&recent["misses"]),
            u(&recent["stores"])
        ),
        (1, 1, 1),
        "{recent}"
    );
    assert_eq!(u(&all["uncacheable"]["non_zero_exit"]), 1, "{all}");
    assert_eq!(recent["uncacheable"], serde_json::json!({}), "{recent}");
    assert!((recent["hit_rate"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    assert!(recent["since"].is_string(), "{recent}");
    let history = recent["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{recent}");
    assert_eq!(history[0]["date"], "2023-11-14");
    // Entries are the store's contents, not activity: both are still there.
    assert_eq!(u(&recent["entries"]), 2);
    let r = row(&recent["breakdown"], "./cmd old");
    assert_eq!((u(&r["hits"]), u(&r["misses"])), (1, 0));

    // A window that reaches back past the old activity counts everything again.
    let week = json(t.cachectl(&["stats", "--json", "--since", "7d"]).now(T0));
    assert_eq!((u(&week["hits"]), u(&week["misses"])), (3, 3));
}

#[test]
fn stats_reset_zeroes_counters_and_keeps_entries() {
    let t = TestContext::new();
    scripted_mix(&t);
    t.cachectl(&["stats", "--reset"]).assert().success();
    let s = json(t.cachectl(&["stats", "--json"]));
    assert_eq!(
        (
            u(&s["hits"]),
            u(&s["misses"]),
            u(&s["stores"]),
            u(&s["time_saved_ms"]),
            u(&s["bytes_replayed"])
        ),
        (0, 0, 0, 0, 0),
        "{s}"
    );
    assert_eq!(s["hit_rate"].as_f64(), Some(0.0));
    assert_eq!(s["uncacheable"], serde_json::json!({}), "{s}");
    assert_eq!(s["errors"], serde_json::json!({}), "{s}");
    assert_eq!(s["history"], serde_json::json!([]), "{s}");
    assert_eq!(u(&s["entries"]), 2, "{s}");
    assert_eq!(commands(&t), ["./ok a", "./ok b"]);
    // The entries still serve, and counting starts again from zero.
    t.hit(t.run(&["--", "./ok", "a"]))
        .success()
        .stdout("ok a\n");
    let s = json(t.cachectl(&["stats", "--json"]));
    assert_eq!((u(&s["hits"]), u(&s["misses"])), (1, 0), "{s}");
}

#[test]
fn management_commands_on_an_empty_cache() {
    let t = TestContext::new();
    let s = json(t.cachectl(&["stats", "--json"]));
    assert_eq!(
        (u(&s["hits"]), u(&s["misses"]), u(&s["entries"])),
        (0, 0, 0),
        "{s}"
    );
    assert_eq!(s["hit_rate"].as_f64(), Some(0.0));
    assert!(s["oldest"].is_null() && s["newest"].is_null(), "{s}");
    assert!(ls(&t).is_empty());
    let r = json(t.cachectl(&["gc", "--json", "--max-size", "1"]));
    assert_eq!(u(&r["entries_removed"]), 0, "{r}");
    let r = json(t.cachectl(&["invalidate", "--json", "--all"]));
    assert_eq!(u(&r["entries_removed"]), 0, "{r}");
    t.cachectl(&["verify"]).assert().success();
    t.cachectl(&["ls"]).assert().success();
    t.cachectl(&["stats"]).assert().success();
}

/// docs/commands.md: on a cache that does not exist yet, every management command reports an
/// empty cache (or no entry) and creates nothing: a typo in CACHECTL_DIR must not leave an
/// empty cache behind.
#[test]
fn management_commands_on_a_missing_cache_create_nothing() {
    let t = TestContext::new();
    let cases: [(&[&str], i32, &str); 10] = [
        (&["ls"], 0, "No entries."),
        (&["ls", "--json"], 0, "[]"),
        (&["stats"], 0, "Hits             0 of 0"),
        (&["stats", "--json"], 0, "\"hits\": 0"),
        (&["gc"], 0, "nothing to collect"),
        (&["gc", "--max-size", "1K", "--dry-run"], 0, ""),
        (&["invalidate", "--all"], 0, "Removed 0 entries"),
        (&["verify"], 0, "0 problems"),
        (&["show", "abcd"], 1, ""),
        (&["explain", "--", "true"], 0, "miss: no entry"),
    ];
    for (args, code, says) in cases {
        let out = t.cachectl(args).output();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        assert!(stdout.contains(says), "{args:?}: {stdout}");
        assert!(!t.cache.exists(), "{args:?} created {}", t.cache.display());
    }
}

/// `stats --fail-under PCT` (issue 16): a CI gate on the hit rate of the counted window. Exit 1
/// with one line naming the rate, the window and the threshold; exit 0 at or above it; `--json`
/// carries the verdict; `--since` selects the window; a bad threshold is a usage error.
#[test]
fn stats_fail_under_gates_on_the_hit_rate() {
    let t = TestContext::new();
    t.counted("a", "echo a");
    t.counted("b", "echo b");
    t.miss(t.run(&["--", "./a"])).success();
    t.hit(t.run(&["--", "./a"])).success();
    t.miss(t.run(&["--", "./b"])).success();
    t.hit(t.run(&["--", "./b"])).success();
    // 2 hits of 4 lookups: 50%.
    let a = t
        .cachectl(&["stats", "--fail-under", "60"])
        .assert()
        .code(1);
    let err = stderr_of(&a);
    assert_eq!(
        err.trim(),
        "cachectl: hit rate 50.0% (2 of 4 lookups) over all recorded activity is below --fail-under 60%"
    );
    assert!(String::from_utf8_lossy(&stdout_of(&a)).contains("Hits             2 of 4"));
    t.cachectl(&["stats", "--fail-under", "50"])
        .assert()
        .success();
    t.cachectl(&["stats", "--fail-under", "0"])
        .assert()
        .success();
    let a = t
        .cachectl(&["stats", "--json", "--fail-under", "75%"])
        .assert()
        .code(1);
    let s: serde_json::Value = serde_json::from_slice(&stdout_of(&a)).unwrap();
    assert_eq!(
        s["fail_under"],
        serde_json::json!({"threshold": 75.0, "hit_rate": 50.0, "passed": false})
    );
    let s = json(t.cachectl(&["stats", "--json"]));
    assert!(s.get("fail_under").is_none(), "only with the flag: {s}");
    // A window with no activity has no lookups: 0%.
    let a = t
        .cachectl(&["stats", "--since", "1h", "--fail-under", "10"])
        .now(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
                + 100 * 24 * 3600 * 1000,
        )
        .assert()
        .code(1);
    assert!(
        stderr_of(&a).contains("(0 of 0 lookups) since "),
        "{}",
        stderr_of(&a)
    );
    for bad in ["101", "-1", "lots"] {
        t.cachectl(&["stats", "--fail-under", bad]).assert().code(2);
    }
    t.cachectl(&["stats", "--reset", "--fail-under", "5"])
        .assert()
        .code(2);
}
