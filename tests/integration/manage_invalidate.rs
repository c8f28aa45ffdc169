//! `cachectl invalidate` (every selector, AND, refusal, `--dry-run`) and `cachectl verify`.

use crate::manage::*;
use crate::util::*;
use serde_json::Value;
use std::fs;

const E1: &str = "./tool build a";
const E2: &str = "./tool build b";
const E3: &str = "./tool test c";
const E4: &str = "./other run d";

/// Four entries, created a day apart (T0, T0+1d, T0+2d, T0+3d):
/// - E1 `./tool build a`: namespace default, tag red, input file src/a.c
/// - E2 `./tool build b`: namespace ci, tag blue, input directory src (src/a.c, src/b.c), and a
///   100 KiB stdout (a blob)
/// - E3 `./tool test c`: namespace ci, tag red, input lib/x.h
/// - E4 `./other run d`: namespace default, no tag, no input
fn fixture(t: &TestContext) {
    t.write("src/a.c", "int a;\n");
    t.write("src/b.c", "int b;\n");
    t.write("lib/x.h", "#define X\n");
    t.counted(
        "tool",
        "if [ \"$2\" = b ]; then head -c 102400 /dev/urandom; else echo \"tool $*\"; fi",
    );
    t.counted("other", "echo \"other $*\"");
    let runs: [&[&str]; 4] = [
        &["-t", "red", "-i", "src/a.c", "--", "./tool", "build", "a"],
        &[
            "-n", "ci", "-t", "blue", "-i", "src", "--", "./tool", "build", "b",
        ],
        &[
            "-n", "ci", "-t", "red", "-i", "lib/x.h", "--", "./tool", "test", "c",
        ],
        &["--", "./other", "run", "d"],
    ];
    for (i, args) in runs.iter().enumerate() {
        t.miss(t.run(args).now(T0 + i as u64 * DAY)).success();
    }
    assert_eq!(commands(t), sorted(&[E1, E2, E3, E4]));
}

/// Re-run fixture entry `cmd` (same options): whether it was a hit.
fn still_hits(t: &TestContext, cmd: &str) -> bool {
    let args: &[&str] = match cmd {
        E1 => &["-t", "red", "-i", "src/a.c", "--", "./tool", "build", "a"],
        E2 => &[
            "-n", "ci", "-t", "blue", "-i", "src", "--", "./tool", "build", "b",
        ],
        E3 => &[
            "-n", "ci", "-t", "red", "-i", "lib/x.h", "--", "./tool", "test", "c",
        ],
        _ => &["--", "./other", "run", "d"],
    };
    let before = t.count();
    t.run(args).assert().success();
    t.count() == before
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// `invalidate --json <args>` (at T0+3d+1h); returns the report.
fn invalidate(t: &TestContext, args: &[&str]) -> Value {
    let mut all = vec!["invalidate", "--json"];
    all.extend_from_slice(args);
    json(t.cachectl(&all).now(T0 + 3 * DAY + HOUR))
}

/// Invalidate with `args`; assert exactly `removed` went and the rest remain (and still hit).
#[track_caller]
fn removes(args: &[&str], removed: &[&str]) {
    let t = TestContext::new();
    fixture(&t);
    let r = invalidate(&t, args);
    let mut got: Vec<String> = r["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no `entries`: {r}"))
        .iter()
        .map(|e| e["command"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    assert_eq!(got, sorted(removed), "invalidate {args:?} reported {r}");
    assert_eq!(u(&r["entries_removed"]), removed.len() as u64, "{r}");
    assert_eq!(r["dry_run"], false);
    let kept: Vec<&str> = [E1, E2, E3, E4]
        .into_iter()
        .filter(|c| !removed.contains(c))
        .collect();
    assert_eq!(commands(&t), sorted(&kept), "after invalidate {args:?}");
    for c in [E1, E2, E3, E4] {
        let hit = still_hits(&t, c);
        assert_eq!(
            hit,
            kept.contains(&c),
            "`{c}` hit={hit} after invalidate {args:?}"
        );
    }
}

#[test]
fn invalidate_by_glob_pattern() {
    removes(&["./tool build *"], &[E1, E2]);
}

#[test]
fn invalidate_by_regex() {
    removes(&["--regex", r"^\./tool (build|test) [ac]$"], &[E1, E3]);
}

#[test]
fn invalidate_by_namespace() {
    removes(&["--namespace", "ci"], &[E2, E3]);
}

#[test]
fn invalidate_by_tag() {
    removes(&["--tag", "red"], &[E1, E3]);
}

#[test]
fn invalidate_by_input_file() {
    // E2 declared the directory src, so src/a.c is one of its recorded inputs too.
    removes(&["--input", "src/a.c"], &[E1, E2]);
}

#[test]
fn invalidate_by_input_file_given_absolutely() {
    let t = TestContext::new();
    fixture(&t);
    let abs = t.work.join("lib/x.h");
    let r = invalidate(&t, &["--input", abs.to_str().unwrap()]);
    assert_eq!(u(&r["entries_removed"]), 1, "{r}");
    assert_eq!(commands(&t), sorted(&[E1, E2, E4]));
}

#[test]
fn invalidate_by_input_directory() {
    removes(&["--input", "src"], &[E1, E2]);
}

#[test]
fn invalidate_by_input_directory_does_not_match_a_name_prefix() {
    // `sr` names no input, and is not a directory of `src/a.c` either.
    removes(&["--input", "sr"], &[]);
}

#[test]
fn invalidate_by_input_directory_written_with_dot_and_slash() {
    removes(&["--input", "./src/"], &[E1, E2]);
}

#[test]
fn invalidate_by_input_declared_from_a_subdirectory() {
    // The entry was made in work/sub with `-i ../src/a.c`: its input is work/src/a.c.
    let t = TestContext::new();
    fixture(&t);
    let sub = t.work.join("sub");
    fs::create_dir_all(&sub).unwrap();
    t.counted_in(&sub, "subtool", "cat ../src/a.c");
    t.miss(t.run(&["-i", "../src/a.c", "--", "./subtool"]).dir(&sub))
        .success();
    let r = invalidate(&t, &["--input", "src/a.c"]);
    let mut got: Vec<&str> = r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, ["./subtool", E1, E2], "{r}");
}

#[test]
fn invalidate_by_key_prefix() {
    let t = TestContext::new();
    fixture(&t);
    let key = key_of(&t, E4);
    let r = invalidate(&t, &["--key", &key[..10].to_ascii_uppercase()]);
    assert_eq!(u(&r["entries_removed"]), 1, "{r}");
    assert_eq!(r["entries"][0]["key"], key.as_str());
    assert_eq!(commands(&t), sorted(&[E1, E2, E3]));
    // A prefix that names nothing removes nothing.
    let other = if key.starts_with('0') { "1" } else { "0" };
    let r = invalidate(&t, &["--key", &format!("{other}{}", &key[1..12])]);
    assert_eq!(u(&r["entries_removed"]), 0, "{r}");
    assert_eq!(ls(&t).len(), 3);
}

#[test]
fn invalidate_older_than_uses_creation_time() {
    // Now is T0+3d+1h: created before T0+1d+13h are E1 (T0) and E2 (T0+1d).
    removes(&["--older-than", "36h"], &[E1, E2]);
}

#[test]
fn invalidate_older_than_ignores_recent_use() {
    let t = TestContext::new();
    fixture(&t);
    // E1 is used again just now: still created long ago.
    assert!(still_hits_at(&t, T0 + 3 * DAY + MIN));
    let r = invalidate(&t, &["--older-than", "36h"]);
    assert_eq!(u(&r["entries_removed"]), 2, "{r}");
    assert_eq!(commands(&t), sorted(&[E3, E4]));
    // Nothing is older than 4 days.
    let r = invalidate(&t, &["--older-than", "4d"]);
    assert_eq!(u(&r["entries_removed"]), 0, "{r}");
}

fn still_hits_at(t: &TestContext, now: u64) -> bool {
    let before = t.count();
    t.run(&["-t", "red", "-i", "src/a.c", "--", "./tool", "build", "a"])
        .now(now)
        .assert()
        .success();
    t.count() == before
}

#[test]
fn invalidate_keeps_a_blob_another_entry_shares() {
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
    let r = invalidate(&t, &["./gen one"]);
    assert_eq!(u(&r["entries_removed"]), 1, "{r}");
    assert_eq!(t.cache_files("cas-v1").len(), 1, "shared blob deleted");
    let a = t.hit(t.run(&["--", "./gen", "two"])).success().stderr("");
    assert!(stdout_of(&a) == data);
}

#[test]
fn invalidate_deletes_a_deduplicated_blob_with_its_last_entry() {
    let t = TestContext::new();
    let data = binary_data(150 * 1024);
    fs::write(t.root.join("data.bin"), &data).unwrap();
    t.counted(
        "gen",
        &format!("cat '{}'", t.root.join("data.bin").display()),
    );
    t.miss(t.run(&["--", "./gen", "one"])).success();
    // The second store finds the blob already there and touches it, then writes its record.
    t.miss(t.run(&["--", "./gen", "two"])).success();
    assert_eq!(t.cache_files("cas-v1").len(), 1);
    let r = invalidate(&t, &["./gen *"]);
    assert_eq!(u(&r["entries_removed"]), 2, "{r}");
    assert!(
        t.cache_files("cas-v1").is_empty(),
        "orphaned blob kept (no store touched it after the records were written)"
    );
}

#[test]
fn invalidate_selectors_combine_with_and() {
    removes(&["./tool *", "--namespace", "ci", "--tag", "red"], &[E3]);
}

#[test]
fn invalidate_all() {
    let t = TestContext::new();
    fixture(&t);
    let r = invalidate(&t, &["--all"]);
    assert_eq!(u(&r["entries_removed"]), 4, "{r}");
    assert!(u(&r["bytes_removed"]) >= 100 * 1024, "{r}");
    assert!(ls(&t).is_empty());
    assert!(t.cache_files("ac-v1").is_empty());
    assert!(t.cache_files("cas-v1").is_empty(), "blobs left behind");
    let s = json(t.cachectl(&["stats", "--json"]));
    assert_eq!(u(&s["entries"]), 0, "{s}");
}

#[test]
fn invalidate_without_a_selector_refuses_and_removes_nothing() {
    let t = TestContext::new();
    fixture(&t);
    let records = t.cache_files("ac-v1");
    for args in [
        &["invalidate"][..],
        &["invalidate", "--json"],
        &["invalidate", "--dry-run"],
    ] {
        let a = t.cachectl(args).assert().code(2);
        let err = stderr_of(&a);
        assert!(err.contains("--all"), "{args:?}: {err}");
    }
    // A bad regex is a usage error too.
    let a = t
        .cachectl(&["invalidate", "--regex", "(unclosed"])
        .assert()
        .code(2);
    assert!(stderr_of(&a).contains("regex"), "{}", stderr_of(&a));
    assert_eq!(t.cache_files("ac-v1"), records);
    assert_eq!(ls(&t).len(), 4);
}

#[test]
fn invalidate_dry_run_removes_nothing_and_predicts_the_removal() {
    let t = TestContext::new();
    fixture(&t);
    let records = t.cache_files("ac-v1");
    let blobs = t.cache_files("cas-v1");
    assert_eq!(blobs.len(), 1);
    let dry = invalidate(&t, &["--namespace", "ci", "--dry-run"]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(u(&dry["entries_removed"]), 2, "{dry}");
    assert!(u(&dry["bytes_removed"]) >= 100 * 1024, "{dry}");
    let a = t
        .cachectl(&["invalidate", "--namespace", "ci", "--dry-run"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&stdout_of(&a)).into_owned();
    assert!(out.contains(E2) && out.contains(E3), "{out}");
    assert!(out.contains("Would remove 2 entries"), "{out}");
    assert_eq!(t.cache_files("ac-v1"), records);
    assert_eq!(t.cache_files("cas-v1"), blobs);
    assert_eq!(ls(&t).len(), 4);

    let real = invalidate(&t, &["--namespace", "ci"]);
    assert_eq!(u(&real["entries_removed"]), 2, "{real}");
    assert_eq!(real["bytes_removed"], dry["bytes_removed"], "{real}\n{dry}");
    // E2's blob went with it, at once.
    assert!(t.cache_files("cas-v1").is_empty(), "orphaned blob kept");
    let a = t
        .cachectl(&["invalidate", "--tag", "red"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&stdout_of(&a)).into_owned();
    assert!(out.contains("Removed 1 entry ("), "{out}");
    assert_eq!(commands(&t), [E4]);
}

// ---------------------------------------------------------------------------------------------
// verify

#[test]
fn verify_reports_damage_and_fix_leaves_a_clean_cache() {
    let t = TestContext::new();
    let data = binary_data(200 * 1024);
    fs::write(t.root.join("data.bin"), &data).unwrap();
    t.counted(
        "gen",
        &format!(
            "case \"$1\" in\n\
             blob) cat '{}' ;;\n\
             small) echo small ;;\n\
             out) echo artifact > out.bin; echo wrote ;;\n\
             esac",
            t.root.join("data.bin").display()
        ),
    );
    t.miss(t.run(&["--", "./gen", "blob"])).success();
    t.miss(t.run(&["--", "./gen", "small"])).success();
    t.miss(t.run(&["-o", "out.bin", "--", "./gen", "out"]))
        .success();
    t.miss(t.run(&["--", "./gen", "intact"])).success();
    t.cachectl(&["verify"]).assert().success();
    let v = json(t.cachectl(&["verify", "--json"]));
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    assert_eq!(u(&v["records_checked"]), 4, "{v}");
    assert_eq!(u(&v["blobs_checked"]), 2, "{v}");

    // A flipped byte in a blob, a truncated record, a missing blob.
    let blob_key = key_of(&t, "./gen blob");
    let blob = stdout_blob(&t, &blob_key);
    flip_byte(&blob, -1000);
    let small_key = key_of(&t, "./gen small");
    let small_rec = record_path(&t, &small_key);
    let len = fs::metadata(&small_rec).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&small_rec)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out_key = key_of(&t, "./gen out");
    let rec = json(t.cachectl(&["show", &out_key, "--json"]));
    let out_digest = rec["outputs"][0]["digest"].as_str().unwrap().to_owned();
    let out_blob = blob_path(&t, &out_digest);
    fs::remove_file(&out_blob).unwrap();

    let a = t.cachectl(&["verify", "--json"]).assert().code(1);
    let v = json_of(&a);
    let problems: Vec<(String, String)> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_owned(),
                p["problem"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let about = |path: &std::path::Path| -> Vec<&String> {
        let p = path.display().to_string();
        problems
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, what)| what)
            .collect()
    };
    assert!(
        !about(&blob).is_empty(),
        "flipped blob not reported: {problems:?}"
    );
    assert!(
        !about(&small_rec).is_empty(),
        "truncated record not reported: {problems:?}"
    );
    let out_rec = record_path(&t, &out_key);
    let missing = about(&out_rec);
    assert!(
        missing.iter().any(|m| m.contains("missing")),
        "missing blob not reported: {problems:?}"
    );
    let intact = record_path(&t, &key_of(&t, "./gen intact"));
    assert!(
        about(&intact).is_empty(),
        "intact entry reported: {problems:?}"
    );
    // The human report fails the same way, and nothing was repaired by looking.
    t.cachectl(&["verify"]).assert().code(1);
    assert!(small_rec.exists() && blob.exists());

    t.cachectl(&["verify", "--fix"]).assert().success();
    let v = json(t.cachectl(&["verify", "--json"]));
    assert_eq!(v["problems"], serde_json::json!([]), "after --fix: {v}");
    t.cachectl(&["verify"]).assert().success();
    assert_eq!(commands(&t), ["./gen intact"]);

    // Every command still gives the right result: rebuilt once, then served.
    fs::remove_file(t.work.join("out.bin")).unwrap();
    for _ in 0..2 {
        let a = t.run(&["--", "./gen", "blob"]).assert().success();
        assert!(stdout_of(&a) == data, "wrong stdout for ./gen blob");
        t.run(&["--", "./gen", "small"])
            .assert()
            .success()
            .stdout("small\n");
        t.run(&["-o", "out.bin", "--", "./gen", "out"])
            .assert()
            .success()
            .stdout("wrote\n");
        assert_eq!(t.read("out.bin"), b"artifact\n");
        fs::remove_file(t.work.join("out.bin")).unwrap();
    }
    // Four real runs in the fixture, three rebuilds after the fix, no more.
    assert_eq!(t.count(), 7);
    t.cachectl(&["verify"]).assert().success();
}

#[test]
fn verify_heals_a_record_missing_from_the_index() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"");
    t.miss(t.run(&["--", "./cmd", "a"]));
    ls(&t);
    // An entry the index never heard of (its journal line lost) is drift of derived data, not
    // damage: verify brings the index in line and reports nothing.
    t.miss(t.run(&["--", "./cmd", "b"]));
    fs::remove_file(t.cache.join("journal-v1.log")).unwrap();
    t.cachectl(&["verify"]).assert().success();
    t.cachectl(&["verify", "--fix"]).assert().success();
    assert_eq!(commands(&t), ["./cmd a", "./cmd b"]);
    t.hit(t.run(&["--", "./cmd", "b"])).stdout("b\n");
}

#[test]
fn verify_sample_checks_only_that_many_entries() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"");
    for i in 0..4 {
        t.miss(t.run(&["--", "./cmd", &i.to_string()]));
    }
    let v = json(t.cachectl(&["verify", "--sample", "2", "--json"]));
    assert_eq!(u(&v["records_checked"]), 2, "{v}");
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    // Every record damaged: any sample finds it.
    for rec in t.cache_files("ac-v1") {
        flip_byte(&rec, -1);
    }
    let a = t
        .cachectl(&["verify", "--sample", "1", "--json"])
        .assert()
        .code(1);
    let v = json_of(&a);
    assert_eq!(u(&v["records_checked"]), 1, "{v}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v}");
}
