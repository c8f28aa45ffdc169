//! Command-line definitions (clap). Nothing here does any work: commands turn these "low"
//! arguments into resolved options (see `config`) before acting on them.

use clap::builder::BoolishValueParser;
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

/// The `CACHECTL_*` variables clap reads for flags: an empty one counts as unset (as
/// `CACHECTL_X= cmd` is usually meant), instead of being an invalid value. (Settings read from
/// the environment elsewhere already ignore empty values.)
pub const FLAG_ENV: &[&str] = &[
    "CACHECTL_DIR",
    "CACHECTL_NO_CWD",
    "CACHECTL_NAMESPACE",
    "CACHECTL_SALT",
    "CACHECTL_TTL",
    "CACHECTL_STALE",
    "CACHECTL_CACHE_FAILURES",
    "CACHECTL_FORCE",
    "CACHECTL_NO_STORE",
    "CACHECTL_EXPLAIN",
    "CACHECTL_VERBOSE",
    "CACHECTL_SESSION",
    "CACHECTL_TRACE",
];

mod fast;
pub mod units;

use units::{parse_duration_flag as parse_duration, parse_size};

/// Parse the process's command line: plain `run` lines by hand ([`fast`]), everything else by
/// clap. Returns the command and whether `--dir` came from `CACHECTL_DIR`.
pub fn parse() -> (Cli, bool) {
    use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(parsed) = fast::parse(&args, |name| std::env::var_os(name)) {
        return parsed;
    }
    let mut matches = match Cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => exit_with(e),
    };
    let dir_from_env = matches.value_source("dir") == Some(ValueSource::EnvVariable);
    match Cli::from_arg_matches_mut(&mut matches) {
        Ok(cli) => (cli, dir_from_env),
        Err(e) => exit_with(e),
    }
}

/// The boolean flag variables (read by clap's `BoolishValueParser`).
const BOOL_ENV: &[&str] = &[
    "CACHECTL_NO_CWD",
    "CACHECTL_CACHE_FAILURES",
    "CACHECTL_FORCE",
    "CACHECTL_NO_STORE",
    "CACHECTL_EXPLAIN",
    "CACHECTL_VERBOSE",
];

/// The one rule for boolean variables (docs/configuration.md): `BoolishValueParser`'s.
fn is_boolish(value: &std::ffi::OsStr) -> bool {
    let v = value.to_string_lossy().to_ascii_lowercase();
    matches!(
        v.as_str(),
        "1" | "true" | "t" | "yes" | "y" | "on" | "0" | "false" | "f" | "no" | "n" | "off"
    )
}

/// Exit 2 on a command-line error, naming the variable when a bad value came from one.
fn exit_with(e: clap::Error) -> ! {
    if let Some(msg) = variable_error(&e) {
        eprintln!("cachectl: error: {msg}");
        std::process::exit(2);
    }
    e.exit()
}

/// clap names the flag when a bad value came from its variable (`invalid value 'maybe' for
/// '--force'`), which sends the user to a command line that has no `--force`: this says which
/// variable is wrong and what it takes instead, or `None` when the value was not a variable's.
pub fn variable_error(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let flag = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.clone(),
        _ => String::new(),
    };
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => Some(v.clone()),
        _ => None,
    };
    for name in FLAG_ENV {
        let own_flag =
            format!("--{}", name["CACHECTL_".len()..].to_ascii_lowercase()).replace('_', "-");
        let Some(v) = std::env::var_os(name).filter(|v| !v.is_empty()) else {
            continue;
        };
        // clap names the flag; the value tells whether it came from the variable.
        let from_var = flag.split([' ', '=']).next() == Some(own_flag.as_str())
            && value
                .as_deref()
                .is_none_or(|bad| *bad == *v.to_string_lossy());
        if !from_var {
            continue;
        }
        if BOOL_ENV.contains(name) {
            if is_boolish(&v) {
                continue;
            }
            return Some(format!(
                "{name}={} is not a boolean; set it to 1/0, true/false, yes/no or on/off (or leave it empty for unset)",
                v.to_string_lossy()
            ));
        }
        // A value parser's own message; for a value enum, the values it takes.
        let valid = match e.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(v)) => Some(format!("not one of {}", v.join(", "))),
            _ => None,
        };
        let why = std::error::Error::source(e)
            .map(|s| s.to_string())
            .or(valid)
            .unwrap_or_else(|| "not a valid value".to_owned());
        return Some(format!(
            "{name}={:?}: {why}; fix: correct or unset {name}",
            v.to_string_lossy()
        ));
    }
    None
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command through the cache (replay on a hit, run and store on a miss)
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Counters (hits, misses, time saved), store size, per-command breakdown, daily history
    /// chart, trend; one CI build with --session; CI gates
    #[command(
        after_help = "Examples:\n  cachectl stats\n  cachectl stats --by namespace --since 7d\n  cachectl stats --json | jq .hit_rate\n  cachectl stats --since 2h --fail-under 60   # CI gate: exit 1 below 60% hits\n  export CACHECTL_SESSION=ci-$GITHUB_RUN_ID   # at the top of a CI job: tags every run\n  cachectl stats --session \"$CACHECTL_SESSION\" --fail-under 40 --fail-on-drop 20\n  cachectl stats --session \"$CACHECTL_SESSION\" --format markdown >> \"$GITHUB_STEP_SUMMARY\""
    )]
    Stats(StatsArgs),
    /// Evict entries by age, then by value or last use down to max_size, then delete what
    /// nothing references
    #[command(
        after_help = "Examples:\n  cachectl gc                       # down to max_size (config; default 5 GiB)\n  cachectl gc --max-size 500MiB --dry-run\n  cachectl gc --max-age 30d\n  cachectl gc --max-size 2G --policy lru   # least recently used first, not least valuable"
    )]
    Gc(GcArgs),
    /// Remove the entries a selection names (selectors combine with AND)
    #[command(
        after_help = "Examples:\n  cachectl invalidate './resize *'\n  cachectl invalidate --input src/config.h\n  cachectl invalidate --namespace ci --older-than 7d --dry-run\n  cachectl invalidate --all"
    )]
    Invalidate(InvalidateArgs),
    /// Re-hash every blob, decode every record, check references and the index
    #[command(
        after_help = "Examples:\n  cachectl verify\n  cachectl verify --fix\n  cachectl verify --sample 100"
    )]
    Verify(VerifyArgs),
    /// List entries
    #[command(
        after_help = "Examples:\n  cachectl ls\n  cachectl ls 'gcc *' --sort size\n  cachectl ls --json | jq '.[0].key'"
    )]
    Ls(LsArgs),
    /// Show everything stored for one entry
    #[command(
        after_help = "Examples:\n  cachectl show 3f2a9c\n  cachectl show 3f2a9c --stdout > saved-output.txt"
    )]
    Show(ShowArgs),
    /// Compute a command's key without running it: hit or miss, and on a miss what differs
    /// from the most similar stored entry
    #[command(
        after_help = "Examples:\n  cachectl explain -- ./resize img.png\n  cachectl explain -i a.c -e CC -- gcc -c a.c -o a.o\n  cachectl explain --json -- make | jq .hit"
    )]
    Explain(ExplainArgs),
    /// Run a manifest's commands (or the most used ones) so that later runs hit
    #[command(
        after_help = "Examples:\n  cachectl warm examples/warm.toml -j 4\n  cachectl warm ci-warm.toml --dry-run\n  cachectl warm --from-history --top 20 --since 7d"
    )]
    Warm(WarmArgs),
    /// The remote tier: `cachectl remote check` probes it
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(
        after_help = "Examples:\n  cachectl completions bash > /etc/bash_completion.d/cachectl\n  cachectl completions zsh > \"${fpath[1]}/_cachectl\"\n  cachectl completions fish > ~/.config/fish/completions/cachectl.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) generated from these definitions
    #[command(
        after_help = "Examples:\n  cachectl man | man -l -\n  cachectl man > /usr/local/share/man/man1/cachectl.1"
    )]
    Man,
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

/// Paths are OS strings: any bytes but NUL. They are carried as `paths::encode_os` strings
/// (valid UTF-8 unchanged, anything else losslessly hex-encoded after a NUL marker).
fn os_path() -> impl clap::builder::TypedValueParser<Value = String> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().map(|s| crate::paths::encode_os(&s))
}

/// Options of `run` (and, later, of `explain` and `warm`).
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct RunArgs {
    /// File, directory (walked recursively) or glob whose content is part of the key; repeatable.
    /// A missing path is keyed as absent
    #[arg(short = 'i', long = "input", value_name = "PATH|GLOB", value_parser = os_path())]
    pub inputs: Vec<String>,

    /// File or directory the command writes: stored after a successful run, restored on a hit;
    /// repeatable
    #[arg(short = 'o', long = "output", value_name = "PATH", value_parser = os_path())]
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
    #[arg(long, env = "CACHECTL_NO_CWD", value_parser = BoolishValueParser::new())]
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
    #[arg(long, env = "CACHECTL_CACHE_FAILURES", value_parser = BoolishValueParser::new())]
    pub cache_failures: bool,

    /// Run the command and overwrite whatever is stored
    #[arg(long, env = "CACHECTL_FORCE", value_parser = BoolishValueParser::new())]
    pub force: bool,

    /// Look up only; never write to the cache
    #[arg(long, env = "CACHECTL_NO_STORE", value_parser = BoolishValueParser::new())]
    pub no_store: bool,

    /// Print each key component with its digest, and hit or miss, to stderr
    #[arg(long, env = "CACHECTL_EXPLAIN", value_parser = BoolishValueParser::new())]
    pub explain: bool,

    /// One line on stderr: hit (with time saved) or miss
    #[arg(short, long, env = "CACHECTL_VERBOSE", value_parser = BoolishValueParser::new())]
    pub verbose: bool,

    /// Use the configured remote tier read-write, read-only, or not at all (overrides
    /// CACHECTL_REMOTE_MODE and `[remote] mode`)
    #[arg(long, value_enum, value_name = "MODE")]
    pub remote: Option<RemoteMode>,

    /// Do not store a result larger than this once stored (`500MiB`, `5G`; a bare number is
    /// bytes); the command's own result is unchanged [default: max_entry_size from config,
    /// CACHECTL_MAX_ENTRY_SIZE; none]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_entry_size: Option<u64>,

    /// Record this run as part of the build NAME (`stats --session NAME` reports it alone);
    /// export CACHECTL_SESSION once at the top of a CI job to tag every run in it
    #[arg(long, env = "CACHECTL_SESSION", value_name = "NAME", value_parser = parse_session)]
    pub session: Option<String>,

    /// `auto`: on a miss, trace the command (Linux), key what it read and store what it wrote;
    /// `check`: key what is declared, and list on stderr the files it read or wrote that are not
    /// declared, with the -i/-o to add; `off`: no tracing, only what is declared
    /// [default: trace from config; auto]
    #[arg(long, env = "CACHECTL_TRACE", value_enum, value_name = "MODE")]
    pub trace: Option<TraceMode>,

    /// The command and its arguments (after `--`)
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum ByArg {
    #[default]
    Command,
    Namespace,
}

/// How `stats` prints its report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StatsFormat {
    /// Aligned text with a bar chart of the daily history
    #[default]
    Text,
    /// JSON (stable schema, see docs/commands.md); the same as --json
    Json,
    /// A Markdown report for a CI job summary (`>> $GITHUB_STEP_SUMMARY`)
    Markdown,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Print JSON (stable schema, see docs/commands.md); short for --format json
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Print the report as text, json or markdown
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<StatsFormat>,
    /// Report one build: the runs recorded with `run --session NAME` (or CACHECTL_SESSION)
    #[arg(long, value_name = "NAME", value_parser = parse_session)]
    pub session: Option<String>,
    /// Group the breakdown by command line or namespace
    #[arg(long, value_enum, default_value_t = ByArg::Command)]
    pub by: ByArg,
    /// Count only activity within this long ago (hour granularity), e.g. 7d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Zero the counters (entries are kept)
    #[arg(long, conflicts_with_all = ["fail_under", "session"])]
    pub reset: bool,
    /// Exit 1 when the hit rate of the counted window is below PCT percent (a CI gate; with no
    /// lookups the rate is 0%)
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub fail_under: Option<f64>,
    /// Exit 1 when the recent hit rate (the last 24 hours, or the --session) is POINTS or more
    /// percentage points below that of the 7 days before it (an alert for a cache that quietly
    /// stopped working)
    #[arg(long, value_name = "POINTS", value_parser = parse_percent, conflicts_with = "reset")]
    pub fail_on_drop: Option<f64>,
}

impl StatsArgs {
    /// `--format`, with `--json` as its short form.
    pub fn format(&self) -> StatsFormat {
        match (self.json, self.format) {
            (true, _) => StatsFormat::Json,
            (false, f) => f.unwrap_or_default(),
        }
    }
}

/// The longest session name: long enough for `$CI_PIPELINE_ID-$CI_JOB_NAME`, short enough to
/// print in a line.
pub const SESSION_MAX_LEN: usize = 200;

/// A session name: printable text of at most [`SESSION_MAX_LEN`] bytes.
pub fn parse_session(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("a session name cannot be empty".into());
    }
    if s.len() > SESSION_MAX_LEN {
        return Err(format!(
            "a session name is at most {SESSION_MAX_LEN} bytes (this one is {})",
            s.len()
        ));
    }
    if s.chars().any(char::is_control) {
        return Err("a session name cannot contain control characters".into());
    }
    if s.trim() != s {
        return Err("a session name cannot start or end with a space".into());
    }
    Ok(s.to_owned())
}

/// A percentage from 0 to 100.
fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{s}` is not a number (a percentage from 0 to 100, e.g. 60)"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` is not between 0 and 100"))
    }
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Evict entries (in --policy order) until the cache is at most this big (500MiB, 5G; a bare
    /// number is bytes) [default: max_size from config]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Evict entries unused for longer than this, e.g. 30d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_age: Option<Duration>,
    /// Which entries go first to get under the size limit: the least valuable (time saved per
    /// byte, aged) or the least recently used [default: gc_policy from config, CACHECTL_GC_POLICY;
    /// value]
    #[arg(long, value_enum, value_name = "POLICY")]
    pub policy: Option<GcPolicy>,
    /// Print what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// Started by a store that found the cache over max_size: skip if another gc runs, and
    /// bring the cache to 90% of the limit
    #[arg(long, hide = true)]
    pub auto: bool,
}

#[derive(Args, Debug)]
pub struct InvalidateArgs {
    /// Glob over the stored command line, as `[[rule]] match` (e.g. './resize *')
    #[arg(value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// PATTERN is a regular expression
    #[arg(long, requires = "pattern")]
    pub regex: bool,
    /// Only entries in this namespace
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Only entries with this tag
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Only entries whose recorded inputs include this file (or anything under this directory)
    #[arg(long, value_name = "PATH")]
    pub input: Option<PathBuf>,
    /// Only the entry whose key starts with this
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Only entries created longer ago than this, e.g. 7d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<Duration>,
    /// Select every entry (required when no other selector is given)
    #[arg(long)]
    pub all: bool,
    /// Print what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Remove what is broken and rebuild the index from the files
    #[arg(long)]
    pub fix: bool,
    /// Check only this many randomly chosen entries (and their blobs)
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortArg {
    #[default]
    LastUsed,
    Size,
    Hits,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only entries whose command line matches this glob
    #[arg(value_name = "PATTERN")]
    pub pattern: Option<String>,
    /// Print a JSON array
    #[arg(long)]
    pub json: bool,
    /// Order (most recent / largest / most hit first)
    #[arg(long, value_enum, default_value_t = SortArg::LastUsed)]
    pub sort: SortArg,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The entry's key, or a unique prefix of it
    #[arg(value_name = "KEY-PREFIX")]
    pub key: String,
    /// Print the stored stdout (raw bytes) instead of the description
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,
    /// Print the stored stderr (raw bytes) instead of the description
    #[arg(long)]
    pub stderr: bool,
    /// Print the record as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Print JSON (`hit: true|false`, components, closest entry and its differences)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct WarmArgs {
    /// TOML manifest of [[command]] tables (see docs/warm.md)
    #[arg(
        value_name = "MANIFEST",
        required_unless_present = "from_history",
        conflicts_with = "from_history"
    )]
    pub manifest: Option<PathBuf>,
    /// Warm the most used commands recorded in this cache instead of a manifest (the longest
    /// runs start first)
    #[arg(long)]
    pub from_history: bool,
    /// With --from-history: how many commands [default: 20]
    #[arg(long, value_name = "N", requires = "from_history")]
    pub top: Option<usize>,
    /// With --from-history: count usage within this long ago, e.g. 7d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "from_history")]
    pub since: Option<Duration>,
    /// Run up to N commands at once, highest `priority` first [default: number of cores]
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,
    /// List what would run and what is already cached; run nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Run every command, even those already cached, and overwrite their entries
    #[arg(long)]
    pub force: bool,
    /// Keep scheduling after a failure (default: stop scheduling, let running ones finish)
    #[arg(long)]
    pub keep_going: bool,
    /// Remote tier mode for the warmed commands: rw, ro or off
    #[arg(long, value_enum, value_name = "MODE")]
    pub remote: Option<RemoteMode>,
    /// Trace the warmed runs (`check`: report what each reads or writes undeclared) or not,
    /// whatever their manifest says [default: each command's `trace`, CACHECTL_TRACE, config]
    #[arg(long, value_enum, value_name = "MODE")]
    pub trace: Option<TraceMode>,
    /// Record the warmed runs as part of the build NAME (see `run --session`)
    #[arg(long, env = "CACHECTL_SESSION", value_name = "NAME", value_parser = parse_session)]
    pub session: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Write, read and delete a probe object (read only in ro mode) and report latency; exit 0
    /// when the remote works in its mode, 1 when it does not, 2 when none is configured
    #[command(
        after_help = "Examples:\n  CACHECTL_REMOTE=redis://127.0.0.1:6379/0 cachectl remote check\n  cachectl remote check --json"
    )]
    Check {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

impl RunArgs {
    /// The `cachectl run` arguments (after `run`) that reproduce these options.
    pub fn to_argv(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut os_flag = |f: &str, v: &str| {
            a.push(f.into());
            a.push(crate::paths::decode_os(v));
        };
        for i in &self.inputs {
            os_flag("--input", i);
        }
        for o in &self.outputs {
            os_flag("--output", o);
        }
        let mut flag = |f: &str, v: &str| {
            a.push(f.into());
            a.push(v.into());
        };
        for e in &self.env {
            flag("--env", e);
        }
        for t in &self.tags {
            flag("--tag", t);
        }
        if let Some(n) = &self.namespace {
            flag("--namespace", n);
        }
        if let Some(s) = &self.salt {
            flag("--salt", s);
        }
        if let Some(t) = self.ttl {
            flag("--ttl", &humantime::format_duration(t).to_string());
        }
        if let Some(t) = self.stale {
            flag("--stale", &humantime::format_duration(t).to_string());
        }
        if let Some(mode) = self.remote {
            flag("--remote", mode.as_str());
        }
        if let Some(size) = self.max_entry_size {
            flag("--max-entry-size", &size.to_string());
        }
        if let Some(session) = &self.session {
            flag("--session", session);
        }
        if let Some(mode) = self.trace {
            flag("--trace", mode.as_str());
        }
        for (on, f) in [
            (self.stdin, "--stdin"),
            (self.no_cwd, "--no-cwd"),
            (self.cache_failures, "--cache-failures"),
            (self.force, "--force"),
            (self.no_store, "--no-store"),
            (self.explain, "--explain"),
            (self.verbose, "--verbose"),
        ] {
            if on {
                a.push(f.into());
            }
        }
        a.push("--".into());
        a.extend(self.command.iter().cloned());
        a
    }

    /// These options as `cachectl run` would see them on its command line: `CACHECTL_*`
    /// variables included. `warm` keys a command exactly as the `cachectl run` child it spawns.
    pub fn reparse(&self) -> Result<RunArgs, clap::Error> {
        let mut argv: Vec<OsString> = vec!["cachectl".into(), "run".into()];
        argv.extend(self.to_argv());
        match Cli::try_parse_from(argv)?.command {
            Command::Run(a) => Ok(a),
            _ => unreachable!("parsed as run"),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn env_names(cmd: &clap::Command, out: &mut std::collections::BTreeSet<String>) {
        for a in cmd.get_arguments() {
            if let Some(e) = a.get_env() {
                out.insert(e.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            env_names(sub, out);
        }
    }

    #[test]
    fn flag_env_lists_every_env_var_clap_reads() {
        let mut names = std::collections::BTreeSet::new();
        env_names(&Cli::command(), &mut names);
        let listed: std::collections::BTreeSet<String> =
            FLAG_ENV.iter().map(|s| s.to_string()).collect();
        assert_eq!(names, listed);
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

/// How the remote tier may be used.
#[derive(
    serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum RemoteMode {
    /// Read on a local miss, write after a store.
    Rw,
    /// Read only (pull requests, laptops).
    Ro,
    Off,
}

impl RemoteMode {
    pub fn parse(s: &str) -> Option<RemoteMode> {
        match s {
            "rw" => Some(RemoteMode::Rw),
            "ro" => Some(RemoteMode::Ro),
            "off" => Some(RemoteMode::Off),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteMode::Rw => "rw",
            RemoteMode::Ro => "ro",
            RemoteMode::Off => "off",
        }
    }
}

/// Which entries gc evicts first to bring the cache under its size limit.
#[derive(
    serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum GcPolicy {
    /// The least valuable: time a hit saves, times its uses, per byte, aged
    /// (GreedyDual-Size-Frequency)
    Value,
    /// The least recently used
    Lru,
}

impl GcPolicy {
    pub fn parse(s: &str) -> Option<GcPolicy> {
        match s {
            "value" => Some(GcPolicy::Value),
            "lru" => Some(GcPolicy::Lru),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            GcPolicy::Value => "value",
            GcPolicy::Lru => "lru",
        }
    }
}

/// Whether a miss runs under the tracer, and what is done with what it sees.
#[derive(
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum TraceMode {
    /// Key what the command reads (and what is declared), store what it writes
    #[default]
    Auto,
    /// Key what is declared; after a miss, list what the command read or wrote undeclared
    Check,
    /// No tracing: only what is declared
    Off,
}

impl TraceMode {
    /// The values, as config errors list them.
    pub const CHOICES: &str = "\"auto\", \"check\", \"off\"";

    pub fn parse(s: &str) -> Option<TraceMode> {
        match s {
            "auto" => Some(TraceMode::Auto),
            "check" => Some(TraceMode::Check),
            "off" => Some(TraceMode::Off),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TraceMode::Auto => "auto",
            TraceMode::Check => "check",
            TraceMode::Off => "off",
        }
    }
}
