//! A queued call's life: admission (or overflow), the ring-then-queue
//! phase, greeting and periodic announcements, abandon, queue timeout, and
//! the end of a connected call (talk time, transfer, after-call work).
//!
//! Every call that enters gets exactly one outcome in the log (answer,
//! abandon, overflow, timeout) and leaves the engine's tables with its
//! timers and offers when it goes.
//!
//! What this module must not do: reserve agents (`offers.rs`) or change an
//! agent's stops except starting after-call work when a call ends.

use super::state::{CallEntry, CallState, Route, TimerPurpose};
use super::Engine;
use crate::acd::event::{Action, CancelReason, RejectReason, RouteReason};
use crate::acd::log::QueueEvent;
use crate::acd::types::{CallId, GroupId, OfferOutcome, Prompt};

const MS: u64 = 1000;

impl Engine {
    pub(super) fn on_call_arrived(&mut self, call: CallId, group: &GroupId, caller: String) {
        if self.calls.contains_key(&call) {
            return; // the same call twice: it is already here
        }
        let Some((g, cfg)) = self
            .group_ix
            .get(group)
            .and_then(|&g| Some((g, self.config.groups.get(g)?)))
        else {
            let reason = RejectReason::UnknownGroup;
            self.out.push(Action::Reject { call, reason });
            return;
        };
        let (max_waiting, timeout_secs, ring_phase_secs) =
            (cfg.max_waiting, cfg.timeout_secs, cfg.ring_then_queue_secs);
        let overflow = cfg.overflow.clone();
        self.log(QueueEvent::Enter {
            call: call.clone(),
            group: group.clone(),
            caller,
        });
        let waiting = self.waiting_in(g);
        let offered_now = waiting == 0 && self.has_candidates(g);
        if !offered_now && waiting >= usize::try_from(max_waiting).unwrap_or(usize::MAX) {
            self.log(QueueEvent::Overflow {
                call: call.clone(),
                group: group.clone(),
                destination: overflow.clone(),
            });
            self.route_away(call, overflow, RouteReason::Overflow);
            return;
        }
        self.admit(call, g, timeout_secs, ring_phase_secs);
    }

    fn admit(&mut self, call: CallId, g: usize, timeout_secs: u32, ring_phase_secs: u32) {
        self.next_seq = self.next_seq.wrapping_add(1);
        let seq = self.next_seq;
        let timeout_timer = (timeout_secs > 0).then(|| {
            let purpose = TimerPurpose::QueueTimeout(call.clone());
            self.set_timer(u64::from(timeout_secs) * MS, purpose)
        });
        let phase_timer = (ring_phase_secs > 0).then(|| {
            let purpose = TimerPurpose::RingPhaseEnd(call.clone());
            self.set_timer(u64::from(ring_phase_secs) * MS, purpose)
        });
        let entry = CallEntry {
            seq,
            route: Route::Group(g),
            entered_at: self.now,
            state: CallState::Waiting,
            ring_phase: phase_timer.is_some(),
            timeout_timer,
            phase_timer,
            announce_timer: None,
            tried: Default::default(),
        };
        self.calls.insert(call.clone(), entry);
        self.waiting.insert(seq, call.clone());
        if phase_timer.is_some() {
            let prompts = vec![Prompt::Ringback];
            self.out.push(Action::PlayToCaller { call, prompts });
        } else {
            self.enter_queue_phase(&call);
        }
    }

    /// Calls of group `g` waiting with no offer.
    fn waiting_in(&self, g: usize) -> usize {
        self.waiting
            .values()
            .filter(|c| self.calls.get(*c).and_then(CallEntry::group) == Some(g))
            .count()
    }

    /// Answer the caller and start the greeting, music and announcements.
    fn enter_queue_phase(&mut self, call: &CallId) {
        self.out.push(Action::AnswerCaller { call: call.clone() });
        self.play_prompts(call, true);
        self.arm_announcement(call);
    }

    pub(super) fn on_ring_phase_end(&mut self, call: &CallId) {
        let Some(entry) = self.calls.get_mut(call) else {
            return;
        };
        if entry.is_connected() || !entry.ring_phase {
            return;
        }
        entry.ring_phase = false;
        entry.phase_timer = None;
        self.enter_queue_phase(call);
    }

    pub(super) fn on_announce(&mut self, call: &CallId) {
        let Some(entry) = self.calls.get_mut(call) else {
            return;
        };
        entry.announce_timer = None;
        if entry.is_connected() {
            return;
        }
        self.play_prompts(call, false);
        self.arm_announcement(call);
    }

    /// Greeting (first) or announcement, position, estimated wait, music.
    fn play_prompts(&mut self, call: &CallId, first: bool) {
        let Some((g, seq)) = self.calls.get(call).and_then(|c| Some((c.group()?, c.seq))) else {
            return;
        };
        let (Some(cfg), Some(state)) = (self.config.groups.get(g), self.groups.get(g)) else {
            return;
        };
        let sounds = &cfg.sounds;
        let mut prompts = Vec::new();
        let opening = if first {
            &sounds.greeting
        } else {
            &sounds.announcement
        };
        if let Some(sound) = opening {
            prompts.push(if first {
                Prompt::Greeting(sound.clone())
            } else {
                Prompt::Announcement(sound.clone())
            });
        }
        let position = self.position(g, seq);
        if sounds.announce_position {
            prompts.push(Prompt::Position(position));
        }
        if let (true, Some(avg)) = (sounds.announce_wait, state.avg_wait_ms) {
            let secs = avg.saturating_mul(u64::from(position)).div_ceil(MS);
            prompts.push(Prompt::EstimatedWait { secs });
        }
        prompts.push(Prompt::MusicOnHold(sounds.music_on_hold.clone()));
        let call = call.clone();
        self.out.push(Action::PlayToCaller { call, prompts });
    }

    fn arm_announcement(&mut self, call: &CallId) {
        let Some(g) = self.calls.get(call).and_then(CallEntry::group) else {
            return;
        };
        let Some(sounds) = self.config.groups.get(g).map(|c| &c.sounds) else {
            return;
        };
        let something =
            sounds.announcement.is_some() || sounds.announce_position || sounds.announce_wait;
        if sounds.announce_every_secs == 0 || !something {
            return;
        }
        let after = u64::from(sounds.announce_every_secs) * MS;
        let timer = self.set_timer(after, TimerPurpose::Announce(call.clone()));
        if let Some(entry) = self.calls.get_mut(call) {
            entry.announce_timer = Some(timer);
        }
    }

    /// 1 + the calls of the group ahead of `seq` that nobody answered yet.
    fn position(&self, g: usize, seq: u64) -> u32 {
        let ahead = self
            .calls
            .values()
            .filter(|c| c.group() == Some(g) && c.seq < seq && !c.is_connected())
            .count();
        u32::try_from(ahead).unwrap_or(u32::MAX).saturating_add(1)
    }

    /// The caller hung up, or the call ended.
    pub(super) fn on_call_gone(&mut self, call: &CallId) {
        let Some(entry) = self.calls.get(call) else {
            return;
        };
        if entry.is_connected() {
            self.end_connected(call, None);
            return;
        }
        let Some(entry) = self.remove_call(call, CancelReason::CallerGone) else {
            return;
        };
        if let Route::Group(g) = entry.route {
            let wait_ms = self.now.saturating_sub(entry.entered_at);
            let group = self.group_id(g);
            let call = call.clone();
            self.log(QueueEvent::Abandon {
                call,
                group,
                wait_ms,
            });
        }
    }

    pub(super) fn on_transferred(&mut self, call: &CallId, to: String) {
        if self.calls.get(call).is_some_and(CallEntry::is_connected) {
            self.end_connected(call, Some(to));
        }
    }

    pub(super) fn set_held(&mut self, call: &CallId, on_hold: bool) {
        if let Some(CallState::Connected { held, .. }) =
            self.calls.get_mut(call).map(|c| &mut c.state)
        {
            *held = on_hold;
        }
    }

    pub(super) fn on_queue_timeout(&mut self, call: &CallId) {
        let Some(entry) = self.calls.get_mut(call) else {
            return;
        };
        entry.timeout_timer = None;
        if entry.is_connected() {
            return;
        }
        let Some(entry) = self.remove_call(call, CancelReason::QueueTimeout) else {
            return;
        };
        let Route::Group(g) = entry.route else {
            return;
        };
        let destination = self
            .config
            .groups
            .get(g)
            .and_then(|c| c.timeout_destination.clone());
        self.log(QueueEvent::Timeout {
            call: call.clone(),
            group: self.group_id(g),
            wait_ms: self.now.saturating_sub(entry.entered_at),
            destination: destination.clone(),
        });
        self.route_away(call.clone(), destination, RouteReason::Timeout);
    }

    fn route_away(&mut self, call: CallId, destination: Option<String>, reason: RouteReason) {
        self.out.push(match destination {
            Some(destination) => Action::RouteTo {
                call,
                destination,
                reason,
            },
            None => Action::Reject {
                call,
                reason: RejectReason::Busy,
            },
        });
    }

    /// Take a call that is not connected out of every table: its timers
    /// stop, its offers are withdrawn for `reason`.
    pub(super) fn remove_call(&mut self, call: &CallId, reason: CancelReason) -> Option<CallEntry> {
        let entry = self.calls.remove(call)?;
        self.cancel_timer(entry.timeout_timer);
        self.cancel_timer(entry.phase_timer);
        self.cancel_timer(entry.announce_timer);
        match &entry.state {
            CallState::Waiting => {
                self.waiting.remove(&entry.seq);
            }
            CallState::Offering(offers) => {
                for &offer in offers {
                    self.end_offer(offer, OfferOutcome::Cancelled, Some(reason));
                }
            }
            CallState::Connected { .. } => {}
        }
        Some(entry)
    }

    /// A connected call is over: talk time, log, after-call work.
    pub(super) fn end_connected(&mut self, call: &CallId, transferred_to: Option<String>) {
        let Some(entry) = self.calls.remove(call) else {
            return;
        };
        let CallState::Connected {
            agent: a,
            offer,
            answered_at,
            ..
        } = entry.state
        else {
            return;
        };
        self.committed.remove(&offer);
        let talk_ms = self.now.saturating_sub(answered_at);
        let Some(agent) = self.agents.get_mut(a) else {
            return;
        };
        agent.calls.remove(call);
        agent.talk_ms = agent.talk_ms.saturating_add(talk_ms);
        agent.last_call_end = Some(self.now);
        let agent_id = agent.id.clone();
        let (group, wrap_up) = match entry.route {
            Route::Group(g) => {
                let wrap_up = self.config.groups.get(g).and_then(|c| c.wrap_up_secs);
                (Some(self.group_id(g)), wrap_up)
            }
            Route::Campaign { wrap_up_secs, .. } => (None, wrap_up_secs),
        };
        if let Some(group) = &group {
            let (call, agent) = (call.clone(), agent_id.clone());
            if let Some(to) = transferred_to {
                let group = group.clone();
                let (call, agent) = (call.clone(), agent.clone());
                self.log(QueueEvent::Transfer {
                    call,
                    group,
                    agent,
                    to,
                });
            }
            let group = group.clone();
            self.log(QueueEvent::End {
                call,
                group,
                agent,
                talk_ms,
            });
        }
        if let Some(secs) = wrap_up {
            self.start_wrap_up(a, group, secs);
        }
    }

    pub(super) fn group_id(&self, g: usize) -> GroupId {
        self.config
            .groups
            .get(g)
            .map(|c| c.id.clone())
            .unwrap_or_else(|| GroupId(String::new()))
    }
}
