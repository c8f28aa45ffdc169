//! The options of one `run`: flags over matching rules over defaults.

use super::*;

/// The options of one `run`, resolved from flags, matching rules and defaults.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub argv: Vec<OsString>,
    pub command_line: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<PathBuf>,
    pub env: Vec<String>,
    pub tags: Vec<String>,
    pub namespace: String,
    pub salt: String,
    pub ttl: Option<Duration>,
    pub stale: Option<Duration>,
    pub key_cwd: bool,
    pub stdin: bool,
    pub cache_failures: bool,
    pub force: bool,
    pub no_store: bool,
    pub explain: bool,
    pub verbose: bool,
    pub exe_check: ExeCheck,
    pub lock_timeout: Duration,
    pub compression_level: i32,
    /// Above this total a store starts a background gc.
    pub max_size: u64,
    /// `--max-entry-size` over `max_entry_size`: larger results are not stored.
    pub max_entry_size: Option<u64>,
    /// The remote tier, if one is configured and not off.
    pub remote: Option<Remote>,
    /// The build this run belongs to (`--session`, `CACHECTL_SESSION`).
    pub session: Option<String>,
    /// `--trace` over `trace` in config: whether a miss runs under the tracer.
    pub trace: crate::cli::TraceMode,
    /// `trace_ignore` globs from config: observed paths they match are not keyed.
    pub trace_ignore: Vec<String>,
    /// Where each matched rule was defined (for `cachectl config -- CMD` and `--explain`).
    pub matched_rules: Vec<String>,
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter().filter(|x| seen.insert(x.clone())).collect()
}

impl RunOptions {
    pub fn resolve(args: &RunArgs, cfg: &Config) -> Result<RunOptions> {
        let command_line = crate::cmdline::display(&args.command);
        // Layer by layer (user config, then project config): its top-level settings, then its
        // matching rules. A project's settings thus beat any user-wide rule.
        let mut s = RunSettings::default();
        let mut matched_rules = Vec::new();
        for (top, rules) in &cfg.layers {
            overlay(&mut s, top.clone());
            for rule in rules.iter().filter(|r| r.pattern.matches(&command_line)) {
                matched_rules.push(format!("{} (match = {:?})", rule.origin, rule.pattern_text));
                overlay(&mut s, rule.settings.clone());
            }
        }
        let inputs = dedup(
            s.inputs
                .into_iter()
                .chain(args.inputs.iter().cloned())
                .collect(),
        );
        let outputs = dedup(
            s.outputs
                .into_iter()
                .chain(args.outputs.iter().cloned())
                .collect(),
        );
        let outputs = validate_declared(&outputs)?;
        let ttl = args.ttl.or(s.ttl.map(|t| t.value));
        let stale = args.stale.or(s.stale.map(|t| t.value));
        if stale.is_some() && ttl.is_none() {
            return Err(usage(
                "--stale needs --ttl: an entry is stale between --stale and --ttl (fix: add --ttl, e.g. --ttl 1d --stale 1h)",
            ));
        }
        if let (Some(st), Some(tt)) = (stale, ttl)
            && st >= tt
        {
            return Err(usage(format!(
                "--stale ({}) must be shorter than --ttl ({}); fix: lower --stale or raise --ttl",
                humantime::format_duration(st),
                humantime::format_duration(tt)
            )));
        }
        for pattern in args.env.iter().chain(&s.env) {
            if pattern.is_empty() || pattern.contains('=') {
                return Err(usage(format!(
                    "--env `{pattern}` is not a variable name or glob; fix: give the name only, e.g. -e CC"
                )));
            }
        }
        Ok(RunOptions {
            argv: args.command.clone(),
            command_line,
            inputs,
            outputs,
            env: dedup(s.env.into_iter().chain(args.env.iter().cloned()).collect()),
            tags: dedup(
                s.tags
                    .into_iter()
                    .chain(args.tags.iter().cloned())
                    .collect(),
            ),
            namespace: args
                .namespace
                .clone()
                .or(s.namespace.map(|n| n.value))
                .unwrap_or_else(|| "default".to_owned()),
            salt: args
                .salt
                .clone()
                .or(s.salt.map(|n| n.value))
                .unwrap_or_default(),
            ttl,
            stale,
            key_cwd: !args.no_cwd && s.cwd.map(|c| c.value).unwrap_or(true),
            stdin: args.stdin,
            cache_failures: args.cache_failures
                || s.cache_failures.map(|c| c.value).unwrap_or(false),
            force: args.force,
            no_store: args.no_store,
            explain: args.explain,
            verbose: args.verbose || cfg.verbose.value,
            exe_check: cfg.exe_check.value,
            lock_timeout: cfg.lock_timeout.value,
            compression_level: cfg.compression_level.value,
            max_size: cfg.max_size.value,
            max_entry_size: args.max_entry_size.or(cfg.max_entry_size.value),
            remote: cfg.remote(args.remote),
            session: args.session.clone(),
            trace: args.trace.or(s.trace.map(|t| t.value)).unwrap_or_default(),
            trace_ignore: dedup(s.trace_ignore),
            matched_rules,
        })
    }
}
