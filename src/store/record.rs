//! Action-cache records: `ac-v1/ab/<key>`, one per key.
//!
//! File format: `CCREC001` · blake3 of the rest (32 bytes) · body length (u32 LE) · JSON body
//! ([`Record`]) · inline stdout bytes · inline stderr bytes. The checksum covers everything after
//! it, so a truncated or flipped record is detected and treated as a miss. JSON keeps the record
//! readable with ordinary tools (`show` prints it); the raw inline streams avoid escaping costs on
//! the hit path.
//!
//! The key components are most of a record's body (a command over 100 000 inputs writes 12 MB of
//! them) and no hit needs them: the key that found the record was derived from them. So the run
//! path decodes a [`HitRecord`], which skips them with serde's [`IgnoredAny`] (a syntax scan,
//! no allocation), and only `explain`, `show`, `verify` and the index decode them in full. The
//! checksum still covers the whole file either way.

use crate::key::KeyComponents;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use thiserror::Error;

const MAGIC: &[u8; 8] = b"CCREC001";
const HEADER: usize = 8 + 32 + 4;

/// Where a captured stream's bytes live.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct StreamRef {
    pub size: u64,
    /// `None`: inline in the record file. `Some(digest)`: a CAS blob.
    pub blob: Option<String>,
}

/// A restored output path.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OutputEntry {
    /// Relative to the working directory, encoded with `paths::encode_os`.
    pub path: String,
    pub kind: OutputKind,
    /// Permission bits (files and dirs).
    #[serde(default)]
    pub mode: u32,
    /// Content digest (files).
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    /// Link text (symlinks), encoded.
    #[serde(default)]
    pub target: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    File,
    Dir,
    Symlink,
}

/// Everything stored for one key. `C` is how the key components are held: in full
/// ([`KeyComponents`], the default), or skipped ([`HitRecord`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Record<C = KeyComponents> {
    pub key: String,
    /// The command line as matched by rules and `ls`.
    pub command: String,
    /// Absolute working directory the entry was made in (informational: it is keyed only
    /// without `--no-cwd`).
    pub cwd: String,
    pub namespace: String,
    pub tags: Vec<String>,
    pub created_ms: u64,
    pub duration_ms: u64,
    pub exit_code: i32,
    pub stdout: StreamRef,
    pub stderr: StreamRef,
    /// Interleaving of the two streams as captured: each value is `len << 1 | stream` with
    /// stream 0 = stdout, 1 = stderr; consecutive chunks of one stream are merged.
    pub chunks: Vec<u64>,
    pub outputs: Vec<OutputEntry>,
    pub components: C,
    /// `--trace auto`: paths outside the working directory (and the temp dir) the run wrote,
    /// encoded. A hit does not write them again; `show` lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub side_effects: Vec<String>,
    /// `--trace auto`: what the run connected to outside the traced tree (`unix:PATH`,
    /// `network`): its answers are not keyed. `show` lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
}

/// A record as the hit path reads it: the key components are checked to be well-formed JSON
/// but not decoded.
pub type HitRecord = Record<IgnoredAny>;

impl<C> Record<C> {
    /// Blobs this record references (streams and output files).
    pub fn blobs(&self) -> impl Iterator<Item = &str> {
        self.stdout
            .blob
            .as_deref()
            .into_iter()
            .chain(self.stderr.blob.as_deref())
            .chain(
                self.outputs
                    .iter()
                    .filter(|o| o.kind == OutputKind::File)
                    .map(|o| o.digest.as_str()),
            )
    }
}

#[derive(Debug, Error)]
pub enum RecordError {
    #[error("record is truncated or not a cachectl record")]
    Malformed,
    #[error("record checksum does not match")]
    Checksum,
    #[error("record body is invalid: {0}")]
    Body(#[from] serde_json::Error),
}

/// A decoded record with its inline stream bytes.
#[derive(Debug)]
pub struct Decoded<C = KeyComponents> {
    pub record: Record<C>,
    pub inline_stdout: Vec<u8>,
    pub inline_stderr: Vec<u8>,
}

pub fn encode(record: &Record, inline_stdout: &[u8], inline_stderr: &[u8]) -> Vec<u8> {
    let body = serde_json::to_vec(record).expect("a record always serialises");
    let mut out =
        Vec::with_capacity(HEADER + body.len() + inline_stdout.len() + inline_stderr.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0u8; 32]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(inline_stdout);
    out.extend_from_slice(inline_stderr);
    let sum = blake3::hash(&out[40..]);
    out[8..40].copy_from_slice(sum.as_bytes());
    out
}

/// Verify and decode a record, key components included.
pub fn decode(bytes: &[u8]) -> Result<Decoded, RecordError> {
    decode_as(bytes)
}

/// Verify and decode a record for serving it: the key components are skipped (see the module
/// docs). Every check [`decode`] makes on the rest of the file is made.
pub fn decode_for_hit(bytes: &[u8]) -> Result<Decoded<IgnoredAny>, RecordError> {
    decode_as(bytes)
}

fn decode_as<C: DeserializeOwned>(bytes: &[u8]) -> Result<Decoded<C>, RecordError> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(RecordError::Malformed);
    }
    if blake3::hash(&bytes[40..]).as_bytes() != &bytes[8..40] {
        return Err(RecordError::Checksum);
    }
    let body_len = u32::from_le_bytes(bytes[40..44].try_into().expect("4 bytes")) as usize;
    let body = bytes
        .get(HEADER..HEADER + body_len)
        .ok_or(RecordError::Malformed)?;
    let record: Record<C> = serde_json::from_slice(body)?;
    let rest = &bytes[HEADER + body_len..];
    let inline = |s: &StreamRef| if s.blob.is_none() { s.size } else { 0 };
    // Sizes come from the file: checked arithmetic, so a damaged record is refused, not a panic.
    let (out_len, err_len) = (inline(&record.stdout), inline(&record.stderr));
    if out_len.checked_add(err_len) != Some(rest.len() as u64) {
        return Err(RecordError::Malformed);
    }
    let out_len = out_len as usize;
    Ok(Decoded {
        inline_stdout: rest[..out_len].to_vec(),
        inline_stderr: rest[out_len..].to_vec(),
        record,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::key::{KEY_VERSION, KeyComponents};
    use std::collections::BTreeMap;

    pub fn sample() -> Record {
        Record {
            key: "ab".repeat(32),
            command: "echo hi".into(),
            cwd: "/w".into(),
            namespace: "default".into(),
            tags: vec!["t".into()],
            created_ms: 1_700_000_000_000,
            duration_ms: 1500,
            exit_code: 0,
            stdout: StreamRef {
                size: 3,
                blob: None,
            },
            stderr: StreamRef {
                size: 2,
                blob: None,
            },
            chunks: vec![2 << 1, (2 << 1) | 1, 1 << 1],
            outputs: vec![],
            components: KeyComponents {
                version: KEY_VERSION,
                namespace: "default".into(),
                salt: String::new(),
                argv: vec!["echo".into(), "hi".into()],
                cwd: None,
                exe: None,
                env_patterns: vec![],
                env: BTreeMap::new(),
                input_patterns: vec![],
                inputs: BTreeMap::new(),
                outputs: vec![],
                stdin: None,
                traced: false,
                observed: None,
            },
            side_effects: vec![],
            peers: vec![],
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample(), b"hi\n", b"e\n");
        let d = decode(&bytes).unwrap();
        assert_eq!(d.record, sample());
        assert_eq!(d.inline_stdout, b"hi\n");
        assert_eq!(d.inline_stderr, b"e\n");
    }

    #[test]
    fn every_flip_and_truncation_is_detected() {
        let bytes = encode(&sample(), b"hi\n", b"e\n");
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(decode(&b).is_err(), "flip at {i} not detected");
            assert!(decode_for_hit(&b).is_err(), "flip at {i} not detected");
        }
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "truncation to {len} not detected"
            );
            assert!(
                decode_for_hit(&bytes[..len]).is_err(),
                "truncation to {len} not detected"
            );
        }
    }

    /// The hit path sees every field but the components exactly as a full decode does.
    #[test]
    fn hit_decode_matches_full_decode() {
        let mut rec = sample();
        rec.components.inputs.insert(
            "a\"b".into(),
            crate::key::InputState {
                kind: crate::key::InputKind::File,
                exec: true,
                digest: "00".repeat(32),
            },
        );
        rec.outputs.push(OutputEntry {
            path: "out".into(),
            kind: OutputKind::File,
            mode: 0o644,
            digest: "11".repeat(32),
            size: 9,
            target: String::new(),
        });
        let bytes = encode(&rec, b"hi\n", b"e\n");
        let full = decode(&bytes).unwrap();
        let hit = decode_for_hit(&bytes).unwrap();
        let Record {
            components: _,
            key,
            command,
            cwd,
            namespace,
            tags,
            created_ms,
            duration_ms,
            exit_code,
            stdout,
            stderr,
            chunks,
            outputs,
            side_effects,
            peers,
        } = hit.record;
        let skipped = Record {
            key,
            command,
            cwd,
            namespace,
            tags,
            created_ms,
            duration_ms,
            exit_code,
            stdout,
            stderr,
            chunks,
            outputs,
            components: full.record.components.clone(),
            side_effects,
            peers,
        };
        assert_eq!(skipped, full.record);
        assert_eq!(hit.inline_stdout, full.inline_stdout);
        assert_eq!(hit.inline_stderr, full.inline_stderr);
    }
}
