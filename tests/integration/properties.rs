//! Property tests (proptest) for every parser of data that cachectl reads back from disk or from
//! the user: config files, warm manifests, records, the journal, the key encoding, and the
//! lossless path encoding. The properties: no panic, no hang, errors are values; where a parser
//! has an inverse, round trips are exact; corruption is always detected.
//!
//! Each property runs a bounded number of cases (a few seconds in all) inside a watchdog thread:
//! a case that hangs fails the test instead of blocking the suite. Failures print the minimal
//! input and the seed; `PROPTEST_RNG_SEED=<n>` replays a run (the seed is random by default, so
//! CI explores new inputs every time; `.ci/run` prints the one it uses), and `FUZZ_SCALE=<k>`
//! runs k times the cases (the watchdog allows 120 s per property, times k). Nothing is
//! persisted to disk.
//!
//! Properties that found a cachectl bug (docs/reliability.md, BUG-9 and BUG-10) run like the rest.

use cachectl::config::{Config, RunOptions, Source};
use cachectl::key::observed::{FileStamp, Seen, SeenKind};
use cachectl::key::{ExeCheck, ExeIdentity, InputKind, InputState, KeyComponents};
use cachectl::store::journal::{self, Event};
use cachectl::store::record::{self, OutputEntry, OutputKind, Record, StreamRef};
use cachectl::warm::manifest::{self, Configs};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestCaseError, TestRunner};
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// `FUZZ_SCALE` (default 1): how many times the usual number of cases to run.
fn scale() -> u32 {
    std::env::var("FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// The seed of this run: `PROPTEST_RNG_SEED` when set (`.ci/run` sets and prints one), else a
/// fresh one. Every property's failure message names it, so any failure can be replayed.
fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        std::env::var("PROPTEST_RNG_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                use std::hash::{BuildHasher, RandomState};
                RandomState::new().hash_one(std::process::id())
            })
    })
}

/// A runner for `cases` cases (times `FUZZ_SCALE`), seeded with [`seed`].
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(PtConfig {
        cases: cases.saturating_mul(scale()),
        failure_persistence: None,
        max_shrink_iters: 4096,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed()),
        ..PtConfig::default()
    })
}

/// Run `body` (which runs a property) in a thread; fail if it fails, panics, or takes longer
/// than `limit` (a hang).
#[track_caller]
fn bounded(
    name: &str,
    limit: Duration,
    body: impl FnOnce() -> Result<(), String> + Send + 'static,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    let limit = limit * scale();
    let replay = format!(
        "(replay: PROPTEST_RNG_SEED={} cargo test --test tests -- {name})",
        seed()
    );
    match rx.recv_timeout(limit) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{name}: {e} {replay}"),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{name}: no result within {limit:?}: a parser hangs {replay}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("{name}: the property panicked outside a test case {replay}")
        }
    }
}

const LIMIT: Duration = Duration::from_secs(120);

/// Short strings with a bias towards the characters parsers trip on.
fn text(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        3 => proptest::string::string_regex(&format!("[a-z0-9_./*?{{}}\\[\\]-]{{0,{max}}}")).unwrap(),
        2 => proptest::string::string_regex(&format!("\\PC{{0,{max}}}")).unwrap(),
        1 => proptest::string::string_regex(&format!(".{{0,{max}}}")).unwrap(),
        1 => prop::sample::select(vec![
            String::new(),
            "\0".to_owned(),
            "\0aéb".to_owned(),
            "..".to_owned(),
            "/".to_owned(),
            "/etc/passwd".to_owned(),
            "{}".to_owned(),
            "--".to_owned(),
            "-h".to_owned(),
            "--help".to_owned(),
            "a=b".to_owned(),
            "'unbalanced".to_owned(),
            "\\".to_owned(),
            "\u{feff}".to_owned(),
            "é".repeat(40),
            "x".repeat(300),
        ]),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Config files
// ---------------------------------------------------------------------------------------------

/// A TOML value, rendered.
fn toml_value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        text(24).prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "0",
            "-1",
            "19",
            "20",
            "1e400",
            "nan",
            "inf",
            "true",
            "false",
            "18446744073709551616",
            "\"1h\"",
            "\"-1s\"",
            "\"0s\"",
            "\"99999999999999999999d\"",
            "\"1.5 GB\"",
            "\"5GiB\"",
            "\"500MiB \"",
            "\"lots\"",
            "\"\"",
            "\"content\"",
            "\"mtime\"",
            "\"none\"",
            "\"rw\"",
            "\"ro\"",
            "\"off\"",
            "\"./resize *\"",
            "\"[\"",
            "\"**\"",
            "'''multi\nline'''",
            "1979-05-27T07:32:00Z",
            "{}",
            "[]",
            "[[]]",
        ])
        .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..3).prop_map(|v| {
                let fields: Vec<String> =
                    v.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", fields.join(", "))
            }),
        ]
    })
    .boxed()
}

const CONFIG_KEYS: &[&str] = &[
    "dir",
    "max_size",
    "compression_level",
    "lock_timeout",
    "exe_check",
    "verbose",
    "inputs",
    "outputs",
    "env",
    "tags",
    "ttl",
    "stale",
    "namespace",
    "salt",
    "cache_failures",
    "cwd",
    "match",
    "url",
    "mode",
    "timeout",
    "unknown_key",
    "rule",
    "remote",
];

/// A config file: lines of `key = value`, table headers, and some noise.
fn config_text() -> BoxedStrategy<String> {
    let line = prop_oneof![
        6 => (prop::sample::select(CONFIG_KEYS), toml_value()).prop_map(|(k, v)| format!("{k} = {v}")),
        2 => Just("[[rule]]".to_owned()),
        1 => Just("[remote]".to_owned()),
        1 => prop::sample::select(vec!["[rule]", "[[remote]]", "[x.y]", "[", "= 1", "#c", ""])
            .prop_map(str::to_owned),
        1 => text(40),
    ];
    prop::collection::vec(line, 0..16)
        .prop_map(|lines| lines.join("\n"))
        .boxed()
}

/// Load a project config written as `bytes` in a fresh temp dir; resolve a run through it.
fn load_config(bytes: &[u8], command: &[String]) -> Result<(), TestCaseError> {
    let d = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    std::fs::write(d.path().join("cachectl.toml"), bytes).unwrap();
    let cli_dir = Some((d.path().join("cache"), Source::Flag));
    match Config::load(d.path(), cli_dir) {
        Err(e) => {
            // A usage error names the file.
            let msg = format!("{e:#}");
            prop_assert!(!msg.is_empty());
        }
        Ok(cfg) => {
            let args = cachectl::cli::RunArgs {
                command: command.iter().map(OsString::from).collect(),
                ..Default::default()
            };
            let _ = RunOptions::resolve(&args, &cfg);
            let _ = cfg.remote(None);
        }
    }
    Ok(())
}

#[test]
fn config_files_of_arbitrary_bytes_never_panic() {
    bounded("config bytes", LIMIT, || {
        runner(150)
            .run(&prop::collection::vec(any::<u8>(), 0..600), |bytes| {
                load_config(&bytes, &["./x".into()])
            })
            .map_err(|e| e.to_string())
    });
}

#[test]
fn config_files_of_structured_toml_never_panic() {
    bounded("config toml", LIMIT, || {
        let strategy = (config_text(), prop::collection::vec(text(12), 1..4));
        runner(600)
            .run(&strategy, |(text, command)| {
                let command: Vec<String> =
                    std::iter::once("./x".to_owned()).chain(command).collect();
                load_config(text.as_bytes(), &command)
            })
            .map_err(|e| e.to_string())
    });
}

#[test]
fn size_and_duration_values_never_panic() {
    bounded("sizes and durations", LIMIT, || {
        runner(1000)
            .run(&text(30), |s| {
                let _ = cachectl::cli::units::parse_size(&s);
                let _ = cachectl::cli::units::parse_duration(&s);
                Ok(())
            })
            .map_err(|e| e.to_string())
    });
}

// ---------------------------------------------------------------------------------------------
// Warm manifests
// ---------------------------------------------------------------------------------------------

/// Relative globs only: an absolute or `..` pattern would walk the machine's filesystem, which
/// is a long (legitimate) job, not a parser property.
fn for_each_pattern() -> BoxedStrategy<String> {
    prop_oneof![
        proptest::string::string_regex("[a-z*?{},.!\\[\\]/]{0,12}")
            .unwrap()
            .prop_filter("relative, no ..", |p| !p.starts_with('/')
                && !p.contains("..")),
        prop::sample::select(vec![
            "img/*.png",
            "**",
            "**/*",
            "img/{a,b}.png",
            "[",
            "{",
            "img/[!a]*"
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

fn manifest_command() -> BoxedStrategy<String> {
    let strings = prop::collection::vec(text(12), 0..3);
    let run = prop_oneof![
        text(30).prop_map(|s| format!("run = {s:?}")),
        prop::collection::vec(text(10), 0..4).prop_map(|v| format!("run = {v:?}")),
        toml_value().prop_map(|v| format!("run = {v}")),
    ];
    let optional = prop_oneof![
        for_each_pattern().prop_map(|p| format!("for_each = {p:?}")),
        prop::sample::select(vec![".", "img", "sub", "nope", "img/a.png", ""])
            .prop_map(|c| format!("cwd = {c:?}")),
        strings.clone().prop_map(|v| format!("inputs = {v:?}")),
        strings.clone().prop_map(|v| format!("outputs = {v:?}")),
        strings.clone().prop_map(|v| format!("env = {v:?}")),
        strings.prop_map(|v| format!("tags = {v:?}")),
        text(12).prop_map(|s| format!("namespace = {s:?}")),
        text(12).prop_map(|s| format!("salt = {s:?}")),
        prop::sample::select(vec!["1h", "1s", "0s", "-1s", "soon", "2h"])
            .prop_map(|d| format!("ttl = {d:?}")),
        prop::sample::select(vec!["1h", "1s", "3h", "x"]).prop_map(|d| format!("stale = {d:?}")),
        any::<bool>().prop_map(|b| format!("cache_failures = {b}")),
        any::<bool>().prop_map(|b| format!("no_cwd = {b}")),
        (
            prop::sample::select(vec!["ouputs", "force", "command"]),
            toml_value()
        )
            .prop_map(|(k, v)| format!("{k} = {v}")),
    ];
    (
        prop::option::weighted(0.9, run),
        prop::collection::vec(optional, 0..6),
    )
        .prop_map(|(run, rest)| {
            let mut lines = vec!["[[command]]".to_owned()];
            lines.extend(run);
            lines.extend(rest);
            lines.join("\n")
        })
        .boxed()
}

/// A temp dir with `img/a.png`, `img/b.png`, `img/c.txt` and an empty `sub/`.
fn manifest_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("img")).unwrap();
    std::fs::create_dir_all(d.path().join("sub")).unwrap();
    for f in ["a.png", "b.png", "c.txt"] {
        std::fs::write(d.path().join("img").join(f), f).unwrap();
    }
    d
}

fn load_manifest(dir: &Path, bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = dir.join("warm.toml");
    std::fs::write(&path, bytes).unwrap();
    let mut configs = Configs::new(Some((dir.join("cache"), Source::Flag)));
    match manifest::load(&path, &mut configs) {
        Err(e) => {
            let msg = format!("{e:#}");
            prop_assert!(!msg.is_empty());
        }
        Ok(m) => {
            for c in &m.commands {
                prop_assert!(!c.args.command.is_empty(), "a command without argv: {c:?}");
                prop_assert!(c.cwd.is_absolute());
            }
        }
    }
    Ok(())
}

#[test]
fn manifests_of_arbitrary_bytes_never_panic() {
    bounded("manifest bytes", LIMIT, || {
        let d = manifest_dir();
        runner(250)
            .run(&prop::collection::vec(any::<u8>(), 0..600), |bytes| {
                load_manifest(d.path(), &bytes)
            })
            .map_err(|e| e.to_string())
    });
}

#[test]
fn manifests_of_structured_commands_never_panic() {
    bounded("manifest toml", LIMIT, || {
        let d = manifest_dir();
        let strategy = prop::collection::vec(manifest_command(), 0..4).prop_map(|c| c.join("\n\n"));
        runner(400)
            .run(&strategy, |text| load_manifest(d.path(), text.as_bytes()))
            .map_err(|e| e.to_string())
    });
}

// ---------------------------------------------------------------------------------------------
// Key components and the key
// ---------------------------------------------------------------------------------------------

fn digest() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[0-9a-f]{64}",
        1 => text(10),
    ]
    .boxed()
}

fn components() -> impl Strategy<Value = KeyComponents> {
    let exe = prop::option::of(
        (
            text(20),
            prop::sample::select(vec![ExeCheck::Content, ExeCheck::Mtime, ExeCheck::None]),
            digest(),
        )
            .prop_map(|(path, check, digest)| ExeIdentity {
                path,
                check,
                digest,
            }),
    );
    let input_state = (
        prop::sample::select(vec![
            InputKind::File,
            InputKind::Dir,
            InputKind::Symlink,
            InputKind::Absent,
        ]),
        any::<bool>(),
        digest(),
    )
        .prop_map(|(kind, exec, digest)| InputState { kind, exec, digest });
    (
        (
            any::<u32>(),
            text(10),
            text(10),
            prop::collection::vec(text(12), 0..5),
        ),
        (prop::option::of(text(20)), exe),
        (
            prop::collection::vec(text(8), 0..3),
            prop::collection::btree_map(text(8), prop::option::of(digest()), 0..3),
        ),
        (
            prop::collection::vec(text(8), 0..3),
            prop::collection::btree_map(text(10), input_state, 0..3),
        ),
        (
            prop::collection::vec(text(10), 0..3),
            prop::option::of(digest()),
        ),
        (
            any::<bool>(),
            prop::option::of(prop::collection::btree_map(text(10), seen(), 0..3)),
        ),
    )
        .prop_map(
            |(
                (version, namespace, salt, argv),
                (cwd, exe),
                (env_patterns, env),
                (input_patterns, inputs),
                (outputs, stdin),
                (traced, observed),
            )| KeyComponents {
                version,
                namespace,
                salt,
                argv,
                cwd,
                exe,
                env_patterns,
                env,
                input_patterns,
                inputs,
                outputs,
                stdin,
                traced,
                observed,
            },
        )
}

/// An observed input's state: absent, a file by content or by size and mtime, a listed
/// directory, a rewritten file.
fn seen() -> BoxedStrategy<Seen> {
    prop_oneof![
        Just(Seen::absent()),
        digest().prop_map(Seen::rewritten),
        (digest(), any::<bool>(), prop::option::of(text(6))).prop_map(|(d, exec, link)| {
            Seen {
                kind: SeenKind::File,
                content: Some(d),
                exec,
                link,
                ..Seen::absent()
            }
        }),
        (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(|(size, mtime_s, mtime_ns)| Seen {
            kind: SeenKind::File,
            stamp: Some(FileStamp {
                size,
                mtime_s,
                mtime_ns
            }),
            ..Seen::absent()
        }),
        (digest(), prop::collection::vec(text(6), 0..2)).prop_map(|(d, unlisted)| Seen {
            kind: SeenKind::Dir,
            listing: Some(d),
            unlisted,
            ..Seen::absent()
        }),
    ]
    .boxed()
}

/// What the key depends on: everything except the executable's displayed path.
fn keyed(c: &KeyComponents) -> KeyComponents {
    let mut c = c.clone();
    if let Some(e) = &mut c.exe {
        e.path.clear();
    }
    c
}

/// One small change to one component (it may turn out to be no change at all).
fn mutate(c: &mut KeyComponents, which: u8, s: String) {
    match which % 16 {
        0 => c.namespace.push_str(&s),
        1 => c.salt = s,
        2 => c.argv.push(s),
        3 => {
            // Move an argument boundary: ["a b"] vs ["a", "b"].
            if c.argv.len() >= 2 {
                let b = c.argv.remove(1);
                c.argv[0].push_str(&b);
            } else {
                c.argv.push(String::new());
            }
        }
        4 => c.cwd = if c.cwd.is_some() { None } else { Some(s) },
        5 => c.exe = None,
        6 => {
            if let Some(e) = &mut c.exe {
                e.digest.push('0');
            }
        }
        7 => c.env_patterns.push(s),
        8 => {
            c.env.insert(s, None);
        }
        9 => {
            let k = c.env.keys().next().cloned().unwrap_or_default();
            let v = c.env.get(&k).cloned().flatten();
            c.env.insert(
                k,
                if v.is_some() {
                    None
                } else {
                    Some(String::new())
                },
            );
        }
        10 => c.input_patterns.push(s),
        11 => {
            c.inputs.insert(
                s,
                InputState {
                    kind: InputKind::Absent,
                    exec: false,
                    digest: String::new(),
                },
            );
        }
        12 => {
            if let Some(v) = c.inputs.values_mut().next() {
                v.exec = !v.exec;
            }
        }
        13 => c.outputs.push(s),
        14 => c.stdin = if c.stdin.is_some() { None } else { Some(s) },
        _ => c.version = c.version.wrapping_add(1),
    }
}

#[test]
fn keys_are_hex_deterministic_and_change_exactly_when_a_keyed_component_does() {
    bounded("keys", LIMIT, || {
        let strategy = (components(), any::<u8>(), text(8), components());
        runner(1000)
            .run(&strategy, |(a, which, s, other)| {
                let k = a.key();
                prop_assert_eq!(k.len(), 64);
                prop_assert!(
                    k.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                );
                prop_assert_eq!(&k, &a.clone().key());
                // As stored in a record (JSON) and read back: the same key.
                let json = serde_json::to_string(&a).unwrap();
                let back: KeyComponents = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(&k, &back.key());
                // One change: a different key unless nothing keyed changed.
                let mut b = a.clone();
                mutate(&mut b, which, s);
                prop_assert_eq!(
                    keyed(&a) == keyed(&b),
                    k == b.key(),
                    "mutation {} of {:?}",
                    which % 16,
                    a
                );
                // An unrelated set of components: the same rule.
                prop_assert_eq!(keyed(&a) == keyed(&other), k == other.key());
                Ok(())
            })
            .map_err(|e| e.to_string())
    });
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// A record with consistent inline streams. `blobs` picks, per stream, a blob instead.
fn record_and_streams() -> impl Strategy<Value = (Record, Vec<u8>, Vec<u8>)> {
    let output = (
        text(16),
        prop::sample::select(vec![OutputKind::File, OutputKind::Dir, OutputKind::Symlink]),
        any::<u32>(),
        digest(),
        any::<u64>(),
        text(10),
    )
        .prop_map(|(path, kind, mode, digest, size, target)| OutputEntry {
            path,
            kind,
            mode,
            digest,
            size,
            target,
        });
    (
        (
            "[0-9a-f]{64}",
            text(20),
            text(20),
            text(8),
            prop::collection::vec(text(6), 0..3),
        ),
        (any::<u64>(), any::<u64>(), any::<i32>()),
        (
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(any::<u8>(), 0..100),
            prop::option::of("[0-9a-f]{64}"),
            prop::option::of("[0-9a-f]{64}"),
            (any::<u64>(), any::<u64>()),
        ),
        prop::collection::vec(any::<u64>(), 0..6),
        prop::collection::vec(output, 0..4),
        components(),
    )
        .prop_map(
            |(
                (key, command, cwd, namespace, tags),
                (created_ms, duration_ms, exit_code),
                (out, err, out_blob, err_blob, (out_blob_size, err_blob_size)),
                chunks,
                outputs,
                components,
            )| {
                let (stdout, inline_out) = match out_blob {
                    Some(d) => (
                        StreamRef {
                            size: out_blob_size,
                            blob: Some(d),
                        },
                        Vec::new(),
                    ),
                    None => (
                        StreamRef {
                            size: out.len() as u64,
                            blob: None,
                        },
                        out,
                    ),
                };
                let (stderr, inline_err) = match err_blob {
                    Some(d) => (
                        StreamRef {
                            size: err_blob_size,
                            blob: Some(d),
                        },
                        Vec::new(),
                    ),
                    None => (
                        StreamRef {
                            size: err.len() as u64,
                            blob: None,
                        },
                        err,
                    ),
                };
                let rec = Record {
                    key,
                    command,
                    cwd,
                    namespace,
                    tags,
                    created_ms,
                    duration_ms,
                    exit_code,
                    stdout,
                    stderr,
                    chunks,
                    outputs,
                    components,
                    side_effects: Vec::new(),
                    peers: Vec::new(),
                };
                (rec, inline_out, inline_err)
            },
        )
}

#[test]
fn records_round_trip_exactly() {
    bounded("record round trip", LIMIT, || {
        runner(500)
            .run(&record_and_streams(), |(rec, out, err)| {
                let bytes = record::encode(&rec, &out, &err);
                let d = record::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&d.record, &rec);
                prop_assert_eq!(&d.inline_stdout, &out);
                prop_assert_eq!(&d.inline_stderr, &err);
                Ok(())
            })
            .map_err(|e| e.to_string())
    });
}

#[test]
fn every_flipped_bit_and_truncation_of_a_record_is_detected() {
    bounded("record corruption", LIMIT, || {
        let strategy = (
            record_and_streams(),
            any::<prop::sample::Index>(),
            0u8..8,
            any::<prop::sample::Index>(),
        );
        runner(800)
            .run(&strategy, |((rec, out, err), at, bit, cut)| {
                let bytes = record::encode(&rec, &out, &err);
                let mut flipped = bytes.clone();
                let i = at.index(flipped.len());
                flipped[i] ^= 1 << bit;
                prop_assert!(
                    record::decode(&flipped).is_err(),
                    "flip of bit {} at {} not detected",
                    bit,
                    i
                );
                let n = cut.index(bytes.len());
                prop_assert!(
                    record::decode(&bytes[..n]).is_err(),
                    "truncation to {} not detected",
                    n
                );
                Ok(())
            })
            .map_err(|e| e.to_string())
    });
}

#[test]
fn decoding_arbitrary_bytes_never_panics() {
    bounded("record bytes", LIMIT, || {
        let strategy = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            prop::collection::vec(any::<u8>(), 0..400).prop_map(|mut v| {
                let mut b = b"CCREC001".to_vec();
                b.append(&mut v);
                b
            }),
        ];
        runner(2000)
            .run(&strategy, |bytes| {
                let _ = record::decode(&bytes);
                Ok(())
            })
            .map_err(|e| e.to_string())
    });
}

/// Record bytes with a valid header and checksum around any body and tail, so that decoding goes
/// past the checksum into the length and JSON handling.
fn checksummed(body: &[u8], tail: &[u8], declared_len: Option<u32>) -> Vec<u8> {
    let mut out = b"CCREC001".to_vec();
    out.extend_from_slice(&[0u8; 32]);
    out.extend_from_slice(&declared_len.unwrap_or(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(tail);
    let sum = blake3::hash(&out[40..]);
    out[8..40].copy_from_slice(sum.as_bytes());
    out
}

/// A record body in JSON, with some fields replaced by arbitrary JSON-ish values, and stream
/// sizes drawn from `sizes`.
fn mangled_body(sizes: BoxedStrategy<u64>) -> impl Strategy<Value = Vec<u8>> {
    let junk = prop_oneof![
        Just("null".to_owned()),
        Just("-1".to_owned()),
        Just("1e999".to_owned()),
        Just("\"\"".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        text(10).prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    (
        record_and_streams(),
        sizes.clone(),
        sizes,
        prop::option::of((0usize..40, junk)),
        any::<bool>(),
    )
        .prop_map(|((rec, _, _), out_size, err_size, replace, drop_blob)| {
            let mut v = serde_json::to_value(&rec).unwrap();
            v["stdout"]["size"] = out_size.into();
            v["stderr"]["size"] = err_size.into();
            if drop_blob {
                v["stdout"]["blob"] = serde_json::Value::Null;
                v["stderr"]["blob"] = serde_json::Value::Null;
            }
            let mut text = serde_json::to_string(&v).unwrap();
            if let Some((field, junk)) = replace {
                // Replace the value of the n-th `":` occurrence's field crudely.
                if let Some((pos, _)) = text.match_indices("\":").nth(field) {
                    let start = pos + 2;
                    let end = text[start..]
                        .find([',', '}'])
                        .map(|e| start + e)
                        .unwrap_or(text.len());
                    text.replace_range(start..end, &junk);
                }
            }
            text.into_bytes()
        })
}

fn decode_checksummed_property(sizes: BoxedStrategy<u64>, cases: u32) -> Result<(), String> {
    let strategy = (
        mangled_body(sizes),
        prop::collection::vec(any::<u8>(), 0..80),
        prop::option::weighted(0.2, any::<u32>()),
    );
    runner(cases)
        .run(&strategy, |(body, tail, len)| {
            let bytes = checksummed(&body, &tail, len);
            if let Ok(d) = record::decode(&bytes) {
                // What decodes is consistent: inline streams have their declared sizes.
                if d.record.stdout.blob.is_none() {
                    prop_assert_eq!(d.inline_stdout.len() as u64, d.record.stdout.size);
                }
                if d.record.stderr.blob.is_none() {
                    prop_assert_eq!(d.inline_stderr.len() as u64, d.record.stderr.size);
                }
            }
            Ok(())
        })
        .map_err(|e| e.to_string())
}

#[test]
fn decoding_checksummed_garbage_never_panics() {
    bounded("checksummed record bodies", LIMIT, || {
        decode_checksummed_property((0u64..200).boxed(), 1000)
    });
}

#[test]
fn decoding_checksummed_records_with_any_stream_sizes_never_panics() {
    bounded("checksummed record sizes", LIMIT, || {
        let sizes = prop_oneof![0u64..200, (u64::MAX / 2)..=u64::MAX, Just(1 << 63)].boxed();
        decode_checksummed_property(sizes, 1500)
    });
}

// ---------------------------------------------------------------------------------------------
// The journal
// ---------------------------------------------------------------------------------------------

fn event() -> impl Strategy<Value = Event> {
    let s = || text(12);
    prop_oneof![
        (any::<u64>(), s(), s(), s(), any::<u64>(), any::<u64>()).prop_map(
            |(ts, key, cmd, ns, saved_ms, bytes)| Event::Hit {
                ts,
                key,
                cmd,
                ns,
                saved_ms,
                bytes
            }
        ),
        (any::<u64>(), s(), s(), s()).prop_map(|(ts, key, cmd, ns)| Event::Miss {
            ts,
            key,
            cmd,
            ns
        }),
        (any::<u64>(), s(), s(), s(), any::<u64>(), any::<u64>()).prop_map(
            |(ts, key, cmd, ns, bytes, duration_ms)| Event::Store {
                ts,
                key,
                cmd,
                ns,
                bytes,
                duration_ms
            }
        ),
        (any::<u64>(), s(), s(), s(), s(), any::<u64>()).prop_map(
            |(ts, key, cmd, ns, reason, duration_ms)| Event::Uncacheable {
                ts,
                key,
                cmd,
                ns,
                reason,
                duration_ms,
            }
        ),
        (any::<u64>(), s(), s(), any::<u64>()).prop_map(|(ts, op, kind, bytes)| Event::Remote {
            ts,
            op,
            kind,
            bytes
        }),
        (any::<u64>(), s()).prop_map(|(ts, kind)| Event::Error { ts, kind }),
    ]
}

/// A line that is not an event: noise, a prefix of an event line, or an event with a field of
/// the wrong type.
fn garbage_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[^\n{]{0,60}",
        (event(), any::<prop::sample::Index>()).prop_map(|(e, cut)| {
            let line = serde_json::to_string(&e).unwrap();
            let n = cut.index(line.len());
            // A torn line: never the whole line (an object needs its closing brace).
            line.char_indices()
                .map(|(i, _)| i)
                .rfind(|&i| i <= n)
                .map(|i| line[..i].to_owned())
                .unwrap_or_default()
        }),
        Just("{\"ev\":\"hit\",\"ts\":\"soon\"}".to_owned()),
        Just("{\"ev\":\"unknown\",\"ts\":1}".to_owned()),
        Just("{}".to_owned()),
        Just("null".to_owned()),
    ]
}

#[test]
fn the_journal_parser_skips_garbage_and_keeps_every_event_in_order() {
    bounded("journal", LIMIT, || {
        let strategy = prop::collection::vec(
            prop_oneof![3 => event().prop_map(Ok), 1 => garbage_line().prop_map(Err)],
            0..30,
        );
        let strategy = (
            strategy,
            prop::collection::vec(prop::option::of(text(12)), 30),
        );
        runner(800)
            .run(&strategy, |(lines, sessions)| {
                let mut text = String::new();
                let mut want = Vec::new();
                for (l, session) in lines.iter().zip(&sessions) {
                    match l {
                        Ok(e) => {
                            let line = journal::Line {
                                event: e.clone(),
                                session: session.clone(),
                            };
                            text.push_str(&serde_json::to_string(&line).unwrap());
                            want.push(line);
                        }
                        Err(g) => text.push_str(g),
                    }
                    text.push('\n');
                }
                let got: Vec<journal::Line> = journal::parse(&text).collect();
                prop_assert_eq!(got, want);
                Ok(())
            })
            .map_err(|e| e.to_string())
    });
}

#[test]
fn the_journal_parser_never_panics_on_arbitrary_text() {
    bounded("journal text", LIMIT, || {
        runner(1500)
            .run(&prop::collection::vec(any::<u8>(), 0..800), |bytes| {
                let text = String::from_utf8_lossy(&bytes);
                let n = journal::parse(&text).count();
                prop_assert!(n <= text.lines().count());
                Ok(())
            })
            .map_err(|e| e.to_string())
    });
}

// ---------------------------------------------------------------------------------------------
// The lossless path encoding used in records (argv, output paths, link targets, cwd)
// ---------------------------------------------------------------------------------------------

#[test]
fn encoded_os_strings_round_trip() {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    bounded("encode_os", LIMIT, || {
        runner(2000)
            .run(&prop::collection::vec(any::<u8>(), 0..64), |bytes| {
                let os = OsString::from_vec(bytes.clone());
                let enc = cachectl::paths::encode_os(&os);
                let back = cachectl::paths::decode_os(&enc);
                prop_assert_eq!(back.as_bytes(), &bytes[..]);
                Ok(())
            })
            .map_err(|e| e.to_string())
    });
}

#[test]
fn decoding_any_encoded_string_never_panics() {
    bounded("decode_os", LIMIT, || {
        runner(2000)
            .run(&text(20).prop_map(|s| format!("\0{s}")), |s| {
                let _ = cachectl::paths::decode_os(&s);
                let _ = cachectl::paths::display_encoded(&s);
                Ok(())
            })
            .map_err(|e| e.to_string())
    });
}
