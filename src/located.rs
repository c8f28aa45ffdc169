//! TOML files whose every error names the file, the line and the fix (cachectl.toml, warm
//! manifests): usage errors, reported before anything runs.

use crate::error::usage;
use serde::de::DeserializeOwned;
use std::path::Path;

/// A TOML file's text, for parsing and for locating errors in it.
pub struct TomlFile<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    /// Where the reader finds the valid keys, e.g. "every key is described in cachectl.toml.example".
    pub hint: &'static str,
}

impl TomlFile<'_> {
    /// 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// A usage error at `offset`: `file:line: msg`, the line itself, and the fix.
    pub fn error(&self, offset: usize, msg: &str) -> anyhow::Error {
        let line = self.line(offset);
        let text = self.text.lines().nth(line - 1).unwrap_or("").trim_end();
        usage(format!(
            "{}:{line}: {msg}\n  | {text}\n  = fix: correct this line; {}",
            self.path.display(),
            self.hint
        ))
    }

    /// Deserialize the whole file; a syntax, unknown-key or type error is located.
    pub fn parse<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        toml::from_str(self.text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            self.error(offset, e.message().trim())
        })
    }
}
