//! `stats` for CI (issue 16): sessions, the trend and `--fail-on-drop`, hits lost to eviction,
//! the history chart and the Markdown report.

use crate::manage::{DAY, HOUR, json, json_of, u};
use crate::util::*;
use serde_json::Value;

/// The `--json` report of `stats <args>` at `now`, whatever its exit code.
fn stats_at(t: &TestContext, args: &[&str], now: u64) -> (i32, Value, String) {
    let a = t
        .cachectl(&["stats", "--json"])
        .args(args)
        .now(now)
        .assert();
    let code = a.get_output().status.code().unwrap_or(-1);
    (code, json_of(&a), stderr_of(&a))
}

#[test]
fn a_session_reports_one_build_alone() {
    let t = TestContext::new();
    t.counted("a", "sleep 0.3; echo a");
    t.counted("b", "echo b");
    t.counted("fail", "exit 3");
    let start = T0 - 2 * HOUR;
    // Build 1: the flag, then the variable a CI job exports once.
    t.miss(t.run(&["--session", "build-1", "--", "./a"]).now(start));
    t.hit(
        t.run(&["--", "./a"])
            .env("CACHECTL_SESSION", "build-1")
            .now(start + MIN),
    );
    t.miss(
        t.run(&["--", "./fail"])
            .env("CACHECTL_SESSION", "build-1")
            .now(start + 2 * MIN),
    )
    .code(3);
    // Build 2, and a run outside any session.
    t.miss(
        t.run(&["--session", "build 2", "--", "./b"])
            .now(start + 3 * MIN),
    );
    t.hit(t.run(&["--", "./b"]).now(start + 4 * MIN));
    // An empty variable is no session (as every CACHECTL_* variable).
    t.hit(
        t.run(&["--", "./b"])
            .env("CACHECTL_SESSION", "")
            .now(start + 5 * MIN),
    );

    let (code, s, _) = stats_at(&t, &["--session", "build-1"], T0);
    assert_eq!(code, 0);
    assert_eq!(
        (u(&s["hits"]), u(&s["misses"]), u(&s["stores"])),
        (1, 2, 1),
        "{s:#}"
    );
    assert_eq!(u(&s["uncacheable"]["non_zero_exit"]), 1, "{s:#}");
    let session = &s["session"];
    assert_eq!(session["name"], "build-1");
    assert_eq!(session["first"], "2023-11-14T20:13:20.000Z", "{s:#}");
    assert_eq!(session["last"], "2023-11-14T20:15:20.000Z", "{s:#}");
    let slowest = session["slowest_misses"].as_array().unwrap();
    assert_eq!(slowest.len(), 2, "{s:#}");
    assert_eq!(slowest[0]["command"], "./a");
    assert_eq!(slowest[0]["outcome"], "stored");
    assert_eq!(slowest[0]["finished"], "2023-11-14T20:13:20.000Z", "{s:#}");
    assert!(u(&slowest[0]["duration_ms"]) >= 300, "{s:#}");
    assert_eq!(slowest[1]["command"], "./fail");
    assert_eq!(slowest[1]["outcome"], "non_zero_exit");
    // The breakdown is the session's commands, with what they hold in the store.
    let names: Vec<&str> = s["breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["./a", "./fail"], "{s:#}");
    assert!(u(&s["time_saved_ms"]) >= 300, "{s:#}");

    let (_, s, _) = stats_at(&t, &["--session", "build 2"], T0);
    assert_eq!((u(&s["hits"]), u(&s["misses"])), (0, 1), "{s:#}");
    let (_, all, _) = stats_at(&t, &[], T0);
    assert_eq!((u(&all["hits"]), u(&all["misses"])), (3, 3), "{all:#}");
    assert!(all.get("session").is_none(), "{all:#}");

    // The CI gate on one build: 1 hit of 3 lookups.
    let (code, s, err) = stats_at(&t, &["--session", "build-1", "--fail-under", "50"], T0);
    assert_eq!(code, 1, "{err}");
    assert_eq!(s["fail_under"]["passed"], false);
    assert_eq!(
        err.trim(),
        "cachectl: hit rate 33.3% (1 of 3 lookups) in session build-1 is below --fail-under 50%"
    );

    // The text report names the session and lists its slowest misses.
    let a = t
        .cachectl(&["stats", "--session", "build-1"])
        .now(T0)
        .assert()
        .success();
    let out = String::from_utf8(stdout_of(&a)).unwrap();
    assert!(
        out.contains("Session build-1: 2023-11-14T20:13:20.000Z to 2023-11-14T20:15:20.000Z"),
        "{out}"
    );
    assert!(out.contains("Slowest misses"), "{out}");
    assert!(out.contains("not stored: non_zero_exit"), "{out}");

    // A session nobody recorded: zeros, and a line that says so.
    let a = t
        .cachectl(&["stats", "--session", "nope"])
        .now(T0)
        .assert()
        .success();
    let out = String::from_utf8(stdout_of(&a)).unwrap();
    assert!(
        out.contains("Session nope: no events recorded (sessions are kept 30 days"),
        "{out}"
    );
    // Sessions are forgotten 30 days after their last event.
    let (_, s, _) = stats_at(&t, &["--session", "build-1"], start + 31 * DAY);
    assert!(s["session"]["first"].is_null(), "{s:#}");
    assert_eq!(u(&s["misses"]), 0, "{s:#}");
}

#[test]
fn session_names_are_checked() {
    let t = TestContext::new();
    for bad in ["", " ", "a\tb", " ci-1", "ci-1 "] {
        let a = t.run(&["--session", bad, "--", "true"]).assert().code(2);
        assert!(stderr_of(&a).contains("session"), "{}", stderr_of(&a));
        t.cachectl(&["stats", "--session", bad]).assert().code(2);
    }
    let long = "x".repeat(201);
    t.run(&["--session", &long, "--", "true"]).assert().code(2);
    // A bad variable is named as such.
    let a = t
        .run(&["--", "true"])
        .env("CACHECTL_SESSION", "a\tb")
        .assert()
        .code(2);
    assert!(
        stderr_of(&a).contains("CACHECTL_SESSION"),
        "{}",
        stderr_of(&a)
    );
    t.cachectl(&["stats", "--reset", "--session", "x"])
        .assert()
        .code(2);
}

#[test]
fn warm_records_its_runs_in_a_session() {
    let t = TestContext::new();
    t.counted("gen", "echo gen");
    t.write("warm.toml", "[[command]]\nrun = [\"./gen\"]\n");
    t.cachectl(&["warm", "--session", "nightly", "warm.toml"])
        .assert()
        .success();
    assert_eq!(t.count(), 1);
    let s = json(t.cachectl(&["stats", "--json", "--session", "nightly"]));
    assert_eq!((u(&s["misses"]), u(&s["stores"])), (1, 1), "{s:#}");
    // The variable works for warm too.
    t.hit(t.run(&["--", "./gen"]).env("CACHECTL_SESSION", "nightly"));
    let s = json(t.cachectl(&["stats", "--json", "--session", "nightly"]));
    assert_eq!(u(&s["hits"]), 1, "{s:#}");
}

/// Lookups of `./a` (stored once, then hits) and `./b`, `./c` ... misses, at `at`.
fn lookups(t: &TestContext, hits: usize, misses: usize, at: u64, tag: &str) {
    for i in 0..misses {
        t.miss(t.run(&["--", "./cmd", &format!("{tag}{i}")]).now(at));
    }
    for _ in 0..hits {
        t.run(&["--", "./cmd", "warm"]).now(at).assert().success();
    }
}

#[test]
fn the_trend_compares_the_last_day_with_the_week_before() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"");
    t.miss(t.run(&["--", "./cmd", "warm"]).now(T0 - 3 * DAY));
    // The week before: 1 miss above, then 3 hits and 0 more misses: 75%.
    lookups(&t, 3, 0, T0 - 3 * DAY, "old");
    // The last 24 hours: 1 hit, 2 misses: 33.3%.
    lookups(&t, 1, 2, T0 - HOUR, "new");

    let (code, s, _) = stats_at(&t, &[], T0);
    assert_eq!(code, 0);
    let trend = &s["trend"];
    assert_eq!(trend["direction"], "degrading", "{trend:#}");
    assert_eq!(u(&trend["recent"]["hits"]), 1);
    assert_eq!(u(&trend["previous"]["hits"]), 3);
    let change = trend["change_points"].as_f64().unwrap();
    assert!((change - (100.0 / 3.0 - 75.0)).abs() < 1e-9, "{trend:#}");

    let (code, s, err) = stats_at(&t, &["--fail-on-drop", "30"], T0);
    assert_eq!(code, 1, "{err}");
    assert_eq!(s["fail_on_drop"]["passed"], false, "{s:#}");
    assert_eq!(
        err.trim(),
        "cachectl: hit rate dropped 41.7 points: 33.3% in the last 24 hours against 75.0% in the 7 days before (--fail-on-drop 30)"
    );
    let (code, s, _) = stats_at(&t, &["--fail-on-drop", "45"], T0);
    assert_eq!(code, 0);
    assert_eq!(s["fail_on_drop"]["passed"], true, "{s:#}");

    let a = t.cachectl(&["stats"]).now(T0).assert().success();
    let out = String::from_utf8(stdout_of(&a)).unwrap();
    assert!(
        out.contains(
            "Trend            degrading: 33.3% in the last 24 hours against 75.0% in the 7 days before (-41.7 points)"
        ),
        "{out}"
    );

    // A day later the old window is 1 hit and 2 misses, the recent one empty: unknown, and the
    // gate says it cannot judge rather than fail.
    let (code, s, err) = stats_at(&t, &["--fail-on-drop", "1"], T0 + DAY);
    assert_eq!(code, 0, "{err}");
    assert_eq!(s["trend"]["direction"], "unknown");
    assert!(s["fail_on_drop"]["drop_points"].is_null(), "{s:#}");
    assert!(
        err.contains("--fail-on-drop: nothing to compare (no lookups in the last 24 hours)"),
        "{err}"
    );
    // Improving: the recent day better than the week before.
    lookups(&t, 5, 0, T0 + DAY, "x");
    let (_, s, _) = stats_at(&t, &[], T0 + DAY + HOUR);
    assert_eq!(s["trend"]["direction"], "improving", "{s:#}");
    for bad in ["-1", "101", "many"] {
        t.cachectl(&["stats", "--fail-on-drop", bad])
            .assert()
            .code(2);
    }
}

#[test]
fn a_session_trend_compares_the_build_with_the_week_before_it() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"");
    t.miss(t.run(&["--", "./cmd", "warm"]).now(T0 - 2 * DAY));
    lookups(&t, 9, 0, T0 - 2 * DAY, "old");
    // The build: 1 hit and 1 miss, 50% against 90%.
    t.run(&["--session", "ci", "--", "./cmd", "warm"])
        .now(T0)
        .assert()
        .success();
    t.miss(t.run(&["--session", "ci", "--", "./cmd", "new"]).now(T0));
    let (code, s, err) = stats_at(&t, &["--session", "ci", "--fail-on-drop", "20"], T0);
    assert_eq!(code, 1, "{s:#}");
    assert!(
        err.contains("50.0% in session ci against 90.0% in the 7 days before"),
        "{err}"
    );
    // `--since` narrows the figures, not the session the trend compares.
    let (code, s, _) = stats_at(
        &t,
        &["--session", "ci", "--since", "1h", "--fail-on-drop", "20"],
        T0 + 3 * HOUR,
    );
    assert_eq!(code, 1, "{s:#}");
    assert_eq!(s["trend"]["direction"], "degrading", "{s:#}");
    assert_eq!(u(&s["hits"]) + u(&s["misses"]), 0, "{s:#}");
    // Flat is no drop, even against 0 points.
    let flat = TestContext::new();
    flat.counted("cmd", "echo \"$1\"");
    flat.miss(flat.run(&["--", "./cmd", "a"]).now(T0 - 2 * DAY));
    flat.miss(flat.run(&["--", "./cmd", "b"]).now(T0 - HOUR));
    let (code, s, _) = stats_at(&flat, &["--fail-on-drop", "0"], T0);
    assert_eq!(
        (code, &s["trend"]["change_points"]),
        (0, &serde_json::json!(0.0))
    );
}

#[test]
fn misses_of_evicted_entries_count_as_hits_lost_to_eviction() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"");
    t.miss(t.run(&["--", "./cmd", "old"]).now(T0 - 3 * HOUR));
    t.miss(t.run(&["--", "./cmd", "kept"]).now(T0 - 10 * MIN));
    t.miss(t.run(&["--", "./cmd", "dropped"]).now(T0 - 5 * MIN));
    t.cachectl(&["gc", "--max-age", "1h"])
        .now(T0)
        .assert()
        .success();
    // Evicted by age, then missed: one hit lost, counted once.
    t.miss(
        t.run(&["--session", "s", "--", "./cmd", "old"])
            .now(T0 + MIN),
    );
    t.hit(t.run(&["--", "./cmd", "old"]).now(T0 + 2 * MIN));
    // Removed by the user: that miss was asked for.
    t.cachectl(&["invalidate", "./cmd dropped"])
        .now(T0)
        .assert()
        .success();
    t.miss(t.run(&["--", "./cmd", "dropped"]).now(T0 + 3 * MIN));
    let (_, s, _) = stats_at(&t, &[], T0 + 4 * MIN);
    assert_eq!(
        s["lost_to_eviction"],
        serde_json::json!({"max_age": 1}),
        "{s:#}"
    );
    let (_, s, _) = stats_at(&t, &["--session", "s"], T0 + 4 * MIN);
    assert_eq!(
        s["lost_to_eviction"],
        serde_json::json!({"max_age": 1}),
        "{s:#}"
    );

    // Evicted for room: the hint says a larger max_size would have kept them.
    t.cachectl(&["gc", "--max-size", "1"])
        .now(T0 + 5 * MIN)
        .assert()
        .success();
    t.miss(t.run(&["--", "./cmd", "kept"]).now(T0 + 6 * MIN));
    t.miss(t.run(&["--", "./cmd", "old"]).now(T0 + 6 * MIN));
    let a = t.cachectl(&["stats"]).now(T0 + 7 * MIN).assert().success();
    let out = String::from_utf8(stdout_of(&a)).unwrap();
    assert!(
        out.contains(
            "Lost to eviction 3 misses (evicted by max_age: 1, max_size: 2); a larger max_size or a longer gc --max-age would have turned them into hits"
        ),
        "{out}"
    );
    // Nothing lost, nothing said.
    let fresh = TestContext::new();
    let a = fresh.cachectl(&["stats"]).assert().success();
    assert!(
        !String::from_utf8(stdout_of(&a))
            .unwrap()
            .contains("Lost to eviction")
    );
}

#[test]
fn the_history_is_a_bar_chart_coloured_only_on_a_terminal() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"");
    t.miss(t.run(&["--", "./cmd", "a"]).now(T0 - 2 * DAY));
    t.hit(t.run(&["--", "./cmd", "a"]).now(T0 - 2 * DAY + MIN));
    t.hit(t.run(&["--", "./cmd", "a"]).now(T0));
    let a = t.cachectl(&["stats"]).now(T0).assert().success();
    let out = String::from_utf8(stdout_of(&a)).unwrap();
    let chart: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("History"))
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        chart[0], "History (per day: hit rate, lookups, time saved)",
        "{out}"
    );
    // Every calendar day, the one without activity too: the hit-rate bar is 20 characters
    // (full = 100%), then the rate, the lookups, and a time-saved bar.
    assert_eq!(chart.len(), 4, "{out}");
    let row = |date: &str, bar: &str, rate: &str, lookups: u32| {
        format!("  {date}  {bar:<20} {rate:>4} {lookups:>8}  ")
    };
    assert!(
        chart[1].starts_with(&row("2023-11-12", &"█".repeat(10), "50%", 2)),
        "{out}"
    );
    assert!(
        chart[2].starts_with(&row("2023-11-13", "", "-", 0)),
        "{out}"
    );
    assert!(
        chart[3].starts_with(&row("2023-11-14", &"█".repeat(20), "100%", 1)),
        "{out}"
    );
    assert!(!out.contains('\x1b'), "no colour into a pipe: {out:?}");

    // On a terminal (script(1) gives the command one), colour; with NO_COLOR, none.
    let on_tty = |no_color: Option<&str>| {
        let cmd = format!("{} stats", env!("CARGO_BIN_EXE_cachectl"));
        let mut run = t
            .cachectl(&[])
            .now(T0)
            .program("script", &["-qec", &cmd, "/dev/null"]);
        if let Some(v) = no_color {
            run = run.env("NO_COLOR", v);
        }
        let out = run.output();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_tty(None);
    assert!(coloured.contains("\x1b[32m██"), "{coloured:?}");
    let plain = on_tty(Some("1"));
    assert!(plain.contains("History"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
}

#[test]
fn the_markdown_report_renders_in_a_job_summary() {
    let t = TestContext::new();
    t.counted("cmd", "echo \"$1\"");
    t.miss(t.run(&["--session", "ci-1", "--", "./cmd", "a|b"]).now(T0));
    t.hit(
        t.run(&["--session", "ci-1", "--", "./cmd", "a|b"])
            .now(T0 + MIN),
    );
    let a = t
        .cachectl(&[
            "stats",
            "--format",
            "markdown",
            "--session",
            "ci-1",
            "--fail-under",
            "40",
        ])
        .now(T0 + 2 * MIN)
        .assert()
        .success();
    let md = String::from_utf8(stdout_of(&a)).unwrap();
    let expected_lines = [
        "## cachectl",
        "**Hit rate 50.0%** (1 of 2 lookups, session `ci-1`), **",
        "- `--fail-under 40`: passed",
        "| Session | ci-1: 2023-11-14T22:13:20.000Z to 2023-11-14T22:14:20.000Z |",
        "| Hits | 1 |",
        "### Top commands",
        "| command | hits | misses | time saved | entries | size |",
        "| `./cmd a\\|b` | 1 | 1 | ",
        "### Slowest misses",
        "### History",
        "| 2023-11-14 | █████ | 50% | 2 | ",
    ];
    for line in expected_lines {
        assert!(
            md.lines().any(|l| l.starts_with(line)),
            "no line {line:?} in\n{md}"
        );
    }
    // A table is a header, a delimiter row, then rows: every row has as many cells as its
    // header, so the renderer shows them all.
    for block in md.split("\n\n").filter(|b| b.starts_with('|')) {
        let cells = |l: &str| l.replace("\\|", "").matches('|').count();
        let lines: Vec<&str> = block.lines().collect();
        assert!(
            lines[1].starts_with("|--") || lines[1].starts_with("|---"),
            "{block}"
        );
        assert!(lines.iter().all(|l| cells(l) == cells(lines[0])), "{block}");
    }
    // --format json is --json.
    let s = json(t.cachectl(&["stats", "--format", "json"]).now(T0 + 2 * MIN));
    assert_eq!(u(&s["hits"]), 1);
    t.cachectl(&["stats", "--json", "--format", "markdown"])
        .assert()
        .code(2);
}
