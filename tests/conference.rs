//! Calls denwa answers itself, with real phones: three baresip softphones
//! in conference room 9201, and a supervisor who monitors, whispers to and
//! barges into an agent's call (feature codes 995, 994, 996). SIPp shows
//! the refusals: 403 for a caller who is not a supervisor, 480 for an agent
//! in no call, 404 for an unknown one.
//!
//! Every phone plays its own tone, with a whole number of periods per 20 ms
//! window and none a harmonic of another, so the share of a received
//! signal's energy at each frequency says whom the phone heard. Positions in
//! a phone's dump are taken while the call runs (the dump grows as audio is
//! received), so each phase of a call can be judged on its own.

mod common;

use common::baresip::{json_str, tone_share, Phone, RATE};
use common::{caller_sipp, extensions, password, Denwa};
use denwa::store::cdr::{CallRecord, Disposition, Side};
use std::time::Duration;

/// baresip 1.0 answers MD5 digest challenges only.
const SETUP: &str = "[auth]\nalgorithms = [\"MD5\"]\n\n";
const LIMIT: Duration = Duration::from_secs(60);
/// Each phone's tone, as a share of full scale: two of them mixed stay
/// well below the mixer's limiter.
const LEVEL: f64 = 0.2;
/// The tone of the first, second and third phone: 9, 14 and 23 periods in
/// 20 ms. The join beep (the default JP profile's) is 1000 Hz.
const TONES: [f64; 3] = [450.0, 700.0, 1150.0];
const BEEP_HZ: f64 = 1000.0;
/// Seconds of audio judged in each phase.
const PHASE_SECS: f64 = 3.0;
/// Audio skipped after a change (a join beep, a new mix settling).
const SETTLE_SECS: f64 = 1.0;
/// A tone heard: at least this share of the energy.
const HEARD: f64 = 0.2;
/// A tone not heard: at most this share (G.711 noise stays far below).
const NOT_HEARD: f64 = 0.02;

fn secs(s: f64) -> usize {
    (s * f64::from(RATE)) as usize
}

/// The samples `from..to` of `all` (clamped to what is there).
fn span(all: &[i16], from: usize, to: usize) -> &[i16] {
    let to = to.min(all.len());
    &all[from.min(to)..to]
}

/// The shares of each of [`TONES`] in `samples`.
fn shares(samples: &[i16]) -> [f64; 3] {
    TONES.map(|hz| tone_share(samples, hz))
}

/// One extension block, optionally a supervisor.
fn extension(n: u32, supervisor: bool) -> String {
    format!(
        "[[extensions]]\nnumber = \"{n}\"\npassword = \"{}\"\nsupervisor = {supervisor}\n\n",
        password(n)
    )
}

/// Phone `i` of [`TONES`] heard each of the others and not itself.
fn assert_hears_the_others(i: usize, heard: &[f64; 3]) {
    for (j, share) in heard.iter().enumerate() {
        if i == j {
            assert!(*share < NOT_HEARD, "phone {i} hears itself: {heard:?}");
        } else {
            assert!(*share > HEARD, "phone {i} does not hear {j}: {heard:?}");
        }
    }
}

/// Where each phone's dump is judged from: [`SETTLE_SECS`] after now;
/// waits (bounded) until each holds [`PHASE_SECS`] past it.
fn mark_and_wait<const N: usize>(mut phones: [&mut Phone; N]) -> [usize; N] {
    let marks = phones.each_ref().map(|p| p.position() + secs(SETTLE_SECS));
    for (p, mark) in phones.iter_mut().zip(marks) {
        p.wait_position(mark + secs(PHASE_SECS));
    }
    marks
}

/// SIPp as `from` dials `to` and expects `code`.
fn refused(d: &Denwa, from: u32, to: &str, code: &str) {
    let (ok, report) = caller_sipp(d, "uac_refused.xml", from, to)
        .substitute("[expect]", code)
        .arg("-timeout")
        .arg("30s")
        .run_report(LIMIT);
    assert!(ok, "{from} dialling {to} expected {code}: {report}");
}

#[test]
fn three_phones_in_a_room_hear_the_other_two_and_not_themselves() {
    let d = Denwa::start(&format!("{SETUP}{}", extensions(6001, 6003)));
    let mut phones: [Phone; 3] =
        std::array::from_fn(|i| Phone::start(&d, 6001 + i as u32, TONES[i], LEVEL, "manual"));
    for p in &mut phones {
        p.wait_registered();
    }
    for p in &mut phones {
        p.dial(&d, "9201");
        p.wait_event("CALL_ESTABLISHED");
    }
    // Everyone is in: judge what each receives from here.
    let marks = mark_and_wait(phones.each_mut());
    for p in &mut phones {
        p.hang_up();
    }
    for (i, (p, mark)) in phones.iter_mut().zip(&marks).enumerate() {
        let all = p.received();
        assert_hears_the_others(i, &shares(span(&all, *mark, mark + secs(PHASE_SECS))));
        if i == 0 {
            // The first phone heard the others join: 20 ms windows where
            // the beep carries a good part of the energy.
            let beeps = all
                .chunks_exact(160)
                .filter(|w| tone_share(w, BEEP_HZ) > 0.15)
                .count();
            assert!(beeps >= 10, "no join beep heard ({beeps} windows)");
        }
    }
    let recs = d.call_records(3);
    let room: Vec<&CallRecord> = recs.iter().filter(|r| r.callee == "9201").collect();
    assert_eq!(room.len(), 3, "{recs:?}");
    for r in room {
        assert_eq!((r.disposition, r.sip_status), (Disposition::Answered, 200));
        assert!(r.talk_ms > 0, "{r:?}");
        let line = r.caller_line.expect("packets from the phone counted");
        assert!(line.rtp_packets >= 150, "{r:?}");
    }
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
}

const CALLER: u32 = 6101;
const AGENT: u32 = 6102;
const SUPERVISOR: u32 = 6103;
const OTHER_AGENT: u32 = 6104;
const SECOND_SUPERVISOR: u32 = 6105;

fn start_call_centre() -> Denwa {
    Denwa::start(&format!(
        "{SETUP}{}{}{}{}{}",
        extension(CALLER, false),
        extension(AGENT, false),
        extension(SUPERVISOR, true),
        extension(OTHER_AGENT, false),
        extension(SECOND_SUPERVISOR, true)
    ))
}

/// The caller, the agent and the supervisor registered, and the caller in
/// an answered call with the agent, audio flowing.
fn agent_in_a_call(d: &Denwa) -> (Phone, Phone, Phone) {
    let mut caller = Phone::start(d, CALLER, TONES[0], LEVEL, "manual");
    let mut agent = Phone::start(d, AGENT, TONES[1], LEVEL, "auto");
    let mut sup = Phone::start(d, SUPERVISOR, TONES[2], LEVEL, "manual");
    for p in [&mut caller, &mut agent, &mut sup] {
        p.wait_registered();
    }
    caller.dial(d, &AGENT.to_string());
    caller.wait_event("CALL_ESTABLISHED");
    agent.wait_event("CALL_ESTABLISHED");
    agent.wait_received_secs(1);
    (caller, agent, sup)
}

/// The supervisor calls `code` + the agent, listens for a phase, and hangs
/// up; returns what the supervisor heard after settling, and the agent's
/// dump positions when the supervisor came in and left.
fn supervise(d: &Denwa, s: &mut Phone, agent: &mut Phone, code: &str) -> ([f64; 3], usize, usize) {
    s.dial(d, &format!("{code}{AGENT}"));
    s.wait_event("CALL_ESTABLISHED");
    let [start, heard_from] = mark_and_wait([agent, s]);
    s.hang_up();
    let end = agent.position();
    let all = s.take_received();
    let heard = shares(span(&all, heard_from, heard_from + secs(PHASE_SECS)));
    (heard, start, end)
}

#[test]
fn supervisor_monitors_then_whispers_to_the_agent() {
    let d = start_call_centre();
    let (mut caller, mut agent, mut sup) = agent_in_a_call(&d);

    let (monitor, m_start, m_end) = supervise(&d, &mut sup, &mut agent, "995");
    assert!(
        monitor[0] > HEARD && monitor[1] > HEARD,
        "monitoring, the supervisor hears both parties: {monitor:?}"
    );
    assert!(monitor[2] < NOT_HEARD, "{monitor:?}");

    let (whisper, w_start, w_end) = supervise(&d, &mut sup, &mut agent, "994");
    assert!(
        whisper[0] > HEARD && whisper[1] > HEARD,
        "whispering, the supervisor still hears both parties: {whisper:?}"
    );

    caller.hang_up();
    agent.wait_event("CALL_CLOSED");
    let agent_heard = agent.received();
    let while_monitored = shares(span(&agent_heard, m_start, m_end));
    assert!(
        while_monitored[0] > 0.5 && while_monitored[2] < NOT_HEARD,
        "the agent hears the caller and not the monitoring supervisor: {while_monitored:?}"
    );
    let while_whispered = shares(span(&agent_heard, w_start, w_end));
    assert!(
        while_whispered[0] > HEARD && while_whispered[2] > HEARD,
        "the agent hears the caller and the whisper: {while_whispered:?}"
    );
    let caller_heard = shares(&caller.received());
    assert!(
        caller_heard[1] > 0.5 && caller_heard[2] < NOT_HEARD,
        "the caller hears the agent and never the supervisor: {caller_heard:?}"
    );

    let recs = d.call_records(3);
    let supervised: Vec<(&str, Disposition)> = recs
        .iter()
        .filter(|r| r.caller == SUPERVISOR.to_string())
        .map(|r| (r.callee.as_str(), r.disposition))
        .collect();
    let (whisper_no, monitor_no) = (format!("994{AGENT}"), format!("995{AGENT}"));
    assert_eq!(
        supervised,
        [
            (whisper_no.as_str(), Disposition::Answered),
            (monitor_no.as_str(), Disposition::Answered)
        ]
    );
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
}

/// Barge: both parties hear the supervisor; a second supervisor gets 486.
/// When the call ends, denwa hangs up on the supervisor with a BYE.
#[test]
fn barging_supervisor_is_heard_by_both_and_hung_up_with_the_call() {
    let d = start_call_centre();
    let (mut caller, mut agent, mut sup) = agent_in_a_call(&d);
    sup.dial(&d, &format!("996{AGENT}"));
    sup.wait_event("CALL_ESTABLISHED");
    let marks = mark_and_wait([&mut caller, &mut agent, &mut sup]);
    // One supervisor at a time.
    refused(&d, SECOND_SUPERVISOR, &format!("995{AGENT}"), "486");

    caller.hang_up();
    agent.wait_event("CALL_CLOSED");
    let closed = sup.wait_event("CALL_CLOSED");
    // baresip reports a BYE from the far end as "Connection reset by peer".
    assert!(
        json_str(&closed, "param").contains("peer"),
        "denwa did not hang up on the supervisor: {closed}"
    );
    for (i, (p, mark)) in [&mut caller, &mut agent, &mut sup]
        .into_iter()
        .zip(marks)
        .enumerate()
    {
        let heard = shares(span(&p.received(), mark, mark + secs(PHASE_SECS)));
        assert_hears_the_others(i, &heard);
    }
    let recs = d.call_records(3);
    let barge = recs
        .iter()
        .find(|r| r.caller == SUPERVISOR.to_string())
        .expect("the supervisor's call record");
    assert_eq!(
        (barge.callee.clone(), barge.disposition, barge.hangup_side),
        (
            format!("996{AGENT}"),
            Disposition::Answered,
            Some(Side::System)
        )
    );
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
}

#[test]
fn supervision_is_refused_to_agents_for_idle_and_unknown_extensions() {
    let d = start_call_centre();
    refused(&d, OTHER_AGENT, &format!("995{AGENT}"), "403");
    refused(&d, OTHER_AGENT, &format!("994{AGENT}"), "403");
    refused(&d, SUPERVISOR, &format!("995{AGENT}"), "480");
    refused(&d, SUPERVISOR, "9957777", "404");
    let recs = d.call_records(4);
    let mut got: Vec<(String, String, Disposition, u16)> = recs
        .iter()
        .map(|r| {
            (
                r.caller.clone(),
                r.callee.clone(),
                r.disposition,
                r.sip_status,
            )
        })
        .collect();
    got.sort();
    let want =
        |from: u32, to: String, disposition, status| (from.to_string(), to, disposition, status);
    assert_eq!(
        got,
        [
            want(
                SUPERVISOR,
                format!("995{AGENT}"),
                Disposition::Unavailable,
                480
            ),
            want(SUPERVISOR, "9957777".into(), Disposition::NotFound, 404),
            want(
                OTHER_AGENT,
                format!("994{AGENT}"),
                Disposition::Rejected,
                403
            ),
            want(
                OTHER_AGENT,
                format!("995{AGENT}"),
                Disposition::Rejected,
                403
            ),
        ]
    );
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
}

/// A room as SIPp sees it: the INVITE retransmission is absorbed, a
/// re-INVITE putting the room on hold (sendonly) is answered recvonly, and
/// the BYE ends the call with a record.
#[test]
fn room_call_takes_a_hold_reinvite_and_a_bye() {
    let d = start_call_centre();
    let (ok, report) = caller_sipp(&d, "uac_retrans_hold.xml", CALLER, "9202")
        .arg("-timeout")
        .arg("30s")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    let recs = d.call_records(1);
    let r = &recs[0];
    assert_eq!(
        (r.callee.as_str(), r.disposition, r.hangup_side),
        ("9202", Disposition::Answered, Some(Side::Caller))
    );
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
}
