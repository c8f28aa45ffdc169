//! `cachectl remote check`: exit 0 when the remote works in its mode, 1 when it does not, 2
//! when none is configured.

use crate::cli::RemoteCommand;
use crate::config::Source;
use crate::error::usage;
use crate::ui;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Serialize)]
struct Report<'a> {
    url: String,
    mode: &'static str,
    timeout_ms: u64,
    namespace: Option<&'a str>,
    ok: bool,
    outcome: &'a crate::remote::Outcome,
}

pub fn run(dir: Option<(PathBuf, Source)>, cmd: &RemoteCommand) -> Result<i32> {
    let RemoteCommand::Check { json } = cmd;
    let (_, cfg) = super::load(dir)?;
    let Some(url) = cfg.remote_url.value.as_deref() else {
        return Err(usage(
            "no remote is configured; fix: set CACHECTL_REMOTE=<url> or `[remote] url = \"...\"` in cachectl.toml",
        ));
    };
    let Some(remote) = cfg.remote(None) else {
        return Err(usage(format!(
            "the remote {} is configured with mode off ({}); fix: set CACHECTL_REMOTE_MODE=rw or ro",
            crate::remote::redact(url),
            cfg.remote_mode.source
        )));
    };
    let root = cfg.dir.value.clone().unwrap_or_else(std::env::temp_dir);
    let outcome = crate::remote::call(&remote, &root, "check", &[]);
    let ok = outcome.status == crate::remote::Status::Ok;
    if *json {
        ui::print_json(&Report {
            url: remote.redacted_url(),
            mode: remote.mode.as_str(),
            timeout_ms: remote.timeout.as_millis() as u64,
            namespace: remote.namespace.as_deref(),
            ok,
            outcome: &outcome,
        })?;
    } else {
        println!(
            "Remote  {}  (mode {}, timeout {}{})",
            remote.redacted_url(),
            remote.mode.as_str(),
            humantime::format_duration(remote.timeout),
            remote
                .namespace
                .as_deref()
                .map(|n| format!(", namespace {n}"))
                .unwrap_or_default()
        );
        for s in &outcome.steps {
            let state = if s.ok { "ok" } else { "FAILED" };
            println!("  {:<7} {state:<6} {:>5} ms  {}", s.op, s.ms, s.message);
        }
        if ok {
            println!("OK: the remote works in {} mode.", remote.mode.as_str());
        } else if outcome.kind == crate::remote::FailureKind::Auth {
            println!(
                "FAILED (auth): the remote REFUSED THE CREDENTIALS ({}); fix AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the user:password in the URL",
                outcome.message
            );
        } else {
            println!("FAILED ({}): {}", outcome.kind, outcome.message);
        }
    }
    Ok(if ok { 0 } else { 1 })
}
