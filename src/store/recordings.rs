//! The recordings index: one row per call recording in `recordings`.
//!
//! A row is inserted in state `recording` when the recorder opens the file
//! and updated once when the file is closed: `complete`, `incomplete` (audio
//! was lost or the disk failed; `reason` says why) or, at the next start
//! after an unclean stop, `recovered`. `call_id` is the caller leg's SIP
//! Call-ID, the key of the call's row in `call_records` (written when the
//! call ends, so there is no foreign key). `path` is relative to the data
//! directory. Writes are queued through [`Store`]; reads are blocking through
//! [`Reader`].
//!
//! What this module must not do: touch the WAV files or decide a state: the
//! recorder (`media::recording`) does both and hands the outcome here.

use std::fmt;
use std::str::FromStr;

use rusqlite::{params, Connection, Row};

use super::cdr::{parse_column, ParseEnumError};
use super::{Reader, Store, StoreError, WriteOp};
use crate::media::recording::RecordingLayout;

/// Where a recording is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingState {
    /// Open: the file is being written.
    Recording,
    /// Closed with every second of the call in it.
    Complete,
    /// Closed, but audio was lost or the file could not be written.
    Incomplete,
    /// Left open by an unclean stop and repaired at the next start.
    Recovered,
}

impl RecordingState {
    /// Every value, in declaration order.
    pub const ALL: &'static [RecordingState] = &[
        RecordingState::Recording,
        RecordingState::Complete,
        RecordingState::Incomplete,
        RecordingState::Recovered,
    ];

    /// The stored text form.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Recording => "recording",
            RecordingState::Complete => "complete",
            RecordingState::Incomplete => "incomplete",
            RecordingState::Recovered => "recovered",
        }
    }
}

impl fmt::Display for RecordingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordingState {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordingState::ALL
            .iter()
            .copied()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| ParseEnumError {
                kind: "recording state",
                value: s.to_string(),
            })
    }
}

/// The row written when a recording opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingStart {
    /// Unique recording id (also part of the file name).
    pub id: String,
    /// The caller leg's Call-ID, as in `call_records.call_id`.
    pub call_id: String,
    /// File path relative to the data directory, `/`-separated.
    pub path: String,
    pub layout: RecordingLayout,
    /// Unix epoch milliseconds.
    pub started_at_ms: i64,
}

/// The update written when a recording closes (or is recovered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingEnd {
    pub id: String,
    /// Unix epoch milliseconds.
    pub ended_at_ms: i64,
    /// Length of the audio in the file.
    pub duration_ms: i64,
    /// Size of the file.
    pub bytes: i64,
    /// Anything but [`RecordingState::Recording`].
    pub state: RecordingState,
    /// Lowercase hex SHA-256 of the closed file, when there is one.
    pub sha256: Option<String>,
    /// Why the recording is not complete.
    pub reason: Option<String>,
}

/// One row of `recordings` as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRow {
    pub id: String,
    pub call_id: String,
    pub path: String,
    pub layout: RecordingLayout,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub duration_ms: i64,
    pub bytes: i64,
    pub state: RecordingState,
    pub sha256: Option<String>,
    pub reason: Option<String>,
}

impl Store {
    /// Queue the row of a recording that has just opened. Never blocks.
    pub fn start_recording(&self, start: RecordingStart) -> Result<(), StoreError> {
        self.submit(WriteOp::StartRecording(start))
    }

    /// Queue the closing update of a recording. Never blocks.
    pub fn finish_recording(&self, end: RecordingEnd) -> Result<(), StoreError> {
        self.submit(WriteOp::FinishRecording(end))
    }
}

const COLUMNS: &str = "id, call_id, path, layout, started_at_ms, ended_at_ms, duration_ms,
                       bytes, state, sha256, reason";

impl Reader {
    /// The recording with this id, if any.
    pub fn recording(&self, id: &str) -> Result<Option<RecordingRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM recordings WHERE id = ?1");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([id])?;
        match rows.next()? {
            Some(row) => Ok(Some(row_to_recording(row)?)),
            None => Ok(None),
        }
    }

    /// Every recording of a call, oldest first.
    pub fn recordings_of_call(&self, call_id: &str) -> Result<Vec<RecordingRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM recordings WHERE call_id = ?1 ORDER BY started_at_ms, id"
        );
        self.collect_recordings(&sql, call_id)
    }

    /// Every recording in `state`, oldest first (recovery asks for
    /// [`RecordingState::Recording`]).
    pub fn recordings_in_state(
        &self,
        state: RecordingState,
    ) -> Result<Vec<RecordingRow>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM recordings WHERE state = ?1 ORDER BY started_at_ms, id");
        self.collect_recordings(&sql, state.as_str())
    }

    fn collect_recordings(&self, sql: &str, key: &str) -> Result<Vec<RecordingRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query([key])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(row_to_recording(row)?);
        }
        Ok(out)
    }
}

/// Insert the row of an opened recording (called by the writer thread).
pub(super) fn insert(conn: &Connection, start: &RecordingStart) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO recordings (id, call_id, path, layout, started_at_ms, state)
         VALUES (?1, ?2, ?3, ?4, ?5, 'recording')",
    )?;
    stmt.execute(params![
        start.id,
        start.call_id,
        start.path,
        start.layout.as_str(),
        start.started_at_ms,
    ])?;
    Ok(())
}

/// Close a recording's row (called by the writer thread). Only a row still
/// in state `recording` changes: a closed recording is never reopened.
pub(super) fn finish(conn: &Connection, end: &RecordingEnd) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE recordings
         SET ended_at_ms = ?2, duration_ms = ?3, bytes = ?4, state = ?5, sha256 = ?6,
             reason = ?7
         WHERE id = ?1 AND state = 'recording'",
    )?;
    stmt.execute(params![
        end.id,
        end.ended_at_ms,
        end.duration_ms,
        end.bytes,
        end.state.as_str(),
        end.sha256,
        end.reason,
    ])?;
    Ok(())
}

fn row_to_recording(row: &Row<'_>) -> Result<RecordingRow, StoreError> {
    Ok(RecordingRow {
        id: row.get(0)?,
        call_id: row.get(1)?,
        path: row.get(2)?,
        layout: parse_column("layout", row.get(3)?)?,
        started_at_ms: row.get(4)?,
        ended_at_ms: row.get(5)?,
        duration_ms: row.get(6)?,
        bytes: row.get(7)?,
        state: parse_column("state", row.get(8)?)?,
        sha256: row.get(9)?,
        reason: row.get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(id: &str, call_id: &str, started_at_ms: i64) -> RecordingStart {
        RecordingStart {
            id: id.into(),
            call_id: call_id.into(),
            path: format!("recordings/2024/01/02/{id}.wav"),
            layout: RecordingLayout::Stereo,
            started_at_ms,
        }
    }

    fn end(id: &str, state: RecordingState) -> RecordingEnd {
        RecordingEnd {
            id: id.into(),
            ended_at_ms: 61_000,
            duration_ms: 60_000,
            bytes: 1_920_044,
            state,
            sha256: Some("ab".repeat(32)),
            reason: None,
        }
    }

    #[test]
    fn states_round_trip_through_text() {
        for state in RecordingState::ALL {
            assert_eq!(state.as_str().parse::<RecordingState>().unwrap(), *state);
        }
        let err = "Complete".parse::<RecordingState>().unwrap_err();
        assert_eq!(err.kind, "recording state");
    }

    #[test]
    fn a_row_goes_from_recording_to_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("denwa.db")).unwrap();
        store.start_recording(start("r1", "call-1", 1_000)).unwrap();
        store.flush_blocking().unwrap();
        let reader = store.reader().unwrap();
        let open = reader.recording("r1").unwrap().unwrap();
        assert_eq!(open.state, RecordingState::Recording);
        assert_eq!(open.ended_at_ms, None);
        assert_eq!((open.duration_ms, open.bytes), (0, 0));
        assert_eq!(open.sha256, None);

        store
            .finish_recording(end("r1", RecordingState::Complete))
            .unwrap();
        store.flush_blocking().unwrap();
        let closed = reader.recording("r1").unwrap().unwrap();
        assert_eq!(closed.state, RecordingState::Complete);
        assert_eq!(closed.ended_at_ms, Some(61_000));
        assert_eq!((closed.duration_ms, closed.bytes), (60_000, 1_920_044));
        assert_eq!(closed.sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(closed.layout, RecordingLayout::Stereo);
        assert_eq!(closed.path, "recordings/2024/01/02/r1.wav");
        assert_eq!(store.failed_writes(), 0);
        store.close().unwrap();
    }

    #[test]
    fn a_closed_row_is_never_reopened_or_closed_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("denwa.db")).unwrap();
        store.start_recording(start("r1", "call-1", 1_000)).unwrap();
        let lost = RecordingEnd {
            reason: Some("writes fell behind".into()),
            sha256: None,
            ..end("r1", RecordingState::Incomplete)
        };
        store.finish_recording(lost).unwrap();
        store
            .finish_recording(end("r1", RecordingState::Recovered))
            .unwrap();
        // The same id again is refused by the primary key.
        store.start_recording(start("r1", "call-2", 2_000)).unwrap();
        store.flush_blocking().unwrap();
        let row = store.reader().unwrap().recording("r1").unwrap().unwrap();
        assert_eq!(row.state, RecordingState::Incomplete);
        assert_eq!(row.reason.as_deref(), Some("writes fell behind"));
        assert_eq!(row.call_id, "call-1");
        assert_eq!(store.failed_writes(), 1);
        store.close().unwrap();
    }

    #[test]
    fn rows_are_found_by_call_and_by_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("denwa.db")).unwrap();
        store.start_recording(start("r2", "call-1", 2_000)).unwrap();
        store.start_recording(start("r1", "call-1", 1_000)).unwrap();
        store.start_recording(start("r3", "call-2", 3_000)).unwrap();
        store
            .finish_recording(end("r2", RecordingState::Complete))
            .unwrap();
        store.flush_blocking().unwrap();
        let reader = store.reader().unwrap();
        let ids = |rows: Vec<RecordingRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(reader.recordings_of_call("call-1").unwrap()),
            ["r1", "r2"]
        );
        assert_eq!(
            ids(reader
                .recordings_in_state(RecordingState::Recording)
                .unwrap()),
            ["r1", "r3"]
        );
        assert!(reader.recording("missing").unwrap().is_none());
        store.close().unwrap();
    }
}
