//! The command-line surface: help with examples for every subcommand, completions and the man
//! page generated from the real definitions, and CACHECTL_LOG diagnostics.

use crate::util::*;

fn stdout(t: &TestContext, args: &[&str]) -> String {
    let a = t.cachectl(args).assert().success();
    String::from_utf8(a.get_output().stdout.clone()).unwrap()
}

#[test]
fn every_subcommand_help_has_examples() {
    let t = TestContext::new();
    let top = stdout(&t, &["--help"]);
    let subs = [
        "run",
        "stats",
        "gc",
        "invalidate",
        "verify",
        "ls",
        "show",
        "explain",
        "warm",
        "config",
        "completions",
        "man",
    ];
    for sub in subs {
        assert!(top.contains(sub), "`cachectl --help` does not list {sub}");
        let help = stdout(&t, &[sub, "--help"]);
        assert!(
            help.contains("Examples:"),
            "`cachectl {sub} --help` has no examples:\n{help}"
        );
    }
    let help = stdout(&t, &["remote", "check", "--help"]);
    assert!(help.contains("Examples:"), "{help}");
}

#[test]
fn completions_for_each_shell() {
    let t = TestContext::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = stdout(&t, &["completions", shell]);
        assert!(out.contains("cachectl"), "{shell}: {out}");
        assert!(
            out.contains("no-cwd"),
            "{shell} completions lack run's flags"
        );
    }
    t.cachectl(&["completions", "tcsh"]).assert().code(2);
}

#[test]
fn man_page_covers_the_subcommands() {
    let t = TestContext::new();
    let out = stdout(&t, &["man"]);
    assert!(
        out.starts_with(".ie") || out.contains(".TH cachectl"),
        "not roff"
    );
    for page in [".TH cachectl-run", ".TH cachectl-warm", ".TH cachectl-gc"] {
        assert!(out.contains(page), "missing {page}");
    }
    assert!(out.contains("cache\\-failures") || out.contains("cache-failures"));
}

#[test]
fn cachectl_log_explains_decisions_and_is_silent_by_default() {
    let t = TestContext::new();
    let a = t
        .run(&["--", "echo", "hi"])
        .env("CACHECTL_LOG", "debug")
        .assert()
        .success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("key computed") && err.contains("lookup"),
        "{err}"
    );
    assert_eq!(a.get_output().stdout, b"hi\n");
    let a = t.run(&["--", "echo", "hi"]).assert().success();
    assert!(
        a.get_output().stderr.is_empty(),
        "a hit without CACHECTL_LOG prints nothing"
    );
}
