//! Queue statistics, every number derived from the queue event log.
//!
//! [`Tally`] is the live fold: the engine applies each record it logs, and
//! a restart (or anyone) can rebuild the same tally by applying the stored
//! records, so live and replayed numbers agree by construction.
//! `realtime.rs` adds the engine's present state (agents, waiting calls) to
//! the tally for the dashboard; `history.rs` folds a stored period into the
//! tables by date, hour, agent, talk-time band and agent status time;
//! `csv.rs` writes any of those tables as CSV; `civil.rs` turns times into
//! local dates and hours.
//!
//! What this module must not do: read the store or the clock (records and
//! times are given), or count anything not in the log.

pub mod civil;
pub mod csv;
pub mod history;
pub mod realtime;

use std::collections::BTreeMap;

use super::log::{LogRecord, QueueEvent};
use super::types::{GroupId, UnixMs};

/// Width of a slot of the answer-rate series.
pub const SERIES_SLOT_MS: u64 = 5 * 60 * 1000;

/// Call counts of one group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCounts {
    /// Calls that entered (all inbound).
    pub entered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub overflow: u64,
    pub timeout: u64,
    /// Refused at the door (channel limit); not in `entered`.
    pub refused: u64,
    pub transferred: u64,
    /// Answered calls that have ended.
    pub ended: u64,
    /// Sum of the waits of answered calls.
    pub answered_wait_ms: u64,
    /// Sum of the talk times of ended calls.
    pub talk_ms: u64,
}

impl GroupCounts {
    /// Calls whose time in the queue is over (answered or not).
    pub fn closed(&self) -> u64 {
        self.answered + self.abandoned + self.overflow + self.timeout
    }

    /// Answered / all inbound, in percent (`None` before the first call).
    pub fn answer_rate(&self) -> Option<f64> {
        percent(self.answered, self.entered)
    }

    /// Average wait of answered calls, milliseconds.
    pub fn average_wait_ms(&self) -> Option<u64> {
        self.answered_wait_ms.checked_div(self.answered)
    }

    /// Average talk time of ended calls, milliseconds.
    pub fn average_talk_ms(&self) -> Option<u64> {
        self.talk_ms.checked_div(self.ended)
    }

    /// Fold one queue event about this group.
    pub fn apply(&mut self, event: &QueueEvent) {
        match event {
            QueueEvent::Enter { .. } => self.entered += 1,
            QueueEvent::Refused { .. } => self.refused += 1,
            QueueEvent::Answer { wait_ms, .. } => {
                self.answered += 1;
                self.answered_wait_ms = self.answered_wait_ms.saturating_add(*wait_ms);
            }
            QueueEvent::Abandon { .. } => self.abandoned += 1,
            QueueEvent::Overflow { .. } => self.overflow += 1,
            QueueEvent::Timeout { .. } => self.timeout += 1,
            QueueEvent::Transfer { .. } => self.transferred += 1,
            QueueEvent::End { talk_ms, .. } => {
                self.ended += 1;
                self.talk_ms = self.talk_ms.saturating_add(*talk_ms);
            }
            _ => {}
        }
    }
}

impl std::ops::AddAssign for GroupCounts {
    fn add_assign(&mut self, o: GroupCounts) {
        self.entered += o.entered;
        self.answered += o.answered;
        self.abandoned += o.abandoned;
        self.overflow += o.overflow;
        self.timeout += o.timeout;
        self.refused += o.refused;
        self.transferred += o.transferred;
        self.ended += o.ended;
        self.answered_wait_ms = self.answered_wait_ms.saturating_add(o.answered_wait_ms);
        self.talk_ms = self.talk_ms.saturating_add(o.talk_ms);
    }
}

/// `part / whole` in percent.
pub fn percent(part: u64, whole: u64) -> Option<f64> {
    // Counts stay far below 2^52: the conversion is exact.
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// One slot of the answer-rate series: calls that arrived in the slot and
/// how many of them were answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesPoint {
    pub start: UnixMs,
    pub entered: u64,
    pub answered: u64,
}

impl SeriesPoint {
    pub fn answer_rate(&self) -> Option<f64> {
        percent(self.answered, self.entered)
    }
}

/// When a call arrived, from a record about its time in the queue.
pub fn arrival(record: &LogRecord) -> Option<UnixMs> {
    match &record.event {
        QueueEvent::Enter { .. } | QueueEvent::Overflow { .. } | QueueEvent::Refused { .. } => {
            Some(record.at)
        }
        QueueEvent::Answer { wait_ms, .. }
        | QueueEvent::Abandon { wait_ms, .. }
        | QueueEvent::Timeout { wait_ms, .. } => Some(record.at.saturating_sub(*wait_ms)),
        _ => None,
    }
}

/// The live statistics: counts per group since `since`, and the 5-minute
/// answer-rate series (calls counted in the slot they arrived in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    since: UnixMs,
    groups: BTreeMap<GroupId, GroupCounts>,
    series: BTreeMap<GroupId, BTreeMap<UnixMs, SeriesPoint>>,
}

impl Tally {
    pub fn new(since: UnixMs) -> Tally {
        Tally {
            since,
            groups: BTreeMap::new(),
            series: BTreeMap::new(),
        }
    }

    /// Build a tally from stored records.
    pub fn replay<'a>(since: UnixMs, records: impl IntoIterator<Item = &'a LogRecord>) -> Tally {
        let mut tally = Tally::new(since);
        for r in records {
            tally.apply(r);
        }
        tally
    }

    pub fn since(&self) -> UnixMs {
        self.since
    }

    /// Fold one record.
    pub fn apply(&mut self, record: &LogRecord) {
        let Some(group) = record.event.group() else {
            return;
        };
        self.groups
            .entry(group.clone())
            .or_default()
            .apply(&record.event);
        let counted = matches!(
            record.event,
            QueueEvent::Enter { .. } | QueueEvent::Answer { .. }
        );
        if let (true, Some(arrived)) = (counted, arrival(record)) {
            let start = arrived - arrived % SERIES_SLOT_MS;
            let point = self
                .series
                .entry(group.clone())
                .or_default()
                .entry(start)
                .or_insert(SeriesPoint {
                    start,
                    ..SeriesPoint::default()
                });
            match record.event {
                QueueEvent::Enter { .. } => point.entered += 1,
                _ => point.answered += 1,
            }
        }
    }

    /// The counts of one group (zeros for a group with no calls yet).
    pub fn group(&self, group: &GroupId) -> GroupCounts {
        self.groups.get(group).copied().unwrap_or_default()
    }

    /// The answer-rate series of one group, oldest slot first.
    pub fn series(&self, group: &GroupId) -> Vec<SeriesPoint> {
        self.series
            .get(group)
            .map(|s| s.values().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::types::AgentId;

    fn rec(at: UnixMs, event: QueueEvent) -> LogRecord {
        LogRecord { at, event }
    }

    #[test]
    fn counts_and_series_follow_the_records() {
        let g = GroupId::from("sales");
        let (c1, c2) = ("c1".into(), "c2".into());
        let a = AgentId::from("alice");
        let slot = SERIES_SLOT_MS;
        let records = [
            rec(
                slot - 1_000,
                QueueEvent::Enter {
                    call: c1,
                    group: g.clone(),
                    caller: "x".into(),
                },
            ),
            rec(
                slot + 1_000,
                QueueEvent::Enter {
                    call: c2,
                    group: g.clone(),
                    caller: "y".into(),
                },
            ),
            // c1 arrived in slot 0 and is answered in slot 1: counted in slot 0.
            rec(
                slot + 2_000,
                QueueEvent::Answer {
                    call: "c1".into(),
                    group: g.clone(),
                    agent: a.clone(),
                    wait_ms: 3_000,
                },
            ),
            rec(
                slot + 4_000,
                QueueEvent::Abandon {
                    call: "c2".into(),
                    group: g.clone(),
                    wait_ms: 3_000,
                },
            ),
            rec(
                slot + 9_000,
                QueueEvent::End {
                    call: "c1".into(),
                    group: g.clone(),
                    agent: a,
                    talk_ms: 7_000,
                },
            ),
        ];
        let tally = Tally::replay(0, &records);
        let counts = tally.group(&g);
        assert_eq!(
            (counts.entered, counts.answered, counts.abandoned),
            (2, 1, 1)
        );
        assert_eq!(counts.closed(), counts.entered);
        assert_eq!(counts.answer_rate(), Some(50.0));
        assert_eq!(counts.average_wait_ms(), Some(3_000));
        assert_eq!(counts.average_talk_ms(), Some(7_000));
        assert_eq!(
            tally.series(&g),
            [
                SeriesPoint {
                    start: 0,
                    entered: 1,
                    answered: 1
                },
                SeriesPoint {
                    start: slot,
                    entered: 1,
                    answered: 0
                },
            ]
        );
        assert_eq!(tally.group(&"other".into()), GroupCounts::default());
    }
}
