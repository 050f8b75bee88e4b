//! Calls between extensions through denwa, with SIPp on both sides: the
//! caller authenticates (407), the callee is a registered SIPp UAS; media is
//! anchored at denwa and flows both ways through its relay.

mod common;

use common::{caller_sipp, extensions, free_port, password, register_lines, Denwa, Sipp};
use denwa::store::cdr::{CallRecord, Direction, Disposition, Side};
use denwa::store::Reader;
use std::process::Child;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
const SETUP: &str = "[auth]\nalgorithms = [\"MD5\"]\n\n[calls]\nno_answer_timeout_secs = 5\n\n";
const CALLER: u32 = 3001;
const CALLEE: u32 = 3002;

/// A SIPp callee on its own port, registered at denwa as `user`.
struct Callee {
    child: Option<Child>,
    sipp: Sipp,
}

impl Callee {
    fn start(d: &Denwa, scenario: &str, user: u32, extra: &[&str]) -> Callee {
        let port = free_port();
        let media = free_port();
        let mut sipp = Sipp::uas(scenario, "127.0.0.1", port)
            .arg("-mp")
            .arg(&media.to_string())
            .arg("-m")
            .arg("1");
        for a in extra {
            sipp = sipp.arg(a);
        }
        let child = sipp.spawn(LIMIT);
        // Register the callee's contact (its own port) at denwa.
        let (ok, report) = Sipp::new("register.xml", &d.sip_addr(), "127.0.0.1")
            .users(&register_lines(user..=user, password))
            .key("contact_port", &port.to_string())
            .arg("-m")
            .arg("1")
            .run_report(LIMIT);
        assert!(ok, "callee registration failed: {report}");
        Callee {
            child: Some(child),
            sipp,
        }
    }

    /// Wait for the callee's scenario to end; true when it succeeded.
    fn finish(mut self) -> (bool, String) {
        let mut child = self.child.take().expect("running");
        let status = child.wait().expect("wait sipp");
        let errors = self.sipp.errors();
        (
            status.success(),
            format!("callee exit {status}; errors:\n{errors}"),
        )
    }
}

impl Drop for Callee {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM to `timeout` is passed on to SIPp; SIGKILL would
            // orphan it.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

fn caller(d: &Denwa, scenario: &str, to: &str) -> Sipp {
    caller_sipp(d, scenario, CALLER, to)
        .arg("-timeout")
        .arg("30s")
}

fn start() -> Denwa {
    Denwa::start(&format!("{SETUP}{}", extensions(3001, 3003)))
}

#[test]
fn answered_call_relays_media_both_ways_and_is_recorded() {
    let d = start();
    let callee = Callee::start(&d, "uas.xml", CALLEE, &["-rtp_echo"]);
    let (ok, report) = caller(&d, "uac_call.xml", &CALLEE.to_string())
        .substitute("[pcap]", "/usr/share/sip-tester/g711a.pcap")
        .substitute("[hold_ms]", "3000")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    let (ok, report) = callee.finish();
    assert!(ok, "{report}");
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"answered\"}", 1.0),
        1.0
    );
    let to_callee = d.metric("denwa_rtp_packets_caller_to_callee_total");
    let to_caller = d.metric("denwa_rtp_packets_callee_to_caller_total");
    assert!(to_callee >= 50.0, "caller → callee packets: {to_callee}");
    assert!(
        to_caller >= 50.0,
        "callee → caller packets (echo): {to_caller}"
    );

    // The call record, as stored.
    let rec = last_call_record(&d);
    assert_eq!((rec.caller.as_str(), rec.callee.as_str()), ("3001", "3002"));
    assert_eq!(rec.direction, Direction::Internal);
    assert_eq!(rec.disposition, Disposition::Answered);
    assert_eq!(rec.hangup_side, Some(Side::Caller));
    assert_eq!(rec.sip_status, 200);
    assert!(rec.answered_at_ms.is_some());
    assert!(
        rec.talk_ms >= 2500,
        "talk time {} ms for a 3 s call",
        rec.talk_ms
    );
    assert_eq!(rec.caller_ip.as_deref(), Some("127.0.0.1"));
}

/// The newest call record in denwa's database (polled: the writer commits
/// asynchronously).
fn last_call_record(d: &Denwa) -> CallRecord {
    let db = d.dir.path().join("data").join("denwa.sqlite");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reader = Reader::open(&db).expect("database");
        if let Some(rec) = reader.recent_calls(1).expect("query").into_iter().next() {
            return rec;
        }
        assert!(Instant::now() < deadline, "no call record written");
        std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
    }
}

#[test]
fn busy_callee_gives_486() {
    let d = start();
    let callee = Callee::start(&d, "uas_busy.xml", CALLEE, &[]);
    let (ok, report) = caller(&d, "uac_refused.xml", &CALLEE.to_string())
        .substitute("[expect]", "486")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    assert!(callee.finish().0);
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"busy\"}", 1.0),
        1.0
    );
    let rec = last_call_record(&d);
    assert_eq!(
        (rec.disposition, rec.sip_status, rec.talk_ms),
        (Disposition::Busy, 486, 0)
    );
    assert_eq!(rec.answered_at_ms, None);
}

#[test]
fn caller_cancel_reaches_the_ringing_callee() {
    let d = start();
    let callee = Callee::start(&d, "uas_ring.xml", CALLEE, &[]);
    let (ok, report) = caller(&d, "uac_cancel.xml", &CALLEE.to_string()).run_report(LIMIT);
    assert!(ok, "{report}");
    let (ok, report) = callee.finish();
    assert!(ok, "{report}");
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"cancelled\"}", 1.0),
        1.0
    );
}

#[test]
fn unregistered_extension_gives_480_and_unknown_number_404() {
    let d = start();
    let (ok, report) = caller(&d, "uac_refused.xml", "3003")
        .substitute("[expect]", "480")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    let (ok, report) = caller(&d, "uac_refused.xml", "9999")
        .substitute("[expect]", "404")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    assert_eq!(
        d.wait_metric(
            "denwa_call_attempts_total{disposition=\"unavailable\"}",
            1.0
        ),
        1.0
    );
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"not_found\"}", 1.0),
        1.0
    );
}

#[test]
fn unanswered_call_times_out_with_480() {
    let d = start();
    // Rings until cancelled: denwa's no-answer timer (5 s here) cancels it.
    let callee = Callee::start(&d, "uas_ring.xml", CALLEE, &[]);
    let (ok, report) = caller(&d, "uac_refused.xml", &CALLEE.to_string())
        .substitute("[expect]", "480")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    let (ok, report) = callee.finish();
    assert!(ok, "{report}");
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"no_answer\"}", 1.0),
        1.0
    );
}

#[test]
fn callee_answering_as_the_caller_cancels_is_acked_and_hung_up() {
    let d = start();
    // The CANCEL/200 race: the callee's 200 crosses denwa's CANCEL.
    let callee = Callee::start(&d, "uas_race.xml", CALLEE, &[]);
    let (ok, report) = caller(&d, "uac_cancel.xml", &CALLEE.to_string()).run_report(LIMIT);
    assert!(ok, "{report}");
    let (ok, report) = callee.finish();
    assert!(ok, "the late answer was not ACKed and hung up: {report}");
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"cancelled\"}", 1.0),
        1.0
    );
    assert_eq!(
        d.metric("denwa_call_attempts_total{disposition=\"answered\"}"),
        0.0
    );
}

#[test]
fn call_forks_to_every_contact_and_the_others_are_cancelled() {
    let d = start();
    // Two phones registered as the same extension: one only rings, the
    // other answers; the ringing one must get a CANCEL.
    let ringing = Callee::start(&d, "uas_ring.xml", CALLEE, &[]);
    let answering = Callee::start(&d, "uas.xml", CALLEE, &["-rtp_echo"]);
    assert_eq!(d.wait_metric("denwa_registrations", 2.0), 2.0);
    let (ok, report) = caller(&d, "uac_call.xml", &CALLEE.to_string())
        .substitute("[pcap]", "/usr/share/sip-tester/g711a.pcap")
        .substitute("[hold_ms]", "1000")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    let (ok, report) = answering.finish();
    assert!(ok, "answering phone: {report}");
    let (ok, report) = ringing.finish();
    assert!(ok, "ringing phone was not cancelled: {report}");
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"answered\"}", 1.0),
        1.0
    );
}

#[test]
fn retransmissions_are_absorbed_and_hold_passes_through() {
    let d = start();
    // The caller sends its INVITE and BYE twice; the callee sends its 200
    // twice and is put on hold with a re-INVITE in between.
    let callee = Callee::start(&d, "uas_hold.xml", CALLEE, &[]);
    let (caller_ok, caller_report) =
        caller(&d, "uac_retrans_hold.xml", &CALLEE.to_string()).run_report(LIMIT);
    let (callee_ok, callee_report) = callee.finish();
    assert!(caller_ok && callee_ok, "{caller_report}\n{callee_report}");
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"answered\"}", 1.0),
        1.0
    );
    // Exactly one call: nothing else was counted.
    for other in [
        "busy",
        "no_answer",
        "cancelled",
        "failed",
        "unavailable",
        "not_found",
        "rejected",
    ] {
        assert_eq!(
            d.metric(&format!(
                "denwa_call_attempts_total{{disposition=\"{other}\"}}"
            )),
            0.0,
            "{other}"
        );
    }
}

#[test]
fn offer_without_pcmu_or_pcma_gets_488() {
    let d = start();
    // Registered, so only the codec can be the reason; it never rings.
    let _callee = Callee::start(&d, "uas.xml", CALLEE, &[]);
    let (ok, report) = caller(&d, "uac_refused.xml", &CALLEE.to_string())
        .substitute("[expect]", "488")
        .substitute("RTP/AVP 8 101", "RTP/AVP 18 101")
        .substitute("a=rtpmap:8 PCMA/8000", "a=rtpmap:18 G729/8000")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    let rec = last_call_record(&d);
    assert_eq!(
        (rec.disposition, rec.sip_status),
        (Disposition::Failed, 488)
    );
}
