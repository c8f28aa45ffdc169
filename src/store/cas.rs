//! Content-addressed blobs: `cas-v1/ab/<blake3 of the uncompressed content>`.
//!
//! File format: `CCBLOB01` · blake3 of the compressed payload (32 bytes) · uncompressed size (u64
//! LE) · one zstd frame. The payload checksum lets a reader verify a blob *before* it writes the
//! first byte anywhere (a 1 MiB stdout is checked in a fraction of a millisecond without
//! decompressing twice); the content digest is checked again while decompressing, so a restored
//! file whose content does not match its name is never renamed into place.

use crate::fsutil::{TempFile, fanout};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
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
    copy_chunks(reader, sink, |chunk| {
        content.update(chunk);
    })
}

/// Copy the rest of `reader` into `sink` in 128 KiB chunks, showing each to `each`.
fn copy_chunks(
    reader: &mut dyn Read,
    sink: &mut dyn Write,
    mut each: impl FnMut(&[u8]),
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
        each(&buf[..n]);
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

    fn open_file(file: File, digest: &str) -> Result<BlobReader, BlobError> {
        let len = file.metadata()?.len();
        if len < HEADER as u64 {
            return Err(BlobError::Corrupt(digest.to_owned()));
        }
        if len <= MAP_MAX {
            Self::open_mapped(file, digest)
        } else {
            Self::open_streamed(file, len, digest)
        }
    }

    /// Map the whole blob: it is read from the page cache once, for the checksum, and its
    /// content is then written straight from the mapping (raw) or decoded from it (zstd).
    /// CAS files are never rewritten in place (every write is a temp file renamed over), and an
    /// unlinked file stays mapped, so the mapping cannot change under the reader.
    fn open_mapped(file: File, digest: &str) -> Result<BlobReader, BlobError> {
        // SAFETY: see above; the mapping is read-only and private to this reader.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file)? };
        let header = Header::parse(&map[..HEADER], digest)?;
        let payload = &map[HEADER..];
        let sum = hash(payload);
        header.check_payload(&sum, payload.len() as u64, digest)?;
        let inner = if header.raw {
            Inner::Mapped { map, pos: HEADER }
        } else if header.size <= DECODE_WHOLE_MAX {
            // One-shot decoding straight into the content's buffer, verified before any of
            // it is handed out: no streaming window to allocate and zero (a compile hit's
            // 15 KB object file spent more instructions clearing that window than decoding).
            let data = zstd::bulk::decompress(payload, header.size as usize)
                .map_err(|_| BlobError::Corrupt(digest.to_owned()))?;
            if data.len() as u64 != header.size || hash(&data).to_hex().as_str() != digest {
                return Err(BlobError::Corrupt(digest.to_owned()));
            }
            let mut reader = BlobReader::new(Inner::Memory { data, pos: 0 }, header, digest);
            // Verified in full just now.
            reader.hasher = None;
            return Ok(reader);
        } else {
            let mut cursor = io::Cursor::new(map);
            cursor.set_position(HEADER as u64);
            Inner::Zstd(Box::new(zstd::stream::read::Decoder::with_buffer(
                Box::new(cursor) as Box<dyn BufRead + Send>,
            )?))
        };
        Ok(BlobReader::new(inner, header, digest))
    }

    /// Blobs too large to map whole are checked in windows, then read again: the peak memory
    /// stays at one window however large the output.
    fn open_streamed(mut file: File, len: u64, digest: &str) -> Result<BlobReader, BlobError> {
        let mut head = [0u8; HEADER];
        file.read_exact(&mut head)?;
        let header = Header::parse(&head, digest)?;
        let mut hasher = blake3::Hasher::new();
        let mut window = vec![0u8; WINDOW];
        loop {
            let n = read_full(&mut file, &mut window)?;
            if n == 0 {
                break;
            }
            hasher.update_rayon(&window[..n]);
        }
        header.check_payload(&hasher.finalize(), len - HEADER as u64, digest)?;
        file.seek(SeekFrom::Start(HEADER as u64))?;
        let inner = if header.raw {
            Inner::Raw(file.take(header.size))
        } else {
            Inner::Zstd(Box::new(zstd::stream::read::Decoder::with_buffer(
                Box::new(BufReader::with_capacity(WINDOW, file)) as Box<dyn BufRead + Send>,
            )?))
        };
        Ok(BlobReader::new(inner, header, digest))
    }
}

/// Blobs up to this size are mapped whole ([`Cas::open_mapped`]).
const MAP_MAX: u64 = if cfg!(test) { 1 << 20 } else { 32 << 20 };
/// zstd blobs whose content is up to this size are decoded whole into memory.
const DECODE_WHOLE_MAX: u64 = 4 << 20;
/// Read size for blobs larger than [`MAP_MAX`].
const WINDOW: usize = 1 << 20;
/// Payloads from this size are hashed on every core: below it, waking the thread pool costs
/// more than it saves.
const PARALLEL_HASH_MIN: usize = 4 << 20;

fn hash(data: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    if data.len() >= PARALLEL_HASH_MIN {
        h.update_rayon(data);
    } else {
        h.update(data);
    }
    h.finalize()
}

/// Read until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A blob file's fixed header.
struct Header {
    raw: bool,
    payload_sum: [u8; 32],
    size: u64,
}

impl Header {
    fn parse(bytes: &[u8], digest: &str) -> Result<Header, BlobError> {
        let raw = match &bytes[..8] {
            m if m == MAGIC => false,
            m if m == MAGIC_RAW => true,
            _ => return Err(BlobError::Corrupt(digest.to_owned())),
        };
        Ok(Header {
            raw,
            payload_sum: bytes[8..40].try_into().expect("32 bytes"),
            size: u64::from_le_bytes(bytes[40..48].try_into().expect("8 bytes")),
        })
    }

    /// Check the payload's checksum; a raw payload is the content, so it must also match the
    /// blob's name and its recorded size.
    fn check_payload(
        &self,
        sum: &blake3::Hash,
        payload_len: u64,
        digest: &str,
    ) -> Result<(), BlobError> {
        let ok = sum.as_bytes() == &self.payload_sum
            && (!self.raw || (sum.to_hex().as_str() == digest && payload_len == self.size));
        if ok {
            Ok(())
        } else {
            Err(BlobError::Corrupt(digest.to_owned()))
        }
    }
}

/// Set a file's mtime to "now" as the kernel stamps file writes (`UTIME_NOW`), so that it
/// compares correctly with the mtime of a record written right after it. (A `SystemTime::now()`
/// is taken from a finer clock than the kernel's file timestamps and can look later than a
/// record written after it.)
pub(crate) fn touch(path: &Path) {
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
    /// A raw blob mapped whole; `pos` is the next byte to hand out.
    Mapped {
        map: memmap2::Mmap,
        pos: usize,
    },
    /// A small zstd blob's content, decoded and verified.
    Memory {
        data: Vec<u8>,
        pos: usize,
    },
    /// A raw blob read from the file.
    Raw(io::Take<File>),
    Zstd(Box<zstd::stream::read::Decoder<'static, Box<dyn BufRead + Send>>>),
}

impl BlobReader {
    fn new(inner: Inner, header: Header, digest: &str) -> BlobReader {
        BlobReader {
            hasher: (!header.raw).then(blake3::Hasher::new),
            inner,
            expected: digest.to_owned(),
            size: header.size,
            seen: 0,
            done: false,
        }
    }

    /// The rest of the content as one slice, when it is already verified in full (a raw blob
    /// up to [`MAP_MAX`], mapped; a zstd one up to [`DECODE_WHOLE_MAX`], decoded): the caller
    /// writes it without a copy.
    pub fn verified_rest(&self) -> Option<&[u8]> {
        match &self.inner {
            Inner::Mapped { map, pos } => Some(&map[*pos..]),
            Inner::Memory { data, pos } => Some(&data[*pos..]),
            _ => None,
        }
    }

    /// Mark `n` bytes of [`Self::verified_rest`] as consumed.
    pub fn consume_verified(&mut self, n: usize) {
        if let Inner::Mapped { pos, .. } | Inner::Memory { pos, .. } = &mut self.inner {
            *pos += n;
            self.seen += n as u64;
        }
    }

    /// Write the rest of the content into `file`: from the mapping, by `copy_file_range` for a
    /// large raw blob (the kernel copies, nothing passes through this process), or decoded.
    pub fn copy_to_file(&mut self, file: &mut File) -> io::Result<u64> {
        if let Some(rest) = self.verified_rest() {
            file.write_all(rest)?;
            let n = rest.len();
            self.consume_verified(n);
            return Ok(n as u64);
        }
        match &mut self.inner {
            Inner::Mapped { .. } | Inner::Memory { .. } => unreachable!("handled above"),
            // std turns a copy between two files into copy_file_range.
            Inner::Raw(take) => {
                let n = io::copy(take, file)?;
                self.seen += n;
                self.done = true;
                if self.seen != self.size {
                    return Err(self.corrupt());
                }
                Ok(n)
            }
            // Decoded (and its digest checked at the end) by our own `Read`.
            Inner::Zstd(_) => copy_chunks(self, file, |_| ()),
        }
    }

    fn corrupt(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            BlobError::Corrupt(self.expected.clone()),
        )
    }
}

/// Copy from `bytes[*pos..]` into `buf`, advancing `pos`.
fn copy_from(bytes: &[u8], pos: &mut usize, buf: &mut [u8]) -> usize {
    let rest = &bytes[*pos..];
    let n = rest.len().min(buf.len());
    buf[..n].copy_from_slice(&rest[..n]);
    *pos += n;
    n
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = match &mut self.inner {
            Inner::Mapped { map: bytes, pos } => copy_from(bytes, pos, buf),
            Inner::Memory { data: bytes, pos } => copy_from(bytes, pos, buf),
            Inner::Raw(f) => f.read(buf)?,
            Inner::Zstd(d) => d.read(buf)?,
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
                return Err(self.corrupt());
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
        let (_dir, cas, tmp) = fixture();
        // Pseudo-random bytes: zstd cannot shrink them.
        let data = pseudo_random(400_000);
        let put = cas.put_reader(&tmp, &mut &data[..], 3).unwrap();
        let p = cas.path(&put.digest);
        assert_eq!(&std::fs::read(&p).unwrap()[..8], MAGIC_RAW);
        let back = read_back(&cas, &put.digest);
        assert_eq!(back, data);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[HEADER + 1000] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            cas.open_verified(&put.digest),
            Err(BlobError::Corrupt(_))
        ));
    }

    /// A temp dir holding an empty CAS and a temp folder for its writes.
    fn fixture() -> (tempfile::TempDir, Cas, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let cas = Cas {
            dir: d.path().join("cas"),
        };
        let tmp = d.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        (d, cas, tmp)
    }

    /// A blob's whole content, through the verifying reader.
    fn read_back(cas: &Cas, digest: &str) -> Vec<u8> {
        let mut back = Vec::new();
        cas.open_verified(digest)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    fn pseudo_random(len: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Both encodings, mapped (up to MAP_MAX, 1 MiB under test) and streamed (beyond it):
    /// read back whole, copied into a file, and refused after one flipped payload byte.
    #[test]
    fn mapped_and_streamed_blobs_round_trip_and_detect_flips() {
        let (d, cas, tmp) = fixture();
        let compressible = |len: usize| (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
        let cases = [
            pseudo_random(300_000),
            pseudo_random(3 << 20),
            compressible(300_000),
            // Compresses to under MAP_MAX as well as over it.
            compressible(5 << 20),
            pseudo_random(1 << 20).repeat(3),
        ];
        for data in cases {
            let put = cas.put_reader(&tmp, &mut &data[..], 3).unwrap();
            let back = read_back(&cas, &put.digest);
            assert!(back == data, "read back {} bytes", data.len());
            let out = d.path().join("out");
            let mut f = File::create(&out).unwrap();
            let n = cas
                .open_verified(&put.digest)
                .unwrap()
                .copy_to_file(&mut f)
                .unwrap();
            assert_eq!(n, data.len() as u64);
            assert!(std::fs::read(&out).unwrap() == data);
            let p = cas.path(&put.digest);
            let good = std::fs::read(&p).unwrap();
            for at in [HEADER, good.len() / 2, good.len() - 1] {
                let mut bad = good.clone();
                bad[at] ^= 0x10;
                std::fs::write(&p, &bad).unwrap();
                assert!(
                    matches!(cas.open_verified(&put.digest), Err(BlobError::Corrupt(_))),
                    "flip at {at} of {}",
                    good.len()
                );
            }
            // A raw payload one byte short of its recorded size is refused too.
            let mut short = good.clone();
            short.pop();
            std::fs::write(&p, &short).unwrap();
            assert!(cas.open_verified(&put.digest).is_err());
            std::fs::write(&p, &good).unwrap();
        }
    }

    #[test]
    fn put_open_and_detect_flips() {
        let (_dir, cas, tmp) = fixture();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let put = cas.put_reader(&tmp, &mut &data[..], 3).unwrap();
        assert_eq!(put.digest, blake3::hash(&data).to_hex().to_string());
        let back = read_back(&cas, &put.digest);
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
