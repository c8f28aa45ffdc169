//! The index's schema: migrations applied in order, tracked with `pragma user_version`. Entries
//! are never removed from the list; a change is a new migration.

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE entries(
        key TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        namespace TEXT NOT NULL,
        tags TEXT NOT NULL,
        cwd TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_used_ms INTEGER NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0,
        duration_ms INTEGER NOT NULL,
        exit_code INTEGER NOT NULL,
        record_bytes INTEGER NOT NULL,
        size_bytes INTEGER NOT NULL,
        logical_bytes INTEGER NOT NULL
    );
    CREATE INDEX entries_last_used ON entries(last_used_ms);
    CREATE INDEX entries_command ON entries(command);
    CREATE TABLE entry_blobs(key TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY(key, digest)) WITHOUT ROWID;
    CREATE INDEX entry_blobs_digest ON entry_blobs(digest);
    CREATE TABLE entry_inputs(key TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY(key, path)) WITHOUT ROWID;
    CREATE INDEX entry_inputs_path ON entry_inputs(path);
    CREATE TABLE blobs(digest TEXT PRIMARY KEY, stored_bytes INTEGER NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE usage(
        hour INTEGER NOT NULL, command TEXT NOT NULL, namespace TEXT NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0, misses INTEGER NOT NULL DEFAULT 0,
        stores INTEGER NOT NULL DEFAULT 0, time_saved_ms INTEGER NOT NULL DEFAULT 0,
        bytes_replayed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(hour, command, namespace)) WITHOUT ROWID;
    CREATE TABLE faults(
        hour INTEGER NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY(hour, kind, reason)) WITHOUT ROWID;
    CREATE TABLE meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 2: remote tier counters.
    "CREATE TABLE remote_usage(
        hour INTEGER NOT NULL, op TEXT NOT NULL, kind TEXT NOT NULL,
        count INTEGER NOT NULL, bytes INTEGER NOT NULL,
        PRIMARY KEY(hour, op, kind)) WITHOUT ROWID;",
    // 3: aggregates for `stats`, kept exact by triggers (see "Aggregates" above). Built here
    // from the base tables, so an index of an older version gets them on its first open.
    "CREATE TABLE breakdown(
        grp TEXT NOT NULL, name TEXT NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0, misses INTEGER NOT NULL DEFAULT 0,
        time_saved_ms INTEGER NOT NULL DEFAULT 0, usage_rows INTEGER NOT NULL DEFAULT 0,
        entries INTEGER NOT NULL DEFAULT 0, size_bytes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(grp, name)) WITHOUT ROWID;
    CREATE INDEX breakdown_top ON breakdown(grp, hits DESC, misses DESC, size_bytes DESC, name);
    CREATE INDEX breakdown_stored ON breakdown(grp, size_bytes DESC, name) WHERE entries > 0;
    CREATE TABLE usage_days(
        day INTEGER PRIMARY KEY,
        hits INTEGER NOT NULL DEFAULT 0, misses INTEGER NOT NULL DEFAULT 0,
        stores INTEGER NOT NULL DEFAULT 0, time_saved_ms INTEGER NOT NULL DEFAULT 0,
        bytes_replayed INTEGER NOT NULL DEFAULT 0, usage_rows INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE totals(
        id INTEGER PRIMARY KEY CHECK(id = 0),
        entries INTEGER NOT NULL, record_bytes INTEGER NOT NULL,
        blobs INTEGER NOT NULL, blob_stored_bytes INTEGER NOT NULL, blob_bytes INTEGER NOT NULL,
        command_names INTEGER NOT NULL, namespace_names INTEGER NOT NULL);
    CREATE INDEX entries_created ON entries(created_ms);

    INSERT INTO breakdown(grp, name, hits, misses, time_saved_ms, usage_rows, entries, size_bytes)
        SELECT 'command', name, SUM(h), SUM(m), SUM(s), SUM(r), SUM(e), SUM(b) FROM (
            SELECT command AS name, hits AS h, misses AS m, time_saved_ms AS s, 1 AS r, 0 AS e,
                0 AS b FROM usage
            UNION ALL SELECT command, 0, 0, 0, 0, 1, size_bytes FROM entries)
        GROUP BY name;
    INSERT INTO breakdown(grp, name, hits, misses, time_saved_ms, usage_rows, entries, size_bytes)
        SELECT 'namespace', name, SUM(h), SUM(m), SUM(s), SUM(r), SUM(e), SUM(b) FROM (
            SELECT namespace AS name, hits AS h, misses AS m, time_saved_ms AS s, 1 AS r, 0 AS e,
                0 AS b FROM usage
            UNION ALL SELECT namespace, 0, 0, 0, 0, 1, size_bytes FROM entries)
        GROUP BY name;
    INSERT INTO usage_days(day, hits, misses, stores, time_saved_ms, bytes_replayed, usage_rows)
        SELECT hour / 24, SUM(hits), SUM(misses), SUM(stores), SUM(time_saved_ms),
            SUM(bytes_replayed), COUNT(*)
        FROM usage GROUP BY hour / 24;
    INSERT INTO totals(id, entries, record_bytes, blobs, blob_stored_bytes, blob_bytes,
            command_names, namespace_names)
        SELECT 0, (SELECT COUNT(*) FROM entries), (SELECT COALESCE(SUM(record_bytes), 0) FROM entries),
            (SELECT COUNT(*) FROM blobs), (SELECT COALESCE(SUM(stored_bytes), 0) FROM blobs),
            (SELECT COALESCE(SUM(size), 0) FROM blobs),
            (SELECT COUNT(*) FROM breakdown WHERE grp = 'command'),
            (SELECT COUNT(*) FROM breakdown WHERE grp = 'namespace');

    CREATE TRIGGER breakdown_added AFTER INSERT ON breakdown BEGIN
        UPDATE totals SET command_names = command_names + (new.grp = 'command'),
            namespace_names = namespace_names + (new.grp = 'namespace');
    END;
    CREATE TRIGGER breakdown_removed AFTER DELETE ON breakdown BEGIN
        UPDATE totals SET command_names = command_names - (old.grp = 'command'),
            namespace_names = namespace_names - (old.grp = 'namespace');
    END;

    CREATE TRIGGER usage_added AFTER INSERT ON usage BEGIN
        INSERT INTO breakdown(grp, name, hits, misses, time_saved_ms, usage_rows)
            VALUES('command', new.command, new.hits, new.misses, new.time_saved_ms, 1),
                ('namespace', new.namespace, new.hits, new.misses, new.time_saved_ms, 1)
            ON CONFLICT(grp, name) DO UPDATE SET hits = hits + excluded.hits,
                misses = misses + excluded.misses,
                time_saved_ms = time_saved_ms + excluded.time_saved_ms,
                usage_rows = usage_rows + 1;
        INSERT INTO usage_days(day, hits, misses, stores, time_saved_ms, bytes_replayed, usage_rows)
            VALUES(new.hour / 24, new.hits, new.misses, new.stores, new.time_saved_ms,
                new.bytes_replayed, 1)
            ON CONFLICT(day) DO UPDATE SET hits = hits + excluded.hits,
                misses = misses + excluded.misses, stores = stores + excluded.stores,
                time_saved_ms = time_saved_ms + excluded.time_saved_ms,
                bytes_replayed = bytes_replayed + excluded.bytes_replayed,
                usage_rows = usage_rows + 1;
    END;
    CREATE TRIGGER usage_rekeyed BEFORE UPDATE OF hour, command, namespace ON usage
        WHEN old.hour != new.hour OR old.command != new.command OR old.namespace != new.namespace
    BEGIN
        SELECT RAISE(ABORT, 'usage rows are never re-keyed (the stats aggregates assume it)');
    END;
    CREATE TRIGGER usage_changed AFTER UPDATE OF hits, misses, stores, time_saved_ms,
        bytes_replayed ON usage
    BEGIN
        UPDATE breakdown SET hits = hits + new.hits - old.hits,
                misses = misses + new.misses - old.misses,
                time_saved_ms = time_saved_ms + new.time_saved_ms - old.time_saved_ms
            WHERE grp = 'command' AND name = new.command;
        UPDATE breakdown SET hits = hits + new.hits - old.hits,
                misses = misses + new.misses - old.misses,
                time_saved_ms = time_saved_ms + new.time_saved_ms - old.time_saved_ms
            WHERE grp = 'namespace' AND name = new.namespace;
        UPDATE usage_days SET hits = hits + new.hits - old.hits,
                misses = misses + new.misses - old.misses, stores = stores + new.stores - old.stores,
                time_saved_ms = time_saved_ms + new.time_saved_ms - old.time_saved_ms,
                bytes_replayed = bytes_replayed + new.bytes_replayed - old.bytes_replayed
            WHERE day = new.hour / 24;
    END;
    CREATE TRIGGER usage_removed AFTER DELETE ON usage BEGIN
        UPDATE breakdown SET hits = hits - old.hits, misses = misses - old.misses,
                time_saved_ms = time_saved_ms - old.time_saved_ms, usage_rows = usage_rows - 1
            WHERE grp = 'command' AND name = old.command;
        UPDATE breakdown SET hits = hits - old.hits, misses = misses - old.misses,
                time_saved_ms = time_saved_ms - old.time_saved_ms, usage_rows = usage_rows - 1
            WHERE grp = 'namespace' AND name = old.namespace;
        DELETE FROM breakdown WHERE grp = 'command' AND name = old.command
            AND usage_rows = 0 AND entries = 0;
        DELETE FROM breakdown WHERE grp = 'namespace' AND name = old.namespace
            AND usage_rows = 0 AND entries = 0;
        UPDATE usage_days SET hits = hits - old.hits, misses = misses - old.misses,
                stores = stores - old.stores, time_saved_ms = time_saved_ms - old.time_saved_ms,
                bytes_replayed = bytes_replayed - old.bytes_replayed, usage_rows = usage_rows - 1
            WHERE day = old.hour / 24;
        DELETE FROM usage_days WHERE day = old.hour / 24 AND usage_rows = 0;
    END;

    CREATE TRIGGER entries_added AFTER INSERT ON entries BEGIN
        INSERT INTO breakdown(grp, name, entries, size_bytes)
            VALUES('command', new.command, 1, new.size_bytes),
                ('namespace', new.namespace, 1, new.size_bytes)
            ON CONFLICT(grp, name) DO UPDATE SET entries = entries + 1,
                size_bytes = size_bytes + excluded.size_bytes;
        UPDATE totals SET entries = entries + 1, record_bytes = record_bytes + new.record_bytes;
    END;
    CREATE TRIGGER entries_removed AFTER DELETE ON entries BEGIN
        UPDATE breakdown SET entries = entries - 1, size_bytes = size_bytes - old.size_bytes
            WHERE grp = 'command' AND name = old.command;
        UPDATE breakdown SET entries = entries - 1, size_bytes = size_bytes - old.size_bytes
            WHERE grp = 'namespace' AND name = old.namespace;
        DELETE FROM breakdown WHERE grp = 'command' AND name = old.command
            AND usage_rows = 0 AND entries = 0;
        DELETE FROM breakdown WHERE grp = 'namespace' AND name = old.namespace
            AND usage_rows = 0 AND entries = 0;
        UPDATE totals SET entries = entries - 1, record_bytes = record_bytes - old.record_bytes;
    END;
    CREATE TRIGGER entries_changed AFTER UPDATE OF command, namespace, size_bytes, record_bytes
        ON entries
    BEGIN
        UPDATE breakdown SET entries = entries - 1, size_bytes = size_bytes - old.size_bytes
            WHERE grp = 'command' AND name = old.command;
        UPDATE breakdown SET entries = entries - 1, size_bytes = size_bytes - old.size_bytes
            WHERE grp = 'namespace' AND name = old.namespace;
        INSERT INTO breakdown(grp, name, entries, size_bytes)
            VALUES('command', new.command, 1, new.size_bytes),
                ('namespace', new.namespace, 1, new.size_bytes)
            ON CONFLICT(grp, name) DO UPDATE SET entries = entries + 1,
                size_bytes = size_bytes + excluded.size_bytes;
        DELETE FROM breakdown WHERE grp = 'command' AND name = old.command
            AND usage_rows = 0 AND entries = 0;
        DELETE FROM breakdown WHERE grp = 'namespace' AND name = old.namespace
            AND usage_rows = 0 AND entries = 0;
        UPDATE totals SET record_bytes = record_bytes - old.record_bytes + new.record_bytes;
    END;

    CREATE TRIGGER blobs_added AFTER INSERT ON blobs BEGIN
        UPDATE totals SET blobs = blobs + 1, blob_stored_bytes = blob_stored_bytes + new.stored_bytes,
            blob_bytes = blob_bytes + new.size;
    END;
    CREATE TRIGGER blobs_removed AFTER DELETE ON blobs BEGIN
        UPDATE totals SET blobs = blobs - 1, blob_stored_bytes = blob_stored_bytes - old.stored_bytes,
            blob_bytes = blob_bytes - old.size;
    END;
    CREATE TRIGGER blobs_changed AFTER UPDATE OF stored_bytes, size ON blobs BEGIN
        UPDATE totals SET blob_stored_bytes = blob_stored_bytes - old.stored_bytes + new.stored_bytes,
            blob_bytes = blob_bytes - old.size + new.size;
    END;",
    // 4: sessions (`run --session`: one build's figures) and evicted keys (a later miss of
    // one is a hit lost to eviction). The session tables mirror `usage`, `faults` and
    // `remote_usage` with the session's name in front; `session_runs` keeps each miss that ran
    // (stored or not) for the slowest-misses list. Both are pruned (see `fold`).
    "CREATE TABLE sessions(
        name TEXT PRIMARY KEY, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_last ON sessions(last_ms);
    CREATE TABLE session_usage(
        session TEXT NOT NULL, hour INTEGER NOT NULL, command TEXT NOT NULL,
        namespace TEXT NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0, misses INTEGER NOT NULL DEFAULT 0,
        stores INTEGER NOT NULL DEFAULT 0, time_saved_ms INTEGER NOT NULL DEFAULT 0,
        bytes_replayed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(session, hour, command, namespace)) WITHOUT ROWID;
    CREATE TABLE session_faults(
        session TEXT NOT NULL, hour INTEGER NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY(session, hour, kind, reason)) WITHOUT ROWID;
    CREATE TABLE session_remote(
        session TEXT NOT NULL, hour INTEGER NOT NULL, op TEXT NOT NULL, kind TEXT NOT NULL,
        count INTEGER NOT NULL, bytes INTEGER NOT NULL,
        PRIMARY KEY(session, hour, op, kind)) WITHOUT ROWID;
    CREATE TABLE session_runs(
        session TEXT NOT NULL, ts INTEGER NOT NULL, command TEXT NOT NULL,
        namespace TEXT NOT NULL, duration_ms INTEGER NOT NULL, outcome TEXT NOT NULL);
    CREATE INDEX session_runs_slowest ON session_runs(session, duration_ms DESC);
    CREATE TABLE evicted(
        key TEXT PRIMARY KEY, evicted_ms INTEGER NOT NULL, reason TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX evicted_time ON evicted(evicted_ms);",
    // 5: each entry's value to keep, for `gc --policy value` (see `value`).
    "ALTER TABLE entries ADD COLUMN value REAL NOT NULL DEFAULT 0;
    UPDATE entries SET value = (hits + 1) * CAST(duration_ms AS REAL) / MAX(size_bytes, 1);",
    // 6: uses remembered across an eviction (`value`): an entry that every build uses and gc
    // evicts keeps its count when it is stored again, instead of starting from one.
    "ALTER TABLE entries ADD COLUMN past_uses INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE evicted ADD COLUMN uses INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE evicted ADD COLUMN missed INTEGER NOT NULL DEFAULT 0;",
];
