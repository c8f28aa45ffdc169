//! The `cachectl` binary: parse, dispatch, and own the exit-code policy.
//! `run` exits with the wrapped command's code; cachectl's own usage errors exit 2.

use cachectl::cli::{Cli, Command};
use cachectl::config::Source;
use clap::{CommandFactory, FromArgMatches, parser::ValueSource};

fn main() {
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
    let result = match &cli.command {
        Command::Run(args) => cachectl::commands::run::run(dir, args),
        Command::Config(args) => cachectl::commands::config::run(dir, args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("cachectl: error: {err:#}");
            std::process::exit(cachectl::error::exit_code_for(&err));
        }
    }
}
