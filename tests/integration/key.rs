//! Hit or miss for each component of the key, proven by counting real runs.

use crate::util::*;
use std::time::Duration;

#[test]
fn same_command_twice_is_a_hit() {
    let t = TestContext::new();
    t.counted("cmd", "echo hello");
    t.miss(t.run(&["--", "./cmd"])).success().stdout("hello\n");
    t.hit(t.run(&["--", "./cmd"])).success().stdout("hello\n");
}

#[test]
fn argv_boundaries_are_keyed() {
    let t = TestContext::new();
    t.counted("cmd", r#"printf '<%s>' "$@""#);
    t.miss(t.run(&["--", "./cmd", "a b"])).stdout("<a b>");
    t.miss(t.run(&["--", "./cmd", "a", "b"])).stdout("<a><b>");
    t.hit(t.run(&["--", "./cmd", "a b"])).stdout("<a b>");
    t.hit(t.run(&["--", "./cmd", "a", "b"])).stdout("<a><b>");
    t.miss(t.run(&["--", "./cmd", ""])).stdout("<>");
    t.miss(t.run(&["--", "./cmd"])).stdout("<>");
    t.miss(t.run(&["--", "./cmd", "ab"])).stdout("<ab>");
}

#[test]
fn input_file_content_change_misses() {
    let t = TestContext::new();
    t.counted("cmd", "cat in.txt");
    t.write("in.txt", "one");
    t.miss(t.run(&["-i", "in.txt", "--", "./cmd"]))
        .stdout("one");
    t.hit(t.run(&["-i", "in.txt", "--", "./cmd"])).stdout("one");
    t.write("in.txt", "two");
    t.miss(t.run(&["-i", "in.txt", "--", "./cmd"]))
        .stdout("two");
    t.write("in.txt", "one");
    t.hit(t.run(&["-i", "in.txt", "--", "./cmd"])).stdout("one");
}

#[test]
fn input_dir_content_change_and_new_file_miss() {
    let t = TestContext::new();
    t.counted("cmd", "cat src/*/*");
    t.write("src/a/x.txt", "x");
    let run = || t.run(&["-i", "src", "--", "./cmd"]);
    t.miss(run()).stdout("x");
    t.hit(run());
    t.write("src/a/x.txt", "X");
    t.miss(run()).stdout("X");
    t.write("src/b/new.txt", "n");
    t.miss(run()).stdout("Xn");
    t.hit(run()).stdout("Xn");
}

#[test]
fn input_glob_match_set_change_misses() {
    let t = TestContext::new();
    t.counted("cmd", "cat *.txt");
    t.write("a.txt", "a");
    let run = || t.run(&["-i", "*.txt", "--", "./cmd"]);
    t.miss(run()).stdout("a");
    t.write("notes.md", "not matched");
    t.hit(run()).stdout("a");
    t.write("b.txt", "b");
    t.miss(run()).stdout("ab");
    std::fs::remove_file(t.work.join("a.txt")).unwrap();
    t.miss(run()).stdout("b");
}

#[test]
fn missing_input_is_keyed_as_absent_then_created() {
    let t = TestContext::new();
    t.counted("cmd", "cat later.txt 2>/dev/null; echo done");
    let run = || t.run(&["-i", "later.txt", "--", "./cmd"]);
    // Missing is not an error: the command runs, cachectl says nothing.
    t.miss(run()).success().stdout("done\n").stderr("");
    t.hit(run()).success().stdout("done\n");
    t.write("later.txt", "now ");
    t.miss(run()).stdout("now done\n");
}

#[test]
fn input_exec_bit_change_misses() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    let f = t.write("tool.sh", "true");
    let run = || t.run(&["-i", "tool.sh", "--", "./cmd"]);
    t.miss(run());
    t.hit(run());
    set_mode(&f, 0o755);
    t.miss(run());
    t.hit(run());
}

#[test]
fn env_value_change_misses() {
    let t = TestContext::new();
    t.counted("cmd", r#"echo "[$CCT_VAR]""#);
    let run = |v: &str| t.run(&["-e", "CCT_VAR", "--", "./cmd"]).env("CCT_VAR", v);
    t.miss(run("1")).stdout("[1]\n");
    t.hit(run("1")).stdout("[1]\n");
    t.miss(run("2")).stdout("[2]\n");
}

#[test]
fn env_unset_differs_from_empty() {
    let t = TestContext::new();
    t.counted("cmd", r#"echo "${CCT_VAR-unset}""#);
    let run = || t.run(&["-e", "CCT_VAR", "--", "./cmd"]);
    t.miss(run().env_remove("CCT_VAR")).stdout("unset\n");
    t.miss(run().env("CCT_VAR", "")).stdout("\n");
    t.hit(run().env_remove("CCT_VAR")).stdout("unset\n");
    t.hit(run().env("CCT_VAR", "")).stdout("\n");
}

#[test]
fn undeclared_env_is_not_keyed() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.miss(t.run(&["--", "./cmd"]).env("CCT_OTHER", "1"));
    t.hit(t.run(&["--", "./cmd"]).env("CCT_OTHER", "2"));
}

#[test]
fn env_glob_is_keyed() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    let run = || t.run(&["-e", "CCTG_*", "--", "./cmd"]);
    t.miss(run().env("CCTG_A", "1"));
    t.hit(run().env("CCTG_A", "1").env("CCTX_B", "1"));
    t.miss(run().env("CCTG_A", "2"));
    t.miss(run().env("CCTG_A", "2").env("CCTG_B", "1"));
    t.hit(run().env("CCTG_A", "2").env("CCTG_B", "1"));
}

#[test]
fn cwd_is_keyed_by_default() {
    let t = TestContext::new();
    let (a, b) = (t.work.join("a"), t.work.join("b"));
    t.counted_in(&a, "cmd", "echo ok");
    t.counted_in(&b, "cmd", "echo ok");
    t.miss(t.run(&["--", "./cmd"]).dir(&a));
    t.miss(t.run(&["--", "./cmd"]).dir(&b));
    t.hit(t.run(&["--", "./cmd"]).dir(&a));
}

#[test]
fn no_cwd_shares_entries_across_checkouts() {
    let t = TestContext::new();
    let (a, b) = (t.work.join("checkout1"), t.work.join("checkout2"));
    for d in [&a, &b] {
        t.counted_in(d, "cmd", "cat src/in.txt");
        write_file(&d.join("src/in.txt"), b"same");
    }
    let run = |d: &std::path::Path| t.run(&["--no-cwd", "-i", "src", "--", "./cmd"]).dir(d);
    t.miss(run(&a)).stdout("same");
    t.hit(run(&b)).stdout("same");
    // The relative inputs still count: a different file in checkout2 misses.
    write_file(&b.join("src/in.txt"), b"diff");
    t.miss(run(&b)).stdout("diff");
}

#[test]
fn stdin_content_is_keyed_and_fed_to_the_command() {
    let t = TestContext::new();
    t.counted("cmd", "tr a-z A-Z");
    let run = |s: &str| t.run(&["--stdin", "--", "./cmd"]).stdin(s);
    t.miss(run("abc")).stdout("ABC");
    t.hit(run("abc")).stdout("ABC");
    t.miss(run("xyz")).stdout("XYZ");
    t.miss(run("")).stdout("");
}

#[test]
fn without_stdin_flag_command_reads_dev_null() {
    let t = TestContext::new();
    t.counted("cmd", "cat; echo end");
    t.miss(t.run(&["--", "./cmd"]).stdin("secret"))
        .stdout("end\n");
    t.hit(t.run(&["--", "./cmd"]).stdin("other"))
        .stdout("end\n");
}

#[test]
fn executable_content_change_misses() {
    let t = TestContext::new();
    t.counted("cmd", "echo same");
    t.miss(t.run(&["--", "./cmd"])).stdout("same\n");
    t.counted("cmd", "echo same # v2");
    t.miss(t.run(&["--", "./cmd"])).stdout("same\n");
    t.hit(t.run(&["--", "./cmd"])).stdout("same\n");
}

#[test]
fn executable_found_through_path_is_keyed_by_content() {
    let t = TestContext::new();
    let bin = t.root.join("bin");
    t.counted_in(&bin, "cct-tool", "echo tool");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = || t.run(&["--", "cct-tool"]).env("PATH", &path);
    t.miss(run()).stdout("tool\n");
    t.hit(run());
    t.counted_in(&bin, "cct-tool", "echo tool # changed");
    t.miss(run()).stdout("tool\n");
}

#[test]
fn salt_is_keyed() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.miss(t.run(&["--salt", "1", "--", "./cmd"]));
    t.miss(t.run(&["--salt", "2", "--", "./cmd"]));
    t.miss(t.run(&["--", "./cmd"]));
    t.hit(t.run(&["--salt", "1", "--", "./cmd"]));
}

#[test]
fn namespace_is_keyed() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.miss(t.run(&["-n", "one", "--", "./cmd"]));
    t.miss(t.run(&["--namespace", "two", "--", "./cmd"]));
    t.hit(t.run(&["-n", "one", "--", "./cmd"]));
}

#[test]
fn tags_and_ttl_are_not_keyed() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.miss(t.run(&["-t", "a", "--", "./cmd"]));
    t.hit(t.run(&["-t", "b", "--tag", "c", "--", "./cmd"]));
    t.hit(t.run(&["--ttl", "1h", "--", "./cmd"]));
    t.hit(t.run(&["--ttl", "2d", "--stale", "1h", "--", "./cmd"]));
    t.hit(t.run(&["--", "./cmd"]));
}

#[test]
fn verbose_reports_miss_then_hit_with_same_key() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    let miss = stderr_of(&t.miss(t.run(&["-v", "--", "./cmd"])));
    let hit = stderr_of(&t.hit(t.run(&["--verbose", "--", "./cmd"])));
    let key = miss
        .trim()
        .strip_prefix("cachectl: miss ")
        .unwrap_or_else(|| panic!("{miss}"));
    assert!(
        key.len() == 12 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        "{miss}"
    );
    assert!(
        hit.starts_with(&format!("cachectl: hit {key} (saved ")) && hit.trim_end().ends_with(')'),
        "{hit}"
    );
}

#[test]
fn explain_prints_components_and_verdict() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.write("in.txt", "x");
    let run = || t.run(&["--explain", "-i", "in.txt", "-e", "CCT_E", "--", "./cmd"]);
    let miss = stderr_of(&t.miss(run()).stdout("ok\n"));
    let hit = stderr_of(&t.hit(run()).stdout("ok\n"));
    assert!(miss.contains("miss"), "{miss}");
    assert!(hit.contains("hit") && !hit.contains("miss"), "{hit}");
    for part in [
        "argv", "cwd", "exe", "env", "inputs", "stdin", "in.txt", "CCT_E",
    ] {
        assert!(miss.contains(part), "no {part} in\n{miss}");
    }
}

#[test]
fn large_stdin_is_keyed_and_fed_to_the_command() {
    let t = TestContext::new();
    t.counted("cmd", "wc -c | tr -d ' '");
    let data = binary_data(1024 * 1024);
    let mut other = data.clone();
    other[512 * 1024] ^= 1;
    let run = |d: &Vec<u8>| t.run(&["--stdin", "--", "./cmd"]).stdin(d.clone());
    t.miss(run(&data)).stdout("1048576\n");
    t.hit(run(&data)).stdout("1048576\n");
    t.miss(run(&other)).stdout("1048576\n");
}

#[test]
fn recursive_glob_input() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.write("src/a/b/x.rs", "x");
    t.write("src/a/notes.txt", "n");
    let run = || t.run(&["-i", "src/**/*.rs", "--", "./cmd"]);
    t.miss(run());
    t.write("src/a/notes.txt", "changed, not matched");
    t.hit(run());
    t.write("src/a/b/x.rs", "y");
    t.miss(run());
    t.write("src/c/new.rs", "new");
    t.miss(run());
}

#[test]
fn declared_outputs_are_keyed() {
    let t = TestContext::new();
    t.counted("cmd", "echo x > out.txt");
    t.miss(t.run(&["--", "./cmd"]));
    // An entry without out.txt cannot satisfy a run that expects out.txt restored.
    t.miss(t.run(&["-o", "out.txt", "--", "./cmd"]));
    t.hit(t.run(&["-o", "out.txt", "--", "./cmd"]));
}

/// One policy for both walks (issue 12): an input that cannot be read (a directory without
/// read or search permission) is never left out of the key. The run warns once, runs the
/// command uncached, and stores nothing. Runs as `nobody` when the tests run as root (root
/// reads everything), else as the current user. Before the fix the glob walk skipped the
/// unreadable directory silently: the run was stored, and a changed `private/b.h` still hit.
#[test]
fn an_unreadable_input_is_never_left_out_of_the_key() {
    use std::os::unix::process::CommandExt;
    let t = TestContext::new();
    let as_root = t.is_root();
    let nobody = 65534;
    t.write("src/a.h", "a");
    t.write("src/private/b.h", "b");
    t.write("src/sealed/deep/c.h", "c");
    t.counted("cmd", "cat src/a.h");
    // Readable by the unprivileged user: the tree, and a cache and counter of its own.
    set_mode(&t.root, 0o755);
    let cache = t.root.join("own-cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(&t.counter, "").unwrap();
    set_mode(&t.counter, 0o666);
    if as_root {
        std::os::unix::fs::chown(&cache, Some(nobody), Some(nobody)).unwrap();
    }
    set_mode(&t.work.join("src/private"), 0o000); // no listing, no search
    set_mode(&t.work.join("src/sealed"), 0o600); // listing, no search
    let run = |pattern: &str| {
        let mut r = t
            .run(&["-v", "-i", pattern, "--", "./cmd"])
            .env("CACHECTL_DIR", &cache);
        if as_root {
            r.cmd.uid(nobody).gid(nobody);
        }
        r
    };
    for pattern in [
        "src",
        "src/**/*.h",
        "src/*/*.h",
        "src/*/deep/*.h",
        "src/sealed/deep/*.h",
    ] {
        for _ in 0..2 {
            let a = t.miss(run(pattern)).success().stdout("a");
            let err = stderr_of(&a);
            let w = warnings(&err);
            assert_eq!(w.len(), 1, "-i {pattern}: {err}");
            assert!(
                w[0].contains("Permission denied") && w[0].contains("without the cache"),
                "-i {pattern}: {err}"
            );
        }
    }
    // A readable glob next to them is cached as usual.
    t.miss(run("src/*.h")).success();
    t.hit(run("src/*.h")).success();
    set_mode(&t.work.join("src/private"), 0o755);
    set_mode(&t.work.join("src/sealed"), 0o755);
}

/// An input that changes while the command runs (an editor saving during a build): the result
/// may come from the new content, so it must not be stored under the key of the old one.
/// Before the fix it was, and a later run on the old content hit and printed the new one.
#[test]
fn a_result_is_not_stored_when_an_input_changes_while_the_command_runs() {
    let t = TestContext::new();
    t.write("in.txt", "one\n");
    let started = t.root.join("started");
    let go = t.root.join("go");
    t.counted(
        "cmd",
        &format!(
            "touch '{}'\nwhile [ ! -e '{}' ]; do sleep 0.01; done\ncat in.txt",
            started.display(),
            go.display()
        ),
    );
    let run = || t.run(&["-v", "-i", "in.txt", "--", "./cmd"]);
    let (child, _) = run().spawn();
    wait_until(Duration::from_secs(30), "the command to start", || {
        started.exists()
    });
    t.write("in.txt", "two\n");
    std::fs::write(&go, "").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "two\n", "{err}");
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("input in.txt changed while the command ran") && err.contains("not stored"),
        "{err}"
    );
    // Back to the content the first key was computed from: a miss with the right output.
    t.write("in.txt", "one\n");
    t.miss(run()).success().stdout("one\n");
    t.hit(run()).success().stdout("one\n");
    let s = crate::manage::json(t.cachectl(&["stats", "--json"]));
    assert_eq!(s["uncacheable"]["input_changed"], 1, "{s}");

    // Declared outputs among the inputs are written by design, not changes: a first run in a
    // clean tree (`-i . -o out`) is stored, and hits once `out` is gone again.
    t.counted("gen", "mkdir -p out; cat in.txt > out/copy");
    let gen_run = || t.run(&["-i", ".", "-o", "out", "--", "./gen"]);
    t.miss(gen_run()).success();
    std::fs::remove_dir_all(t.work.join("out")).unwrap();
    t.hit(gen_run()).success();
    assert_eq!(t.read("out/copy"), b"one\n");
}
