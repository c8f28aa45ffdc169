//! `cachectl run [OPTIONS] -- COMMAND...` in its common shapes, parsed without clap.
//!
//! Every cache hit is a process start, and a hit's own work is a fraction of a millisecond;
//! building clap's definitions costs more than computing the key. This parser accepts only a
//! plain subset of what clap accepts: options in their separate-word forms (`-i PATH`, `--ttl 1h`), each single-valued
//! option and flag at most once, values that do not start with `-`, and `--` before the
//! command. Anything else (a `--ttl=1h`, `-vi`, `--help`, a bad value, a repeated flag, a
//! command without `--`, a `CACHECTL_*` flag variable other than `CACHECTL_DIR`) returns `None`
//! and clap parses the command line as before, with its errors and help. Tests check that it
//! knows exactly `run`'s options as clap defines them, that every valid plain command line
//! takes this path, and that whatever it accepts, clap parses to the same result.

use super::RemoteMode as Mode;
use super::{Cli, Command, FLAG_ENV, RunArgs, parse_duration};
use crate::paths::encode_os;
use std::ffi::OsString;
use std::path::PathBuf;

/// Parse `args` (program name first) if it is a `run` command line in the plain subset; `env`
/// looks up environment variables. Returns the command line and whether `--dir` came from
/// `CACHECTL_DIR`, as [`super::parse`] does.
pub fn parse(args: &[OsString], env: impl Fn(&str) -> Option<OsString>) -> Option<(Cli, bool)> {
    if args.get(1)? != "run" {
        return None;
    }
    // clap would read these as flag defaults; leave such command lines to it. Two are read
    // here: CACHECTL_DIR and CACHECTL_SESSION, which a CI job sets for every run.
    if FLAG_ENV
        .iter()
        .any(|name| !READ_HERE.contains(name) && env(name).is_some())
    {
        return None;
    }
    let mut run = RunArgs::default();
    let mut dir: Option<PathBuf> = None;
    let mut seen: Vec<&str> = Vec::new();
    let mut words = args[2..].iter();
    loop {
        let word = words.next()?.to_str()?;
        if word == "--" {
            break;
        }
        let (name, takes_value) = option(word)?;
        // Single-valued options and flags may appear once (clap rejects a repeat).
        if !matches!(name, "input" | "output" | "env" | "tag") {
            if seen.contains(&name) {
                return None;
            }
            seen.push(name);
        }
        if !takes_value {
            match name {
                "stdin" => run.stdin = true,
                "no-cwd" => run.no_cwd = true,
                "cache-failures" => run.cache_failures = true,
                "force" => run.force = true,
                "no-store" => run.no_store = true,
                "explain" => run.explain = true,
                "verbose" => run.verbose = true,
                _ => unreachable!("every flag is listed in `option`"),
            }
            continue;
        }
        let value = words.next()?;
        if value.as_encoded_bytes().first() == Some(&b'-') {
            return None;
        }
        match name {
            "input" => run.inputs.push(encode_os(value)),
            "output" => run.outputs.push(encode_os(value)),
            // clap refuses an empty path.
            "dir" if value.is_empty() => return None,
            "dir" => dir = Some(PathBuf::from(value)),
            _ => {
                let text = value.to_str()?;
                match name {
                    "env" => run.env.push(text.to_owned()),
                    "tag" => run.tags.push(text.to_owned()),
                    "namespace" => run.namespace = Some(text.to_owned()),
                    "salt" => run.salt = Some(text.to_owned()),
                    "ttl" => run.ttl = Some(parse_duration(text).ok()?),
                    "stale" => run.stale = Some(parse_duration(text).ok()?),
                    "remote" => run.remote = Some(remote_mode(text)?),
                    "max-entry-size" => run.max_entry_size = Some(super::parse_size(text).ok()?),
                    "session" => run.session = Some(super::parse_session(text).ok()?),
                    "trace" => run.trace = Some(trace_mode(text)?),
                    _ => unreachable!("every option is listed in `option`"),
                }
            }
        }
    }
    run.command = words.cloned().collect();
    if run.command.is_empty() {
        return None;
    }
    if run.session.is_none()
        && let Some(session) = env("CACHECTL_SESSION")
    {
        // A bad name goes to clap, whose error names the variable.
        run.session = Some(super::parse_session(session.to_str()?).ok()?);
    }
    let dir_from_env = dir.is_none() && env("CACHECTL_DIR").is_some();
    let dir = dir.or_else(|| env("CACHECTL_DIR").map(PathBuf::from));
    Some((
        Cli {
            dir,
            command: Command::Run(run),
        },
        dir_from_env,
    ))
}

/// The flag variables this parser reads itself (any other set one sends the line to clap).
const READ_HERE: &[&str] = &["CACHECTL_DIR", "CACHECTL_SESSION"];

/// Every word [`option`] accepts (the test against clap's definition walks it).
#[cfg(test)]
const OPTION_WORDS: &[&str] = &[
    "-i",
    "--input",
    "-o",
    "--output",
    "-e",
    "--env",
    "-t",
    "--tag",
    "-n",
    "--namespace",
    "--salt",
    "--ttl",
    "--stale",
    "--remote",
    "--max-entry-size",
    "--session",
    "--trace",
    "--dir",
    "--stdin",
    "--no-cwd",
    "--cache-failures",
    "--force",
    "--no-store",
    "--explain",
    "-v",
    "--verbose",
];

/// The option a word names (by its long name) and whether it takes a value.
fn option(word: &str) -> Option<(&'static str, bool)> {
    Some(match word {
        "-i" | "--input" => ("input", true),
        "-o" | "--output" => ("output", true),
        "-e" | "--env" => ("env", true),
        "-t" | "--tag" => ("tag", true),
        "-n" | "--namespace" => ("namespace", true),
        "--salt" => ("salt", true),
        "--ttl" => ("ttl", true),
        "--stale" => ("stale", true),
        "--remote" => ("remote", true),
        "--max-entry-size" => ("max-entry-size", true),
        "--session" => ("session", true),
        "--trace" => ("trace", true),
        "--dir" => ("dir", true),
        "--stdin" => ("stdin", false),
        "--no-cwd" => ("no-cwd", false),
        "--cache-failures" => ("cache-failures", false),
        "--force" => ("force", false),
        "--no-store" => ("no-store", false),
        "--explain" => ("explain", false),
        "-v" | "--verbose" => ("verbose", false),
        _ => return None,
    })
}

/// `--trace`'s value, spelled exactly as clap's value enum accepts it.
fn trace_mode(text: &str) -> Option<super::TraceMode> {
    <super::TraceMode as clap::ValueEnum>::from_str(text, false).ok()
}

/// `--remote`'s value, spelled exactly as clap's value enum accepts it.
fn remote_mode(text: &str) -> Option<Mode> {
    <Mode as clap::ValueEnum>::from_str(text, false).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use proptest::prelude::*;
    use std::ffi::OsStr;

    /// `words` as a command line.
    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsStr::new).map(OsStr::to_owned).collect()
    }

    /// What clap makes of `args` with the process's real environment.
    fn clap_parse(args: &[OsString]) -> Result<(Option<PathBuf>, RunArgs), clap::Error> {
        let cli = Cli::try_parse_from(args)?;
        let Command::Run(run) = cli.command else {
            panic!("not run: {args:?}")
        };
        Ok((cli.dir, run))
    }

    /// The hand parser knows exactly the options clap defines for `run` (and the global
    /// `--dir`), by every short and long name, with the same arity: a flag added to `RunArgs`
    /// and not here fails this test instead of silently taking clap's slower path, or worse.
    #[test]
    fn knows_exactly_the_options_clap_defines() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let run = cli.find_subcommand("run").expect("run");
        let globals = cli.get_arguments().filter(|a| a.is_global_set());
        let mut defined = std::collections::BTreeSet::new();
        for arg in run.get_arguments().chain(globals) {
            if arg.is_positional() || matches!(arg.get_id().as_str(), "help" | "version") {
                continue;
            }
            let takes_value = arg.get_action().takes_values();
            let long = arg.get_long().expect("every run option has a long name");
            let mut names = vec![format!("--{long}")];
            names.extend(arg.get_short().map(|c| format!("-{c}")));
            for name in names {
                assert_eq!(
                    option(&name),
                    Some((long, takes_value)),
                    "clap's `{name}` as the fast parser sees it"
                );
                defined.insert(name);
            }
        }
        for name in OPTION_WORDS {
            assert!(
                defined.contains(*name),
                "`{name}` is not an option of clap's `run`"
            );
        }
    }

    fn check(args: &[OsString]) -> bool {
        let Some((cli, _)) = parse(args, |n| std::env::var_os(n)) else {
            return false;
        };
        let Command::Run(fast) = cli.command else {
            panic!("fast path returned another command")
        };
        let (dir, full) = clap_parse(args)
            .unwrap_or_else(|e| panic!("fast path accepted what clap rejects: {args:?}: {e}"));
        assert_eq!(fast, full, "{args:?}");
        assert_eq!(cli.dir, dir, "{args:?}");
        true
    }

    #[test]
    fn common_shapes_take_the_fast_path() {
        for words in [
            &["cachectl", "run", "--", "echo", "hello"][..],
            &[
                "cachectl", "run", "-v", "-i", "a.c", "-i", "*.h", "-o", "a.o", "--", "gcc",
            ],
            &[
                "cachectl", "run", "--ttl", "1h", "--stale", "2d", "--salt", "s", "--", "x",
            ],
            &[
                "cachectl", "run", "-e", "CC", "-n", "ci", "-t", "t1", "-t", "t2", "--", "x",
            ],
            &[
                "cachectl", "run", "--remote", "ro", "--dir", "/c", "--no-cwd", "--", "x",
            ],
            &[
                "cachectl",
                "run",
                "--stdin",
                "--force",
                "--no-store",
                "--explain",
                "--",
                "-x",
            ],
            &["cachectl", "run", "--cache-failures", "--", "x", "--", "-v"],
        ] {
            assert!(check(&os(words)), "{words:?} fell back to clap");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_clap() {
        for words in [
            &["cachectl", "run", "echo"][..],
            &["cachectl", "run", "--"],
            &["cachectl", "run", "--ttl=1h", "--", "x"],
            &["cachectl", "run", "-vi", "a", "--", "x"],
            &["cachectl", "run", "--help"],
            &["cachectl", "run", "--ttl", "soon", "--", "x"],
            &["cachectl", "run", "--remote", "RW", "--", "x"],
            &["cachectl", "run", "-v", "-v", "--", "x"],
            &["cachectl", "run", "--salt", "a", "--salt", "b", "--", "x"],
            &["cachectl", "run", "-i", "-x", "--", "x"],
            &["cachectl", "run", "-i"],
            &["cachectl", "--dir", "/c", "run", "--", "x"],
            &["cachectl", "stats"],
        ] {
            assert!(
                parse(&os(words), |_| None).is_none(),
                "{words:?} took the fast path"
            );
        }
        let flag_env = |n: &str| (n == "CACHECTL_FORCE").then(|| OsString::from("1"));
        assert!(parse(&os(&["cachectl", "run", "--", "x"]), flag_env).is_none());
    }

    #[test]
    fn cachectl_dir_from_the_environment() {
        let env = |n: &str| (n == "CACHECTL_DIR").then(|| OsString::from("/env"));
        let (cli, from_env) = parse(&os(&["cachectl", "run", "--", "x"]), env).unwrap();
        assert_eq!((cli.dir, from_env), (Some(PathBuf::from("/env")), true));
        let args = os(&["cachectl", "run", "--dir", "/flag", "--", "x"]);
        let (cli, from_env) = parse(&args, env).unwrap();
        assert_eq!((cli.dir, from_env), (Some(PathBuf::from("/flag")), false));
    }

    #[test]
    fn session_from_the_environment() {
        let env = |n: &str| (n == "CACHECTL_SESSION").then(|| OsString::from("ci-7"));
        let run_of = |cli: Cli| match cli.command {
            Command::Run(run) => run,
            _ => unreachable!(),
        };
        let (cli, _) = parse(&os(&["cachectl", "run", "--", "x"]), env).unwrap();
        assert_eq!(run_of(cli).session.as_deref(), Some("ci-7"));
        let args = os(&["cachectl", "run", "--session", "mine", "--", "x"]);
        let (cli, _) = parse(&args, env).unwrap();
        assert_eq!(run_of(cli).session.as_deref(), Some("mine"));
        // A name clap would refuse goes to clap, which says which variable is wrong.
        let bad = |n: &str| (n == "CACHECTL_SESSION").then(|| OsString::from("a\tb"));
        assert!(parse(&os(&["cachectl", "run", "--", "x"]), bad).is_none());
    }

    /// Words the random command lines are made of: every option, valid and invalid values,
    /// hyphen words, `--`, `=` forms, non-UTF-8 bytes.
    fn word() -> impl Strategy<Value = OsString> {
        use std::os::unix::ffi::OsStringExt;
        prop_oneof![
            // Every option word the parser knows, then separators, values and near-misses.
            prop::sample::select(
                OPTION_WORDS
                    .iter()
                    .copied()
                    .chain([
                        "--", "--", "-", "-vi", "--ttl=1h", "-h", "--help", "-V", "1h", "90s",
                        "7d", "soon", "rw", "ro", "off", "RO", "check", "5MiB", "lots", "a.c",
                        "*.h", "src/**", "", " ", "é", "x=y", "-x", "--x", "echo",
                    ])
                    .collect::<Vec<_>>(),
            )
            .prop_map(OsString::from),
            prop::collection::vec(any::<u8>(), 0..4).prop_map(OsString::from_vec),
        ]
    }

    /// A valid plain `run` command line: each single-valued option at most once, repeatable
    /// ones any number of times, flags by short or long name, values that clap accepts, in any
    /// order, then `--` and a command (whose words may look like options).
    fn valid_line() -> impl Strategy<Value = Vec<OsString>> {
        let path = prop::sample::select(vec!["a.c", "*.h", "src/**", "out dir/x.o", "é", "."]);
        let repeated = (
            prop::collection::vec(
                (prop::sample::select(vec!["-i", "--input"]), path.clone()),
                0..3,
            ),
            prop::collection::vec((prop::sample::select(vec!["-o", "--output"]), path), 0..3),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["-e", "--env", "-t", "--tag"]),
                    prop::sample::select(vec!["CC", "HOME*", "t1", "x=y"]),
                ),
                0..3,
            ),
        );
        let single = prop::collection::vec(
            prop::option::of(prop::sample::select(vec![
                ("-n", "ci"),
                ("--salt", "s 1"),
                ("--ttl", "1h"),
                ("--stale", "90s"),
                ("--remote", "ro"),
                ("--max-entry-size", "5MiB"),
                ("--session", "ci-42 build"),
                ("--trace", "check"),
                ("--dir", "/c"),
                ("--stdin", ""),
                ("--no-cwd", ""),
                ("--cache-failures", ""),
                ("--force", ""),
                ("--no-store", ""),
                ("--explain", ""),
                ("-v", ""),
            ])),
            0..15,
        );
        let command = prop::collection::vec(
            prop::sample::select(vec!["echo", "-v", "--", "--ttl", "x y", "-"]),
            1..4,
        );
        (repeated, single, command)
            .prop_map(|((i, o, et), single, command)| {
                let mut groups: Vec<Vec<&str>> = Vec::new();
                for (opt, v) in i.into_iter().chain(o).chain(et) {
                    groups.push(vec![opt, v]);
                }
                let mut seen = std::collections::BTreeSet::new();
                for (opt, v) in single.into_iter().flatten() {
                    if seen.insert(opt) {
                        groups.push(if v.is_empty() {
                            vec![opt]
                        } else {
                            vec![opt, v]
                        });
                    }
                }
                (groups, command)
            })
            .prop_flat_map(|(groups, command)| (Just(groups).prop_shuffle(), Just(command)))
            .prop_map(|(groups, command)| {
                let mut args = os(&["cachectl", "run"]);
                args.extend(groups.into_iter().flatten().map(OsString::from));
                args.push("--".into());
                args.extend(command.into_iter().map(OsString::from));
                args
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn every_valid_plain_line_takes_the_fast_path(args in valid_line()) {
            // A flag variable in the test's own environment sends every line to clap.
            prop_assume!(FLAG_ENV.iter().all(|n| READ_HERE.contains(n) || std::env::var_os(n).is_none()));
            prop_assert!(check(&args), "{args:?} fell back to clap");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn whatever_the_fast_path_accepts_clap_parses_the_same(
            options in prop::collection::vec(word(), 0..8),
            separator in any::<bool>(),
            command in prop::collection::vec(word(), 0..3),
        ) {
            let mut args = os(&["cachectl", "run"]);
            args.extend(options);
            if separator {
                args.push("--".into());
            }
            args.extend(command);
            check(&args);
        }
    }
}
