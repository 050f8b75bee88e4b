//! The ACD task: the one owner of the ACD engine. It feeds the engine what
//! happens (calls arriving, agent legs, hang-ups from the queue call
//! actors; phones registering and unregistering from the SIP core; its own
//! timers firing) with the wall-clock time, and carries out the actions
//! that come back: timers on tokio's clock, log records to the store, the
//! rest to the actor of the call they are about. After each input the
//! per-group gauges on `/metrics` are brought up to date.
//!
//! At start the live statistics are folded again from today's stored
//! queue event log, so they continue across a restart.
//!
//! What this module must not do: decide anything the engine decides, or
//! wait on the store (writes are queued, never awaited).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::acd::config::AcdConfig;
use crate::acd::types::AgentStatus;
use crate::acd::{Action, CallId, Engine, Event, LogRecord, OfferId, TimerId, UnixMs};
use crate::call::queue::{AcdInput, CommandSender};
use crate::metrics::{Gauge, Metrics};
use crate::store::Store;

const DAY_MS: UnixMs = 24 * 3600 * 1000;

fn now_ms() -> UnixMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The start of the UTC day `at` falls in: where the live statistics
/// begin.
pub fn day_start(at: UnixMs) -> UnixMs {
    at - at % DAY_MS
}

/// The gauges of one group.
struct GroupGauges {
    group: crate::acd::GroupId,
    waiting: Gauge,
    by_status: Vec<(AgentStatus, Gauge)>,
}

/// `denwa_acd_waiting_calls{group}` and `denwa_acd_agents{group,status}`
/// for every configured group: a closed label set.
fn gauges(config: &AcdConfig, metrics: &Metrics) -> Vec<GroupGauges> {
    let gauge = |name, help, labels: &[(&str, &str)]| {
        metrics
            .register_labelled_gauge(name, help, labels)
            .unwrap_or_default()
    };
    config
        .groups
        .iter()
        .map(|g| GroupGauges {
            group: g.id.clone(),
            waiting: gauge(
                "acd_waiting_calls",
                "Calls in a queue group that no agent has answered yet.",
                &[("group", g.id.as_str())],
            ),
            by_status: AgentStatus::ALL
                .iter()
                .map(|s| {
                    let labels = [("group", g.id.as_str()), ("status", s.as_str())];
                    let help = "Members of a queue group by agent status.";
                    (*s, gauge("acd_agents", help, &labels))
                })
                .collect(),
        })
        .collect()
}

/// The actor of a call and the offers made for it.
struct Actor {
    tx: CommandSender,
    offers: Vec<OfferId>,
}

/// The task's state. See the module documentation.
pub struct AcdTask {
    engine: Engine,
    store: Store,
    actors: HashMap<CallId, Actor>,
    offer_calls: HashMap<OfferId, CallId>,
    timers: HashMap<TimerId, Instant>,
    due: BTreeSet<(Instant, TimerId)>,
    gauges: Vec<GroupGauges>,
}

impl AcdTask {
    /// The engine for `config`, its statistics folded from `today` (the
    /// stored records since the start of the day), and the phones that are
    /// registered already.
    pub fn new(
        config: AcdConfig,
        store: Store,
        metrics: &Metrics,
        today: &[LogRecord],
        registered: &[String],
    ) -> AcdTask {
        let now = now_ms();
        let gauges = gauges(&config, metrics);
        let mut engine = Engine::new(config, rand::random(), now);
        engine.restore_tally(day_start(now), today);
        let mut task = AcdTask {
            engine,
            store,
            actors: HashMap::new(),
            offer_calls: HashMap::new(),
            timers: HashMap::new(),
            due: BTreeSet::new(),
            gauges,
        };
        for extension in registered {
            let extension = extension.clone();
            task.handle(Event::PhoneRegistered { extension });
        }
        task.update_gauges();
        task
    }

    /// Run until every sender is gone.
    pub async fn run(mut self, mut input: mpsc::UnboundedReceiver<AcdInput>) {
        loop {
            let next = self.due.first().map(|(at, _)| *at);
            tokio::select! {
                msg = input.recv() => match msg {
                    Some(msg) => self.input(msg),
                    None => break,
                },
                () = sleep_until(next) => self.fire_due(),
            }
            self.update_gauges();
        }
    }

    fn input(&mut self, input: AcdInput) {
        match input {
            AcdInput::Arrived {
                call,
                group,
                caller,
                actor,
            } => {
                let entry = Actor {
                    tx: actor,
                    offers: Vec::new(),
                };
                self.actors.insert(call.clone(), entry);
                self.handle(Event::CallArrived {
                    call,
                    group,
                    caller,
                });
            }
            AcdInput::Event(event) => self.handle(event),
            AcdInput::Gone { call } => {
                if let Some(actor) = self.actors.remove(&call) {
                    for offer in actor.offers {
                        self.offer_calls.remove(&offer);
                    }
                }
            }
        }
    }

    fn fire_due(&mut self) {
        let now = Instant::now();
        while let Some(&(at, timer)) = self.due.first() {
            if at > now {
                break;
            }
            self.due.remove(&(at, timer));
            self.timers.remove(&timer);
            self.handle(Event::TimerFired { timer });
        }
    }

    /// One event through the engine, and everything it leads to (an actor
    /// that is gone counts as its caller hanging up).
    fn handle(&mut self, event: Event) {
        let mut pending = vec![event];
        while let Some(event) = pending.pop() {
            let actions = self.engine.handle(event, now_ms());
            for action in actions {
                if let Some(call) = self.carry_out(action) {
                    pending.push(Event::CallerHungUp { call });
                }
            }
        }
    }

    /// Carry out one action; the call whose actor could not be reached.
    fn carry_out(&mut self, action: Action) -> Option<CallId> {
        match action {
            Action::Log(record) => {
                if let Err(e) = self.store.log_acd_event(record) {
                    warn!(error = %e, "queue event not stored");
                }
                None
            }
            Action::SetTimer { timer, at } => {
                let wait = Duration::from_millis(at.saturating_sub(now_ms()));
                let at = Instant::now() + wait;
                self.timers.insert(timer, at);
                self.due.insert((at, timer));
                None
            }
            Action::CancelTimer { timer } => {
                if let Some(at) = self.timers.remove(&timer) {
                    self.due.remove(&(at, timer));
                }
                None
            }
            Action::AgentStatusChanged {
                agent,
                from,
                to,
                reason,
            } => {
                info!(%agent, %from, %to, reason = reason.as_deref().unwrap_or(""), "agent status");
                None
            }
            Action::LoginRefused { .. }
            | Action::CampaignNoAgent { .. }
            | Action::CampaignReleased { .. } => {
                debug!(action = ?action, "ACD action with no campaign or login wired");
                None
            }
            other => self.deliver(other),
        }
    }

    /// Hand an action to its call's actor.
    fn deliver(&mut self, action: Action) -> Option<CallId> {
        let call = match &action {
            Action::AnswerCaller { call }
            | Action::PlayToCaller { call, .. }
            | Action::OfferCall { call, .. }
            | Action::CancelOffer { call, .. }
            | Action::WhisperToAgent { call, .. }
            | Action::Bridge { call, .. }
            | Action::RouteTo { call, .. }
            | Action::Reject { call, .. } => call.clone(),
            Action::DropLateAnswer { offer } => self.offer_calls.get(offer)?.clone(),
            _ => return None,
        };
        if let Action::OfferCall { offer, .. } = &action {
            self.offer_calls.insert(*offer, call.clone());
            if let Some(actor) = self.actors.get_mut(&call) {
                actor.offers.push(*offer);
            }
        }
        let delivered = self
            .actors
            .get(&call)
            .is_some_and(|a| a.tx.send(action).is_ok());
        (!delivered).then_some(call)
    }

    fn update_gauges(&mut self) {
        let statuses: HashMap<_, _> = self
            .engine
            .agents()
            .into_iter()
            .map(|v| (v.id, v.status))
            .collect();
        for g in &self.gauges {
            let waiting = self.engine.waiting_calls(&g.group).len();
            g.waiting.set(i64::try_from(waiting).unwrap_or(i64::MAX));
            let members = self
                .engine
                .config()
                .groups
                .iter()
                .find(|c| c.id == g.group)
                .map(|c| c.members.as_slice())
                .unwrap_or_default();
            let mut counts = [0i64; AgentStatus::ALL.len()];
            for m in members {
                let at = statuses
                    .get(&m.agent)
                    .and_then(|s| AgentStatus::ALL.iter().position(|x| x == s));
                if let Some(slot) = at.and_then(|i| counts.get_mut(i)) {
                    *slot += 1;
                }
            }
            for ((_, gauge), count) in g.by_status.iter().zip(counts) {
                gauge.set(count);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::{AgentId, GroupId, QueueEvent};

    #[test]
    fn the_day_starts_at_utc_midnight() {
        let at = 1_700_000_123_456; // 2023-11-14 22:15:23.456 UTC
        assert_eq!(day_start(at), 1_699_920_000_000);
        assert_eq!(day_start(day_start(at)), day_start(at));
    }

    fn config() -> AcdConfig {
        let raw: crate::acd::RawAcd = toml::from_str(
            "[[agents]]\nid = \"alice\"\nname = \"Alice\"\nextension = \"1001\"\n\
             [[agents]]\nid = \"bob\"\nname = \"Bob\"\nextension = \"1002\"\n\
             [[groups]]\nid = \"sales\"\nnumbers = [\"2000\"]\n\
             members = [{ agent = \"alice\" }, { agent = \"bob\" }]\n",
        )
        .expect("toml");
        crate::acd::validate(&raw).expect("valid")
    }

    #[test]
    fn a_new_task_continues_todays_numbers_and_knows_the_registered_phones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.sqlite")).unwrap();
        let metrics = Metrics::new();
        let at = now_ms();
        let (call, group) = (CallId::from("c1"), GroupId::from("sales"));
        let today = [
            LogRecord {
                at,
                event: QueueEvent::Enter {
                    call: call.clone(),
                    group: group.clone(),
                    caller: "1010".into(),
                },
            },
            LogRecord {
                at,
                event: QueueEvent::Answer {
                    call,
                    group: group.clone(),
                    agent: AgentId::from("alice"),
                    wait_ms: 1200,
                },
            },
        ];
        let task = AcdTask::new(config(), store.clone(), &metrics, &today, &["1002".into()]);
        let counts = task.engine.tally().group(&group);
        assert_eq!((counts.entered, counts.answered), (1, 1));
        assert_eq!(counts.answered_wait_ms, 1200);
        let bob = task.engine.agent(&AgentId::from("bob")).unwrap();
        assert_eq!(bob.status, AgentStatus::Idle, "the registered phone");
        let text = metrics.render();
        for (status, n) in [("idle", 1), ("offline", 1), ("talking", 0)] {
            let line = format!("denwa_acd_agents{{group=\"sales\",status=\"{status}\"}} {n}\n");
            assert!(text.contains(&line), "{line} in:\n{text}");
        }
        assert!(text.contains("denwa_acd_waiting_calls{group=\"sales\"} 0\n"));
        store.close().unwrap();
    }
}
