//! Dispatch and reservations: which waiting call is offered to which agent,
//! the offer's life (ringing, answered, not taken, withdrawn), and campaign
//! calls reserving agents the same way.
//!
//! The level rule: a group offers its calls only to its lowest skill level
//! in play. A level is in play while one of its agents is ready and not
//! taken up by calls: an agent who is ringing, or resting after an offer it
//! did not take, keeps its level in play, so a call never falls through to
//! a higher level number because a lower-level agent is ringing or did not
//! answer. Talking to capacity, after-call work, pause, error and logout
//! take an agent out of play. Weighted groups use the levels as shares
//! across every level instead.
//!
//! What this module must not do: play prompts or end calls (`calls.rs`),
//! or change an agent's stops except through the outcome of an offer.

use super::state::{AgentState, CallState, Offer, Route, TimerPurpose};
use super::Engine;
use crate::acd::event::{Action, CancelReason, LegOutcome, OfferMode, OfferSource};
use crate::acd::log::QueueEvent;
use crate::acd::strategy::{self, Candidate};
use crate::acd::types::{AgentId, CallId, CampaignId, OfferId, OfferOutcome, Strategy};

const MS: u64 = 1000;

/// How an offer rings.
#[derive(Clone)]
struct Ringing {
    mode: OfferMode,
    secs: u32,
    display: Option<String>,
}

impl Engine {
    /// Offer waiting calls, oldest first, while agents are free. A group
    /// whose oldest waiting call finds nobody is done (FIFO per group).
    pub(super) fn dispatch(&mut self) {
        let order: Vec<(u64, CallId)> = self.waiting.iter().map(|(s, c)| (*s, c.clone())).collect();
        let mut blocked = std::collections::BTreeSet::new();
        for (seq, call) in order {
            let Some(g) = self.calls.get(&call).and_then(|c| c.group()) else {
                continue;
            };
            if blocked.contains(&g) {
                continue;
            }
            let picks = self.choose(&call, g);
            if picks.is_empty() {
                blocked.insert(g);
                continue;
            }
            self.waiting.remove(&seq);
            let cfg = self.config.groups.get(g);
            let ring = Ringing {
                mode: OfferMode::Ring,
                secs: cfg.map_or(1, |c| c.ring_secs),
                display: cfg.and_then(|c| c.ring_text.clone()),
            };
            let offers = picks
                .into_iter()
                .map(|a| self.open_offer(&call, a, Route::Group(g), ring.clone()))
                .collect();
            if let Some(entry) = self.calls.get_mut(&call) {
                entry.state = CallState::Offering(offers);
            }
        }
    }

    /// Whether a new call of group `g` could be offered right away.
    pub(super) fn has_candidates(&self, g: usize) -> bool {
        let max = self.max_calls(g);
        self.level_pool(g)
            .iter()
            .any(|c| self.offerable(c.agent, max))
    }

    fn max_calls(&self, g: usize) -> usize {
        self.config
            .groups
            .get(g)
            .map_or(1, |c| usize::try_from(c.max_calls_per_agent).unwrap_or(1))
    }

    /// The group's members at its lowest level in play (all levels for
    /// weighted), in member order.
    fn level_pool(&self, g: usize) -> Vec<Candidate> {
        let Some(cfg) = self.config.groups.get(g) else {
            return Vec::new();
        };
        let max = self.max_calls(g);
        let holders: Vec<Candidate> = cfg
            .members
            .iter()
            .enumerate()
            .filter_map(|(m, member)| {
                let a = *self.agent_ix.get(&member.agent)?;
                let agent = self.agents.get(a)?;
                self.in_play(agent, max).then_some(Candidate {
                    agent: a,
                    member: m,
                    level: member.level,
                    last_call_end: agent.last_call_end,
                    talk_ms: agent.talk_ms,
                })
            })
            .collect();
        if cfg.strategy == Strategy::Weighted {
            return holders;
        }
        let Some(lowest) = holders.iter().map(|c| c.level).min() else {
            return holders;
        };
        holders.into_iter().filter(|c| c.level == lowest).collect()
    }

    /// Ready for queue calls and not taken up by connected calls.
    fn in_play(&self, agent: &AgentState, max: usize) -> bool {
        let cap = max.min(self.held_cap(agent, false));
        agent.ready()
            && agent.campaign.is_none()
            && !self.has_campaign_work(agent)
            && agent.calls.len() < cap
    }

    /// May be reserved for one more queue call now.
    fn offerable(&self, a: usize, max: usize) -> bool {
        self.agents.get(a).is_some_and(|agent| {
            let cap = max.min(self.held_cap(agent, true));
            self.in_play(agent, max)
                && agent.rest.is_none()
                && agent.calls.len().saturating_add(agent.offers.len()) < cap
        })
    }

    /// The smallest number of calls the groups of what the agent holds
    /// (connected calls, and pending offers with `offers`) allow at once:
    /// no group's limit is exceeded by calls of another group.
    fn held_cap(&self, agent: &AgentState, offers: bool) -> usize {
        let call_groups = agent
            .calls
            .iter()
            .filter_map(|c| self.calls.get(c)?.group());
        let offer_groups = agent.offers.iter().filter(|_| offers).filter_map(|o| {
            match self.offers.get(o)?.route {
                Route::Group(g) => Some(g),
                Route::Campaign { .. } => None,
            }
        });
        call_groups
            .chain(offer_groups)
            .map(|g| self.max_calls(g))
            .min()
            .unwrap_or(usize::MAX)
    }

    fn has_campaign_work(&self, agent: &AgentState) -> bool {
        agent
            .offers
            .iter()
            .any(|o| self.offers.get(o).is_some_and(Offer::is_campaign))
            || agent.calls.iter().any(|c| {
                self.calls
                    .get(c)
                    .is_some_and(|e| matches!(e.route, Route::Campaign { .. }))
            })
    }

    /// The agents to offer `call` to: the strategy's pick among the
    /// offerable agents who did not pass on it yet this round.
    fn choose(&mut self, call: &CallId, g: usize) -> Vec<usize> {
        let max = self.max_calls(g);
        let offerable: Vec<Candidate> = self
            .level_pool(g)
            .into_iter()
            .filter(|c| self.offerable(c.agent, max))
            .collect();
        if offerable.is_empty() {
            return Vec::new();
        }
        let Some(entry) = self.calls.get_mut(call) else {
            return Vec::new();
        };
        let mut fresh: Vec<Candidate> = offerable
            .iter()
            .filter(|c| !entry.tried.contains(&c.agent))
            .copied()
            .collect();
        if fresh.is_empty() {
            entry.tried.clear();
            fresh = offerable;
        }
        let (Some(cfg), Some(state)) = (self.config.groups.get(g), self.groups.get_mut(g)) else {
            return Vec::new();
        };
        strategy::pick(cfg.strategy, &fresh, &mut state.strategy, &mut self.rng)
    }

    /// Reserve agent `a` for `call`: the offer, its ring timer, the log.
    fn open_offer(&mut self, call: &CallId, a: usize, route: Route, ring: Ringing) -> OfferId {
        self.next_offer = self.next_offer.wrapping_add(1);
        let offer = OfferId(self.next_offer);
        let source = match &route {
            Route::Group(g) => OfferSource::Group(self.group_id(*g)),
            Route::Campaign { campaign, .. } => OfferSource::Campaign(campaign.clone()),
        };
        let ring_ms = u64::from(ring.secs) * MS;
        let ring_timer = self.set_timer(ring_ms, TimerPurpose::Ring(offer));
        let Some(agent) = self.agents.get_mut(a) else {
            return offer;
        };
        agent.offers.insert(offer);
        let (agent_id, extension) = (agent.id.clone(), agent.bound.clone().unwrap_or_default());
        let entry = Offer {
            call: call.clone(),
            agent: a,
            ring_timer,
            route,
        };
        self.offers.insert(offer, entry);
        if let OfferSource::Group(group) = &source {
            let (call, group, agent) = (call.clone(), group.clone(), agent_id.clone());
            self.log(QueueEvent::Offer { call, group, agent });
        }
        self.out.push(Action::OfferCall {
            offer,
            call: call.clone(),
            agent: agent_id,
            extension,
            source,
            mode: ring.mode,
            ring_ms,
            display: ring.display,
        });
        offer
    }

    pub(super) fn on_agent_leg(&mut self, offer: OfferId, outcome: LegOutcome) {
        if !self.offers.contains_key(&offer) {
            // A 200 OK for an offer already withdrawn: take it and hang up.
            if outcome == LegOutcome::Answered && !self.committed.contains_key(&offer) {
                self.out.push(Action::DropLateAnswer { offer });
            }
            return;
        }
        match outcome {
            LegOutcome::Ringing => {}
            LegOutcome::Answered => self.commit(offer),
            LegOutcome::NoAnswer => self.end_offer(offer, OfferOutcome::NoAnswer, None),
            LegOutcome::Failed(f) => self.end_offer(offer, f.into(), None),
        }
    }

    pub(super) fn on_ring_timeout(&mut self, offer: OfferId) {
        if self.offers.contains_key(&offer) {
            let reason = Some(CancelReason::RingTimeout);
            self.end_offer(offer, OfferOutcome::NoAnswer, reason);
        }
    }

    /// The agent answered: the call is theirs; every other offer goes.
    fn commit(&mut self, offer: OfferId) {
        let call_known = self
            .offers
            .get(&offer)
            .is_some_and(|o| self.calls.contains_key(&o.call));
        if !call_known {
            // Cannot happen (a call's offers go with it); never bridge to nothing.
            self.end_offer(offer, OfferOutcome::Cancelled, None);
            self.out.push(Action::DropLateAnswer { offer });
            return;
        }
        let Some(o) = self.offers.remove(&offer) else {
            return;
        };
        self.cancel_timer(Some(o.ring_timer));
        let now = self.now;
        let Some(agent) = self.agents.get_mut(o.agent) else {
            return;
        };
        agent.offers.remove(&offer);
        agent.calls.insert(o.call.clone());
        agent.misses = 0;
        let agent_id = agent.id.clone();
        self.committed.insert(offer, o.call.clone());
        let Some(entry) = self.calls.get_mut(&o.call) else {
            return;
        };
        let connected = CallState::Connected {
            agent: o.agent,
            offer,
            answered_at: now,
            held: false,
        };
        let before = std::mem::replace(&mut entry.state, connected);
        let ring_phase = std::mem::take(&mut entry.ring_phase);
        let timers = [
            entry.timeout_timer.take(),
            entry.phase_timer.take(),
            entry.announce_timer.take(),
        ];
        let (entered_at, route) = (entry.entered_at, entry.route.clone());
        for timer in timers {
            self.cancel_timer(timer);
        }
        if ring_phase {
            self.out.push(Action::AnswerCaller {
                call: o.call.clone(),
            });
        }
        if let CallState::Offering(others) = before {
            for other in others.into_iter().filter(|x| *x != offer) {
                let reason = Some(CancelReason::AnsweredElsewhere);
                self.end_offer(other, OfferOutcome::Cancelled, reason);
            }
        }
        if let Route::Group(g) = route {
            self.answered_in_group(&o.call, g, &agent_id, offer, entered_at);
        }
        self.out.push(Action::Bridge {
            call: o.call,
            offer,
            agent: agent_id,
        });
    }

    fn answered_in_group(
        &mut self,
        call: &CallId,
        g: usize,
        agent: &AgentId,
        offer: OfferId,
        entered_at: u64,
    ) {
        let wait_ms = self.now.saturating_sub(entered_at);
        if let Some(state) = self.groups.get_mut(g) {
            state.avg_wait_ms = Some(match state.avg_wait_ms {
                None => wait_ms,
                Some(avg) => avg.saturating_mul(3).saturating_add(wait_ms) / 4,
            });
        }
        self.log(QueueEvent::Answer {
            call: call.clone(),
            group: self.group_id(g),
            agent: agent.clone(),
            wait_ms,
        });
        let whisper = self
            .config
            .groups
            .get(g)
            .and_then(|c| c.sounds.whisper.clone());
        if let Some(sound) = whisper {
            let call = call.clone();
            self.out.push(Action::WhisperToAgent { offer, call, sound });
        }
    }

    /// End a pending offer without an answer. `cancel`: the engine withdraws
    /// it (CANCEL sent). The call goes back to waiting when it has no other
    /// offer; the agent pays for a miss, a busy phone or an unreachable one.
    pub(super) fn end_offer(
        &mut self,
        offer: OfferId,
        outcome: OfferOutcome,
        cancel: Option<CancelReason>,
    ) {
        let Some(o) = self.offers.remove(&offer) else {
            return;
        };
        self.cancel_timer(Some(o.ring_timer));
        let agent_id = match self.agents.get_mut(o.agent) {
            Some(agent) => {
                agent.offers.remove(&offer);
                agent.id.clone()
            }
            None => return,
        };
        if let Some(reason) = cancel {
            self.out.push(Action::CancelOffer {
                offer,
                call: o.call.clone(),
                agent: agent_id.clone(),
                reason,
            });
        }
        match &o.route {
            Route::Group(g) => {
                self.log(QueueEvent::OfferEnd {
                    call: o.call.clone(),
                    group: self.group_id(*g),
                    agent: agent_id,
                    outcome,
                });
                self.requeue(&o.call, offer, o.agent);
                self.charge_agent(o.agent, *g, outcome);
            }
            Route::Campaign { campaign, .. } => {
                if self.calls.get(&o.call).is_some_and(|c| !c.is_connected()) {
                    self.calls.remove(&o.call);
                    self.out.push(Action::CampaignReleased {
                        campaign: campaign.clone(),
                        call: o.call,
                        agent: agent_id,
                    });
                }
                if outcome == OfferOutcome::Unreachable {
                    self.set_error(o.agent);
                }
            }
        }
    }

    /// Drop `offer` from its call; with no offer left it waits again, at
    /// its place in the queue.
    fn requeue(&mut self, call: &CallId, offer: OfferId, agent: usize) {
        let Some(entry) = self.calls.get_mut(call) else {
            return;
        };
        let CallState::Offering(offers) = &mut entry.state else {
            return;
        };
        offers.remove(&offer);
        entry.tried.insert(agent);
        if offers.is_empty() {
            entry.state = CallState::Waiting;
            self.waiting.insert(entry.seq, call.clone());
        }
    }

    fn charge_agent(&mut self, a: usize, g: usize, outcome: OfferOutcome) {
        match outcome {
            OfferOutcome::NoAnswer | OfferOutcome::Declined => self.record_miss(a, g),
            OfferOutcome::Busy => {
                let secs = self.config.groups.get(g).map_or(0, |c| c.retry_secs);
                self.rest(a, secs);
            }
            OfferOutcome::Unreachable => self.set_error(a),
            OfferOutcome::Cancelled => {}
        }
    }

    /// Withdraw every pending offer of agent `a`.
    pub(super) fn withdraw_offers(&mut self, a: usize, reason: CancelReason) {
        let offers: Vec<OfferId> = self
            .agents
            .get(a)
            .map(|x| x.offers.iter().copied().collect())
            .unwrap_or_default();
        for offer in offers {
            self.end_offer(offer, OfferOutcome::Cancelled, Some(reason));
        }
    }

    pub(super) fn on_campaign_reserve(
        &mut self,
        campaign: CampaignId,
        call: CallId,
        pool: &[AgentId],
        ring_secs: u32,
        wrap_up_secs: Option<u32>,
    ) {
        if self.calls.contains_key(&call) {
            return;
        }
        let candidates: Vec<Candidate> = pool
            .iter()
            .filter_map(|id| self.agent_ix.get(id).copied())
            .filter(|&a| self.free_for_campaign(a, &campaign))
            .enumerate()
            .filter_map(|(m, a)| {
                let agent = self.agents.get(a)?;
                Some(Candidate {
                    agent: a,
                    member: m,
                    level: 1,
                    last_call_end: agent.last_call_end,
                    talk_ms: agent.talk_ms,
                })
            })
            .collect();
        let mut no_memory = strategy::StrategyState::default();
        let picked = strategy::pick(
            Strategy::LongestIdle,
            &candidates,
            &mut no_memory,
            &mut self.rng,
        );
        let Some(&a) = picked.first() else {
            self.out.push(Action::CampaignNoAgent { campaign, call });
            return;
        };
        let open_line = self.agents.get(a).and_then(|x| x.campaign.as_ref()) == Some(&campaign);
        let mode = if open_line {
            OfferMode::OpenLine
        } else {
            OfferMode::Ring
        };
        self.next_seq = self.next_seq.wrapping_add(1);
        let route = Route::Campaign {
            campaign,
            wrap_up_secs,
        };
        self.calls.insert(
            call.clone(),
            super::state::CallEntry {
                seq: self.next_seq,
                route: route.clone(),
                entered_at: self.now,
                state: CallState::Offering(Default::default()),
                ring_phase: false,
                timeout_timer: None,
                phase_timer: None,
                announce_timer: None,
                tried: Default::default(),
            },
        );
        let ring = Ringing {
            mode,
            secs: ring_secs,
            display: None,
        };
        let offer = self.open_offer(&call, a, route, ring);
        if let Some(entry) = self.calls.get_mut(&call) {
            entry.state = CallState::Offering([offer].into());
        }
    }

    /// Ready, resting from nothing, holding nothing, and not on another
    /// campaign's open line: a campaign reservation takes the agent whole.
    fn free_for_campaign(&self, a: usize, campaign: &CampaignId) -> bool {
        self.agents.get(a).is_some_and(|agent| {
            agent.ready()
                && agent.rest.is_none()
                && agent.offers.is_empty()
                && agent.calls.is_empty()
                && agent.campaign.as_ref().is_none_or(|c| c == campaign)
        })
    }

    pub(super) fn on_campaign_login(&mut self, agent: &AgentId, campaign: Option<CampaignId>) {
        let Some(&a) = self.agent_ix.get(agent) else {
            return;
        };
        if campaign.is_some() {
            let queue_offers: Vec<OfferId> = self
                .agents
                .get(a)
                .map(|x| x.offers.iter().copied().collect())
                .unwrap_or_default();
            for offer in queue_offers {
                if self.offers.get(&offer).is_some_and(|o| !o.is_campaign()) {
                    let reason = Some(CancelReason::AgentGone);
                    self.end_offer(offer, OfferOutcome::Cancelled, reason);
                }
            }
        }
        if let Some(x) = self.agents.get_mut(a) {
            x.campaign = campaign;
        }
    }
}
