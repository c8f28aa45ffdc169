//! Command-line definitions (clap). Nothing here does any work: commands turn these "low"
//! arguments into resolved options (see `config`) before acting on them.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "cachectl",
    version,
    about = "Cache the results of arbitrary commands",
    long_about = "Cache the results of arbitrary commands.\n\n\
cachectl hashes a command's argv, declared inputs, declared env vars and the executable itself \
into a key. On a hit it replays stdout/stderr (in their original order), the exit code and the \
output files without running the command; on a miss it runs the command, streams its output \
live, and stores the result.",
    after_help = "Examples:\n  cachectl run -- ./resize img.png\n  cachectl run -i src -o build/app -- make app\n  cachectl config"
)]
pub struct Cli {
    /// Cache directory [default: $XDG_CACHE_HOME/cachectl or ~/.cache/cachectl]
    #[arg(long, global = true, env = "CACHECTL_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command through the cache (replay on a hit, run and store on a miss)
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Show the resolved configuration and where each value comes from
    #[command(
        after_help = "Examples:\n  cachectl config\n  cachectl config -- ./resize img.png   # which [[rule]]s apply to this command"
    )]
    Config(ConfigArgs),
}

const RUN_EXAMPLES: &str = "Examples:
  cachectl run -- ./resize img.png
  cachectl run -i img.png -o thumbs/img.png -- ./resize img.png
  cachectl run -i a.c -i '*.h' -o a.o -- gcc -c a.c -o a.o
  cachectl run -e 'CARGO_*' --ttl 1h -- cargo metadata
  curl -s URL | cachectl run --stdin -- jq .name";

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 90s, 2h, 7d)"))
}

/// Options of `run` (and, later, of `explain` and `warm`).
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// File, directory (walked recursively) or glob whose content is part of the key; repeatable.
    /// A missing path is keyed as absent
    #[arg(short = 'i', long = "input", value_name = "PATH|GLOB")]
    pub inputs: Vec<String>,

    /// File or directory the command writes: stored after a successful run, restored on a hit;
    /// repeatable
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub outputs: Vec<String>,

    /// Env var (or glob of names, e.g. 'CARGO_*') whose value is part of the key; repeatable.
    /// Unset differs from empty
    #[arg(short = 'e', long = "env", value_name = "NAME|GLOB")]
    pub env: Vec<String>,

    /// Read stdin fully, hash it into the key and feed it to the command (otherwise the
    /// command's stdin is /dev/null)
    #[arg(long)]
    pub stdin: bool,

    /// Leave the working directory out of the key (share entries across checkouts)
    #[arg(long, env = "CACHECTL_NO_CWD")]
    pub no_cwd: bool,

    /// Namespace: part of the key; separates unrelated uses of one cache
    #[arg(short = 'n', long, env = "CACHECTL_NAMESPACE", value_name = "NAME")]
    pub namespace: Option<String>,

    /// Arbitrary string mixed into the key (bump it to invalidate)
    #[arg(long, env = "CACHECTL_SALT", value_name = "STRING")]
    pub salt: Option<String>,

    /// Tag stored with the entry (for ls/invalidate; not part of the key); repeatable
    #[arg(short = 't', long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Entries older than this are misses, e.g. 90s, 2h, 7d [default: no expiry]
    #[arg(long, env = "CACHECTL_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub ttl: Option<Duration>,

    /// Entries older than this (but within --ttl) are served at once and refreshed in the
    /// background
    #[arg(long, env = "CACHECTL_STALE", value_name = "DURATION", value_parser = parse_duration)]
    pub stale: Option<Duration>,

    /// Also store non-zero exits (a death by signal is never stored)
    #[arg(long, env = "CACHECTL_CACHE_FAILURES")]
    pub cache_failures: bool,

    /// Run the command and overwrite whatever is stored
    #[arg(long, env = "CACHECTL_FORCE")]
    pub force: bool,

    /// Look up only; never write to the cache
    #[arg(long, env = "CACHECTL_NO_STORE")]
    pub no_store: bool,

    /// Print each key component with its digest, and hit or miss, to stderr
    #[arg(long, env = "CACHECTL_EXPLAIN")]
    pub explain: bool,

    /// One line on stderr: hit (with time saved) or miss
    #[arg(short, long, env = "CACHECTL_VERBOSE")]
    pub verbose: bool,

    /// The command and its arguments (after `--`)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Show the settings and matching rules for this command line
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}
