//! `cachectl warm`: manifests (for_each, run strings, cwd), parallel runs, failures, malformed
//! manifests, --dry-run, --force, --from-history and SIGINT.

use crate::util::*;
use assert_cmd::assert::Assert;
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// `cachectl warm <args>` in the work dir.
fn warm(t: &TestContext, args: &[&str]) -> Run {
    t.cachectl(&["warm"]).args(args)
}

/// The `--json` report on stdout of a finished warm.
#[track_caller]
fn report(a: &Assert) -> Value {
    serde_json::from_slice(&a.get_output().stdout)
        .unwrap_or_else(|e| panic!("warm stdout is not JSON: {e}\n{}", summary(a)))
}

/// `warm <args> --json`: its exit code and report.
#[track_caller]
fn warm_json(t: &TestContext, args: &[&str]) -> (i32, Value) {
    let a = warm(t, args).args(&["--json"]).assert();
    let code = a.get_output().status.code().unwrap_or(-1);
    (code, report(&a))
}

fn commands(r: &Value) -> &Vec<Value> {
    r["commands"]
        .as_array()
        .unwrap_or_else(|| panic!("no commands array: {r}"))
}

/// The report row of the one command whose command line is `cmd`.
#[track_caller]
fn row<'a>(r: &'a Value, cmd: &str) -> &'a Value {
    let found: Vec<&Value> = commands(r).iter().filter(|c| c["command"] == cmd).collect();
    assert_eq!(found.len(), 1, "rows for `{cmd}` in {r:#}");
    found[0]
}

#[track_caller]
fn status<'a>(r: &'a Value, cmd: &str) -> &'a str {
    row(r, cmd)["status"].as_str().unwrap()
}

/// `(already_cached, stored, failed, not_run, would_run)`.
fn counts(r: &Value) -> [u64; 5] {
    ["already_cached", "stored", "failed", "not_run", "would_run"]
        .map(|k| r[k].as_u64().unwrap_or_else(|| panic!("no `{k}` in {r:#}")))
}

/// Number of entries in the cache (`ls --json`).
fn entries(t: &TestContext) -> usize {
    let a = t.cachectl(&["ls", "--json"]).assert().success();
    match report(&a) {
        Value::Array(v) => v.len(),
        other => panic!("ls --json is not an array: {other}"),
    }
}

/// The key `cachectl explain` computes for `args` (options, `--`, command) from `dir`.
fn explained_key(t: &TestContext, dir: &Path, args: &[&str]) -> String {
    let a = t
        .cachectl(&["explain", "--json"])
        .args(args)
        .dir(dir)
        .assert()
        .success();
    report(&a)["key"].as_str().unwrap().to_owned()
}

#[track_caller]
fn code_of(a: &Assert) -> i32 {
    a.get_output().status.code().unwrap_or(-1)
}

#[test]
fn twenty_commands_run_once_in_parallel_then_are_cached() {
    let t = TestContext::new();
    let r = t.root.display().to_string();
    // Each run records how many runs were in flight (including itself) after a short sleep.
    t.counted(
        "gen",
        &format!(
            "touch '{r}/running/'\"$1\"; sleep 0.3; ls '{r}/running' | wc -l >> '{r}/conc'\n\
             rm '{r}/running/'\"$1\"; mkdir -p out; echo \"file $1\" > \"out/$1.txt\"; echo \"stdout $1\""
        ),
    );
    fs::create_dir_all(t.root.join("running")).unwrap();
    let mut m = String::new();
    for i in 0..20 {
        m += &format!("[[command]]\nrun = [\"./gen\", \"n{i}\"]\noutputs = [\"out/n{i}.txt\"]\n\n");
    }
    t.write("warm.toml", m);

    let (code, rep) = warm_json(&t, &["warm.toml", "-j", "4"]);
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(counts(&rep), [0, 20, 0, 0, 0], "{rep:#}");
    assert_eq!(t.count(), 20, "each command runs exactly once");
    let mut keys: Vec<&str> = commands(&rep)
        .iter()
        .map(|c| {
            assert_eq!(c["status"], "stored", "{c}");
            assert_eq!(c["exit_code"], 0, "{c}");
            c["key"].as_str().unwrap()
        })
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 20, "distinct keys");
    assert!(keys.iter().all(|k| k.len() == 64), "{keys:?}");
    let conc: Vec<usize> = fs::read_to_string(t.root.join("conc"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let max = conc.iter().max().copied().unwrap_or(0);
    assert!((2..=4).contains(&max), "max concurrency {max} with -j 4");

    // Second warm: everything cached, nothing runs.
    let (code, rep2) = warm_json(&t, &["warm.toml", "-j", "4"]);
    assert_eq!(code, 0, "{rep2:#}");
    assert_eq!(counts(&rep2), [20, 0, 0, 0, 0], "{rep2:#}");
    assert_eq!(t.count(), 20);
    assert!(commands(&rep2).iter().all(|c| c["status"] == "cached"));

    // `cachectl run` with the same options gets the same key: a hit restoring the output file.
    let run7 = ["-o", "out/n7.txt", "--", "./gen", "n7"];
    assert_eq!(
        explained_key(&t, &t.work, &run7),
        row(&rep, "./gen n7")["key"].as_str().unwrap()
    );
    fs::remove_file(t.work.join("out/n7.txt")).unwrap();
    t.hit(t.run(&run7)).success().stdout("stdout n7\n");
    assert_eq!(t.read("out/n7.txt"), b"file n7\n");
    assert_eq!(t.count(), 20);
}

#[test]
fn for_each_expands_globs_and_substitutes_braces() {
    let t = TestContext::new();
    t.counted(
        "thumb",
        "mkdir -p \"$(dirname \"$2\")\"; { echo thumb; cat \"$1\"; } > \"$2\"; echo \"made $2\"",
    );
    for n in ["a", "b", "c"] {
        t.write(&format!("images/{n}.png"), format!("png {n}\n"));
    }
    t.write("images/notes.txt", "not an image\n");
    t.write(
        "warm.toml",
        "[[command]]\nfor_each = \"images/*.png\"\nrun = [\"./thumb\", \"{}\", \"thumbs/{}\"]\n\
         inputs = [\"{}\"]\noutputs = [\"thumbs/{}\"]\n",
    );
    let (code, rep) = warm_json(&t, &["warm.toml", "-j", "2"]);
    assert_eq!(code, 0, "{rep:#}");
    let mut cmds: Vec<&str> = commands(&rep)
        .iter()
        .map(|c| c["command"].as_str().unwrap())
        .collect();
    cmds.sort();
    assert_eq!(
        cmds,
        [
            "./thumb images/a.png thumbs/images/a.png",
            "./thumb images/b.png thumbs/images/b.png",
            "./thumb images/c.png thumbs/images/c.png",
        ]
    );
    assert!(
        commands(&rep)
            .iter()
            .all(|c| c["status"] == "stored" && c["origin"] == "warm.toml:1"),
        "{rep:#}"
    );
    assert_eq!(t.count(), 3);
    assert_eq!(t.read("thumbs/images/b.png"), b"thumb\npng b\n");

    // {} in inputs: changing one image re-runs only its command.
    t.write("images/b.png", "png b v2\n");
    let (code, rep) = warm_json(&t, &["warm.toml"]);
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(counts(&rep), [2, 1, 0, 0, 0], "{rep:#}");
    assert_eq!(
        status(&rep, "./thumb images/b.png thumbs/images/b.png"),
        "stored"
    );
    assert_eq!(t.count(), 4);

    // {} in outputs: the stored output is restored by `cachectl run` with the same options.
    fs::remove_dir_all(t.work.join("thumbs")).unwrap();
    t.hit(t.run(&[
        "-i",
        "images/b.png",
        "-o",
        "thumbs/images/b.png",
        "--",
        "./thumb",
        "images/b.png",
        "thumbs/images/b.png",
    ]))
    .success()
    .stdout("made thumbs/images/b.png\n");
    assert_eq!(t.read("thumbs/images/b.png"), b"thumb\npng b v2\n");
}

#[test]
fn run_string_is_split_like_a_shell_without_evaluation() {
    let t = TestContext::new();
    t.counted(
        "args",
        "for a in \"$@\"; do printf '[%s]' \"$a\"; done; echo",
    );
    // A list and the equivalent quoted string give the same argv, hence the same key.
    t.write(
        "list.toml",
        "[[command]]\nrun = [\"./args\", \"a  b\", \"c\"]\n",
    );
    t.write("string.toml", "[[command]]\nrun = \"./args 'a  b' c\"\n");
    let (code, rep) = warm_json(&t, &["list.toml"]);
    assert_eq!((code, counts(&rep)), (0, [0, 1, 0, 0, 0]), "{rep:#}");
    let (code, rep2) = warm_json(&t, &["string.toml"]);
    assert_eq!((code, counts(&rep2)), (0, [1, 0, 0, 0, 0]), "{rep2:#}");
    assert_eq!(commands(&rep)[0]["key"], commands(&rep2)[0]["key"]);
    assert_eq!(t.count(), 1);

    // Double quotes, a single quote inside them, backslash escapes; `$HOME` and `*` stay literal.
    t.write(
        "quoting.toml",
        "[[command]]\nrun = '''./args \"d  e\" \"f'g\" 'h\"i' j\\ k $HOME *'''\n",
    );
    let (code, rep) = warm_json(&t, &["quoting.toml"]);
    assert_eq!((code, counts(&rep)), (0, [0, 1, 0, 0, 0]), "{rep:#}");
    assert_eq!(t.count(), 2);
    t.hit(t.run(&["--", "./args", "d  e", "f'g", "h\"i", "j k", "$HOME", "*"]))
        .success()
        .stdout("[d  e][f'g][h\"i][j k][$HOME][*]\n");
    t.hit(t.run(&["--", "./args", "a  b", "c"]))
        .success()
        .stdout("[a  b][c]\n");
}

#[test]
fn cwd_is_relative_to_a_manifest_in_another_directory() {
    let t = TestContext::new();
    let proj = t.root.join("proj");
    let site = proj.join("site");
    fs::create_dir_all(&site).unwrap();
    t.counted_in(
        &site,
        "build",
        "echo \"built $1 in $(pwd)\" > \"$1.out\"; cat dep.txt",
    );
    t.counted_in(&proj, "here", "pwd");
    write_file(&site.join("dep.txt"), b"dep v1\n");
    // A project config found from the commands' cwd applies to warm and to run alike.
    write_file(
        &proj.join("cachectl.toml"),
        b"[[rule]]\nmatch = \"./build *\"\ninputs = [\"dep.txt\"]\n",
    );
    write_file(
        &proj.join("warm.toml"),
        b"[[command]]\nrun = \"./build one\"\ncwd = \"site\"\noutputs = [\"one.out\"]\n\n\
          [[command]]\nrun = \"./here\"\n",
    );

    // The test's cwd (work) is not the manifest's directory.
    let manifest = proj.join("warm.toml").display().to_string();
    let (code, rep) = warm_json(&t, &[&manifest]);
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(counts(&rep), [0, 2, 0, 0, 0], "{rep:#}");
    assert_eq!(t.count(), 2);
    let one = row(&rep, "./build one");
    assert_eq!(one["cwd"], site.display().to_string());
    assert!(
        one["origin"].as_str().unwrap().ends_with("warm.toml:1"),
        "{one}"
    );
    let here = row(&rep, "./here");
    assert_eq!(here["cwd"], proj.display().to_string());
    assert!(
        here["origin"].as_str().unwrap().ends_with("warm.toml:6"),
        "{here}"
    );
    assert_eq!(
        fs::read_to_string(site.join("one.out")).unwrap(),
        format!("built one in {}\n", site.display())
    );
    assert!(
        !t.work.join("one.out").exists(),
        "nothing is written in the caller's cwd"
    );

    // `cachectl run` from the same cwd with the same options hits and restores the output.
    fs::remove_file(site.join("one.out")).unwrap();
    t.hit(t.run(&["-o", "one.out", "--", "./build", "one"]).dir(&site))
        .success()
        .stdout("dep v1\n");
    assert!(site.join("one.out").exists());
    t.hit(t.run(&["--", "./here"]).dir(&proj))
        .success()
        .stdout(format!("{}\n", proj.display()));

    // The config rule's input is part of the warmed key: changing it makes warm re-run.
    write_file(&site.join("dep.txt"), b"dep v2\n");
    let (code, rep) = warm_json(&t, &[&manifest, "--dry-run"]);
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(status(&rep, "./build one"), "would_run");
    assert_eq!(status(&rep, "./here"), "cached");
    assert_eq!(t.count(), 2);
}

#[test]
fn cwd_through_dotdot_or_symlink_gets_the_key_run_gets() {
    let t = TestContext::new();
    let proj = t.root.join("proj");
    let site = proj.join("site");
    fs::create_dir_all(proj.join("sub")).unwrap();
    t.counted_in(&site, "build", "echo \"built $1\"");
    std::os::unix::fs::symlink(&proj, t.root.join("link")).unwrap();
    write_file(
        &proj.join("warm.toml"),
        b"[[command]]\nrun = \"./build a\"\ncwd = \"site\"\n\n\
          [[command]]\nrun = \"./build b\"\ncwd = \"sub/../site\"\n",
    );
    let link = t.root.join("link/warm.toml").display().to_string();
    for manifest in ["../proj/warm.toml", &link] {
        let (code, rep) = warm_json(&t, &[manifest, "--force"]);
        assert_eq!(code, 0, "{manifest}: {rep:#}");
        assert_eq!(counts(&rep), [0, 2, 0, 0, 0], "{manifest}: {rep:#}");
        let (code, rep) = warm_json(&t, &[manifest]);
        assert_eq!(code, 0, "{manifest}: {rep:#}");
        assert_eq!(counts(&rep), [2, 0, 0, 0, 0], "{manifest}: {rep:#}");
    }
    let before = t.count();
    t.hit(t.run(&["--", "./build", "a"]).dir(&site)).success();
    t.hit(t.run(&["--", "./build", "b"]).dir(&site)).success();
    assert_eq!(t.count(), before);
}

/// A failing command that writes a lot of stderr and ends with a recognizable line.
fn failing_script(t: &TestContext) {
    t.script(
        "fail",
        "i=0; while [ $i -lt 100 ]; do echo \"noise line $i .......................\" >&2; \
         i=$((i+1)); done\necho 'boom: disk on fire' >&2\nexit 3",
    );
}

fn failure_first_manifest(t: &TestContext) {
    t.counted("ok", "echo ok $1");
    let mut m = String::from("[[command]]\nrun = \"./fail\"\n\n");
    for i in 0..4 {
        m += &format!("[[command]]\nrun = \"./ok {i}\"\n\n");
    }
    t.write("warm.toml", m);
}

#[test]
fn failure_stops_scheduling_without_keep_going() {
    let t = TestContext::new();
    failing_script(&t);
    failure_first_manifest(&t);

    let a = warm(&t, &["warm.toml", "-j", "1"]).assert();
    assert_eq!(code_of(&a), 1, "{}", summary(&a));
    let err = stderr_of(&a);
    assert!(err.contains("./fail"), "{err}");
    assert!(
        err.contains("boom: disk on fire"),
        "stderr tail reported: {err}"
    );
    assert_eq!(t.count(), 0, "nothing scheduled after the failure");

    let (code, rep) = warm_json(&t, &["warm.toml", "-j", "1"]);
    assert_eq!(code, 1, "{rep:#}");
    assert_eq!(counts(&rep), [0, 0, 1, 4, 0], "{rep:#}");
    let f = row(&rep, "./fail");
    assert_eq!(f["status"], "failed");
    assert_eq!(f["exit_code"], 3);
    let e = f["error"].as_str().unwrap();
    assert!(e.contains("boom: disk on fire"), "{e}");
    for i in 0..4 {
        assert_eq!(status(&rep, &format!("./ok {i}")), "not_run");
    }
    assert_eq!(t.count(), 0);
    assert_eq!(entries(&t), 0);
}

#[test]
fn keep_going_runs_the_rest_after_a_failure() {
    let t = TestContext::new();
    failing_script(&t);
    failure_first_manifest(&t);

    let (code, rep) = warm_json(&t, &["warm.toml", "-j", "1", "--keep-going"]);
    assert_eq!(code, 1, "{rep:#}");
    assert_eq!(counts(&rep), [0, 4, 1, 0, 0], "{rep:#}");
    assert_eq!(status(&rep, "./fail"), "failed");
    for i in 0..4 {
        assert_eq!(status(&rep, &format!("./ok {i}")), "stored");
    }
    assert_eq!(t.count(), 4);
    assert_eq!(entries(&t), 4, "the failure is not stored");
    t.hit(t.run(&["--", "./ok", "2"]))
        .success()
        .stdout("ok 2\n");
}

/// `warm <manifest>` must fail with exit 2 and a message naming `file:line` and `key`, having
/// run nothing (the manifest's first command is a valid counted one).
#[track_caller]
fn assert_located(t: &TestContext, file: &str, body: &str, line: usize, key: &str) {
    t.write(file, format!("[[command]]\nrun = \"./cmd\"\n\n{body}"));
    let a = warm(t, &[file]).assert();
    let err = stderr_of(&a);
    assert_eq!(code_of(&a), 2, "{file}: {}", summary(&a));
    assert!(err.contains(&format!("{file}:{line}")), "{file}: {err}");
    assert!(err.contains(key), "{file}: names `{key}`: {err}");
    assert_eq!(t.count(), 0, "{file}: nothing may run");
    assert!(
        files_under(&t.cache).is_empty(),
        "{file}: cache is untouched"
    );
}

#[test]
fn malformed_manifests_give_located_errors_and_run_nothing() {
    let t = TestContext::new();
    t.counted("cmd", "echo ran");
    assert_located(
        &t,
        "unknown.toml",
        "[[command]]\nrun = \"./cmd x\"\nouputs = [\"x\"]\n",
        6,
        "ouputs",
    );
    assert_located(
        &t,
        "ttl.toml",
        "[[command]]\nrun = \"./cmd x\"\nttl = \"soon\"\n",
        6,
        "ttl",
    );
    assert_located(
        &t,
        "quotes.toml",
        "[[command]]\nrun = \"./cmd 'x\"\n",
        5,
        "unbalanced",
    );
    assert_located(&t, "empty.toml", "[[command]]\nrun = \"\"\n", 5, "run");
    assert_located(&t, "emptylist.toml", "[[command]]\nrun = []\n", 5, "run");
    assert_located(
        &t,
        "cwd.toml",
        "[[command]]\nrun = \"./cmd\"\ncwd = \"nowhere\"\n",
        6,
        "cwd",
    );
    assert_located(
        &t,
        "dotdot.toml",
        "[[command]]\nrun = \"./cmd x\"\noutputs = [\"../x\"]\n",
        6,
        "outputs",
    );
    assert_located(
        &t,
        "abs.toml",
        "[[command]]\nrun = \"./cmd x\"\noutputs = [\"/tmp/x\"]\n",
        6,
        "outputs",
    );
    // A missing manifest.
    let a = warm(&t, &["missing.toml"]).assert();
    assert_eq!(code_of(&a), 2, "{}", summary(&a));
    assert!(stderr_of(&a).contains("missing.toml"), "{}", summary(&a));
    // Same with --json: still a usage error, nothing on stdout to mistake for a report.
    let a = warm(&t, &["ttl.toml", "--json"]).assert();
    assert_eq!(code_of(&a), 2, "{}", summary(&a));

    assert_eq!(t.count(), 0);
    assert!(files_under(&t.cache).is_empty());
    assert_eq!(entries(&t), 0);
}

#[test]
fn dry_run_runs_nothing_and_reports_statuses_after_a_partial_warm() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"out $1\"");
    let mut m = String::new();
    for i in 0..4 {
        m += &format!("[[command]]\nrun = \"./cmd {i}\"\n\n");
    }
    t.write("warm.toml", m);

    let (code, rep) = warm_json(&t, &["warm.toml", "--dry-run"]);
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(counts(&rep), [0, 0, 0, 0, 4], "{rep:#}");
    assert_eq!(rep["dry_run"], true);
    assert!(commands(&rep).iter().all(|c| c["status"] == "would_run"));
    assert_eq!(t.count(), 0);
    assert!(files_under(&t.cache).is_empty(), "a dry run stores nothing");

    // Two of them get cached through `cachectl run`.
    t.miss(t.run(&["--", "./cmd", "1"])).success();
    t.miss(t.run(&["--", "./cmd", "3"])).success();
    let (code, rep) = warm_json(&t, &["warm.toml", "--dry-run", "-j", "4"]);
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(counts(&rep), [2, 0, 0, 0, 2], "{rep:#}");
    for (i, s) in [
        (0, "would_run"),
        (1, "cached"),
        (2, "would_run"),
        (3, "cached"),
    ] {
        assert_eq!(status(&rep, &format!("./cmd {i}")), s, "{rep:#}");
    }
    assert_eq!(t.count(), 2);
    assert_eq!(entries(&t), 2);

    // The table form says the same and runs nothing either.
    let a = warm(&t, &["warm.toml", "--dry-run"]).assert().success();
    let out = String::from_utf8_lossy(&stdout_of(&a)).into_owned();
    assert!(out.contains("2 already cached, 2 would run"), "{out}");
    assert_eq!(t.count(), 2);
}

#[test]
fn force_reruns_cached_commands() {
    let t = TestContext::new();
    t.counted(
        "cmd",
        "mkdir -p out; echo \"$1 $(cat ../count | wc -l)\" > out/$1",
    );
    let mut m = String::new();
    for i in 0..3 {
        m += &format!("[[command]]\nrun = \"./cmd f{i}\"\noutputs = [\"out/f{i}\"]\n\n");
    }
    t.write("warm.toml", m);
    let (code, rep) = warm_json(&t, &["warm.toml", "-j", "2"]);
    assert_eq!((code, counts(&rep)), (0, [0, 3, 0, 0, 0]), "{rep:#}");
    assert_eq!(t.count(), 3);

    let (code, rep2) = warm_json(&t, &["warm.toml", "-j", "2", "--force"]);
    assert_eq!((code, counts(&rep2)), (0, [0, 3, 0, 0, 0]), "{rep2:#}");
    assert!(commands(&rep2).iter().all(|c| c["status"] == "stored"));
    assert_eq!(t.count(), 6, "--force runs every command again");
    for c in commands(&rep) {
        assert_eq!(row(&rep2, c["command"].as_str().unwrap())["key"], c["key"]);
    }
    assert_eq!(entries(&t), 3, "forced runs overwrite their entries");

    // The forced results are what a hit restores now.
    let forced = t.read("out/f1");
    fs::remove_dir_all(t.work.join("out")).unwrap();
    t.hit(t.run(&["-o", "out/f1", "--", "./cmd", "f1"]))
        .success();
    assert_eq!(t.read("out/f1"), forced);
    let (code, rep3) = warm_json(&t, &["warm.toml"]);
    assert_eq!((code, counts(&rep3)), (0, [3, 0, 0, 0, 0]), "{rep3:#}");
    assert_eq!(t.count(), 6);
}

#[test]
fn from_history_reruns_used_commands_whose_inputs_changed() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"; cat \"$2\"");
    t.write("in1", "1\n");
    t.write("in2", "1\n");
    t.write("in3", "1\n");
    let one = ["-i", "in1", "--", "./cmd", "one", "in1"];
    let two = ["-i", "in2", "--", "./cmd", "two", "in2"];
    let three = ["-i", "in3", "--", "./cmd", "three", "in3"];
    t.miss(t.run(&one)).success();
    for _ in 0..4 {
        t.hit(t.run(&one)).success();
    }
    t.miss(t.run(&two)).success();
    t.hit(t.run(&two)).success();
    t.miss(t.run(&three)).success();
    assert_eq!(t.count(), 3);

    // Nothing changed: nothing to do.
    let (code, rep) = warm_json(&t, &["--from-history"]);
    assert_eq!((code, counts(&rep)), (0, [3, 0, 0, 0, 0]), "{rep:#}");
    assert_eq!(t.count(), 3);

    // One input changed: exactly that command re-runs (with today's input).
    t.write("in2", "2\n");
    let (code, rep) = warm_json(&t, &["--from-history"]);
    assert_eq!((code, counts(&rep)), (0, [2, 1, 0, 0, 0]), "{rep:#}");
    assert_eq!(status(&rep, "./cmd two in2"), "stored");
    assert_eq!(
        row(&rep, "./cmd two in2")["cwd"],
        t.work.display().to_string()
    );
    assert_eq!(t.count(), 4);
    t.hit(t.run(&two)).success().stdout("two\n2\n");

    // --top 1: only the most used command is considered.
    t.write("in1", "3\n");
    t.write("in3", "3\n");
    let (code, rep) = warm_json(&t, &["--from-history", "--top", "1"]);
    assert_eq!(code, 0, "{rep:#}");
    assert_eq!(commands(&rep).len(), 1, "{rep:#}");
    assert_eq!(status(&rep, "./cmd one in1"), "stored");
    assert_eq!(t.count(), 5);
    t.hit(t.run(&one)).success().stdout("one\n3\n");
    t.miss(t.run(&three)).success();
}

/// Send SIGINT to `child` (only to it, not to its process group).
fn sigint(child: &Child) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(rc, 0, "kill -INT");
}

/// Wait for `child` to exit within `limit`; (exit code, stdout, stderr, time taken).
fn wait_limited(mut child: Child, limit: Duration) -> (i32, Vec<u8>, String, Duration) {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("warm still running {limit:?} after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

/// `slow NAME SECONDS`: marks NAME as started, then sleeps.
fn slow_script(t: &TestContext) {
    t.counted("slow", "touch \"$1.started\"\nexec sleep \"$2\"");
}

#[test]
fn sigint_stops_warm_within_the_grace_period() {
    let t = TestContext::new();
    slow_script(&t);
    // Longer than the grace period: the running ones must be terminated by warm.
    t.write(
        "warm.toml",
        "[[command]]\nrun = \"./slow a 20\"\n\n[[command]]\nrun = \"./slow b 20\"\n\n\
         [[command]]\nrun = \"./slow c 20\"\n",
    );
    let (child, _) = warm(&t, &["warm.toml", "-j", "2", "--json"]).spawn();
    wait_until(Duration::from_secs(10), "a and b to start", || {
        t.work.join("a.started").exists() && t.work.join("b.started").exists()
    });
    sigint(&child);
    let (code, stdout, stderr, took) = wait_limited(child, Duration::from_secs(15));
    assert_eq!(code, 130, "stderr: {stderr}");
    let rep: Value = serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&stdout)));
    assert_eq!(rep["interrupted"], true, "{rep:#}");
    assert_eq!(status(&rep, "./slow c 20"), "not_run", "{rep:#}");
    for cmd in ["./slow a 20", "./slow b 20"] {
        assert_ne!(status(&rep, cmd), "stored", "{rep:#}");
    }
    assert!(!t.work.join("c.started").exists(), "c was never started");
    assert_eq!(t.count(), 2);
    assert!(took < Duration::from_secs(15), "took {took:?}");

    // The cache is consistent and holds none of the killed runs.
    t.cachectl(&["verify"]).assert().code(0);
    assert_eq!(entries(&t), 0);
}

/// `-j 1`, two 1-second commands, SIGINT while the first runs. Returns the report.
fn interrupt_during_quick_command(t: &TestContext) -> Value {
    slow_script(t);
    t.write(
        "warm.toml",
        "[[command]]\nrun = \"./slow a 1\"\n\n[[command]]\nrun = \"./slow b 1\"\n",
    );
    let (child, _) = warm(t, &["warm.toml", "-j", "1", "--json"]).spawn();
    wait_until(Duration::from_secs(10), "a to start", || {
        t.work.join("a.started").exists()
    });
    sigint(&child);
    let (code, stdout, stderr, took) = wait_limited(child, Duration::from_secs(15));
    assert_eq!(code, 130, "stderr: {stderr}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    serde_json::from_slice(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&stdout)))
}

#[test]
fn sigint_lets_running_commands_finish_and_schedules_nothing_new() {
    let t = TestContext::new();
    let rep = interrupt_during_quick_command(&t);
    assert_eq!(rep["interrupted"], true, "{rep:#}");
    assert_eq!(status(&rep, "./slow b 1"), "not_run", "{rep:#}");
    assert!(!t.work.join("b.started").exists(), "b was never started");
    assert_eq!(t.count(), 1);
    // a finished within the grace period and was stored normally.
    t.cachectl(&["verify"]).assert().code(0);
    t.hit(t.run(&["--", "./slow", "a", "1"])).success();
}

#[test]
fn sigint_reports_a_command_finished_in_grace_as_stored() {
    let t = TestContext::new();
    let rep = interrupt_during_quick_command(&t);
    let a = row(&rep, "./slow a 1");
    assert_eq!(a["status"], "stored", "{rep:#}");
    assert_eq!(a["error"], Value::Null, "{rep:#}");
    assert_eq!(counts(&rep), [0, 1, 0, 1, 0], "{rep:#}");
}

/// `priority` (issue 16): with `-j N`, the highest-priority misses start first; ties keep the
/// manifest's order; cached commands are skipped whatever their priority.
#[test]
fn higher_priority_misses_start_first() {
    let t = TestContext::new();
    let log = t.root.join("started");
    t.counted(
        "job",
        &format!("echo \"$1\" >> '{}'; sleep 0.2", log.display()),
    );
    let manifest = "\
[[command]]\nrun = \"./job low\"\npriority = -1\n\n\
[[command]]\nrun = \"./job plain-a\"\n\n\
[[command]]\nrun = \"./job high\"\npriority = 10\n\n\
[[command]]\nrun = \"./job plain-b\"\n\n\
[[command]]\nrun = \"./job mid\"\npriority = 5\n\n\
[[command]]\nrun = \"./job cached\"\npriority = 100\n";
    t.write("warm.toml", manifest);
    t.miss(t.run(&["--", "./job", "cached"])).success();
    fs::remove_file(&log).unwrap();

    // --dry-run shows the priorities.
    let a = warm(&t, &["warm.toml", "--dry-run"]).assert().success();
    let out = String::from_utf8(stdout_of(&a)).unwrap();
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.contains("./job"))
        .map(|l| l.split('┆').map(str::trim).collect())
        .collect();
    let shown: Vec<(&str, &str)> = rows.iter().map(|r| (r[1], r[2])).collect();
    assert_eq!(
        shown,
        [
            ("-1", "./job low"),
            ("0", "./job plain-a"),
            ("10", "./job high"),
            ("0", "./job plain-b"),
            ("5", "./job mid"),
            ("100", "./job cached")
        ],
        "{out}"
    );

    // One at a time: highest first, ties as given.
    let (code, rep) = warm_json(&t, &["warm.toml", "-j", "1"]);
    assert_eq!(code, 0, "{rep:#}");
    let started = fs::read_to_string(&log).unwrap();
    assert_eq!(
        started.lines().collect::<Vec<_>>(),
        ["high", "mid", "plain-a", "plain-b", "low"]
    );
    assert_eq!(row(&rep, "./job high")["priority"], 10);
    assert_eq!(row(&rep, "./job plain-a")["priority"], 0);

    // Two at a time: the two highest start first.
    t.cachectl(&["invalidate", "--all"]).assert().success();
    fs::remove_file(&log).unwrap();
    let (code, _) = warm_json(&t, &["warm.toml", "-j", "2"]);
    assert_eq!(code, 0);
    let started = fs::read_to_string(&log).unwrap();
    let mut first_two: Vec<&str> = started.lines().take(2).collect();
    first_two.sort();
    assert_eq!(first_two, ["cached", "high"], "{started}");
}

#[test]
fn from_history_starts_the_longest_runs_first() {
    let t = TestContext::new();
    let log = t.root.join("started");
    t.counted(
        "job",
        &format!("echo \"$1\" >> '{}'; sleep \"$2\"", log.display()),
    );
    t.write("input", "1");
    for (name, secs) in [("quick", "0"), ("slow", "0.4"), ("middle", "0.2")] {
        t.miss(t.run(&["-i", "input", "--", "./job", name, secs]))
            .success();
    }
    // The input changed: all three are misses again.
    t.write("input", "2");
    fs::remove_file(&log).unwrap();
    let (code, rep) = warm_json(&t, &["--from-history", "-j", "1"]);
    assert_eq!(code, 0, "{rep:#}");
    let started = fs::read_to_string(&log).unwrap();
    assert_eq!(
        started.lines().collect::<Vec<_>>(),
        ["slow", "middle", "quick"]
    );
    assert!(
        row(&rep, "./job slow 0.4")["priority"].as_u64().unwrap() >= 400,
        "{rep:#}"
    );
}
