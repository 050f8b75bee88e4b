//! Engine tests on a virtual clock for calls: every strategy, the level
//! rule, admission and overflow, queue timeout, ring-then-queue, ring time,
//! calls per agent, abandon, prompts. Also the simulator the other engine
//! tests drive.

use std::collections::BTreeMap;

use super::*;
use crate::acd::config::{validate, RawAcd, NO_ANSWER_REASON};
use crate::acd::event::{
    CancelReason, LegOutcome, OfferMode, OfferSource, RejectReason, RouteReason,
};
use crate::acd::types::{OfferOutcome, Prompt};

/// The engine with a virtual clock that fires the timers it asks for.
pub(super) struct Sim {
    pub engine: Engine,
    pub now: UnixMs,
    pub timers: BTreeMap<TimerId, UnixMs>,
    pub log: Vec<LogRecord>,
}

impl Sim {
    pub fn new(toml: &str) -> Sim {
        let raw: RawAcd = toml::from_str(toml).unwrap();
        let config = validate(&raw).unwrap();
        let extensions: Vec<String> = config
            .agents
            .iter()
            .filter_map(|a| a.extension.clone())
            .collect();
        let mut sim = Sim {
            engine: Engine::new(config, 7, 0),
            now: 0,
            timers: BTreeMap::new(),
            log: Vec::new(),
        };
        for extension in extensions {
            sim.send(Event::PhoneRegistered { extension });
        }
        sim
    }

    /// Handle one event now; keeps timers and the log.
    pub fn send(&mut self, event: Event) -> Vec<Action> {
        let actions = self.engine.handle(event, self.now);
        for a in &actions {
            match a {
                Action::SetTimer { timer, at } => {
                    assert!(*at >= self.now, "timer in the past");
                    self.timers.insert(*timer, *at);
                }
                Action::CancelTimer { timer } => {
                    assert!(
                        self.timers.remove(timer).is_some(),
                        "cancelled an unknown timer"
                    );
                }
                Action::Log(r) => self.log.push(r.clone()),
                _ => {}
            }
        }
        self.engine.audit().unwrap();
        actions
    }

    /// Move the clock `ms` ahead, firing due timers in order.
    pub fn advance(&mut self, ms: u64) -> Vec<Action> {
        let end = self.now + ms;
        let mut all = Vec::new();
        while let Some((&timer, &at)) = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= end)
            .min_by_key(|(id, at)| (**at, **id))
        {
            self.timers.remove(&timer);
            self.now = at;
            all.extend(self.send(Event::TimerFired { timer }));
        }
        self.now = end;
        all
    }

    pub fn arrive(&mut self, call: &str, group: &str) -> Vec<Action> {
        self.send(Event::CallArrived {
            call: call.into(),
            group: group.into(),
            caller: format!("caller-{call}"),
        })
    }

    pub fn leg(&mut self, offer: OfferId, outcome: LegOutcome) -> Vec<Action> {
        self.send(Event::AgentLeg { offer, outcome })
    }

    pub fn status(&self, agent: &str) -> AgentStatus {
        self.engine.agent(&agent.into()).unwrap().status
    }
}

/// (offer, call, agent) of every offer in `actions`.
pub(super) fn offers(actions: &[Action]) -> Vec<(OfferId, String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::OfferCall {
                offer, call, agent, ..
            } => Some((*offer, call.0.clone(), agent.0.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn offered_agents(actions: &[Action]) -> Vec<String> {
    offers(actions).into_iter().map(|(_, _, a)| a).collect()
}

pub(super) fn only_offer(actions: &[Action]) -> (OfferId, String) {
    let list = offers(actions);
    assert_eq!(list.len(), 1, "expected one offer in {actions:#?}");
    (list[0].0, list[0].2.clone())
}

pub(super) fn cancels(actions: &[Action]) -> Vec<(OfferId, CancelReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CancelOffer { offer, reason, .. } => Some((*offer, *reason)),
            _ => None,
        })
        .collect()
}

/// `n` agents a1..an on extensions 1001.., then one group.
pub(super) fn config(n: usize, group: &str) -> String {
    let mut s = String::new();
    for i in 1..=n {
        s.push_str(&format!(
            "[[agents]]\nid = \"a{i}\"\nname = \"Agent {i}\"\nextension = \"{}\"\n",
            1000 + i
        ));
    }
    s.push_str(group);
    s
}

pub(super) fn members(list: &[(&str, u32)]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|(a, l)| format!("{{ agent = \"{a}\", level = {l} }}"))
        .collect();
    format!("members = [{}]\n", items.join(", "))
}

pub(super) fn group(strategy: &str, list: &[(&str, u32)], extra: &str) -> String {
    format!(
        "[[groups]]\nid = \"q\"\nstrategy = \"{strategy}\"\n{}{extra}\n",
        members(list)
    )
}

/// Answer `call`'s offer to `agent`, talk `talk_ms`, hang up.
pub(super) fn talk(sim: &mut Sim, offer: OfferId, call: &str, talk_ms: u64) {
    sim.leg(offer, LegOutcome::Answered);
    sim.advance(talk_ms);
    sim.send(Event::CallEnded { call: call.into() });
}

#[test]
fn ring_all_rings_the_lowest_level_and_the_first_answer_wins() {
    let toml = config(
        3,
        &group("ring-all", &[("a1", 1), ("a2", 1), ("a3", 2)], ""),
    );
    let mut sim = Sim::new(&toml);
    let actions = sim.arrive("c1", "q");
    let list = offers(&actions);
    assert_eq!(
        offered_agents(&actions),
        ["a1", "a2"],
        "level 2 is not rung"
    );
    let won = sim.leg(list[1].0, LegOutcome::Answered);
    assert_eq!(
        cancels(&won),
        [(list[0].0, CancelReason::AnsweredElsewhere)]
    );
    assert!(won.contains(&Action::Bridge {
        call: "c1".into(),
        offer: list[1].0,
        agent: "a2".into()
    }));
    assert_eq!(sim.status("a2"), AgentStatus::Talking);
    assert_eq!(sim.status("a1"), AgentStatus::Idle);
    // The loser's 200 OK crossed the CANCEL: ACK and BYE, nothing else.
    let late = sim.leg(list[0].0, LegOutcome::Answered);
    assert_eq!(late, [Action::DropLateAnswer { offer: list[0].0 }]);
    // A repeated 200 for the winner changes nothing.
    assert!(sim.leg(list[1].0, LegOutcome::Answered).is_empty());
    let answers = sim
        .log
        .iter()
        .filter(|r| matches!(r.event, QueueEvent::Answer { .. }));
    assert_eq!(answers.count(), 1);
}

#[test]
fn longest_idle_takes_the_agent_whose_last_call_ended_first() {
    let toml = config(
        3,
        &group("longest-idle", &[("a1", 1), ("a2", 1), ("a3", 1)], ""),
    );
    let mut sim = Sim::new(&toml);
    // Calls end for a1, then a2, then a3; a fourth call goes to a1.
    for (i, agent) in ["a1", "a2", "a3"].iter().enumerate() {
        let call = format!("c{i}");
        let actions = sim.arrive(&call, "q");
        let (offer, got) = only_offer(&actions);
        assert_eq!(&got, agent, "never-called agents in member order");
        talk(&mut sim, offer, &call, 1_000);
    }
    let (_, got) = only_offer(&sim.arrive("c9", "q"));
    assert_eq!(got, "a1");
}

#[test]
fn least_talk_time_takes_the_agent_who_talked_least() {
    let toml = config(2, &group("least-talk-time", &[("a1", 1), ("a2", 1)], ""));
    let mut sim = Sim::new(&toml);
    let (offer, got) = only_offer(&sim.arrive("c1", "q"));
    assert_eq!(got, "a1");
    talk(&mut sim, offer, "c1", 60_000);
    let (offer, got) = only_offer(&sim.arrive("c2", "q"));
    assert_eq!(got, "a2");
    talk(&mut sim, offer, "c2", 10_000);
    // a2 ended last but talked less: a2 again.
    let (offer, got) = only_offer(&sim.arrive("c3", "q"));
    assert_eq!(got, "a2");
    talk(&mut sim, offer, "c3", 10_000);
    assert_eq!(only_offer(&sim.arrive("c4", "q")).1, "a2");
    assert_eq!(sim.engine.agent(&"a2".into()).unwrap().talk_ms, 20_000);
}

#[test]
fn random_stays_in_the_lowest_level_and_reaches_everyone() {
    let toml = config(
        4,
        &group("random", &[("a1", 1), ("a2", 1), ("a3", 1), ("a4", 2)], ""),
    );
    let mut sim = Sim::new(&toml);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let call = format!("c{i}");
        let (offer, got) = only_offer(&sim.arrive(&call, "q"));
        seen.insert(got);
        talk(&mut sim, offer, &call, 100);
    }
    let seen: Vec<_> = seen.into_iter().collect();
    assert_eq!(seen, ["a1", "a2", "a3"]);
}

#[test]
fn round_robin_goes_in_turn_and_skips_the_busy() {
    let toml = config(
        3,
        &group("round-robin", &[("a1", 1), ("a2", 1), ("a3", 1)], ""),
    );
    let mut sim = Sim::new(&toml);
    let mut order = Vec::new();
    for i in 0..4 {
        let call = format!("c{i}");
        let (offer, got) = only_offer(&sim.arrive(&call, "q"));
        order.push(got);
        talk(&mut sim, offer, &call, 100);
    }
    assert_eq!(order, ["a1", "a2", "a3", "a1"]);
    // a2 is on a call: its turn passes to a3.
    let (o2, got) = only_offer(&sim.arrive("x", "q"));
    assert_eq!(got, "a2");
    sim.leg(o2, LegOutcome::Answered);
    assert_eq!(only_offer(&sim.arrive("y", "q")).1, "a3");
}

#[test]
fn weighted_shares_calls_across_levels_by_their_ratio() {
    let toml = config(2, &group("weighted", &[("a1", 1), ("a2", 3)], ""));
    let mut sim = Sim::new(&toml);
    let mut count = BTreeMap::new();
    for i in 0..40 {
        let call = format!("c{i}");
        let (offer, got) = only_offer(&sim.arrive(&call, "q"));
        *count.entry(got).or_insert(0) += 1;
        talk(&mut sim, offer, &call, 100);
    }
    assert_eq!(count.get("a1"), Some(&30));
    assert_eq!(count.get("a2"), Some(&10));
}

#[test]
fn a_call_never_falls_through_to_a_higher_level_while_the_lower_rings_or_misses() {
    let toml = config(
        2,
        &group(
            "longest-idle",
            &[("a1", 1), ("a2", 2)],
            "ring_secs = 10\nretry_secs = 5\n",
        ),
    );
    let mut sim = Sim::new(&toml);
    let (_, got) = only_offer(&sim.arrive("c1", "q"));
    assert_eq!(got, "a1");
    // a1 is ringing: the second call waits rather than ringing level 2.
    assert!(offers(&sim.arrive("c2", "q")).is_empty());
    // a1 does not answer: c1 goes back to the head; a1 rests, level 2 still
    // not tried.
    let after = sim.advance(10_000);
    assert_eq!(cancels(&after).len(), 1);
    assert!(offers(&after).is_empty(), "no fall-through: {after:#?}");
    assert!(sim.engine.agent(&"a1".into()).unwrap().resting);
    // After the rest, c1 (the oldest) rings a1 again.
    let again = sim.advance(5_000);
    let list = offers(&again);
    assert_eq!((list[0].1.as_str(), list[0].2.as_str()), ("c1", "a1"));
    // a1 answers; now talking, level 1 is out of play: c2 goes to a2.
    let answered = sim.leg(list[0].0, LegOutcome::Answered);
    assert_eq!(offers(&answered)[0].1, "c2");
    assert_eq!(offers(&answered)[0].2, "a2");
}

#[test]
fn a_paused_lower_level_lets_the_next_level_take_calls() {
    let toml = config(
        2,
        &group(
            "ring-all",
            &[("a1", 1), ("a2", 2)],
            "auto_pause_misses = 1\n",
        ),
    );
    let mut sim = Sim::new(&toml);
    let (_, got) = only_offer(&sim.arrive("c1", "q"));
    assert_eq!(got, "a1");
    let after = sim.advance(15_000);
    assert_eq!(sim.status("a1"), AgentStatus::Paused);
    assert_eq!(
        sim.engine.agent(&"a1".into()).unwrap().paused,
        Some(NO_ANSWER_REASON.into())
    );
    assert_eq!(offered_agents(&after), ["a2"]);
}

#[test]
fn max_waiting_zero_admits_only_as_many_calls_as_free_agents() {
    let extra = "max_waiting = 0\noverflow = \"2000\"\n";
    let toml = config(2, &group("longest-idle", &[("a1", 1), ("a2", 1)], extra));
    let mut sim = Sim::new(&toml);
    assert_eq!(offers(&sim.arrive("c1", "q")).len(), 1);
    assert_eq!(offers(&sim.arrive("c2", "q")).len(), 1);
    let third = sim.arrive("c3", "q");
    assert!(third.contains(&Action::RouteTo {
        call: "c3".into(),
        destination: "2000".into(),
        reason: RouteReason::Overflow
    }));
    assert!(!third
        .iter()
        .any(|a| matches!(a, Action::AnswerCaller { .. })));
    assert_eq!(sim.engine.tally().group(&"q".into()).overflow, 1);
    assert_eq!(sim.engine.call_count(), 2);
}

#[test]
fn a_full_queue_without_overflow_destination_is_busy() {
    let toml = config(1, &group("longest-idle", &[("a1", 1)], "max_waiting = 2\n"));
    let mut sim = Sim::new(&toml);
    sim.arrive("c1", "q"); // ringing a1
    sim.arrive("c2", "q"); // waiting 1
    sim.arrive("c3", "q"); // waiting 2
    let fourth = sim.arrive("c4", "q");
    assert!(fourth.contains(&Action::Reject {
        call: "c4".into(),
        reason: RejectReason::Busy
    }));
    let waiting = sim.engine.waiting_calls(&"q".into());
    let positions: Vec<_> = waiting
        .iter()
        .map(|w| (w.call.0.as_str(), w.position, w.ringing))
        .collect();
    assert_eq!(positions, [("c1", 1, 1), ("c2", 2, 0), ("c3", 3, 0)]);
}

#[test]
fn queue_timeout_withdraws_the_offer_and_routes_to_the_timeout_destination() {
    let extra = "timeout_secs = 20\nring_secs = 30\ntimeout_destination = \"voicemail\"\n";
    let toml = config(1, &group("longest-idle", &[("a1", 1)], extra));
    let mut sim = Sim::new(&toml);
    let (offer, _) = only_offer(&sim.arrive("c1", "q"));
    let at_timeout = sim.advance(20_000);
    assert_eq!(cancels(&at_timeout), [(offer, CancelReason::QueueTimeout)]);
    assert!(at_timeout.contains(&Action::RouteTo {
        call: "c1".into(),
        destination: "voicemail".into(),
        reason: RouteReason::Timeout
    }));
    assert_eq!(sim.engine.call_count(), 0);
    assert_eq!(
        sim.engine.timer_count(),
        0,
        "every timer of the call is gone"
    );
    assert_eq!(
        sim.status("a1"),
        AgentStatus::Idle,
        "a withdrawn offer is no miss"
    );
    let last = sim
        .log
        .iter()
        .rev()
        .find(|r| r.event.is_queue_outcome())
        .unwrap();
    assert_eq!(
        last.event,
        QueueEvent::Timeout {
            call: "c1".into(),
            group: "q".into(),
            wait_ms: 20_000,
            destination: Some("voicemail".into())
        }
    );
}

#[test]
fn ring_then_queue_answers_the_caller_only_when_the_ringing_phase_ends() {
    let extra = "ring_then_queue_secs = 8\ngreeting = \"welcome\"\n";
    let toml = config(1, &group("longest-idle", &[("a1", 1)], extra));
    let mut sim = Sim::new(&toml);
    let first = sim.arrive("c1", "q");
    assert!(first.contains(&Action::PlayToCaller {
        call: "c1".into(),
        prompts: vec![Prompt::Ringback]
    }));
    assert!(!first
        .iter()
        .any(|a| matches!(a, Action::AnswerCaller { .. })));
    assert_eq!(offers(&first).len(), 1, "agents ring during the phase");
    let phase_end = sim.advance(8_000);
    assert_eq!(phase_end[0], Action::AnswerCaller { call: "c1".into() });
    assert!(phase_end.contains(&Action::PlayToCaller {
        call: "c1".into(),
        prompts: vec![
            Prompt::Greeting("welcome".into()),
            Prompt::MusicOnHold(None)
        ]
    }));
    // A call answered by an agent during its ringing phase is answered first.
    let toml = config(1, &group("longest-idle", &[("a1", 1)], extra));
    let mut sim = Sim::new(&toml);
    let (offer, _) = only_offer(&sim.arrive("c3", "q"));
    let answered = sim.leg(offer, LegOutcome::Answered);
    let answer_at = answered
        .iter()
        .position(|a| matches!(a, Action::AnswerCaller { .. }));
    let bridge_at = answered
        .iter()
        .position(|a| matches!(a, Action::Bridge { .. }));
    assert!(answer_at.unwrap() < bridge_at.unwrap());
    assert_eq!(sim.engine.timer_count(), 0, "the phase timer is gone");
}

#[test]
fn ring_time_is_per_agent_and_the_call_moves_on() {
    let toml = config(
        2,
        &group("round-robin", &[("a1", 1), ("a2", 1)], "ring_secs = 12\n"),
    );
    let mut sim = Sim::new(&toml);
    let actions = sim.arrive("c1", "q");
    let (offer, got) = only_offer(&actions);
    assert_eq!(got, "a1");
    let ring = actions.iter().find_map(|a| match a {
        Action::OfferCall { ring_ms, .. } => Some(*ring_ms),
        _ => None,
    });
    assert_eq!(ring, Some(12_000));
    assert!(sim.advance(11_999).is_empty());
    let timeout = sim.advance(1);
    assert_eq!(cancels(&timeout), [(offer, CancelReason::RingTimeout)]);
    assert_eq!(offered_agents(&timeout), ["a2"]);
    let ended = sim.log.iter().find_map(|r| match &r.event {
        QueueEvent::OfferEnd { outcome, .. } => Some(*outcome),
        _ => None,
    });
    assert_eq!(ended, Some(OfferOutcome::NoAnswer));
}

#[test]
fn max_calls_per_agent_bounds_reservations() {
    let toml = config(
        1,
        &group("longest-idle", &[("a1", 1)], "max_calls_per_agent = 2\n"),
    );
    let mut sim = Sim::new(&toml);
    let (o1, _) = only_offer(&sim.arrive("c1", "q"));
    let (o2, _) = only_offer(&sim.arrive("c2", "q"));
    assert!(
        offers(&sim.arrive("c3", "q")).is_empty(),
        "two reservations at most"
    );
    sim.leg(o1, LegOutcome::Answered);
    assert!(
        offers(&sim.arrive("c4", "q")).is_empty(),
        "talking plus ringing is two"
    );
    sim.leg(o2, LegOutcome::Answered);
    let v = sim.engine.agent(&"a1".into()).unwrap();
    assert_eq!((v.calls, v.offers), (2, 0));
    // One call ends: the oldest waiting call (c3) comes next.
    let next = sim.send(Event::CallEnded { call: "c1".into() });
    assert_eq!(offers(&next)[0].1, "c3");
}

#[test]
fn a_caller_who_hangs_up_is_removed_at_once_and_counted_abandoned() {
    let toml = config(
        2,
        &group(
            "ring-all",
            &[("a1", 1), ("a2", 1)],
            "announce_every_secs = 20\nannouncement = \"hold\"\n",
        ),
    );
    let mut sim = Sim::new(&toml);
    let list = offers(&sim.arrive("c1", "q"));
    sim.advance(7_000);
    let gone = sim.send(Event::CallerHungUp { call: "c1".into() });
    let reasons: Vec<_> = cancels(&gone).into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        reasons,
        [CancelReason::CallerGone, CancelReason::CallerGone]
    );
    assert_eq!(sim.engine.call_count(), 0);
    assert_eq!(sim.engine.timer_count(), 0);
    assert_eq!(sim.status("a1"), AgentStatus::Idle);
    let abandon = sim
        .log
        .iter()
        .find(|r| matches!(r.event, QueueEvent::Abandon { .. }));
    assert_eq!(
        abandon.map(|r| &r.event),
        Some(&QueueEvent::Abandon {
            call: "c1".into(),
            group: "q".into(),
            wait_ms: 7_000
        })
    );
    // An answer racing the hang-up is dropped.
    assert_eq!(
        sim.leg(list[0].0, LegOutcome::Answered),
        [Action::DropLateAnswer { offer: list[0].0 }]
    );
}

#[test]
fn greeting_then_periodic_announcement_with_position_and_estimated_wait() {
    let extra = "greeting = \"hello\"\nannouncement = \"thanks\"\nannounce_every_secs = 30\n\
                 announce_position = true\nannounce_wait = true\nmusic_on_hold = \"jazz\"\n";
    let toml = config(1, &group("longest-idle", &[("a1", 1)], extra));
    let mut sim = Sim::new(&toml);
    // First call answered after 40 s sets the average wait.
    let (o, _) = only_offer(&sim.arrive("c1", "q"));
    let first = sim.arrive("c2", "q");
    assert!(first.contains(&Action::PlayToCaller {
        call: "c2".into(),
        prompts: vec![
            Prompt::Greeting("hello".into()),
            Prompt::Position(2),
            Prompt::MusicOnHold(Some("jazz".into()))
        ]
    }));
    sim.advance(10_000);
    sim.leg(o, LegOutcome::Answered);
    let tick = sim.advance(20_000);
    assert!(tick.contains(&Action::PlayToCaller {
        call: "c2".into(),
        prompts: vec![
            Prompt::Announcement("thanks".into()),
            Prompt::Position(1),
            Prompt::EstimatedWait { secs: 10 },
            Prompt::MusicOnHold(Some("jazz".into()))
        ]
    }));
    let again = sim.advance(30_000);
    assert!(
        again
            .iter()
            .any(|a| matches!(a, Action::PlayToCaller { .. })),
        "it repeats"
    );
}

#[test]
fn whisper_plays_to_the_agent_before_the_bridge() {
    let toml = config(
        1,
        &group(
            "longest-idle",
            &[("a1", 1)],
            "whisper = \"sales-line\"\nring_text = \"Sales\"\n",
        ),
    );
    let mut sim = Sim::new(&toml);
    let actions = sim.arrive("c1", "q");
    let display = actions.iter().find_map(|a| match a {
        Action::OfferCall {
            display,
            source,
            mode,
            extension,
            ..
        } => Some((display.clone(), source.clone(), *mode, extension.clone())),
        _ => None,
    });
    assert_eq!(
        display,
        Some((
            Some("Sales".into()),
            OfferSource::Group("q".into()),
            OfferMode::Ring,
            "1001".into()
        ))
    );
    let (o, _) = only_offer(&actions);
    let answered = sim.leg(o, LegOutcome::Answered);
    let whisper = answered
        .iter()
        .position(|a| matches!(a, Action::WhisperToAgent { .. }));
    let bridge = answered
        .iter()
        .position(|a| matches!(a, Action::Bridge { .. }));
    assert!(whisper.unwrap() < bridge.unwrap());
}

#[test]
fn fifo_within_a_group() {
    let toml = config(1, &group("longest-idle", &[("a1", 1)], ""));
    let mut sim = Sim::new(&toml);
    let (o, _) = only_offer(&sim.arrive("c1", "q"));
    sim.arrive("c2", "q");
    sim.arrive("c3", "q");
    let next = sim.leg(o, LegOutcome::Answered);
    assert!(offers(&next).is_empty());
    let next = sim.send(Event::CallEnded { call: "c1".into() });
    assert_eq!(offers(&next)[0].1, "c2");
}

#[test]
fn refused_and_unknown_group_calls() {
    let toml = config(1, &group("longest-idle", &[("a1", 1)], ""));
    let mut sim = Sim::new(&toml);
    let refused = sim.send(Event::CallRefused {
        call: "r1".into(),
        group: "q".into(),
        caller: "x".into(),
        reason: crate::acd::types::RefusalReason::ChannelLimit,
    });
    assert!(offers(&refused).is_empty());
    let counts = sim.engine.tally().group(&"q".into());
    assert_eq!((counts.refused, counts.entered), (1, 0));
    assert_eq!(
        sim.arrive("c1", "nowhere"),
        [Action::Reject {
            call: "c1".into(),
            reason: RejectReason::UnknownGroup
        }]
    );
    // The same call arriving twice is one call.
    sim.arrive("c2", "q");
    assert!(sim.arrive("c2", "q").is_empty());
    assert_eq!(sim.engine.tally().group(&"q".into()).entered, 1);
}

#[test]
fn transfer_ends_the_agents_part_and_is_logged() {
    let toml = config(1, &group("longest-idle", &[("a1", 1)], ""));
    let mut sim = Sim::new(&toml);
    let (o, _) = only_offer(&sim.arrive("c1", "q"));
    sim.leg(o, LegOutcome::Answered);
    sim.advance(3_000);
    sim.send(Event::CallTransferred {
        call: "c1".into(),
        to: "2001".into(),
    });
    let tail: Vec<_> = sim
        .log
        .iter()
        .filter(|r| r.event.call().is_some())
        .map(|r| r.event.kind())
        .collect();
    assert_eq!(tail, ["enter", "offer", "answer", "transfer", "end"]);
    assert_eq!(sim.status("a1"), AgentStatus::Idle);
    assert_eq!(sim.engine.tally().group(&"q".into()).transferred, 1);
}
