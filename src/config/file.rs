//! Reading one config file: the TOML shapes (with spans, so every error names its line), and
//! laying a file's settings over the configuration.

use super::*;
use crate::error::usage;

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// The run settings a config file takes at its top level and in each `[[rule]]`, written once:
/// each of those table structs gets these fields from this macro (between its own fields
/// `before` and `after`, which keeps the order serde's "expected one of" messages list them
/// in), and a `run_settings` method that checks and takes them out. (serde's `flatten` would
/// lose both the spans and `deny_unknown_fields`.)
macro_rules! run_table {
    (
        $(#[$meta:meta])*
        struct $name:ident {
            before { $($(#[$bmeta:meta])* $before:ident: $bty:ty,)* }
            after { $($(#[$ameta:meta])* $after:ident: $aty:ty,)* }
        }
    ) => {
        $(#[$meta])*
        struct $name {
            $($(#[$bmeta])* $before: $bty,)*
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
            trace: Option<Spanned<String>>,
            #[serde(default)]
            trace_ignore: Vec<Spanned<String>>,
            $($(#[$ameta])* $after: $aty,)*
        }

        impl $name {
            /// This table's run settings, checked (a bad duration names its line).
            fn run_settings(&self, loc: &Located) -> Result<RunSettings> {
                Ok(RunSettings {
                    inputs: self.inputs.clone(),
                    outputs: self.outputs.clone(),
                    env: self.env.clone(),
                    tags: self.tags.clone(),
                    ttl: loc.duration(&self.ttl, "ttl")?,
                    stale: loc.duration(&self.stale, "stale")?,
                    namespace: loc.string(&self.namespace),
                    salt: loc.string(&self.salt),
                    cache_failures: loc.boolean(&self.cache_failures),
                    cwd: loc.boolean(&self.cwd),
                    trace: loc.trace_mode(&self.trace)?,
                    trace_ignore: loc.globs(&self.trace_ignore, "trace_ignore")?,
                })
            }
        }
    };
}

run_table! {
    /// A `[[rule]]` table: `match` plus the run settings.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawRule {
        before {
            #[serde(rename = "match")]
            pattern: Spanned<String>,
        }
        after {}
    }
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

run_table! {
    /// A whole config file.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawFile {
        before {
            remote: Option<RawRemote>,
            dir: Option<Spanned<String>>,
            max_size: Option<Spanned<SizeValue>>,
            max_entry_size: Option<Spanned<SizeValue>>,
            gc_policy: Option<Spanned<String>>,
            compression_level: Option<Spanned<i64>>,
            lock_timeout: Option<Spanned<String>>,
            exe_check: Option<Spanned<String>>,
            verbose: Option<Spanned<bool>>,
        }
        after {
            #[serde(default)]
            rule: Vec<Spanned<RawRule>>,
        }
    }
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
    /// Glob patterns, each checked to compile (a bad one names its line).
    fn globs(&self, list: &[Spanned<String>], key: &str) -> Result<Vec<String>> {
        list.iter()
            .map(|v| {
                super::trace_ignore_glob(v.get_ref())
                    .map_err(|e| self.error(v.span().start, &format!("`{key}`: {e}")))?;
                Ok(v.get_ref().clone())
            })
            .collect()
    }
    fn trace_mode(
        &self,
        s: &Option<Spanned<String>>,
    ) -> Result<Option<Setting<crate::cli::TraceMode>>> {
        s.as_ref()
            .map(|v| {
                let mode = crate::cli::TraceMode::parse(v.get_ref()).ok_or_else(|| {
                    self.error(
                        v.span().start,
                        &format!("`trace` must be one of {}", crate::cli::TraceMode::CHOICES),
                    )
                })?;
                Ok(self.setting(v, mode))
            })
            .transpose()
    }
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
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

impl Config {
    pub(super) fn apply_file(&mut self, path: &Path, check_owner: bool) -> Result<()> {
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
        if let Some(s) = &raw.max_entry_size {
            let v = match s.get_ref() {
                SizeValue::Bytes(n) => *n,
                SizeValue::Text(t) => parse_size(t)
                    .map_err(|e| loc.error(s.span().start, &format!("`max_entry_size`: {e}")))?,
            };
            self.max_entry_size = loc.setting(s, Some(v));
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
        if let Some(p) = &raw.gc_policy {
            let v = crate::cli::GcPolicy::parse(p.get_ref()).ok_or_else(|| {
                loc.error(
                    p.span().start,
                    "`gc_policy` must be one of \"value\", \"lru\"",
                )
            })?;
            self.gc_policy = loc.setting(p, v);
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
                let mode = crate::cli::RemoteMode::parse(m.get_ref()).ok_or_else(|| {
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
        let top = raw.run_settings(&loc)?;
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
                settings: rule.run_settings(&loc)?,
            });
        }
        self.rules.extend(layer_rules.iter().cloned());
        self.layers.push((top, layer_rules));
        Ok(())
    }
}
