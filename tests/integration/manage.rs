//! Management commands: `stats`, `ls`, `show`, `explain`, and reports piped into `head -1`.
//! Shared helpers for the `manage_*` modules live at the top of this file.

use crate::util::*;
use assert_cmd::assert::Assert;
use serde_json::Value;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

/// `ls --json` (optionally at a fake "now").
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

fn u(v: &Value) -> u64 {
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

// ---------------------------------------------------------------------------------------------
// ls

/// Three entries whose orders by last use, size and hits all differ:
/// - `./gen small`: created T0, hit 3× (last at T0+3m), tiny
/// - `./gen mid`: created T0+5m, hit once at T0+20m, ~10 KB inline
/// - `./gen big`: created T0+10m, never hit, 100 KiB blob
fn ls_fixture(t: &TestContext) {
    t.counted(
        "gen",
        "case \"$1\" in\n\
         small) echo s ;;\n\
         mid) head -c 10000 /dev/zero | tr '\\0' m ;;\n\
         big) head -c 102400 /dev/urandom ;;\n\
         esac",
    );
    t.miss(
        t.run(&["-t", "t1", "-t", "t2", "--", "./gen", "small"])
            .now(T0),
    );
    for i in 1..=3 {
        t.hit(t.run(&["--", "./gen", "small"]).now(T0 + i * MIN));
    }
    t.miss(
        t.run(&["-n", "ns2", "--", "./gen", "mid"])
            .now(T0 + 5 * MIN),
    );
    t.miss(t.run(&["--", "./gen", "big"]).now(T0 + 10 * MIN));
    t.hit(
        t.run(&["-n", "ns2", "--", "./gen", "mid"])
            .now(T0 + 20 * MIN),
    );
}

fn ls_order(t: &TestContext, sort: Option<&str>) -> Vec<String> {
    let mut args = vec!["ls", "--json"];
    if let Some(s) = sort {
        args.extend(["--sort", s]);
    }
    match json(t.cachectl(&args)) {
        Value::Array(v) => v
            .iter()
            .map(|e| e["command"].as_str().unwrap().to_owned())
            .collect(),
        other => panic!("{other}"),
    }
}

#[test]
fn ls_json_has_every_field() {
    let t = TestContext::new();
    ls_fixture(&t);
    let items = ls(&t);
    assert_eq!(items.len(), 3);
    let small = items
        .iter()
        .find(|e| e["command"] == "./gen small")
        .unwrap();
    for field in [
        "key",
        "command",
        "namespace",
        "tags",
        "created",
        "last_used",
        "hits",
        "size_bytes",
        "exit_code",
    ] {
        assert!(
            small.get(field).is_some(),
            "ls item lacks `{field}`: {small}"
        );
    }
    let key = small["key"].as_str().unwrap();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    assert!(record_path(&t, key).is_file());
    assert_eq!(small["namespace"], "default");
    assert_eq!(small["tags"], serde_json::json!(["t1", "t2"]));
    assert_eq!(small["created"], "2023-11-14T22:13:20.000Z");
    assert_eq!(small["last_used"], "2023-11-14T22:16:20.000Z");
    assert_eq!(u(&small["hits"]), 3);
    assert_eq!(small["exit_code"], 0);
    assert!(u(&small["size_bytes"]) > 0);

    let mid = items.iter().find(|e| e["command"] == "./gen mid").unwrap();
    assert_eq!(mid["namespace"], "ns2");
    assert_eq!(mid["tags"], serde_json::json!([]));
    assert_eq!(u(&mid["hits"]), 1);
    let big = items.iter().find(|e| e["command"] == "./gen big").unwrap();
    assert!(u(&big["size_bytes"]) >= 100 * 1024, "{big}");
    assert!(u(&mid["size_bytes"]) >= 10_000, "{mid}");

    // A pattern filters by command line.
    let only: Vec<Value> = match json(t.cachectl(&["ls", "--json", "./gen b*"])) {
        Value::Array(v) => v,
        other => panic!("{other}"),
    };
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["command"], "./gen big");
    // The table names every entry.
    let a = t.cachectl(&["ls"]).now(T0 + HOUR).assert().success();
    let out = String::from_utf8_lossy(&stdout_of(&a)).into_owned();
    for c in ["./gen small", "./gen mid", "./gen big", &key[..12]] {
        assert!(out.contains(c), "ls table lacks {c}:\n{out}");
    }
}

#[test]
fn ls_sorts_by_last_use_size_and_hits() {
    let t = TestContext::new();
    ls_fixture(&t);
    let expect_last_used = ["./gen mid", "./gen big", "./gen small"];
    assert_eq!(ls_order(&t, None), expect_last_used);
    assert_eq!(ls_order(&t, Some("last-used")), expect_last_used);
    assert_eq!(
        ls_order(&t, Some("size")),
        ["./gen big", "./gen mid", "./gen small"]
    );
    assert_eq!(
        ls_order(&t, Some("hits")),
        ["./gen small", "./gen mid", "./gen big"]
    );
}

// ---------------------------------------------------------------------------------------------
// show

#[test]
fn show_stdout_is_byte_exact_for_a_large_binary_stdout() {
    let t = TestContext::new();
    let data = binary_data(300 * 1024);
    fs::write(t.root.join("data.bin"), &data).unwrap();
    t.counted(
        "cmd",
        &format!("cat '{}'; echo note >&2", t.root.join("data.bin").display()),
    );
    t.miss(t.run(&["--", "./cmd"])).success();
    let key = key_of(&t, "./cmd");
    assert!(
        stdout_blob(&t, &key).is_file(),
        "a >64 KiB stdout is a blob"
    );

    let a = t
        .cachectl(&["show", &key[..10], "--stdout"])
        .assert()
        .success();
    let out = stdout_of(&a);
    assert_eq!(out.len(), data.len());
    assert!(
        out == data,
        "show --stdout differs from the command's stdout"
    );
    t.cachectl(&["show", &key[..10], "--stderr"])
        .assert()
        .success()
        .stdout("note\n");
    // Upper-case prefixes name the same entry.
    let a = t
        .cachectl(&["show", &key[..8].to_ascii_uppercase(), "--stdout"])
        .assert()
        .success();
    assert!(stdout_of(&a) == data);

    let rec = json(t.cachectl(&["show", &key, "--json"]));
    assert_eq!(rec["key"], key.as_str());
    assert_eq!(rec["command"], "./cmd");
    assert_eq!(u(&rec["stdout"]["size"]), data.len() as u64);
    let a = t.cachectl(&["show", &key[..6]]).assert().success();
    let text = String::from_utf8_lossy(&stdout_of(&a)).into_owned();
    assert!(text.contains(&key) && text.contains("./cmd"), "{text}");

    // A corrupt blob is refused, not printed.
    flip_byte(&stdout_blob(&t, &key), -10);
    let a = t.cachectl(&["show", &key, "--stdout"]).assert();
    assert!(!a.get_output().status.success(), "{}", summary(&a));
    assert!(stdout_of(&a).len() < data.len(), "printed a corrupt stdout");

    // An unknown prefix is an error, not an empty success.
    let other = if key.starts_with('0') { "1" } else { "0" };
    let a = t
        .cachectl(&["show", &format!("{other}{}", &key[1..10])])
        .assert();
    assert!(!a.get_output().status.success(), "{}", summary(&a));
}

// ---------------------------------------------------------------------------------------------
// explain

#[track_caller]
fn differences(e: &Value) -> Vec<(String, Option<String>, String)> {
    e["closest"]["differences"]
        .as_array()
        .unwrap_or_else(|| panic!("no closest.differences: {e}"))
        .iter()
        .map(|d| {
            (
                d["component"].as_str().unwrap().to_owned(),
                d["item"].as_str().map(str::to_owned),
                d["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn explain_names_the_changed_input_file_env_var_and_argument() {
    let t = TestContext::new();
    t.write("in.txt", "one\n");
    t.counted("cmd", "cat in.txt; echo \"$MANAGE_IT_VAR\" \"$1\"");
    let run_args = ["-i", "in.txt", "-e", "MANAGE_IT_VAR", "--", "./cmd", "x"];
    t.miss(t.run(&run_args).env("MANAGE_IT_VAR", "1"))
        .success()
        .stdout("one\n1 x\n");
    let key = key_of(&t, "./cmd x");
    let explain = |args: &[&str], var: &str| {
        let mut all = vec!["explain", "--json"];
        all.extend_from_slice(args);
        json(t.cachectl(&all).env("MANAGE_IT_VAR", var))
    };

    // A changed input file.
    t.write("in.txt", "two\n");
    let e = explain(&run_args, "1");
    assert_eq!(e["hit"], false, "{e}");
    assert!(e["verdict"].as_str().is_some_and(|v| !v.is_empty()), "{e}");
    assert_ne!(e["key"], key.as_str());
    assert_eq!(e["closest"]["key"], key.as_str(), "{e}");
    assert_eq!(e["closest"]["command"], "./cmd x");
    let d = differences(&e);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "inputs");
    assert_eq!(d[0].1.as_deref(), Some("in.txt"));
    assert!(d[0].2.contains("in.txt"), "{d:?}");
    let names: Vec<&str> = e["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for c in ["argv", "env", "inputs"] {
        assert!(names.contains(&c), "components: {names:?}");
    }

    // A changed env var (input restored).
    t.write("in.txt", "one\n");
    let e = explain(&run_args, "2");
    assert_eq!(e["hit"], false, "{e}");
    let d = differences(&e);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "env");
    assert_eq!(d[0].1.as_deref(), Some("MANAGE_IT_VAR"));
    assert!(d[0].2.contains("MANAGE_IT_VAR"), "{d:?}");

    // A changed argument: the closest entry is found by program.
    let mut other = run_args.to_vec();
    *other.last_mut().unwrap() = "y";
    let e = explain(&other, "1");
    assert_eq!(e["hit"], false, "{e}");
    assert_eq!(e["closest"]["key"], key.as_str(), "{e}");
    let d = differences(&e);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "argv");
    assert_eq!(d[0].1.as_deref(), Some("1"));
    assert!(d[0].2.contains('x') && d[0].2.contains('y'), "{d:?}");

    // Human output names the change too; explain exits 0 on a miss.
    t.write("in.txt", "three\n");
    let mut args = vec!["explain"];
    args.extend_from_slice(&run_args);
    let a = t
        .cachectl(&args)
        .env("MANAGE_IT_VAR", "1")
        .assert()
        .success();
    let out = String::from_utf8_lossy(&stdout_of(&a)).into_owned();
    assert!(out.contains("input in.txt changed"), "{out}");
    // explain never runs the command.
    assert_eq!(t.count(), 1);
}

#[test]
fn explain_says_hit_after_a_run() {
    let t = TestContext::new();
    t.counted("cmd", "echo hello");
    t.miss(t.run(&["-n", "ns", "--", "./cmd", "arg"])).success();
    let e = json(t.cachectl(&["explain", "--json", "-n", "ns", "--", "./cmd", "arg"]));
    assert_eq!(e["hit"], true, "{e}");
    assert_eq!(e["key"], key_of(&t, "./cmd arg").as_str());
    assert!(e["closest"].is_null(), "{e}");
    t.cachectl(&["explain", "-n", "ns", "--", "./cmd", "arg"])
        .assert()
        .success();
    // explain ran nothing, and the entry still hits.
    t.hit(t.run(&["-n", "ns", "--", "./cmd", "arg"]))
        .success()
        .stdout("hello\n");
    assert_eq!(t.count(), 1);
}

#[test]
fn explain_on_an_empty_cache_is_a_miss_with_exit_0() {
    let t = TestContext::new();
    t.counted("cmd", "echo hello");
    let e = json(t.cachectl(&["explain", "--json", "--", "./cmd"]));
    assert_eq!(e["hit"], false, "{e}");
    assert!(e["closest"].is_null(), "{e}");
    assert_eq!(e["key"].as_str().map(str::len), Some(64), "{e}");
    t.cachectl(&["explain", "--", "./cmd"]).assert().success();
    assert_eq!(t.count(), 0, "explain ran the command");
    assert!(!t.cache.exists(), "explain created the cache directory");
}

// ---------------------------------------------------------------------------------------------
// reports piped into `head -1`

/// Run `cachectl <args> | head -1`; assert cachectl neither panicked nor failed (being killed by
/// SIGPIPE is the quiet way to stop).
#[track_caller]
fn piped_into_head(t: &TestContext, args: &[&str]) {
    let mut run = t.cachectl(args);
    run.cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_guarded(&mut run.cmd);
    drop(run);
    let mut head = Command::new("head");
    head.arg("-1")
        .stdin(Stdio::from(child.stdout.take().unwrap()))
        .stdout(Stdio::piped());
    let head_child = spawn_guarded(&mut head);
    drop(head); // our copy of the pipe's read end: cachectl must see the reader go away
    let first = head_child.wait_with_output().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "cachectl {args:?} | head -1 panicked: {stderr}"
    );
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "cachectl {args:?} | head -1: {:?}\n{stderr}",
        out.status
    );
    assert!(
        !first.stdout.is_empty(),
        "cachectl {args:?} printed nothing"
    );
}

#[test]
fn management_reports_piped_into_head_do_not_panic() {
    let t = TestContext::new();
    // Long command lines make every report much larger than a pipe buffer.
    t.counted("cmd", "echo short");
    let long: Vec<String> = (0..4)
        .map(|i| format!("{i}{}", "x".repeat(100 * 1024)))
        .collect();
    for arg in &long {
        t.miss(t.run(&["-t", "long", "--", "./cmd", arg])).success();
    }
    let data = binary_data(1 << 20);
    fs::write(t.root.join("data.bin"), &data).unwrap();
    t.counted(
        "big",
        &format!("cat '{}'", t.root.join("data.bin").display()),
    );
    t.miss(t.run(&["--", "./big"])).success();
    let big_key = key_of(&t, "./big");
    let long_key = key_of(&t, &format!("./cmd {}", long[0]));

    for args in [
        &["ls"][..],
        &["ls", "--json"],
        &["ls", "--sort", "size"],
        &["stats"],
        &["stats", "--json"],
        &["show", &big_key, "--stdout"],
        &["show", &long_key],
        &["show", &long_key, "--json"],
        &["explain", "--", "./cmd", &long[0]],
        &["explain", "--json", "--", "./cmd", &long[0]],
        &["gc", "--dry-run", "--max-size", "1"],
        &["gc", "--dry-run", "--max-size", "1", "--json"],
        &["invalidate", "--dry-run", "--tag", "long"],
        &["invalidate", "--dry-run", "--json", "--all"],
    ] {
        piped_into_head(&t, args);
    }
    // Nothing was removed by any of it.
    assert_eq!(ls(&t).len(), 5);
}
