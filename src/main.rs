//! The `cachectl` binary: parse, dispatch, and own the exit-code policy.
//! `run` exits with the wrapped command's code; cachectl's own usage errors exit 2.

// On glibc Linux the entry point is our own C `main` (see `entry`): std's runtime start-up
// costs a cache hit more than the hit itself.
#![cfg_attr(all(target_os = "linux", target_env = "gnu", not(test)), no_main)]

use cachectl::cli::Command;
use cachectl::config::Source;

/// The process entry point on glibc Linux, in place of std's `lang_start`.
///
/// A hit is over in well under a millisecond, so start-up is most of its cost. std's runtime
/// set-up asks glibc for the main thread's stack bounds (`pthread_getattr_np` opens and parses
/// `/proc/self/maps`: about 105 k instructions and 6 syscalls, 12% of a hit) and maps an
/// alternate signal stack, only to print "stack overflow" instead of dying of SIGSEGV. We keep
/// the two parts of that set-up that matter to us: standard descriptors that are never closed
/// (else the first file we open would become "stdout"), and SIGPIPE ignored (`run` handles
/// EPIPE itself; reports restore the default below). `std::env::args_os` still works: on glibc,
/// std reads argv from an `.init_array` hook, not from `lang_start`. Stdout is flushed by
/// `std::process::exit`, which every path ends with.
#[cfg(all(target_os = "linux", target_env = "gnu", not(test)))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    open_standard_fds();
    // SAFETY: setting a disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    entry()
}

/// Elsewhere (and in the test harness, which brings its own `main`), std's usual start-up.
#[cfg(not(all(target_os = "linux", target_env = "gnu", not(test))))]
#[allow(dead_code)]
fn main() {
    entry()
}

/// Make sure descriptors 0, 1 and 2 are open (on `/dev/null` if they were closed), as std's
/// runtime does before `main`.
#[cfg(all(target_os = "linux", target_env = "gnu", not(test)))]
fn open_standard_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: a valid array of three pollfd; a zero timeout never blocks.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    for pfd in fds {
        let closed = if polled < 0 {
            // SAFETY: F_GETFD on any integer is harmless.
            unsafe { libc::fcntl(pfd.fd, libc::F_GETFD) == -1 }
        } else {
            pfd.revents & libc::POLLNVAL != 0
        };
        if closed {
            let flags = if pfd.fd == 0 {
                libc::O_RDONLY
            } else {
                libc::O_RDWR
            };
            // SAFETY: a NUL-terminated path; the lowest free descriptor is this closed one.
            if unsafe { libc::open(c"/dev/null".as_ptr(), flags) } == -1 {
                // As std does: without its standard descriptors the process cannot go on.
                std::process::abort();
            }
        }
    }
}

fn entry() -> ! {
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
