//! The `cachectl` binary: parse, dispatch, and own the exit-code policy.
//! `run` exits with the wrapped command's code; cachectl's own usage errors exit 2.

use cachectl::cli::{Cli, Command};
use cachectl::config::Source;
use clap::{CommandFactory, FromArgMatches, parser::ValueSource};

fn main() {
    // An empty CACHECTL_* variable counts as unset (as `CACHECTL_X= cmd` is usually meant).
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_string_lossy().starts_with("CACHECTL_") {
            // SAFETY: no other thread exists yet.
            unsafe { std::env::remove_var(&name) };
        }
    }
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let dir_source = match matches.value_source("dir") {
        Some(ValueSource::EnvVariable) => Source::Env("CACHECTL_DIR"),
        _ => Source::Flag,
    };
    let dir = cli.dir.clone().map(|d| (d, dir_source));
    if !matches!(cli.command, Command::Run(_)) {
        // Reports piped into `head` end quietly when the reader goes away. (`run` keeps
        // SIGPIPE ignored: it handles EPIPE itself so that the wrapped command sees it.)
        // SAFETY: restoring a default disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match &cli.command {
        Command::Run(args) => cachectl::commands::run::run(dir, args),
        Command::Config(args) => cachectl::commands::config::run(dir, args),
        Command::Stats(args) => cachectl::commands::stats::run(dir, args),
        Command::Gc(args) => cachectl::commands::gc::run(dir, args),
        Command::Invalidate(args) => cachectl::commands::invalidate::run(dir, args),
        Command::Verify(args) => cachectl::commands::verify::run(dir, args),
        Command::Ls(args) => cachectl::commands::ls::run(dir, args),
        Command::Show(args) => cachectl::commands::show::run(dir, args),
        Command::Explain(args) => cachectl::commands::explain::run(dir, args),
        Command::Warm(args) => cachectl::commands::warm::run(dir, args),
        Command::Remote(cmd) => cachectl::commands::remote::run(dir, cmd),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("cachectl: error: {err:#}");
            std::process::exit(cachectl::error::exit_code_for(&err));
        }
    }
}
