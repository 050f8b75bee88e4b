//! Queues (ACD) with real phones: baresip softphones are the agents, SIPp
//! plays the callers who dial a group's number. denwa answers the caller,
//! rings agents as the group's strategy says, bridges the first answer and
//! logs every step to `acd_events`; these tests check what the phones saw,
//! what the database holds and what `/metrics` shows.

mod common;

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use common::baresip::{json_str, tone_share, Phone};
use common::{caller_sipp, extensions, Background, Denwa, Sipp};
use denwa::acd::{LogRecord, QueueEvent};

/// baresip offers MD5 only (see tests/baresip.rs).
const SETUP: &str = "[auth]\nalgorithms = [\"MD5\"]\n\n";
/// Agents' phones are extensions 5001..=5004, callers 5010..=5013.
const FIRST_AGENT: u32 = 5001;
const LAST_AGENT: u32 = 5004;
const FIRST_CALLER: u32 = 5010;
const LAST_CALLER: u32 = 5013;
/// The number callers dial.
const GROUP_NUMBER: &str = "2000";
const GROUP: &str = "sales";
const PCAP: &str = "/usr/share/sip-tester/g711a.pcap";
const LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(15);

/// The agent id of the phone `number`.
fn agent_id(number: u32) -> String {
    format!("a{number}")
}

/// `[acd]` with one agent per agent phone and the group `sales` on
/// [`GROUP_NUMBER`]: `strategy`, `members` (phone numbers, in order) and
/// any more group keys in `extra`; `more` is appended (other groups).
fn acd(strategy: &str, members: &[u32], extra: &str, more: &str) -> String {
    let mut text = String::from("[acd]\nerror_retry_secs = 60\n\n");
    for n in FIRST_AGENT..=LAST_AGENT {
        text.push_str(&format!(
            "[[acd.agents]]\nid = \"{}\"\nname = \"Agent {n}\"\nextension = \"{n}\"\n\n",
            agent_id(n)
        ));
    }
    let members: Vec<String> = members
        .iter()
        .map(|n| format!("{{ agent = \"{}\" }}", agent_id(*n)))
        .collect();
    let ring = if extra.contains("ring_secs") {
        ""
    } else {
        "ring_secs = 8\n"
    };
    text.push_str(&format!(
        "[[acd.groups]]\nid = \"{GROUP}\"\nnumbers = [\"{GROUP_NUMBER}\"]\nstrategy = \"{strategy}\"\n\
         members = [{}]\n{ring}retry_secs = 0\n{extra}\n\n{more}",
        members.join(", ")
    ));
    text
}

fn start(acd: &str) -> Denwa {
    Denwa::start(&format!(
        "{SETUP}{}{}{acd}",
        extensions(FIRST_AGENT, LAST_AGENT),
        extensions(FIRST_CALLER, LAST_CALLER)
    ))
}

/// `denwa_acd_agents{group="sales",status="..."}`.
fn agents_metric(status: &str) -> String {
    format!("denwa_acd_agents{{group=\"{GROUP}\",status=\"{status}\"}}")
}

fn waiting_metric() -> String {
    format!("denwa_acd_waiting_calls{{group=\"{GROUP}\"}}")
}

/// Agent phones `numbers`, registered, each playing its own tone;
/// `answermode` as baresip takes it ("auto" or "manual").
fn agent_phones(d: &Denwa, numbers: &[u32], answermode: &str) -> Vec<Phone> {
    let phones: Vec<Phone> = numbers
        .iter()
        .map(|n| {
            let hz = 500.0 + f64::from(n - FIRST_AGENT) * 200.0;
            Phone::start(d, *n, hz, 0.5, answermode)
        })
        .collect();
    let mut phones = phones;
    for p in &mut phones {
        p.wait_registered();
    }
    phones
}

/// Wait (bounded) until `count` members of the group show `status`.
fn wait_agents(d: &Denwa, status: &str, count: usize) {
    let want = count as f64;
    let got = d.wait_metric(&agents_metric(status), want);
    assert_eq!(got, want, "agents {status}:\n{}", d.log());
}

/// A SIPp caller from `from` that plays speech for `hold_ms` once
/// answered, then hangs up.
fn caller(d: &Denwa, from: u32, hold_ms: u64) -> Sipp {
    caller_sipp(d, "uac_call.xml", from, GROUP_NUMBER)
        .substitute("[pcap]", PCAP)
        .substitute("[hold_ms]", &hold_ms.to_string())
        .arg("-timeout")
        .arg("40s")
}

/// A caller running in the background.
struct Calling {
    process: Background,
    sipp: Sipp,
}

impl Calling {
    fn start(sipp: Sipp) -> Calling {
        let child: Child = sipp.spawn(LIMIT);
        Calling {
            process: Background::new(child),
            sipp,
        }
    }

    /// Wait for the scenario's end; it must have succeeded.
    fn finish(mut self) {
        assert!(
            self.process.finish(LIMIT),
            "caller failed; errors:\n{}",
            self.sipp.errors()
        );
    }
}

/// Every queue event stored so far.
fn events(d: &Denwa) -> Vec<LogRecord> {
    let db: PathBuf = d.dir.path().join("data").join("denwa.sqlite");
    let reader = denwa::store::Reader::open(&db).expect("database");
    reader.acd_events(0, u64::MAX / 2).expect("acd_events")
}

/// Wait (bounded) until the stored log satisfies `ok`; returns it then.
fn wait_log(d: &Denwa, what: &str, ok: impl Fn(&[LogRecord]) -> bool) -> Vec<LogRecord> {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = events(d);
        if ok(&log) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in acd_events: {log:#?}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100)); // polling a condition, bounded
    }
}

/// Wait (bounded) until the stored log holds an event `want` accepts.
fn wait_event(d: &Denwa, what: &str, want: impl Fn(&QueueEvent) -> bool) -> Vec<LogRecord> {
    wait_log(d, what, |log| log.iter().any(|r| want(&r.event)))
}

/// The stored records of `kind` (as text), in order.
fn of_kind<'a>(log: &'a [LogRecord], kind: &str) -> Vec<&'a LogRecord> {
    log.iter().filter(|r| r.event.kind() == kind).collect()
}

/// Wait (bounded) until `n` answered queue calls have ended.
fn wait_ends(d: &Denwa, n: usize) -> Vec<LogRecord> {
    wait_log(d, &format!("{n} ends"), |log| {
        of_kind(log, "end").len() >= n
    })
}

/// The agents that answered calls, in log order.
fn answered_by(log: &[LogRecord]) -> Vec<String> {
    log.iter()
        .filter_map(|r| match &r.event {
            QueueEvent::Answer { agent, .. } => Some(agent.0.clone()),
            _ => None,
        })
        .collect()
}

fn offered_to(log: &[LogRecord]) -> Vec<String> {
    log.iter()
        .filter_map(|r| match &r.event {
            QueueEvent::Offer { agent, .. } => Some(agent.0.clone()),
            _ => None,
        })
        .collect()
}

/// Ring all: both agents ring, the one that answers gets the caller (and
/// hears the caller's audio through the relay), the other stops ringing.
/// The call record names the group.
#[test]
fn ring_all_rings_every_agent_and_bridges_the_one_who_answers() {
    let d = start(&acd("ring-all", &[5001, 5002], "", ""));
    let mut quiet = agent_phones(&d, &[5001], "manual");
    let mut answering = agent_phones(&d, &[5002], "auto");
    wait_agents(&d, "idle", 2);

    let call = Calling::start(caller(&d, FIRST_CALLER, 4000));
    let incoming = quiet[0].wait_event("CALL_INCOMING");
    assert!(
        json_str(&incoming, "peeruri").starts_with(&format!("sip:{FIRST_CALLER}@")),
        "the agent sees the caller's number: {incoming}"
    );
    answering[0].wait_event("CALL_ESTABLISHED");
    quiet[0].wait_event("CALL_CLOSED");
    // The caller's speech reaches the agent through the relay.
    answering[0].wait_packets(50);
    call.finish();
    answering[0].wait_event("CALL_CLOSED");

    let log = wait_event(&d, "end", |e| matches!(e, QueueEvent::End { .. }));
    let mut offered = offered_to(&log);
    offered.sort();
    assert_eq!(offered, [agent_id(5001), agent_id(5002)], "{log:#?}");
    assert_eq!(answered_by(&log), [agent_id(5002)], "{log:#?}");
    let rec = &d.call_records(1)[0];
    assert_eq!(rec.caller, FIRST_CALLER.to_string());
    assert_eq!(rec.callee, GROUP, "the record is marked with the group");
    assert_eq!(rec.disposition.as_str(), "answered");
    assert!(rec.answered_at_ms.is_some());
    wait_agents(&d, "idle", 2);
    assert_eq!(d.metric(&waiting_metric()), 0.0);
}

/// Run one caller to its end.
fn call_through(d: &Denwa, from: u32, hold_ms: u64) {
    let (ok, report) = caller(d, from, hold_ms).run_report(LIMIT);
    assert!(ok, "{report}\n{}", d.log());
}

/// Ring all when every agent answers at once: exactly one answer counts,
/// the other answered leg is hung up, and the winner's audio (not the
/// loser's) is what denwa receives on the agent side for the rest of the
/// call.
#[test]
fn ring_all_commits_one_answer_when_both_agents_answer_at_once() {
    let d = start(&acd("ring-all", &[5001, 5002], "", ""));
    let mut phones = agent_phones(&d, &[5001, 5002], "auto");
    wait_agents(&d, "idle", 2);

    let call = Calling::start(caller(&d, FIRST_CALLER, 5000));
    let log = wait_event(&d, "answer", |e| matches!(e, QueueEvent::Answer { .. }));
    let winner = answered_by(&log);
    assert_eq!(winner.len(), 1, "{log:#?}");
    let (win, lose) = if winner[0] == agent_id(5001) {
        (0, 1)
    } else {
        (1, 0)
    };
    // The loser's phone ends its call (CANCEL, or ACK and BYE after its
    // 200 crossed); the winner stays connected and hears the caller.
    phones[lose].wait_event("CALL_CLOSED");
    phones[win].wait_event("CALL_ESTABLISHED");
    phones[win].wait_packets(100);
    call.finish();
    phones[win].wait_event("CALL_CLOSED");

    let log = wait_ends(&d, 1);
    assert_eq!(answered_by(&log).len(), 1, "still one answer: {log:#?}");
    let rec = &d.call_records(1)[0];
    let line = rec.callee_line.expect("audio from the agent");
    assert!(
        line.rtp_packets >= 100,
        "denwa kept receiving the winner's audio: {rec:?}"
    );
    wait_agents(&d, "idle", 2);
}

/// Round robin: calls one after another go to the members in turn, and
/// round again.
#[test]
fn round_robin_takes_the_members_in_turn() {
    let d = start(&acd("round-robin", &[5001, 5002, 5003], "", ""));
    let _phones = agent_phones(&d, &[5001, 5002, 5003], "auto");
    wait_agents(&d, "idle", 3);
    for (i, from) in (FIRST_CALLER..=LAST_CALLER).enumerate() {
        call_through(&d, from, 1500);
        wait_ends(&d, i + 1);
        wait_agents(&d, "idle", 3);
    }
    let log = events(&d);
    let order = [5001, 5002, 5003, 5001].map(agent_id);
    assert_eq!(answered_by(&log), order, "{log:#?}");
    assert_eq!(offered_to(&log), order, "nobody else was rung: {log:#?}");
}

/// Longest idle: the agent whose last call ended longest ago gets the
/// next call, even when round robin would pick the other one.
#[test]
fn longest_idle_picks_the_agent_whose_call_ended_first() {
    let d = start(&acd("longest-idle", &[5001, 5002], "", ""));
    let _phones = agent_phones(&d, &[5001, 5002], "auto");
    wait_agents(&d, "idle", 2);
    // A long call to the first agent, a short one to the second: the
    // second agent's call ends first.
    let long = Calling::start(caller(&d, FIRST_CALLER, 6000));
    wait_event(&d, "first answer", |e| {
        matches!(e, QueueEvent::Answer { .. })
    });
    call_through(&d, FIRST_CALLER + 1, 1000);
    long.finish();
    wait_ends(&d, 2);
    wait_agents(&d, "idle", 2);
    call_through(&d, FIRST_CALLER + 2, 1000);
    let log = wait_ends(&d, 3);
    assert_eq!(
        answered_by(&log),
        [5001, 5002, 5002].map(agent_id),
        "{log:#?}"
    );
}

/// An agent who lets the phone ring is paused ("no-answer") after the
/// group's number of misses, gets no call while paused, and is unpaused by
/// the timer; the next offer follows.
#[test]
fn an_agent_who_does_not_answer_is_paused_and_unpaused_by_the_timer() {
    let extra = "ring_secs = 2\nauto_pause_misses = 2\nauto_unpause_secs = 3\n";
    let d = start(&acd("ring-all", &[5001], extra, ""));
    let mut phones = agent_phones(&d, &[5001], "manual");
    wait_agents(&d, "idle", 1);

    let call = Calling::start(caller(&d, FIRST_CALLER, 16_000));
    phones[0].wait_event("CALL_INCOMING");
    let log = wait_event(&d, "pause", |e| matches!(e, QueueEvent::Pause { .. }));
    wait_agents(&d, "paused", 1);
    assert_eq!(d.metric(&waiting_metric()), 1.0, "the caller still waits");
    let log_after = wait_event(&d, "unpause", |e| matches!(e, QueueEvent::Unpause { .. }));
    let pause = of_kind(&log, "pause")[0];
    let QueueEvent::Pause { agent, reason } = &pause.event else {
        unreachable!()
    };
    assert_eq!(
        (agent.0.as_str(), reason.0.as_str()),
        (agent_id(5001).as_str(), "no-answer")
    );
    let misses: Vec<_> = of_kind(&log, "offer_end")
        .into_iter()
        .filter(|r| r.at <= pause.at)
        .collect();
    assert_eq!(misses.len(), 2, "paused after two misses: {log:#?}");
    let unpause = of_kind(&log_after, "unpause")[0];
    let paused_for = unpause.at - pause.at;
    assert!(
        (3000..6000).contains(&paused_for),
        "unpaused by the timer after {paused_for} ms"
    );
    // Back in play: the waiting caller is offered to the agent again.
    let log = wait_log(&d, "a third offer", |log| of_kind(log, "offer").len() >= 3);
    let third = of_kind(&log, "offer")[2];
    assert!(third.at >= unpause.at, "no offer while paused: {log:#?}");
    call.finish();
    let log = wait_event(&d, "abandon", |e| matches!(e, QueueEvent::Abandon { .. }));
    assert_eq!(answered_by(&log), Vec::<String>::new());
}

/// After-call work: the agent's next call waits until the wrap-up timer
/// is over, and the dashboard gauge shows the agent in wrap-up meanwhile.
#[test]
fn wrap_up_holds_the_next_call_back() {
    let d = start(&acd("longest-idle", &[5001], "wrap_up_secs = 3\n", ""));
    let _phones = agent_phones(&d, &[5001], "auto");
    wait_agents(&d, "idle", 1);
    call_through(&d, FIRST_CALLER, 1000);
    let log = wait_ends(&d, 1);
    wait_agents(&d, "wrap_up", 1);
    assert_eq!(of_kind(&log, "wrap_up").len(), 1, "{log:#?}");
    let ended = of_kind(&log, "end")[0].at;

    call_through(&d, FIRST_CALLER + 1, 5000);
    let log = wait_ends(&d, 2);
    let second_offer = of_kind(&log, "offer")[1].at;
    let held_back = second_offer - ended;
    assert!(
        held_back >= 3000,
        "offered {held_back} ms after the first call ended: {log:#?}"
    );
    let waits: Vec<u64> = log
        .iter()
        .filter_map(|r| match &r.event {
            QueueEvent::Answer { wait_ms, .. } => Some(*wait_ms),
            _ => None,
        })
        .collect();
    assert!(waits[1] >= 1000, "the second caller waited: {waits:?}");
}

/// A full queue sends the call to the overflow destination (here an
/// extension, rung directly); a group without one answers busy.
#[test]
fn a_full_queue_overflows_to_its_destination_or_is_busy() {
    // Nobody of the group is online and no call may wait.
    let backup = format!(
        "[[acd.groups]]\nid = \"closed\"\nnumbers = [\"2001\"]\nmax_waiting = 0\n\
         members = [{{ agent = \"{}\" }}]\n",
        agent_id(5001)
    );
    let extra = format!("max_waiting = 0\noverflow = \"{LAST_AGENT}\"\n");
    let d = start(&acd("ring-all", &[5001], &extra, &backup));
    let mut phones = agent_phones(&d, &[LAST_AGENT], "auto");

    let call = Calling::start(caller(&d, FIRST_CALLER, 3000));
    let est = phones[0].wait_event("CALL_ESTABLISHED");
    assert!(
        json_str(&est, "peeruri").starts_with(&format!("sip:{FIRST_CALLER}@")),
        "{est}"
    );
    phones[0].wait_packets(50);
    call.finish();
    phones[0].wait_event("CALL_CLOSED");
    let log = wait_event(&d, "overflow", |e| matches!(e, QueueEvent::Overflow { .. }));
    let overflow = of_kind(&log, "overflow")[0];
    let QueueEvent::Overflow { destination, .. } = &overflow.event else {
        unreachable!()
    };
    assert_eq!(
        destination.as_deref(),
        Some(LAST_AGENT.to_string().as_str())
    );
    assert!(offered_to(&log).is_empty(), "no agent was rung: {log:#?}");
    let rec = &d.call_records(1)[0];
    assert_eq!(rec.callee, LAST_AGENT.to_string());
    assert_eq!(rec.disposition.as_str(), "answered");

    let busy = caller_sipp(&d, "uac_refused.xml", FIRST_CALLER + 1, "2001")
        .substitute("[expect]", "486")
        .arg("-timeout")
        .arg("20s");
    let (ok, report) = busy.run_report(LIMIT);
    assert!(ok, "busy without an overflow destination: {report}");
    let log = wait_log(&d, "two overflows", |log| {
        of_kind(log, "overflow").len() == 2
    });
    let second = of_kind(&log, "overflow")[1];
    assert!(matches!(
        &second.event,
        QueueEvent::Overflow { destination: None, group, .. } if group.0 == "closed"
    ));
}

/// The queue timeout sends a waiting call to the timeout destination,
/// another group, whose agent answers it; the agent who was ringing stops.
#[test]
fn a_call_waiting_too_long_goes_to_the_timeout_destination() {
    let backup = format!(
        "[[acd.groups]]\nid = \"backup\"\nnumbers = [\"2001\"]\n\
         members = [{{ agent = \"{}\" }}]\n",
        agent_id(LAST_AGENT)
    );
    let extra = "timeout_secs = 2\ntimeout_destination = \"2001\"\n";
    let d = start(&acd("ring-all", &[5001], extra, &backup));
    let mut ringing = agent_phones(&d, &[5001], "manual");
    let mut backup_agent = agent_phones(&d, &[LAST_AGENT], "auto");
    wait_agents(&d, "idle", 1);

    let call = Calling::start(caller(&d, FIRST_CALLER, 5000));
    ringing[0].wait_event("CALL_INCOMING");
    backup_agent[0].wait_event("CALL_ESTABLISHED");
    ringing[0].wait_event("CALL_CLOSED");
    backup_agent[0].wait_packets(50);
    call.finish();

    let log = wait_ends(&d, 1);
    let timeout = of_kind(&log, "timeout")[0];
    let QueueEvent::Timeout {
        wait_ms,
        destination,
        ..
    } = &timeout.event
    else {
        unreachable!()
    };
    assert!((2000..4000).contains(wait_ms), "waited {wait_ms} ms");
    assert_eq!(destination.as_deref(), Some("2001"));
    let enters: Vec<&str> = of_kind(&log, "enter")
        .iter()
        .filter_map(|r| r.event.group().map(|g| g.0.as_str()))
        .collect();
    assert_eq!(enters, [GROUP, "backup"], "{log:#?}");
    assert_eq!(answered_by(&log), [agent_id(LAST_AGENT)]);
    assert_eq!(d.call_records(1)[0].callee, "backup");
}

/// A caller who hangs up while waiting is counted abandoned in
/// `acd_events`, with the time waited; the gauge showed the call waiting.
#[test]
fn a_caller_hanging_up_while_waiting_is_abandoned() {
    // The only member's phone is not registered: the call waits.
    let d = start(&acd("ring-all", &[5001], "", ""));
    wait_agents(&d, "offline", 1);
    let call = Calling::start(caller(&d, FIRST_CALLER, 2500));
    assert_eq!(d.wait_metric(&waiting_metric(), 1.0), 1.0);
    call.finish();
    let log = wait_event(&d, "abandon", |e| matches!(e, QueueEvent::Abandon { .. }));
    let abandon = of_kind(&log, "abandon")[0];
    let QueueEvent::Abandon { wait_ms, group, .. } = &abandon.event else {
        unreachable!()
    };
    assert_eq!(group.0, GROUP);
    assert!((2000..5000).contains(wait_ms), "waited {wait_ms} ms");
    assert_eq!(d.wait_metric(&waiting_metric(), 0.0), 0.0);
    let rec = &d.call_records(1)[0];
    assert_eq!(rec.disposition.as_str(), "cancelled");
    assert_eq!(rec.hangup_side.map(|s| s.as_str()), Some("caller"));
    assert_eq!(rec.answered_at_ms, None, "no agent answered");

    let db = d.dir.path().join("data").join("denwa.sqlite");
    let conn = rusqlite::Connection::open(&db).expect("database");
    let (rows, waited): (i64, i64) = conn
        .query_row(
            "SELECT count(*), max(duration_ms) FROM acd_events
             WHERE kind = 'abandon' AND group_id = ?1",
            [GROUP],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("query");
    assert_eq!((rows, waited), (1, *wait_ms as i64), "one abandon row");
}

/// An agent whose phone unregisters mid-shift goes offline and calls go
/// to the other agent; registering again brings the agent back.
#[test]
fn an_agent_whose_phone_unregisters_goes_offline_and_calls_go_elsewhere() {
    let d = start(&acd("round-robin", &[5001, 5002], "", ""));
    let mut phones = agent_phones(&d, &[5001, 5002], "auto");
    wait_agents(&d, "idle", 2);
    let aor = format!("sip:5001@{}", d.sip_addr());
    phones[0].command("uadel", &aor);
    wait_agents(&d, "offline", 1);
    wait_agents(&d, "idle", 1);

    call_through(&d, FIRST_CALLER, 1000);
    call_through(&d, FIRST_CALLER + 1, 1000);
    let log = wait_ends(&d, 2);
    assert_eq!(answered_by(&log), [5002, 5002].map(agent_id), "{log:#?}");
    assert_eq!(offered_to(&log), [5002, 5002].map(agent_id), "{log:#?}");
    let went_offline = log.iter().any(|r| {
        matches!(&r.event, QueueEvent::Status { agent, to, .. }
            if agent.0 == agent_id(5001) && to.as_str() == "offline")
    });
    assert!(went_offline, "{log:#?}");
}

/// Ring then queue: the caller hears ringing (180) while the group's
/// agents could be rung, and is answered into the queue only when the
/// ring phase is over; the wait counts from arrival.
#[test]
fn ring_then_queue_answers_the_caller_after_the_ring_phase() {
    let d = start(&acd("ring-all", &[5001], "ring_then_queue_secs = 3\n", ""));
    wait_agents(&d, "offline", 1);
    call_through(&d, FIRST_CALLER, 1000);
    let log = wait_event(&d, "abandon", |e| matches!(e, QueueEvent::Abandon { .. }));
    let QueueEvent::Abandon { wait_ms, .. } = &of_kind(&log, "abandon")[0].event else {
        unreachable!()
    };
    // 3 s of ringing, then 1 s answered before the caller hung up.
    assert!((4000..7000).contains(wait_ms), "waited {wait_ms} ms");
    assert_eq!(d.log_count("caller answered into the queue"), 1);
}

/// A whisper: the agent hears the group's whisper (speech) before the
/// caller is connected, then the caller (a softphone playing a tone).
#[test]
fn the_agent_hears_the_whisper_before_the_caller() {
    const CALLER_HZ: f64 = 1000.0;
    let d = start(&acd(
        "ring-all",
        &[5001],
        "whisper = \"queue-thankyou\"\n",
        "",
    ));
    let mut agent = agent_phones(&d, &[5001], "auto");
    let mut caller = Phone::start(&d, FIRST_CALLER, CALLER_HZ, 0.5, "manual");
    caller.wait_registered();
    wait_agents(&d, "idle", 1);
    caller.dial(&d, GROUP_NUMBER);
    caller.wait_event("CALL_ESTABLISHED");
    agent[0].wait_event("CALL_ESTABLISHED");
    agent[0].wait_received_secs(4);
    caller.hang_up();
    agent[0].wait_event("CALL_CLOSED");
    let heard = agent[0].take_received();
    // The whisper lasts 1.6 s: the first second is speech, not the tone;
    // a second later the caller's tone fills what the agent hears.
    let first = tone_share(&heard[..8000], CALLER_HZ);
    let later = tone_share(&heard[20_000..28_000], CALLER_HZ);
    assert!(first < 0.3, "the whisper came first: tone share {first:.2}");
    assert!(later > 0.8, "then the caller: tone share {later:.2}");
    let log = d.log();
    let connected = log.find("queue call connected").expect("bridged");
    let whispered = log.find("whisper played").expect("whisper over");
    assert!(connected < whispered);
}

/// The agent puts the caller on hold (the dashboard shows it) and back,
/// then hangs up: the caller's phone is hung up too and the record says
/// the callee side ended the call.
#[test]
fn the_agent_holds_resumes_and_hangs_up() {
    let d = start(&acd("ring-all", &[5001], "", ""));
    let mut agent = agent_phones(&d, &[5001], "auto");
    let mut caller = Phone::start(&d, FIRST_CALLER, 1000.0, 0.5, "manual");
    caller.wait_registered();
    wait_agents(&d, "idle", 1);
    caller.dial(&d, GROUP_NUMBER);
    agent[0].wait_event("CALL_ESTABLISHED");
    wait_agents(&d, "talking", 1);
    agent[0].hold();
    wait_agents(&d, "on_hold", 1);
    agent[0].resume();
    wait_agents(&d, "talking", 1);
    agent[0].hang_up();
    caller.wait_event("CALL_CLOSED");
    let log = wait_ends(&d, 1);
    assert_eq!(answered_by(&log), [agent_id(5001)]);
    let rec = &d.call_records(1)[0];
    assert_eq!(rec.hangup_side.map(|s| s.as_str()), Some("callee"));
    assert_eq!(rec.disposition.as_str(), "answered");
    wait_agents(&d, "idle", 1);
}
