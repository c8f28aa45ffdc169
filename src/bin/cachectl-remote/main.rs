//! `cachectl-remote`: the remote tier's companion process.
//!
//! `cachectl` spawns it only when a remote is configured and needed, so that OpenDAL (its
//! start-up cost and its async runtime) never touches the local hit path. One invocation does
//! one thing and prints one JSON line ([`cachectl::remote::Outcome`]):
//!
//! - `get KEY`: fetch `ac/<key>` and the blobs it references into the local cache, verifying
//!   everything (signature, record checksum, key recomputed from the record's components, every
//!   blob's content digest) before anything becomes visible locally. Blobs first, record last.
//! - `put KEY`: upload a local entry: blobs the remote lacks first, the record last, so a reader
//!   never finds a record whose blobs are missing. With `--manifest M` (`--trace auto`), then
//!   the manifest `mf/M`, merged with the remote's.
//! - `get-manifest KEY --cwd DIR` (`--trace auto`): fetch `mf/<key>`, choose the candidate
//!   whose observed inputs match the files now, fetch its entry as `get` does, checking that
//!   the entry is that candidate's run, and add the candidate to the local manifest.
//! - `check`: write, read and delete a probe object (`rw`), or read one (`ro`), timing each step.
//!
//! Exit code 0 whenever the outcome could be reported; the outcome says what happened.

mod backend;
mod transfer;

use cachectl::remote::{Mode, Outcome};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "cachectl-remote",
    version,
    about = "Remote tier companion of cachectl (spawned by cachectl)"
)]
struct Args {
    #[command(subcommand)]
    op: Op,
    /// The local cache directory
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// Remote URL: s3://bucket/prefix, redis://host:port/db, http(s)://host/path (WebDAV), ghac://
    /// (cachectl passes it in the environment, so that a password never shows in `ps`)
    #[arg(
        long,
        global = true,
        env = "CACHECTL_REMOTE_URL",
        hide_env_values = true
    )]
    url: Option<String>,
    #[arg(long, global = true, value_enum, default_value_t = Mode::Rw)]
    mode: Mode,
    #[arg(long, global = true, default_value_t = 5000)]
    timeout_ms: u64,
    /// Write under this prefix; read from it first, then from the root
    #[arg(long, global = true)]
    namespace: Option<String>,
}

#[derive(Subcommand)]
enum Op {
    Get {
        key: String,
    },
    /// `--trace auto`: the manifest KEY, and the entry it names for the files in --cwd
    GetManifest {
        key: String,
        #[arg(long)]
        cwd: PathBuf,
    },
    Put {
        key: String,
        /// Then upload this manifest, merged with the remote's
        #[arg(long)]
        manifest: Option<String>,
    },
    Check,
}

fn main() {
    let args = Args::parse();
    let outcome = match run(&args) {
        Ok(o) => o,
        Err(e) => transfer::error_outcome(&e),
    };
    println!(
        "{}",
        serde_json::to_string(&outcome).expect("outcome serialises")
    );
}

fn run(args: &Args) -> Result<Outcome, transfer::Failure> {
    let url = args
        .url
        .as_deref()
        .ok_or_else(|| transfer::Failure::config("no remote URL given (--url)"))?;
    let dir = args
        .dir
        .clone()
        .ok_or_else(|| transfer::Failure::config("no cache directory given (--dir)"))?;
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| transfer::Failure::config(&format!("cannot start a runtime: {e}")))?;
    let op = backend::operator(url, timeout)?;
    let ctx = transfer::Context {
        op,
        mode: args.mode,
        store: cachectl::store::Store::at(dir),
        namespace: args.namespace.clone().filter(|n| !n.is_empty()),
        secret: std::env::var("CACHECTL_REMOTE_SECRET")
            .ok()
            .filter(|s| !s.is_empty()),
    };
    runtime.block_on(async {
        match &args.op {
            Op::Get { key } => transfer::get(&ctx, key).await,
            Op::GetManifest { key, cwd } => transfer::get_manifest(&ctx, key, cwd).await,
            Op::Put { key, manifest } if args.mode == Mode::Rw => {
                transfer::put_with_manifest(&ctx, key, manifest.as_deref()).await
            }
            Op::Put { .. } => Err(transfer::Failure::config("put needs mode rw")),
            Op::Check => transfer::check(&ctx, args.mode).await,
        }
    })
}
