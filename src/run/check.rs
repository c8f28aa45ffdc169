//! `--trace check`: after a traced miss, name what the command read or wrote that its
//! declaration leaves out, with the flag to add. The key and what is stored stay exactly what
//! is declared: this only advises.
//!
//! One line per path on stderr, after the command's own output. Paths under the working
//! directory are shown relative to it, others absolute. The cache directory and the executable
//! (its content is keyed already) are left out; so are, unless `-v`, the system's own locations
//! (/usr, /lib*, /bin, /sbin, /etc, /opt), and inputs elsewhere outside the working directory
//! are only counted.

use crate::paths::{decode_os, resolve_lexically};
use crate::trace::{Access, Observed};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What the check found, one suggestion per path.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Advice {
    /// Inputs to declare: `-i PATH` (a file read, executed or looked at, or absent when looked
    /// for), or `-i 'DIR/*'` for a directory whose entries were listed.
    pub inputs: Vec<String>,
    /// Outputs to declare: files and directories the command created or wrote under the
    /// working directory that exist now.
    pub outputs: Vec<String>,
    /// Files written outside the working directory (and the temp dir): a hit does not redo them.
    pub side_effects: Vec<String>,
    /// Why the trace is not complete, if it is not.
    pub untraceable: Vec<String>,
    /// What the command connected to outside the traced tree (`unix:PATH`, `network`).
    pub peers: Vec<String>,
    /// Inputs outside the working directory left out without `-v` (a toolchain's or an
    /// interpreter's own files under $HOME, say): how many.
    pub outside: usize,
}

/// Where the system keeps what every command uses: left out unless `-v`.
const SYSTEM: &[&str] = &[
    "/usr", "/bin", "/sbin", "/etc", "/opt", "/lib", "/lib32", "/lib64", "/libx32",
];

fn is_system(p: &Path) -> bool {
    SYSTEM.iter().any(|s| p.starts_with(s))
}

/// The check of one traced run in `cwd`: `declared_inputs` are the key's input paths (as
/// declared, relative to `cwd` or absolute), `declared_outputs` the `-o` paths, `skip` paths
/// never shown (the cache directory, the executable).
pub fn advise(
    observed: &Observed,
    cwd: &Path,
    declared_inputs: &[String],
    declared_outputs: &[PathBuf],
    skip: &[PathBuf],
    verbose: bool,
) -> Advice {
    let abs = |p: &Path| resolve_lexically(&cwd.join(p));
    let inputs: BTreeSet<PathBuf> = declared_inputs
        .iter()
        .map(|d| abs(Path::new(&decode_os(d))))
        .collect();
    let outputs: Vec<PathBuf> = declared_outputs.iter().map(|o| abs(o)).collect();
    let temp = std::env::temp_dir();
    let shown = |p: &Path| -> String {
        let rel = p
            .strip_prefix(cwd)
            .ok()
            .filter(|r| !r.as_os_str().is_empty());
        let text = rel.unwrap_or(p).to_string_lossy().into_owned();
        shlex::try_quote(&text)
            .map(|q| q.into_owned())
            .unwrap_or(text)
    };
    let mut advice = Advice {
        untraceable: observed
            .not_traced
            .iter()
            .chain(&observed.untraceable)
            .cloned()
            .collect(),
        peers: observed.peers.iter().cloned().collect(),
        ..Advice::default()
    };
    if observed.outlived {
        advice.untraceable.push(
            "a process of the command outlived it: what it did afterwards is not seen".into(),
        );
    }
    // Directories the run created: one `-o DIR` stands for what is in them.
    let mut created_dirs: Vec<PathBuf> = Vec::new();
    for (path, a) in &observed.paths {
        let path = path.clone();
        if skip.iter().any(|s| path.starts_with(s)) || (!verbose && is_system(&path)) {
            continue;
        }
        let under_cwd = path.starts_with(cwd) && path != cwd;
        // What the run read before changing it (`sed -i`, an append) is an input too.
        let kept = a.read || a.executed || a.digest_before_change.is_some();
        if kept && a.changed() && !inputs.contains(&path) && under_cwd {
            if std::fs::symlink_metadata(&path).is_err() {
                advice.inputs.push(format!(
                    "-i {} (read, then removed by the command)",
                    shown(&path)
                ));
            } else if let Some(line) = input_line(&path, a, &inputs, &shown) {
                advice.inputs.push(line);
            }
        }
        if a.changed() {
            let meta = std::fs::symlink_metadata(&path).ok();
            if meta.is_none() {
                // Gone at the end: a temporary (or a file the run consumed, named above).
                continue;
            }
            if !under_cwd {
                if a.written && !path.starts_with(&temp) && meta.is_some() {
                    advice.side_effects.push(shown(&path));
                }
                continue;
            }
            if meta.is_none()
                || outputs.iter().any(|o| path.starts_with(o))
                || created_dirs.iter().any(|d| path.starts_with(d))
            {
                continue;
            }
            if meta.as_ref().is_some_and(|m| m.is_dir()) {
                created_dirs.push(path.clone());
            }
            advice.outputs.push(format!("-o {}", shown(&path)));
            continue;
        }
        if !a.is_input() || inputs.contains(&path) {
            continue;
        }
        // A lookup that found nothing outside the working directory (each directory of PATH
        // before the one that has the program) is worth keying, not declaring: only `-v`.
        let absent = std::fs::symlink_metadata(&path).is_err();
        if absent && !under_cwd && !verbose {
            continue;
        }
        if let Some(line) = input_line(&path, a, &inputs, &shown) {
            // Outside the working directory (an interpreter's library under $HOME): counted,
            // listed with -v; a project declares its own files.
            if !under_cwd && !verbose {
                advice.outside += 1;
            } else {
                advice.inputs.push(line);
            }
        }
    }
    advice
}

/// The `-i` for an input the run depended on, or `None` when a declared input covers it or
/// there is nothing worth keying (a directory only looked at).
fn input_line(
    path: &Path,
    a: &Access,
    inputs: &BTreeSet<PathBuf>,
    shown: &dyn Fn(&Path) -> String,
) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok();
    let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
    if is_dir {
        if !a.listed || inputs.iter().any(|i| i.starts_with(path)) {
            return None;
        }
        let pattern = format!("{}/*", path.to_string_lossy());
        return Some(format!("-i {}", shown(Path::new(&pattern))));
    }
    if meta.is_none() {
        return Some(format!(
            "-i {} (absent: creating it must rerun)",
            shown(path)
        ));
    }
    Some(format!("-i {}", shown(path)))
}

impl Advice {
    /// The lines for stderr (without the `cachectl: ` prefix the caller adds).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for i in &self.inputs {
            out.push(format!("check: undeclared input: {i}"));
        }
        for o in &self.outputs {
            out.push(format!("check: undeclared output: {o}"));
        }
        for s in &self.side_effects {
            out.push(format!(
                "check: writes outside the working directory (a hit does not redo them): {s}"
            ));
        }
        if self.outside > 0 {
            let what = if self.outside == 1 { "input" } else { "inputs" };
            out.push(format!(
                "check: {} more {what} read outside the working directory (-v lists them)",
                self.outside
            ));
        }
        for u in &self.untraceable {
            out.push(format!("check: not fully traced: {u}"));
        }
        for p in &self.peers {
            out.push(format!(
                "check: talked to something outside the command (its answers are not keyed): {p}"
            ));
        }
        if out.is_empty() {
            out.push("check: everything the command read and wrote is declared".to_owned());
        }
        out
    }
}
