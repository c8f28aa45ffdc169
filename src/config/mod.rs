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

mod file;
pub mod remote;
mod run;
#[cfg(test)]
mod tests;

pub use remote::Remote;
pub use run::RunOptions;

use crate::cli::RunArgs;
use crate::cli::units::{parse_duration, parse_size};
use crate::cmdline::CommandPattern;
use crate::error::usage;
use crate::located::TomlFile;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

pub const PROJECT_FILE: &str = "cachectl.toml";
pub const DEFAULT_MAX_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// What gc evicts first by default (docs/benchmarks.md, "gc policy", measures both).
pub const DEFAULT_GC_POLICY: crate::cli::GcPolicy = crate::cli::GcPolicy::Value;
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

/// How the executable enters the key (`exe_check` in config).
#[derive(serde::Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExeCheck {
    /// Content digest of the resolved executable (through the stat cache).
    #[default]
    Content,
    /// Resolved path, size and mtime: cheaper, but machine-local.
    Mtime,
    /// Not at all.
    None,
}

impl ExeCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            ExeCheck::Content => "content",
            ExeCheck::Mtime => "mtime",
            ExeCheck::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "content" => Some(ExeCheck::Content),
            "mtime" => Some(ExeCheck::Mtime),
            "none" => Some(ExeCheck::None),
            _ => None,
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
    /// `trace = "auto" | "check" | "off"`.
    pub trace: Option<Setting<crate::cli::TraceMode>>,
    /// Globs of paths tracing leaves out of the key (relative ones: to the working directory).
    pub trace_ignore: Vec<String>,
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
    /// A result larger than this (stored bytes) is not stored; `None`: no limit.
    pub max_entry_size: Setting<Option<u64>>,
    /// What gc evicts first to get under `max_size`.
    pub gc_policy: Setting<crate::cli::GcPolicy>,
    pub compression_level: Setting<i32>,
    pub lock_timeout: Setting<Duration>,
    pub exe_check: Setting<ExeCheck>,
    /// Print the one-line hit/miss note for every run.
    pub verbose: Setting<bool>,
    /// The remote tier: URL (none = no remote), mode, timeout, write namespace.
    pub remote_url: Setting<Option<String>>,
    pub remote_mode: Setting<crate::cli::RemoteMode>,
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

impl Config {
    /// The remote tier in use, with `mode` (from `--remote`) overriding the configured mode;
    /// `None` when no URL is configured or the mode is `off`.
    pub fn remote(&self, mode: Option<crate::cli::RemoteMode>) -> Option<Remote> {
        let url = self.remote_url.value.clone()?;
        let mode = mode.unwrap_or(self.remote_mode.value);
        (mode != crate::cli::RemoteMode::Off).then(|| Remote {
            url,
            mode,
            timeout: self.remote_timeout.value,
            namespace: self.remote_namespace.value.clone(),
        })
    }

    fn builtin() -> Config {
        Config {
            dir: Setting::default(default_root()),
            max_size: Setting::default(DEFAULT_MAX_SIZE),
            max_entry_size: Setting::default(None),
            gc_policy: Setting::default(DEFAULT_GC_POLICY),
            compression_level: Setting::default(DEFAULT_COMPRESSION_LEVEL),
            lock_timeout: Setting::default(DEFAULT_LOCK_TIMEOUT),
            exe_check: Setting::default(ExeCheck::Content),
            verbose: Setting::default(false),
            remote_url: Setting::default(None),
            remote_mode: Setting::default(crate::cli::RemoteMode::Rw),
            remote_timeout: Setting::default(remote::DEFAULT_TIMEOUT),
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

    fn apply_env(&mut self) -> Result<()> {
        use crate::cli::RemoteMode as Mode;
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
        env_setting(&mut self.max_entry_size, "CACHECTL_MAX_ENTRY_SIZE", |v| {
            parse_size(v).map(Some)
        })?;
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
        env_setting(&mut self.gc_policy, "CACHECTL_GC_POLICY", |v| {
            crate::cli::GcPolicy::parse(v).ok_or_else(|| format!("`{v}` is not one of value, lru"))
        })?;
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

/// One `trace_ignore` pattern: `*` stays within a directory, `**` crosses them.
pub fn trace_ignore_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
}

/// Lay `top` over `base`: lists accumulate, scalars present in `top` win.
fn overlay(base: &mut RunSettings, top: RunSettings) {
    base.inputs.extend(top.inputs);
    base.outputs.extend(top.outputs);
    base.env.extend(top.env);
    base.tags.extend(top.tags);
    base.trace_ignore.extend(top.trace_ignore);
    base.ttl = top.ttl.or(base.ttl.take());
    base.stale = top.stale.or(base.stale.take());
    base.namespace = top.namespace.or(base.namespace.take());
    base.salt = top.salt.or(base.salt.take());
    base.cache_failures = top.cache_failures.or(base.cache_failures.take());
    base.cwd = top.cwd.or(base.cwd.take());
    base.trace = top.trace.or(base.trace.take());
}

/// Check declared outputs before anything runs: absolute or `..` paths are usage errors.
pub fn validate_declared(declared: &[String]) -> Result<Vec<PathBuf>> {
    declared
        .iter()
        .map(|d| {
            crate::paths::check_inside(Path::new(&crate::paths::decode_os(d))).map_err(|why| {
                usage(format!(
                    "output `{d}` {why}; outputs must be relative paths inside the working directory (fix: run cachectl from a directory that contains the output)"
                ))
            })
        })
        .collect()
}

/// The working directory and the configuration every command starts from.
pub fn load_from_cwd(dir: Option<(PathBuf, Source)>) -> Result<(PathBuf, Config)> {
    let cwd = std::env::current_dir().context("cannot determine the working directory")?;
    let cfg = Config::load(&cwd, dir)?;
    Ok((cwd, cfg))
}

/// The default cache directory: `$XDG_CACHE_HOME/cachectl`, else `~/.cache/cachectl`.
pub fn default_root() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(x);
        if p.is_absolute() {
            return Some(p.join("cachectl"));
        }
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty())?;
    Some(PathBuf::from(home).join(".cache").join("cachectl"))
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
