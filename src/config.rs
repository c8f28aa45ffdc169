//! Settings from every source, resolved into one [`Config`] that remembers where each value came
//! from (`cachectl config` prints it).
//!
//! Precedence, lowest first: built-in defaults → user config (`$XDG_CONFIG_HOME/cachectl/
//! config.toml`) → the nearest `cachectl.toml` from the working directory upward → `CACHECTL_*`
//! env → flags. List settings (inputs, outputs, env, tags) accumulate across matching rules and
//! flags; scalar settings take the highest-precedence value.
//!
//! Every mistake in a file is a usage error naming the file, the line and the fix, reported
//! before anything runs. A project `cachectl.toml` that another user could have written (owned by
//! someone else, or world-writable) is refused, as ccache refuses unsafe per-directory config: it
//! decides what gets cached and replayed.

use crate::cli::RunArgs;
use crate::cli::units::{parse_duration, parse_size};
use crate::cmdline::CommandPattern;
use crate::error::usage;
use crate::key::ExeCheck;
use crate::located::TomlFile;
use anyhow::Result;
use serde::Deserialize;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

pub const PROJECT_FILE: &str = "cachectl.toml";
pub const DEFAULT_MAX_SIZE: u64 = 5 * 1024 * 1024 * 1024;
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File { path: PathBuf, line: usize },
    Env(&'static str),
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag => f.write_str("command line"),
        }
    }
}

/// A value and its origin.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    fn default(value: T) -> Self {
        Setting {
            value,
            source: Source::Default,
        }
    }
}

/// Per-command settings: the top level of a config file and each `[[rule]]` table.
#[derive(Debug, Clone, Default)]
pub struct RunSettings {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub env: Vec<String>,
    pub tags: Vec<String>,
    pub ttl: Option<Setting<Duration>>,
    pub stale: Option<Setting<Duration>>,
    pub namespace: Option<Setting<String>>,
    pub salt: Option<Setting<String>>,
    pub cache_failures: Option<Setting<bool>>,
    /// `false` = leave the working directory out of the key.
    pub cwd: Option<Setting<bool>>,
}

/// A `[[rule]]` table.
#[derive(Debug, Clone)]
pub struct Rule {
    pub pattern: CommandPattern,
    pub pattern_text: String,
    pub origin: Source,
    pub settings: RunSettings,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: Setting<Option<PathBuf>>,
    pub max_size: Setting<u64>,
    pub compression_level: Setting<i32>,
    pub lock_timeout: Setting<Duration>,
    pub exe_check: Setting<ExeCheck>,
    /// Print the one-line hit/miss note for every run.
    pub verbose: Setting<bool>,
    /// The remote tier: URL (none = no remote), mode, timeout, write namespace.
    pub remote_url: Setting<Option<String>>,
    pub remote_mode: Setting<crate::remote::Mode>,
    pub remote_timeout: Setting<Duration>,
    pub remote_namespace: Setting<Option<String>>,
    /// Top-level run defaults (they apply to every command; rules add to them).
    pub defaults: RunSettings,
    pub rules: Vec<Rule>,
    /// Per file, lowest precedence first: its top-level run settings and its rules.
    layers: Vec<(RunSettings, Vec<Rule>)>,
    /// Config files read, lowest precedence first.
    pub files: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

#[derive(Default)]
struct RawRunSettings {
    inputs: Vec<String>,
    outputs: Vec<String>,
    env: Vec<String>,
    tags: Vec<String>,
    ttl: Option<Spanned<String>>,
    stale: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
    salt: Option<Spanned<String>>,
    cache_failures: Option<Spanned<bool>>,
    cwd: Option<Spanned<bool>>,
}

/// A `[[rule]]` table: `match` plus the run settings (spelled out, since serde's `flatten`
/// would lose both spans and `deny_unknown_fields`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    outputs: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    ttl: Option<Spanned<String>>,
    stale: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
    salt: Option<Spanned<String>>,
    cache_failures: Option<Spanned<bool>>,
    cwd: Option<Spanned<bool>>,
}

/// `[remote]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    url: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    remote: Option<RawRemote>,
    dir: Option<Spanned<String>>,
    max_size: Option<Spanned<SizeValue>>,
    compression_level: Option<Spanned<i64>>,
    lock_timeout: Option<Spanned<String>>,
    exe_check: Option<Spanned<String>>,
    verbose: Option<Spanned<bool>>,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    outputs: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    ttl: Option<Spanned<String>>,
    stale: Option<Spanned<String>>,
    namespace: Option<Spanned<String>>,
    salt: Option<Spanned<String>>,
    cache_failures: Option<Spanned<bool>>,
    cwd: Option<Spanned<bool>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

/// Turns spans into `file:line` sources and located usage errors.
struct Located<'a>(TomlFile<'a>);

impl Located<'_> {
    fn source(&self, offset: usize) -> Source {
        Source::File {
            path: self.0.path.to_path_buf(),
            line: self.0.line(offset),
        }
    }
    fn error(&self, offset: usize, msg: &str) -> anyhow::Error {
        self.0.error(offset, msg)
    }
    fn setting<S, T>(&self, s: &Spanned<S>, value: T) -> Setting<T> {
        Setting {
            value,
            source: self.source(s.span().start),
        }
    }
    fn duration(
        &self,
        s: &Option<Spanned<String>>,
        key: &str,
    ) -> Result<Option<Setting<Duration>>> {
        s.as_ref()
            .map(|v| {
                let d = parse_duration(v.get_ref())
                    .map_err(|e| self.error(v.span().start, &format!("`{key}`: {e}")))?;
                Ok(self.setting(v, d))
            })
            .transpose()
    }
    fn string(&self, s: &Option<Spanned<String>>) -> Option<Setting<String>> {
        s.as_ref().map(|v| self.setting(v, v.get_ref().clone()))
    }
    fn boolean(&self, s: &Option<Spanned<bool>>) -> Option<Setting<bool>> {
        s.as_ref().map(|v| self.setting(v, *v.get_ref()))
    }
}

impl Config {
    /// The remote tier in use, with `mode` (from `--remote`) overriding the configured mode;
    /// `None` when no URL is configured or the mode is `off`.
    pub fn remote(&self, mode: Option<crate::remote::Mode>) -> Option<crate::remote::Remote> {
        let url = self.remote_url.value.clone()?;
        let mode = mode.unwrap_or(self.remote_mode.value);
        (mode != crate::remote::Mode::Off).then(|| crate::remote::Remote {
            url,
            mode,
            timeout: self.remote_timeout.value,
            namespace: self.remote_namespace.value.clone(),
        })
    }

    fn builtin() -> Config {
        Config {
            dir: Setting::default(crate::store::default_root()),
            max_size: Setting::default(DEFAULT_MAX_SIZE),
            compression_level: Setting::default(DEFAULT_COMPRESSION_LEVEL),
            lock_timeout: Setting::default(DEFAULT_LOCK_TIMEOUT),
            exe_check: Setting::default(ExeCheck::Content),
            verbose: Setting::default(false),
            remote_url: Setting::default(None),
            remote_mode: Setting::default(crate::remote::Mode::Rw),
            remote_timeout: Setting::default(crate::remote::DEFAULT_TIMEOUT),
            remote_namespace: Setting::default(None),
            defaults: RunSettings::default(),
            rules: Vec::new(),
            layers: Vec::new(),
            files: Vec::new(),
        }
    }

    /// Load every source for a command run in `cwd`. `cli_dir` is `--dir`/`CACHECTL_DIR` with
    /// its source as clap saw it.
    pub fn load(cwd: &Path, cli_dir: Option<(PathBuf, Source)>) -> Result<Config> {
        let mut cfg = Config::builtin();
        if let Some(user) = user_config_path()
            && user.is_file()
        {
            cfg.apply_file(&user, false)?;
        }
        if let Some(project) = find_project_file(cwd) {
            cfg.apply_file(&project, true)?;
        }
        cfg.apply_env()?;
        if let Some((dir, source)) = cli_dir {
            cfg.dir = Setting {
                value: Some(cwd.join(dir)),
                source,
            };
        }
        Ok(cfg)
    }

    fn apply_file(&mut self, path: &Path, check_owner: bool) -> Result<()> {
        if check_owner {
            check_file_safe(path)?;
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("{}: cannot read config: {e}", path.display())))?;
        let loc = Located(TomlFile {
            path,
            text: &text,
            hint: "every key is described in cachectl.toml.example",
        });
        let raw: RawFile = loc.0.parse()?;
        tracing::debug!(file = %path.display(), "config file read");
        self.files.push(path.to_path_buf());
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(d) = &raw.dir {
            self.dir = loc.setting(d, Some(base.join(expand_home(d.get_ref()))));
        }
        if let Some(s) = &raw.max_size {
            let v = match s.get_ref() {
                SizeValue::Bytes(n) => *n,
                SizeValue::Text(t) => parse_size(t)
                    .map_err(|e| loc.error(s.span().start, &format!("`max_size`: {e}")))?,
            };
            self.max_size = loc.setting(s, v);
        }
        if let Some(l) = &raw.compression_level {
            let v = *l.get_ref();
            if !(1..=19).contains(&v) {
                return Err(loc.error(
                    l.span().start,
                    "`compression_level` must be between 1 and 19",
                ));
            }
            self.compression_level = loc.setting(l, v as i32);
        }
        if let Some(d) = loc.duration(&raw.lock_timeout, "lock_timeout")? {
            self.lock_timeout = d;
        }
        if let Some(e) = &raw.exe_check {
            let v = ExeCheck::parse(e.get_ref()).ok_or_else(|| {
                loc.error(
                    e.span().start,
                    "`exe_check` must be one of \"content\", \"mtime\", \"none\"",
                )
            })?;
            self.exe_check = loc.setting(e, v);
        }
        if let Some(r) = &raw.remote {
            if let Some(u) = &r.url {
                self.remote_url = loc.setting(u, Some(u.get_ref().clone()));
            }
            if let Some(m) = &r.mode {
                let mode = crate::remote::Mode::parse(m.get_ref()).ok_or_else(|| {
                    loc.error(
                        m.span().start,
                        "`remote.mode` must be one of \"rw\", \"ro\", \"off\"",
                    )
                })?;
                self.remote_mode = loc.setting(m, mode);
            }
            if let Some(t) = loc.duration(&r.timeout, "remote.timeout")? {
                self.remote_timeout = t;
            }
            if let Some(n) = &r.namespace {
                self.remote_namespace = loc.setting(n, Some(n.get_ref().clone()));
            }
        }
        if let Some(v) = &raw.verbose {
            self.verbose = loc.setting(v, *v.get_ref());
        }
        let top = RawRunSettings {
            inputs: raw.inputs,
            outputs: raw.outputs,
            env: raw.env,
            tags: raw.tags,
            ttl: raw.ttl,
            stale: raw.stale,
            namespace: raw.namespace,
            salt: raw.salt,
            cache_failures: raw.cache_failures,
            cwd: raw.cwd,
        };
        let top = run_settings(&loc, &top)?;
        overlay(&mut self.defaults, top.clone());
        let mut layer_rules = Vec::new();
        for r in raw.rule {
            let span = r.span();
            let rule = r.into_inner();
            let pattern = CommandPattern::new(rule.pattern.get_ref())
                .map_err(|e| loc.error(rule.pattern.span().start, &format!("`match`: {e:#}")))?;
            layer_rules.push(Rule {
                pattern,
                pattern_text: rule.pattern.get_ref().clone(),
                origin: loc.source(span.start),
                settings: run_settings(
                    &loc,
                    &RawRunSettings {
                        inputs: rule.inputs,
                        outputs: rule.outputs,
                        env: rule.env,
                        tags: rule.tags,
                        ttl: rule.ttl,
                        stale: rule.stale,
                        namespace: rule.namespace,
                        salt: rule.salt,
                        cache_failures: rule.cache_failures,
                        cwd: rule.cwd,
                    },
                )?,
            });
        }
        self.rules.extend(layer_rules.iter().cloned());
        self.layers.push((top, layer_rules));
        Ok(())
    }

    fn apply_env(&mut self) -> Result<()> {
        use crate::remote::Mode;
        let level = |v: &str| {
            v.parse::<i32>()
                .ok()
                .filter(|l| (1..=19).contains(l))
                .ok_or_else(|| format!("`{v}` is not a level from 1 to 19"))
        };
        let mode =
            |v: &str| Mode::parse(v).ok_or_else(|| format!("`{v}` is not one of rw, ro, off"));
        let exe = |v: &str| {
            ExeCheck::parse(v).ok_or_else(|| format!("`{v}` is not one of content, mtime, none"))
        };
        let text = |v: &str| Ok::<_, String>(Some(v.to_owned()));
        env_setting(&mut self.max_size, "CACHECTL_MAX_SIZE", parse_size)?;
        env_setting(
            &mut self.compression_level,
            "CACHECTL_COMPRESSION_LEVEL",
            level,
        )?;
        env_setting(
            &mut self.lock_timeout,
            "CACHECTL_LOCK_TIMEOUT",
            parse_duration,
        )?;
        env_setting(&mut self.remote_url, "CACHECTL_REMOTE", text)?;
        env_setting(&mut self.remote_mode, "CACHECTL_REMOTE_MODE", mode)?;
        env_setting(
            &mut self.remote_timeout,
            "CACHECTL_REMOTE_TIMEOUT",
            parse_duration,
        )?;
        env_setting(
            &mut self.remote_namespace,
            "CACHECTL_REMOTE_NAMESPACE",
            text,
        )?;
        env_setting(&mut self.exe_check, "CACHECTL_EXE_CHECK", exe)?;
        Ok(())
    }
}

/// Override `setting` from the env var `name` when it is set and not empty; a value `parse`
/// rejects is a usage error naming the variable.
fn env_setting<T>(
    setting: &mut Setting<T>,
    name: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<()> {
    if let Some(v) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        let value =
            parse(&v).map_err(|e| usage(format!("{name}: {e}; fix: correct or unset {name}")))?;
        *setting = Setting {
            value,
            source: Source::Env(name),
        };
    }
    Ok(())
}

fn run_settings(loc: &Located, raw: &RawRunSettings) -> Result<RunSettings> {
    let ttl = loc.duration(&raw.ttl, "ttl")?;
    let stale = loc.duration(&raw.stale, "stale")?;
    Ok(RunSettings {
        inputs: raw.inputs.clone(),
        outputs: raw.outputs.clone(),
        env: raw.env.clone(),
        tags: raw.tags.clone(),
        ttl,
        stale,
        namespace: loc.string(&raw.namespace),
        salt: loc.string(&raw.salt),
        cache_failures: loc.boolean(&raw.cache_failures),
        cwd: loc.boolean(&raw.cwd),
    })
}

/// Lay `top` over `base`: lists accumulate, scalars present in `top` win.
fn overlay(base: &mut RunSettings, top: RunSettings) {
    base.inputs.extend(top.inputs);
    base.outputs.extend(top.outputs);
    base.env.extend(top.env);
    base.tags.extend(top.tags);
    base.ttl = top.ttl.or(base.ttl.take());
    base.stale = top.stale.or(base.stale.take());
    base.namespace = top.namespace.or(base.namespace.take());
    base.salt = top.salt.or(base.salt.take());
    base.cache_failures = top.cache_failures.or(base.cache_failures.take());
    base.cwd = top.cwd.or(base.cwd.take());
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// `$XDG_CONFIG_HOME/cachectl/config.toml`, else `~/.config/cachectl/config.toml`.
pub fn user_config_path() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("cachectl").join("config.toml"));
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty())?;
    Some(
        PathBuf::from(home)
            .join(".config")
            .join("cachectl")
            .join("config.toml"),
    )
}

/// The nearest `cachectl.toml` in `cwd` or one of its ancestors.
pub fn find_project_file(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .map(|d| d.join(PROJECT_FILE))
        .find(|p| p.is_file())
}

fn check_file_safe(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(usage(format!(
            "{}: refusing to read a config file owned by another user (uid {}); fix: remove it or chown it to yourself",
            path.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o002 != 0 {
        return Err(usage(format!(
            "{}: refusing to read a world-writable config file; fix: chmod o-w {}",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

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
    /// The remote tier, if one is configured and not off.
    pub remote: Option<crate::remote::Remote>,
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
        let outputs = crate::outputs::validate_declared(&outputs)?;
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
            remote: cfg.remote(args.remote),
            matched_rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cachectl.toml");
        std::fs::write(&p, text).unwrap();
        let mut cfg = Config::builtin();
        cfg.apply_file(&p, false).map(|_| cfg)
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = load_text("max_size = \"1G\"\n\n[[rule]]\nmatch = \"x *\"\ninptus = [\"a\"]\n")
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("cachectl.toml:5"), "{msg}");
        assert!(msg.contains("inptus"), "{msg}");
        assert!(err.is::<crate::error::UsageError>());
    }

    #[test]
    fn bad_values_are_located() {
        let msg = format!("{:#}", load_text("\nttl = \"7x\"\n").unwrap_err());
        assert!(msg.contains(":2:") && msg.contains("ttl"), "{msg}");
        let msg = format!(
            "{:#}",
            load_text("compression_level = \"high\"\n").unwrap_err()
        );
        assert!(msg.contains(":1:"), "{msg}");
        let msg = format!("{:#}", load_text("max_size = \"lots\"\n").unwrap_err());
        assert!(msg.contains("max_size"), "{msg}");
    }

    #[test]
    fn rules_match_and_flags_add() {
        let cfg = load_text(
            "ttl = \"1h\"\n[[rule]]\nmatch = \"./resize *\"\ninputs = [\"lib\"]\nnamespace = \"img\"\ncache_failures = true\n",
        )
        .unwrap();
        let args = RunArgs {
            inputs: vec!["img.png".into()],
            command: vec!["./resize".into(), "img.png".into()],
            ..Default::default()
        };
        let o = RunOptions::resolve(&args, &cfg).unwrap();
        assert_eq!(o.inputs, ["lib", "img.png"]);
        assert_eq!(o.namespace, "img");
        assert!(o.cache_failures);
        assert_eq!(o.ttl, Some(Duration::from_secs(3600)));
        let other = RunArgs {
            command: vec!["./other".into()],
            ..Default::default()
        };
        assert_eq!(
            RunOptions::resolve(&other, &cfg).unwrap().namespace,
            "default"
        );
    }

    #[test]
    fn project_top_level_beats_a_user_rule() {
        let d = tempfile::tempdir().unwrap();
        let user = d.path().join("user.toml");
        let project = d.path().join("cachectl.toml");
        std::fs::write(
            &user,
            "[[rule]]\nmatch = \"*\"\nttl = \"1h\"\nnamespace = \"u\"\n",
        )
        .unwrap();
        std::fs::write(&project, "ttl = \"1d\"\n").unwrap();
        let mut cfg = Config::builtin();
        cfg.apply_file(&user, false).unwrap();
        cfg.apply_file(&project, false).unwrap();
        let args = RunArgs {
            command: vec!["x".into()],
            ..Default::default()
        };
        let o = RunOptions::resolve(&args, &cfg).unwrap();
        assert_eq!(o.ttl, Some(Duration::from_secs(86_400)));
        assert_eq!(
            o.namespace, "u",
            "what the project does not set, the user rule still sets"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("500MiB").unwrap(), 500 * 1024 * 1024);
        assert_eq!(parse_size("5G").unwrap(), 5_000_000_000);
        assert!(parse_size("big").is_err());
    }
}

/// The reference docs must name every key the config files accept (issue 8: a test fails if a
/// key is undocumented). The keys are taken from the real structs, through the error that
/// `deny_unknown_fields` gives for an unknown one.
#[cfg(test)]
mod documented {
    use super::*;

    fn accepted_keys(toml_text: &str) -> Vec<String> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cachectl.toml");
        std::fs::write(&p, toml_text).unwrap();
        let msg = format!("{:#}", Config::builtin().apply_file(&p, false).unwrap_err());
        let list = msg
            .split("expected one of")
            .nth(1)
            .expect("serde lists the fields");
        let list = list.lines().next().unwrap();
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_config_key_is_documented() {
        let root = env!("CARGO_MANIFEST_DIR");
        let reference = std::fs::read_to_string(format!("{root}/docs/configuration.md")).unwrap();
        let example = std::fs::read_to_string(format!("{root}/cachectl.toml.example")).unwrap();
        let tables = [
            ("top level", "bogus_key = 1\n"),
            ("[[rule]]", "[[rule]]\nmatch = \"x\"\nbogus_key = 1\n"),
            ("[remote]", "[remote]\nbogus_key = 1\n"),
        ];
        for (table, text) in tables {
            let keys = accepted_keys(text);
            assert!(keys.len() > 3, "{table}: {keys:?}");
            for key in keys {
                let quoted = format!("`{key}`");
                let documented = [
                    quoted.clone(),
                    format!("{key} ="),
                    format!("`[{key}]`"),
                    format!("`[[{key}]]`"),
                ]
                .iter()
                .any(|form| reference.contains(form.as_str()));
                assert!(
                    documented,
                    "{table} key `{key}` is not documented in docs/configuration.md"
                );
                assert!(
                    example.contains(&format!("{key} ="))
                        || example.contains(&format!("[{key}]"))
                        || example.contains(&format!("[[{key}]]")),
                    "{table} key `{key}` is missing from cachectl.toml.example"
                );
            }
        }
    }
}
