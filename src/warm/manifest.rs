//! Warm manifests: `[[command]]` tables, validated in full before anything runs.
//!
//! ```toml
//! [[command]]
//! run = ["./resize", "{}", "--width", "200"]   # or a string, split like a shell (no evaluation)
//! for_each = "images/*.png"                      # one command per match; {} = the matched path
//! inputs = ["{}"]
//! outputs = ["thumbs/{}"]
//! cwd = "site"                                   # relative to the manifest; default: its folder
//! priority = 10                                  # higher starts first; default 0
//! ```
//!
//! Every other field means what the `run` flag of the same name means; config `[[rule]]`s that
//! match apply too, so a warmed command gets exactly the key `cachectl run` would give it from
//! the same directory.

use crate::cli::RunArgs;
use crate::cli::units::parse_duration;
use crate::config::{Config, RunOptions, Source};
use crate::error::usage;
use crate::located::TomlFile;
use anyhow::Result;
use serde::Deserialize;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    command: Vec<Spanned<RawCommand>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RunValue {
    Argv(Vec<String>),
    Line(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    run: Spanned<RunValue>,
    for_each: Option<Spanned<String>>,
    cwd: Option<Spanned<String>>,
    #[serde(default)]
    inputs: Vec<String>,
    #[serde(default)]
    outputs: Vec<Spanned<String>>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    namespace: Option<String>,
    salt: Option<String>,
    ttl: Option<Spanned<String>>,
    stale: Option<Spanned<String>>,
    #[serde(default)]
    cache_failures: bool,
    #[serde(default)]
    no_cwd: bool,
    /// Higher starts first (ties: manifest order).
    #[serde(default)]
    priority: Priority,
    /// `--trace`: `check` or `off`.
    trace: Option<Spanned<String>>,
}

/// A command's `priority`: an integer, with an error that says what it is for.
#[derive(Default)]
struct Priority(i64);

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Integer;
        impl serde::de::Visitor<'_> for Integer {
            type Value = Priority;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer (misses with a higher priority start first)")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Priority, E> {
                Ok(Priority(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Priority, E> {
                i64::try_from(v)
                    .map(Priority)
                    .map_err(|_| E::custom("priority out of range"))
            }
        }
        d.deserialize_i64(Integer)
    }
}

/// One command to warm, resolved exactly as `cachectl run` would resolve it.
#[derive(Debug, Clone)]
pub struct WarmCommand {
    pub cwd: PathBuf,
    pub args: RunArgs,
    pub opts: RunOptions,
    /// Where it came from, for messages (`manifest.toml:12`, or `history`).
    pub origin: String,
    /// The cache it goes into: the one `cachectl run` would use in its directory.
    pub root: PathBuf,
    /// Misses start in this order, highest first (ties: the order given): the manifest's
    /// `priority`, or, from history, the time one run takes (what a hit saves), in ms.
    pub priority: i64,
}

/// Configs by working directory (each directory may have its own cachectl.toml).
pub struct Configs {
    dir: Option<(PathBuf, Source)>,
    by_cwd: HashMap<PathBuf, Config>,
}

impl Configs {
    pub fn new(dir: Option<(PathBuf, Source)>) -> Self {
        Configs {
            dir,
            by_cwd: HashMap::new(),
        }
    }

    pub fn for_cwd(&mut self, cwd: &Path) -> Result<&Config> {
        if !self.by_cwd.contains_key(cwd) {
            let cfg = Config::load(cwd, self.dir.clone())?;
            self.by_cwd.insert(cwd.to_path_buf(), cfg);
        }
        Ok(&self.by_cwd[cwd])
    }
}

/// The cache directory a command in a directory with config `cfg` goes into.
pub fn root_of(cfg: &Config) -> Result<PathBuf> {
    cfg.dir.value.clone().ok_or_else(|| {
        anyhow::anyhow!("no cache directory: set CACHECTL_DIR or HOME, or pass --dir")
    })
}

/// A loaded manifest: its commands, and notes worth telling the user (a `for_each` that
/// matched nothing).
#[derive(Debug)]
pub struct Manifest {
    pub commands: Vec<WarmCommand>,
    pub notes: Vec<String>,
}

/// Parse, validate and expand the manifest at `path`.
pub fn load(path: &Path, configs: &mut Configs) -> Result<Manifest> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        usage(format!(
            "cannot read manifest {}: {e}; fix: pass the path of a TOML file with [[command]] tables",
            path.display()
        ))
    })?;
    let file = TomlFile {
        path,
        text: &text,
        hint: "the manifest format is described in docs/warm.md",
    };
    let raw: RawManifest = file.parse()?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = crate::paths::normalize(&std::path::absolute(parent)?);
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for spanned in raw.command {
        let at = spanned.span().start;
        let line = file.line(at);
        let origin = format!("{}:{line}", path.display());
        let c = spanned.into_inner();
        let cwd = match &c.cwd {
            Some(d) => base.join(d.get_ref()),
            None => base.clone(),
        };
        if !cwd.is_dir() {
            let off = c.cwd.as_ref().map(|d| d.span().start).unwrap_or(at);
            return Err(file.error(off, &format!("`cwd`: {} is not a directory", cwd.display())));
        }
        // The real path, as the `cachectl run` child will see it from its working directory:
        // the cwd is part of the key.
        let cwd = std::fs::canonicalize(&cwd)?;
        let argv: Vec<String> = match c.run.get_ref() {
            RunValue::Argv(v) => v.clone(),
            RunValue::Line(s) => shlex::split(s).ok_or_else(|| {
                file.error(
                    c.run.span().start,
                    "`run`: unbalanced quotes in the command line",
                )
            })?,
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err(file.error(
                c.run.span().start,
                "`run` is empty: give the command to run",
            ));
        }
        let duration = |v: &Option<Spanned<String>>, key: &str| -> Result<_> {
            v.as_ref()
                .map(|d| {
                    parse_duration(d.get_ref())
                        .map_err(|e| file.error(d.span().start, &format!("`{key}`: {e}")))
                })
                .transpose()
        };
        for o in &c.outputs {
            crate::config::validate_declared(std::slice::from_ref(o.get_ref()))
                .map_err(|e| file.error(o.span().start, &format!("`outputs`: {e:#}")))?;
        }
        let trace = c
            .trace
            .as_ref()
            .map(|t| {
                crate::cli::TraceMode::parse(t.get_ref()).ok_or_else(|| {
                    file.error(
                        t.span().start,
                        &format!("`trace` must be one of {}", crate::cli::TraceMode::CHOICES),
                    )
                })
            })
            .transpose()?;
        let ttl = duration(&c.ttl, "ttl")?;
        let stale = duration(&c.stale, "stale")?;
        let matches: Vec<Option<String>> = match &c.for_each {
            None => vec![None],
            Some(pattern) => crate::key::inputs::glob_paths(&cwd, pattern.get_ref())
                .map_err(|e| file.error(pattern.span().start, &format!("`for_each`: {e:#}")))?
                .into_iter()
                .map(|p| Some(p.to_string_lossy().into_owned()))
                .collect(),
        };
        if let Some(pattern) = &c.for_each
            && matches.is_empty()
        {
            notes.push(format!(
                "{}:{}: for_each = {:?} matches no file in {}",
                path.display(),
                file.line(pattern.span().start),
                pattern.get_ref(),
                cwd.display()
            ));
        }
        let cfg = configs.for_cwd(&cwd)?;
        for m in matches {
            let sub = |s: &String| match &m {
                Some(v) => s.replace("{}", v),
                None => s.clone(),
            };
            let args = RunArgs {
                inputs: c.inputs.iter().map(sub).collect(),
                outputs: c.outputs.iter().map(|o| sub(o.get_ref())).collect(),
                env: c.env.clone(),
                tags: c.tags.clone(),
                namespace: c.namespace.clone(),
                salt: c.salt.clone(),
                ttl,
                stale,
                cache_failures: c.cache_failures,
                no_cwd: c.no_cwd,
                trace,
                command: argv.iter().map(sub).map(OsString::from).collect(),
                ..Default::default()
            };
            // As the `cachectl run` child will see them (CACHECTL_* included).
            let args = args
                .reparse()
                .map_err(|e| file.error(at, e.to_string().trim()))?;
            let opts =
                RunOptions::resolve(&args, cfg).map_err(|e| file.error(at, &format!("{e:#}")))?;
            out.push(WarmCommand {
                cwd: cwd.clone(),
                args,
                opts,
                origin: origin.clone(),
                root: root_of(cfg)?,
                priority: c.priority.0,
            });
        }
    }
    Ok(Manifest {
        commands: out,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> (tempfile::TempDir, Result<Manifest>) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("img")).unwrap();
        for f in ["a.png", "b.png", "c.txt"] {
            std::fs::write(d.path().join("img").join(f), f).unwrap();
        }
        let p = d.path().join("warm.toml");
        std::fs::write(&p, text).unwrap();
        let r = load(
            &p,
            &mut Configs::new(Some((d.path().join("cache"), Source::Flag))),
        );
        (d, r)
    }

    #[test]
    fn for_each_expands_and_substitutes() {
        let (_d, r) = manifest(
            "[[command]]\nrun = \"./resize '{}' --width 200\"\nfor_each = \"img/*.png\"\ninputs = [\"{}\"]\noutputs = [\"out/{}\"]\n",
        );
        let cmds = r.unwrap().commands;
        assert_eq!(cmds.len(), 2);
        assert_eq!(
            cmds[0].args.command,
            ["./resize", "img/a.png", "--width", "200"]
        );
        assert_eq!(cmds[1].args.inputs, ["img/b.png"]);
        assert_eq!(cmds[1].args.outputs, ["out/img/b.png"]);
    }

    #[test]
    fn errors_name_the_line() {
        let (_d, r) =
            manifest("[[command]]\nrun = [\"true\"]\n\n[[command]]\nrun = \"x\"\nttl = \"soon\"\n");
        let msg = format!("{:#}", r.unwrap_err());
        assert!(msg.contains("warm.toml:6"), "{msg}");
        let (_d, r) = manifest("[[command]]\nrun = [\"true\"]\nouputs = [\"x\"]\n");
        let msg = format!("{:#}", r.unwrap_err());
        assert!(
            msg.contains("warm.toml:3") && msg.contains("ouputs"),
            "{msg}"
        );
        let (_d, r) = manifest("[[command]]\nrun = [\"true\"]\noutputs = [\"../x\"]\n");
        assert!(format!("{:#}", r.unwrap_err()).contains("warm.toml:3"));
        let (_d, r) = manifest("[[command]]\nrun = \"echo 'unclosed\"\n");
        assert!(format!("{:#}", r.unwrap_err()).contains("unbalanced"));
        let (_d, r) = manifest("[[command]]\nrun = \"true\"\npriority = \"high\"\n");
        let msg = format!("{:#}", r.unwrap_err());
        assert!(
            msg.contains("warm.toml:3") && msg.contains("expected an integer (misses with"),
            "{msg}"
        );
    }

    #[test]
    fn priority_defaults_to_zero() {
        let (_d, r) =
            manifest("[[command]]\nrun = \"a\"\n\n[[command]]\nrun = \"b\"\npriority = -2\n");
        let p: Vec<i64> = r.unwrap().commands.iter().map(|c| c.priority).collect();
        assert_eq!(p, [0, -2]);
    }
}
