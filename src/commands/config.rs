//! `cachectl config`: the resolved configuration and the source of every value.

use crate::cli::{ConfigArgs, RunArgs};
use crate::config::{Config, RunOptions, RunSettings, Setting, Source};
use anyhow::{Context, Result};
use clap::Parser;
use std::fmt::Write;
use std::path::PathBuf;

pub fn run(dir: Option<(PathBuf, Source)>, args: &ConfigArgs) -> Result<i32> {
    let cwd = std::env::current_dir().context("cannot determine the working directory")?;
    let cfg = Config::load(&cwd, dir)?;
    let mut out = String::new();
    out.push_str("Configuration files (lowest precedence first):\n");
    if cfg.files.is_empty() {
        out.push_str("  (none)\n");
    }
    for f in &cfg.files {
        let _ = writeln!(out, "  {}", f.display());
    }
    out.push_str("\nSettings:\n");
    let dir = Setting {
        value: cfg
            .dir
            .value
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "(none: set CACHECTL_DIR or HOME)".into()),
        source: cfg.dir.source.clone(),
    };
    row(&mut out, "dir", &dir);
    row(
        &mut out,
        "max_size",
        &map(&cfg.max_size, |v| {
            bytesize::ByteSize(*v).display().iec().to_string()
        }),
    );
    row(
        &mut out,
        "max_entry_size",
        &map(&cfg.max_entry_size, |v| match v {
            Some(v) => bytesize::ByteSize(*v).display().iec().to_string(),
            None => "none".to_owned(),
        }),
    );
    row(
        &mut out,
        "gc_policy",
        &map(&cfg.gc_policy, |v| v.as_str().to_owned()),
    );
    row(
        &mut out,
        "compression_level",
        &map(&cfg.compression_level, |v| v.to_string()),
    );
    row(
        &mut out,
        "lock_timeout",
        &map(&cfg.lock_timeout, |v| {
            humantime::format_duration(*v).to_string()
        }),
    );
    row(
        &mut out,
        "exe_check",
        &map(&cfg.exe_check, |v| v.as_str().to_owned()),
    );
    row(&mut out, "verbose", &map(&cfg.verbose, |v| v.to_string()));
    row(
        &mut out,
        "remote.url",
        &map(&cfg.remote_url, |v| {
            v.as_deref()
                .map(crate::remote::redact)
                .unwrap_or_else(|| "(none)".into())
        }),
    );
    row(
        &mut out,
        "remote.mode",
        &map(&cfg.remote_mode, |v| v.as_str().to_owned()),
    );
    row(
        &mut out,
        "remote.timeout",
        &map(&cfg.remote_timeout, |v| {
            humantime::format_duration(*v).to_string()
        }),
    );
    row(
        &mut out,
        "remote.namespace",
        &map(&cfg.remote_namespace, |v| {
            v.clone().unwrap_or_else(|| "(none)".into())
        }),
    );
    settings_rows(&mut out, &cfg.defaults);
    lists(&mut out, &cfg.defaults, "  ");

    out.push_str("\nRules:\n");
    if cfg.rules.is_empty() {
        out.push_str("  (none)\n");
    }
    for r in &cfg.rules {
        let _ = writeln!(out, "  {}  match = {:?}", r.origin, r.pattern_text);
        describe_lists(&mut out, &r.settings);
    }

    if !args.command.is_empty() {
        // Parse as `cachectl run -- CMD` would be, so CACHECTL_* settings count too.
        let mut argv: Vec<std::ffi::OsString> = vec!["cachectl".into(), "run".into(), "--".into()];
        argv.extend(args.command.iter().cloned());
        let run_args: RunArgs = match crate::cli::Cli::try_parse_from(argv) {
            Ok(crate::cli::Cli {
                command: crate::cli::Command::Run(a),
                ..
            }) => a,
            Ok(_) => unreachable!("parsed as run"),
            Err(e) => {
                let msg = crate::cli::variable_error(&e).unwrap_or_else(|| {
                    let text = e.to_string();
                    text.trim_start_matches("error: ").trim_end().to_owned()
                });
                return Err(crate::error::usage(msg));
            }
        };
        let o = RunOptions::resolve(&run_args, &cfg)?;
        let _ = writeln!(out, "\nFor `{}`:", o.command_line);
        if o.matched_rules.is_empty() {
            out.push_str("  matching rules: (none)\n");
        }
        for m in &o.matched_rules {
            let _ = writeln!(out, "  matching rule: {m}");
        }
        let list = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_owned()
            } else {
                v.join(", ")
            }
        };
        let outs: Vec<String> = o.outputs.iter().map(|p| p.display().to_string()).collect();
        let _ = writeln!(out, "  inputs:    {}", list(&o.inputs));
        let _ = writeln!(out, "  outputs:   {}", list(&outs));
        let _ = writeln!(out, "  env:       {}", list(&o.env));
        let _ = writeln!(out, "  tags:      {}", list(&o.tags));
        let _ = writeln!(out, "  namespace: {}", o.namespace);
        let _ = writeln!(out, "  salt:      {:?}", o.salt);
        let dur = |d: Option<std::time::Duration>| {
            d.map(|d| humantime::format_duration(d).to_string())
                .unwrap_or_else(|| "(none)".into())
        };
        let _ = writeln!(out, "  ttl:       {}", dur(o.ttl));
        let _ = writeln!(out, "  stale:     {}", dur(o.stale));
        let _ = writeln!(out, "  cwd keyed: {}", o.key_cwd);
        let _ = writeln!(out, "  cache_failures: {}", o.cache_failures);
        let _ = writeln!(out, "  trace:     {}", o.trace.as_str());
    }
    print!("{out}");
    Ok(0)
}

fn map<T>(s: &Setting<T>, f: impl Fn(&T) -> String) -> Setting<String> {
    Setting {
        value: f(&s.value),
        source: s.source.clone(),
    }
}

fn row(out: &mut String, name: &str, s: &Setting<String>) {
    let _ = writeln!(out, "  {name:<18} {:<40} ({})", s.value, s.source);
}

fn settings_rows(out: &mut String, s: &RunSettings) {
    let dur = |d: &Option<Setting<std::time::Duration>>, name: &str, out: &mut String| match d {
        Some(d) => row(
            out,
            name,
            &map(d, |v| humantime::format_duration(*v).to_string()),
        ),
        None => row(
            out,
            name,
            &Setting {
                value: "(none)".into(),
                source: Source::Default,
            },
        ),
    };
    dur(&s.ttl, "ttl", out);
    dur(&s.stale, "stale", out);
    let text = |v: &Option<Setting<String>>, name: &str, default: &str, out: &mut String| match v {
        Some(v) => row(out, name, &map(v, |s| format!("{s:?}"))),
        None => row(
            out,
            name,
            &Setting {
                value: format!("{default:?}"),
                source: Source::Default,
            },
        ),
    };
    text(&s.namespace, "namespace", "default", out);
    text(&s.salt, "salt", "", out);
    let flag = |v: &Option<Setting<bool>>, name: &str, default: bool, out: &mut String| match v {
        Some(v) => row(out, name, &map(v, |b| b.to_string())),
        None => row(
            out,
            name,
            &Setting {
                value: default.to_string(),
                source: Source::Default,
            },
        ),
    };
    flag(&s.cache_failures, "cache_failures", false, out);
    flag(&s.cwd, "cwd (in key)", true, out);
    let trace = match &s.trace {
        Some(t) => map(t, |m| m.as_str().to_owned()),
        None => Setting {
            value: crate::cli::TraceMode::default().as_str().to_owned(),
            source: Source::Default,
        },
    };
    row(out, "trace", &trace);
}

/// The list settings (inputs, outputs, env, tags) that are set.
fn lists(out: &mut String, s: &RunSettings, indent: &str) {
    for (name, v) in [
        ("inputs", &s.inputs),
        ("outputs", &s.outputs),
        ("env", &s.env),
        ("tags", &s.tags),
    ] {
        if !v.is_empty() {
            let _ = writeln!(out, "{indent}{name:<18} {v:?}");
        }
    }
}

fn describe_lists(out: &mut String, s: &RunSettings) {
    lists(out, s, "      ");
    for (name, v) in [("ttl", &s.ttl), ("stale", &s.stale)] {
        if let Some(d) = v {
            let _ = writeln!(
                out,
                "      {name} = {}",
                humantime::format_duration(d.value)
            );
        }
    }
    if let Some(n) = &s.namespace {
        let _ = writeln!(out, "      namespace = {:?}", n.value);
    }
    if let Some(n) = &s.salt {
        let _ = writeln!(out, "      salt = {:?}", n.value);
    }
    if let Some(b) = &s.cache_failures {
        let _ = writeln!(out, "      cache_failures = {}", b.value);
    }
    if let Some(b) = &s.cwd {
        let _ = writeln!(out, "      cwd = {}", b.value);
    }
    if let Some(t) = &s.trace {
        let _ = writeln!(out, "      trace = {:?}", t.value.as_str());
    }
}
