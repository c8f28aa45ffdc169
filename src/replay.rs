//! Writing a stored entry's stdout and stderr back, in their original interleaving.
//!
//! Inline streams come from the record itself; blob streams are verified (payload checksum)
//! before the first byte is written, then decompressed chunk by chunk, so nothing large is held
//! in memory and a corrupt blob turns into a miss rather than into garbage on the terminal.

use crate::stdio::FdSink;
use crate::store::Store;
use crate::store::cas::{BlobError, BlobReader};
use crate::store::record::Decoded;
use std::io::{self, Read, Write};

enum Source<'a> {
    Inline(&'a [u8]),
    Blob(Box<BlobReader>),
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The stored stream is damaged (a blob ended early or failed its digest): the entry must
    /// be dropped and the command run.
    #[error("reading the stored output: {0}")]
    Stored(io::Error),
    /// cachectl's own stdout or stderr failed (a full disk behind `> file`). The entry is fine,
    /// and running the command now would write after what was already replayed.
    #[error("writing the replayed output: {0}")]
    Output(io::Error),
}

fn ended_early() -> ReplayError {
    ReplayError::Stored(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "stream blob ended early",
    ))
}

impl Source<'_> {
    fn copy(
        &mut self,
        len: u64,
        out: &mut dyn Write,
        buf: &mut Vec<u8>,
    ) -> Result<(), ReplayError> {
        match self {
            Source::Inline(data) => {
                let n = (len as usize).min(data.len());
                let (head, tail) = data.split_at(n);
                *data = tail;
                out.write_all(head).map_err(ReplayError::Output)
            }
            Source::Blob(r) => {
                if let Some(rest) = r.verified_rest() {
                    // Verified in full when opened: write straight from the mapping.
                    let Some(chunk) = usize::try_from(len).ok().and_then(|n| rest.get(..n)) else {
                        return Err(ended_early());
                    };
                    out.write_all(chunk).map_err(ReplayError::Output)?;
                    r.consume_verified(chunk.len());
                    return Ok(());
                }
                if buf.is_empty() {
                    buf.resize(128 * 1024, 0);
                }
                let mut left = len;
                while left > 0 {
                    let want = (left as usize).min(buf.len());
                    let n = r.read(&mut buf[..want]).map_err(ReplayError::Stored)?;
                    if n == 0 {
                        return Err(ended_early());
                    }
                    out.write_all(&buf[..n]).map_err(ReplayError::Output)?;
                    left -= n as u64;
                }
                Ok(())
            }
        }
    }

    /// Drain the rest (a blob's digest is checked when it reaches its end).
    fn finish(&mut self) -> Result<(), ReplayError> {
        if let Source::Blob(r) = self {
            io::copy(r, &mut io::sink()).map_err(ReplayError::Stored)?;
        }
        Ok(())
    }
}

/// Streams opened and verified, ready to write.
pub struct PreparedStreams<'a> {
    sources: [Source<'a>; 2],
    chunks: &'a [u64],
    pub bytes: u64,
}

/// Open (and verify) the stream blobs of `d`. Fails if a blob is missing or corrupt.
pub fn prepare<'a, C>(store: &Store, d: &'a Decoded<C>) -> Result<PreparedStreams<'a>, BlobError> {
    let open = |inline: &'a [u8], blob: &Option<String>| -> Result<Source<'a>, BlobError> {
        match blob {
            None => Ok(Source::Inline(inline)),
            Some(digest) => Ok(Source::Blob(Box::new(store.cas.open_verified(digest)?))),
        }
    };
    Ok(PreparedStreams {
        sources: [
            open(&d.inline_stdout, &d.record.stdout.blob)?,
            open(&d.inline_stderr, &d.record.stderr.blob)?,
        ],
        chunks: &d.record.chunks,
        bytes: d.record.stdout.size + d.record.stderr.size,
    })
}

impl PreparedStreams<'_> {
    /// Write both streams to our stdout and stderr in the recorded order. A closed stdout or
    /// stderr (a reader that went away) ends the replay quietly, as it would end the command.
    pub fn write(mut self) -> Result<(), ReplayError> {
        let mut sinks = [FdSink(1), FdSink(2)];
        // Only a blob read from its file needs a buffer.
        let mut buf = Vec::new();
        for &c in self.chunks {
            let stream = (c & 1) as usize;
            let len = c >> 1;
            match self.sources[stream].copy(len, &mut sinks[stream], &mut buf) {
                Err(ReplayError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                    return Ok(());
                }
                other => other?,
            }
        }
        for s in &mut self.sources {
            s.finish()?;
        }
        Ok(())
    }
}
