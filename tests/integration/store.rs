//! The store under stress: concurrent misses, corruption, unusable cache directories.

use crate::util::*;
use std::fs;

#[test]
fn concurrent_identical_misses_run_the_command_once() {
    let t = TestContext::new();
    t.counted("cmd", "sleep 1; echo shared-result; echo note >&2");
    let children: Vec<_> = (0..8).map(|_| t.run(&["--", "./cmd"]).spawn().0).collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "shared-result\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "note\n");
    }
    assert_eq!(t.count(), 1, "the command ran more than once");
    t.hit(t.run(&["--", "./cmd"])).stdout("shared-result\n");
}

#[test]
fn corrupt_stdout_blob_is_a_miss_with_the_right_result() {
    let t = TestContext::new();
    let data = binary_data(200 * 1024);
    fs::write(t.root.join("big.bin"), &data).unwrap();
    t.counted(
        "cmd",
        &format!("cat '{}'", t.root.join("big.bin").display()),
    );
    t.miss(t.run(&["--", "./cmd"]));
    let blobs = t.cache_files("cas-v1");
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    flip_byte(&blobs[0], -100);
    let a = t.miss(t.run(&["--", "./cmd"])).success();
    assert!(stdout_of(&a) == data, "wrong stdout after a corrupt blob");
    assert!(warnings(&stderr_of(&a)).len() <= 1, "{}", stderr_of(&a));
}

#[test]
fn corrupt_blob_is_repaired_by_the_rerun() {
    let t = TestContext::new();
    let data = binary_data(200 * 1024);
    fs::write(t.root.join("big.bin"), &data).unwrap();
    t.counted(
        "cmd",
        &format!("cat '{}'", t.root.join("big.bin").display()),
    );
    t.miss(t.run(&["--", "./cmd"]));
    flip_byte(&t.cache_files("cas-v1")[0], -100);
    t.miss(t.run(&["--", "./cmd"]));
    // The rerun stored its result again: the next run is a clean hit.
    let a = t.hit(t.run(&["--", "./cmd"])).success().stderr("");
    assert!(stdout_of(&a) == data);
}

#[test]
fn corrupt_output_blob_is_a_miss_and_the_output_is_rebuilt() {
    let t = TestContext::new();
    t.counted("cmd", "echo artifact > out.bin");
    let run = || t.run(&["-o", "out.bin", "--", "./cmd"]);
    t.miss(run());
    let blobs = t.cache_files("cas-v1");
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    flip_byte(&blobs[0], -1);
    fs::remove_file(t.work.join("out.bin")).unwrap();
    t.miss(run()).success();
    assert_eq!(t.read("out.bin"), b"artifact\n");
}

#[test]
fn missing_blob_is_a_miss() {
    let t = TestContext::new();
    t.counted("cmd", "echo artifact > out.bin");
    let run = || t.run(&["-o", "out.bin", "--", "./cmd"]);
    t.miss(run());
    fs::remove_file(&t.cache_files("cas-v1")[0]).unwrap();
    fs::remove_file(t.work.join("out.bin")).unwrap();
    t.miss(run()).success();
    assert_eq!(t.read("out.bin"), b"artifact\n");
    t.hit(run());
}

#[test]
fn truncated_record_is_a_miss() {
    let t = TestContext::new();
    t.counted("cmd", "echo result");
    t.miss(t.run(&["--", "./cmd"]));
    let records = t.cache_files("ac-v1");
    assert_eq!(records.len(), 1);
    let bytes = fs::read(&records[0]).unwrap();
    fs::write(&records[0], &bytes[..bytes.len() / 2]).unwrap();
    let a = t.miss(t.run(&["--", "./cmd"])).success().stdout("result\n");
    assert!(warnings(&stderr_of(&a)).len() <= 1, "{}", stderr_of(&a));
    t.hit(t.run(&["--", "./cmd"])).success().stdout("result\n");
}

#[test]
fn flipped_record_is_a_miss() {
    let t = TestContext::new();
    t.counted("cmd", "echo result; exit 0");
    t.miss(t.run(&["--", "./cmd"]));
    let records = t.cache_files("ac-v1");
    // Flip a byte of the inline stdout (the end of the record).
    flip_byte(&records[0], -3);
    t.miss(t.run(&["--", "./cmd"])).success().stdout("result\n");
    t.hit(t.run(&["--", "./cmd"])).success().stdout("result\n");
}

#[test]
fn empty_record_is_a_miss() {
    let t = TestContext::new();
    t.counted("cmd", "echo result");
    t.miss(t.run(&["--", "./cmd"]));
    fs::write(&t.cache_files("ac-v1")[0], b"").unwrap();
    t.miss(t.run(&["--", "./cmd"])).success().stdout("result\n");
}

/// A cache dir that cannot be created: under a read-only parent, or (as root, whom permissions
/// do not stop) under a regular file.
fn uncreatable_cache_dir(t: &TestContext) -> std::path::PathBuf {
    if t.is_root() {
        let blocker = write_file(&t.root.join("blocker"), b"a file, not a dir");
        blocker.join("cache")
    } else {
        let parent = t.root.join("ro-parent");
        fs::create_dir(&parent).unwrap();
        set_mode(&parent, 0o500);
        parent.join("cache")
    }
}

#[test]
fn uncreatable_cache_dir_still_runs_the_command() {
    let t = TestContext::new();
    let dir = uncreatable_cache_dir(&t);
    t.counted("cmd", "echo out; exit 4");
    for extra in [&[][..], &["--cache-failures"][..], &["--stdin"][..]] {
        let a = t
            .miss(
                t.run(extra)
                    .args(&["--", "./cmd"])
                    .env("CACHECTL_DIR", &dir),
            )
            .code(4)
            .stdout("out\n");
        let err = stderr_of(&a);
        assert!(
            err.lines().count() <= 1 && warnings(&err).len() == err.lines().count(),
            "{err}"
        );
    }
    t.counted("ok", "echo fine");
    let a = t
        .miss(t.run(&["--", "./ok"]).env("CACHECTL_DIR", &dir))
        .success();
    assert!(stderr_of(&a).lines().count() <= 1, "{}", stderr_of(&a));
}

/// Make an existing cache read-only: `chmod -R a-w`, or, as root (whom permissions do not stop),
/// the same failures by other means: the journal cannot be appended to (it is a directory) and
/// no lock file can be created (`locks-v1` is a file).
fn make_read_only(t: &TestContext) {
    if t.is_root() {
        fs::remove_file(t.cache.join("journal-v1.log")).unwrap();
        fs::create_dir(t.cache.join("journal-v1.log")).unwrap();
        fs::remove_dir_all(t.cache.join("locks-v1")).unwrap();
        fs::write(t.cache.join("locks-v1"), b"not a dir").unwrap();
    } else {
        assert!(chmod_r(&t.cache, "a-w"));
    }
}

#[test]
fn unwritable_store_after_first_store_still_runs_and_hits() {
    let t = TestContext::new();
    t.counted("cmd", "echo stored");
    t.counted("other", "echo out; exit 5");
    t.miss(t.run(&["--", "./cmd"]));
    // Every write goes through the store's tmp dir: make it unusable.
    fs::remove_dir_all(t.cache.join("tmp")).unwrap();
    fs::write(t.cache.join("tmp"), b"not a dir").unwrap();
    for extra in [&[][..], &["--cache-failures"][..]] {
        let a = t
            .miss(t.run(extra).args(&["--", "./other"]))
            .code(5)
            .stdout("out\n");
        let err = stderr_of(&a);
        assert!(
            err.lines().count() <= 1 && warnings(&err).len() == err.lines().count(),
            "{err}"
        );
    }
    t.hit(t.run(&["--", "./cmd"])).success().stdout("stored\n");
}

#[test]
fn read_only_cache_after_first_store_warns_at_most_once() {
    let t = TestContext::new();
    t.counted("cmd", "echo stored");
    t.counted("other", "echo out; exit 5");
    t.miss(t.run(&["--", "./cmd"]));
    make_read_only(&t);
    for extra in [&[][..], &["--cache-failures"][..], &["--stdin"][..]] {
        let a = t
            .miss(t.run(extra).args(&["--", "./other"]))
            .code(5)
            .stdout("out\n");
        let err = stderr_of(&a);
        assert!(
            err.lines().count() <= 1 && warnings(&err).len() == err.lines().count(),
            "{err}"
        );
    }
    let a = t.hit(t.run(&["--", "./cmd"])).success().stdout("stored\n");
    assert!(stderr_of(&a).lines().count() <= 1, "{}", stderr_of(&a));
}

#[test]
fn world_writable_cache_dir_is_not_used() {
    let t = TestContext::new();
    fs::create_dir(&t.cache).unwrap();
    set_mode(&t.cache, 0o777);
    t.counted("cmd", "echo ok");
    for _ in 0..2 {
        let a = t.miss(t.run(&["--", "./cmd"])).success().stdout("ok\n");
        let err = stderr_of(&a);
        assert_eq!(warnings(&err).len(), 1, "{err}");
        assert!(err.contains("writable"), "{err}");
    }
    assert!(
        files_under(&t.cache).is_empty(),
        "{:?}",
        files_under(&t.cache)
    );
}

#[test]
fn cache_dir_is_created_private() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.miss(t.run(&["--", "./cmd"]));
    assert_eq!(mode(&t.cache) & 0o077, 0, "cache dir readable by others");
}

#[test]
fn dir_flag_and_default_location() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    // --dir (relative to the cwd) overrides CACHECTL_DIR.
    t.miss(t.run(&["--dir", "../flagcache", "--", "./cmd"]));
    assert_eq!(files_under(&t.root.join("flagcache/ac-v1")).len(), 1);
    t.hit(t.cachectl(&["--dir", "../flagcache", "run", "--", "./cmd"]));
    // Without either, $XDG_CACHE_HOME/cachectl.
    t.miss(t.run(&["--", "./cmd"]).env_remove("CACHECTL_DIR"));
    assert_eq!(files_under(&t.home.join("cache/cachectl/ac-v1")).len(), 1);
    t.hit(t.run(&["--", "./cmd"]).env_remove("CACHECTL_DIR"));
    assert!(!t.cache.exists());
}
