//! DTMF between phones that signal keys differently, with real peers.
//!
//! denwa offers every callee RFC 4733 telephone-events and answers a
//! caller with them whenever the caller offered them, so each leg gets
//! keys its own way: a key that arrives in a way the other leg cannot
//! receive (an RFC 4733 event for a leg without telephone-event, a tone
//! for a leg with it, any SIP INFO) is played by denwa to that leg, once,
//! and the original does not pass. Between two legs with telephone-events
//! the events pass as they are.
//!
//! The callees here are SIPp scenarios whose media port is a socket of the
//! test (`common::rtp`), so every packet denwa sends them is looked at, and
//! baresip phones, which announce each RFC 4733 key they receive.

mod common;

use std::path::Path;
use std::time::Duration;

use common::baresip::{json_str, Phone};
use common::rtp::{audio, inband_keys, presses, Packet, RtpSink};
use common::{caller_sipp, extensions, wait_until, Denwa, Sipp, SippCallee};
use denwa::media::g711::Codec;
use denwa::media::tones::{dtmf_tone, ToneGenerator};

const LIMIT: Duration = Duration::from_secs(60);
const SETUP: &str = "[auth]\nalgorithms = [\"MD5\"]\n\n";
const CALLER: u32 = 5101;
const CALLEE: u32 = 5102;
/// Where Debian's sip-tester package puts its RFC 4733 captures.
const PCAP_DIR: &str = "/usr/share/sip-tester";
const EVENT_PT: u8 = 101;

fn start_denwa() -> Denwa {
    Denwa::start(&format!("{SETUP}{}", extensions(CALLER, CALLEE)))
}

/// The (leg, key, source) of every "DTMF digit" line denwa logged.
fn logged_digits(d: &Denwa) -> Vec<(String, String, String)> {
    let field = |line: &str, name: &str| -> String {
        let pat = format!(" {name}=");
        let Some(at) = line.find(&pat) else {
            return String::new();
        };
        let rest = &line[at + pat.len()..];
        let value = rest.split(' ').next().unwrap_or_default();
        value.trim_matches('"').to_owned()
    };
    d.log()
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains("DTMF digit"))
        .map(|l| (field(l, "leg"), field(l, "digit"), field(l, "source")))
        .collect()
}

/// Asserts denwa logged `keys`, once each, in order, from the caller's
/// leg, all by `source`.
fn assert_logged(d: &Denwa, keys: &str, source: &str) {
    wait_until(Duration::from_secs(10), || {
        logged_digits(d).len() >= keys.len()
    });
    let logged = logged_digits(d);
    let got: String = logged.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(got, keys, "{logged:?}");
    for (leg, _, s) in &logged {
        assert_eq!((leg.as_str(), s.as_str()), ("A", source), "{logged:?}");
    }
}

/// A SIPp callee registered as [`CALLEE`] that answers with `formats` and
/// `rtpmaps` and the port of `sink`.
fn socket_callee(d: &Denwa, sink: &RtpSink, formats: &str, rtpmaps: &str) -> SippCallee {
    let port = sink.port.to_string();
    let subs = [
        ("SOCKET_PORT", port.as_str()),
        ("SOCKET_FORMATS", formats),
        ("SOCKET_RTPMAPS", rtpmaps),
    ];
    SippCallee::start_substituted(d, "uas_socket.xml", CALLEE, &subs, LIMIT)
}

/// A SIPp caller from [`CALLER`] to [`CALLEE`].
fn caller(d: &Denwa, scenario: &str) -> Sipp {
    caller_sipp(d, scenario, CALLER, &CALLEE.to_string())
        .arg("-timeout")
        .arg("30s")
}

/// The same caller offering PCMU instead of PCMA.
fn pcmu_caller(d: &Denwa, scenario: &str) -> Sipp {
    caller(d, scenario)
        .substitute("RTP/AVP 8 101", "RTP/AVP 0 101")
        .substitute("a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000")
}

/// Runs the caller to its end, then checks the callee ended well too and
/// the call was answered and is over.
fn run_call(d: &Denwa, callee: &mut SippCallee, caller: Sipp) {
    let (ok, report) = caller.run_report(LIMIT);
    assert!(ok, "{report}");
    callee.finish(LIMIT);
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"answered\"}", 1.0),
        1.0
    );
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
}

/// Plays the captures of `keys` (names of sip-tester's dtmf_2833_*.pcap)
/// one after another, in place of the caller scenario's key marker.
fn key_captures(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| {
            let pcap = Path::new(PCAP_DIR).join(format!("dtmf_2833_{k}.pcap"));
            format!(
                "<nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n  \
                 <pause milliseconds=\"600\"/>\n  ",
                pcap.display()
            )
        })
        .collect()
}

/// What denwa sent the callee is one RTP stream: one SSRC, every sequence
/// number once and in order.
fn assert_one_stream(packets: &[Packet]) {
    assert!(!packets.is_empty(), "denwa sent nothing");
    let ssrc = packets[0].ssrc;
    assert!(packets.iter().all(|p| p.ssrc == ssrc), "one SSRC");
    for w in packets.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "sequence numbers");
    }
}

#[test]
fn rfc4733_keys_reach_a_callee_without_telephone_event_as_tones() {
    let d = start_denwa();
    let sink = RtpSink::start();
    let mut callee = socket_callee(&d, &sink, "0", "a=rtpmap:0 PCMU/8000");
    // The caller offers events and requires them in the answer, although
    // the callee answers PCMU alone: denwa answers them itself.
    let caller = pcmu_caller(&d, "uac_dtmf_events.xml")
        .substitute("<!-- [keys] -->", &key_captures(&["1", "5", "9", "pound"]));
    run_call(&d, &mut callee, caller);
    assert_logged(&d, "159#", "rfc4733");
    let packets = sink.packets();
    assert!(
        packets.iter().all(|p| p.pt == 0),
        "only PCMU reaches the callee, no telephone-event"
    );
    assert_one_stream(&packets);
    let heard = inband_keys(&audio(&packets, Codec::Pcmu));
    assert_eq!(heard, "159#", "each key once, as tones");
}

#[test]
fn rfc4733_keys_pass_between_legs_with_telephone_event() {
    let d = start_denwa();
    let sink = RtpSink::start();
    let rtpmaps = "a=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000";
    let mut callee = socket_callee(&d, &sink, "8 101", rtpmaps);
    let caller = caller(&d, "uac_dtmf_events.xml")
        .substitute("<!-- [keys] -->", &key_captures(&["3", "star"]));
    run_call(&d, &mut callee, caller);
    assert_logged(&d, "3*", "rfc4733");
    let packets = sink.packets();
    let got = presses(&packets, EVENT_PT);
    let keys: String = got.iter().map(|p| p.key).collect();
    assert_eq!(keys, "3*", "the caller's events, once each: {got:?}");
    assert!(got.iter().all(|p| p.ends >= 1 && p.marked), "{got:?}");
    assert!(
        packets.iter().all(|p| p.pt == EVENT_PT),
        "nothing denwa made itself"
    );
}

#[test]
fn a_sip_info_key_reaches_a_callee_with_telephone_event_as_one_event() {
    let d = start_denwa();
    let sink = RtpSink::start();
    let rtpmaps = "a=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000";
    // The callee's scenario fails if the INFO itself reaches it.
    let mut callee = socket_callee(&d, &sink, "8 101", rtpmaps);
    run_call(&d, &mut callee, caller(&d, "uac_info.xml"));
    assert_logged(&d, "7", "info");
    let packets = sink.packets();
    let got = presses(&packets, EVENT_PT);
    assert_eq!(got.len(), 1, "{got:?}");
    let press = &got[0];
    assert_eq!(
        (press.key, press.duration_ms),
        ('7', 160),
        "the INFO's key and duration"
    );
    assert!(press.marked, "marker on the first packet");
    assert_eq!(press.ends, 3, "the end packet three times");
    assert_eq!(press.packets, 7 + 3, "an update every 20 ms, then the ends");
    assert_one_stream(&packets);
}

// ---------------------------------------------------------------------------
// baresip callees

/// What the baresip callee plays: a quiet tone far from every DTMF one.
const PHONE_HZ: f64 = 440.0;
const PHONE_LEVEL: f64 = 0.05;

/// The keys of the CALL_DTMF_START events the phone announced so far.
fn announced_keys(phone: &mut Phone) -> String {
    let mut keys = String::new();
    while let Some(i) = phone
        .events
        .iter()
        .position(|e| json_str(e, "type") == "CALL_DTMF_START")
    {
        let event = phone.events.remove(i).expect("present");
        keys.push_str(&json_str(&event, "param"));
    }
    keys
}

/// Waits (bounded) for `n` key announcements from the phone; then for the
/// end of its call.
fn wait_keys(phone: &mut Phone, n: usize) -> String {
    let mut keys = String::new();
    for _ in 0..n {
        let event = phone.wait_event("CALL_DTMF_START");
        keys.push_str(&json_str(&event, "param"));
    }
    phone.wait_event("CALL_CLOSED");
    keys.push_str(&announced_keys(phone));
    keys
}

#[test]
fn a_sip_info_key_reaches_baresip_as_an_rfc4733_event() {
    let d = start_denwa();
    let mut phone = Phone::start(&d, CALLEE, PHONE_HZ, PHONE_LEVEL, "auto");
    assert_eq!(d.wait_metric("denwa_registrations", 1.0), 1.0);
    let caller = pcmu_caller(&d, "uac_info.xml").substitute(
        "<pause milliseconds=\"300\"/>",
        "<pause milliseconds=\"1500\"/>",
    );
    let (ok, report) = caller.run_report(LIMIT);
    assert!(ok, "{report}");
    assert_eq!(wait_keys(&mut phone, 1), "7", "announced once");
    assert_logged(&d, "7", "info");
}

/// A raw µ-law file pressing `keys` as tones: 100 ms of each key at
/// denwa's DTMF levels, 150 ms of silence around it; and the energy of
/// its samples.
fn key_tones(dir: &Path, keys: &str) -> (std::path::PathBuf, f64) {
    let mut samples = vec![0i16; 8 * 300];
    for key in keys.chars() {
        let mut tone = ToneGenerator::new(&dtmf_tone(key).expect("a key"));
        let mut press = vec![0i16; 8 * 100];
        tone.fill(&mut press);
        samples.extend(press);
        samples.extend(vec![0i16; 8 * 150]);
    }
    samples.extend(vec![0i16; 8 * 500]);
    let energy = energy(&Codec::Pcmu.decode(&Codec::Pcmu.encode(&samples)));
    let path = dir.join("keys.ul");
    std::fs::write(&path, Codec::Pcmu.encode(&samples)).expect("write keys.ul");
    (path, energy)
}

fn energy(samples: &[i16]) -> f64 {
    samples.iter().map(|&s| f64::from(s).powi(2)).sum()
}

#[test]
fn inband_keys_reach_baresip_as_rfc4733_events_instead_of_tones() {
    const KEYS: &str = "1234";
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, sent_energy) = key_tones(dir.path(), KEYS);
    let d = start_denwa();
    // Silent itself: what its dump holds came from the caller.
    let mut phone = Phone::start(&d, CALLEE, PHONE_HZ, 0.0, "auto");
    assert_eq!(d.wait_metric("denwa_registrations", 1.0), 1.0);
    let bytes = std::fs::metadata(&file).expect("file").len();
    let caller = caller(&d, "uac_stream.xml")
        .substitute("[audio]", &file.display().to_string())
        .substitute("[hold_ms]", &(bytes / 8 + 1000).to_string());
    let (ok, report) = caller.run_report(LIMIT);
    assert!(ok, "{report}");
    assert_eq!(wait_keys(&mut phone, KEYS.len()), KEYS, "each key once");
    assert_logged(&d, KEYS, "inband");
    // The tones themselves were muted once recognised: little of their
    // energy reached the phone.
    let received = phone.received();
    let heard = energy(&received);
    assert!(
        heard < 0.25 * sent_energy,
        "{:.0}% of the tones' energy reached the phone",
        100.0 * heard / sent_energy
    );
    assert!(!received.is_empty());
}
