//! `--trace auto` (issue 14): the key is what the command was seen to read, the entry restores
//! what it was seen to write, with no `-i` or `-o`.
//!
//! Files a run reads must be older than the moment it starts (a file changed since may have
//! changed while it ran, and such a run is not stored): tests that write inputs wait a few
//! clock ticks ([`settle`]) before a run that must store.

use crate::util::*;
use std::fs;
use std::time::Duration;

/// Let the kernel's coarse clock, which stamps files, move past the files just written.
fn settle() {
    std::thread::sleep(Duration::from_millis(25));
}

fn auto<'a>(rest: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--trace", "auto"];
    a.extend_from_slice(rest);
    a
}

#[test]
fn the_headline_an_undeclared_input_change_misses() {
    let t = TestContext::new();
    t.write("img.png", "picture one\n");
    t.counted(
        "resize",
        "mkdir -p thumbs; tr a-z A-Z < \"$1\" > thumbs/small.png; echo resized \"$1\"",
    );
    settle();
    let run = || t.run(&auto(&["--", "./resize", "img.png"]));
    t.miss(run()).success().stdout("resized img.png\n");
    assert_eq!(t.read("thumbs/small.png"), b"PICTURE ONE\n");

    // A hit restores what the command wrote, as it left it.
    fs::remove_dir_all(t.work.join("thumbs")).unwrap();
    t.hit(run()).success().stdout("resized img.png\n");
    assert_eq!(t.read("thumbs/small.png"), b"PICTURE ONE\n");

    // The picture the command reads changed: a miss, and the new result.
    t.write("img.png", "another picture\n");
    settle();
    t.miss(run()).success();
    assert_eq!(t.read("thumbs/small.png"), b"ANOTHER PICTURE\n");

    // Both states are remembered: A/B/A/B all hit.
    for (content, thumb) in [
        ("picture one\n", "PICTURE ONE\n"),
        ("another picture\n", "ANOTHER PICTURE\n"),
        ("picture one\n", "PICTURE ONE\n"),
    ] {
        t.write("img.png", content);
        settle();
        t.hit(run()).success();
        assert_eq!(t.read("thumbs/small.png"), thumb.as_bytes());
    }
    // (Two entries, one manifest.)
    assert_eq!(t.cache_files("mf-v1").len(), 1);
}

#[test]
fn absent_paths_listings_and_probes_are_keyed() {
    let t = TestContext::new();
    t.write("data/a", "");
    t.write("conf", "x");
    t.counted(
        "build",
        "test -e include/extra.h && echo has-extra; ls data; test -f conf && echo conf",
    );
    settle();
    let run = || t.run(&auto(&["--", "./build"]));
    t.miss(run()).success().stdout("a\nconf\n");
    t.hit(run()).success().stdout("a\nconf\n");

    // A path probed and found absent now exists.
    t.write("include/extra.h", "");
    settle();
    t.miss(run()).success().stdout("has-extra\na\nconf\n");
    fs::remove_file(t.work.join("include/extra.h")).unwrap();
    t.hit(run()).success().stdout("a\nconf\n");

    // A new file in a listed directory.
    t.write("data/b", "");
    settle();
    let a = t
        .cachectl(&["explain", "--trace", "auto", "--", "./build"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&stdout_of(&a)).into_owned();
    assert!(
        out.contains("miss: input data changed (new entry b)"),
        "{out}"
    );
    t.miss(run()).success().stdout("a\nb\nconf\n");

    // A probed file is keyed by its size and mtime, not its content: a rewrite with other
    // content of the same size misses (a new mtime), the same content with its old mtime hits.
    let before = fs::metadata(t.work.join("conf"))
        .unwrap()
        .modified()
        .unwrap();
    t.write("conf", "y");
    settle();
    t.miss(run()).success();
    t.write("conf", "z");
    fs::File::options()
        .write(true)
        .open(t.work.join("conf"))
        .unwrap()
        .set_modified(before)
        .unwrap();
    settle();
    t.hit(run()).success().stdout("a\nb\nconf\n");
}

#[test]
fn the_trace_mode_is_part_of_the_key() {
    let t = TestContext::new();
    t.write("in.txt", "v1\n");
    t.counted("show", "cat in.txt");
    settle();
    t.miss(t.run(&["--trace", "off", "--", "./show"]))
        .success()
        .stdout("v1\n");
    // An `off` entry does not serve an `auto` lookup: in.txt has changed, and auto sees it.
    t.write("in.txt", "v2\n");
    settle();
    t.miss(t.run(&auto(&["--", "./show"])))
        .success()
        .stdout("v2\n");
    // `check` shares the declared-only key of `off` (a hit of the old result, as documented).
    t.hit(t.run(&["--trace", "check", "--", "./show"]))
        .success()
        .stdout("v1\n");
    t.hit(t.run(&auto(&["--", "./show"])))
        .success()
        .stdout("v2\n");
}

#[test]
fn a_file_read_and_rewritten_is_keyed_by_what_was_read() {
    let t = TestContext::new();
    t.write("f", "a\n");
    settle();
    let run = || {
        t.run(&auto(&[
            "--",
            "sh",
            "-c",
            "sed -i s/a/b/ f; echo run >> ../count",
        ]))
    };
    t.miss(run()).success();
    assert_eq!(t.read("f"), b"b\n");
    // f now holds what the run wrote, not what it read: the command runs on it again.
    settle();
    t.miss(run()).success();
    assert_eq!(t.read("f"), b"b\n");
    t.hit(run()).success();
    // Back to what the first run read: its entry puts back what it wrote.
    t.write("f", "a\n");
    settle();
    t.hit(run()).success();
    assert_eq!(t.read("f"), b"b\n");
}

#[test]
fn a_path_the_command_removes_must_be_absent_to_hit() {
    let t = TestContext::new();
    t.write("stale.o", "old");
    t.counted("clean", "rm -f stale.o");
    settle();
    let run = || t.run(&auto(&["--", "./clean"]));
    t.miss(run()).success();
    assert!(!t.work.join("stale.o").exists());
    t.hit(run()).success();
    // A hit cannot remove it: back, it makes the command run again.
    t.write("stale.o", "old");
    settle();
    t.miss(run()).success();
    assert!(!t.work.join("stale.o").exists());
}

#[test]
fn an_input_changed_while_the_command_ran_is_not_stored() {
    let t = TestContext::new();
    t.write("in.txt", "before\n");
    t.counted(
        "slow",
        "cat in.txt; : > started; while [ ! -e go ]; do sleep 0.01; done",
    );
    settle();
    let (child, _) = t.run(&auto(&["-v", "--", "./slow"])).spawn();
    wait_until(Duration::from_secs(20), "the command starts", || {
        t.work.join("started").exists()
    });
    // Written by someone else while the command runs.
    t.write("in.txt", "after\n");
    t.write("go", "");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not stored (a file it read changed while it ran:"),
        "{err}"
    );
    assert!(t.cache_files("mf-v1").is_empty());
    let stats = t.cachectl(&["stats", "--json"]).output();
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(
        v["uncacheable"]["traced_input_changed"],
        1,
        "{}",
        String::from_utf8_lossy(&stats.stdout)
    );
}

#[test]
fn under_another_tracer_an_auto_run_is_not_stored() {
    let t = TestContext::new();
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true, but strace is not installed (apt-get install strace)"
        );
        eprintln!("strace not installed: skipped");
        return;
    }
    t.write("in.txt", "x");
    t.counted("r", "cat in.txt; exit 3");
    settle();
    let cachectl = env!("CARGO_BIN_EXE_cachectl");
    let strace = |t: &TestContext| {
        t.cachectl(&[]).program(
            "strace",
            &[
                "-f",
                "-o",
                "/dev/null",
                cachectl,
                "run",
                "--cache-failures",
                "--trace",
                "auto",
                "--",
                "./r",
            ],
        )
    };
    let a = t.miss(strace(&t)).code(3).stdout("x");
    let err = stderr_of(&a);
    assert_eq!(warnings(&err).len(), 1, "{err}");
    assert!(err.contains("--trace off"), "{err}");
    // Not stored: the next run (traced) runs it again, and stores it.
    t.miss(t.run(&auto(&["--cache-failures", "--", "./r"])))
        .code(3);
    t.hit(t.run(&auto(&["--cache-failures", "--", "./r"])))
        .code(3);
    // An existing entry is served under strace too.
    t.hit(strace(&t)).code(3).stdout("x");
}

#[test]
fn no_cwd_entries_are_shared_between_checkouts() {
    let t = TestContext::new();
    let one = t.root.join("one");
    let two = t.root.join("two");
    for dir in [&one, &two] {
        write_file(&dir.join("src/main.txt"), b"same\n");
        t.counted_in(
            dir,
            "build",
            "mkdir -p out; cp src/main.txt out/main.bin; echo built",
        );
    }
    settle();
    let run = |dir: &std::path::Path| t.run(&auto(&["--no-cwd", "--", "./build"])).dir(dir);
    t.miss(run(&one)).success().stdout("built\n");
    t.hit(run(&two)).success().stdout("built\n");
    assert_eq!(fs::read(two.join("out/main.bin")).unwrap(), b"same\n");
    // Relative paths: a change in the second checkout misses there.
    write_file(&two.join("src/main.txt"), b"other\n");
    settle();
    t.miss(run(&two)).success();
    assert_eq!(fs::read(two.join("out/main.bin")).unwrap(), b"other\n");
}

#[test]
fn trace_ignore_leaves_paths_out_of_the_key() {
    let t = TestContext::new();
    t.write(
        "cachectl.toml",
        "trace_ignore = [\"*.log\", \"notes/**\"]\n",
    );
    t.write("build.log", "one");
    t.write("notes/a/b.txt", "one");
    t.write("in.txt", "one");
    t.counted(
        "r",
        "cat build.log notes/a/b.txt in.txt > /dev/null; echo ok",
    );
    settle();
    let run = || t.run(&auto(&["--", "./r"]));
    t.miss(run()).success();
    t.write("build.log", "two");
    t.write("notes/a/b.txt", "two");
    settle();
    t.hit(run()).success();
    t.write("in.txt", "two");
    settle();
    t.miss(run()).success();
    // A bad pattern names its file and line.
    t.write("cachectl.toml", "\ntrace_ignore = [\"a[\"]\n");
    let a = t.run(&auto(&["--", "./r"])).assert().code(2);
    let err = stderr_of(&a);
    assert!(
        err.contains("cachectl.toml:2") && err.contains("trace_ignore"),
        "{err}"
    );
}

#[test]
fn explain_and_show_name_the_observed_inputs() {
    let t = TestContext::new();
    t.write("settings.conf", "size=10\n");
    t.counted("resize", "cat settings.conf > /dev/null; echo done");
    settle();
    t.miss(t.run(&auto(&["--", "./resize"]))).success();
    let a = t
        .cachectl(&["explain", "--trace", "auto", "--", "./resize"])
        .assert()
        .success();
    assert!(
        stdout_of(&a).starts_with(b"Command: ./resize"),
        "{}",
        summary(&a)
    );
    assert!(String::from_utf8_lossy(&stdout_of(&a)).contains("hit (entry "));
    t.write("settings.conf", "size=20\n");
    let a = t
        .cachectl(&["explain", "--trace", "auto", "--", "./resize"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&stdout_of(&a)).into_owned();
    assert!(
        out.contains("miss: input settings.conf changed (content differs)"),
        "{out}"
    );
    // -v says the same on a miss.
    settle();
    let a = t.miss(t.run(&auto(&["-v", "--", "./resize"]))).success();
    assert!(stderr_of(&a).contains("miss"), "{}", stderr_of(&a));

    let ls = t.cachectl(&["ls", "--json"]).output();
    let entries: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let key = entries[0]["key"].as_str().unwrap().to_owned();
    let a = t.cachectl(&["show", &key]).assert().success();
    let out = String::from_utf8_lossy(&stdout_of(&a)).into_owned();
    assert!(out.contains("observed input(s) (--trace auto)"), "{out}");
    assert!(out.contains("settings.conf"), "{out}");
    let a = t.cachectl(&["show", "--json", &key]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&stdout_of(&a)).unwrap();
    let observed = &v["components"]["observed"];
    assert!(
        observed["settings.conf"]["content"].is_string(),
        "{observed:#}"
    );
    assert_eq!(observed["resize"]["kind"], "file");
    assert_eq!(observed["resize"]["exec"], true);
}

#[test]
fn writes_outside_the_working_directory_are_side_effects() {
    let t = TestContext::new();
    // The test's directories are under the temp dir, whose writes are not side effects: move
    // the temp dir elsewhere.
    let tmp = t.root.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    let log = t.root.join("audit.log");
    t.counted("r", &format!("echo note >> '{}'; echo ok", log.display()));
    settle();
    let run = || t.run(&auto(&["--", "./r"])).env("TMPDIR", &tmp);
    t.miss(run()).success();
    // Not part of the key (a hit does not write it, and it does not stop one).
    t.hit(run()).success().stdout("ok\n");
    assert_eq!(fs::read_to_string(&log).unwrap(), "note\n");
    let ls = t.cachectl(&["ls", "--json"]).output();
    let entries: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let key = entries[0]["key"].as_str().unwrap().to_owned();
    let a = t.cachectl(&["show", &key]).assert().success();
    let out = String::from_utf8_lossy(&stdout_of(&a)).into_owned();
    assert!(out.contains("Side effects"), "{out}");
    assert!(out.contains(&log.display().to_string()), "{out}");
}

#[test]
fn gc_keeps_manifests_while_they_can_count_and_verify_checks_them() {
    let t = TestContext::new();
    t.write("in.txt", "one");
    t.counted("r", "cat in.txt");
    settle();
    let run = || t.run(&auto(&["--", "./r"]));
    t.miss(run()).success();
    t.write("in.txt", "two");
    settle();
    t.miss(run()).success();
    let manifest = t.cache_files("mf-v1");
    assert_eq!(manifest.len(), 1);
    let a = t.cachectl(&["verify", "--json"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&stdout_of(&a)).unwrap();
    assert_eq!(v["manifests_checked"], 1, "{v}");

    // gc evicts an entry: the candidate stays, so the next run that matches it is a hit lost
    // to eviction (the other state still hits).
    t.write("in.txt", "one");
    settle();
    t.cachectl(&["gc", "--max-size", "1"]).assert().success();
    assert!(t.cache_files("ac-v1").is_empty());
    t.miss(run()).success().stdout("one");
    let a = t.cachectl(&["stats", "--json"]).assert().success();
    let s: serde_json::Value = serde_json::from_slice(&stdout_of(&a)).unwrap();
    assert_eq!(
        s["lost_to_eviction"],
        serde_json::json!({"max_size": 1}),
        "{s:#}"
    );
    t.hit(run()).success().stdout("one");

    // Nothing left: the manifest stays as long as gc remembers evictions (90 days), then goes.
    t.cachectl(&["invalidate", "--all"]).assert().success();
    t.cachectl(&["gc"]).assert().success();
    assert_eq!(t.cache_files("mf-v1").len(), 1);
    let later = now_ms() + 91 * 24 * 3_600_000;
    t.cachectl(&["gc"]).now(later).assert().success();
    assert!(t.cache_files("mf-v1").is_empty());

    // A damaged manifest is found, and --fix removes it; the command then runs and stores.
    t.miss(run()).success();
    let manifest = t.cache_files("mf-v1");
    flip_byte(&manifest[0], -3);
    let a = t.cachectl(&["verify"]).assert().code(1);
    assert!(
        stdout_of(&a)
            .windows(b"manifest does not decode".len())
            .any(|w| w == b"manifest does not decode"),
        "{}",
        summary(&a)
    );
    t.cachectl(&["verify", "--fix"]).assert().success();
    assert!(t.cache_files("mf-v1").is_empty());
    t.miss(run()).success();
    t.hit(run()).success();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn invalidate_input_selects_what_an_auto_run_read() {
    let t = TestContext::new();
    t.write("src/config.h", "#define X 1\n");
    t.write("other.txt", "");
    t.counted("r", "cat src/config.h");
    t.counted("s", "cat other.txt");
    settle();
    t.miss(t.run(&auto(&["--", "./r"]))).success();
    t.miss(t.run(&auto(&["--", "./s"]))).success();
    let a = t
        .cachectl(&["invalidate", "--input", "src/config.h", "--json"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&stdout_of(&a)).unwrap();
    assert_eq!(v["entries_removed"], 1, "{v}");
    t.miss(t.run(&auto(&["--", "./r"]))).success();
    t.hit(t.run(&auto(&["--", "./s"]))).success();
}

/// `cachectl run -- make` whose recipes run `cachectl run -- gcc`: the inner runs are traced
/// by the outer tracer (one process has one tracer) and stored as if they ran alone.
#[test]
fn nested_runs_are_traced_and_stored() {
    let t = TestContext::new();
    t.write("a.txt", "a\n");
    t.write("b.txt", "b\n");
    t.counted("step", "tr a-z A-Z < \"$1\" > \"$1.out\"; echo \"step $1\"");
    let cachectl = env!("CARGO_BIN_EXE_cachectl");
    t.script(
        "all",
        &format!("for f in a.txt b.txt; do '{cachectl}' run --trace auto -- ./step $f; done"),
    );
    settle();
    let outer = || t.run(&auto(&["--", "./all"]));
    let a = outer()
        .assert()
        .success()
        .stdout("step a.txt\nstep b.txt\n");
    assert_eq!(t.count(), 2, "{}", summary(&a));
    assert!(warnings(&stderr_of(&a)).is_empty(), "{}", stderr_of(&a));
    assert_eq!(t.read("b.txt.out"), b"B\n");
    // The inner entries were stored: run alone, each step hits.
    t.hit(t.run(&auto(&["--", "./step", "a.txt"])))
        .success()
        .stdout("step a.txt\n");
    // The outer one too; after an input of one step changes, the outer runs again and only
    // that step's command runs.
    t.hit(outer()).success();
    t.write("b.txt", "bee\n");
    settle();
    let a = outer().assert().success();
    assert_eq!(t.count(), 3, "{}", summary(&a));
    assert_eq!(t.read("b.txt.out"), b"BEE\n");
}

/// With nothing set, a run is traced: `auto` is the default.
#[test]
fn auto_is_the_default() {
    let t = TestContext::new();
    t.write("in.txt", "one\n");
    t.counted("show", "cat in.txt");
    settle();
    let run = || t.run(&["--", "./show"]).env_remove("CACHECTL_TRACE");
    t.miss(run()).success().stdout("one\n");
    t.hit(run()).success().stdout("one\n");
    t.write("in.txt", "two\n");
    settle();
    t.miss(run()).success().stdout("two\n");
    let a = t
        .cachectl(&["config", "--", "./show"])
        .env_remove("CACHECTL_TRACE")
        .assert()
        .success();
    let out = String::from_utf8_lossy(&stdout_of(&a)).into_owned();
    assert!(
        out.lines()
            .any(|l| l.contains("trace") && l.contains("auto")),
        "{out}"
    );
}

/// A command that talks to something outside it (a daemon, the network) is stored, and `show`,
/// `-v` and `check` say that its answers are not keyed.
#[test]
fn what_a_command_connects_to_is_named() {
    let t = TestContext::new();
    t.counted(
        "ask",
        "bash -c '(exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null; echo asked'",
    );
    settle();
    let a = t.miss(t.run(&auto(&["-v", "--", "./ask"]))).success();
    assert!(
        stderr_of(&a).contains(
            "cachectl: talked to something outside the command (its answers are not keyed): network"
        ),
        "{}",
        stderr_of(&a)
    );
    t.hit(t.run(&auto(&["--", "./ask"])))
        .success()
        .stdout("asked\n");
    let ls = t.cachectl(&["ls", "--json"]).output();
    let entries: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let key = entries[0]["key"].as_str().unwrap().to_owned();
    let out =
        String::from_utf8_lossy(&stdout_of(&t.cachectl(&["show", &key]).assert())).into_owned();
    assert!(
        out.contains("Talked to") && out.contains("network"),
        "{out}"
    );
    let a = t
        .miss(t.run(&["--trace", "check", "--force", "--", "./ask"]))
        .success();
    assert!(
        stderr_of(&a).contains("check: talked to something outside the command"),
        "{}",
        stderr_of(&a)
    );
}

/// A directory the command looked for and did not find, made by someone else while it ran:
/// the run saw it absent, the key would say it is there, so the run is not stored.
#[test]
fn a_directory_that_appears_while_the_command_runs_is_a_race() {
    let t = TestContext::new();
    t.counted(
        "look",
        "test -d extra && echo has-extra; : > started; while [ ! -e go ]; do sleep 0.01; done",
    );
    settle();
    let (child, _) = t.run(&auto(&["-v", "--", "./look"])).spawn();
    wait_until(Duration::from_secs(20), "the command starts", || {
        t.work.join("started").exists()
    });
    fs::create_dir(t.work.join("extra")).unwrap();
    t.write("go", "");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not stored (a file it read changed while it ran"),
        "{err}"
    );
    // The next run sees it, and is stored.
    t.miss(t.run(&auto(&["--", "./look"])))
        .success()
        .stdout("has-extra\n");
}
