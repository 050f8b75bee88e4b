//! Queues (ACD) with real phones: baresip softphones are the agents, SIPp
//! plays the callers who dial a group's number. denwa answers the caller,
//! rings agents as the group's strategy says, bridges the first answer and
//! logs every step to `acd_events`; these tests check what the phones saw,
//! what the database holds and what `/metrics` shows.

mod common;

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use common::baresip::{json_str, Phone};
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
    text.push_str(&format!(
        "[[acd.groups]]\nid = \"{GROUP}\"\nnumbers = [\"{GROUP_NUMBER}\"]\nstrategy = \"{strategy}\"\n\
         members = [{}]\nring_secs = 8\nretry_secs = 0\n{extra}\n\n{more}",
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

/// Wait (bounded) until the stored log holds an event `want` accepts;
/// returns the whole log then.
fn wait_event(d: &Denwa, what: &str, want: impl Fn(&QueueEvent) -> bool) -> Vec<LogRecord> {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = events(d);
        if log.iter().any(|r| want(&r.event)) {
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
