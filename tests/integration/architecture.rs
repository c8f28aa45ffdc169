//! The import graph of the library's top-level modules (issue 13): dependencies point one way,
//! from the command line up to the commands, so that a module can be read, changed and tested
//! with only what is below it in mind.
//!
//! Layers, lowest first (DESIGN.md's module map): foundation helpers; `cli` (raw arguments,
//! unit parsers); `config` (resolved settings); `key`; `store`; what runs and replays a command
//! (`exec`, `replay`, `outputs`, `remote`); `run`; the management libraries (`manage`, `warm`);
//! `commands`. A module may use only modules of lower layers (foundation modules also each
//! other). Test code is not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const LAYERS: &[&[&str]] = &[
    &[
        "clock", "cmdline", "error", "fsutil", "located", "log", "note", "paths", "signals",
        "stdio", "ui", "warn",
    ],
    &["cli"],
    &["config"],
    &["key"],
    &["store"],
    &["trace"],
    &["exec", "outputs", "remote", "replay"],
    &["run"],
    &["manage", "warm"],
    &["commands"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// `crate::x` references in the non-test code of a file, comments left out.
fn references(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().next_back();
            let name: String = rest[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                out.insert(name);
            }
            rest = &rest[i + 7..];
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
}

#[test]
fn library_modules_depend_only_on_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = first.trim_end_matches(".rs").to_owned();
        // The binaries sit on top of everything; test files are test code.
        if matches!(top.as_str(), "bin" | "lib" | "main") || rel.ends_with("tests.rs") {
            continue;
        }
        assert!(
            layer_of(&top).is_some(),
            "src/{}: module `{top}` has no layer",
            rel.display()
        );
        for to in references(&std::fs::read_to_string(&f).unwrap()) {
            if to != top {
                edges.insert((top.clone(), to), rel.display().to_string());
            }
        }
    }
    let mut wrong = Vec::new();
    for ((from, to), file) in &edges {
        let (a, b) = (layer_of(from).unwrap(), layer_of(to));
        match b {
            None => wrong.push(format!("{from} -> {to} (unknown module, src/{file})")),
            Some(b) if a < b || (a == b && a != 0) => {
                wrong.push(format!("{from} -> {to} (src/{file})"))
            }
            Some(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the layers:\n{}",
        wrong.join("\n")
    );
    assert!(
        edges.len() > 40,
        "the scan found too few references: {}",
        edges.len()
    );
}
