//! What a hit replays: streams (order and bytes), exit codes, output files.

use crate::util::*;
use std::fs;
use std::time::{Duration, SystemTime};

#[test]
fn stdout_and_stderr_replayed_to_their_own_streams() {
    let t = TestContext::new();
    t.counted("cmd", "echo out; echo err >&2");
    t.miss(t.run(&["--", "./cmd"]))
        .stdout("out\n")
        .stderr("err\n");
    t.hit(t.run(&["--", "./cmd"]))
        .stdout("out\n")
        .stderr("err\n");
}

#[test]
fn interleaving_of_stdout_and_stderr_is_preserved() {
    let t = TestContext::new();
    let mut body = String::new();
    for i in 0..4 {
        body += &format!("echo out{i}; sleep 0.03; echo err{i} >&2; sleep 0.03\n");
    }
    t.counted("cmd", &body);
    let expected: String = (0..4).map(|i| format!("out{i}\nerr{i}\n")).collect();
    let before = t.count();
    let (miss, code) = t.run(&["--", "./cmd"]).merged_output();
    assert_eq!(
        (String::from_utf8_lossy(&miss).as_ref(), code),
        (expected.as_str(), 0)
    );
    assert_eq!(t.count(), before + 1);
    let (hit, code) = t.run(&["--", "./cmd"]).merged_output();
    assert_eq!(
        (String::from_utf8_lossy(&hit).as_ref(), code),
        (expected.as_str(), 0)
    );
    assert_eq!(t.count(), before + 1, "second run must be a hit");
}

#[test]
fn large_binary_stdout_is_byte_exact_on_hit() {
    let t = TestContext::new();
    let data = binary_data(5 * 1024 * 1024);
    fs::write(t.root.join("big.bin"), &data).unwrap();
    t.counted(
        "cmd",
        &format!("cat '{}'", t.root.join("big.bin").display()),
    );
    let miss = stdout_of(&t.miss(t.run(&["--", "./cmd"])).success());
    assert!(miss == data, "miss stdout differs ({} bytes)", miss.len());
    let hit = stdout_of(&t.hit(t.run(&["--", "./cmd"])).success());
    assert!(hit == data, "hit stdout differs ({} bytes)", hit.len());
}

#[test]
fn large_stderr_is_byte_exact_on_hit() {
    let t = TestContext::new();
    let data = binary_data(300 * 1024);
    fs::write(t.root.join("big.bin"), &data).unwrap();
    t.counted(
        "cmd",
        &format!("cat '{}' >&2; echo done", t.root.join("big.bin").display()),
    );
    t.miss(t.run(&["--", "./cmd"])).stdout("done\n");
    let a = t.hit(t.run(&["--", "./cmd"])).stdout("done\n");
    assert!(a.get_output().stderr == data, "hit stderr differs");
}

#[test]
fn exit_code_replayed_with_cache_failures() {
    let t = TestContext::new();
    t.counted("cmd", "echo partial; exit 3");
    let run = || t.run(&["--cache-failures", "--", "./cmd"]);
    t.miss(run()).code(3).stdout("partial\n");
    t.hit(run()).code(3).stdout("partial\n");
}

#[test]
fn failures_are_not_stored_by_default() {
    let t = TestContext::new();
    t.counted("cmd", "echo partial; exit 3");
    t.miss(t.run(&["--", "./cmd"])).code(3).stdout("partial\n");
    t.miss(t.run(&["--", "./cmd"])).code(3).stdout("partial\n");
    assert!(t.cache_files("ac-v1").is_empty());
}

#[test]
fn failure_then_success_stores_only_the_success() {
    let t = TestContext::new();
    t.counted("cmd", "test -f ok || exit 1; echo fine");
    t.miss(t.run(&["--", "./cmd"])).code(1);
    t.write("ok", "");
    t.miss(t.run(&["--", "./cmd"])).success().stdout("fine\n");
    std::fs::remove_file(t.work.join("ok")).unwrap();
    t.hit(t.run(&["--", "./cmd"])).success().stdout("fine\n");
}

#[test]
fn killed_by_signal_exits_128_plus_n_and_is_never_stored() {
    let t = TestContext::new();
    t.counted("cmd", "echo before; kill -TERM $$; echo after");
    t.miss(t.run(&["--", "./cmd"])).code(143).stdout("before\n");
    t.miss(t.run(&["--cache-failures", "--", "./cmd"]))
        .code(143);
    t.miss(t.run(&["--cache-failures", "--", "./cmd"]))
        .code(143);
    assert!(t.cache_files("ac-v1").is_empty());
}

#[test]
fn missing_command_exits_127_with_message() {
    let t = TestContext::new();
    let a = t
        .run(&["--", "cct-no-such-command-xyz", "arg"])
        .env("PATH", "/usr/bin:/bin")
        .assert()
        .code(127)
        .stdout("");
    let err = stderr_of(&a);
    assert!(
        err.contains("cct-no-such-command-xyz") && err.contains("not found"),
        "{err}"
    );
    t.run(&["--", "./nope"]).assert().code(127);
    t.run(&["--cache-failures", "--", "./nope"])
        .assert()
        .code(127);
    assert!(t.cache_files("ac-v1").is_empty());
}

#[test]
fn outputs_restored_byte_exact_with_modes_in_nested_dirs() {
    let t = TestContext::new();
    let data = binary_data(100 * 1024);
    fs::write(t.root.join("payload"), &data).unwrap();
    t.counted(
        "cmd",
        &format!(
            "mkdir -p out/deep/er && cp '{}' out/deep/er/data.bin && chmod 640 out/deep/er/data.bin\n\
             printf '#!/bin/sh\\necho tool\\n' > tool && chmod 755 tool\n\
             touch -t 200101010000 tool out/deep/er/data.bin; echo built",
            t.root.join("payload").display()
        ),
    );
    let run = || t.run(&["-o", "out/deep/er/data.bin", "-o", "tool", "--", "./cmd"]);
    t.miss(run()).success().stdout("built\n");
    fs::remove_dir_all(t.work.join("out")).unwrap();
    fs::remove_file(t.work.join("tool")).unwrap();
    let before = SystemTime::now() - Duration::from_secs(5);
    t.hit(run()).success().stdout("built\n");
    assert!(t.read("out/deep/er/data.bin") == data, "data.bin differs");
    assert_eq!(t.read("tool"), b"#!/bin/sh\necho tool\n");
    assert_eq!(mode(&t.work.join("out/deep/er/data.bin")), 0o640);
    assert_eq!(mode(&t.work.join("tool")), 0o755);
    for f in ["tool", "out/deep/er/data.bin"] {
        let mtime = fs::metadata(t.work.join(f)).unwrap().modified().unwrap();
        assert!(mtime >= before, "{f}: mtime not fresh: {mtime:?}");
    }
    let all: Vec<_> = files_under(&t.work);
    assert!(
        !all.iter()
            .any(|p| p.to_string_lossy().contains(".cachectl")),
        "{all:?}"
    );
}

#[test]
fn outputs_overwrite_existing_files_on_hit() {
    let t = TestContext::new();
    t.counted("cmd", "echo generated > gen.txt");
    t.miss(t.run(&["-o", "gen.txt", "--", "./cmd"]));
    t.write("gen.txt", "edited by hand, much longer than the original");
    t.hit(t.run(&["-o", "gen.txt", "--", "./cmd"]));
    assert_eq!(t.read("gen.txt"), b"generated\n");
}

/// An output already in place with the stored content is not rewritten (same inode), but its
/// mode and mtime are set as a restore would set them; one with other content of the same size
/// is replaced.
#[test]
fn outputs_already_in_place_are_kept_and_touched() {
    use std::os::unix::fs::MetadataExt;
    let t = TestContext::new();
    t.counted("cmd", "echo generated > gen.txt && chmod 640 gen.txt");
    let run = || t.run(&["-o", "gen.txt", "--", "./cmd"]);
    t.miss(run());
    let path = t.work.join("gen.txt");
    set_mode(&path, 0o600);
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let inode = fs::metadata(&path).unwrap().ino();
    t.hit(run());
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.ino(), inode, "rewritten although identical");
    assert_eq!(mode(&path), 0o640);
    assert!(meta.modified().unwrap() > old + Duration::from_secs(3000));
    assert_eq!(t.read("gen.txt"), b"generated\n");
    // Same size, other content: replaced.
    t.write("gen.txt", "GENERATED\n");
    t.hit(run());
    assert_eq!(t.read("gen.txt"), b"generated\n");
}

#[test]
fn output_directory_restored_whole() {
    let t = TestContext::new();
    t.counted(
        "cmd",
        "mkdir -p build/sub build/empty && echo a > build/a && echo b > build/sub/b \
         && chmod 700 build/sub/b",
    );
    let run = || t.run(&["-o", "build", "--", "./cmd"]);
    t.miss(run()).success();
    fs::remove_dir_all(t.work.join("build")).unwrap();
    t.hit(run()).success();
    assert_eq!(t.read("build/a"), b"a\n");
    assert_eq!(t.read("build/sub/b"), b"b\n");
    assert_eq!(mode(&t.work.join("build/sub/b")), 0o700);
    assert!(t.work.join("build/empty").is_dir());
}

#[test]
fn declared_output_not_produced_warns_and_is_not_stored() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    let run = || t.run(&["-o", "never.txt", "--", "./cmd"]);
    let a = t.miss(run()).success().stdout("ok\n");
    let err = stderr_of(&a);
    assert_eq!(warnings(&err).len(), 1, "{err}");
    assert!(err.contains("never.txt"), "{err}");
    t.miss(run()).success();
    assert!(!t.work.join("never.txt").exists());
}

#[test]
fn restore_is_all_or_nothing_when_a_blob_is_corrupt() {
    // Two outputs; corrupt one blob (each in turn): the other must not be restored either.
    for victim in 0..2 {
        let t = TestContext::new();
        t.counted(
            "cmd",
            "if [ -f produce ]; then echo first > a.txt; echo second-longer > b.txt; fi; echo ran",
        );
        t.write("produce", "");
        let run = || t.run(&["-o", "a.txt", "-o", "b.txt", "--", "./cmd"]);
        t.miss(run()).success();
        let blobs = t.cache_files("cas-v1");
        assert_eq!(blobs.len(), 2, "{blobs:?}");
        flip_byte(&blobs[victim], -1);
        for f in ["produce", "a.txt", "b.txt"] {
            fs::remove_file(t.work.join(f)).unwrap();
        }
        // The entry cannot be replayed: the command reruns (and produces nothing this time).
        t.miss(run()).success().stdout("ran\n");
        assert!(!t.work.join("a.txt").exists(), "a.txt restored alone");
        assert!(!t.work.join("b.txt").exists(), "b.txt restored alone");
        let leftovers: Vec<_> = fs::read_dir(&t.work)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("cachectl"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn interleaving_preserved_with_large_streams() {
    let t = TestContext::new();
    let big = t.root.join("big.bin");
    fs::write(&big, binary_data(100_000)).unwrap();
    let b = big.display();
    t.counted(
        "cmd",
        &format!(
            "cat '{b}'; sleep 0.05; echo mid >&2; sleep 0.05; cat '{b}'; sleep 0.05; cat '{b}' >&2"
        ),
    );
    let data = binary_data(100_000);
    let expected = [&data[..], b"mid\n", &data[..], &data[..]].concat();
    let (miss, code) = t.run(&["--", "./cmd"]).merged_output();
    assert!(
        code == 0 && miss == expected,
        "miss output differs ({} bytes)",
        miss.len()
    );
    let (hit, code) = t.run(&["--", "./cmd"]).merged_output();
    assert!(
        code == 0 && hit == expected,
        "hit output differs ({} bytes)",
        hit.len()
    );
    assert_eq!(t.count(), 1, "second run must be a hit");
}

#[test]
fn other_signals_exit_128_plus_n() {
    let t = TestContext::new();
    t.counted("cmd", "kill -KILL $$");
    t.miss(t.run(&["--cache-failures", "--", "./cmd"]))
        .code(137);
    t.miss(t.run(&["--cache-failures", "--", "./cmd"]))
        .code(137);
}

#[test]
fn exit_code_above_128_without_signal_is_cached_like_any_failure() {
    let t = TestContext::new();
    t.counted("cmd", "exit 130");
    t.miss(t.run(&["--cache-failures", "--", "./cmd"]))
        .code(130);
    t.hit(t.run(&["--cache-failures", "--", "./cmd"])).code(130);
}

#[test]
fn symlink_output_inside_the_work_dir_is_restored() {
    let t = TestContext::new();
    t.counted("cmd", "echo data > real.txt && ln -sf real.txt link.txt");
    let run = || t.run(&["-o", "real.txt", "-o", "link.txt", "--", "./cmd"]);
    t.miss(run()).success();
    fs::remove_file(t.work.join("real.txt")).unwrap();
    fs::remove_file(t.work.join("link.txt")).unwrap();
    t.hit(run()).success();
    assert_eq!(
        fs::read_link(t.work.join("link.txt")).unwrap(),
        std::path::Path::new("real.txt")
    );
    assert_eq!(t.read("link.txt"), b"data\n");
}

#[test]
fn stored_failure_is_served_only_with_cache_failures() {
    let t = TestContext::new();
    t.counted("cmd", "exit 3");
    t.miss(t.run(&["--cache-failures", "--", "./cmd"])).code(3);
    t.miss(t.run(&["--", "./cmd"])).code(3);
    t.hit(t.run(&["--cache-failures", "--", "./cmd"])).code(3);
}

/// docs/run.md, "When the working tree is in the way": an intact entry whose outputs cannot be
/// restored because of the working tree (a directory where the output file goes, a symlinked
/// directory leading outside) is kept. The run warns once, runs the command, and once nothing
/// is in the way the next run hits. Each blocked run counts one `restore` error in stats.
/// (Before, an entry blocked by a symlinked directory was dropped, and counted twice.)
#[test]
fn an_entry_blocked_by_the_working_tree_is_kept_and_hits_once_the_tree_is_clear() {
    let t = TestContext::new();
    let outside = t.root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    t.counted(
        "mk",
        "set -e\nmkdir -p dist\necho built > dist/app\necho done",
    );
    let run = || t.run(&["-o", "dist/app", "--", "./mk"]);
    t.miss(run()).success().stdout("done\n");
    let blockers: [(&str, &dyn Fn()); 2] = [
        ("a directory at the output's path", &|| {
            std::fs::remove_file(t.work.join("dist/app")).unwrap();
            t.write("dist/app/keep", "mine");
        }),
        ("a symlinked directory leading outside", &|| {
            std::fs::remove_dir_all(t.work.join("dist")).unwrap();
            std::os::unix::fs::symlink(&outside, t.work.join("dist")).unwrap();
        }),
    ];
    for (n, (what, block)) in blockers.iter().enumerate() {
        block();
        let a = t.miss(run());
        let err = stderr_of(&a);
        let w = warnings(&err);
        assert!(
            !w.is_empty() && w[0].contains("cannot restore the outputs"),
            "{what}: {err}"
        );
        assert!(!err.contains("dropped"), "{what}: {err}");
        let s = crate::manage::json(t.cachectl(&["stats", "--json"]));
        assert_eq!(s["errors"]["restore"], n as u64 + 1, "{what}: {s}");
        // Clear the way: the kept entry hits and restores the file.
        let dist = t.work.join("dist");
        if dist.is_symlink() {
            std::fs::remove_file(&dist).unwrap();
        } else {
            std::fs::remove_dir_all(&dist).unwrap();
        }
        t.hit(run()).success().stdout("done\n");
        assert_eq!(t.read("dist/app"), b"built\n", "{what}");
    }
    assert_eq!(t.count(), 3, "one first run and one per blocked run");
}
