//! Inspecting the cache: `ls`, `show`, `explain`, and every report piped into `head -1`.

use crate::manage::*;
use crate::util::*;
use serde_json::Value;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

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
