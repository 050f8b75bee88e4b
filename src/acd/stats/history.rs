//! Historical statistics: folds of a stored period of the queue event log
//! into tables by date, hour, agent, talk-time band, and agent status time
//! (by agent or by hour). Every table row writes itself as CSV.
//!
//! Which time a record counts at: a call's queue counts (entered, answered,
//! abandoned, overflow, timeout, refused) at the time it arrived, so a call
//! is one row however long it waited; talk time and transfers at the time
//! the call ended; offers at the time they were made; status time is cut at
//! the period's edges (and, by hour, at each hour).
//!
//! What this module must not do: read the store or the clock. Records come
//! in log order; for status time the caller also passes each agent's last
//! status record from before the period.

use std::collections::BTreeMap;

use super::civil::{date_string, UtcOffset};
use super::csv::{decimal, CsvRow};
use super::{arrival, percent, GroupCounts};
use crate::acd::log::{LogRecord, QueueEvent};
use crate::acd::types::{AgentId, AgentStatus, GroupId, OfferOutcome, UnixMs};

/// Talk-time band edges, seconds: `0-30`, `30-60`, ..., `1800+`.
pub const DEFAULT_TALK_BANDS_SECS: &[u64] = &[30, 60, 180, 300, 600, 1800];

/// The span of a report and the site's offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: UnixMs,
    /// Exclusive.
    pub until: UnixMs,
    pub offset: UtcOffset,
}

impl Period {
    pub fn contains(&self, at: UnixMs) -> bool {
        at >= self.from && at < self.until
    }
}

/// Whether a record changes a group's call counts.
fn is_call_count(event: &QueueEvent) -> bool {
    !matches!(
        event,
        QueueEvent::Offer { .. } | QueueEvent::OfferEnd { .. } | QueueEvent::WrapUp { .. }
    ) && event.call().is_some()
}

/// Fold call counts per (key of the time, group).
fn calls_by<K: Ord>(
    records: &[LogRecord],
    period: &Period,
    key: impl Fn(UnixMs) -> K,
) -> BTreeMap<(K, GroupId), GroupCounts> {
    let mut table = BTreeMap::new();
    for r in records.iter().filter(|r| is_call_count(&r.event)) {
        let Some(group) = r.event.group() else {
            continue;
        };
        let when = arrival(r).unwrap_or(r.at);
        if period.contains(when) {
            let counts: &mut GroupCounts = table.entry((key(when), group.clone())).or_default();
            counts.apply(&r.event);
        }
    }
    table
}

fn count_fields(c: &GroupCounts) -> Vec<String> {
    let secs = |ms: Option<u64>| decimal(ms.map(|v| v as f64 / 1000.0));
    vec![
        c.entered.to_string(),
        c.answered.to_string(),
        c.abandoned.to_string(),
        c.overflow.to_string(),
        c.timeout.to_string(),
        c.refused.to_string(),
        c.transferred.to_string(),
        decimal(c.answer_rate()),
        secs(c.average_wait_ms()),
        secs(c.average_talk_ms()),
    ]
}

const COUNT_HEADER: [&str; 10] = [
    "entered",
    "answered",
    "abandoned",
    "overflow",
    "timeout",
    "refused",
    "transferred",
    "answer_rate_pct",
    "avg_wait_s",
    "avg_talk_s",
];

/// Calls of one group on one local date.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    pub date: String,
    pub group: GroupId,
    pub counts: GroupCounts,
}

impl CsvRow for DayRow {
    const HEADER: &'static [&'static str] = &[
        "date",
        "group",
        COUNT_HEADER[0],
        COUNT_HEADER[1],
        COUNT_HEADER[2],
        COUNT_HEADER[3],
        COUNT_HEADER[4],
        COUNT_HEADER[5],
        COUNT_HEADER[6],
        COUNT_HEADER[7],
        COUNT_HEADER[8],
        COUNT_HEADER[9],
    ];
    fn fields(&self) -> Vec<String> {
        let mut f = vec![self.date.clone(), self.group.to_string()];
        f.extend(count_fields(&self.counts));
        f
    }
}

/// Calls of one group in one local hour.
#[derive(Debug, Clone, PartialEq)]
pub struct HourRow {
    pub date: String,
    pub hour: u8,
    pub group: GroupId,
    pub counts: GroupCounts,
}

impl CsvRow for HourRow {
    const HEADER: &'static [&'static str] = &[
        "date",
        "hour",
        "group",
        COUNT_HEADER[0],
        COUNT_HEADER[1],
        COUNT_HEADER[2],
        COUNT_HEADER[3],
        COUNT_HEADER[4],
        COUNT_HEADER[5],
        COUNT_HEADER[6],
        COUNT_HEADER[7],
        COUNT_HEADER[8],
        COUNT_HEADER[9],
    ];
    fn fields(&self) -> Vec<String> {
        let mut f = vec![
            self.date.clone(),
            self.hour.to_string(),
            self.group.to_string(),
        ];
        f.extend(count_fields(&self.counts));
        f
    }
}

/// Calls per group per local date.
pub fn by_date(records: &[LogRecord], period: &Period) -> Vec<DayRow> {
    calls_by(records, period, |at| period.offset.day_hour(at).0)
        .into_iter()
        .map(|((day, group), counts)| DayRow {
            date: date_string(day),
            group,
            counts,
        })
        .collect()
}

/// Calls per group per local hour.
pub fn by_hour(records: &[LogRecord], period: &Period) -> Vec<HourRow> {
    calls_by(records, period, |at| period.offset.day_hour(at))
        .into_iter()
        .map(|((day_hour, group), counts)| HourRow {
            date: date_string(day_hour.0),
            hour: day_hour.1,
            group,
            counts,
        })
        .collect()
}

/// One agent's work for one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentRow {
    pub agent: AgentId,
    pub group: GroupId,
    pub offered: u64,
    pub answered: u64,
    /// Offers not taken: no answer, declined, busy, unreachable.
    pub missed: u64,
    pub ended: u64,
    pub talk_ms: u64,
    pub transferred: u64,
}

impl CsvRow for AgentRow {
    const HEADER: &'static [&'static str] = &[
        "agent",
        "group",
        "offered",
        "answered",
        "missed",
        "talk_s",
        "avg_talk_s",
        "transferred",
    ];
    fn fields(&self) -> Vec<String> {
        let avg = self.talk_ms.checked_div(self.ended);
        vec![
            self.agent.to_string(),
            self.group.to_string(),
            self.offered.to_string(),
            self.answered.to_string(),
            self.missed.to_string(),
            decimal(Some(self.talk_ms as f64 / 1000.0)),
            decimal(avg.map(|v| v as f64 / 1000.0)),
            self.transferred.to_string(),
        ]
    }
}

/// Offers, answers, talk time and transfers per agent and group.
pub fn by_agent(records: &[LogRecord], period: &Period) -> Vec<AgentRow> {
    let mut table: BTreeMap<(AgentId, GroupId), AgentRow> = BTreeMap::new();
    for r in records.iter().filter(|r| period.contains(r.at)) {
        let (Some(agent), Some(group)) = (r.event.agent(), r.event.group()) else {
            continue;
        };
        let row = table
            .entry((agent.clone(), group.clone()))
            .or_insert_with(|| AgentRow {
                agent: agent.clone(),
                group: group.clone(),
                ..AgentRow::default()
            });
        match &r.event {
            QueueEvent::Offer { .. } => row.offered += 1,
            QueueEvent::OfferEnd { outcome, .. } if *outcome != OfferOutcome::Cancelled => {
                row.missed += 1
            }
            QueueEvent::Answer { .. } => row.answered += 1,
            QueueEvent::End { talk_ms, .. } => {
                row.ended += 1;
                row.talk_ms = row.talk_ms.saturating_add(*talk_ms);
            }
            QueueEvent::Transfer { .. } => row.transferred += 1,
            _ => {}
        }
    }
    table.into_values().collect()
}

/// Ended calls of one group in one talk-time band.
#[derive(Debug, Clone, PartialEq)]
pub struct BandRow {
    pub group: GroupId,
    /// `30-60` (seconds, lower edge included) or `1800+`.
    pub band: String,
    pub calls: u64,
    pub percent: Option<f64>,
}

impl CsvRow for BandRow {
    const HEADER: &'static [&'static str] = &["group", "talk_band_s", "calls", "percent"];
    fn fields(&self) -> Vec<String> {
        vec![
            self.group.to_string(),
            self.band.clone(),
            self.calls.to_string(),
            decimal(self.percent),
        ]
    }
}

/// Ended calls per group per talk-time band (`edges_secs` ascending).
pub fn by_talk_band(records: &[LogRecord], period: &Period, edges_secs: &[u64]) -> Vec<BandRow> {
    let mut table: BTreeMap<GroupId, Vec<u64>> = BTreeMap::new();
    for r in records.iter().filter(|r| period.contains(r.at)) {
        if let QueueEvent::End { group, talk_ms, .. } = &r.event {
            let band = edges_secs
                .iter()
                .take_while(|&&edge| *talk_ms >= edge.saturating_mul(1000))
                .count();
            let counts = table
                .entry(group.clone())
                .or_insert_with(|| vec![0; edges_secs.len() + 1]);
            if let Some(n) = counts.get_mut(band) {
                *n += 1;
            }
        }
    }
    let mut rows = Vec::new();
    for (group, counts) in table {
        let total: u64 = counts.iter().sum();
        for (band, calls) in counts.into_iter().enumerate() {
            rows.push(BandRow {
                group: group.clone(),
                band: band_label(edges_secs, band),
                calls,
                percent: percent(calls, total),
            });
        }
    }
    rows
}

fn band_label(edges: &[u64], band: usize) -> String {
    let low = band
        .checked_sub(1)
        .and_then(|i| edges.get(i))
        .copied()
        .unwrap_or(0);
    match edges.get(band) {
        Some(high) => format!("{low}-{high}"),
        None => format!("{low}+"),
    }
}

/// How status time is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusBy {
    /// One set of rows per agent.
    Agent,
    /// One set of rows per local hour, all agents together.
    Hour,
}

/// Time spent in one status.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusTimeRow {
    /// The agent id, or `YYYY-MM-DD HH:00`.
    pub key: String,
    pub status: AgentStatus,
    pub ms: u64,
    /// Share of the key's tracked time.
    pub percent: Option<f64>,
    /// Times the status was entered in the period.
    pub count: u64,
}

impl StatusTimeRow {
    pub fn average_ms(&self) -> Option<u64> {
        self.ms.checked_div(self.count)
    }
}

impl CsvRow for StatusTimeRow {
    const HEADER: &'static [&'static str] =
        &["key", "status", "seconds", "percent", "count", "avg_s"];
    fn fields(&self) -> Vec<String> {
        vec![
            self.key.clone(),
            self.status.to_string(),
            decimal(Some(self.ms as f64 / 1000.0)),
            decimal(self.percent),
            self.count.to_string(),
            decimal(self.average_ms().map(|v| v as f64 / 1000.0)),
        ]
    }
}

type StatusTable = BTreeMap<(String, AgentStatus), (u64, u64)>;

/// Time per status (seconds, percent, count, average), by agent or hour.
/// Each agent's time runs from one status record to the next, the last one
/// to the period's end.
pub fn agent_status_time(
    records: &[LogRecord],
    period: &Period,
    by: StatusBy,
) -> Vec<StatusTimeRow> {
    let mut open: BTreeMap<&AgentId, (UnixMs, AgentStatus)> = BTreeMap::new();
    let mut table = StatusTable::new();
    for r in records {
        if let QueueEvent::Status { agent, to, .. } = &r.event {
            if let Some((start, status)) = open.insert(agent, (r.at, *to)) {
                add_span(&mut table, period, by, agent, status, start, r.at);
            }
        }
    }
    for (agent, (start, status)) in open {
        add_span(&mut table, period, by, agent, status, start, period.until);
    }
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for ((key, _), (ms, _)) in &table {
        *totals.entry(key.as_str()).or_default() += ms;
    }
    table
        .iter()
        .map(|((key, status), (ms, count))| StatusTimeRow {
            key: key.clone(),
            status: *status,
            ms: *ms,
            percent: percent(*ms, totals.get(key.as_str()).copied().unwrap_or(0)),
            count: *count,
        })
        .collect()
}

fn add_span(
    table: &mut StatusTable,
    period: &Period,
    by: StatusBy,
    agent: &AgentId,
    status: AgentStatus,
    start: UnixMs,
    end: UnixMs,
) {
    let (from, until) = (start.max(period.from), end.min(period.until));
    if from >= until {
        return;
    }
    let mut entered = period.contains(start);
    let mut cur = from;
    while cur < until {
        let (key, next) = match by {
            StatusBy::Agent => (agent.to_string(), until),
            StatusBy::Hour => {
                let (day, hour) = period.offset.day_hour(cur);
                let key = format!("{} {hour:02}:00", date_string(day));
                (key, period.offset.hour_end(cur).min(until))
            }
        };
        let cell = table.entry((key, status)).or_default();
        cell.0 = cell.0.saturating_add(next - cur);
        if entered {
            cell.1 += 1;
            entered = false;
        }
        cur = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::stats::csv::to_csv;
    use crate::acd::types::CallId;

    const HOUR: u64 = 3_600_000;
    /// 2024-03-01 00:00 UTC.
    const DAY0: u64 = 19_783 * 24 * HOUR;

    fn rec(at: UnixMs, event: QueueEvent) -> LogRecord {
        LogRecord { at, event }
    }

    fn call_life(call: &str, arrive: UnixMs, wait: u64, talk: u64) -> Vec<LogRecord> {
        let (c, g, a) = (
            CallId::from(call),
            GroupId::from("sales"),
            AgentId::from("alice"),
        );
        vec![
            rec(
                arrive,
                QueueEvent::Enter {
                    call: c.clone(),
                    group: g.clone(),
                    caller: "x".into(),
                },
            ),
            rec(
                arrive,
                QueueEvent::Offer {
                    call: c.clone(),
                    group: g.clone(),
                    agent: a.clone(),
                },
            ),
            rec(
                arrive + wait,
                QueueEvent::Answer {
                    call: c.clone(),
                    group: g.clone(),
                    agent: a.clone(),
                    wait_ms: wait,
                },
            ),
            rec(
                arrive + wait + talk,
                QueueEvent::End {
                    call: c,
                    group: g,
                    agent: a,
                    talk_ms: talk,
                },
            ),
        ]
    }

    fn sample() -> Vec<LogRecord> {
        let mut records = Vec::new();
        // 23:59:50 UTC on day 0: answered 20 s later, in the next hour and day.
        records.extend(call_life("c1", DAY0 + 24 * HOUR - 10_000, 20_000, 45_000));
        records.extend(call_life("c2", DAY0 + 3 * HOUR, 5_000, 200_000));
        let g = GroupId::from("sales");
        records.push(rec(
            DAY0 + 3 * HOUR + 1,
            QueueEvent::Enter {
                call: "c3".into(),
                group: g.clone(),
                caller: "y".into(),
            },
        ));
        records.push(rec(
            DAY0 + 3 * HOUR + 1,
            QueueEvent::Offer {
                call: "c3".into(),
                group: g.clone(),
                agent: "alice".into(),
            },
        ));
        records.push(rec(
            DAY0 + 3 * HOUR + 15_001,
            QueueEvent::OfferEnd {
                call: "c3".into(),
                group: g.clone(),
                agent: "alice".into(),
                outcome: OfferOutcome::NoAnswer,
            },
        ));
        records.push(rec(
            DAY0 + 3 * HOUR + 30_001,
            QueueEvent::Abandon {
                call: "c3".into(),
                group: g,
                wait_ms: 30_000,
            },
        ));
        records
    }

    fn period(offset: UtcOffset) -> Period {
        Period {
            from: DAY0,
            until: DAY0 + 2 * 24 * HOUR,
            offset,
        }
    }

    #[test]
    fn calls_count_on_the_day_and_hour_they_arrived() {
        let days = by_date(&sample(), &period(UtcOffset::UTC));
        let got: Vec<_> = days
            .iter()
            .map(|d| {
                (
                    d.date.as_str(),
                    d.counts.entered,
                    d.counts.answered,
                    d.counts.abandoned,
                )
            })
            .collect();
        // c1's talk ended on day 1: talk counts there, the call on day 0.
        assert_eq!(got, [("2024-03-01", 3, 2, 1), ("2024-03-02", 0, 0, 0)]);
        assert_eq!(days[1].counts.ended, 1);
        let hours = by_hour(&sample(), &period(UtcOffset::JST));
        let got: Vec<_> = hours
            .iter()
            .map(|h| (h.date.as_str(), h.hour, h.counts.entered))
            .collect();
        assert_eq!(
            got,
            [
                ("2024-03-01", 12, 2),
                ("2024-03-02", 8, 1),
                ("2024-03-02", 9, 0)
            ]
        );
        let csv = to_csv(&hours);
        assert!(csv.starts_with("date,hour,group,entered,answered,abandoned,"));
        assert!(
            csv.contains("\r\n2024-03-01,12,sales,2,1,1,0,0,0,0,50.0,5.0,200.0\r\n"),
            "{csv}"
        );
    }

    #[test]
    fn agents_bands_and_their_csv() {
        let agents = by_agent(&sample(), &period(UtcOffset::UTC));
        assert_eq!(agents.len(), 1);
        let a = &agents[0];
        assert_eq!(
            (a.offered, a.answered, a.missed, a.ended, a.talk_ms),
            (3, 2, 1, 2, 245_000)
        );
        assert_eq!(
            to_csv(&agents),
            "agent,group,offered,answered,missed,talk_s,avg_talk_s,transferred\r\n\
             alice,sales,3,2,1,245.0,122.5,0\r\n"
        );
        let bands = by_talk_band(&sample(), &period(UtcOffset::UTC), &[60, 180]);
        let got: Vec<_> = bands
            .iter()
            .map(|b| (b.band.as_str(), b.calls, b.percent))
            .collect();
        assert_eq!(
            got,
            [
                ("0-60", 1, Some(50.0)),
                ("60-180", 0, Some(0.0)),
                ("180+", 1, Some(50.0))
            ]
        );
    }

    #[test]
    fn status_time_by_agent_and_by_hour() {
        let status = |at, agent: &str, to| {
            rec(
                at,
                QueueEvent::Status {
                    agent: agent.into(),
                    from: AgentStatus::Offline,
                    to,
                    reason: None,
                },
            )
        };
        let records = [
            // Before the period: alice is idle when it starts.
            status(DAY0 - HOUR, "alice", AgentStatus::Idle),
            status(DAY0 + HOUR / 2, "alice", AgentStatus::Talking),
            status(DAY0 + HOUR + HOUR / 2, "alice", AgentStatus::Idle),
            status(DAY0 + HOUR / 2, "bob", AgentStatus::Paused),
        ];
        let p = Period {
            from: DAY0,
            until: DAY0 + 2 * HOUR,
            offset: UtcOffset::UTC,
        };
        let rows = agent_status_time(&records, &p, StatusBy::Agent);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.key.as_str(), r.status, r.ms / 60_000, r.count, r.percent))
            .collect();
        assert_eq!(
            got,
            [
                ("alice", AgentStatus::Idle, 60, 1, Some(50.0)),
                ("alice", AgentStatus::Talking, 60, 1, Some(50.0)),
                ("bob", AgentStatus::Paused, 90, 1, Some(100.0)),
            ]
        );
        assert_eq!(rows[1].average_ms(), Some(HOUR));
        let hours = agent_status_time(&records, &p, StatusBy::Hour);
        let got: Vec<_> = hours
            .iter()
            .map(|r| (r.key.as_str(), r.status, r.ms / 60_000, r.count))
            .collect();
        assert_eq!(
            got,
            [
                ("2024-03-01 00:00", AgentStatus::Idle, 30, 0),
                ("2024-03-01 00:00", AgentStatus::Talking, 30, 1),
                ("2024-03-01 00:00", AgentStatus::Paused, 30, 1),
                ("2024-03-01 01:00", AgentStatus::Idle, 30, 1),
                ("2024-03-01 01:00", AgentStatus::Talking, 30, 0),
                ("2024-03-01 01:00", AgentStatus::Paused, 60, 0),
            ]
        );
        assert!(to_csv(&hours).starts_with("key,status,seconds,percent,count,avg_s\r\n"));
    }
}
