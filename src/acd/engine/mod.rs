//! The ACD engine: a sans-IO state machine over agents, groups, waiting
//! calls and offers. [`Engine::handle`] takes one [`Event`] and the current
//! time and returns the [`Action`]s to carry out; one task owns the engine
//! and feeds it, so there are no locks and no races inside.
//!
//! Reserve-then-commit: a waiting call is offered by reserving agents (an
//! offer each); an agent's reservations count against the calls it may
//! hold, so it is never offered more than it may take. The first answer
//! commits the call to that agent and withdraws every other offer; an
//! answer that arrives for a withdrawn offer is dropped (ACK and BYE). An
//! offer that ends any other way puts the call back at its place in the
//! queue: no call is lost when an agent leg fails.
//!
//! After every event the engine offers what can be offered (oldest call
//! first) and announces every agent status that changed.
//!
//! What this module must not do: read the clock, touch SIP, media or the
//! store, or keep anything behind a lock. Handlers live in `agents.rs`
//! (agent statuses), `calls.rs` (a call's life in the queue) and
//! `offers.rs` (dispatch, reservations, campaigns).

mod agents;
mod calls;
mod offers;
mod state;

#[cfg(test)]
mod agent_tests;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::SeedableRng;

use self::state::{AgentState, CallEntry, CallState, Offer, Route, TimerPurpose};
use super::config::AcdConfig;
use super::event::{Action, Event};
use super::log::{LogRecord, QueueEvent};
use super::stats::Tally;
use super::strategy::StrategyState;
use super::types::{
    AgentId, AgentStatus, CallId, CampaignId, GroupId, OfferId, PauseReasonId, TimerId, UnixMs,
};

/// What the engine remembers per group besides its configuration.
#[derive(Debug, Clone)]
struct GroupState {
    strategy: StrategyState,
    /// Running average wait of answered calls (estimated-wait prompts).
    avg_wait_ms: Option<u64>,
}

/// The ACD state machine. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    config: AcdConfig,
    agents: Vec<AgentState>,
    agent_ix: BTreeMap<AgentId, usize>,
    groups: Vec<GroupState>,
    group_ix: BTreeMap<GroupId, usize>,
    /// Registered extensions.
    phones: BTreeSet<String>,
    calls: BTreeMap<CallId, CallEntry>,
    /// Calls in [`CallState::Waiting`], by arrival order.
    waiting: BTreeMap<u64, CallId>,
    /// Pending offers.
    offers: BTreeMap<OfferId, Offer>,
    /// Answered offers of connected calls (a repeated answer is ignored).
    committed: BTreeMap<OfferId, CallId>,
    timers: BTreeMap<TimerId, TimerPurpose>,
    next_seq: u64,
    next_offer: u64,
    next_timer: u64,
    rng: StdRng,
    tally: Tally,
    now: UnixMs,
    out: Vec<Action>,
}

/// One agent as the engine sees it (for the console and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    pub id: AgentId,
    pub status: AgentStatus,
    /// The pause reason or the error, for those statuses.
    pub reason: Option<String>,
    pub extension: Option<String>,
    pub online: bool,
    pub paused: Option<PauseReasonId>,
    pub wrap_up: bool,
    pub error: bool,
    pub resting: bool,
    /// Pending offers (reservations).
    pub offers: usize,
    /// Connected calls.
    pub calls: usize,
    pub campaign: Option<CampaignId>,
    pub talk_ms: u64,
    pub last_call_end: Option<UnixMs>,
    pub misses: u32,
}

/// A call in a group that no agent has answered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingCall {
    pub call: CallId,
    pub entered_at: UnixMs,
    /// 1 = next to be answered.
    pub position: u32,
    /// Agents ringing for it right now.
    pub ringing: usize,
}

impl Engine {
    /// A new engine: every agent offline (phones arrive as
    /// [`Event::PhoneRegistered`]), statically bound agents bound. `seed`
    /// drives the random strategy; `now` starts the statistics.
    pub fn new(config: AcdConfig, seed: u64, now: UnixMs) -> Engine {
        let mut agents: Vec<AgentState> = config
            .agents
            .iter()
            .map(|a| AgentState::new(a.id.clone(), a.extension.clone()))
            .collect();
        let agent_ix: BTreeMap<AgentId, usize> = config
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect();
        for (g, group) in config.groups.iter().enumerate() {
            for (m, member) in group.members.iter().enumerate() {
                if let Some(agent) = agent_ix.get(&member.agent).and_then(|&i| agents.get_mut(i)) {
                    agent.memberships.push((g, m));
                }
            }
        }
        let groups = config
            .groups
            .iter()
            .map(|g| GroupState {
                strategy: StrategyState::new(g.members.len()),
                avg_wait_ms: None,
            })
            .collect();
        let group_ix = config
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.id.clone(), i))
            .collect();
        Engine {
            config,
            agents,
            agent_ix,
            groups,
            group_ix,
            phones: BTreeSet::new(),
            calls: BTreeMap::new(),
            waiting: BTreeMap::new(),
            offers: BTreeMap::new(),
            committed: BTreeMap::new(),
            timers: BTreeMap::new(),
            next_seq: 0,
            next_offer: 0,
            next_timer: 0,
            rng: StdRng::seed_from_u64(seed),
            tally: Tally::new(now),
            now,
            out: Vec::new(),
        }
    }

    /// Handle one event at `now`; returns what to do, in order.
    pub fn handle(&mut self, event: Event, now: UnixMs) -> Vec<Action> {
        self.now = now;
        match event {
            Event::CallArrived {
                call,
                group,
                caller,
            } => self.on_call_arrived(call, &group, caller),
            Event::CallRefused {
                call,
                group,
                caller,
                reason,
            } => self.log(QueueEvent::Refused {
                call,
                group,
                caller,
                reason,
            }),
            Event::CallerHungUp { call } | Event::CallEnded { call } => self.on_call_gone(&call),
            Event::CallTransferred { call, to } => self.on_transferred(&call, to),
            Event::CallHeld { call } => self.set_held(&call, true),
            Event::CallResumed { call } => self.set_held(&call, false),
            Event::AgentLeg { offer, outcome } => self.on_agent_leg(offer, outcome),
            Event::AgentLogin {
                agent,
                extension,
                pin,
            } => self.on_login(agent, extension, pin.as_deref()),
            Event::AgentLogout { agent } => self.with_agent(&agent, Self::logout),
            Event::PhoneRegistered { extension } => self.on_phone(extension, true),
            Event::PhoneUnregistered { extension } => self.on_phone(extension, false),
            Event::Pause { agent, reason } => self.on_pause(&agent, reason),
            Event::Unpause { agent } => self.with_agent(&agent, Self::unpause),
            Event::Ready { agent } => self.with_agent(&agent, Self::ready),
            Event::TimerFired { timer } => self.on_timer(timer),
            Event::CampaignReserve {
                campaign,
                call,
                agents,
                ring_secs,
                wrap_up_secs,
            } => self.on_campaign_reserve(campaign, call, &agents, ring_secs, wrap_up_secs),
            Event::CampaignLogin { agent, campaign } => {
                self.on_campaign_login(&agent, Some(campaign))
            }
            Event::CampaignLogout { agent } => self.on_campaign_login(&agent, None),
        }
        self.dispatch();
        self.announce_statuses();
        std::mem::take(&mut self.out)
    }

    fn with_agent(&mut self, agent: &AgentId, f: fn(&mut Self, usize)) {
        if let Some(&a) = self.agent_ix.get(agent) {
            f(self, a);
        }
    }

    fn on_timer(&mut self, timer: TimerId) {
        let Some(purpose) = self.timers.remove(&timer) else {
            return; // cancelled, or fired twice
        };
        match purpose {
            TimerPurpose::Ring(offer) => self.on_ring_timeout(offer),
            TimerPurpose::QueueTimeout(call) => self.on_queue_timeout(&call),
            TimerPurpose::RingPhaseEnd(call) => self.on_ring_phase_end(&call),
            TimerPurpose::Announce(call) => self.on_announce(&call),
            TimerPurpose::WrapUpEnd(a) => self.end_wrap_up(a),
            TimerPurpose::AutoUnpause(a) => self.unpause(a),
            TimerPurpose::RestEnd(a) => {
                if let Some(agent) = self.agents.get_mut(a) {
                    agent.rest = None;
                }
            }
            TimerPurpose::ErrorRetry(a) => {
                if let Some(agent) = self.agents.get_mut(a) {
                    agent.error = None;
                }
            }
        }
    }

    /// Start a timer firing `after_ms` from now.
    fn set_timer(&mut self, after_ms: u64, purpose: TimerPurpose) -> TimerId {
        self.next_timer = self.next_timer.wrapping_add(1);
        let timer = TimerId(self.next_timer);
        self.timers.insert(timer, purpose);
        let at = self.now.saturating_add(after_ms);
        self.out.push(Action::SetTimer { timer, at });
        timer
    }

    fn cancel_timer(&mut self, timer: Option<TimerId>) {
        if let Some(timer) = timer {
            if self.timers.remove(&timer).is_some() {
                self.out.push(Action::CancelTimer { timer });
            }
        }
    }

    /// Append to the log, fold into the live statistics, hand to the store.
    fn log(&mut self, event: QueueEvent) {
        let record = LogRecord {
            at: self.now,
            event,
        };
        self.tally.apply(&record);
        self.out.push(Action::Log(record));
    }

    fn held(&self, call: &CallId) -> bool {
        matches!(
            self.calls.get(call).map(|c| &c.state),
            Some(CallState::Connected { held: true, .. })
        )
    }

    /// Announce (and log) every agent whose shown status changed.
    fn announce_statuses(&mut self) {
        for a in 0..self.agents.len() {
            let Some(agent) = self.agents.get(a) else {
                continue;
            };
            let now_shown = agent.status(|c| self.held(c));
            if now_shown == agent.shown {
                continue;
            }
            let (from, _) = agent.shown.clone();
            let id = agent.id.clone();
            let (to, reason) = now_shown.clone();
            if let Some(agent) = self.agents.get_mut(a) {
                agent.shown = now_shown;
            }
            self.out.push(Action::AgentStatusChanged {
                agent: id.clone(),
                from,
                to,
                reason: reason.clone(),
            });
            self.log(QueueEvent::Status {
                agent: id,
                from,
                to,
                reason,
            });
        }
    }

    // ----- queries -----

    /// The validated configuration the engine runs.
    pub fn config(&self) -> &AcdConfig {
        &self.config
    }

    /// One agent's view, if the agent exists.
    pub fn agent(&self, id: &AgentId) -> Option<AgentView> {
        let a = self.agent_ix.get(id).and_then(|&i| self.agents.get(i))?;
        let (status, reason) = a.status(|c| self.held(c));
        Some(AgentView {
            id: a.id.clone(),
            status,
            reason,
            extension: a.bound.clone(),
            online: a.online(),
            paused: a.paused.as_ref().map(|p| p.reason.clone()),
            wrap_up: a.wrap_up.is_some(),
            error: a.error.is_some(),
            resting: a.rest.is_some(),
            offers: a.offers.len(),
            calls: a.calls.len(),
            campaign: a.campaign.clone(),
            talk_ms: a.talk_ms,
            last_call_end: a.last_call_end,
            misses: a.misses,
        })
    }

    /// Every agent's view, in configuration order.
    pub fn agents(&self) -> Vec<AgentView> {
        self.agents
            .iter()
            .filter_map(|a| self.agent(&a.id))
            .collect()
    }

    /// The calls of `group` no agent has answered yet, oldest first.
    pub fn waiting_calls(&self, group: &GroupId) -> Vec<WaitingCall> {
        let Some(&g) = self.group_ix.get(group) else {
            return Vec::new();
        };
        let mut list: Vec<(&CallId, &CallEntry)> = self
            .calls
            .iter()
            .filter(|(_, c)| c.route == Route::Group(g) && !c.is_connected())
            .collect();
        list.sort_by_key(|(_, c)| c.seq);
        list.into_iter()
            .zip(1u32..)
            .map(|((id, c), position)| WaitingCall {
                call: id.clone(),
                entered_at: c.entered_at,
                position,
                ringing: match &c.state {
                    CallState::Offering(o) => o.len(),
                    _ => 0,
                },
            })
            .collect()
    }

    /// The live statistics folded from every record this engine logged
    /// (plus what [`Engine::restore_tally`] replayed).
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Start the live statistics afresh (e.g. at midnight).
    pub fn reset_tally(&mut self, now: UnixMs) {
        self.tally = Tally::new(now);
    }

    /// After a restart: fold the stored records since `since` so the live
    /// numbers continue where they were.
    pub fn restore_tally(&mut self, since: UnixMs, records: &[LogRecord]) {
        let mut tally = Tally::new(since);
        for r in records.iter().filter(|r| r.at >= since) {
            tally.apply(r);
        }
        self.tally = tally;
    }

    /// Number of calls the engine holds (waiting, ringing or connected).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Number of timers the engine is waiting for.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Check the engine's internal consistency: every call in exactly one
    /// state and place, every reservation held by both its agent and its
    /// call, no reservation on an agent who may not take calls.
    pub fn audit(&self) -> Result<(), String> {
        self.audit_calls()?;
        self.audit_agents()
    }

    fn audit_calls(&self) -> Result<(), String> {
        for (seq, id) in &self.waiting {
            match self.calls.get(id) {
                Some(c) if c.seq == *seq && c.state == CallState::Waiting => {}
                _ => return Err(format!("waiting list entry {id} is not a waiting call")),
            }
        }
        for (id, c) in &self.calls {
            match &c.state {
                CallState::Waiting => {
                    if c.group().is_none() || self.waiting.get(&c.seq) != Some(id) {
                        return Err(format!("waiting call {id} is not in the waiting list"));
                    }
                }
                CallState::Offering(offers) => {
                    if offers.is_empty() {
                        return Err(format!("call {id} is offering nothing"));
                    }
                    for o in offers {
                        let ok = self.offers.get(o).is_some_and(|offer| &offer.call == id);
                        if !ok {
                            return Err(format!("call {id} holds a stale offer {o:?}"));
                        }
                    }
                }
                CallState::Connected { agent, offer, .. } => {
                    let ok = self
                        .agents
                        .get(*agent)
                        .is_some_and(|a| a.calls.contains(id))
                        && self.committed.get(offer) == Some(id);
                    if !ok {
                        return Err(format!("connected call {id} not held by its agent"));
                    }
                }
            }
        }
        Ok(())
    }

    fn audit_agents(&self) -> Result<(), String> {
        for (o, offer) in &self.offers {
            let agent = self.agents.get(offer.agent).ok_or("offer to no agent")?;
            if !agent.offers.contains(o) {
                return Err(format!("offer {o:?} not held by agent {}", agent.id));
            }
            if !agent.ready() {
                return Err(format!("agent {} holds an offer while stopped", agent.id));
            }
        }
        for a in &self.agents {
            for o in &a.offers {
                if self.offers.get(o).map(|x| x.agent) != self.agent_ix.get(&a.id).copied() {
                    return Err(format!("agent {} holds a stale offer", a.id));
                }
            }
            for c in &a.calls {
                if !self.calls.get(c).is_some_and(CallEntry::is_connected) {
                    return Err(format!("agent {} holds a call that is not connected", a.id));
                }
            }
        }
        Ok(())
    }
}
