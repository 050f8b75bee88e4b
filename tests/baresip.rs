//! Two real softphones (baresip) through denwa: both register, one calls the
//! other, each plays its own tone from a WAV file, and each phone's dump of
//! the audio it received must hold the other phone's tone, so the audio
//! crossed denwa's relay both ways. Then the call is hung up with a BYE.
//!
//! The phones are driven through `common::baresip`.

mod common;

use common::baresip::{json_str, Phone, RATE};
use common::{extensions, Denwa};

/// The baresip of Debian 12 (1.0) answers MD5 digest challenges only, and
/// gives up ("Function not implemented") when any challenge in the 401 names
/// another algorithm, so denwa offers MD5 alone here.
const SETUP: &str = "[auth]\nalgorithms = [\"MD5\"]\n\n";
const CALLER: u32 = 4001;
const CALLEE: u32 = 4002;
/// Each phone plays its own tone, so a phone hearing itself is caught.
const CALLER_HZ: f64 = 440.0;
const CALLEE_HZ: f64 = 1000.0;
/// Each phone's tone, as a share of full scale.
const LEVEL: f64 = 0.5;
/// Seconds of audio each phone must have received before the hang-up.
const TALK_SECS: usize = 3;
/// A 20 ms window quieter than this (RMS, 16-bit scale) counts as silence.
const SILENCE_RMS: f64 = 500.0;

fn start_denwa() -> Denwa {
    Denwa::start(&format!("{SETUP}{}", extensions(CALLER, CALLEE)))
}

/// What a received recording holds, over its non-silent 20 ms windows.
#[derive(Debug)]
struct Heard {
    /// Seconds of non-silent audio.
    audible_secs: f64,
    /// RMS over the non-silent windows (16-bit scale).
    rms: f64,
    /// Dominant frequency estimated from zero crossings.
    hz: f64,
}

fn analyse(samples: &[i16]) -> Heard {
    const WINDOW: usize = RATE as usize / 50;
    let (mut windows, mut energy, mut crossings, mut pairs) = (0usize, 0.0f64, 0usize, 0usize);
    for w in samples.chunks_exact(WINDOW) {
        let e: f64 = w.iter().map(|&s| f64::from(s).powi(2)).sum();
        if (e / WINDOW as f64).sqrt() < SILENCE_RMS {
            continue;
        }
        windows += 1;
        energy += e;
        crossings += w.windows(2).filter(|p| (p[0] < 0) != (p[1] < 0)).count();
        pairs += WINDOW - 1;
    }
    let n = (windows * WINDOW).max(1) as f64;
    Heard {
        audible_secs: (windows * WINDOW) as f64 / RATE as f64,
        rms: (energy / n).sqrt(),
        // A sine crosses zero twice per period.
        hz: crossings as f64 * RATE as f64 / (2.0 * pairs.max(1) as f64),
    }
}

/// Assert that `heard` is the tone `hz` for about a talk's length.
fn assert_tone(who: &str, heard: &Heard, hz: f64) {
    assert!(
        heard.audible_secs >= TALK_SECS as f64 - 1.0,
        "{who} heard too little: {heard:?}"
    );
    assert!(heard.rms > 2000.0, "{who} heard near silence: {heard:?}");
    assert!(
        (heard.hz - hz).abs() <= hz * 0.1,
        "{who} heard {:.0} Hz, not the {hz} Hz sent: {heard:?}",
        heard.hz
    );
}

/// Both phones registered at denwa, the caller answering nothing itself.
fn two_phones(d: &Denwa, callee_answermode: &str) -> (Phone, Phone) {
    let mut a = Phone::start(d, CALLER, CALLER_HZ, LEVEL, "manual");
    let mut b = Phone::start(d, CALLEE, CALLEE_HZ, LEVEL, callee_answermode);
    a.wait_registered();
    b.wait_registered();
    assert_eq!(d.wait_metric("denwa_registrations", 2.0), 2.0);
    (a, b)
}

fn dial(d: &Denwa, a: &mut Phone) {
    a.dial(d, &CALLEE.to_string());
}

/// A answers nothing, B auto-answers; both talk for [`TALK_SECS`], then
/// `hang_up_by_caller` decides who sends the BYE. Checks the audio that
/// crossed each way and denwa's view of the call.
fn answered_call(hang_up_by_caller: bool) {
    let d = start_denwa();
    let (mut a, mut b) = two_phones(&d, "auto");
    dial(&d, &mut a);
    let est = a.wait_event("CALL_ESTABLISHED");
    assert!(
        json_str(&est, "peeruri").starts_with(&format!("sip:{CALLEE}@")),
        "{est}"
    );
    let est = b.wait_event("CALL_ESTABLISHED");
    assert!(
        json_str(&est, "peeruri").starts_with(&format!("sip:{CALLER}@")),
        "the callee sees the caller's number: {est}"
    );
    b.wait_received_secs(TALK_SECS);
    a.wait_received_secs(TALK_SECS);

    let (hanging, other) = if hang_up_by_caller {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    hanging.command("hangup", "");
    hanging.wait_event("CALL_CLOSED");
    let closed = other.wait_event("CALL_CLOSED");
    // baresip reports a BYE from the far end as "Connection reset by peer".
    assert!(
        json_str(&closed, "param").contains("peer"),
        "the other phone did not get the BYE: {closed}"
    );

    assert_tone("callee", &analyse(&b.received()), CALLER_HZ);
    assert_tone("caller", &analyse(&a.received()), CALLEE_HZ);

    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"answered\"}", 1.0),
        1.0
    );
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
    // 50 packets a second each way for at least TALK_SECS.
    let want = (50 * TALK_SECS) as f64 * 0.9;
    let to_callee = d.metric("denwa_rtp_packets_caller_to_callee_total");
    let to_caller = d.metric("denwa_rtp_packets_callee_to_caller_total");
    assert!(to_callee >= want, "caller → callee packets: {to_callee}");
    assert!(to_caller >= want, "callee → caller packets: {to_caller}");
    assert_eq!(d.metric("denwa_rtp_packets_dropped_total"), 0.0);
}

#[test]
fn two_softphones_call_and_audio_arrives() {
    answered_call(true);
}

#[test]
fn callee_hangs_up_with_bye() {
    answered_call(false);
}

#[test]
fn callee_rejecting_gives_the_caller_busy() {
    let d = start_denwa();
    let (mut a, mut b) = two_phones(&d, "manual");
    dial(&d, &mut a);
    a.wait_event("CALL_RINGING");
    let incoming = b.wait_event("CALL_INCOMING");
    assert!(
        json_str(&incoming, "peeruri").starts_with(&format!("sip:{CALLER}@")),
        "{incoming}"
    );
    // Hanging up a ringing call in baresip answers 486.
    b.command("hangup", "");
    let closed = a.wait_event("CALL_CLOSED");
    assert!(
        json_str(&closed, "param").starts_with("486"),
        "the caller did not get 486: {closed}"
    );
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"busy\"}", 1.0),
        1.0
    );
    assert_eq!(
        d.metric("denwa_call_attempts_total{disposition=\"answered\"}"),
        0.0
    );
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
}

/// RFC 4733: during an answered call the caller presses keys; baresip sends
/// them as telephone-event RTP packets, denwa relays them, and the callee
/// reports each key, once and in order.
#[test]
fn dtmf_keys_reach_the_callee_as_telephone_events() {
    const KEYS: [&str; 3] = ["1", "5", "#"];
    let d = start_denwa();
    let (mut a, mut b) = two_phones(&d, "auto");
    dial(&d, &mut a);
    a.wait_event("CALL_ESTABLISHED");
    b.wait_event("CALL_ESTABLISHED");
    // Audio crosses both ways before the first key is pressed.
    b.wait_received_secs(1);
    a.wait_received_secs(1);

    let mut heard = Vec::new();
    for key in KEYS {
        // `sndcode` presses and releases the key.
        a.command("sndcode", key);
        let start = b.wait_event("CALL_DTMF_START");
        heard.push(json_str(&start, "param"));
        b.wait_event("CALL_DTMF_END");
    }
    assert_eq!(heard, KEYS, "keys the callee reported");

    a.command("hangup", "");
    a.wait_event("CALL_CLOSED");
    b.wait_event("CALL_CLOSED");
    let extra: Vec<&String> = b
        .events
        .iter()
        .filter(|e| json_str(e, "type").starts_with("CALL_DTMF"))
        .collect();
    assert!(extra.is_empty(), "keys reported twice: {extra:?}");
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"answered\"}", 1.0),
        1.0
    );
    assert_eq!(d.metric("denwa_rtp_packets_dropped_total"), 0.0);
}
