//! Content-addressed blobs: `cas-v1/ab/<blake3 of the uncompressed content>`.
//!
//! File format: `CCBLOB01` · blake3 of the compressed payload (32 bytes) · uncompressed size (u64
//! LE) · one zstd frame. The payload checksum lets a reader verify a blob *before* it writes the
//! first byte anywhere (a 1 MiB stdout is checked in a fraction of a millisecond without
//! decompressing twice); the content digest is checked again while decompressing, so a restored
//! file whose content does not match its name is never renamed into place.

use super::fsutil::{TempFile, fanout};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

const MAGIC: &[u8; 8] = b"CCBLOB01";
/// A blob stored uncompressed (see [`Cas::put_reader`]); same header, payload = the content.
const MAGIC_RAW: &[u8; 8] = b"CCBLOBR1";
/// How much of a blob's start is trial-compressed to choose its encoding.
const PROBE: usize = 256 * 1024;
const HEADER: usize = 8 + 32 + 8;

#[derive(Debug, Error)]
pub enum BlobError {
    #[error("blob {0} is missing")]
    Missing(String),
    #[error("blob {0} is corrupt")]
    Corrupt(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub struct Cas {
    pub dir: PathBuf,
}

/// What a put stored.
pub struct PutBlob {
    pub digest: String,
    pub size: u64,
    /// Bytes on disk for this blob (0 when it already existed).
    pub stored_bytes: u64,
}

/// Copy the rest of `reader` into `sink`, adding it to the content digest; returns the bytes.
fn copy_hashing(
    reader: &mut dyn Read,
    sink: &mut dyn Write,
    content: &mut blake3::Hasher,
) -> io::Result<u64> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        content.update(&buf[..n]);
        sink.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Writer that hashes the compressed bytes as they go to the temp file.
struct HashingWriter<'a> {
    inner: &'a mut File,
    hasher: blake3::Hasher,
    written: u64,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Cas {
    pub fn path(&self, digest: &str) -> PathBuf {
        fanout(&self.dir, digest)
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    /// Store everything `reader` yields, streaming (hash and compress in one pass).
    ///
    /// The first [`PROBE`] bytes decide the encoding: if zstd saves less than 30% on them (media,
    /// archives, random or base64 data), the blob is stored raw. Decoding such data costs far
    /// more than it saves (a 1 MiB base64 stdout: ~10 M instructions of entropy decoding per
    /// hit), while a raw blob replays with one hash and one copy.
    pub fn put_reader(
        &self,
        tmp_dir: &Path,
        reader: &mut dyn Read,
        level: i32,
    ) -> io::Result<PutBlob> {
        let mut t = TempFile::new(tmp_dir, "blob")?;
        t.file.write_all(&[0u8; HEADER])?;
        let mut content_hasher = blake3::Hasher::new();
        let mut head = Vec::with_capacity(PROBE);
        (&mut *reader).take(PROBE as u64).read_to_end(&mut head)?;
        let raw = head.len() >= 4096
            && zstd::bulk::compress(&head, level).map(|c| c.len() * 10 > head.len() * 7)?;
        content_hasher.update(&head);
        let (magic, payload_sum, payload_len, size) = if raw {
            t.file.write_all(&head)?;
            let rest = copy_hashing(reader, &mut t.file, &mut content_hasher)?;
            let size = head.len() as u64 + rest;
            // The payload is the content: its checksum is the content digest.
            (MAGIC_RAW, content_hasher.finalize(), size, size)
        } else {
            let mut hw = HashingWriter {
                inner: &mut t.file,
                hasher: blake3::Hasher::new(),
                written: 0,
            };
            let mut enc = zstd::stream::write::Encoder::new(&mut hw, level)?;
            enc.write_all(&head)?;
            let rest = copy_hashing(reader, &mut enc, &mut content_hasher)?;
            enc.finish()?;
            (
                MAGIC,
                hw.hasher.finalize(),
                hw.written,
                head.len() as u64 + rest,
            )
        };
        let digest = content_hasher.finalize().to_hex().to_string();
        let dest = self.path(&digest);
        // Reuse an existing copy only if it verifies: a corrupt one is replaced by this one.
        if dest.is_file() && self.open_verified(&digest).is_ok() {
            // Touch it: gc spares blobs touched after the records that referenced them, and this
            // one is about to be referenced by a new record.
            touch(&dest);
            return Ok(PutBlob {
                digest,
                size,
                stored_bytes: 0,
            });
        }
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(magic);
        header.extend_from_slice(payload_sum.as_bytes());
        header.extend_from_slice(&size.to_le_bytes());
        t.file.seek(SeekFrom::Start(0))?;
        t.file.write_all(&header)?;
        t.persist(&dest)?;
        Ok(PutBlob {
            digest,
            size,
            stored_bytes: HEADER as u64 + payload_len,
        })
    }

    /// Insert a blob file's bytes obtained elsewhere (the remote tier), only if they verify as
    /// the blob `digest`: payload checksum, then the full decompressed content digest. Returns
    /// false (and stores nothing) for anything that does not.
    pub fn insert_verified(&self, tmp_dir: &Path, digest: &str, bytes: &[u8]) -> io::Result<bool> {
        let mut t = TempFile::new(tmp_dir, "fetch")?;
        t.file.write_all(bytes)?;
        let staged = Cas {
            dir: tmp_dir.to_path_buf(),
        };
        // Verify the temp file in place through the normal reader.
        let ok = staged.verify_file(&t.path, digest);
        if ok {
            t.persist(&self.path(digest))?;
        }
        Ok(ok)
    }

    /// Whether the file at `path` is a valid blob with content `digest`.
    fn verify_file(&self, path: &Path, digest: &str) -> bool {
        let Ok(file) = File::open(path) else {
            return false;
        };
        match Self::open_file(file, digest) {
            Ok(mut r) => io::copy(&mut r, &mut io::sink()).is_ok(),
            Err(_) => false,
        }
    }

    /// Delete a blob found corrupt, so that the next store of that content writes it afresh.
    pub fn discard(&self, digest: &str) {
        let _ = std::fs::remove_file(self.path(digest));
    }

    /// The digest of the corrupt blob an error is about, if it is about one.
    pub fn corrupt_digest(err: &anyhow::Error) -> Option<String> {
        err.chain().find_map(|e| {
            let blob = e.downcast_ref::<BlobError>().or_else(|| {
                e.downcast_ref::<io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<BlobError>())
            });
            match blob {
                Some(BlobError::Corrupt(d)) => Some(d.clone()),
                _ => None,
            }
        })
    }

    /// Open a blob after verifying its payload checksum. The returned reader yields the
    /// uncompressed content and fails at the end if that content does not match `digest`.
    pub fn open_verified(&self, digest: &str) -> Result<BlobReader, BlobError> {
        let path = self.path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::Missing(digest.to_owned()));
            }
            Err(e) => return Err(e.into()),
        };
        Self::open_file(file, digest)
    }

    fn open_file(mut file: File, digest: &str) -> Result<BlobReader, BlobError> {
        let corrupt = || BlobError::Corrupt(digest.to_owned());
        let mut header = [0u8; HEADER];
        if file.read_exact(&mut header).is_err() {
            return Err(corrupt());
        }
        let raw = match &header[..8] {
            m if m == MAGIC => false,
            m if m == MAGIC_RAW => true,
            _ => return Err(corrupt()),
        };
        let mut hasher = blake3::Hasher::new();
        io::copy(&mut file, &mut hasher)?;
        let payload = hasher.finalize();
        if payload.as_bytes() != &header[8..40] {
            return Err(corrupt());
        }
        let size = u64::from_le_bytes(header[40..48].try_into().expect("8 bytes"));
        file.seek(SeekFrom::Start(HEADER as u64))?;
        if raw {
            // The payload is the content: verified in full above, against the name too.
            if payload.to_hex().as_str() != digest {
                return Err(corrupt());
            }
            return Ok(BlobReader {
                inner: Inner::Raw(file.take(size)),
                hasher: None,
                expected: digest.to_owned(),
                size,
                seen: 0,
                done: false,
            });
        }
        let decoder =
            zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(128 * 1024, file))?;
        Ok(BlobReader {
            inner: Inner::Zstd(Box::new(decoder)),
            hasher: Some(blake3::Hasher::new()),
            expected: digest.to_owned(),
            size,
            seen: 0,
            done: false,
        })
    }
}

/// Set a file's mtime to "now" as the kernel stamps file writes (`UTIME_NOW`), so that it
/// compares correctly with the mtime of a record written right after it. (A `SystemTime::now()`
/// is taken from a finer clock than the kernel's file timestamps and can look later than a
/// record written after it.)
fn touch(path: &Path) {
    use std::os::fd::AsRawFd;
    if let Ok(f) = File::options().write(true).open(path) {
        let times = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            },
        ];
        // SAFETY: a valid open descriptor and a two-element timespec array.
        unsafe {
            libc::futimens(f.as_raw_fd(), times.as_ptr());
        }
    }
}

/// Streaming reader of a verified blob's content.
pub struct BlobReader {
    inner: Inner,
    /// For zstd blobs: the content digest, checked when the content ends.
    hasher: Option<blake3::Hasher>,
    expected: String,
    pub size: u64,
    seen: u64,
    done: bool,
}

enum Inner {
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<File>>>),
    Raw(io::Take<File>),
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = match &mut self.inner {
            Inner::Zstd(d) => d.read(buf)?,
            Inner::Raw(f) => f.read(buf)?,
        };
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.seen += n as u64;
        if n == 0 {
            self.done = true;
            let digest_ok = self
                .hasher
                .as_ref()
                .is_none_or(|h| h.finalize().to_hex().as_str() == self.expected);
            if self.seen != self.size || !digest_ok {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    BlobError::Corrupt(self.expected.clone()),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_content_is_stored_raw_and_verified() {
        let d = tempfile::tempdir().unwrap();
        let cas = Cas {
            dir: d.path().join("cas"),
        };
        let tmp = d.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        // Pseudo-random bytes: zstd cannot shrink them.
        let mut x = 0x9e3779b97f4a7c15u64;
        let data: Vec<u8> = (0..400_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let put = cas.put_reader(&tmp, &mut &data[..], 3).unwrap();
        let p = cas.path(&put.digest);
        assert_eq!(&std::fs::read(&p).unwrap()[..8], MAGIC_RAW);
        let mut back = Vec::new();
        cas.open_verified(&put.digest)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[HEADER + 1000] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            cas.open_verified(&put.digest),
            Err(BlobError::Corrupt(_))
        ));
    }

    #[test]
    fn put_open_and_detect_flips() {
        let d = tempfile::tempdir().unwrap();
        let cas = Cas {
            dir: d.path().join("cas"),
        };
        let tmp = d.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let put = cas.put_reader(&tmp, &mut &data[..], 3).unwrap();
        assert_eq!(put.digest, blake3::hash(&data).to_hex().to_string());
        let mut back = Vec::new();
        cas.open_verified(&put.digest)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // Storing the same content again is free.
        assert_eq!(
            cas.put_reader(&tmp, &mut &data[..], 3)
                .unwrap()
                .stored_bytes,
            0
        );
        // Flip one payload byte: refused before any content is produced.
        let p = cas.path(&put.digest);
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            cas.open_verified(&put.digest),
            Err(BlobError::Corrupt(_))
        ));
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(
            cas.open_verified(&put.digest),
            Err(BlobError::Missing(_))
        ));
    }
}
