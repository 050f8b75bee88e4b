//! Agent transitions: hot-desk login and logout, phone registration,
//! pause and unpause (by hand or after missed offers), after-call work,
//! error status, and the short rest after an offer not taken.
//!
//! Anything that stops an agent (logout, lost phone, pause, after-call
//! work, error) first withdraws the agent's pending offers, so the calls go
//! back to their place in the queue and no stopped agent keeps a
//! reservation.
//!
//! What this module must not do: decide which call an agent gets
//! (`offers.rs`) or announce statuses (the engine does after each event).

use super::state::{Pause, TimerPurpose};
use super::Engine;
use crate::acd::config::NO_ANSWER_REASON;
use crate::acd::event::{Action, CancelReason, LoginRefusal};
use crate::acd::log::QueueEvent;
use crate::acd::types::{AgentId, GroupId, PauseReasonId};

const MS: u64 = 1000;

impl Engine {
    pub(super) fn on_login(&mut self, agent: AgentId, extension: String, pin: Option<&str>) {
        let Some(&a) = self.agent_ix.get(&agent) else {
            self.out.push(Action::LoginRefused {
                agent,
                extension,
                reason: LoginRefusal::UnknownAgent,
            });
            return;
        };
        if !self.config.pin_matches(&agent, pin) {
            self.out.push(Action::LoginRefused {
                agent,
                extension,
                reason: LoginRefusal::WrongPin,
            });
            return;
        }
        if self.agents.get(a).and_then(|x| x.bound.as_ref()) == Some(&extension) {
            return;
        }
        // One agent per phone: whoever was on it is logged out.
        let others: Vec<usize> = (0..self.agents.len())
            .filter(|&o| {
                o != a && self.agents.get(o).and_then(|x| x.bound.as_ref()) == Some(&extension)
            })
            .collect();
        for other in others {
            self.logout(other);
        }
        self.withdraw_offers(a, CancelReason::AgentGone);
        let up = self.phones.contains(&extension);
        if let Some(agent) = self.agents.get_mut(a) {
            agent.bound = Some(extension);
            agent.phone_up = up;
        }
    }

    /// Unbind the agent from its phone and clear every stop: a fresh login
    /// starts idle.
    pub(super) fn logout(&mut self, a: usize) {
        self.withdraw_offers(a, CancelReason::AgentGone);
        self.unpause(a);
        self.end_wrap_up(a);
        self.clear_error(a);
        let rest = self.agents.get_mut(a).and_then(|x| x.rest.take());
        self.cancel_timer(rest);
        if let Some(agent) = self.agents.get_mut(a) {
            agent.bound = None;
            agent.phone_up = false;
            agent.campaign = None;
            agent.misses = 0;
        }
    }

    pub(super) fn on_phone(&mut self, extension: String, up: bool) {
        let bound: Vec<usize> = (0..self.agents.len())
            .filter(|&a| self.agents.get(a).and_then(|x| x.bound.as_ref()) == Some(&extension))
            .collect();
        if up {
            self.phones.insert(extension);
        } else {
            self.phones.remove(&extension);
        }
        for a in bound {
            if up {
                // A phone that registers again is reachable again.
                self.clear_error(a);
            } else {
                self.withdraw_offers(a, CancelReason::AgentGone);
            }
            if let Some(agent) = self.agents.get_mut(a) {
                agent.phone_up = up;
            }
        }
    }

    pub(super) fn on_pause(&mut self, agent: &AgentId, reason: PauseReasonId) {
        if self.config.pause_reason(&reason).is_none() {
            return;
        }
        if let Some(&a) = self.agent_ix.get(agent) {
            self.pause(a, reason, 0);
        }
    }

    /// Pause with `reason`; `auto_unpause_secs` > 0 lifts it by itself.
    pub(super) fn pause(&mut self, a: usize, reason: PauseReasonId, auto_unpause_secs: u32) {
        let Some(agent) = self.agents.get_mut(a) else {
            return;
        };
        if agent.paused.as_ref().is_some_and(|p| p.reason == reason) {
            return;
        }
        let old = agent.paused.take().and_then(|p| p.auto_unpause);
        let id = agent.id.clone();
        self.cancel_timer(old);
        let auto_unpause = (auto_unpause_secs > 0).then(|| {
            self.set_timer(
                u64::from(auto_unpause_secs) * MS,
                TimerPurpose::AutoUnpause(a),
            )
        });
        if let Some(agent) = self.agents.get_mut(a) {
            agent.paused = Some(Pause {
                reason: reason.clone(),
                auto_unpause,
            });
        }
        self.log(QueueEvent::Pause { agent: id, reason });
        self.withdraw_offers(a, CancelReason::AgentGone);
    }

    pub(super) fn unpause(&mut self, a: usize) {
        let Some(agent) = self.agents.get_mut(a) else {
            return;
        };
        let Some(p) = agent.paused.take() else {
            return;
        };
        agent.misses = 0;
        let id = agent.id.clone();
        self.cancel_timer(p.auto_unpause);
        self.log(QueueEvent::Unpause { agent: id });
    }

    /// The agent is ready: no pause, no after-call work, no error.
    pub(super) fn ready(&mut self, a: usize) {
        self.unpause(a);
        self.end_wrap_up(a);
        self.clear_error(a);
    }

    /// Start (or restart) after-call work after a call of `group`.
    pub(super) fn start_wrap_up(&mut self, a: usize, group: Option<GroupId>, secs: u32) {
        let Some(agent) = self.agents.get_mut(a) else {
            return;
        };
        let old = agent.wrap_up.take().flatten();
        let id = agent.id.clone();
        self.cancel_timer(old);
        let timer =
            (secs > 0).then(|| self.set_timer(u64::from(secs) * MS, TimerPurpose::WrapUpEnd(a)));
        if let Some(agent) = self.agents.get_mut(a) {
            agent.wrap_up = Some(timer);
        }
        self.log(QueueEvent::WrapUp {
            agent: id,
            group,
            secs,
        });
        self.withdraw_offers(a, CancelReason::AgentGone);
    }

    pub(super) fn end_wrap_up(&mut self, a: usize) {
        if let Some(timer) = self.agents.get_mut(a).and_then(|x| x.wrap_up.take()) {
            self.cancel_timer(timer);
        }
    }

    /// The agent's phone could not be reached: error status until it
    /// registers again, the agent says ready, or the retry timer ends.
    pub(super) fn set_error(&mut self, a: usize) {
        self.clear_error(a);
        let secs = self.config.error_retry_secs;
        let timer =
            (secs > 0).then(|| self.set_timer(u64::from(secs) * MS, TimerPurpose::ErrorRetry(a)));
        if let Some(agent) = self.agents.get_mut(a) {
            agent.error = Some(timer);
        }
        self.withdraw_offers(a, CancelReason::AgentGone);
    }

    fn clear_error(&mut self, a: usize) {
        if let Some(timer) = self.agents.get_mut(a).and_then(|x| x.error.take()) {
            self.cancel_timer(timer);
        }
    }

    /// No new offers for the agent for `secs`.
    pub(super) fn rest(&mut self, a: usize, secs: u32) {
        if secs == 0 {
            return;
        }
        let old = self.agents.get_mut(a).and_then(|x| x.rest.take());
        self.cancel_timer(old);
        let timer = self.set_timer(u64::from(secs) * MS, TimerPurpose::RestEnd(a));
        if let Some(agent) = self.agents.get_mut(a) {
            agent.rest = Some(timer);
        }
    }

    /// The agent let an offer of group `g` go unanswered (or declined it):
    /// pause after the group's number of misses in a row, else rest.
    pub(super) fn record_miss(&mut self, a: usize, g: usize) {
        let Some(cfg) = self.config.groups.get(g) else {
            return;
        };
        let (threshold, unpause_secs, retry_secs) =
            (cfg.auto_pause_misses, cfg.auto_unpause_secs, cfg.retry_secs);
        let Some(agent) = self.agents.get_mut(a) else {
            return;
        };
        agent.misses = agent.misses.saturating_add(1);
        if threshold > 0 && agent.misses >= threshold {
            agent.misses = 0;
            self.pause(a, PauseReasonId(NO_ANSWER_REASON.to_string()), unpause_secs);
        } else {
            self.rest(a, retry_secs);
        }
    }
}
