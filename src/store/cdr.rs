//! Call detail records (CDRs): one row per call attempt in `call_records`.
//!
//! This module owns the [`CallRecord`] shape, the text encoding of its enums
//! (lowercase, `snake_case`: `answered`, `no_answer`...) and the SQL that
//! writes and reads the table. Writing is queued through [`Store`]; reading is
//! blocking through [`Reader`].
//!
//! What this module must not do: decide a call's disposition (the B2BUA does
//! that) or read the clock: every time is given in the record.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rusqlite::{params, Connection, Row};

use super::{Reader, Store, StoreError, WriteOp};

/// An unknown enum value in text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct ParseEnumError {
    pub kind: &'static str,
    pub value: String,
}

/// Defines a closed enum stored as lowercase text, with `as_str`, `ALL`,
/// `Display` and `FromStr`.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored text form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseEnumError { kind: $kind, value: s.to_string() }),
                }
            }
        }
    };
}

text_enum!(
    /// Where a call came from and went to.
    Direction, "direction" {
        Internal => "internal",
        Inbound => "inbound",
        Outbound => "outbound",
    }
);

text_enum!(
    /// How a call attempt ended.
    Disposition, "disposition" {
        Answered => "answered",
        Busy => "busy",
        NoAnswer => "no_answer",
        Cancelled => "cancelled",
        Failed => "failed",
        Unavailable => "unavailable",
        NotFound => "not_found",
        Rejected => "rejected",
        Blocked => "blocked",
        Restricted => "restricted",
        Forbidden => "forbidden",
        ChannelLimit => "channel_limit",
    }
);

text_enum!(
    /// Which party ended the call.
    Side, "hangup side" {
        Caller => "caller",
        Callee => "callee",
        System => "system",
    }
);

/// What denwa received from one side's phone during a call: the answer to
/// "was the line bad?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineStats {
    pub rtp_packets: u64,
    pub rtp_lost: u64,
    /// Mean interarrival jitter (RFC 3550), microseconds.
    pub jitter_us: u64,
}

/// One call attempt, written when the call is over. Times are unix epoch
/// milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub call_id: String,
    pub started_at_ms: i64,
    pub answered_at_ms: Option<i64>,
    pub ended_at_ms: i64,
    pub caller: String,
    pub callee: String,
    pub direction: Direction,
    pub disposition: Disposition,
    pub hangup_side: Option<Side>,
    /// Final SIP status of the attempt (200 when answered).
    pub sip_status: u16,
    /// Derived: see [`CallRecord::ring_ms_of`]. Stored as given.
    pub ring_ms: i64,
    /// Derived: see [`CallRecord::talk_ms_of`]. Stored as given.
    pub talk_ms: i64,
    pub caller_ip: Option<String>,
    /// Line quality from each side, when media flowed.
    pub caller_line: Option<LineStats>,
    pub callee_line: Option<LineStats>,
    /// The number (DID, national form) the call came in on or left from.
    pub did: Option<String>,
    /// The trunk the call came in on or left through.
    pub trunk: Option<String>,
}

impl CallRecord {
    /// Time from start until answer (or until the end when never answered);
    /// never negative, never overflows.
    pub fn ring_ms_of(started_at_ms: i64, answered_at_ms: Option<i64>, ended_at_ms: i64) -> i64 {
        let until = answered_at_ms.unwrap_or(ended_at_ms);
        until.saturating_sub(started_at_ms).max(0)
    }

    /// Time from answer until the end; zero when never answered.
    pub fn talk_ms_of(answered_at_ms: Option<i64>, ended_at_ms: i64) -> i64 {
        match answered_at_ms {
            Some(answered) => ended_at_ms.saturating_sub(answered).max(0),
            None => 0,
        }
    }

    /// Recompute `ring_ms` and `talk_ms` from the timestamps.
    pub fn with_derived_durations(mut self) -> CallRecord {
        self.ring_ms = Self::ring_ms_of(self.started_at_ms, self.answered_at_ms, self.ended_at_ms);
        self.talk_ms = Self::talk_ms_of(self.answered_at_ms, self.ended_at_ms);
        self
    }
}

impl Store {
    /// Queue a call record for writing. Never blocks.
    pub fn record_call(&self, rec: CallRecord) -> Result<(), StoreError> {
        self.submit(WriteOp::RecordCall(rec))
    }
}

impl Reader {
    /// The `limit` most recent records, newest first.
    pub fn recent_calls(&self, limit: usize) -> Result<Vec<CallRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT call_id, started_at_ms, answered_at_ms, ended_at_ms, caller, callee,
                    direction, disposition, hangup_side, sip_status, ring_ms, talk_ms,
                    caller_ip, caller_rtp_packets, caller_rtp_lost, caller_jitter_us,
                    callee_rtp_packets, callee_rtp_lost, callee_jitter_us, did, trunk
             FROM call_records ORDER BY started_at_ms DESC, id DESC LIMIT ?1",
        )?;
        let mut rows = stmt.query([limit])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(record_from_row(row)?);
        }
        Ok(out)
    }

    /// How many records there are per disposition (absent ones omitted).
    pub fn count_by_disposition(&self) -> Result<BTreeMap<Disposition, u64>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT disposition, count(*) FROM call_records GROUP BY disposition",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = BTreeMap::new();
        while let Some(row) = rows.next()? {
            let disposition = parse_column::<Disposition>("disposition", row.get(0)?)?;
            let count: i64 = row.get(1)?;
            out.insert(disposition, u64::try_from(count).unwrap_or(0));
        }
        Ok(out)
    }
}

/// Insert one record (called by the writer thread).
pub(super) fn insert(conn: &Connection, rec: &CallRecord) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO call_records (call_id, started_at_ms, answered_at_ms, ended_at_ms,
             caller, callee, direction, disposition, hangup_side, sip_status,
             ring_ms, talk_ms, caller_ip, caller_rtp_packets, caller_rtp_lost,
             caller_jitter_us, callee_rtp_packets, callee_rtp_lost, callee_jitter_us,
             did, trunk)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                 ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
    )?;
    stmt.execute(params![
        rec.call_id,
        rec.started_at_ms,
        rec.answered_at_ms,
        rec.ended_at_ms,
        rec.caller,
        rec.callee,
        rec.direction.as_str(),
        rec.disposition.as_str(),
        rec.hangup_side.map(Side::as_str),
        rec.sip_status,
        rec.ring_ms,
        rec.talk_ms,
        rec.caller_ip,
        rec.caller_line.map(|l| sql_int(l.rtp_packets)),
        rec.caller_line.map(|l| sql_int(l.rtp_lost)),
        rec.caller_line.map(|l| sql_int(l.jitter_us)),
        rec.callee_line.map(|l| sql_int(l.rtp_packets)),
        rec.callee_line.map(|l| sql_int(l.rtp_lost)),
        rec.callee_line.map(|l| sql_int(l.jitter_us)),
        rec.did,
        rec.trunk,
    ])?;
    Ok(())
}

fn record_from_row(row: &Row<'_>) -> Result<CallRecord, StoreError> {
    let hangup_side: Option<String> = row.get(8)?;
    Ok(CallRecord {
        call_id: row.get(0)?,
        started_at_ms: row.get(1)?,
        answered_at_ms: row.get(2)?,
        ended_at_ms: row.get(3)?,
        caller: row.get(4)?,
        callee: row.get(5)?,
        direction: parse_column("direction", row.get(6)?)?,
        disposition: parse_column("disposition", row.get(7)?)?,
        hangup_side: hangup_side
            .map(|s| parse_column("hangup_side", s))
            .transpose()?,
        sip_status: row.get(9)?,
        ring_ms: row.get(10)?,
        talk_ms: row.get(11)?,
        caller_ip: row.get(12)?,
        caller_line: line_from_row(row, 13)?,
        callee_line: line_from_row(row, 16)?,
        did: row.get(19)?,
        trunk: row.get(20)?,
    })
}

fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Three columns from `first`: packets, lost, jitter; absent when no media.
fn line_from_row(row: &Row<'_>, first: usize) -> Result<Option<LineStats>, StoreError> {
    let packets: Option<i64> = row.get(first)?;
    let lost: Option<i64> = row.get(first + 1)?;
    let jitter: Option<i64> = row.get(first + 2)?;
    let n = |v: Option<i64>| u64::try_from(v.unwrap_or(0)).unwrap_or(0);
    Ok(packets.map(|p| LineStats {
        rtp_packets: n(Some(p)),
        rtp_lost: n(lost),
        jitter_us: n(jitter),
    }))
}

/// Parse a stored enum, mapping an unknown value to a typed error.
pub(super) fn parse_column<T: FromStr>(
    column: &'static str,
    value: String,
) -> Result<T, StoreError> {
    value
        .parse()
        .map_err(|_| StoreError::InvalidValue { column, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::sample_call;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("denwa.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn enums_round_trip_through_text() {
        for d in Disposition::ALL {
            assert_eq!(d.as_str().parse::<Disposition>().unwrap(), *d);
        }
        for d in Direction::ALL {
            assert_eq!(d.to_string().parse::<Direction>().unwrap(), *d);
        }
        for s in Side::ALL {
            assert_eq!(s.as_str().parse::<Side>().unwrap(), *s);
        }
        assert_eq!(Disposition::NoAnswer.as_str(), "no_answer");
        assert_eq!(Disposition::NotFound.as_str(), "not_found");
        let err = "NoAnswer".parse::<Disposition>().unwrap_err();
        assert_eq!(err.kind, "disposition");
    }

    #[test]
    fn derived_durations() {
        let answered = sample_call("a", 1_000);
        assert_eq!((answered.ring_ms, answered.talk_ms), (2_000, 60_000));
        let missed = CallRecord {
            answered_at_ms: None,
            ended_at_ms: 31_000,
            disposition: Disposition::NoAnswer,
            ..sample_call("b", 1_000)
        }
        .with_derived_durations();
        assert_eq!((missed.ring_ms, missed.talk_ms), (30_000, 0));
        // A clock that went backwards never yields a negative duration.
        assert_eq!(CallRecord::ring_ms_of(1_000, None, 0), 0);
        assert_eq!(CallRecord::talk_ms_of(Some(5_000), 4_000), 0);
        // Extreme values saturate instead of overflowing.
        assert_eq!(
            CallRecord::ring_ms_of(i64::MIN, Some(i64::MAX), 0),
            i64::MAX
        );
        assert_eq!(CallRecord::talk_ms_of(Some(i64::MIN), i64::MAX), i64::MAX);
    }

    #[test]
    fn call_record_round_trip() {
        let (_dir, store) = open();
        let full = sample_call("full", 5_000);
        let sparse = CallRecord {
            call_id: "sparse".into(),
            started_at_ms: 6_000,
            answered_at_ms: None,
            ended_at_ms: 6_500,
            caller: "+81312345678".into(),
            callee: "2001".into(),
            direction: Direction::Inbound,
            disposition: Disposition::Cancelled,
            hangup_side: None,
            sip_status: 487,
            ring_ms: 500,
            talk_ms: 0,
            caller_ip: None,
            caller_line: None,
            callee_line: Some(LineStats {
                rtp_packets: 1500,
                rtp_lost: 3,
                jitter_us: 2500,
            }),
            did: Some("0312345678".into()),
            trunk: Some("carrier".into()),
        };
        store.record_call(full.clone()).unwrap();
        store.record_call(sparse.clone()).unwrap();
        store.flush_blocking().unwrap();
        let reader = store.reader().unwrap();
        assert_eq!(reader.recent_calls(10).unwrap(), [sparse, full]);
        assert_eq!(reader.recent_calls(1).unwrap().len(), 1);
        let (ring, talk): (i64, i64) = reader
            .conn
            .query_row(
                "SELECT ring_ms, talk_ms FROM call_records WHERE call_id = 'full'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((ring, talk), (2_000, 60_000));
        store.close().unwrap();
    }

    #[test]
    fn counts_per_disposition() {
        let (_dir, store) = open();
        let with = |id: &str, d: Disposition| CallRecord {
            disposition: d,
            ..sample_call(id, 1)
        };
        store.record_call(with("1", Disposition::Answered)).unwrap();
        store.record_call(with("2", Disposition::Busy)).unwrap();
        store.record_call(with("3", Disposition::Answered)).unwrap();
        store.record_call(with("4", Disposition::NoAnswer)).unwrap();
        store.flush_blocking().unwrap();
        let counts = store.reader().unwrap().count_by_disposition().unwrap();
        let expected = BTreeMap::from([
            (Disposition::Answered, 2),
            (Disposition::Busy, 1),
            (Disposition::NoAnswer, 1),
        ]);
        assert_eq!(counts, expected);
        store.close().unwrap();
    }

    #[test]
    fn unknown_stored_value_is_a_typed_error() {
        let err = parse_column::<Direction>("direction", "sideways".into()).unwrap_err();
        match err {
            StoreError::InvalidValue { column, value } => {
                assert_eq!(column, "direction");
                assert_eq!(value, "sideways");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
