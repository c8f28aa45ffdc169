//! The command line as users see and match it.
//!
//! `[[rule]] match`, and later `ls` and `invalidate`, all match the same string: argv joined by
//! single spaces, where an argument that is empty or contains whitespace or quotes is shell-quoted.
//! Patterns are globs in which `*` matches any characters, `/` included.

use anyhow::{Context, Result};
use globset::{GlobBuilder, GlobMatcher};
use std::ffi::OsString;

/// Join argv into the matchable, displayable command line.
pub fn display(argv: &[OsString]) -> String {
    let mut out = String::new();
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&quote(&arg.to_string_lossy()));
    }
    out
}

fn quote(arg: &str) -> String {
    let needs = arg.is_empty()
        || arg
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '"');
    if !needs {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// A compiled command-line pattern.
#[derive(Debug, Clone)]
pub struct CommandPattern {
    matcher: GlobMatcher,
}

impl CommandPattern {
    pub fn new(pattern: &str) -> Result<Self> {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .with_context(|| format!("invalid command pattern `{pattern}`"))?;
        Ok(Self {
            matcher: glob.compile_matcher(),
        })
    }

    pub fn matches(&self, command_line: &str) -> bool {
        self.matcher.is_match(command_line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn quoting_keeps_boundaries_visible() {
        assert_eq!(display(&argv(&["./resize", "img.png"])), "./resize img.png");
        assert_eq!(display(&argv(&["echo", "a b"])), "echo 'a b'");
        assert_eq!(display(&argv(&["echo", ""])), "echo ''");
        assert_eq!(display(&argv(&["echo", "it's"])), r"echo 'it'\''s'");
    }

    #[test]
    fn star_crosses_slashes() {
        let p = CommandPattern::new("./resize *").unwrap();
        assert!(p.matches("./resize img/a.png"));
        assert!(!p.matches("./other img.png"));
        let p = CommandPattern::new("gcc * -o *.o").unwrap();
        assert!(p.matches("gcc -c src/a.c -o build/a.o"));
    }
}
