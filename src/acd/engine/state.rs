//! What the engine holds about each agent, call, offer and timer. Each
//! call is in exactly one [`CallState`]; an agent's reservations are the
//! offers it holds, and what it shows is derived from its state by
//! [`AgentState::status`], never stored apart from it.
//!
//! What this module must not do: change state (the engine's handlers do)
//! or emit actions.

use std::collections::BTreeSet;

use crate::acd::types::{
    AgentId, AgentStatus, CallId, CampaignId, OfferId, PauseReasonId, TimerId, UnixMs,
};

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TimerPurpose {
    /// The offer's ring time is over.
    Ring(OfferId),
    /// The call's queue timeout.
    QueueTimeout(CallId),
    /// Ring-then-queue: the ringing phase is over, the caller is answered.
    RingPhaseEnd(CallId),
    /// Time for the periodic announcement.
    Announce(CallId),
    WrapUpEnd(usize),
    AutoUnpause(usize),
    /// The agent may be offered calls again after a miss or a busy phone.
    RestEnd(usize),
    ErrorRetry(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pause {
    pub reason: PauseReasonId,
    pub auto_unpause: Option<TimerId>,
}

/// One agent.
#[derive(Debug, Clone)]
pub(super) struct AgentState {
    pub id: AgentId,
    /// The phone the agent is bound to (configured or hot-desk).
    pub bound: Option<String>,
    /// Whether that phone is registered (kept in step by the engine).
    pub phone_up: bool,
    pub paused: Option<Pause>,
    /// After-call work, with its timer when it has one.
    pub wrap_up: Option<Option<TimerId>>,
    /// Error status, with its retry timer when it has one.
    pub error: Option<Option<TimerId>>,
    /// Resting after a miss: no offers until the timer fires.
    pub rest: Option<TimerId>,
    /// Pending offers (reservations).
    pub offers: BTreeSet<OfferId>,
    /// Connected calls.
    pub calls: BTreeSet<CallId>,
    /// Logged into a campaign's open line (`990`).
    pub campaign: Option<CampaignId>,
    pub last_call_end: Option<UnixMs>,
    pub talk_ms: u64,
    /// Missed offers in a row.
    pub misses: u32,
    /// The status last announced, with its reason.
    pub shown: (AgentStatus, Option<String>),
    /// (group index, member index) of every group the agent is in.
    pub memberships: Vec<(usize, usize)>,
}

impl AgentState {
    pub fn new(id: AgentId, bound: Option<String>) -> AgentState {
        AgentState {
            id,
            bound,
            phone_up: false,
            paused: None,
            wrap_up: None,
            error: None,
            rest: None,
            offers: BTreeSet::new(),
            calls: BTreeSet::new(),
            campaign: None,
            last_call_end: None,
            talk_ms: 0,
            misses: 0,
            shown: (AgentStatus::Offline, None),
            memberships: Vec::new(),
        }
    }

    /// Bound to a registered phone.
    pub fn online(&self) -> bool {
        self.bound.is_some() && self.phone_up
    }

    /// Online and not stopped by a pause, after-call work or an error.
    pub fn ready(&self) -> bool {
        self.online() && self.paused.is_none() && self.wrap_up.is_none() && self.error.is_none()
    }

    /// What the agent shows, with the reason for paused and error.
    pub fn status(&self, held: impl Fn(&CallId) -> bool) -> (AgentStatus, Option<String>) {
        if !self.calls.is_empty() {
            if self.calls.iter().all(held) {
                return (AgentStatus::OnHold, None);
            }
            return (AgentStatus::Talking, None);
        }
        if !self.offers.is_empty() {
            return (AgentStatus::Ringing, None);
        }
        if !self.online() {
            return (AgentStatus::Offline, None);
        }
        if self.error.is_some() {
            return (AgentStatus::Error, Some("unreachable".to_string()));
        }
        if let Some(p) = &self.paused {
            return (AgentStatus::Paused, Some(p.reason.0.clone()));
        }
        if self.wrap_up.is_some() {
            return (AgentStatus::WrapUp, None);
        }
        (AgentStatus::Idle, None)
    }
}

/// Where a call is routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    /// Queued in the group with this index.
    Group(usize),
    /// A campaign call holding a reservation.
    Campaign {
        campaign: CampaignId,
        wrap_up_secs: Option<u32>,
    },
}

/// The one state a call is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CallState {
    /// In the queue, offered to nobody.
    Waiting,
    /// Ringing these offers (more than one only for ring all).
    Offering(BTreeSet<OfferId>),
    /// Answered by an agent.
    Connected {
        agent: usize,
        offer: OfferId,
        answered_at: UnixMs,
        held: bool,
    },
}

/// One call the engine knows.
#[derive(Debug, Clone)]
pub(super) struct CallEntry {
    /// Arrival order (FIFO key).
    pub seq: u64,
    pub route: Route,
    pub entered_at: UnixMs,
    pub state: CallState,
    /// Ring-then-queue: still ringing, the caller not answered yet.
    pub ring_phase: bool,
    pub timeout_timer: Option<TimerId>,
    pub phase_timer: Option<TimerId>,
    pub announce_timer: Option<TimerId>,
    /// Agents that did not take this call since the last round.
    pub tried: BTreeSet<usize>,
}

impl CallEntry {
    pub fn group(&self) -> Option<usize> {
        match self.route {
            Route::Group(g) => Some(g),
            Route::Campaign { .. } => None,
        }
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, CallState::Connected { .. })
    }
}

/// A pending offer: one agent reserved for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Offer {
    pub call: CallId,
    pub agent: usize,
    pub ring_timer: TimerId,
    /// The call's route (a group's index or the campaign).
    pub route: Route,
}

impl Offer {
    pub fn is_campaign(&self) -> bool {
        matches!(self.route, Route::Campaign { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_calls_offers_then_stops() {
        let mut a = AgentState::new("a".into(), Some("1001".into()));
        let none = |_: &CallId| false;
        assert_eq!(a.status(none).0, AgentStatus::Offline);
        a.phone_up = true;
        assert_eq!(a.status(none).0, AgentStatus::Idle);
        a.wrap_up = Some(None);
        assert_eq!(a.status(none).0, AgentStatus::WrapUp);
        a.paused = Some(Pause {
            reason: "lunch".into(),
            auto_unpause: None,
        });
        assert_eq!(a.status(none), (AgentStatus::Paused, Some("lunch".into())));
        a.error = Some(None);
        assert_eq!(a.status(none).0, AgentStatus::Error);
        assert!(!a.ready());
        a.offers.insert(OfferId(1));
        assert_eq!(a.status(none).0, AgentStatus::Ringing);
        a.calls.insert("c".into());
        assert_eq!(a.status(none).0, AgentStatus::Talking);
        assert_eq!(a.status(|_| true).0, AgentStatus::OnHold);
    }
}
