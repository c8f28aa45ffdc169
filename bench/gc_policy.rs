//! gc policy benchmark (issue 16): replay a generated sequence of CI builds against a cache
//! limited to half its working set, once per policy, through cachectl's own store, journal,
//! index and gc, and report hit rate and time saved.
//!
//!     cargo run --release --example gc_policy -- [--builds N] [--seeds S,S,...] [--out FILE]
//!
//! One table per seed (a different project and build sequence each); `--out` also writes them
//! to FILE (bench/results/gc_policy.md, which bench/report.py puts into docs/benchmarks.md).
//!
//! Nothing runs commands: each step of a build is a key with a duration and a size. A miss
//! stores an entry of that size (a real record and a real blob of incompressible bytes) and
//! journals the run as `cachectl run` does; a hit journals what it saved. After every build the
//! journal is folded and gc runs with `--max-size` at half the working set, as a CI job would
//! before saving its cache. The clock is `CACHECTL_TEST_NOW`, one second per step.
//!
//! The project: 300 sources compiled one by one (0.2-10 s each, objects of 5-50 KiB), six link
//! steps of 50 objects each (1-5 minutes, 1-4 MiB: sizes are a tenth of a real build's, which
//! neither policy is sensitive to, to keep the run short), 20 test steps on the linked programs
//! (10-60 s, a few KiB) and 40 tool probes (`--version` and the like: 5-30 ms, under 2 KiB).
//! Three branches share the cache: main (half the builds) and two feature branches; each build
//! edits 3% of the sources on its branch, which changes those objects and every link and test
//! step above them.

use anyhow::Result;
use cachectl::cli::GcPolicy;
use cachectl::manage::gc::{self, GcOptions};
use cachectl::store::Store;
use cachectl::store::index::Index;
use cachectl::store::journal::Event;
use cachectl::store::record::{Record, StreamRef};
use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

const SOURCES: usize = 300;
const LINKS: usize = 6;
const TESTS: usize = 20;
const PROBES: usize = 40;
const BRANCHES: usize = 3;
const EDIT_PERCENT: u64 = 3;
const KIB: u64 = 1024;
const T0: u64 = 1_700_000_000_000;

/// xorshift64*: the same trace for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// One step of a build: its key, what a run costs, what its result takes.
#[derive(Clone)]
struct Step {
    key: String,
    command: String,
    duration_ms: u64,
    size: u64,
}

/// A stable 64-hex key for `text`.
fn key_of(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// A build: the branch it built and its steps, in order.
struct Build {
    branch: usize,
    steps: Vec<Step>,
}

/// The builds, in order.
fn trace(builds: usize, seed: u64) -> Vec<Build> {
    let mut rng = Rng(seed | 1);
    // Per source: its compile duration and object size, fixed.
    let compile: Vec<(u64, u64)> = (0..SOURCES)
        .map(|_| {
            // Skewed: most compiles are quick, a few are slow.
            let d = match rng.below(10) {
                0 => rng.between(4_000, 10_000),
                1..=3 => rng.between(1_000, 4_000),
                _ => rng.between(200, 1_000),
            };
            (d, rng.between(5 * KIB, 50 * KIB))
        })
        .collect();
    let link: Vec<(u64, u64)> = (0..LINKS)
        .map(|_| {
            (
                rng.between(60_000, 300_000),
                rng.between(1024 * KIB, 4096 * KIB),
            )
        })
        .collect();
    let tests: Vec<(usize, u64, u64)> = (0..TESTS)
        .map(|_| {
            (
                rng.below(LINKS as u64) as usize,
                rng.between(10_000, 60_000),
                rng.between(KIB, 5 * KIB),
            )
        })
        .collect();
    let probes: Vec<(u64, u64)> = (0..PROBES)
        .map(|_| (rng.between(5, 30), rng.between(200, 2 * KIB)))
        .collect();
    let mut next_version = 1u64;
    let mut versions = vec![vec![0u64; SOURCES]; BRANCHES];
    let mut out = Vec::new();
    for _ in 0..builds {
        let branch = match rng.below(4) {
            0 | 1 => 0,
            2 => 1,
            _ => 2,
        };
        for v in versions[branch].iter_mut() {
            if rng.below(100) < EDIT_PERCENT {
                *v = next_version;
                next_version += 1;
            }
        }
        let mut steps = Vec::new();
        for (i, (d, s)) in probes.iter().enumerate() {
            steps.push(Step {
                key: key_of(&format!("probe {i}")),
                command: format!("tool{i} --version"),
                duration_ms: *d,
                size: *s,
            });
        }
        let mut objects = Vec::new();
        for (i, (d, s)) in compile.iter().enumerate() {
            let key = key_of(&format!("cc {i} v{}", versions[branch][i]));
            objects.push(key.clone());
            steps.push(Step {
                key,
                command: format!("cc -c src{i}.c"),
                duration_ms: *d,
                size: *s,
            });
        }
        let per_link = SOURCES / LINKS;
        let mut programs = Vec::new();
        for (i, (d, s)) in link.iter().enumerate() {
            let key = key_of(&format!(
                "ld {i} {}",
                objects[i * per_link..][..per_link].join(",")
            ));
            programs.push(key.clone());
            steps.push(Step {
                key,
                command: format!("ld -o prog{i}"),
                duration_ms: *d,
                size: *s,
            });
        }
        for (i, (prog, d, s)) in tests.iter().enumerate() {
            steps.push(Step {
                key: key_of(&format!("test {i} {}", programs[*prog])),
                command: format!("./prog{prog} --test {i}"),
                duration_ms: *d,
                size: *s,
            });
        }
        out.push(Build { branch, steps });
    }
    out
}

/// The largest, over the trace, of the bytes that the latest build of every branch used: what
/// a cache must hold for every build to hit all that it did not change.
fn working_set(builds: &[Build]) -> u64 {
    let mut latest: Vec<Option<&Build>> = vec![None; BRANCHES];
    let mut most = 0;
    for b in builds {
        latest[b.branch] = Some(b);
        let mut seen = HashSet::new();
        let bytes: u64 = latest
            .iter()
            .flatten()
            .flat_map(|b| &b.steps)
            .filter(|s| seen.insert(&s.key))
            .map(|s| s.size)
            .sum();
        most = most.max(bytes);
    }
    most
}

/// Incompressible bytes (the stored size is the size), cheap to make.
struct Noise(Rng, u64);

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.1) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            let v = self.0.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.1 -= n as u64;
        Ok(n)
    }
}

fn set_now(ms: u64) {
    // SAFETY: the benchmark is single-threaded; nothing else reads the environment meanwhile.
    unsafe { std::env::set_var("CACHECTL_TEST_NOW", ms.to_string()) };
}

/// Store a result of `step` as `cachectl run` would after a miss.
fn store(store: &Store, step: &Step, now: u64) -> Result<()> {
    let put = store
        .cas
        .put_reader(&store.tmp, &mut Noise(Rng(now | 1), step.size), 1)?;
    let record = Record {
        key: step.key.clone(),
        command: step.command.clone(),
        cwd: "/src".into(),
        namespace: "default".into(),
        tags: Vec::new(),
        created_ms: now,
        duration_ms: step.duration_ms,
        exit_code: 0,
        stdout: StreamRef {
            size: put.size,
            blob: Some(put.digest),
        },
        stderr: StreamRef {
            size: 0,
            blob: None,
        },
        chunks: vec![put.size << 1],
        outputs: Vec::new(),
        components: Default::default(),
        side_effects: Vec::new(),
        peers: Vec::new(),
    };
    let bytes = put.stored_bytes + store.write_record(&record, b"", b"")?;
    store.log(&Event::Store {
        ts: now,
        key: step.key.clone(),
        cmd: step.command.clone(),
        ns: "default".into(),
        bytes,
        duration_ms: step.duration_ms,
    })?;
    Ok(())
}

#[derive(Default, Clone, Copy)]
struct Outcome {
    hits: u64,
    misses: u64,
    saved_ms: u64,
    ran_ms: u64,
    evicted: u64,
}

/// Replay `builds` into a fresh cache at `dir`, with gc to `limit` by `policy` after each
/// build (no gc without a limit).
fn replay(dir: &Path, builds: &[Build], limit: Option<u64>, policy: GcPolicy) -> Result<Outcome> {
    let store = Store::at(dir.to_path_buf());
    store.init()?;
    let mut out = Outcome::default();
    let mut now = T0;
    for build in builds {
        for step in &build.steps {
            now += 1000;
            set_now(now);
            let found = matches!(
                store.lookup_for_hit(&step.key)?,
                cachectl::store::Lookup::Found(_)
            );
            if found {
                out.hits += 1;
                out.saved_ms += step.duration_ms;
                store.log(&Event::Hit {
                    ts: now,
                    key: step.key.clone(),
                    cmd: step.command.clone(),
                    ns: "default".into(),
                    saved_ms: step.duration_ms,
                    bytes: step.size,
                })?;
            } else {
                out.misses += 1;
                out.ran_ms += step.duration_ms;
                store.log(&Event::Miss {
                    ts: now,
                    key: step.key.clone(),
                    cmd: step.command.clone(),
                    ns: "default".into(),
                })?;
                self::store(&store, step, now)?;
            }
        }
        if let Some(max) = limit {
            now += 60_000;
            set_now(now);
            let mut idx = Index::open(&store)?;
            idx.fold_journal(&store)?;
            let report = gc::run(
                &store,
                &mut idx,
                &GcOptions {
                    max_size: Some(max),
                    max_age: None,
                    policy,
                    dry_run: false,
                    target_fraction: 1.0,
                },
            )?;
            out.evicted += report.entries_removed;
        }
        now += 3_600_000;
    }
    Ok(out)
}

fn main() -> Result<()> {
    let mut builds = 60usize;
    let mut seeds = vec![16u64];
    let mut out_file: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--builds" => builds = args.next().unwrap_or_default().parse()?,
            "--seeds" => {
                seeds = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--out" => out_file = args.next(),
            other => anyhow::bail!("unknown argument {other}; see the top of bench/gc_policy.rs"),
        }
    }
    let mut md = String::new();
    for seed in seeds {
        let table = one_trace(builds, seed)? + "\n";
        print!("{table}");
        md += &table;
    }
    if let Some(path) = out_file {
        std::fs::write(&path, &md)?;
    }
    Ok(())
}

/// Replay one trace under no limit, `lru` and `value`: a Markdown table.
fn one_trace(builds: usize, seed: u64) -> Result<String> {
    let started = std::time::Instant::now();
    let trace = trace(builds, seed);
    let ws = working_set(&trace);
    let limit = ws / 2;
    let steps: usize = trace.iter().map(|b| b.steps.len()).sum();
    let work = tempfile_dir()?;
    let mut rows = Vec::new();
    let all = replay(&work.join("unlimited"), &trace, None, GcPolicy::Lru)?;
    rows.push(("no limit (the ceiling)", all));
    for policy in [GcPolicy::Lru, GcPolicy::Value] {
        let o = replay(&work.join(policy.as_str()), &trace, Some(limit), policy)?;
        rows.push((policy.as_str(), o));
    }
    std::fs::remove_dir_all(&work)?;
    let mut md = format!(
        "Seed {seed}: {builds} builds, {steps} steps; working set {:.1} MiB (the most that the \
         latest build of each branch used together), limit {:.1} MiB; replayed in {:.0} s.\n\n",
        ws as f64 / 1048576.0,
        limit as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    md += "| policy | hits | misses | hit rate | time saved | time spent running misses | entries evicted |\n";
    md += "|---|--:|--:|--:|--:|--:|--:|\n";
    let hours = |ms: u64| format!("{:.1} h", ms as f64 / 3_600_000.0);
    for (name, o) in &rows {
        md += &format!(
            "| {name} | {} | {} | {:.1}% | {} | {} | {} |\n",
            o.hits,
            o.misses,
            o.hits as f64 * 100.0 / (o.hits + o.misses) as f64,
            hours(o.saved_ms),
            hours(o.ran_ms),
            o.evicted
        );
    }
    Ok(md)
}

/// A scratch directory under the system temp dir.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("cachectl-gc-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
