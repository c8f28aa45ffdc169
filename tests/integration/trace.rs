//! `--trace check` (issue 14, first part): a miss runs under the tracer (ptrace + seccomp) and
//! cachectl names what the command read or wrote that is not declared. The command's own
//! result (output, exit code, signals, processes it leaves running) is unchanged.

use crate::util::*;
use std::fs;
use std::time::Duration;

/// The `check:` lines of a run's stderr.
fn check_lines(a: &assert_cmd::assert::Assert) -> Vec<String> {
    stderr_of(a)
        .lines()
        .filter_map(|l| l.strip_prefix("cachectl: check: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn check_names_undeclared_inputs_and_outputs() {
    let t = TestContext::new();
    t.write("in.txt", "hello\n");
    t.write("data/a", "");
    t.write("data/b", "");
    t.write("declared.txt", "d\n");
    t.counted(
        "build",
        "cat in.txt declared.txt; ls data > /dev/null; test -e missing.h; \
         echo x > out.txt; mkdir -p gen; echo y > gen/f; echo z > declared.out",
    );
    let declared = [
        "--trace",
        "check",
        "-i",
        "declared.txt",
        "-o",
        "declared.out",
        "--",
        "./build",
    ];
    let a = t.miss(t.run(&declared)).success().stdout("hello\nd\n");
    assert_eq!(
        check_lines(&a),
        [
            "undeclared input: -i 'data/*'",
            "undeclared input: -i in.txt",
            "undeclared input: -i missing.h (absent: creating it must rerun)",
            "undeclared output: -o gen",
            "undeclared output: -o out.txt",
        ],
        "{}",
        stderr_of(&a)
    );
    // The key is what is declared: the same command hits, whatever in.txt says now.
    t.write("in.txt", "changed\n");
    let a = t.hit(t.run(&declared)).success().stdout("hello\nd\n");
    assert!(check_lines(&a).is_empty(), "a hit traces nothing");

    // Declared in full: nothing to add.
    t.cachectl(&["invalidate", "--all"]).assert().success();
    let a = t
        .miss(t.run(&[
            "--trace",
            "check",
            "-i",
            "declared.txt",
            "-i",
            "in.txt",
            "-i",
            "data/*",
            "-i",
            "missing.h",
            "-o",
            "declared.out",
            "-o",
            "out.txt",
            "-o",
            "gen",
            "--",
            "./build",
        ]))
        .success();
    assert_eq!(
        check_lines(&a),
        ["everything the command read and wrote is declared"],
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn check_follows_every_process_and_thread() {
    let t = TestContext::new();
    for name in ["a", "b", "c", "d"] {
        t.write(name, name);
    }
    // A grandchild through two shells, a background job, and a thread of a Python process
    // started with posix_spawn.
    t.counted(
        "tree",
        "sh -c 'sh -c \"cat a\"' > /dev/null; (cat b > /dev/null) & wait; \
         python3 -c 'import os, threading\n\
t = threading.Thread(target=lambda: open(\"c\").read()); t.start(); t.join()\n\
pid = os.posix_spawn(\"/bin/cat\", [\"cat\", \"d\"], os.environ)\n\
os.waitpid(pid, 0)' > /dev/null",
    );
    let a = t
        .miss(t.run(&["--trace", "check", "--", "./tree"]))
        .success();
    let lines = check_lines(&a);
    for name in ["a", "b", "c", "d"] {
        assert!(
            lines.contains(&format!("undeclared input: -i {name}")),
            "{name} missing from {lines:#?}"
        );
    }
}

#[test]
fn check_sees_a_static_binary() {
    let t = TestContext::new();
    t.write(
        "reader.c",
        "#include <stdio.h>\nint main(void) { FILE *f = fopen(\"secret\", \"r\"); \
         char b[16]; size_t n = fread(b, 1, sizeof b, f); fwrite(b, 1, n, stdout); return 0; }\n",
    );
    let built = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o", "reader", "reader.c"])
        .current_dir(&t.work)
        .status()
        .expect("gcc");
    assert!(built.success(), "gcc -static (libc6-dev has libc.a)");
    t.write("secret", "s3cret");
    let a = t
        .run(&["--trace", "check", "--", "./reader"])
        .assert()
        .success()
        .stdout("s3cret");
    assert!(
        check_lines(&a).contains(&"undeclared input: -i secret".to_owned()),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn check_names_writes_outside_the_working_directory() {
    let t = TestContext::new();
    // The test's directories are under the temp dir, whose writes are not side effects: move
    // the temp dir elsewhere.
    let outside = t.root.join("elsewhere.log");
    let tmp = t.root.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    t.counted(
        "log",
        &format!(
            "echo note >> '{}'; echo t > \"$TMPDIR/t\"",
            outside.display()
        ),
    );
    let a = t
        .miss(
            t.run(&["--trace", "check", "--", "./log"])
                .env("TMPDIR", &tmp),
        )
        .success();
    // (The test's run counter is written outside too.)
    let side = |p: &std::path::Path| {
        format!(
            "writes outside the working directory (a hit does not redo them): {}",
            p.display()
        )
    };
    assert_eq!(
        check_lines(&a),
        [side(&t.counter), side(&outside)],
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn the_command_behaves_as_without_tracing() {
    let t = TestContext::new();
    // Exit codes and signals.
    t.counted("fail", "echo out; echo err >&2; exit 3");
    let a = t
        .miss(t.run(&["--trace", "check", "--", "./fail"]))
        .code(3)
        .stdout("out\n");
    assert!(stderr_of(&a).starts_with("err\n"), "{}", stderr_of(&a));
    t.counted("die", "kill -TERM $$");
    t.miss(t.run(&["--trace", "check", "--", "./die"]))
        .code(143);
    // A command that is not there: the message and code of an untraced run.
    let a = t
        .run(&["--trace", "check", "--", "./nowhere"])
        .assert()
        .code(127);
    assert!(
        stderr_of(&a).contains("cachectl: command not found: ./nowhere"),
        "{}",
        stderr_of(&a)
    );
    // Interleaved stdout and stderr are stored in order, and replayed so (the pauses let
    // cachectl read each write before the next, as without tracing).
    t.counted("mix", "echo 1; sleep 0.1; echo 2 >&2; sleep 0.1; echo 3");
    let (first, _) = t.run(&["--trace", "check", "--", "./mix"]).merged_output();
    let (again, _) = t.run(&["--trace", "check", "--", "./mix"]).merged_output();
    let first = String::from_utf8_lossy(&first);
    assert!(first.starts_with("1\n2\n3\n"), "{first}");
    assert_eq!(t.count(), 3, "the second run of ./mix was a hit");
    assert_eq!(String::from_utf8_lossy(&again), "1\n2\n3\n");
}

/// A process the command leaves running goes on working after cachectl has returned: its
/// file-system calls still pass (the tracer stays for it), and cachectl does not wait for it.
#[test]
fn a_process_left_running_keeps_working() {
    let t = TestContext::new();
    t.write("in.txt", "later\n");
    let marker = t.root.join("marker");
    t.counted(
        "daemon",
        &format!(
            "(sleep 0.5; cat in.txt > '{}') > /dev/null 2>&1 & echo started",
            marker.display()
        ),
    );
    let start = std::time::Instant::now();
    t.miss(t.run(&["--trace", "check", "--", "./daemon"]))
        .success()
        .stdout("started\n");
    assert!(
        start.elapsed() < Duration::from_millis(450),
        "cachectl waited for the background process"
    );
    wait_until(Duration::from_secs(10), "the background process", || {
        fs::read_to_string(&marker).is_ok_and(|s| s == "later\n")
    });
}

#[test]
fn trace_mode_comes_from_the_variable_and_the_config() {
    let t = TestContext::new();
    t.write("in.txt", "x");
    t.counted("r", "cat in.txt > /dev/null");
    let a = t
        .miss(t.run(&["--", "./r"]).env("CACHECTL_TRACE", "check"))
        .success();
    assert_eq!(check_lines(&a), ["undeclared input: -i in.txt"]);
    t.cachectl(&["invalidate", "--all"]).assert().success();
    t.write(
        "cachectl.toml",
        "[[rule]]\nmatch = \"./r\"\ntrace = \"check\"\n",
    );
    let a = t
        .miss(t.run(&["--", "./r"]).env_remove("CACHECTL_TRACE"))
        .success();
    assert_eq!(check_lines(&a), ["undeclared input: -i in.txt"]);
    t.cachectl(&["invalidate", "--all"]).assert().success();
    let a = t.miss(t.run(&["--trace", "off", "--", "./r"])).success();
    assert!(check_lines(&a).is_empty());
    // Bad values name where they came from.
    t.write("cachectl.toml", "trace = \"sometimes\"\n");
    let a = t
        .run(&["--", "./r"])
        .env_remove("CACHECTL_TRACE")
        .assert()
        .code(2);
    assert!(
        stderr_of(&a).contains("cachectl.toml:1")
            && stderr_of(&a).contains("`trace` must be one of"),
        "{}",
        stderr_of(&a)
    );
    fs::remove_file(t.work.join("cachectl.toml")).unwrap();
    let a = t
        .run(&["--", "./r"])
        .env("CACHECTL_TRACE", "sometimes")
        .assert()
        .code(2);
    assert!(
        stderr_of(&a).contains("CACHECTL_TRACE"),
        "{}",
        stderr_of(&a)
    );
    assert!(
        stderr_of(&a).contains("CACHECTL_TRACE=\"sometimes\": not one of auto, check, off"),
        "{}",
        stderr_of(&a)
    );
}

/// Under another tracer (strace), cachectl cannot trace: the command runs as usual and the
/// check says why.
#[test]
fn under_strace_the_command_runs_and_the_check_says_why() {
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
    t.counted("r", "cat in.txt");
    let cachectl = env!("CARGO_BIN_EXE_cachectl");
    let a = t
        .cachectl(&[])
        .program(
            "strace",
            &[
                "-f",
                "-o",
                "/dev/null",
                cachectl,
                "run",
                "--trace",
                "check",
                "--",
                "./r",
            ],
        )
        .assert()
        .success()
        .stdout("x");
    let lines = check_lines(&a);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("not fully traced: ptrace")),
        "{lines:#?}"
    );
}

/// `kill -INT` of cachectl reaches the traced command (cachectl forwards it to the tracer,
/// which forwards it to the command), and cachectl exits with the command's own code.
#[test]
fn a_signal_sent_to_cachectl_reaches_the_traced_command() {
    let t = TestContext::new();
    let marker = t.root.join("got-int");
    t.counted(
        "wait",
        &format!(
            "trap 'echo int > \"{}\"; exit 5' INT; sleep 5 > /dev/null 2>&1 & wait",
            marker.display()
        ),
    );
    let (mut child, _) = t.run(&["--trace", "check", "--", "./wait"]).spawn();
    wait_until(Duration::from_secs(10), "the command to start", || {
        t.count() == 1
    });
    // Past the `trap` (the counter line is written just before the body runs).
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5));
    assert_eq!(fs::read_to_string(&marker).unwrap(), "int\n");
}

/// What the command read before changing it is an input too (`sed -i`, an append, a file it
/// consumed, the source of a move); creating what already exists only looks; `/proc/self/cwd`
/// is the command's own directory.
#[test]
fn check_keeps_what_was_read_before_a_change() {
    let t = TestContext::new();
    t.write("conf", "a\n");
    t.write("queue", "q\n");
    t.write("src.txt", "s\n");
    t.write("log", "x\n");
    t.write("via-proc", "p\n");
    t.write("data/keep", "");
    t.counted(
        "edit",
        "sed -i s/a/b/ conf; cat queue > /dev/null; rm queue; mv src.txt moved.txt; \
         echo more >> log; mkdir -p data; ls data > /dev/null; cat /proc/self/cwd/via-proc > /dev/null",
    );
    let a = t
        .miss(t.run(&["--trace", "check", "--", "./edit"]))
        .success();
    assert_eq!(
        check_lines(&a),
        [
            "undeclared input: -i conf",
            "undeclared input: -i 'data/*'",
            "undeclared input: -i log",
            "undeclared input: -i queue (read, then removed by the command)",
            "undeclared input: -i src.txt (read, then removed by the command)",
            "undeclared input: -i via-proc",
            "undeclared output: -o conf",
            "undeclared output: -o log",
            "undeclared output: -o moved.txt",
        ],
        "{}",
        stderr_of(&a)
    );
}

/// The command starts as std starts a program: default signal dispositions (SIGPIPE too), no
/// `sh` fallback for a file that is not executable code, and every process it leaves behind
/// keeps running.
#[test]
fn the_command_starts_as_without_tracing() {
    let t = TestContext::new();
    t.counted("pipe", "yes | head -n 1; grep '^SigIgn' /proc/self/status");
    let traced = t
        .run(&["--trace", "check", "--", "./pipe"])
        .assert()
        .success();
    let plain = t
        .run(&["--trace", "off", "--force", "--", "./pipe"])
        .assert()
        .success();
    assert_eq!(stdout_of(&traced), stdout_of(&plain));
    assert!(
        !stderr_of(&traced).contains("Broken pipe"),
        "{}",
        stderr_of(&traced)
    );
    t.write("noshebang", "echo hi\n");
    crate::util::set_mode(&t.work.join("noshebang"), 0o755);
    for mode in ["check", "off"] {
        t.run(&["--trace", mode, "--", "./noshebang"])
            .assert()
            .code(126);
    }
    // Ten commands that leave a process behind and exit at once.
    for i in 0..10 {
        let marker = t.root.join(format!("left-{i}"));
        t.run(&[
            "--trace",
            "check",
            "--",
            "sh",
            "-c",
            &format!("(sleep 0.3; echo x > '{}') & exit 0", marker.display()),
        ])
        .assert()
        .success();
    }
    wait_until(Duration::from_secs(10), "every leftover process", || {
        (0..10).all(|i| t.root.join(format!("left-{i}")).exists())
    });
}

/// `warm` passes `trace` on (manifest key, or `warm --trace`) and shows each run's check.
#[test]
fn warm_shows_the_check_of_each_run() {
    let t = TestContext::new();
    t.write("in.txt", "x");
    t.counted("r", "cat in.txt > /dev/null");
    t.write(
        "warm.toml",
        "[[command]]\nrun = \"./r\"\ntrace = \"check\"\n",
    );
    let a = t.cachectl(&["warm", "warm.toml"]).assert().success();
    assert!(
        stderr_of(&a).contains("cachectl: check: ./r (warm.toml:1): undeclared input: -i in.txt"),
        "{}",
        stderr_of(&a)
    );
    t.cachectl(&["invalidate", "--all"]).assert().success();
    let a = t
        .cachectl(&["warm", "--json", "warm.toml"])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&stdout_of(&a)).unwrap();
    assert_eq!(
        report["commands"][0]["check"],
        serde_json::json!(["undeclared input: -i in.txt"])
    );
    // `warm --trace off` wins over the manifest.
    t.cachectl(&["invalidate", "--all"]).assert().success();
    let a = t
        .cachectl(&["warm", "--trace", "off", "warm.toml"])
        .assert()
        .success();
    assert!(!stderr_of(&a).contains("check:"), "{}", stderr_of(&a));
    t.write(
        "bad.toml",
        "[[command]]\nrun = \"./r\"\ntrace = \"always\"\n",
    );
    let a = t.cachectl(&["warm", "bad.toml"]).assert().code(2);
    assert!(stderr_of(&a).contains("bad.toml:3"), "{}", stderr_of(&a));
}

/// Inputs outside the working directory are counted, and listed with `-v`.
#[test]
fn inputs_outside_the_working_directory_are_counted() {
    let t = TestContext::new();
    let outside = t.root.join("shared.conf");
    fs::write(&outside, "x").unwrap();
    t.counted("r", &format!("cat '{}' > /dev/null", outside.display()));
    let a = t.miss(t.run(&["--trace", "check", "--", "./r"])).success();
    assert!(
        check_lines(&a).contains(
            &"1 more input read outside the working directory (-v lists them)".to_owned()
        ),
        "{}",
        stderr_of(&a)
    );
    t.cachectl(&["invalidate", "--all"]).assert().success();
    let a = t
        .miss(t.run(&["--trace", "check", "-v", "--", "./r"]))
        .success();
    assert!(
        check_lines(&a).contains(&format!("undeclared input: -i {}", outside.display())),
        "{}",
        stderr_of(&a)
    );
}
