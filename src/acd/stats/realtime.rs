//! The realtime view per group for the supervisor dashboard: the live
//! tally (answered, abandoned, overflow, timeout, refused, answer rate,
//! 5-minute series) with the engine's present state (agents online and by
//! status, waiting calls and their waits, members with status and level).
//!
//! What this module must not do: count calls itself; counts come from the
//! tally, present state from the engine's public queries.

use super::{GroupCounts, SeriesPoint};
use crate::acd::engine::Engine;
use crate::acd::types::{AgentId, AgentStatus, CallId, GroupId, UnixMs};

/// One waiting call as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingRow {
    pub call: CallId,
    pub position: u32,
    pub wait_ms: u64,
    /// Agents ringing for it right now.
    pub ringing: usize,
}

/// One member of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub agent: AgentId,
    pub name: String,
    pub level: u8,
    pub status: AgentStatus,
    /// The pause reason or error.
    pub reason: Option<String>,
}

/// Agents of the group by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentCounts {
    pub all: usize,
    pub online: usize,
    /// Talking, on hold or ringing.
    pub talking: usize,
    pub idle: usize,
    pub paused: usize,
    pub wrap_up: usize,
    pub error: usize,
}

/// The realtime view of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRealtime {
    pub group: GroupId,
    pub name: String,
    pub colour: Option<String>,
    pub counts: GroupCounts,
    pub answer_rate: Option<f64>,
    pub agents: AgentCounts,
    pub members: Vec<MemberRow>,
    pub waiting: Vec<WaitingRow>,
    pub longest_wait_ms: u64,
    /// Answer rate per 5 minutes since the tally started.
    pub series: Vec<SeriesPoint>,
}

/// The realtime view of every group, in configuration order.
pub fn snapshot(engine: &Engine, now: UnixMs) -> Vec<GroupRealtime> {
    let config = engine.config();
    config
        .groups
        .iter()
        .map(|g| {
            let members: Vec<MemberRow> = g
                .members
                .iter()
                .filter_map(|m| {
                    let view = engine.agent(&m.agent)?;
                    let name = config
                        .agents
                        .iter()
                        .find(|a| a.id == m.agent)
                        .map(|a| a.name.clone())
                        .unwrap_or_default();
                    Some(MemberRow {
                        agent: m.agent.clone(),
                        name,
                        level: m.level,
                        status: view.status,
                        reason: view.reason,
                    })
                })
                .collect();
            let waiting: Vec<WaitingRow> = engine
                .waiting_calls(&g.id)
                .into_iter()
                .map(|w| WaitingRow {
                    call: w.call,
                    position: w.position,
                    wait_ms: now.saturating_sub(w.entered_at),
                    ringing: w.ringing,
                })
                .collect();
            let counts = engine.tally().group(&g.id);
            GroupRealtime {
                group: g.id.clone(),
                name: g.name.clone(),
                colour: g.colour.clone(),
                counts,
                answer_rate: counts.answer_rate(),
                agents: agent_counts(&members),
                longest_wait_ms: waiting.iter().map(|w| w.wait_ms).max().unwrap_or(0),
                members,
                waiting,
                series: engine.tally().series(&g.id),
            }
        })
        .collect()
}

fn agent_counts(members: &[MemberRow]) -> AgentCounts {
    let mut c = AgentCounts {
        all: members.len(),
        ..AgentCounts::default()
    };
    for m in members {
        if m.status != AgentStatus::Offline {
            c.online += 1;
        }
        match m.status {
            s if s.counts_as_talking() => c.talking += 1,
            AgentStatus::Idle => c.idle += 1,
            AgentStatus::Paused => c.paused += 1,
            AgentStatus::WrapUp => c.wrap_up += 1,
            AgentStatus::Error => c.error += 1,
            _ => {}
        }
    }
    c
}
