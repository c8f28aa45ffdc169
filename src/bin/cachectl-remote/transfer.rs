//! get / put / check against the remote, with everything verified on the way in.

use cachectl::remote::{FailureKind, Mode, Outcome, Status, Step, open_signed, sign};
use cachectl::store::Store;
use cachectl::store::manifest::{MAX_CANDIDATES, Manifest};
use cachectl::store::record;
use opendal::{ErrorKind, Operator};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

pub struct Context {
    pub op: Operator,
    /// In `rw` mode a provably corrupt object (one that fails its checksum or digest) is
    /// deleted when found, so the next upload of that entry repairs the remote.
    pub mode: Mode,
    pub store: Store,
    pub namespace: Option<String>,
    pub secret: Option<String>,
}

/// A failure, classified for the caller: `timeout`, `auth`, `refused`, `config` or `io`.
#[derive(Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn config(message: &str) -> Self {
        Failure {
            kind: FailureKind::Config,
            message: message.to_owned(),
        }
    }
    fn refused(message: String) -> Self {
        Failure {
            kind: FailureKind::Refused,
            message,
        }
    }
    pub fn io(message: String) -> Self {
        Failure {
            kind: FailureKind::Io,
            message,
        }
    }
    pub fn auth(message: String) -> Self {
        Failure {
            kind: FailureKind::Auth,
            message,
        }
    }
    pub fn timeout(message: String) -> Self {
        Failure {
            kind: FailureKind::Timeout,
            message,
        }
    }
    fn local(e: impl std::fmt::Display) -> Self {
        Failure {
            kind: FailureKind::Io,
            message: format!("local cache: {e}"),
        }
    }
}

impl From<opendal::Error> for Failure {
    fn from(e: opendal::Error) -> Self {
        let text = e.to_string();
        let lower = text.to_lowercase();
        let kind = if lower.contains("timeout") || lower.contains("timed out") {
            FailureKind::Timeout
        } else {
            match e.kind() {
                ErrorKind::PermissionDenied => FailureKind::Auth,
                ErrorKind::ConfigInvalid => FailureKind::Config,
                _ if lower.contains("403")
                    || lower.contains("401")
                    || lower.contains("noauth")
                    || lower.contains("wrongpass") =>
                {
                    FailureKind::Auth
                }
                _ => FailureKind::Io,
            }
        };
        Failure {
            kind,
            message: summarize(&text),
        }
    }
}

/// OpenDAL's errors carry their whole context (URI, headers, ...); a warning needs the gist:
/// the operation, the HTTP status and the service's error code when there are any.
fn summarize(text: &str) -> String {
    let op = text
        .split(" at ")
        .nth(1)
        .and_then(|r| r.split([',', ' ']).next())
        .unwrap_or("");
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .filter(|s| !s.is_empty());
    let code = text
        .split("code: \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .filter(|s| !s.is_empty());
    let tail = text.rsplit("=> ").next().unwrap_or(text);
    let mut out = String::new();
    if !op.is_empty() {
        out.push_str(op);
        out.push_str(": ");
    }
    match (status, code) {
        (Some(s), Some(c)) => out.push_str(&format!("HTTP {s} {c}")),
        (Some(s), None) => out.push_str(&format!("HTTP {s}")),
        _ => out.push_str(tail.chars().take(160).collect::<String>().trim()),
    }
    out
}

pub fn error_outcome(f: &Failure) -> Outcome {
    Outcome {
        status: Status::Error,
        kind: f.kind,
        message: f.message.clone(),
        ..Default::default()
    }
}

impl Context {
    /// Delete a provably corrupt remote object (rw mode only; best effort).
    async fn discard(&self, path: &str) {
        if self.mode == Mode::Rw {
            let _ = self.op.delete(path).await;
        }
    }

    /// Where this process writes: `<namespace>/` or the root.
    fn write_prefix(&self) -> String {
        self.namespace
            .as_ref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default()
    }

    /// Where it reads, in order: its namespace first, then the root.
    fn read_prefixes(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(n) = &self.namespace {
            v.push(format!("{n}/"));
        }
        v.push(String::new());
        v
    }

    /// The first of `paths` that exists, read whole.
    async fn read_first(&self, paths: &[String]) -> Result<Option<(Vec<u8>, String)>, Failure> {
        for p in paths {
            match self.op.read(p).await {
                Ok(buf) => return Ok(Some((buf.to_vec(), p.clone()))),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }
}

/// Fetch `key` into the local cache.
pub async fn get(ctx: &Context, key: &str) -> Result<Outcome, Failure> {
    get_accepting(ctx, key, |_| Ok(())).await
}

/// Fetch `key` into the local cache if `accept` takes its (verified) record.
async fn get_accepting(
    ctx: &Context,
    key: &str,
    accept: impl Fn(&record::Record) -> Result<(), String>,
) -> Result<Outcome, Failure> {
    if !cachectl::store::index::is_digest(key) {
        return Err(Failure::config("not a key"));
    }
    let paths: Vec<String> = ctx
        .read_prefixes()
        .iter()
        .map(|p| format!("{p}ac/{key}"))
        .collect();
    let Some((object, found_at)) = ctx.read_first(&paths).await? else {
        return Ok(Outcome {
            status: Status::Miss,
            ..Default::default()
        });
    };
    let mut bytes_down = object.len() as u64;
    let record_bytes = open_signed(ctx.secret.as_deref(), &object).map_err(|e| Failure {
        kind: FailureKind::Signature,
        message: e.to_string(),
    })?;
    let decoded = match record::decode(record_bytes) {
        Ok(d) if d.record.key == key && d.record.components.key() == key => d,
        Ok(_) => {
            ctx.discard(&found_at).await;
            return Err(Failure::refused(format!(
                "remote record for {key} does not match its key (tampered or misplaced)"
            )));
        }
        Err(e) => {
            ctx.discard(&found_at).await;
            return Err(Failure::refused(format!(
                "remote record for {key} is invalid: {e}"
            )));
        }
    };
    if let Err(why) = accept(&decoded.record) {
        return Err(Failure::refused(format!("remote record for {key} {why}")));
    }
    ctx.store.init().map_err(Failure::local)?;
    // Held until the record is written: gc must not delete a blob this entry reuses.
    let _blobs = ctx.store.blob_lock(false).map_err(Failure::local)?;
    let digests: BTreeSet<&str> = decoded.record.blobs().collect();
    for digest in digests {
        if ctx.store.cas.open_verified(digest).is_ok() {
            continue;
        }
        let paths: Vec<String> = ctx
            .read_prefixes()
            .iter()
            .map(|p| format!("{p}cas/{digest}"))
            .collect();
        let Some((blob, blob_at)) = ctx.read_first(&paths).await? else {
            // A record whose blobs are gone (evicted by the store's own expiry): a miss.
            return Ok(Outcome {
                status: Status::Miss,
                bytes_down,
                message: format!("blob {digest} is missing on the remote"),
                ..Default::default()
            });
        };
        bytes_down += blob.len() as u64;
        let ok = ctx
            .store
            .cas
            .insert_verified(&ctx.store.tmp, digest, &blob)
            .map_err(Failure::local)?;
        if !ok {
            ctx.discard(&blob_at).await;
            return Err(Failure::refused(format!(
                "remote blob {digest} does not match its digest"
            )));
        }
    }
    // The record last: only now is the entry visible locally.
    cachectl::fsutil::write_atomic(&ctx.store.record_path(key), &ctx.store.tmp, record_bytes)
        .map_err(Failure::local)?;
    Ok(Outcome {
        status: Status::Hit,
        bytes_down,
        ..Default::default()
    })
}

/// `--trace auto`: fetch the manifest `key`, choose its candidate that matches the files in
/// `cwd` now, fetch that entry, and add the candidate to the local manifest. The entry must be
/// what the candidate says: made by this command (`key`) from exactly those inputs, so a
/// manifest that points a set of inputs at another run's entry is refused. (The caller holds
/// the key's lock.)
pub async fn get_manifest(ctx: &Context, key: &str, cwd: &Path) -> Result<Outcome, Failure> {
    let Some((manifest, _)) = read_manifest(ctx, key).await? else {
        return Ok(Outcome {
            status: Status::Miss,
            ..Default::default()
        });
    };
    let mut cache = ctx.store.manifest_stat_cache(key);
    let chosen = match manifest.choose(cwd, &mut cache, |_| true) {
        Ok(c) => c.clone(),
        Err(no) => {
            return Ok(Outcome {
                status: Status::Miss,
                message: no.why,
                ..Default::default()
            });
        }
    };
    let mut out = get_accepting(ctx, &chosen.entry, |rec| {
        let c = &rec.components;
        if c.observed.as_ref() != Some(&chosen.inputs) || c.manifest_key() != key {
            return Err("is not the run its manifest names (tampered or misplaced)".to_owned());
        }
        Ok(())
    })
    .await?;
    if out.status == Status::Hit {
        ctx.store
            .add_candidate(key, chosen)
            .map_err(Failure::local)?;
    }
    out.bytes_down += manifest.encode().len() as u64;
    Ok(out)
}

/// The remote manifest `key`, verified (signature, checksum, its own key), and where it was.
/// One that does not verify is refused (and deleted in rw mode).
async fn read_manifest(ctx: &Context, key: &str) -> Result<Option<(Manifest, String)>, Failure> {
    if !cachectl::store::index::is_digest(key) {
        return Err(Failure::config("not a key"));
    }
    let paths: Vec<String> = ctx
        .read_prefixes()
        .iter()
        .map(|p| format!("{p}mf/{key}"))
        .collect();
    let Some((object, found_at)) = ctx.read_first(&paths).await? else {
        return Ok(None);
    };
    let bytes = open_signed(ctx.secret.as_deref(), &object).map_err(|e| Failure {
        kind: FailureKind::Signature,
        message: e.to_string(),
    })?;
    match Manifest::decode(bytes) {
        Ok(m) if m.key == key => Ok(Some((m, found_at))),
        _ => {
            ctx.discard(&found_at).await;
            Err(Failure::refused(format!(
                "remote manifest for {key} is invalid"
            )))
        }
    }
}

/// Upload the local manifest `key` (after its newest entry): merged with the remote's, ours
/// first, so that the candidates of other machines stay. One that fails to verify there is
/// replaced.
async fn put_manifest(ctx: &Context, key: &str) -> Result<u64, Failure> {
    let mut merged = ctx.store.manifest_or_new(key).map_err(Failure::local)?;
    if merged.candidates.is_empty() {
        return Ok(0);
    }
    let theirs = match read_manifest(ctx, key).await {
        Ok(Some((m, _))) => m.candidates,
        Ok(None) => Vec::new(),
        Err(f) if f.kind == FailureKind::Refused || f.kind == FailureKind::Signature => Vec::new(),
        Err(f) => return Err(f),
    };
    for c in theirs.into_iter().rev() {
        if !merged.candidates.iter().any(|o| o.entry == c.entry) {
            merged.candidates.push(c);
        }
    }
    merged.candidates.truncate(MAX_CANDIDATES);
    let bytes = merged.encode();
    let object = match &ctx.secret {
        Some(s) => sign(s, &bytes),
        None => bytes,
    };
    let n = object.len() as u64;
    ctx.op
        .write(&format!("{}mf/{key}", ctx.write_prefix()), object)
        .await?;
    Ok(n)
}

/// Upload the local entry `key`, then with `manifest` (`--trace auto`) its manifest.
pub async fn put_with_manifest(
    ctx: &Context,
    key: &str,
    manifest: Option<&str>,
) -> Result<Outcome, Failure> {
    let mut out = put(ctx, key).await?;
    if let Some(m) = manifest {
        out.bytes_up += put_manifest(ctx, m).await?;
    }
    Ok(out)
}

/// Upload the local entry `key`: missing blobs first, the record last.
pub async fn put(ctx: &Context, key: &str) -> Result<Outcome, Failure> {
    let path = ctx.store.record_path(key);
    let record_bytes = std::fs::read(&path).map_err(Failure::local)?;
    let decoded = record::decode(&record_bytes).map_err(Failure::local)?;
    let prefix = ctx.write_prefix();
    let mut bytes_up = 0;
    let digests: BTreeSet<&str> = decoded.record.blobs().collect();
    for digest in digests {
        let remote_path = format!("{prefix}cas/{digest}");
        if ctx.op.exists(&remote_path).await? {
            continue;
        }
        let blob = std::fs::read(ctx.store.cas.path(digest)).map_err(Failure::local)?;
        bytes_up += blob.len() as u64;
        ctx.op.write(&remote_path, blob).await?;
    }
    let object = match &ctx.secret {
        Some(s) => sign(s, &record_bytes),
        None => record_bytes,
    };
    bytes_up += object.len() as u64;
    ctx.op.write(&format!("{prefix}ac/{key}"), object).await?;
    Ok(Outcome {
        status: Status::Stored,
        bytes_up,
        ..Default::default()
    })
}

/// Probe the remote: write, read back and delete a small object (`rw`), or look one up (`ro`).
pub async fn check(ctx: &Context, mode: Mode) -> Result<Outcome, Failure> {
    let mut steps = Vec::new();
    let mut failed: Option<Failure> = None;
    async fn timed<T>(
        steps: &mut Vec<Step>,
        op: &str,
        f: impl std::future::Future<Output = Result<T, opendal::Error>>,
    ) -> Result<T, Failure> {
        let start = Instant::now();
        let r = f.await;
        let ms = start.elapsed().as_millis() as u64;
        steps.push(Step {
            op: op.to_owned(),
            ok: r.is_ok(),
            ms,
            message: r
                .as_ref()
                .err()
                .map(|e| summarize(&e.to_string()))
                .unwrap_or_default(),
        });
        r.map_err(Failure::from)
    }
    match mode {
        Mode::Rw => {
            let nonce = format!(
                "{:x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
            );
            let path = format!("{}probe/cachectl-check-{nonce}", ctx.write_prefix());
            let payload = format!("cachectl remote check {nonce}").into_bytes();
            let result = async {
                timed(&mut steps, "write", ctx.op.write(&path, payload.clone())).await?;
                let back = timed(&mut steps, "read", ctx.op.read(&path)).await?;
                if back.to_vec() != payload {
                    return Err(Failure::refused(
                        "the probe read back differs from what was written".into(),
                    ));
                }
                timed(&mut steps, "delete", ctx.op.delete(&path)).await?;
                Ok(())
            }
            .await;
            failed = result.err();
        }
        Mode::Ro => {
            // Reading an object that cannot exist proves connectivity and read rights.
            let path = format!("ac/{}", "0".repeat(64));
            let start = Instant::now();
            let r = ctx.op.read(&path).await;
            let ms = start.elapsed().as_millis() as u64;
            let (ok, message) = match &r {
                Ok(_) => (true, String::new()),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    (true, "not found, as expected".to_owned())
                }
                Err(e) => (false, summarize(&e.to_string())),
            };
            steps.push(Step {
                op: "read".into(),
                ok,
                ms,
                message,
            });
            if let Err(e) = r
                && e.kind() != ErrorKind::NotFound
            {
                failed = Some(e.into());
            }
        }
        Mode::Off => {}
    }
    Ok(match failed {
        None => Outcome {
            status: Status::Ok,
            steps,
            ..Default::default()
        },
        Some(f) => Outcome {
            status: Status::Error,
            kind: f.kind,
            message: f.message,
            steps,
            ..Default::default()
        },
    })
}
