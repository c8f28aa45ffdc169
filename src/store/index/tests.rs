//! Tests of the index: folding, rebuilding, the aggregates under every writer, migrations.

use super::fold::{UsageDelta, bump_usage};
use super::reconcile::{record_size, upsert_entry};
use super::*;
use crate::clock::HOUR_MS;
use crate::store::journal::{self, Event};
use crate::store::record::tests::sample;
use rusqlite::Connection;

fn store() -> (tempfile::TempDir, Store) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::at(d.path().join("c"));
    s.init().unwrap();
    (d, s)
}

/// gc's value policy (see `value`): a store sets `clock + 1 × duration / size`, every hit
/// `clock + uses × duration / size` with the clock as it stands then.
#[test]
fn entry_values_follow_uses_and_the_clock() {
    let (_d, s) = store();
    let rec = sample();
    s.write_record(&rec, b"hi\n", b"e\n").unwrap();
    let ev = |e| journal::append(&s.journal, &e, None).unwrap();
    let hit = |ts| Event::Hit {
        ts,
        key: rec.key.clone(),
        cmd: "c".into(),
        ns: "default".into(),
        saved_ms: rec.duration_ms,
        bytes: 5,
    };
    ev(Event::Store {
        ts: 10,
        key: rec.key.clone(),
        cmd: "c".into(),
        ns: "default".into(),
        bytes: 1,
        duration_ms: rec.duration_ms,
    });
    let mut idx = Index::open(&s).unwrap();
    idx.fold_journal(&s).unwrap();
    let row = idx.entry(&rec.key).unwrap().unwrap();
    let per_use = rec.duration_ms as f64 / row.size_bytes as f64;
    assert!(per_use > 0.0);
    assert!((row.value - per_use).abs() < 1e-9, "{}", row.value);
    idx.advance_value_clock(100.0).unwrap();
    ev(hit(20));
    ev(hit(30));
    idx.fold_journal(&s).unwrap();
    let row = idx.entry(&rec.key).unwrap().unwrap();
    assert_eq!(row.hits, 2);
    assert!(
        (row.value - (100.0 + 3.0 * per_use)).abs() < 1e-9,
        "{}",
        row.value
    );
}

/// An entry gc evicts and the run stores again keeps the uses it had (`value`), and its miss
/// in between counts once as lost to eviction.
#[test]
fn uses_survive_an_eviction() {
    let (_d, s) = store();
    let rec = sample();
    s.write_record(&rec, b"hi\n", b"e\n").unwrap();
    let ev = |e| journal::append(&s.journal, &e, None).unwrap();
    let store_ev = |ts| Event::Store {
        ts,
        key: rec.key.clone(),
        cmd: "c".into(),
        ns: "default".into(),
        bytes: 1,
        duration_ms: rec.duration_ms,
    };
    ev(store_ev(10));
    for ts in [20, 30, 40] {
        ev(Event::Hit {
            ts,
            key: rec.key.clone(),
            cmd: "c".into(),
            ns: "default".into(),
            saved_ms: rec.duration_ms,
            bytes: 5,
        });
    }
    let mut idx = Index::open(&s).unwrap();
    idx.fold_journal(&s).unwrap();
    let before = idx.entry(&rec.key).unwrap().unwrap();
    assert_eq!(before.hits, 3);
    idx.remember_evicted(&[(rec.key.as_str(), "max_size")], 50)
        .unwrap();
    idx.remove_entries(&s, std::slice::from_ref(&rec.key))
        .unwrap();
    s.write_record(&rec, b"hi\n", b"e\n").unwrap();
    for _ in 0..2 {
        ev(Event::Miss {
            ts: 60,
            key: rec.key.clone(),
            cmd: "c".into(),
            ns: "default".into(),
        });
    }
    ev(store_ev(70));
    idx.fold_journal(&s).unwrap();
    let after = idx.entry(&rec.key).unwrap().unwrap();
    assert_eq!(after.hits, 0);
    let per_use = rec.duration_ms as f64 / after.size_bytes as f64;
    // Four uses before (the store and three hits), one now.
    assert!(
        (after.value - 5.0 * per_use).abs() < 1e-9,
        "{}",
        after.value
    );
    let lost: i64 = idx
        .conn
        .query_row(
            "SELECT SUM(count) FROM faults WHERE kind = 'evicted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(lost, 1);
}

#[test]
fn folds_journal_once_and_rebuilds_from_records() {
    let (_d, s) = store();
    let rec = sample();
    s.write_record(&rec, b"hi\n", b"e\n").unwrap();
    let ev = |e| journal::append(&s.journal, &e, None).unwrap();
    ev(Event::Store {
        ts: 10,
        key: rec.key.clone(),
        cmd: "echo hi".into(),
        ns: "default".into(),
        bytes: 1,
        duration_ms: 1500,
    });
    for ts in [20, 30] {
        ev(Event::Hit {
            ts,
            key: rec.key.clone(),
            cmd: "echo hi".into(),
            ns: "default".into(),
            saved_ms: 1500,
            bytes: 5,
        });
    }
    let mut idx = Index::open(&s).unwrap();
    assert_eq!(idx.fold_journal(&s).unwrap(), 3);
    assert_eq!(idx.fold_journal(&s).unwrap(), 0);
    let rows = idx.entries_where("1", &[]).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].hits, 2);
    let saved: i64 = idx
        .conn
        .query_row("SELECT SUM(time_saved_ms) FROM usage", [], |r| r.get(0))
        .unwrap();
    assert_eq!(saved, 3000);

    // Lose the index: entries come back from the files.
    drop(idx);
    std::fs::remove_file(Index::path(&s)).unwrap();
    let idx = Index::open(&s).unwrap();
    assert_eq!(idx.entries_where("1", &[]).unwrap().len(), 1);
}

/// Breakdown rows by (grp, name): [hits, misses, time saved, usage rows, entries, bytes].
type Breakdown = std::collections::BTreeMap<(String, String), [i64; 6]>;
/// Usage per day: [hits, misses, stores, time saved, bytes replayed, usage rows].
type Days = std::collections::BTreeMap<i64, [i64; 6]>;

/// What the aggregate tables hold.
fn aggregates_kept(c: &Connection) -> (Breakdown, Days, [i64; 7]) {
    let mut breakdown = Breakdown::new();
    let mut stmt = c
        .prepare(
            "SELECT grp, name, hits, misses, time_saved_ms, usage_rows, entries, size_bytes
             FROM breakdown",
        )
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        let v: [i64; 6] = std::array::from_fn(|i| r.get(i + 2).unwrap());
        breakdown.insert((r.get(0).unwrap(), r.get(1).unwrap()), v);
    }
    let mut days = Days::new();
    let mut stmt = c
        .prepare(
            "SELECT day, hits, misses, stores, time_saved_ms, bytes_replayed, usage_rows
             FROM usage_days",
        )
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        days.insert(
            r.get(0).unwrap(),
            std::array::from_fn(|i| r.get(i + 1).unwrap()),
        );
    }
    let totals = c
        .query_row(
            "SELECT entries, record_bytes, blobs, blob_stored_bytes, blob_bytes,
                command_names, namespace_names FROM totals",
            [],
            |r| Ok(std::array::from_fn(|i| r.get(i).unwrap())),
        )
        .unwrap();
    (breakdown, days, totals)
}

/// The same figures computed from scratch, the way `stats` grouped the base tables before
/// the aggregates existed.
fn aggregates_from_scratch(c: &Connection) -> (Breakdown, Days, [i64; 7]) {
    let mut breakdown = Breakdown::new();
    for grp in ["command", "namespace"] {
        let sql = format!(
            "SELECT {grp}, SUM(hits), SUM(misses), SUM(time_saved_ms), COUNT(*) FROM usage
             GROUP BY {grp}"
        );
        let mut stmt = c.prepare(&sql).unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let v = breakdown
                .entry((grp.into(), r.get(0).unwrap()))
                .or_default();
            for (i, x) in v.iter_mut().take(4).enumerate() {
                *x = r.get(i + 1).unwrap();
            }
        }
        let sql = format!("SELECT {grp}, COUNT(*), SUM(size_bytes) FROM entries GROUP BY {grp}");
        let mut stmt = c.prepare(&sql).unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let v = breakdown
                .entry((grp.into(), r.get(0).unwrap()))
                .or_default();
            v[4] = r.get(1).unwrap();
            v[5] = r.get(2).unwrap();
        }
    }
    let mut days = Days::new();
    let mut stmt = c
        .prepare(
            "SELECT hour / 24, SUM(hits), SUM(misses), SUM(stores), SUM(time_saved_ms),
                SUM(bytes_replayed), COUNT(*) FROM usage GROUP BY hour / 24",
        )
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        days.insert(
            r.get(0).unwrap(),
            std::array::from_fn(|i| r.get(i + 1).unwrap()),
        );
    }
    let count = |grp: &str| breakdown.keys().filter(|(g, _)| g == grp).count() as i64;
    let (command_names, namespace_names) = (count("command"), count("namespace"));
    let totals = c
        .query_row(
            "SELECT (SELECT COUNT(*) FROM entries), (SELECT COALESCE(SUM(record_bytes), 0)
                FROM entries), (SELECT COUNT(*) FROM blobs),
                (SELECT COALESCE(SUM(stored_bytes), 0) FROM blobs),
                (SELECT COALESCE(SUM(size), 0) FROM blobs)",
            [],
            |r| {
                let t: [i64; 5] = std::array::from_fn(|i| r.get(i).unwrap());
                Ok([t[0], t[1], t[2], t[3], t[4], command_names, namespace_names])
            },
        )
        .unwrap();
    (breakdown, days, totals)
}

fn assert_aggregates_exact(idx: &Index, step: &str) {
    let kept = aggregates_kept(&idx.conn);
    let scratch = aggregates_from_scratch(&idx.conn);
    assert_eq!(kept, scratch, "aggregates differ after {step}");
}

/// A small deterministic generator (xorshift64*), so a failure replays from its seed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Write a blob file whose header gives `size` as its uncompressed size.
fn write_blob(s: &Store, digest: &str, size: u64, stored: usize) {
    let path = s.cas.path(digest);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut bytes = vec![0u8; 48 + stored];
    bytes[40..48].copy_from_slice(&size.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn aggregates_stay_exact_under_every_writer() {
    const COMMANDS: [&str; 5] = ["cc a.c", "cc b.c", "ld app", "test", "echo hi"];
    const NAMESPACES: [&str; 3] = ["default", "build", "ci"];
    for seed in 1..=6u64 {
        let (_d, s) = store();
        let mut idx = Index::open(&s).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let digests: Vec<String> = (0..4).map(|i| format!("{i:x}").repeat(64)).collect();
        let base = 1_700_000_000_000u64;
        for step in 0..160 {
            let key = format!("{:02x}", rng.below(24)).repeat(32);
            let cmd = COMMANDS[rng.below(5) as usize].to_owned();
            let ns = NAMESPACES[rng.below(3) as usize].to_owned();
            let ts = base + rng.below(5 * 24 * HOUR_MS);
            let op = rng.below(20);
            let what = match op {
                // Store (a new key or a replacement), with or without a blob.
                0..=5 => {
                    let mut rec = sample();
                    rec.key = key.clone();
                    rec.command = cmd.clone();
                    rec.namespace = ns.clone();
                    rec.created_ms = ts;
                    if rng.below(2) == 0 {
                        let d = &digests[rng.below(4) as usize];
                        write_blob(&s, d, 1000 + rng.below(1000), rng.below(300) as usize);
                        rec.stdout.blob = Some(d.clone());
                    }
                    s.write_record(&rec, b"hi\n", b"e\n").unwrap();
                    journal::append(
                        &s.journal,
                        &Event::Store {
                            ts,
                            key,
                            cmd,
                            ns,
                            bytes: 1,
                            duration_ms: 10,
                        },
                        None,
                    )
                    .unwrap();
                    "store"
                }
                6..=9 => {
                    let saved_ms = rng.below(5000);
                    let ev = Event::Hit {
                        ts,
                        key,
                        cmd,
                        ns,
                        saved_ms,
                        bytes: rng.below(100),
                    };
                    journal::append(&s.journal, &ev, None).unwrap();
                    "hit"
                }
                10..=11 => {
                    let ev = Event::Miss { ts, key, cmd, ns };
                    journal::append(&s.journal, &ev, None).unwrap();
                    "miss"
                }
                12..=14 => {
                    idx.fold_journal(&s).unwrap();
                    "fold"
                }
                // gc: evict the least recently used entries, then their orphaned blobs.
                15 => {
                    let rows = idx
                        .entries_where("1 ORDER BY last_used_ms, key", &[])
                        .unwrap();
                    let n = rng.below(rows.len() as u64 + 1) as usize;
                    let keys: Vec<String> = rows.into_iter().take(n).map(|r| r.key).collect();
                    let orphans = idx.remove_entries(&s, &keys).unwrap();
                    idx.remove_blobs(&s, &orphans).unwrap();
                    "gc"
                }
                // invalidate: every entry of one command.
                16 => {
                    let rows = idx.entries_where("command = ?1", &[&cmd]).unwrap();
                    let keys: Vec<String> = rows.into_iter().map(|r| r.key).collect();
                    let orphans = idx.remove_entries(&s, &keys).unwrap();
                    idx.remove_blobs(&s, &orphans).unwrap();
                    "invalidate"
                }
                17 => {
                    idx.reset_usage().unwrap();
                    "reset"
                }
                // verify --fix: a record and a blob vanished behind the index's back.
                18 => {
                    s.remove_record(&key);
                    let _ = std::fs::remove_file(s.cas.path(&digests[rng.below(4) as usize]));
                    idx.reconcile_records(&s, false).unwrap();
                    idx.reconcile_blobs(&s).unwrap();
                    "reconcile"
                }
                _ => {
                    drop(idx);
                    idx = Index::rebuild(&s, &anyhow::anyhow!("test")).unwrap();
                    "rebuild"
                }
            };
            assert_aggregates_exact(&idx, &format!("{what} (seed {seed}, step {step})"));
        }
        idx.fold_journal(&s).unwrap();
        assert_aggregates_exact(&idx, &format!("the last fold (seed {seed})"));
        let (breakdown, days, _) = aggregates_kept(&idx.conn);
        assert!(
            !breakdown.is_empty() && !days.is_empty(),
            "seed {seed} tested nothing"
        );
    }
}

#[test]
fn migration_3_builds_the_aggregates_of_an_older_index() {
    let (_d, s) = store();
    let path = Index::path(&s);
    {
        // A version-2 index with entries, blobs and usage in it.
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &MIGRATIONS[..2] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", 2).unwrap();
        tx.execute("INSERT INTO meta(name, value) VALUES('built', '1')", [])
            .unwrap();
        // `upsert_entry` writes today's columns: `value` and `past_uses` (migrations 5 and 6)
        // exist only while the rows are written.
        tx.execute_batch(
            "ALTER TABLE entries ADD COLUMN value REAL NOT NULL DEFAULT 0;
             ALTER TABLE entries ADD COLUMN past_uses INTEGER NOT NULL DEFAULT 0;",
        )
        .unwrap();
        let digest = "c".repeat(64);
        write_blob(&s, &digest, 5000, 700);
        for (i, (cmd, ns)) in [
            ("cc a.c", "build"),
            ("cc b.c", "build"),
            ("test", "default"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut rec = sample();
            rec.key = format!("{i}").repeat(64);
            rec.command = cmd.into();
            rec.namespace = ns.into();
            rec.stdout.blob = (i == 0).then(|| digest.clone());
            s.write_record(&rec, b"hi\n", b"e\n").unwrap();
            let path = s.record_path(&rec.key);
            upsert_entry(&tx, &s, &rec, record_size(&path), None).unwrap();
            for hour in [10, 11, 40] {
                let d = UsageDelta {
                    hits: i as u64 + hour,
                    misses: 1,
                    time_saved_ms: 100 * hour,
                    ..UsageDelta::default()
                };
                bump_usage(&tx, hour * HOUR_MS, cmd, ns, d).unwrap();
            }
        }
        bump_usage(
            &tx,
            70 * HOUR_MS,
            "never stored",
            "ci",
            UsageDelta::default(),
        )
        .unwrap();
        tx.execute_batch(
            "ALTER TABLE entries DROP COLUMN value; ALTER TABLE entries DROP COLUMN past_uses;",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let idx = Index::open(&s).unwrap();
    // Migration 5 gives every entry its value.
    let unvalued: i64 = idx
        .conn
        .query_row("SELECT COUNT(*) FROM entries WHERE value <= 0", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(unvalued, 0);
    let version: i64 = idx
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version as usize, MIGRATIONS.len());
    let (breakdown, days, totals) = aggregates_kept(&idx.conn);
    assert_eq!(
        (breakdown.len(), days.len(), totals[0], totals[2]),
        (7, 3, 3, 1)
    );
    assert_aggregates_exact(&idx, "migration 3");
}

#[test]
fn usage_rows_cannot_be_re_keyed() {
    let (_d, s) = store();
    let idx = Index::open(&s).unwrap();
    idx.conn
        .execute(
            "INSERT INTO usage(hour, command, namespace, hits) VALUES(1, 'a', 'default', 1)",
            [],
        )
        .unwrap();
    let err = idx
        .conn
        .execute("UPDATE usage SET command = 'b'", [])
        .unwrap_err();
    assert!(err.to_string().contains("never re-keyed"), "{err}");
    assert_aggregates_exact(&idx, "a refused re-key");
}

#[test]
fn a_crash_after_commit_does_not_double_count() {
    let (_d, s) = store();
    let mut idx = Index::open(&s).unwrap();
    let aside = s.root.join("journal-v1.1.1.folding");
    std::fs::write(&aside, "{\"ev\":\"error\",\"ts\":1,\"kind\":\"read\"}\n").unwrap();
    idx.set_meta("folded:journal-v1.1.1.folding", "1").unwrap();
    assert_eq!(idx.fold_journal(&s).unwrap(), 0);
    assert!(!aside.exists());
}
