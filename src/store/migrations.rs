//! Versioned schema migrations, tracked with `PRAGMA user_version`.
//!
//! [`MIGRATIONS`] is an ordered list of SQL scripts: script `i` (0-based)
//! brings the schema from version `i` to `i + 1`. Each script runs in its own
//! transaction together with the `user_version` bump, so a crash leaves the
//! database at a whole version. A database whose version is newer than this
//! binary knows is refused with [`StoreError::SchemaTooNew`] rather than
//! being written by code that does not understand it.
//!
//! What this module must not do: edit a script that has shipped (add a new
//! one instead), or run anything but schema changes.

use rusqlite::Connection;

use super::StoreError;

/// Version 1: call detail records and persisted registrations.
const V1: &str = "
CREATE TABLE call_records (
    id             INTEGER PRIMARY KEY,
    call_id        TEXT    NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    answered_at_ms INTEGER,
    ended_at_ms    INTEGER NOT NULL,
    caller         TEXT    NOT NULL,
    callee         TEXT    NOT NULL,
    direction      TEXT    NOT NULL
        CHECK (direction IN ('internal', 'inbound', 'outbound')),
    disposition    TEXT    NOT NULL
        CHECK (disposition IN ('answered', 'busy', 'no_answer', 'cancelled',
                               'failed', 'unavailable', 'not_found', 'rejected')),
    hangup_side    TEXT
        CHECK (hangup_side IS NULL OR hangup_side IN ('caller', 'callee', 'system')),
    sip_status     INTEGER NOT NULL CHECK (sip_status BETWEEN 0 AND 999),
    ring_ms        INTEGER NOT NULL,
    talk_ms        INTEGER NOT NULL,
    caller_ip      TEXT
);
CREATE INDEX call_records_started_at ON call_records (started_at_ms);
CREATE INDEX call_records_call_id ON call_records (call_id);

CREATE TABLE registrations (
    user            TEXT    NOT NULL,
    contact_uri     TEXT    NOT NULL,
    expires_at_unix INTEGER NOT NULL,
    transport       TEXT    NOT NULL CHECK (transport IN ('udp', 'tcp')),
    remote_addr     TEXT    NOT NULL,
    local_addr      TEXT    NOT NULL,
    call_id         TEXT    NOT NULL,
    cseq            INTEGER NOT NULL,
    user_agent      TEXT,
    PRIMARY KEY (user, contact_uri)
);
CREATE INDEX registrations_expires_at ON registrations (expires_at_unix);
";

/// Version 2: the recordings index. `call_id` is the caller leg's Call-ID,
/// the key of `call_records` (whose row is written when the call ends, after
/// the recording's, hence no foreign key).
const V2: &str = "
CREATE TABLE recordings (
    id            TEXT    PRIMARY KEY,
    call_id       TEXT    NOT NULL,
    path          TEXT    NOT NULL UNIQUE,
    layout        TEXT    NOT NULL CHECK (layout IN ('stereo', 'mono')),
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER,
    duration_ms   INTEGER NOT NULL DEFAULT 0 CHECK (duration_ms >= 0),
    bytes         INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    state         TEXT    NOT NULL
        CHECK (state IN ('recording', 'complete', 'incomplete', 'recovered')),
    sha256        TEXT,
    reason        TEXT
);
CREATE INDEX recordings_call_id ON recordings (call_id);
CREATE INDEX recordings_started_at ON recordings (started_at_ms);
CREATE INDEX recordings_open ON recordings (state) WHERE state = 'recording';
";

/// The ordered migration scripts. Append only.
/// Version 3: line quality per call: what denwa received from each side's
/// phone (RTP packets, lost packets, mean interarrival jitter).
const V3: &str = "
ALTER TABLE call_records ADD COLUMN caller_rtp_packets INTEGER;
ALTER TABLE call_records ADD COLUMN caller_rtp_lost INTEGER;
ALTER TABLE call_records ADD COLUMN caller_jitter_us INTEGER;
ALTER TABLE call_records ADD COLUMN callee_rtp_packets INTEGER;
ALTER TABLE call_records ADD COLUMN callee_rtp_lost INTEGER;
ALTER TABLE call_records ADD COLUMN callee_jitter_us INTEGER;
";

/// Version 4: the ACD's append-only queue event log (`acd_events`).
const V4: &str = crate::acd::schema::ACD_SCHEMA;

/// Version 5: numbers and trunks. Call records gain the DID and trunk of a
/// call and the refusals of the public network side (`blocked`,
/// `restricted`, `forbidden`, `channel_limit`); SQLite cannot change a
/// CHECK constraint in place, so the table is rebuilt. The inbound
/// blocklist and the outbound restriction list, with a generation counter
/// their triggers bump so a running denwa sees changes made by the CLI.
const V5: &str = "
CREATE TABLE call_records_v5 (
    id             INTEGER PRIMARY KEY,
    call_id        TEXT    NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    answered_at_ms INTEGER,
    ended_at_ms    INTEGER NOT NULL,
    caller         TEXT    NOT NULL,
    callee         TEXT    NOT NULL,
    direction      TEXT    NOT NULL
        CHECK (direction IN ('internal', 'inbound', 'outbound')),
    disposition    TEXT    NOT NULL
        CHECK (disposition IN ('answered', 'busy', 'no_answer', 'cancelled',
                               'failed', 'unavailable', 'not_found', 'rejected',
                               'blocked', 'restricted', 'forbidden', 'channel_limit')),
    hangup_side    TEXT
        CHECK (hangup_side IS NULL OR hangup_side IN ('caller', 'callee', 'system')),
    sip_status     INTEGER NOT NULL CHECK (sip_status BETWEEN 0 AND 999),
    ring_ms        INTEGER NOT NULL,
    talk_ms        INTEGER NOT NULL,
    caller_ip      TEXT,
    caller_rtp_packets INTEGER,
    caller_rtp_lost    INTEGER,
    caller_jitter_us   INTEGER,
    callee_rtp_packets INTEGER,
    callee_rtp_lost    INTEGER,
    callee_jitter_us   INTEGER,
    did            TEXT,
    trunk          TEXT
);
INSERT INTO call_records_v5 (id, call_id, started_at_ms, answered_at_ms, ended_at_ms,
    caller, callee, direction, disposition, hangup_side, sip_status, ring_ms, talk_ms,
    caller_ip, caller_rtp_packets, caller_rtp_lost, caller_jitter_us,
    callee_rtp_packets, callee_rtp_lost, callee_jitter_us)
SELECT id, call_id, started_at_ms, answered_at_ms, ended_at_ms,
    caller, callee, direction, disposition, hangup_side, sip_status, ring_ms, talk_ms,
    caller_ip, caller_rtp_packets, caller_rtp_lost, caller_jitter_us,
    callee_rtp_packets, callee_rtp_lost, callee_jitter_us
FROM call_records;
DROP TABLE call_records;
ALTER TABLE call_records_v5 RENAME TO call_records;
CREATE INDEX call_records_started_at ON call_records (started_at_ms);
CREATE INDEX call_records_call_id ON call_records (call_id);
CREATE INDEX call_records_did ON call_records (did) WHERE did IS NOT NULL;

CREATE TABLE blocked_numbers (
    number      TEXT    PRIMARY KEY
        CHECK (length(number) BETWEEN 1 AND 32 AND number NOT GLOB '*[^0-9]*'),
    remark      TEXT    NOT NULL DEFAULT '',
    added_at_ms INTEGER NOT NULL
);
CREATE TABLE restricted_numbers (
    number      TEXT    PRIMARY KEY
        CHECK (length(number) BETWEEN 1 AND 32 AND number NOT GLOB '*[^0-9]*'),
    remark      TEXT    NOT NULL DEFAULT '',
    added_at_ms INTEGER NOT NULL
);
CREATE TABLE list_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO list_generation (id, generation) VALUES (1, 0);
CREATE TRIGGER blocked_numbers_insert AFTER INSERT ON blocked_numbers
    BEGIN UPDATE list_generation SET generation = generation + 1; END;
CREATE TRIGGER blocked_numbers_update AFTER UPDATE ON blocked_numbers
    BEGIN UPDATE list_generation SET generation = generation + 1; END;
CREATE TRIGGER blocked_numbers_delete AFTER DELETE ON blocked_numbers
    BEGIN UPDATE list_generation SET generation = generation + 1; END;
CREATE TRIGGER restricted_numbers_insert AFTER INSERT ON restricted_numbers
    BEGIN UPDATE list_generation SET generation = generation + 1; END;
CREATE TRIGGER restricted_numbers_update AFTER UPDATE ON restricted_numbers
    BEGIN UPDATE list_generation SET generation = generation + 1; END;
CREATE TRIGGER restricted_numbers_delete AFTER DELETE ON restricted_numbers
    BEGIN UPDATE list_generation SET generation = generation + 1; END;
";

pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// The schema version this binary writes: the number of migrations.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Read `PRAGMA user_version`.
pub fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Bring the database up to [`SCHEMA_VERSION`]; returns the version it was
/// at before. Idempotent: an up-to-date database is left untouched.
pub fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    migrate_with(conn, MIGRATIONS)
}

/// Refuse a database written by a newer binary, before touching it.
pub fn ensure_supported(conn: &Connection) -> Result<(), StoreError> {
    check_version(conn, SCHEMA_VERSION).map(|_| ())
}

fn check_version(conn: &Connection, known: i64) -> Result<i64, StoreError> {
    let found = user_version(conn)?;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    Ok(found)
}

/// [`migrate`] over an explicit script list (lets tests add versions).
fn migrate_with(conn: &mut Connection, scripts: &[&str]) -> Result<i64, StoreError> {
    let known = i64::try_from(scripts.len()).unwrap_or(i64::MAX);
    let found = check_version(conn, known)?;
    let start = usize::try_from(found).unwrap_or(0);
    for (index, script) in scripts.iter().enumerate().skip(start) {
        let target = i64::try_from(index).unwrap_or(i64::MAX).saturating_add(1);
        let tx = conn.transaction()?;
        tx.execute_batch(script)?;
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
        tracing::info!(version = target, "store: applied schema migration");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Reader, Store};

    fn table_names(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn fresh_database_gets_every_migration() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 0);
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(table_names(&conn), ALL_TABLES);
    }

    const ALL_TABLES: [&str; 7] = [
        "acd_events",
        "blocked_numbers",
        "call_records",
        "list_generation",
        "recordings",
        "registrations",
        "restricted_numbers",
    ];

    #[test]
    fn a_version_3_database_keeps_its_records_through_version_5() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_with(&mut conn, &[V1, V2, V3]).unwrap();
        conn.execute(
            "INSERT INTO call_records (call_id, started_at_ms, ended_at_ms, caller, callee,
                 direction, disposition, sip_status, ring_ms, talk_ms, caller_rtp_packets)
             VALUES ('old', 1, 2, '1001', '1002', 'internal', 'busy', 486, 1, 0, 7)",
            [],
        )
        .unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 3);
        let (d, packets, did): (String, i64, Option<String>) = conn
            .query_row(
                "SELECT disposition, caller_rtp_packets, did FROM call_records WHERE call_id = 'old'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((d.as_str(), packets, did), ("busy", 7, None));
        conn.execute(
            "INSERT INTO call_records (call_id, started_at_ms, ended_at_ms, caller, callee,
                 direction, disposition, sip_status, ring_ms, talk_ms, did, trunk)
             VALUES ('new', 1, 2, '0312345678', '0300000000', 'inbound', 'channel_limit',
                     486, 0, 0, '0300000000', 'carrier')",
            [],
        )
        .unwrap();
        let gen = |c: &Connection| -> i64 {
            c.query_row("SELECT generation FROM list_generation", [], |r| r.get(0))
                .unwrap()
        };
        let before = gen(&conn);
        conn.execute(
            "INSERT INTO blocked_numbers (number, added_at_ms) VALUES ('0312345678', 1)",
            [],
        )
        .unwrap();
        assert_eq!(gen(&conn), before + 1, "a list change bumps the generation");
        let not_digits = conn.execute(
            "INSERT INTO restricted_numbers (number, added_at_ms) VALUES ('03-1234', 1)",
            [],
        );
        assert!(not_digits.is_err(), "digits only");
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn reopening_a_store_keeps_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("denwa.db");
        Store::open(&path).unwrap().close().unwrap();
        let store = Store::open(&path).unwrap();
        let reader = store.reader().unwrap();
        assert_eq!(reader.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(table_names(&reader.conn), ALL_TABLES);
        store.close().unwrap();
    }

    #[test]
    fn newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("denwa.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        match Store::open(&path) {
            Err(StoreError::SchemaTooNew { found, known }) => {
                assert_eq!(found, SCHEMA_VERSION + 1);
                assert_eq!(known, SCHEMA_VERSION);
            }
            other => panic!("expected SchemaTooNew, got {other:?}"),
        }
        // The refused database was not touched: no tables, journal unchanged.
        let reader = Reader::open(&path).unwrap();
        assert!(table_names(&reader.conn).is_empty());
        assert_eq!(reader.journal_mode().unwrap(), "delete");
    }

    #[test]
    fn later_scripts_apply_on_top_of_earlier_ones() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_with(&mut conn, &[V1]).unwrap();
        let v2 = "ALTER TABLE call_records ADD COLUMN queue TEXT;";
        assert_eq!(migrate_with(&mut conn, &[V1, v2]).unwrap(), 1);
        assert_eq!(user_version(&conn).unwrap(), 2);
        conn.execute("UPDATE call_records SET queue = 'sales'", [])
            .unwrap();
    }

    #[test]
    fn a_version_1_database_gains_the_recordings_table() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_with(&mut conn, &[V1]).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), 1);
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        conn.execute(
            "INSERT INTO recordings (id, call_id, path, layout, started_at_ms, state)
             VALUES ('r', 'c', 'recordings/r.wav', 'mono', 1, 'recording')",
            [],
        )
        .unwrap();
        let bad_state = conn.execute(
            "INSERT INTO recordings (id, call_id, path, layout, started_at_ms, state)
             VALUES ('s', 'c', 'recordings/s.wav', 'mono', 1, 'lost')",
            [],
        );
        assert!(bad_state.is_err());
    }

    #[test]
    fn a_failing_script_leaves_the_previous_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        let broken = "CREATE TABLE half (x INTEGER); THIS IS NOT SQL;";
        assert!(migrate_with(&mut conn, &[V1, broken]).is_err());
        assert_eq!(user_version(&conn).unwrap(), 1);
        assert_eq!(table_names(&conn), ["call_records", "registrations"]);
    }
}
