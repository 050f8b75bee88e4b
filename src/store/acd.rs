//! The queue event log in `acd_events` (schema in `acd::schema`): one row
//! per [`LogRecord`], appended through the writer thread and read back in
//! log order for statistics and replay.
//!
//! What this module must not do: interpret the records (statistics are in
//! `acd::stats`) or update or delete a row: the log is append-only.

use rusqlite::{params, Connection, Row};

use super::{Reader, Store, StoreError, WriteOp};
use crate::acd::log::{LogRecord, QueueEvent};
use crate::acd::types::{AgentId, CallId, GroupId, PauseReasonId, UnixMs};

impl Store {
    /// Queue one queue event log record. Never blocks.
    pub fn log_acd_event(&self, record: LogRecord) -> Result<(), StoreError> {
        self.submit(WriteOp::AcdEvent(record))
    }
}

/// The columns of one row besides `id` and `kind`.
#[derive(Default)]
struct Columns {
    call: Option<String>,
    group: Option<String>,
    agent: Option<String>,
    party: Option<String>,
    reason: Option<String>,
    from: Option<&'static str>,
    to: Option<&'static str>,
    duration: Option<u64>,
}

fn columns(event: &QueueEvent) -> Columns {
    let mut c = Columns {
        call: event.call().map(|x| x.0.clone()),
        group: event.group().map(|x| x.0.clone()),
        agent: event.agent().map(|x| x.0.clone()),
        ..Columns::default()
    };
    match event {
        QueueEvent::Enter { caller, .. } => c.party = Some(caller.clone()),
        QueueEvent::Refused { caller, reason, .. } => {
            c.party = Some(caller.clone());
            c.reason = Some(reason.as_str().to_string());
        }
        QueueEvent::OfferEnd { outcome, .. } => c.reason = Some(outcome.as_str().to_string()),
        QueueEvent::Answer { wait_ms, .. } | QueueEvent::Abandon { wait_ms, .. } => {
            c.duration = Some(*wait_ms)
        }
        QueueEvent::Overflow { destination, .. } => c.party = destination.clone(),
        QueueEvent::Timeout {
            wait_ms,
            destination,
            ..
        } => {
            c.party = destination.clone();
            c.duration = Some(*wait_ms);
        }
        QueueEvent::Transfer { to, .. } => c.party = Some(to.clone()),
        QueueEvent::End { talk_ms, .. } => c.duration = Some(*talk_ms),
        QueueEvent::Pause { reason, .. } => c.reason = Some(reason.0.clone()),
        QueueEvent::WrapUp { secs, .. } => c.duration = Some(u64::from(*secs) * 1000),
        QueueEvent::Status {
            from, to, reason, ..
        } => {
            c.from = Some(from.as_str());
            c.to = Some(to.as_str());
            c.reason = reason.clone();
        }
        QueueEvent::Offer { .. } | QueueEvent::Unpause { .. } => {}
    }
    c
}

fn to_sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn insert(conn: &Connection, record: &LogRecord) -> rusqlite::Result<()> {
    let c = columns(&record.event);
    let mut stmt = conn.prepare_cached(
        "INSERT INTO acd_events (at_ms, kind, call_id, group_id, agent_id, party, reason,
                                 status_from, status_to, duration_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    stmt.execute(params![
        to_sql_int(record.at),
        record.event.kind(),
        c.call,
        c.group,
        c.agent,
        c.party,
        c.reason,
        c.from,
        c.to,
        c.duration.map(to_sql_int),
    ])?;
    Ok(())
}

const SELECT: &str = "SELECT at_ms, kind, call_id, group_id, agent_id, party, reason,
                             status_from, status_to, duration_ms FROM acd_events";

impl Reader {
    /// Records with `from <= at < until`, in log order.
    pub fn acd_events(&self, from: UnixMs, until: UnixMs) -> Result<Vec<LogRecord>, StoreError> {
        let sql = format!("{SELECT} WHERE at_ms >= ?1 AND at_ms < ?2 ORDER BY id");
        self.acd_query(&sql, from, until)
    }

    /// What the status-time table of a period needs: each agent's last
    /// status record before `from`, then every record of the period.
    pub fn acd_events_for_stats(
        &self,
        from: UnixMs,
        until: UnixMs,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let sql = format!(
            "{SELECT} WHERE id IN (SELECT max(id) FROM acd_events
                                   WHERE kind = 'status' AND at_ms < ?1 GROUP BY agent_id)
                 OR (at_ms >= ?1 AND at_ms < ?2)
             ORDER BY id"
        );
        self.acd_query(&sql, from, until)
    }

    fn acd_query(
        &self,
        sql: &str,
        from: UnixMs,
        until: UnixMs,
    ) -> Result<Vec<LogRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![to_sql_int(from), to_sql_int(until)])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(row_to_record(row)?);
        }
        Ok(out)
    }
}

fn invalid(column: &'static str, value: impl Into<String>) -> StoreError {
    StoreError::InvalidValue {
        column,
        value: value.into(),
    }
}

fn row_to_record(row: &Row<'_>) -> Result<LogRecord, StoreError> {
    let at: i64 = row.get(0)?;
    let at = u64::try_from(at).map_err(|_| invalid("at_ms", at.to_string()))?;
    let kind: String = row.get(1)?;
    let text = |i: usize, column: &'static str| -> Result<String, StoreError> {
        row.get::<_, Option<String>>(i)?
            .ok_or_else(|| invalid(column, "NULL"))
    };
    let opt = |i: usize| row.get::<_, Option<String>>(i);
    let duration = || -> Result<u64, StoreError> {
        let v: Option<i64> = row.get(9)?;
        v.and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| invalid("duration_ms", format!("{v:?}")))
    };
    let call = || text(2, "call_id").map(CallId);
    let group = || text(3, "group_id").map(GroupId);
    let agent = || text(4, "agent_id").map(AgentId);
    let event = match kind.as_str() {
        "enter" => QueueEvent::Enter {
            call: call()?,
            group: group()?,
            caller: text(5, "party")?,
        },
        "refused" => QueueEvent::Refused {
            call: call()?,
            group: group()?,
            caller: text(5, "party")?,
            reason: parse_enum(text(6, "reason")?, "reason")?,
        },
        "offer" => QueueEvent::Offer {
            call: call()?,
            group: group()?,
            agent: agent()?,
        },
        "offer_end" => QueueEvent::OfferEnd {
            call: call()?,
            group: group()?,
            agent: agent()?,
            outcome: parse_enum(text(6, "reason")?, "reason")?,
        },
        "answer" => QueueEvent::Answer {
            call: call()?,
            group: group()?,
            agent: agent()?,
            wait_ms: duration()?,
        },
        "abandon" => QueueEvent::Abandon {
            call: call()?,
            group: group()?,
            wait_ms: duration()?,
        },
        "overflow" => QueueEvent::Overflow {
            call: call()?,
            group: group()?,
            destination: opt(5)?,
        },
        "timeout" => QueueEvent::Timeout {
            call: call()?,
            group: group()?,
            wait_ms: duration()?,
            destination: opt(5)?,
        },
        "transfer" => QueueEvent::Transfer {
            call: call()?,
            group: group()?,
            agent: agent()?,
            to: text(5, "party")?,
        },
        "end" => QueueEvent::End {
            call: call()?,
            group: group()?,
            agent: agent()?,
            talk_ms: duration()?,
        },
        "pause" => QueueEvent::Pause {
            agent: agent()?,
            reason: PauseReasonId(text(6, "reason")?),
        },
        "unpause" => QueueEvent::Unpause { agent: agent()? },
        "wrap_up" => QueueEvent::WrapUp {
            agent: agent()?,
            group: opt(3)?.map(GroupId),
            secs: u32::try_from(duration()? / 1000).unwrap_or(u32::MAX),
        },
        "status" => QueueEvent::Status {
            agent: agent()?,
            from: parse_enum(text(7, "status_from")?, "status_from")?,
            to: parse_enum(text(8, "status_to")?, "status_to")?,
            reason: opt(6)?,
        },
        other => return Err(invalid("kind", other)),
    };
    Ok(LogRecord { at, event })
}

fn parse_enum<T: std::str::FromStr>(text: String, column: &'static str) -> Result<T, StoreError> {
    text.parse().map_err(|_| invalid(column, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::types::{AgentStatus, OfferOutcome, RefusalReason};

    fn every_kind() -> Vec<LogRecord> {
        let (c, g, a) = (
            CallId::from("c1"),
            GroupId::from("sales"),
            AgentId::from("alice"),
        );
        let events = vec![
            QueueEvent::Enter {
                call: c.clone(),
                group: g.clone(),
                caller: "0312345678".into(),
            },
            QueueEvent::Refused {
                call: "c0".into(),
                group: g.clone(),
                caller: "x".into(),
                reason: RefusalReason::ChannelLimit,
            },
            QueueEvent::Offer {
                call: c.clone(),
                group: g.clone(),
                agent: a.clone(),
            },
            QueueEvent::OfferEnd {
                call: c.clone(),
                group: g.clone(),
                agent: a.clone(),
                outcome: OfferOutcome::NoAnswer,
            },
            QueueEvent::Answer {
                call: c.clone(),
                group: g.clone(),
                agent: a.clone(),
                wait_ms: 12_000,
            },
            QueueEvent::Transfer {
                call: c.clone(),
                group: g.clone(),
                agent: a.clone(),
                to: "2001".into(),
            },
            QueueEvent::End {
                call: c.clone(),
                group: g.clone(),
                agent: a.clone(),
                talk_ms: 61_000,
            },
            QueueEvent::Abandon {
                call: "c2".into(),
                group: g.clone(),
                wait_ms: 5,
            },
            QueueEvent::Overflow {
                call: "c3".into(),
                group: g.clone(),
                destination: None,
            },
            QueueEvent::Timeout {
                call: "c4".into(),
                group: g.clone(),
                wait_ms: 300_000,
                destination: Some("voicemail".into()),
            },
            QueueEvent::Pause {
                agent: a.clone(),
                reason: "lunch".into(),
            },
            QueueEvent::Unpause { agent: a.clone() },
            QueueEvent::WrapUp {
                agent: a.clone(),
                group: Some(g.clone()),
                secs: 30,
            },
            QueueEvent::WrapUp {
                agent: a.clone(),
                group: None,
                secs: 0,
            },
            QueueEvent::Status {
                agent: a.clone(),
                from: AgentStatus::Idle,
                to: AgentStatus::Paused,
                reason: Some("lunch".into()),
            },
            QueueEvent::Status {
                agent: a,
                from: AgentStatus::Paused,
                to: AgentStatus::Idle,
                reason: None,
            },
        ];
        events
            .into_iter()
            .enumerate()
            .map(|(i, event)| LogRecord {
                at: 1_000 + i as u64,
                event,
            })
            .collect()
    }

    #[test]
    fn every_kind_round_trips_in_log_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("denwa.db")).unwrap();
        let records = every_kind();
        for r in &records {
            store.log_acd_event(r.clone()).unwrap();
        }
        store.flush_blocking().unwrap();
        assert_eq!(store.failed_writes(), 0);
        let reader = store.reader().unwrap();
        assert_eq!(reader.acd_events(0, u64::MAX / 2).unwrap(), records);
        let some = reader.acd_events(1_002, 1_004).unwrap();
        assert_eq!(some, records[2..4]);
        store.close().unwrap();
    }

    #[test]
    fn stats_read_starts_with_each_agents_last_earlier_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("denwa.db")).unwrap();
        let status = |at, agent: &str, to| LogRecord {
            at,
            event: QueueEvent::Status {
                agent: agent.into(),
                from: AgentStatus::Offline,
                to,
                reason: None,
            },
        };
        let records = [
            status(10, "a", AgentStatus::Idle),
            status(20, "a", AgentStatus::Talking),
            status(30, "b", AgentStatus::Idle),
            status(100, "a", AgentStatus::Idle),
            status(300, "b", AgentStatus::Paused),
        ];
        for r in &records {
            store.log_acd_event(r.clone()).unwrap();
        }
        store.flush_blocking().unwrap();
        let got = store
            .reader()
            .unwrap()
            .acd_events_for_stats(50, 200)
            .unwrap();
        assert_eq!(
            got,
            [records[1].clone(), records[2].clone(), records[3].clone()]
        );
        store.close().unwrap();
    }

    #[test]
    fn a_bad_row_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("denwa.db");
        let store = Store::open(&path).unwrap();
        store.close().unwrap();
        let raw = Connection::open(&path).unwrap();
        raw.execute(
            "INSERT INTO acd_events (at_ms, kind, agent_id, status_from, status_to)
             VALUES (5, 'status', 'a', 'idle', 'dancing')",
            [],
        )
        .unwrap();
        let bad_kind = raw.execute(
            "INSERT INTO acd_events (at_ms, kind) VALUES (6, 'party')",
            [],
        );
        assert!(bad_kind.is_err(), "the kind is checked by the schema");
        drop(raw);
        let err = Reader::open(&path).unwrap().acd_events(0, 10).unwrap_err();
        match err {
            StoreError::InvalidValue { column, value } => {
                assert_eq!((column, value.as_str()), ("status_to", "dancing"));
            }
            other => panic!("expected InvalidValue, got {other:?}"),
        }
    }
}
