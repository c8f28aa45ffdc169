//! The `cachectl` binary: parse, dispatch, and own the exit-code policy.
//! `run` exits with the wrapped command's code; cachectl's own usage errors exit 2.

use cachectl::cli::Command;
use cachectl::config::Source;

/// std's own start-up runs first: descriptors 0-2 are open (on /dev/null if they were closed,
/// so that the first file opened never becomes "stdout"), SIGPIPE is ignored (`run` handles
/// EPIPE itself so that the wrapped command sees it; reports restore the default below), and a
/// stack overflow is reported as one.
fn main() {
    entry()
}

fn entry() -> ! {
    // The tracer process (`cachectl run --trace` starts it): before anything else.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == cachectl::trace::TRACER_ARG)
    {
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
        std::process::exit(cachectl::trace::tracer_main(&args));
    }
    for name in cachectl::cli::FLAG_ENV {
        if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
            // SAFETY: no other thread exists yet.
            unsafe { std::env::remove_var(name) };
        }
    }
    cachectl::log::init();
    let (cli, dir_from_env) = cachectl::cli::parse();
    let dir_source = if dir_from_env {
        Source::Env("CACHECTL_DIR")
    } else {
        Source::Flag
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
    let mut result = dispatch(&cli.command, dir.clone());
    // The index is derived data: a management command that finds it damaged (garbage pages can
    // surface in any query) rebuilds it from the files and runs once more.
    if let Err(e) = &result
        && !matches!(cli.command, Command::Run(_))
        && cachectl::store::index::is_corrupt(e)
    {
        result = cachectl::manage::rebuild_index(dir.clone(), e)
            .and_then(|()| dispatch(&cli.command, dir));
    }
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("cachectl: error: {err:#}");
            std::process::exit(cachectl::error::exit_code_for(&err));
        }
    }
}

fn dispatch(command: &Command, dir: Option<(std::path::PathBuf, Source)>) -> anyhow::Result<i32> {
    match command {
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
        Command::Completions { shell } => cachectl::commands::docs::completions(*shell),
        Command::Man => cachectl::commands::docs::man(),
    }
}
