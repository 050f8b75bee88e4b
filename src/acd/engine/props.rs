//! Seeded randomised property tests: many random event sequences against
//! random group settings, each checked after every event by a model kept
//! outside the engine (what was offered, answered and ended, from the
//! actions alone):
//! - a call is never lost nor duplicated: every entered call ends with
//!   exactly one outcome, an answered call with one end, and nothing is
//!   left in the engine once every caller has hung up;
//! - a paused, offline, stopped or full agent is never offered a call, and
//!   an agent holding a campaign call gets no queue call at the same time;
//! - FIFO within a group;
//! - answered + abandoned + overflow + timeout = entered, and replaying the
//!   log gives the live tally.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tests::Sim;
use super::*;
use crate::acd::event::{LegOutcome, OfferSource};
use crate::acd::stats::Tally;
use crate::acd::types::{LegFailure, RefusalReason, Strategy};

const AGENTS: usize = 5;
const STEPS: usize = 600;

fn random_config(rng: &mut StdRng) -> String {
    let mut s = format!("error_retry_secs = {}\n", rng.gen_range(0..3) * 30);
    s.push_str("[[pause_reasons]]\nid = \"lunch\"\nname = \"Lunch\"\n");
    for i in 1..=AGENTS {
        s.push_str(&format!("[[agents]]\nid = \"a{i}\"\nname = \"A{i}\"\n"));
        if i < AGENTS {
            s.push_str(&format!("extension = \"{}\"\n", 1000 + i));
        } else {
            s.push_str("pin = \"12\"\n");
        }
    }
    for g in 0..2 {
        let strategy = Strategy::ALL[rng.gen_range(0..Strategy::ALL.len())];
        let mut members = Vec::new();
        for i in 1..=AGENTS {
            if rng.gen_bool(0.7) {
                let level = rng.gen_range(1..=3);
                members.push(format!("{{ agent = \"a{i}\", level = {level} }}"));
            }
        }
        s.push_str(&format!(
            "[[groups]]\nid = \"q{g}\"\nstrategy = \"{strategy}\"\nmembers = [{}]\n",
            members.join(", ")
        ));
        let wrap_up = match rng.gen_range(0..3) {
            0 => String::new(),
            n => format!("wrap_up_secs = {}\n", (n - 1) * 10),
        };
        s.push_str(&format!(
            "max_waiting = {}\ntimeout_secs = {}\nring_secs = {}\nring_then_queue_secs = {}\n\
             max_calls_per_agent = {}\nretry_secs = {}\nauto_pause_misses = {}\n\
             auto_unpause_secs = {}\n{wrap_up}announce_every_secs = {}\nannounce_position = true\n",
            rng.gen_range(0..4),
            [0, 20, 60, 120][rng.gen_range(0..4)],
            rng.gen_range(3..20),
            [0, 0, 5][rng.gen_range(0..3)],
            rng.gen_range(1..=2),
            rng.gen_range(0..6),
            rng.gen_range(0..3),
            [0, 30][rng.gen_range(0..2)],
            [0, 15][rng.gen_range(0..2)],
        ));
    }
    s
}

fn pick<T: Clone>(rng: &mut StdRng, items: impl Iterator<Item = T>) -> Option<T> {
    let v: Vec<T> = items.collect();
    (!v.is_empty()).then(|| v[rng.gen_range(0..v.len())].clone())
}

/// What the test knows from the actions, independently of the engine.
#[derive(Default)]
struct Model {
    /// Pending offers: offer → (call, agent, group or campaign).
    open: BTreeMap<OfferId, (CallId, AgentId, Option<GroupId>)>,
    closed: Vec<OfferId>,
    /// Connected calls → (agent, group or campaign).
    connected: BTreeMap<CallId, (AgentId, Option<GroupId>)>,
    /// Calls in a group's queue, by arrival: call → (group, arrival order).
    queued: BTreeMap<CallId, (GroupId, usize)>,
    arrivals: usize,
    registered: BTreeSet<String>,
    paused: BTreeSet<AgentId>,
    next_call: usize,
}

impl Model {
    /// The smallest per-agent limit among the groups of what `agent` holds.
    fn cap(&self, agent: &AgentId, max_of: impl Fn(&GroupId) -> usize) -> usize {
        let offers = self
            .open
            .values()
            .filter(|(_, a, _)| a == agent)
            .map(|(_, _, g)| g);
        let calls = self
            .connected
            .values()
            .filter(|(a, _)| a == agent)
            .map(|(_, g)| g);
        offers
            .chain(calls)
            .flatten()
            .map(max_of)
            .min()
            .unwrap_or(usize::MAX)
    }

    fn load(&self, agent: &AgentId) -> (usize, bool) {
        let offers = self.open.values().filter(|(_, a, _)| a == agent);
        let calls = self.connected.values().filter(|(a, _)| a == agent);
        let campaign =
            offers.clone().any(|(_, _, g)| g.is_none()) || calls.clone().any(|(_, g)| g.is_none());
        (offers.count() + calls.count(), campaign)
    }
}

struct Run {
    sim: Sim,
    model: Model,
    rng: StdRng,
}

impl Run {
    fn new(seed: u64) -> Run {
        let mut rng = StdRng::seed_from_u64(seed);
        let toml = random_config(&mut rng);
        let sim = Sim::new(&toml);
        let model = Model {
            registered: (1..AGENTS).map(|i| (1000 + i).to_string()).collect(),
            ..Model::default()
        };
        Run { sim, model, rng }
    }

    fn agent(&mut self) -> AgentId {
        AgentId(format!("a{}", self.rng.gen_range(1..=AGENTS)))
    }

    fn random_event(&mut self) -> Option<Event> {
        let roll = self.rng.gen_range(0..100);
        Some(match roll {
            0..=17 => return None, // the clock moves instead
            18..=31 => {
                self.model.next_call += 1;
                Event::CallArrived {
                    call: CallId(format!("c{}", self.model.next_call)),
                    group: GroupId(format!("q{}", self.rng.gen_range(0..2))),
                    caller: "x".into(),
                }
            }
            32..=56 => {
                let offer = pick(&mut self.rng, self.model.open.keys().copied())?;
                let outcome = match self.rng.gen_range(0..10) {
                    0..=3 => LegOutcome::Answered,
                    4..=5 => LegOutcome::NoAnswer,
                    6..=7 => LegOutcome::Ringing,
                    _ => LegOutcome::Failed(LegFailure::ALL[self.rng.gen_range(0..3)]),
                };
                Event::AgentLeg { offer, outcome }
            }
            57..=58 => {
                let offer = pick(&mut self.rng, self.model.closed.iter().copied())?;
                Event::AgentLeg {
                    offer,
                    outcome: LegOutcome::Answered,
                }
            }
            59..=63 => {
                let live = self
                    .model
                    .queued
                    .keys()
                    .chain(self.model.connected.keys())
                    .cloned();
                Event::CallerHungUp {
                    call: pick(&mut self.rng, live)?,
                }
            }
            64..=71 => Event::CallEnded {
                call: pick(&mut self.rng, self.model.connected.keys().cloned())?,
            },
            72 => Event::CallTransferred {
                call: pick(&mut self.rng, self.model.connected.keys().cloned())?,
                to: "2001".into(),
            },
            73..=74 => {
                let call = pick(&mut self.rng, self.model.connected.keys().cloned())?;
                if self.rng.gen_bool(0.5) {
                    Event::CallHeld { call }
                } else {
                    Event::CallResumed { call }
                }
            }
            75..=76 => Event::Pause {
                agent: self.agent(),
                reason: ["lunch", "no-answer", "nap"][self.rng.gen_range(0..3)].into(),
            },
            77..=80 => Event::Unpause {
                agent: self.agent(),
            },
            81..=83 | 97..=98 => Event::Ready {
                agent: self.agent(),
            },
            84 => Event::AgentLogout {
                agent: self.agent(),
            },
            85..=86 => Event::AgentLogin {
                agent: self.agent(),
                extension: (1000 + self.rng.gen_range(1..=AGENTS + 1)).to_string(),
                pin: Some(["12", "99"][self.rng.gen_range(0..2)].into()),
            },
            87..=88 => {
                let extension = (1000 + self.rng.gen_range(1..=AGENTS + 1)).to_string();
                if self.rng.gen_bool(0.75) {
                    Event::PhoneRegistered { extension }
                } else {
                    Event::PhoneUnregistered { extension }
                }
            }
            89..=93 => {
                self.model.next_call += 1;
                let agents = (0..3).map(|_| self.agent()).collect();
                Event::CampaignReserve {
                    campaign: "k".into(),
                    call: CallId(format!("k{}", self.model.next_call)),
                    agents,
                    ring_secs: self.rng.gen_range(3..15),
                    wrap_up_secs: [None, Some(5)][self.rng.gen_range(0..2)],
                }
            }
            94 => Event::CampaignLogin {
                agent: self.agent(),
                campaign: "k".into(),
            },
            95..=96 => Event::CampaignLogout {
                agent: self.agent(),
            },
            _ => Event::CallRefused {
                call: "r".into(),
                group: "q0".into(),
                caller: "x".into(),
                reason: RefusalReason::ChannelLimit,
            },
        })
    }

    /// Send, update the model, check every property.
    fn send(&mut self, event: Event) {
        self.model_before(&event);
        let actions = self.sim.send(event.clone());
        self.model_after(&event, &actions);
        self.check(&actions);
    }

    fn advance(&mut self, ms: u64) {
        // One timer at a time, so the model sees each batch.
        let end = self.sim.now + ms;
        while let Some((&timer, &at)) = self
            .sim
            .timers
            .iter()
            .filter(|(_, at)| **at <= end)
            .min_by_key(|(id, at)| (**at, **id))
        {
            self.sim.timers.remove(&timer);
            self.sim.now = at;
            self.send(Event::TimerFired { timer });
        }
        self.sim.now = end;
    }

    fn model_before(&mut self, event: &Event) {
        match event {
            Event::PhoneRegistered { extension } => {
                self.model.registered.insert(extension.clone());
            }
            Event::PhoneUnregistered { extension } => {
                self.model.registered.remove(extension);
            }
            Event::CallerHungUp { call }
            | Event::CallEnded { call }
            | Event::CallTransferred { call, .. } => {
                self.model.connected.remove(call);
            }
            _ => {}
        }
    }

    fn model_after(&mut self, event: &Event, actions: &[Action]) {
        if let Event::AgentLeg { offer, outcome } = event {
            if let Some((call, agent, group)) = self.model.open.remove(offer) {
                match outcome {
                    LegOutcome::Answered => {
                        self.model.connected.insert(call, (agent, group));
                    }
                    LegOutcome::Ringing => {
                        self.model.open.insert(*offer, (call, agent, group));
                    }
                    _ => self.model.closed.push(*offer),
                }
            }
        }
        for a in actions {
            match a {
                Action::OfferCall {
                    offer,
                    call,
                    agent,
                    source,
                    ..
                } => {
                    let group = match source {
                        OfferSource::Group(g) => Some(g.clone()),
                        OfferSource::Campaign(_) => None,
                    };
                    self.model
                        .open
                        .insert(*offer, (call.clone(), agent.clone(), group));
                }
                Action::CancelOffer { offer, .. } => {
                    assert!(
                        self.model.open.remove(offer).is_some(),
                        "cancelled an offer not open"
                    );
                    self.model.closed.push(*offer);
                }
                Action::Log(r) => self.model_log(&r.event),
                _ => {}
            }
        }
    }

    fn model_log(&mut self, event: &QueueEvent) {
        match event {
            QueueEvent::Enter { call, group, .. } => {
                self.model.arrivals += 1;
                let fresh = self
                    .model
                    .queued
                    .insert(call.clone(), (group.clone(), self.model.arrivals));
                assert!(fresh.is_none(), "call {call} entered twice");
            }
            QueueEvent::Answer { call, .. }
            | QueueEvent::Abandon { call, .. }
            | QueueEvent::Overflow { call, .. }
            | QueueEvent::Timeout { call, .. } => {
                assert!(
                    self.model.queued.remove(call).is_some(),
                    "outcome for a call not queued: {call}"
                );
            }
            QueueEvent::Pause { agent, .. } => {
                self.model.paused.insert(agent.clone());
            }
            QueueEvent::Unpause { agent } => {
                self.model.paused.remove(agent);
            }
            _ => {}
        }
    }

    fn check(&self, actions: &[Action]) {
        let engine = &self.sim.engine;
        for a in actions {
            let Action::OfferCall {
                call,
                agent,
                source,
                ..
            } = a
            else {
                continue;
            };
            let view = engine.agent(agent).unwrap();
            assert!(
                view.online
                    && view
                        .extension
                        .as_ref()
                        .is_some_and(|e| self.model.registered.contains(e))
            );
            assert!(
                !self.model.paused.contains(agent),
                "offered to paused {agent}"
            );
            assert!(
                view.paused.is_none() && !view.wrap_up && !view.error,
                "offered to stopped {agent}"
            );
            let (load, campaign) = self.model.load(agent);
            match source {
                OfferSource::Group(g) => {
                    let max = self.model.cap(agent, |g| {
                        let cfg = engine.config().groups.iter().find(|x| &x.id == g);
                        cfg.map_or(0, |c| c.max_calls_per_agent as usize)
                    });
                    assert!(load <= max, "{agent} holds {load} calls, more than {max}");
                    assert!(
                        !campaign && view.campaign.is_none(),
                        "{agent} in a campaign got a queue call"
                    );
                    self.check_fifo(call, g);
                }
                OfferSource::Campaign(_) => assert_eq!(load, 1, "campaign takes {agent} whole"),
            }
        }
        for view in engine.agents() {
            let (load, _) = self.model.load(&view.id);
            assert_eq!(
                load,
                view.offers + view.calls,
                "model and engine disagree on {}",
                view.id
            );
        }
    }

    /// No earlier call of the group waits un-offered after `call` is offered.
    fn check_fifo(&self, call: &CallId, group: &GroupId) {
        let Some((_, order)) = self.model.queued.get(call) else {
            return;
        };
        for (other, (g, earlier)) in &self.model.queued {
            let offered = self.model.open.values().any(|(c, _, _)| c == other);
            if g == group && earlier < order && !offered {
                panic!("{call} offered while the earlier {other} waits");
            }
        }
    }

    /// Every caller hangs up, every timer runs out.
    fn drain(&mut self) {
        let live: Vec<CallId> = self
            .model
            .queued
            .keys()
            .chain(self.model.connected.keys())
            .cloned()
            .collect();
        for call in live {
            self.send(Event::CallerHungUp { call });
        }
        let campaign: Vec<CallId> = self
            .model
            .open
            .values()
            .map(|(c, _, _)| c.clone())
            .collect();
        for call in campaign {
            self.send(Event::CallerHungUp { call });
        }
        for _ in 0..10 {
            self.advance(600_000);
        }
    }
}

fn run(seed: u64) {
    let mut r = Run::new(seed);
    for _ in 0..STEPS {
        match r.random_event() {
            Some(event) => r.send(event),
            None => {
                let ms = r.rng.gen_range(0..8_000);
                r.advance(ms);
            }
        }
    }
    r.drain();
    let engine = &r.sim.engine;
    assert_eq!(engine.call_count(), 0, "seed {seed}: calls left behind");
    assert_eq!(engine.timer_count(), 0, "seed {seed}: timers left behind");
    assert!(r.model.queued.is_empty() && r.model.open.is_empty() && r.model.connected.is_empty());
    let mut answered = BTreeMap::<&CallId, usize>::new();
    let mut ended = BTreeMap::<&CallId, usize>::new();
    for rec in &r.sim.log {
        match &rec.event {
            QueueEvent::Answer { call, .. } => *answered.entry(call).or_default() += 1,
            QueueEvent::End { call, .. } => *ended.entry(call).or_default() += 1,
            _ => {}
        }
    }
    assert_eq!(
        answered, ended,
        "seed {seed}: every answered call ends once"
    );
    for g in ["q0", "q1"] {
        let c = engine.tally().group(&g.into());
        assert_eq!(c.closed(), c.entered, "seed {seed} {g}: {c:?}");
    }
    assert_eq!(
        &Tally::replay(0, &r.sim.log),
        engine.tally(),
        "seed {seed}: replay differs"
    );
}

#[test]
fn random_sequences_keep_every_invariant() {
    for seed in 0..100 {
        run(seed);
    }
}

#[test]
fn random_sequences_exercise_every_path() {
    // The properties above mean little if the runs never get there.
    let mut kinds = BTreeSet::new();
    let mut answered = 0;
    for seed in 0..8 {
        let mut r = Run::new(seed);
        for _ in 0..STEPS {
            match r.random_event() {
                Some(event) => r.send(event),
                None => r.advance(4_000),
            }
        }
        r.drain();
        kinds.extend(r.sim.log.iter().map(|x| x.event.kind()));
        answered += r
            .sim
            .log
            .iter()
            .filter(|x| x.event.kind() == "answer")
            .count();
    }
    assert!(answered >= 50, "only {answered} answered calls in 8 runs");
    let all: BTreeSet<&str> = crate::acd::log::KINDS.iter().copied().collect();
    assert_eq!(kinds, all);
}

#[test]
fn replaying_the_stored_log_gives_the_live_numbers() {
    use crate::acd::stats::civil::UtcOffset;
    use crate::acd::stats::history::{agent_status_time, by_date, Period, StatusBy};
    use crate::acd::stats::GroupCounts;
    use crate::store::Store;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("denwa.db")).unwrap();
    let mut r = Run::new(11);
    for _ in 0..STEPS {
        match r.random_event() {
            Some(event) => r.send(event),
            None => r.advance(3_000),
        }
    }
    // Mid-run, calls still waiting: the store gets the log as the shell
    // would hand it over.
    for rec in &r.sim.log {
        store.log_acd_event(rec.clone()).unwrap();
    }
    store.flush_blocking().unwrap();
    let until = r.sim.now + 1;
    let stored = store.reader().unwrap().acd_events(0, until).unwrap();
    assert_eq!(stored, r.sim.log);
    let live = r.sim.engine.tally();
    assert_eq!(&Tally::replay(0, &stored), live);

    // A restarted engine continues with the same numbers.
    let mut restarted = Engine::new(r.sim.engine.config().clone(), 1, r.sim.now);
    restarted.restore_tally(0, &stored);
    assert_eq!(restarted.tally(), live);

    // The historical tables add up to the live counts.
    let period = Period {
        from: 0,
        until,
        offset: UtcOffset::JST,
    };
    for g in ["q0", "q1"] {
        let mut total = GroupCounts::default();
        for day in by_date(&stored, &period)
            .into_iter()
            .filter(|d| d.group.as_str() == g)
        {
            total += day.counts;
        }
        assert_eq!(total, live.group(&g.into()), "{g}");
        assert!(total.entered > 0);
    }
    // Each agent's status time covers its whole logged span.
    let rows = agent_status_time(&stored, &period, StatusBy::Agent);
    for agent in r.sim.engine.agents() {
        let first = stored
            .iter()
            .find(|x| matches!(&x.event, QueueEvent::Status { agent: a, .. } if *a == agent.id));
        let tracked: u64 = rows
            .iter()
            .filter(|x| x.key == agent.id.0)
            .map(|x| x.ms)
            .sum();
        assert_eq!(tracked, first.map_or(0, |f| until - f.at), "{}", agent.id);
    }
    store.close().unwrap();
}
