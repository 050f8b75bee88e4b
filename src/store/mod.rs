//! Persistent storage: one SQLite database file in WAL mode.
//!
//! This module owns the database file, its schema ([`migrations`]) and the
//! single writer thread. Every write (a call record, a registration binding
//! change) is a [`WriteOp`] sent over an unbounded channel: sending never
//! blocks nor awaits, so signalling code can persist state from its hot path.
//! The writer thread drains whatever is queued and commits it in one
//! transaction; each operation is one SQL statement, which SQLite undoes
//! alone when it fails, so one bad row is logged and skipped without losing
//! the rest of the batch.
//!
//! Reads go through a [`Reader`], which opens its own connection and offers a
//! blocking API (async callers use `tokio::task::spawn_blocking`).
//!
//! What this module must not do: decide policy (what a binding or a call
//! record means belongs to the registrar and the B2BUA), block an async task,
//! or panic the writer on a failing write.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

pub mod acd;
pub mod bindings;
pub mod cdr;
pub mod lists;
pub mod migrations;
pub mod recordings;

pub use bindings::PersistedBinding;
pub use cdr::{CallRecord, Direction, Disposition, Side};
pub use migrations::SCHEMA_VERSION;
pub use recordings::{RecordingEnd, RecordingRow, RecordingStart, RecordingState};

/// How long a connection waits on a locked database before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Upper bound on the operations committed in one transaction, so a burst
/// cannot hold the write lock for long.
const MAX_BATCH: usize = 4096;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this binary knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("could not switch the database to WAL journal mode (got {0:?})")]
    WalUnavailable(String),
    #[error("column {column} holds an unknown value {value:?}")]
    InvalidValue { column: &'static str, value: String },
    #[error("the store writer has stopped")]
    Closed,
    #[error("could not start the store writer thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// One queued write: a single SQL statement, applied by the writer thread.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    RecordCall(CallRecord),
    UpsertBinding(PersistedBinding),
    RemoveBinding { user: String, contact_uri: String },
    RemoveAllBindings { user: String },
    PurgeExpiredBindings { now_unix: i64 },
    StartRecording(RecordingStart),
    FinishRecording(RecordingEnd),
    AcdEvent(crate::acd::LogRecord),
}

impl WriteOp {
    fn apply(&self, conn: &Connection) -> rusqlite::Result<()> {
        match self {
            WriteOp::RecordCall(rec) => cdr::insert(conn, rec),
            WriteOp::UpsertBinding(b) => bindings::upsert(conn, b),
            WriteOp::RemoveBinding { user, contact_uri } => {
                bindings::remove(conn, user, contact_uri)
            }
            WriteOp::RemoveAllBindings { user } => bindings::remove_all(conn, user),
            WriteOp::PurgeExpiredBindings { now_unix } => bindings::purge_expired(conn, *now_unix),
            WriteOp::StartRecording(start) => recordings::insert(conn, start),
            WriteOp::FinishRecording(end) => recordings::finish(conn, end),
            WriteOp::AcdEvent(record) => acd::insert(conn, record),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            WriteOp::RecordCall(_) => "record_call",
            WriteOp::UpsertBinding(_) => "upsert_binding",
            WriteOp::RemoveBinding { .. } => "remove_binding",
            WriteOp::RemoveAllBindings { .. } => "remove_all_bindings",
            WriteOp::PurgeExpiredBindings { .. } => "purge_expired_bindings",
            WriteOp::StartRecording(_) => "start_recording",
            WriteOp::FinishRecording(_) => "finish_recording",
            WriteOp::AcdEvent(_) => "acd_event",
        }
    }
}

/// What the writer thread receives.
enum Command {
    Write(Box<WriteOp>),
    /// Answered once everything queued before it has been committed.
    Flush(oneshot::Sender<()>),
    /// Commit what is queued, then stop.
    Shutdown,
}

struct Shared {
    path: PathBuf,
    tx: Sender<Command>,
    writer: Mutex<Option<JoinHandle<()>>>,
    failed_writes: Arc<AtomicU64>,
}

/// Cheap-clone handle to the database: queues writes, opens readers.
///
/// Dropping every clone without [`Store::close`] lets the writer commit what
/// is queued and exit on its own, but nothing waits for it: call `close` at
/// shutdown.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Open (or create) the database, apply pending migrations synchronously
    /// and start the writer thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = open_connection(path, true)?;
        migrations::ensure_supported(&conn)?;
        enable_wal(&conn)?;
        migrations::migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel();
        let failed_writes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&failed_writes);
        let handle = std::thread::Builder::new()
            .name("denwa-store-writer".into())
            .spawn(move || writer_loop(conn, rx, counter))
            .map_err(StoreError::Spawn)?;
        Ok(Store {
            shared: Arc::new(Shared {
                path: path.to_path_buf(),
                tx,
                writer: Mutex::new(Some(handle)),
                failed_writes,
            }),
        })
    }

    /// The database file this store writes to.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Queue a write. Never blocks; fails only once the writer has stopped.
    pub fn submit(&self, op: WriteOp) -> Result<(), StoreError> {
        self.shared
            .tx
            .send(Command::Write(Box::new(op)))
            .map_err(|_| StoreError::Closed)
    }

    /// Number of queued writes that failed (logged and skipped) so far.
    pub fn failed_writes(&self) -> u64 {
        self.shared.failed_writes.load(Ordering::Relaxed)
    }

    /// Wait until every write queued before this call is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let done = self.request_flush()?;
        done.await.map_err(|_| StoreError::Closed)
    }

    /// Blocking variant of [`Store::flush`]. Must not be called from inside
    /// an async task (use `spawn_blocking` or [`Store::flush`] there).
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        let done = self.request_flush()?;
        done.blocking_recv().map_err(|_| StoreError::Closed)
    }

    fn request_flush(&self) -> Result<oneshot::Receiver<()>, StoreError> {
        let (done_tx, done_rx) = oneshot::channel();
        self.shared
            .tx
            .send(Command::Flush(done_tx))
            .map_err(|_| StoreError::Closed)?;
        Ok(done_rx)
    }

    /// Commit everything queued, stop the writer and wait for it. Later
    /// writes through any clone of this handle fail with
    /// [`StoreError::Closed`]. Blocking: call from `spawn_blocking` in async
    /// code. Calling it twice is harmless.
    pub fn close(&self) -> Result<(), StoreError> {
        let handle = match self.shared.writer.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let Some(handle) = handle else {
            return Ok(());
        };
        // If the writer already died the send fails; joining still reaps it.
        let _ = self.shared.tx.send(Command::Shutdown);
        handle.join().map_err(|_| StoreError::Closed)
    }

    /// Open a new read connection to this database.
    pub fn reader(&self) -> Result<Reader, StoreError> {
        Reader::open(&self.shared.path)
    }
}

/// A read connection with a blocking API. Not shared between threads: open
/// one per blocking task (opening is cheap).
pub struct Reader {
    pub(crate) conn: Connection,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Reader {
    /// Open a read connection to an existing database (never creates one; no
    /// migrations run; writes through it are refused by `query_only`).
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        let conn = open_connection(path, false)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(Reader { conn })
    }

    /// The journal mode of the database as SQLite reports it (`wal`).
    pub fn journal_mode(&self) -> Result<String, StoreError> {
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
        Ok(mode.to_ascii_lowercase())
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(migrations::user_version(&self.conn)?)
    }
}

/// Open a connection with the per-connection settings every denwa
/// connection uses; `create` allows creating a missing file.
fn open_connection(path: &Path, create: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Switch the database to WAL (persistent in the file) and check it took.
fn enable_wal(conn: &Connection) -> Result<(), StoreError> {
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(StoreError::WalUnavailable(mode))
    }
}

/// One drained batch of commands.
#[derive(Default)]
struct Batch {
    writes: Vec<WriteOp>,
    flushes: Vec<oneshot::Sender<()>>,
    shutdown: bool,
}

impl Batch {
    fn push(&mut self, cmd: Command) {
        match cmd {
            Command::Write(op) => self.writes.push(*op),
            Command::Flush(done) => self.flushes.push(done),
            Command::Shutdown => self.shutdown = true,
        }
    }
}

/// Block for one command, then take whatever else is already queued.
/// Returns `None` when every sender is gone and nothing is left.
fn next_batch(rx: &Receiver<Command>) -> Option<Batch> {
    let first = rx.recv().ok()?;
    let mut batch = Batch::default();
    batch.push(first);
    while !batch.shutdown && batch.writes.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(cmd) => batch.push(cmd),
            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
        }
    }
    Some(batch)
}

fn writer_loop(mut conn: Connection, rx: Receiver<Command>, failed: Arc<AtomicU64>) {
    while let Some(batch) = next_batch(&rx) {
        if !batch.writes.is_empty() {
            let lost = commit_batch(&mut conn, &batch.writes);
            if lost > 0 {
                failed.fetch_add(lost, Ordering::Relaxed);
            }
        }
        for done in batch.flushes {
            // The waiter may have given up; that is fine.
            let _ = done.send(());
        }
        if batch.shutdown {
            break;
        }
    }
    tracing::debug!("store writer stopped");
}

/// Apply `writes` in one transaction (a failing write is skipped). Returns
/// how many writes were lost (failed individually, or all of them when the
/// transaction could not be committed).
fn commit_batch(conn: &mut Connection, writes: &[WriteOp]) -> u64 {
    let total = u64::try_from(writes.len()).unwrap_or(u64::MAX);
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(err) => {
            tracing::error!(%err, writes = total, "store: cannot begin transaction; batch lost");
            return total;
        }
    };
    let mut failed = 0u64;
    for op in writes {
        // Every write is one SQL statement, and SQLite undoes a failing
        // statement alone: the transaction and the other writes go on, so
        // no savepoint per write is needed.
        if let Err(err) = op.apply(&tx) {
            tracing::warn!(%err, op = op.name(), "store: write failed and was skipped");
            failed = failed.saturating_add(1);
        }
    }
    match tx.commit() {
        Ok(()) => failed,
        Err(err) => {
            tracing::error!(%err, writes = total, "store: commit failed; batch lost");
            total
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_call(call_id: &str, started_at_ms: i64) -> CallRecord {
        CallRecord {
            call_id: call_id.to_string(),
            started_at_ms,
            answered_at_ms: Some(started_at_ms + 2_000),
            ended_at_ms: started_at_ms + 62_000,
            caller: "1001".into(),
            callee: "1002".into(),
            direction: Direction::Internal,
            disposition: Disposition::Answered,
            hangup_side: Some(Side::Caller),
            sip_status: 200,
            ring_ms: 0,
            talk_ms: 0,
            caller_ip: Some("192.0.2.10".into()),
            caller_line: None,
            callee_line: None,
            did: None,
            trunk: None,
        }
        .with_derived_durations()
    }

    #[test]
    fn open_enables_wal_and_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("denwa.db");
        let store = Store::open(&path).unwrap();
        let reader = store.reader().unwrap();
        assert_eq!(reader.journal_mode().unwrap(), "wal");
        assert_eq!(reader.schema_version().unwrap(), SCHEMA_VERSION);
        let sync: i64 = store
            .reader()
            .unwrap()
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "synchronous=NORMAL is 1");
        store.close().unwrap();
    }

    #[test]
    fn batching_commits_every_queued_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("denwa.db")).unwrap();
        for i in 0..1000 {
            store
                .record_call(sample_call(&format!("call-{i}"), 1_000 + i))
                .unwrap();
        }
        store.flush_blocking().unwrap();
        let reader = store.reader().unwrap();
        let calls = reader.recent_calls(5000).unwrap();
        assert_eq!(calls.len(), 1000);
        assert_eq!(calls[0].call_id, "call-999", "newest first");
        assert_eq!(store.failed_writes(), 0);
        store.close().unwrap();
    }

    #[tokio::test]
    async fn async_flush_waits_for_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("denwa.db")).unwrap();
        store.record_call(sample_call("a", 1)).unwrap();
        store.flush().await.unwrap();
        let path = store.path().to_path_buf();
        let n = tokio::task::spawn_blocking(move || {
            Reader::open(&path).unwrap().recent_calls(10).unwrap().len()
        })
        .await
        .unwrap();
        assert_eq!(n, 1);
        tokio::task::spawn_blocking(move || store.close())
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn data_survives_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("denwa.db");
        let store = Store::open(&path).unwrap();
        store.record_call(sample_call("kept", 10)).unwrap();
        store.close().unwrap();
        assert!(matches!(
            store.record_call(sample_call("late", 11)),
            Err(StoreError::Closed)
        ));
        assert!(matches!(store.flush_blocking(), Err(StoreError::Closed)));
        store.close().unwrap();

        let store = Store::open(&path).unwrap();
        let calls = store.reader().unwrap().recent_calls(10).unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].call_id, "kept");
        store.close().unwrap();
    }

    #[test]
    fn committed_rows_survive_a_crash_without_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("denwa.db");
        let store = Store::open(&path).unwrap();
        store.record_call(sample_call("crash-1", 10)).unwrap();
        store.record_call(sample_call("crash-2", 20)).unwrap();
        store.flush_blocking().unwrap();
        // Simulate a crash: the handle is never closed nor dropped.
        std::mem::forget(store);

        let raw = Connection::open(&path).unwrap();
        let n: i64 = raw
            .query_row("SELECT count(*) FROM call_records", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        drop(raw);

        let again = Store::open(&path).unwrap();
        let calls = again.reader().unwrap().recent_calls(10).unwrap();
        let ids: Vec<_> = calls.iter().map(|c| c.call_id.as_str()).collect();
        assert_eq!(ids, ["crash-2", "crash-1"]);
        again.close().unwrap();
    }

    #[test]
    fn a_failing_write_is_skipped_and_the_rest_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("denwa.db");
        let store = Store::open(&path).unwrap();
        // Sabotage one table so inserts into it fail while others succeed.
        let raw = Connection::open(&path).unwrap();
        raw.execute_batch(
            "CREATE TRIGGER no_bad BEFORE INSERT ON call_records
             WHEN NEW.call_id = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
        drop(raw);
        store.record_call(sample_call("good-1", 1)).unwrap();
        store.record_call(sample_call("bad", 2)).unwrap();
        store.record_call(sample_call("good-2", 3)).unwrap();
        store.flush_blocking().unwrap();
        assert_eq!(store.failed_writes(), 1);
        let calls = store.reader().unwrap().recent_calls(10).unwrap();
        let ids: Vec<_> = calls.iter().map(|c| c.call_id.as_str()).collect();
        assert_eq!(ids, ["good-2", "good-1"]);
        // The writer is still alive.
        store.record_call(sample_call("good-3", 4)).unwrap();
        store.flush_blocking().unwrap();
        assert_eq!(store.reader().unwrap().recent_calls(10).unwrap().len(), 3);
        store.close().unwrap();
    }

    #[test]
    fn reader_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("denwa.db")).unwrap();
        let reader = store.reader().unwrap();
        let res = reader.conn.execute("DELETE FROM call_records", []);
        assert!(res.is_err());
        store.close().unwrap();
    }
}
