//! `cachectl gc`: eviction by size (LRU) and age, orphan blobs and temp files, `--dry-run`,
//! the automatic gc after stores, and reconciling the index with the disk.

use crate::manage::*;
use crate::util::*;
use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const ENTRY_BYTES: usize = 300 * 1024;

fn evicted(report: &Value) -> Vec<(String, String)> {
    report["evicted"]
        .as_array()
        .unwrap_or_else(|| panic!("no `evicted`: {report}"))
        .iter()
        .map(|e| {
            (
                e["command"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Files under `cache/<sub>` (relative names and sizes), to compare before and after.
fn snapshot(t: &TestContext) -> Vec<(PathBuf, u64)> {
    ["ac-v1", "cas-v1", "tmp", "stat-v1"]
        .iter()
        .flat_map(|sub| t.cache_files(sub))
        .map(|p| {
            let len = fs::metadata(&p).unwrap().len();
            (p.strip_prefix(&t.cache).unwrap().to_path_buf(), len)
        })
        .collect()
}

/// Wait until no gc holds the lock (and none is about to: the state stays quiet for a while).
fn wait_for_gc(t: &TestContext, timeout: Duration) {
    let start = Instant::now();
    let mut quiet_since = Instant::now();
    loop {
        if gc_running(t) {
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_millis(300) {
            return;
        }
        assert!(start.elapsed() < timeout, "a gc is still running");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn gc_max_size_evicts_least_recently_used_first() {
    let t = TestContext::new();
    random_script(&t, "big", ENTRY_BYTES);
    for i in 1..=4u64 {
        t.miss(t.run(&["--", "./big", &i.to_string()]).now(T0 + i * MIN))
            .success();
    }
    // Use 1 and 3 again: least recently used are now 2, then 4 (creation order would be 1, 2).
    t.hit(t.run(&["--", "./big", "1"]).now(T0 + 10 * MIN));
    t.hit(t.run(&["--", "./big", "3"]).now(T0 + 11 * MIN));
    assert_eq!(ls(&t).len(), 4);
    let entry = u(&ls(&t)[0]["size_bytes"]);
    assert!(entry >= ENTRY_BYTES as u64, "entry size {entry}");

    // Room for all but about one and a half entries: two must go.
    let before = cache_size(&t);
    let max = before - entry * 3 / 2;
    let max_arg = max.to_string();
    let r = json(
        t.cachectl(&["gc", "--json", "--policy", "lru", "--max-size", &max_arg])
            .now(T0 + HOUR),
    );
    assert_eq!(
        evicted(&r),
        [
            ("./big 2".to_owned(), "max_size".to_owned()),
            ("./big 4".to_owned(), "max_size".to_owned())
        ],
        "{r}"
    );
    assert_eq!(u(&r["entries_removed"]), 2, "{r}");
    assert_eq!(u(&r["blobs_removed"]), 2, "{r}");
    assert_eq!(r["dry_run"], false);
    assert_eq!(commands(&t), ["./big 1", "./big 3"]);
    assert_eq!(
        t.cache_files("cas-v1").len(),
        2,
        "evicted blobs are deleted"
    );
    let after = cache_size(&t);
    assert!(after <= max, "cache is {after} bytes after gc, max {max}");
    assert!(
        u(&r["size_after_bytes"]) <= max,
        "gc reports the cache still over its limit: {r}"
    );

    // The survivors still hit; an evicted entry runs again.
    t.hit(t.run(&["--", "./big", "1"])).success();
    t.hit(t.run(&["--", "./big", "3"])).success();
    t.miss(t.run(&["--", "./big", "2"])).success();

    // A limit above the size evicts nothing.
    let r = json(t.cachectl(&["gc", "--json", "--max-size", "1GiB"]));
    assert_eq!(u(&r["entries_removed"]), 0, "{r}");
    assert_eq!(ls(&t).len(), 3);
}

/// `gc --policy value` (the default) evicts what is cheapest to recompute per byte; `lru`
/// what was used longest ago. `gc_policy` in config and `CACHECTL_GC_POLICY` choose too.
#[test]
fn gc_value_policy_keeps_what_is_expensive_to_recompute() {
    let t = TestContext::new();
    // Small and slow (a link step, say), then two big and quick ones.
    t.counted("slow", "sleep 0.5; head -c 20000 /dev/urandom");
    random_script(&t, "quick", ENTRY_BYTES);
    t.miss(t.run(&["--", "./slow"]).now(T0)).success();
    t.miss(t.run(&["--", "./quick", "1"]).now(T0 + MIN))
        .success();
    t.miss(t.run(&["--", "./quick", "2"]).now(T0 + 2 * MIN))
        .success();
    let quick = u(&ls(&t).iter().find(|e| e["command"] == "./quick 1").unwrap()["size_bytes"]);
    // Room for all but half a quick entry.
    let max = (cache_size(&t) - quick / 2).to_string();
    let gc = |policy: &[&str]| {
        let mut args = vec!["gc", "--json", "--dry-run", "--max-size", &max];
        args.extend(policy);
        let r = json(t.cachectl(&args).now(T0 + HOUR));
        evicted(&r).into_iter().map(|(c, _)| c).collect::<Vec<_>>()
    };
    // By last use the slow entry goes first, and frees too little: a quick one goes too.
    assert_eq!(gc(&["--policy", "lru"]), ["./slow", "./quick 1"]);
    // By value one quick entry is enough (which one depends on how long each took), and the
    // slow one stays.
    let one_quick = |evicted: Vec<String>| evicted.len() == 1 && evicted[0].starts_with("./quick");
    assert!(one_quick(gc(&["--policy", "value"])));
    assert!(one_quick(gc(&[])), "value is the default");

    t.write("cachectl.toml", "gc_policy = \"lru\"\n");
    assert_eq!(
        gc(&[]),
        ["./slow", "./quick 1"],
        "gc_policy from the config file"
    );
    let r = json(
        t.cachectl(&["gc", "--json", "--dry-run", "--max-size", &max])
            .env("CACHECTL_GC_POLICY", "value")
            .now(T0 + HOUR),
    );
    assert_eq!(evicted(&r).len(), 1, "the variable beats the file: {r}");
    assert!(
        one_quick(gc(&["--policy", "value"])),
        "the flag beats the file"
    );
    let a = t.cachectl(&["config"]).assert().success();
    let out = String::from_utf8(stdout_of(&a)).unwrap();
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("gc_policy") && l.contains("lru")),
        "{out}"
    );

    t.write("cachectl.toml", "gc_policy = \"fifo\"\n");
    let a = t.cachectl(&["gc"]).assert().code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("cachectl.toml:1") && err.contains("`gc_policy` must be one of"),
        "{err}"
    );
    std::fs::remove_file(t.work.join("cachectl.toml")).unwrap();
    let a = t
        .cachectl(&["gc"])
        .env("CACHECTL_GC_POLICY", "fifo")
        .assert()
        .code(2);
    assert!(
        stderr_of(&a).contains("CACHECTL_GC_POLICY"),
        "{}",
        stderr_of(&a)
    );

    // For real: the slow entry survives and hits; the quick one evicted runs again.
    let r = json(
        t.cachectl(&["gc", "--json", "--max-size", &max])
            .now(T0 + HOUR),
    );
    let gone = evicted(&r);
    assert_eq!(gone.len(), 1, "{r}");
    t.hit(t.run(&["--", "./slow"])).success();
    let (_, arg) = gone[0].0.split_once(' ').unwrap();
    t.miss(t.run(&["--", "./quick", arg])).success();
}

#[test]
fn gc_max_size_evicts_no_more_than_needed() {
    let t = TestContext::new();
    random_script(&t, "big", 100 * 1024);
    for i in 1..=4u64 {
        t.miss(t.run(&["--", "./big", &i.to_string()]).now(T0 + i * MIN))
            .success();
    }
    let entry = u(&ls(&t)[0]["size_bytes"]);
    // Evicting one entry brings the cache 8 KB under the limit.
    let before = cache_size(&t);
    let max = before - entry + 8000;
    let r = json(t.cachectl(&[
        "gc",
        "--json",
        "--policy",
        "lru",
        "--max-size",
        &max.to_string(),
    ]));
    assert_eq!(
        evicted(&r),
        [("./big 1".to_owned(), "max_size".to_owned())],
        "cache {before} bytes, entry {entry}, max {max}: {r}"
    );
    assert_eq!(commands(&t), ["./big 2", "./big 3", "./big 4"]);
    let after = cache_size(&t);
    assert!(after <= max, "cache is {after} bytes after gc, max {max}");
    assert_eq!(u(&r["size_after_bytes"]), after, "{r}");
}

#[test]
fn gc_max_age_evicts_entries_unused_for_longer() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"");
    t.miss(t.run(&["--", "./cmd", "used-late"]).now(T0));
    t.miss(t.run(&["--", "./cmd", "unused"]).now(T0));
    t.miss(t.run(&["--", "./cmd", "created-late"]).now(T0 + 4 * DAY));
    // Created at T0 like `unused`, but used recently.
    t.hit(t.run(&["--", "./cmd", "used-late"]).now(T0 + 5 * DAY));

    let r = json(
        t.cachectl(&["gc", "--json", "--max-age", "2d"])
            .now(T0 + 6 * DAY),
    );
    assert_eq!(
        evicted(&r),
        [("./cmd unused".to_owned(), "max_age".to_owned())],
        "{r}"
    );
    assert_eq!(commands(&t), ["./cmd created-late", "./cmd used-late"]);
    t.hit(t.run(&["--", "./cmd", "used-late"]).now(T0 + 6 * DAY))
        .stdout("used-late\n");
    t.miss(t.run(&["--", "./cmd", "unused"]).now(T0 + 6 * DAY))
        .stdout("unused\n");

    // Later still, everything not used within 2 days goes.
    let r = json(
        t.cachectl(&["gc", "--json", "--max-age", "2d"])
            .now(T0 + 9 * DAY),
    );
    assert_eq!(u(&r["entries_removed"]), 3, "{r}");
    assert!(ls(&t).is_empty());
}

#[test]
fn gc_dry_run_removes_nothing() {
    let t = TestContext::new();
    random_script(&t, "big", 100 * 1024);
    t.miss(t.run(&["--", "./big", "1"]).now(T0));
    t.miss(t.run(&["--", "./big", "2"]).now(T0 + MIN));
    ls(&t);
    // An orphan blob past its grace period and a stale temp file: would-be removals too.
    let key = key_of(&t, "./big 1");
    let blob = stdout_blob(&t, &key);
    fs::remove_file(record_path(&t, &key)).unwrap();
    set_mtime_ago(&blob, Duration::from_secs(2 * 3600));
    let stale = write_file(&t.cache.join("tmp/stale.tmp"), b"left by a crash");
    set_mtime_ago(&stale, Duration::from_secs(2 * 3600));
    let before = snapshot(&t);

    let r = json(
        t.cachectl(&[
            "gc",
            "--dry-run",
            "--json",
            "--max-size",
            "1",
            "--max-age",
            "1h",
        ])
        .now(T0 + DAY),
    );
    assert_eq!(r["dry_run"], true, "{r}");
    assert_eq!(u(&r["entries_removed"]), 1, "{r}");
    assert_eq!(u(&r["blobs_removed"]), 2, "{r}");
    assert_eq!(u(&r["temp_files_removed"]), 1, "{r}");
    assert!(u(&r["bytes_freed"]) >= 200 * 1024, "{r}");
    let a = t
        .cachectl(&["gc", "--dry-run", "--max-size", "1"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&stdout_of(&a)).into_owned();
    assert!(out.contains("Would remove"), "{out}");
    assert!(out.contains("./big 2"), "{out}");

    assert_eq!(snapshot(&t), before, "gc --dry-run changed the cache");
    assert_eq!(commands(&t), ["./big 2"]);
    t.hit(t.run(&["--", "./big", "2"])).success();
}

#[test]
fn gc_dry_run_keeps_an_undecodable_record() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"");
    t.miss(t.run(&["--", "./cmd", "a"]));
    ls(&t);
    // A record file that does not decode (torn by a crash, or foreign).
    let garbage = record_path(&t, &"f".repeat(64));
    write_file(&garbage, b"not a record");
    let before = snapshot(&t);
    let r = json(t.cachectl(&["gc", "--dry-run", "--json"]));
    assert_eq!(r["dry_run"], true, "{r}");
    assert!(
        garbage.exists(),
        "gc --dry-run deleted {}",
        garbage.display()
    );
    assert_eq!(snapshot(&t), before, "gc --dry-run changed the cache");
    // A real gc does remove it.
    t.cachectl(&["gc"]).assert().success();
    assert!(!garbage.exists());
}

#[test]
fn gc_eviction_deletes_a_deduplicated_blob_at_once() {
    let t = TestContext::new();
    let data = binary_data(150 * 1024);
    fs::write(t.root.join("data.bin"), &data).unwrap();
    t.counted(
        "gen",
        &format!("cat '{}'", t.root.join("data.bin").display()),
    );
    t.miss(t.run(&["--", "./gen", "one"])).success();
    t.miss(t.run(&["--", "./gen", "two"])).success();
    assert_eq!(
        t.cache_files("cas-v1").len(),
        1,
        "identical stdouts share a blob"
    );
    let r = json(t.cachectl(&["gc", "--json", "--max-size", "1"]));
    assert_eq!(u(&r["entries_removed"]), 2, "{r}");
    assert_eq!(u(&r["blobs_removed"]), 1, "{r}");
    assert!(t.cache_files("cas-v1").is_empty(), "orphaned blob kept");
}

#[test]
fn gc_removes_orphan_blobs_past_the_grace_and_stale_temp_files() {
    let t = TestContext::new();
    random_script(&t, "big", 100 * 1024);
    for name in ["old-orphan", "new-orphan", "kept"] {
        t.miss(t.run(&["--", "./big", name])).success();
    }
    let keys: Vec<String> = ["old-orphan", "new-orphan", "kept"]
        .iter()
        .map(|n| key_of(&t, &format!("./big {n}")))
        .collect();
    let blobs: Vec<PathBuf> = keys.iter().map(|k| stdout_blob(&t, k)).collect();
    // Lose the records of two entries (as an interrupted store or a lost record would).
    fs::remove_file(record_path(&t, &keys[0])).unwrap();
    fs::remove_file(record_path(&t, &keys[1])).unwrap();
    let two_hours = Duration::from_secs(2 * 3600);
    set_mtime_ago(&blobs[0], two_hours);
    // A blob still referenced is kept however old.
    set_mtime_ago(&blobs[2], two_hours);
    let stale = write_file(&t.cache.join("tmp/stale.tmp"), b"left by a crash");
    set_mtime_ago(&stale, two_hours);
    let fresh = write_file(&t.cache.join("tmp/fresh.tmp"), b"a store in flight");

    let r = json(t.cachectl(&["gc", "--json"]));
    assert!(!blobs[0].exists(), "orphan blob older than the grace kept");
    assert!(blobs[1].exists(), "orphan blob within the grace removed");
    assert!(blobs[2].exists(), "referenced blob removed");
    assert!(!stale.exists(), "stale temp file kept");
    assert!(fresh.exists(), "fresh temp file removed");
    assert_eq!(u(&r["blobs_removed"]), 1, "{r}");
    assert_eq!(u(&r["temp_files_removed"]), 1, "{r}");
    assert_eq!(u(&r["entries_removed"]), 0, "{r}");
    assert_eq!(u(&r["reconciled_removed"]), 2, "{r}");
    assert_eq!(commands(&t), ["./big kept"]);
    t.hit(t.run(&["--", "./big", "kept"])).success();
}

#[test]
fn auto_gc_keeps_the_cache_bounded() {
    let t = TestContext::new();
    let limit: u64 = 1024 * 1024;
    random_script(&t, "big", 100 * 1024);
    let n = 20;
    // The background gc takes the configured policy: by last use, it keeps the newest.
    for i in 0..n {
        t.miss(
            t.run(&["--", "./big", &i.to_string()])
                .env("CACHECTL_MAX_SIZE", "1MiB")
                .env("CACHECTL_GC_POLICY", "lru"),
        )
        .success();
    }
    // The background gc brings the cache under the limit within a few seconds.
    wait_until(Duration::from_secs(10), "the cache to shrink", || {
        !gc_running(&t) && cache_size(&t) <= limit
    });
    wait_for_gc(&t, Duration::from_secs(10));
    let size = cache_size(&t);
    assert!(size <= limit, "cache is {size} bytes, limit {limit}");
    let s = json(
        t.cachectl(&["stats", "--json"])
            .env("CACHECTL_MAX_SIZE", "1MiB"),
    );
    assert_eq!(u(&s["max_size_bytes"]), limit, "{s}");
    let left = ls(&t);
    assert!(
        !left.is_empty() && left.len() < n,
        "{} entries left",
        left.len()
    );
    // What it kept are the most recently stored entries.
    let last = format!("./big {}", n - 1);
    assert!(
        left.iter().any(|e| e["command"] == last.as_str()),
        "the newest entry was evicted: {left:?}"
    );
    t.hit(
        t.run(&["--", "./big", &(n - 1).to_string()])
            .env("CACHECTL_MAX_SIZE", "1MiB"),
    )
    .success();
    wait_for_gc(&t, Duration::from_secs(10));
}

#[test]
fn auto_gc_keeps_the_cache_bounded_under_concurrent_stores() {
    let t = TestContext::new();
    let limit: u64 = 1024 * 1024;
    random_script(&t, "big", 100 * 1024);
    std::thread::scope(|s| {
        for th in 0..4 {
            let t = &t;
            s.spawn(move || {
                for i in 0..8 {
                    t.run(&["--", "./big", &format!("{th}-{i}")])
                        .env("CACHECTL_MAX_SIZE", "1MiB")
                        .assert()
                        .success();
                }
            });
        }
    });
    assert_eq!(t.count(), 32);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (gc_running(&t) || cache_size(&t) > limit) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_for_gc(&t, Duration::from_secs(10));
    let size = cache_size(&t);
    assert!(size <= limit, "cache is {size} bytes, limit {limit}");
}

#[test]
fn gc_reconciles_the_index_with_the_disk() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"");
    t.miss(t.run(&["--", "./cmd", "a"]));
    t.miss(t.run(&["--", "./cmd", "b"]));
    assert_eq!(commands(&t), ["./cmd a", "./cmd b"]);

    // The index is lost: every entry is still seen.
    for f in fs::read_dir(&t.cache).unwrap().flatten() {
        if f.file_name()
            .to_string_lossy()
            .starts_with("index-v1.sqlite")
        {
            fs::remove_file(f.path()).unwrap();
        }
    }
    t.cachectl(&["gc", "--json"]).assert().success();
    assert_eq!(commands(&t), ["./cmd a", "./cmd b"]);
    let s = json(t.cachectl(&["stats", "--json"]));
    assert_eq!(u(&s["entries"]), 2, "{s}");

    // A record the index never heard of (its journal event lost) is added by gc.
    t.miss(t.run(&["--", "./cmd", "c"]));
    fs::remove_file(t.cache.join("journal-v1.log")).unwrap();
    let r = json(t.cachectl(&["gc", "--json"]));
    assert_eq!(u(&r["reconciled_added"]), 1, "{r}");
    assert_eq!(commands(&t), ["./cmd a", "./cmd b", "./cmd c"]);

    // An entry whose record is gone is forgotten.
    let key = key_of(&t, "./cmd a");
    fs::remove_file(record_path(&t, &key)).unwrap();
    let r = json(t.cachectl(&["gc", "--json"]));
    assert_eq!(u(&r["reconciled_removed"]), 1, "{r}");
    assert_eq!(commands(&t), ["./cmd b", "./cmd c"]);
    let s = json(t.cachectl(&["stats", "--json"]));
    assert_eq!(u(&s["entries"]), 2, "{s}");
    t.hit(t.run(&["--", "./cmd", "c"])).stdout("c\n");
}
