//! Config files, rules, `cachectl config`, and usage errors (exit 2, nothing run).

use crate::util::*;

/// Assert a usage error: exit 2, the command did not run, and stderr contains each of `needles`.
#[track_caller]
fn usage_error(t: &TestContext, run: Run, needles: &[&str]) {
    let a = t.hit(run).code(2).stdout("");
    let err = stderr_of(&a);
    for n in needles {
        assert!(err.contains(n), "no `{n}` in stderr:\n{err}");
    }
}

#[test]
fn output_outside_the_work_dir_is_a_usage_error() {
    let t = TestContext::new();
    t.counted("cmd", "echo x > ../x");
    usage_error(&t, t.run(&["-o", "../x", "--", "./cmd"]), &["../x"]);
    usage_error(&t, t.run(&["-o", "a/../../x", "--", "./cmd"]), &[]);
    usage_error(
        &t,
        t.run(&["--output", "/tmp/abs", "--", "./cmd"]),
        &["/tmp/abs"],
    );
    assert_eq!(t.count(), 0);
    assert!(!t.root.join("x").exists());
}

#[test]
fn stale_without_ttl_is_a_usage_error() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    usage_error(&t, t.run(&["--stale", "1m", "--", "./cmd"]), &["--ttl"]);
    usage_error(&t, t.run(&["--", "./cmd"]).env("CACHECTL_STALE", "1m"), &[]);
    t.write("cachectl.toml", "stale = \"1m\"\n");
    usage_error(&t, t.run(&["--", "./cmd"]), &[]);
    assert!(!t.cache.exists());
}

#[test]
fn bad_flag_values_are_usage_errors() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    usage_error(&t, t.run(&["--ttl", "soon", "--", "./cmd"]), &["soon"]);
    usage_error(&t, t.run(&["-e", "A=1", "--", "./cmd"]), &["A=1"]);
    usage_error(
        &t,
        t.run(&["--ttl", "1m", "--stale", "1h", "--", "./cmd"]),
        &[],
    );
    usage_error(&t, t.run(&[]), &[]);
}

#[test]
fn unknown_key_in_project_config_is_located() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.write("cachectl.toml", "ttl = \"1h\"\n\nbogus_key = 1\n");
    usage_error(
        &t,
        t.run(&["--", "./cmd"]),
        &["cachectl.toml:3", "bogus_key"],
    );
}

#[test]
fn unknown_key_in_rule_is_located() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.write(
        "cachectl.toml",
        "[[rule]]\nmatch = \"./cmd*\"\ninputs = [\"a\"]\ninptus = [\"b\"]\n",
    );
    usage_error(&t, t.run(&["--", "./cmd"]), &["cachectl.toml:4", "inptus"]);
}

#[test]
fn bad_ttl_value_in_config_is_located() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.write(
        "cachectl.toml",
        "# settings\n\n[[rule]]\nmatch = \"*\"\nttl = \"7x\"\n",
    );
    usage_error(&t, t.run(&["--", "./cmd"]), &["cachectl.toml:5", "ttl"]);
}

#[test]
fn wrong_type_in_config_is_located() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.write(
        "cachectl.toml",
        "[[rule]]\nmatch = \"*\"\ncache_failures = \"yes\"\n",
    );
    usage_error(
        &t,
        t.run(&["--", "./cmd"]),
        &["cachectl.toml:3", "cache_failures"],
    );
    t.write("cachectl.toml", "\nttl = 5\n");
    usage_error(&t, t.run(&["--", "./cmd"]), &["cachectl.toml:2", "ttl"]);
    t.write(
        "cachectl.toml",
        "[[rule]]\nmatch = \"*\"\n\ninputs = \"a.txt\"\n",
    );
    usage_error(&t, t.run(&["--", "./cmd"]), &["cachectl.toml:4", "inputs"]);
}

#[test]
fn bad_user_config_is_located() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    write_file(
        &t.home.join("config/cachectl/config.toml"),
        b"\nnamespaec = \"x\"\n",
    );
    usage_error(&t, t.run(&["--", "./cmd"]), &["config.toml:2", "namespaec"]);
}

#[test]
fn bad_config_is_reported_by_config_command_too() {
    let t = TestContext::new();
    t.write("cachectl.toml", "nope = true\n");
    let a = t.cachectl(&["config"]).assert().code(2);
    assert!(
        stderr_of(&a).contains("cachectl.toml:1"),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn rule_inputs_make_the_key_depend_on_a_file() {
    let t = TestContext::new();
    t.counted("resize", "echo resized");
    t.counted("other", "echo other");
    t.write("lib.conf", "v1");
    t.write(
        "cachectl.toml",
        "[[rule]]\nmatch = \"./resize *\"\ninputs = [\"lib.conf\"]\n",
    );
    let run = || t.run(&["--", "./resize", "img/a.png"]);
    t.miss(run()).stdout("resized\n");
    t.hit(run());
    t.write("lib.conf", "v2");
    t.miss(run());
    // A command the rule does not match does not depend on lib.conf.
    t.miss(t.run(&["--", "./other", "x"]));
    t.write("lib.conf", "v3");
    t.hit(t.run(&["--", "./other", "x"]));
}

#[test]
fn rule_star_matches_slashes() {
    let t = TestContext::new();
    t.counted("tool", "echo ok");
    t.write("dep", "1");
    t.write(
        "cachectl.toml",
        "[[rule]]\nmatch = \"./tool *.png\"\ninputs = [\"dep\"]\n",
    );
    let run = || t.run(&["--", "./tool", "deep/dir/x.png"]);
    t.miss(run());
    t.write("dep", "2");
    t.miss(run());
}

#[test]
fn project_config_found_from_a_subdirectory() {
    let t = TestContext::new();
    let sub = t.work.join("a/b");
    t.counted_in(&sub, "cmd", "echo ok");
    t.write("dep", "1");
    t.write(
        "cachectl.toml",
        "[[rule]]\nmatch = \"*\"\ninputs = [\"../../dep\"]\n",
    );
    let run = || t.run(&["--", "./cmd"]).dir(&sub);
    t.miss(run());
    t.hit(run());
    t.write("dep", "2");
    t.miss(run());
}

#[test]
fn user_config_rules_apply() {
    let t = TestContext::new();
    t.counted("cmd", "exit 3");
    write_file(
        &t.home.join("config/cachectl/config.toml"),
        b"[[rule]]\nmatch = \"./cmd\"\ncache_failures = true\n",
    );
    t.miss(t.run(&["--", "./cmd"])).code(3);
    t.hit(t.run(&["--", "./cmd"])).code(3);
}

#[test]
fn rule_scalars_apply_namespace_salt_and_cwd() {
    let t = TestContext::new();
    let (a, b) = (t.work.join("a"), t.work.join("b"));
    t.counted_in(&a, "cmd", "echo ok");
    t.counted_in(&b, "cmd", "echo ok");
    t.write(
        "cachectl.toml",
        "[[rule]]\nmatch = \"./cmd\"\ncwd = false\nnamespace = \"imgs\"\nsalt = \"s1\"\n",
    );
    t.miss(t.run(&["--", "./cmd"]).dir(&a));
    t.hit(t.run(&["--", "./cmd"]).dir(&b));
    // Flags override the rule's scalars.
    t.miss(t.run(&["-n", "other", "--", "./cmd"]).dir(&a));
    t.miss(t.run(&["--salt", "s2", "--", "./cmd"]).dir(&a));
    t.hit(t.run(&["--", "./cmd"]).dir(&a));
}

#[test]
fn rule_outputs_are_stored_and_restored() {
    let t = TestContext::new();
    t.counted("gen", "echo generated > gen.out");
    t.write(
        "cachectl.toml",
        "[[rule]]\nmatch = \"./gen\"\noutputs = [\"gen.out\"]\n",
    );
    t.miss(t.run(&["--", "./gen"]));
    std::fs::remove_file(t.work.join("gen.out")).unwrap();
    t.hit(t.run(&["--", "./gen"]));
    assert_eq!(t.read("gen.out"), b"generated\n");
}

#[test]
fn rule_output_outside_the_work_dir_is_a_usage_error() {
    let t = TestContext::new();
    t.counted("gen", "echo x");
    t.write(
        "cachectl.toml",
        "[[rule]]\nmatch = \"./gen\"\noutputs = [\"../escape\"]\n",
    );
    usage_error(&t, t.run(&["--", "./gen"]), &["../escape"]);
}

#[test]
fn env_vars_act_like_flags() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.miss(t.run(&["--", "./cmd"]));
    t.miss(t.run(&["--", "./cmd"]).env("CACHECTL_SALT", "x"));
    t.miss(t.run(&["--", "./cmd"]).env("CACHECTL_NAMESPACE", "ns"));
    t.hit(t.run(&["--", "./cmd"]).env("CACHECTL_NAMESPACE", "ns"));
    t.miss(t.run(&["--", "./cmd"]).env("CACHECTL_FORCE", "true"));
    t.miss(t.run(&["--", "./cmd"]).env("CACHECTL_NO_CWD", "true"));
    t.hit(t.run(&["--", "./cmd"]).env("CACHECTL_NO_CWD", "true"));
}

/// One rule for boolean env vars (docs/configuration.md, "Boolean env vars"): 1/true/t/yes/y/on
/// and 0/false/f/no/n/off in any case; empty is unset; anything else exits 2 naming the
/// variable, and the command does not run.
#[test]
fn boolean_env_vars_follow_the_one_documented_rule() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.miss(t.run(&["--", "./cmd"]));
    for yes in ["1", "true", "TRUE", "t", "yes", "Y", "on", "On"] {
        t.miss(t.run(&["--", "./cmd"]).env("CACHECTL_FORCE", yes))
            .success();
    }
    for no in ["0", "false", "f", "no", "N", "off", "OFF", ""] {
        t.hit(t.run(&["--", "./cmd"]).env("CACHECTL_FORCE", no))
            .success();
    }
    t.miss(
        t.run(&["--", "./cmd"])
            .env("CACHECTL_NO_STORE", "yes")
            .env("CACHECTL_SALT", "x"),
    );
    t.miss(t.run(&["--", "./cmd"]).env("CACHECTL_SALT", "x"));
    for name in ["CACHECTL_FORCE", "CACHECTL_VERBOSE", "CACHECTL_NO_CWD"] {
        let before = t.count();
        let a = t.run(&["--", "./cmd"]).env(name, "maybe").assert().code(2);
        let err = stderr_of(&a);
        assert!(
            err.contains(&format!("{name}=maybe is not a boolean")) && err.contains("yes/no"),
            "{err}"
        );
        assert_eq!(t.count(), before, "the command ran after a usage error");
    }
}

#[test]
fn config_command_prints_settings_and_sources() {
    let t = TestContext::new();
    write_file(
        &t.home.join("config/cachectl/config.toml"),
        b"namespace = \"user-ns\"\nttl = \"2h\"\n",
    );
    t.write("cachectl.toml", "# project\nnamespace = \"proj-ns\"\n");
    let a = t.cachectl(&["config"]).assert().success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    let user = t.home.join("config/cachectl/config.toml");
    let project = t.work.join("cachectl.toml");
    for needle in [
        format!("{}", user.display()),
        format!("{}", project.display()),
        // The project file wins over the user file, and each value names its origin.
        "\"proj-ns\"".to_string(),
        format!("{}:2", project.display()),
        format!("{}:2", user.display()),
        t.cache.display().to_string(),
        "CACHECTL_DIR".to_string(),
    ] {
        assert!(out.contains(&needle), "no `{needle}` in:\n{out}");
    }
    assert!(!out.contains("user-ns"), "{out}");
}

#[test]
fn config_command_shows_matching_rules_for_a_command() {
    let t = TestContext::new();
    t.write(
        "cachectl.toml",
        "[[rule]]\nmatch = \"./resize *\"\ninputs = [\"lib.conf\"]\n\n[[rule]]\nmatch = \"make *\"\ninputs = [\"Makefile\"]\n",
    );
    let a = t
        .cachectl(&["config", "--", "./resize", "a.png"])
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    let for_cmd = out.split("For `").nth(1).unwrap_or_else(|| panic!("{out}"));
    assert!(for_cmd.contains("cachectl.toml:1"), "{out}");
    assert!(for_cmd.contains("lib.conf"), "{out}");
    assert!(!for_cmd.contains("Makefile"), "{out}");
}

#[test]
fn config_command_shows_env_settings_for_a_command() {
    let t = TestContext::new();
    let a = t
        .cachectl(&["config", "--", "./cmd"])
        .env("CACHECTL_NAMESPACE", "from-env")
        .env("CACHECTL_TTL", "3h")
        .assert()
        .success();
    let out = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
    assert!(out.contains("from-env"), "{out}");
    assert!(out.contains("3h"), "{out}");
}

#[test]
fn rule_env_and_ttl_apply() {
    let t = TestContext::new();
    t.counted("cmd", "echo ok");
    t.write(
        "cachectl.toml",
        "[[rule]]\nmatch = \"./cmd *\"\nenv = [\"CCT_RULE\"]\nttl = \"1m\"\n",
    );
    let run = |v: &str, now| t.run(&["--", "./cmd", "x"]).env("CCT_RULE", v).now(now);
    t.miss(run("1", T0));
    t.hit(run("1", T0 + SEC));
    t.miss(run("2", T0 + SEC));
    t.miss(run("1", T0 + 2 * MIN));
}
