//! The cache key: what a command's result depends on, in canonical form, hashed with blake3.
//!
//! A [`KeyComponents`] value holds every component (see DESIGN.md, "Key"). It is stored with each
//! entry so that `explain` can say exactly what differs between two keys. The key is derived from
//! the components alone, through an explicit length-delimited encoding ([`Canon`]) rather than a
//! serde format, so that changing a serialisation library can never silently change keys.
//!
//! Bump [`KEY_VERSION`] whenever the meaning of any component, or the encoding, changes: every old
//! entry then misses instead of being served under a new meaning. The golden test below fails on
//! any accidental change.
//!
//! Secrets stay out of the store: env values are kept as digests, never as text.

pub mod compute;
pub mod describe;
pub mod glob;
pub mod inputs;
pub mod observed;
pub mod statcache;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const KEY_VERSION: u32 = 1;

/// A blake3 digest as 64 lowercase hex characters.
pub type Digest = String;

pub fn hex_digest(bytes: &[u8]) -> Digest {
    blake3::hash(bytes).to_hex().to_string()
}

/// The kind of a declared input path as seen when the key was computed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    File,
    Dir,
    /// A symlink whose target does not exist; its digest is that of the link text.
    Symlink,
    /// Declared but not there: keyed, so that creating it later is a change.
    Absent,
}

impl InputKind {
    fn tag(self) -> &'static str {
        match self {
            InputKind::File => "file",
            InputKind::Dir => "dir",
            InputKind::Symlink => "symlink",
            InputKind::Absent => "absent",
        }
    }
}

/// One input path's state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct InputState {
    pub kind: InputKind,
    /// Any execute bit set (files only).
    #[serde(default)]
    pub exec: bool,
    /// Content digest for files, link-text digest for dangling symlinks, empty otherwise.
    #[serde(default)]
    pub digest: Digest,
}

pub use crate::config::ExeCheck;

/// The executable's identity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExeIdentity {
    /// Resolved path, for display; hashed only with `exe_check = mtime`.
    pub path: String,
    pub check: ExeCheck,
    /// Content digest (`content`), or digest of path+size+mtime (`mtime`), or empty (`none`).
    pub digest: Digest,
}

/// Every component of a key. Strings that come from the OS (argv, paths, env names) are encoded
/// losslessly with [`crate::paths::encode_os`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyComponents {
    pub version: u32,
    pub namespace: String,
    pub salt: String,
    pub argv: Vec<String>,
    /// Absolute working directory, or `None` with `--no-cwd`.
    pub cwd: Option<String>,
    /// `None` when the executable could not be resolved (the run then fails with 127 uncached).
    pub exe: Option<ExeIdentity>,
    /// Declared env names and patterns, as given.
    pub env_patterns: Vec<String>,
    /// name → digest of the value; `None` means unset (which differs from empty).
    pub env: BTreeMap<String, Option<Digest>>,
    /// Declared input paths and globs, as given.
    pub input_patterns: Vec<String>,
    /// Relative (as declared) path → state.
    pub inputs: BTreeMap<String, InputState>,
    /// Declared output paths, normalised. Keyed because they decide what an entry holds: an
    /// entry stored without `-o out` must not satisfy a run that expects `out` restored.
    pub outputs: Vec<String>,
    /// Digest of stdin with `--stdin`.
    pub stdin: Option<Digest>,
    /// `--trace auto`: the key first looked up (the manifest's) and every entry's key carry it,
    /// so that an `auto` lookup never hits an entry stored without tracing. Keyed only when
    /// set: `off` and `check` keep the keys they always had.
    #[serde(default, skip_serializing_if = "is_false")]
    pub traced: bool,
    /// What an `auto` run was observed to depend on (entries only; the key a manifest is found
    /// under has none). Keyed only when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<observed::ObservedInputs>,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// Length-delimited canonical encoder feeding a blake3 hasher.
///
/// Fields are serialised into a buffer that is handed to blake3 in large slices: a key over
/// 100 000 inputs would otherwise make 400 000 tiny `update` calls, each paying blake3's
/// per-call overhead. blake3 of a concatenation equals the incremental hash of its pieces, so
/// buffering changes no key; the buffer is flushed at [`CANON_FLUSH`] bytes to keep memory
/// bounded.
struct Canon {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
}

/// Canon's buffer is handed to the hasher once it holds this many bytes.
const CANON_FLUSH: usize = 64 * 1024;

impl Canon {
    fn new(domain: &str) -> Self {
        let mut c = Canon {
            hasher: blake3::Hasher::new(),
            buf: Vec::new(),
        };
        c.str(domain);
        c
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        if self.buf.len() + b.len() > CANON_FLUSH {
            self.flush();
        }
        if b.len() > CANON_FLUSH {
            self.hasher.update(b);
        } else {
            self.buf.extend_from_slice(b);
        }
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn u64(&mut self, v: u64) {
        if self.buf.len() + 8 > CANON_FLUSH {
            self.flush();
        }
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn flush(&mut self) {
        self.hasher.update(&self.buf);
        self.buf.clear();
    }
    fn opt(&mut self, s: Option<&str>) {
        match s {
            None => self.u64(0),
            Some(s) => {
                self.u64(1);
                self.str(s);
            }
        }
    }
    fn list<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a String>) {
        self.u64(items.len() as u64);
        for i in items {
            self.str(i);
        }
    }
    fn finish(mut self) -> Digest {
        self.flush();
        self.hasher.finalize().to_hex().to_string()
    }
}

impl KeyComponents {
    /// Digest of each component, in key order. `explain` prints these; the key is their hash.
    pub fn component_digests(&self) -> Vec<(&'static str, Digest)> {
        let mut out = Vec::with_capacity(8);
        let mut c = Canon::new("namespace");
        c.str(&self.namespace);
        out.push(("namespace", c.finish()));

        let mut c = Canon::new("salt");
        c.str(&self.salt);
        out.push(("salt", c.finish()));

        let mut c = Canon::new("argv");
        c.list(self.argv.iter());
        out.push(("argv", c.finish()));

        let mut c = Canon::new("cwd");
        c.opt(self.cwd.as_deref());
        out.push(("cwd", c.finish()));

        let mut c = Canon::new("exe");
        match &self.exe {
            None => c.u64(0),
            Some(e) => {
                c.u64(1);
                c.str(e.check.as_str());
                c.str(&e.digest);
            }
        }
        out.push(("exe", c.finish()));

        let mut c = Canon::new("env");
        c.list(self.env_patterns.iter());
        c.u64(self.env.len() as u64);
        for (name, value) in &self.env {
            c.str(name);
            c.opt(value.as_deref());
        }
        out.push(("env", c.finish()));

        let mut c = Canon::new("inputs");
        c.list(self.input_patterns.iter());
        c.u64(self.inputs.len() as u64);
        for (path, st) in &self.inputs {
            c.str(path);
            c.str(st.kind.tag());
            c.u64(st.exec as u64);
            c.str(&st.digest);
        }
        out.push(("inputs", c.finish()));

        let mut c = Canon::new("outputs");
        c.list(self.outputs.iter());
        out.push(("outputs", c.finish()));

        let mut c = Canon::new("stdin");
        c.opt(self.stdin.as_deref());
        out.push(("stdin", c.finish()));

        if self.traced {
            let mut c = Canon::new("trace");
            c.str("auto");
            out.push(("trace", c.finish()));
        }
        if let Some(observed) = &self.observed {
            let mut c = Canon::new("observed");
            c.u64(observed.len() as u64);
            for (path, seen) in observed {
                c.str(path);
                c.str(seen.kind.as_str());
                c.opt(seen.link.as_deref());
                c.opt(seen.content.as_deref());
                match seen.stamp {
                    None => c.u64(0),
                    Some(s) => {
                        c.u64(1);
                        c.u64(s.size);
                        c.u64(s.mtime_s as u64);
                        c.u64(s.mtime_ns as u64);
                    }
                }
                c.u64(seen.exec as u64);
                c.opt(seen.listing.as_deref());
                c.list(seen.unlisted.iter());
            }
            out.push(("observed", c.finish()));
        }
        out
    }

    /// The key an `auto` run's manifest is found under: everything known before running.
    pub fn manifest_key(&self) -> Digest {
        if self.observed.is_none() {
            return self.key();
        }
        KeyComponents {
            observed: None,
            ..self.clone()
        }
        .key()
    }

    /// The cache key: 64 hex characters.
    pub fn key(&self) -> Digest {
        let mut c = Canon::new("cachectl-key");
        c.u64(self.version as u64);
        for (name, digest) in self.component_digests() {
            c.str(name);
            c.str(&digest);
        }
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeyComponents {
        let mut env = BTreeMap::new();
        env.insert("CC".to_owned(), Some(hex_digest(b"gcc")));
        env.insert("UNSET".to_owned(), None);
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "img.png".to_owned(),
            InputState {
                kind: InputKind::File,
                exec: false,
                digest: hex_digest(b"png"),
            },
        );
        inputs.insert(
            "missing".to_owned(),
            InputState {
                kind: InputKind::Absent,
                exec: false,
                digest: String::new(),
            },
        );
        KeyComponents {
            version: KEY_VERSION,
            namespace: "default".to_owned(),
            salt: String::new(),
            argv: vec!["./resize".to_owned(), "img.png".to_owned()],
            cwd: None,
            exe: Some(ExeIdentity {
                path: "/somewhere/resize".to_owned(),
                check: ExeCheck::Content,
                digest: hex_digest(b"exe"),
            }),
            env_patterns: vec!["CC".to_owned(), "UNSET".to_owned()],
            env,
            input_patterns: vec!["img.png".to_owned(), "missing".to_owned()],
            inputs,
            outputs: vec!["thumbs/img.png".to_owned()],
            stdin: None,
            traced: false,
            observed: None,
        }
    }

    /// A change of this value means every stored entry would be read under a new meaning: bump
    /// KEY_VERSION (and this golden value) deliberately, never by accident.
    #[test]
    fn golden_key() {
        assert_eq!(
            sample().key(),
            "73d638125a401dc588b3709f9de25041b5bad3e5d01aac93185ef26e747fcad5"
        );
    }

    /// The buffered encoder must hash exactly the bytes the field-by-field encoding would:
    /// checked against direct `update` calls across many flushes and a field larger than the
    /// buffer.
    #[test]
    fn buffering_does_not_change_digests() {
        let mut k = sample();
        for i in 0..5000 {
            k.inputs.insert(
                format!("dir{}/{}", i % 7, "f".repeat(i % 300)) + &i.to_string(),
                InputState {
                    kind: InputKind::File,
                    exec: i % 3 == 0,
                    digest: hex_digest(&i.to_le_bytes()),
                },
            );
        }
        k.argv.push("x".repeat(3 * CANON_FLUSH + 5));
        let str_ = |h: &mut blake3::Hasher, b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        let mut h = blake3::Hasher::new();
        str_(&mut h, b"inputs");
        h.update(&(k.input_patterns.len() as u64).to_le_bytes());
        for p in &k.input_patterns {
            str_(&mut h, p.as_bytes());
        }
        h.update(&(k.inputs.len() as u64).to_le_bytes());
        for (path, st) in &k.inputs {
            str_(&mut h, path.as_bytes());
            str_(&mut h, st.kind.tag().as_bytes());
            h.update(&(st.exec as u64).to_le_bytes());
            str_(&mut h, st.digest.as_bytes());
        }
        let digests = k.component_digests();
        assert_eq!(digests[6], ("inputs", h.finalize().to_hex().to_string()));

        let mut h = blake3::Hasher::new();
        str_(&mut h, b"argv");
        h.update(&(k.argv.len() as u64).to_le_bytes());
        for a in &k.argv {
            str_(&mut h, a.as_bytes());
        }
        assert_eq!(digests[2], ("argv", h.finalize().to_hex().to_string()));
    }

    #[test]
    fn argv_boundaries_matter() {
        let mut a = sample();
        a.argv = vec!["echo".into(), "a b".into()];
        let mut b = sample();
        b.argv = vec!["echo".into(), "a".into(), "b".into()];
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn unset_differs_from_empty() {
        let mut a = sample();
        a.env.insert("X".into(), None);
        let mut b = sample();
        b.env.insert("X".into(), Some(hex_digest(b"")));
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn exe_path_is_not_keyed_under_content_check() {
        let mut a = sample();
        a.exe.as_mut().unwrap().path = "/other/checkout/resize".into();
        assert_eq!(a.key(), sample().key());
    }

    #[test]
    fn every_component_changes_the_key() {
        let base = sample().key();
        type Edit = Box<dyn Fn(&mut KeyComponents)>;
        let edits: Vec<Edit> = vec![
            Box::new(|k| k.namespace = "x".into()),
            Box::new(|k| k.salt = "x".into()),
            Box::new(|k| k.cwd = Some("/x".into())),
            Box::new(|k| k.exe = None),
            Box::new(|k| k.env_patterns.push("Y".into())),
            Box::new(|k| k.input_patterns.push("y".into())),
            Box::new(|k| k.inputs.get_mut("img.png").unwrap().exec = true),
            Box::new(|k| k.stdin = Some(hex_digest(b""))),
            Box::new(|k| k.outputs.clear()),
            Box::new(|k| k.version += 1),
            Box::new(|k| k.traced = true),
            Box::new(|k| k.observed = Some(Default::default())),
            Box::new(|k| {
                let mut o = observed::ObservedInputs::new();
                o.insert("a".into(), observed::Seen::absent());
                k.observed = Some(o);
            }),
        ];
        for edit in edits {
            let mut k = sample();
            edit(&mut k);
            assert_ne!(k.key(), base);
        }
    }
}
