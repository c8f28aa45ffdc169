//! The examples in examples/ are run, so that they cannot rot: the Makefile and the justfile
//! build a real C program through cachectl (a rebuild after `clean` is all hits), and the warm
//! manifest warms and then finds everything cached. `just` comes from crates.io (`.ci/run`
//! installs it); under CI=true a missing tool fails the test instead of skipping it.

use crate::util::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Copy a directory tree (the examples are run in a temp copy, never in the repo).
fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Whether `tool` is on PATH; under CI=true its absence is a failure.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true, but `{tool}` is not on PATH (.ci/run installs it)"
        );
        eprintln!("note: `{tool}` is not installed; skipping this example");
    }
    found
}

fn hits(t: &TestContext) -> u64 {
    let a = t.cachectl(&["stats", "--json"]).assert().success();
    let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    v["hits"].as_u64().unwrap()
}

/// Build the C example with `tool` (make or just), clean, build again: the second build is
/// served from the cache and the program still runs.
fn build_twice(tool: &str, build: &[&str], clean: &[&str]) {
    if !have(tool) || !have("gcc") {
        return;
    }
    let t = TestContext::new();
    let project = t.work.join("c");
    copy_tree(&examples().join("c"), &project);
    let cachectl = env!("CARGO_BIN_EXE_cachectl");
    let run = |args: &[&str]| {
        let out = Command::new(tool)
            .args(args)
            .current_dir(&project)
            .env("CACHECTL", cachectl)
            .env("CACHECTL_DIR", &t.cache)
            .env("HOME", &t.home)
            .env("XDG_CONFIG_HOME", t.home.join("config"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let app = || {
        let out = Command::new(project.join("app")).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    run(build);
    assert_eq!(app(), "hello from a cached build: 7 squared is 49\n");
    assert_eq!(hits(&t), 0);
    run(clean);
    assert!(!project.join("app").exists());
    run(build);
    assert_eq!(app(), "hello from a cached build: 7 squared is 49\n");
    assert_eq!(hits(&t), 3, "both objects and the link step are hits");
}

#[test]
fn makefile_example_rebuilds_from_the_cache() {
    build_twice("make", &[], &["clean"]);
}

#[test]
fn justfile_example_rebuilds_from_the_cache() {
    build_twice("just", &[], &["clean"]);
}

#[test]
fn warm_manifest_example_warms_then_is_all_cached() {
    let t = TestContext::new();
    copy_tree(&examples().join("warm"), &t.work.join("warm"));
    std::fs::copy(examples().join("warm.toml"), t.work.join("warm.toml")).unwrap();
    let warm = || {
        let a = t
            .cachectl(&["warm", "warm.toml", "--json"])
            .assert()
            .success();
        let v: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
        v
    };
    let first = warm();
    assert!(first["stored"].as_u64().unwrap() >= 2, "{first}");
    assert_eq!(first["failed"], 0, "{first}");
    let second = warm();
    assert_eq!(second["stored"], 0, "{second}");
    assert_eq!(second["already_cached"], first["stored"], "{second}");
}

#[test]
fn project_config_examples_parse() {
    for file in ["cachectl.toml.example", "examples/cachectl.toml"] {
        let t = TestContext::new();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        std::fs::copy(&src, t.work.join("cachectl.toml")).unwrap();
        t.cachectl(&["config"]).assert().success();
    }
}
