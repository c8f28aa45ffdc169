//! Manifests (`mf-v1/ab/<key>`): for an `auto` command, the observed-input sets its stored
//! runs depended on, each pointing at the entry it produced (ccache's direct-mode manifest,
//! generalised to any command).
//!
//! The key of what is known before running (argv, cwd, declared inputs...) names the manifest.
//! A lookup checks its candidates newest first; the first whose every observed input still
//! matches names the entry to serve. At most [`MAX_CANDIDATES`] are kept, so several states
//! of one command (two branches, A/B/A/B) all hit without a manifest growing without bound.
//!
//! Format: `CCMAN001` · blake3 of the rest · u32 body length · JSON body. A manifest that does
//! not verify is removed and reads as none (its entries are still there, and a run adds a new
//! candidate).

use crate::key::observed::{Memo, ObservedInputs, first_change};
use crate::key::statcache::StatCache;
use crate::paths::display_encoded;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::Path;
use thiserror::Error;

const MAGIC: &[u8; 8] = b"CCMAN001";
const HEADER: usize = 8 + 32 + 4;

/// How many candidates a manifest keeps (the oldest go first).
pub const MAX_CANDIDATES: usize = 16;

/// One stored run of the command: what it depended on, and the entry it produced.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The entry's key (its record is `ac-v1/<entry>`).
    pub entry: String,
    pub created_ms: u64,
    pub inputs: ObservedInputs,
}

/// Candidates, newest first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Manifest {
    /// The key this manifest is stored under (checked on read: a file copied to the wrong
    /// name is not believed).
    pub key: String,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("manifest is truncated or not a cachectl manifest")]
    Malformed,
    #[error("manifest checksum does not match")]
    Checksum,
    #[error("manifest body is invalid: {0}")]
    Body(#[from] serde_json::Error),
}

impl Manifest {
    /// The newest candidate whose every observed input is as it was (paths relative to
    /// `cwd`); `Err`: none, and the first change of the newest one, in words.
    /// Candidates `usable` refuses (their entry is gone) are passed over; the first of them
    /// that matched is named in the answer.
    pub fn choose(
        &self,
        cwd: &Path,
        cache: &mut StatCache,
        usable: impl Fn(&Candidate) -> bool,
    ) -> Result<&Candidate, NoMatch> {
        // (One candidate: every path is looked at once anyway.)
        let mut memo = (self.candidates.len() > 1).then(Memo::default);
        let mut why = None;
        let mut gone = None;
        for c in &self.candidates {
            match first_change(&c.inputs, cwd, cache, memo.as_mut()) {
                None if usable(c) => return Ok(c),
                None => {
                    gone.get_or_insert_with(|| c.entry.clone());
                }
                Some((path, now)) if why.is_none() => {
                    let detail = match now {
                        Ok(now) => now.difference(&c.inputs[&path]),
                        Err(e) => format!("cannot be read: {e}"),
                    };
                    why = Some(format!(
                        "input {} changed ({detail})",
                        display_encoded(&path)
                    ));
                }
                Some(_) => {}
            }
        }
        Err(match gone {
            Some(entry) => NoMatch {
                why: "no entry (the matching one is gone)".to_owned(),
                gone: Some(entry),
            },
            None => NoMatch {
                why: why.unwrap_or_else(|| "no candidate".to_owned()),
                gone: None,
            },
        })
    }

    /// Put `c` first; an older candidate for the same entry goes, and so do the oldest beyond
    /// [`MAX_CANDIDATES`].
    pub fn add(&mut self, c: Candidate) {
        self.candidates.retain(|old| old.entry != c.entry);
        self.candidates.insert(0, c);
        self.candidates.truncate(MAX_CANDIDATES);
    }

    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).expect("a manifest always serialises");
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[0u8; 32]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        let sum = blake3::hash(&out[40..]);
        out[8..40].copy_from_slice(sum.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(ManifestError::Malformed);
        }
        if blake3::hash(&bytes[40..]).as_bytes() != &bytes[8..40] {
            return Err(ManifestError::Checksum);
        }
        let len = u32::from_le_bytes(bytes[40..44].try_into().expect("4 bytes")) as usize;
        if bytes.len() != HEADER + len {
            return Err(ManifestError::Malformed);
        }
        Ok(serde_json::from_slice(&bytes[HEADER..])?)
    }
}

/// Why no candidate of a manifest can be served.
#[derive(Debug, Clone)]
pub struct NoMatch {
    /// In words: the first change of the newest candidate, or that the matching one's entry is
    /// gone.
    pub why: String,
    /// The entry of a candidate that matched but is gone (evicted, invalidated): the miss is
    /// that entry's (a hit `gc` took away, as `stats` counts them).
    pub gone: Option<String>,
}

/// What a manifest says about the file system now.
pub enum Selection {
    /// Every observed input of this candidate's run is as it was: its entry.
    Entry(String),
    /// No candidate can be served.
    NoMatch(NoMatch),
    Missing,
    /// It did not verify, and has been removed.
    Corrupt(ManifestError),
}

/// What reading a manifest found.
pub enum Read {
    Found(Manifest),
    Missing,
    /// It did not verify, and has been removed.
    Corrupt(ManifestError),
}

impl super::Store {
    pub fn manifest_path(&self, key: &str) -> std::path::PathBuf {
        crate::fsutil::fanout(&super::layout::Item::Manifests.path(&self.root), key)
    }

    pub fn read_manifest(&self, key: &str) -> io::Result<Read> {
        let path = self.manifest_path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Read::Missing),
            Err(e) => return Err(e),
        };
        let m = match Manifest::decode(&bytes) {
            Ok(m) if m.key == key => return Ok(Read::Found(m)),
            Ok(_) => ManifestError::Malformed,
            Err(e) => e,
        };
        let _ = std::fs::remove_file(&path);
        Ok(Read::Corrupt(m))
    }

    /// The manifest for `key`, or an empty one (none, or a corrupt one, which is removed).
    pub fn manifest_or_new(&self, key: &str) -> io::Result<Manifest> {
        Ok(match self.read_manifest(key)? {
            Read::Found(m) => m,
            Read::Missing | Read::Corrupt(_) => Manifest {
                key: key.to_owned(),
                candidates: Vec::new(),
            },
        })
    }

    /// Check the candidates of the manifest for `key`, newest first, against the file system
    /// (paths relative to `cwd`); their files' digests go through the manifest's stat cache.
    pub fn select(&self, key: &str, cwd: &std::path::Path) -> io::Result<Selection> {
        let manifest = match self.read_manifest(key)? {
            Read::Found(m) => m,
            Read::Missing => return Ok(Selection::Missing),
            Read::Corrupt(e) => return Ok(Selection::Corrupt(e)),
        };
        let mut cache = self.manifest_stat_cache(key);
        let chosen = manifest
            .choose(cwd, &mut cache, |c| self.record_path(&c.entry).exists())
            .map(|c| c.entry.clone());
        if self.tmp.is_dir() {
            cache.save(&self.tmp);
        }
        Ok(match chosen {
            Ok(c) => Selection::Entry(c),
            Err(why) => Selection::NoMatch(why),
        })
    }

    /// The key of the entry a run with these components would be served, if there is one to
    /// look up: the key itself, or for `--trace auto` the entry of the matching candidate.
    pub fn entry_for(
        &self,
        components: &crate::key::KeyComponents,
        cwd: &std::path::Path,
    ) -> io::Result<Option<String>> {
        let key = components.key();
        if !components.traced {
            return Ok(Some(key));
        }
        Ok(match self.select(&key, cwd)? {
            Selection::Entry(e) => Some(e),
            _ => None,
        })
    }

    /// The stat cache of a manifest's observed files (its paths are looked up in sorted
    /// order, as the cache likes).
    pub fn manifest_stat_cache(&self, key: &str) -> StatCache {
        StatCache::load(Some(crate::fsutil::fanout(
            &self.stat,
            &format!("{key}-trace"),
        )))
    }

    /// Add a candidate to the manifest for `key` (the caller holds the key's lock, so no other
    /// process adds to it meanwhile). A missing or corrupt manifest starts afresh.
    pub fn add_candidate(&self, key: &str, c: Candidate) -> anyhow::Result<u64> {
        let mut m = self.manifest_or_new(key)?;
        m.add(c);
        let bytes = m.encode();
        let path = self.manifest_path(key);
        crate::fsutil::write_atomic(&path, &self.tmp, &bytes)
            .map_err(|e| anyhow::anyhow!("writing manifest {}: {e}", path.display()))?;
        Ok(bytes.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(entry: &str) -> Candidate {
        Candidate {
            entry: entry.into(),
            created_ms: 1,
            inputs: ObservedInputs::new(),
        }
    }

    #[test]
    fn newest_first_bounded_and_one_per_entry() {
        let mut m = Manifest::default();
        for i in 0..20 {
            m.add(cand(&format!("e{i}")));
        }
        assert_eq!(m.candidates.len(), MAX_CANDIDATES);
        assert_eq!(m.candidates[0].entry, "e19");
        m.add(cand("e10"));
        assert_eq!(m.candidates[0].entry, "e10");
        assert_eq!(m.candidates.len(), MAX_CANDIDATES);
        assert_eq!(m.candidates.iter().filter(|c| c.entry == "e10").count(), 1);
    }

    #[test]
    fn every_damage_is_detected() {
        let mut m = Manifest {
            key: "k".into(),
            ..Default::default()
        };
        m.add(cand("e"));
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(Manifest::decode(&b).is_err(), "flip at {i}");
        }
        for n in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..n]).is_err(), "truncated to {n}");
        }
    }
}
