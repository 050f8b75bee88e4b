//! DTMF detection on answered calls, with real peers: key presses sent as
//! RFC 4733 telephone-events (by baresip, and by SIPp replaying captured
//! packets), as tones in the audio (a µ-law file made with sox, streamed by
//! SIPp). denwa logs each press once ("DTMF digit", with
//! leg, digit, source and duration) and counts it by source; speech (made
//! with espeak-ng) must give no digit at all.
//!
//! Every call here has one peer sending and the other not echoing, so each
//! press crosses denwa once and any second log line is a double detection.
//! SIP INFO, and keys between legs that signal them differently, are in
//! `dtmf_interworking.rs`.

mod common;

use common::baresip::Phone;
use common::{caller_sipp, extensions, run_bounded, wait_until, Denwa, Sipp, SippCallee};
use denwa::store::cdr::{CallRecord, Disposition};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bound on every SIPp run and every wait.
const LIMIT: Duration = Duration::from_secs(60);
const SETUP: &str = "[auth]\nalgorithms = [\"MD5\"]\n\n";
const CALLER: u32 = 5001;
const CALLEE: u32 = 5002;
/// Where Debian's sip-tester package puts its RFC 4733 captures.
const PCAP_DIR: &str = "/usr/share/sip-tester";

fn start_denwa() -> Denwa {
    Denwa::start(&format!("{SETUP}{}", extensions(CALLER, CALLEE)))
}

/// One "DTMF digit" line of denwa's log.
#[derive(Debug, Clone, PartialEq)]
struct Logged {
    call_id: String,
    leg: String,
    digit: String,
    source: String,
    duration_ms: u32,
}

/// The value of `name=value` in a log line (quotes removed).
fn field(line: &str, name: &str) -> Option<String> {
    let pat = format!("{name}=");
    let start = line
        .match_indices(&pat)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || matches!(line.as_bytes()[i - 1], b' ' | b'{'))?
        + pat.len();
    let rest = &line[start..];
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next().unwrap_or_default()
    } else {
        rest.split([' ', '}']).next().unwrap_or_default()
    };
    Some(value.to_owned())
}

/// Every "DTMF digit" line of denwa's log, in order.
fn logged_digits(d: &Denwa) -> Vec<Logged> {
    d.log()
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains("DTMF digit"))
        .map(|l| Logged {
            call_id: field(l, "call_id").unwrap_or_else(|| panic!("no call_id: {l}")),
            leg: field(l, "leg").unwrap_or_else(|| panic!("no leg: {l}")),
            digit: field(l, "digit").unwrap_or_else(|| panic!("no digit: {l}")),
            source: field(l, "source").unwrap_or_else(|| panic!("no source: {l}")),
            duration_ms: field(l, "duration_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no duration_ms: {l}")),
        })
        .collect()
}

/// Wait (bounded) until denwa logged `n` digits; then the lines logged.
fn wait_digits(d: &Denwa, n: usize) -> Vec<Logged> {
    wait_until(Duration::from_secs(10), || logged_digits(d).len() >= n);
    logged_digits(d)
}

/// The series of a DTMF counter, or 0 when it was never registered.
fn digit_counter(d: &Denwa, source: &str) -> f64 {
    let series = format!("denwa_dtmf_digits_{source}_total");
    let (_, body) = d.http_get("/metrics").expect("metrics");
    if body.lines().any(|l| l.starts_with(&format!("{series} "))) {
        d.metric(&series)
    } else {
        0.0
    }
}

/// The call's one record in denwa's database.
fn call_record(d: &Denwa) -> CallRecord {
    let mut recs = d.call_records(1);
    assert_eq!(recs.len(), 1, "more than one call recorded: {recs:?}");
    recs.remove(0)
}

/// Checks that `logged` is exactly `keys`, once each, in order, from
/// `source` on the caller's leg of the one recorded call, and that the
/// source's counter agrees.
fn assert_digits(d: &Denwa, logged: &[Logged], keys: &[String], source: &str) {
    let digits: Vec<&str> = logged.iter().map(|l| l.digit.as_str()).collect();
    assert_eq!(digits, keys, "digits logged, in order: {logged:#?}");
    let rec = call_record(d);
    assert_eq!(rec.disposition, Disposition::Answered);
    for l in logged {
        assert_eq!(l.source, source, "{l:?}");
        assert_eq!(l.leg, "A", "the caller pressed the keys: {l:?}");
        assert_eq!(l.call_id, rec.call_id, "lines of this call: {l:?}");
    }
    assert_eq!(digit_counter(d, source), keys.len() as f64);
    for other in ["rfc4733", "inband", "info"]
        .iter()
        .filter(|s| **s != source)
    {
        assert_eq!(digit_counter(d, other), 0.0, "{other} counter");
    }
}

// ---------------------------------------------------------------------------
// SIPp peers

/// A SIPp callee on its own port, registered at denwa as [`CALLEE`].
fn callee(d: &Denwa, scenario: &str) -> SippCallee {
    SippCallee::start(d, scenario, CALLEE, &[], LIMIT)
}

/// A SIPp caller from [`CALLER`] to [`CALLEE`] with `scenario`.
fn caller(d: &Denwa, scenario: &str) -> Sipp {
    caller_sipp(d, scenario, CALLER, &CALLEE.to_string())
        .arg("-timeout")
        .arg("30s")
}

fn run_call(d: &Denwa, mut callee: SippCallee, caller: Sipp) {
    let (ok, report) = caller.run_report(LIMIT);
    assert!(ok, "{report}");
    callee.finish(LIMIT);
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"answered\"}", 1.0),
        1.0
    );
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
}

// ---------------------------------------------------------------------------
// RFC 4733 from SIPp

/// What one of the captures holds: the key and how long it was pressed, in
/// ms, from its telephone-event packets (RFC 4733 §2.3).
fn captured_press(pcap: &Path) -> (String, u32) {
    let bytes = std::fs::read(pcap).unwrap_or_else(|e| panic!("{}: {e}", pcap.display()));
    assert_eq!(
        bytes.get(..4),
        Some(&[0xd4, 0xc3, 0xb2, 0xa1][..]),
        "little-endian pcap"
    );
    let linktype = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    assert_eq!(linktype, 1, "Ethernet frames");
    let (mut at, mut events) = (24, Vec::new());
    while let Some(head) = bytes.get(at..at + 16) {
        let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
        let frame = &bytes[at + 16..at + 16 + len];
        at += 16 + len;
        // Ethernet, IPv4 (its header length), UDP, RTP without CSRCs.
        let ip = &frame[14..];
        let rtp = &ip[usize::from(ip[0] & 0x0f) * 4 + 8..];
        assert_eq!(rtp[1] & 0x7f, 101, "telephone-event payload type");
        let payload = &rtp[12..16];
        events.push((payload[0], u16::from_be_bytes([payload[2], payload[3]])));
    }
    let (event, _) = events[0];
    assert!(
        events.iter().all(|&(e, _)| e == event),
        "one key per capture"
    );
    let units = events
        .iter()
        .map(|&(_, d)| u32::from(d))
        .max()
        .expect("packets");
    let key = b"0123456789*#ABCD"[usize::from(event)] as char;
    (key.to_string(), units / 8)
}

#[test]
fn rfc4733_events_replayed_by_sipp_are_logged_once_each() {
    // Keypad order; each capture is one press of its key.
    let names = [
        "1", "2", "3", "4", "5", "6", "7", "8", "9", "star", "0", "pound",
    ];
    let pcaps: Vec<PathBuf> = names
        .iter()
        .map(|n| Path::new(PCAP_DIR).join(format!("dtmf_2833_{n}.pcap")))
        .collect();
    let presses: Vec<(String, u32)> = pcaps.iter().map(|p| captured_press(p)).collect();
    let keys: Vec<String> = presses.iter().map(|(k, _)| k.clone()).collect();
    // A capture lasts under 200 ms; the next one starts 400 ms later.
    let plays: String = pcaps
        .iter()
        .map(|p| {
            format!(
                "<nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n  \
                 <pause milliseconds=\"400\"/>\n  ",
                p.display()
            )
        })
        .collect();

    let d = start_denwa();
    // The callee answers with PCMA and telephone-event 101 and echoes
    // nothing.
    let callee = callee(&d, "uas.xml");
    run_call(
        &d,
        callee,
        caller(&d, "uac_dtmf_events.xml").substitute("<!-- [keys] -->", &plays),
    );
    let logged = wait_digits(&d, keys.len());
    assert_digits(&d, &logged, &keys, "rfc4733");
    for (l, (key, ms)) in logged.iter().zip(&presses) {
        assert_eq!(l.duration_ms, *ms, "key {key} lasted as long as sent");
    }
    let sent = d.metric("denwa_rtp_packets_caller_to_callee_total");
    assert!(
        sent >= (keys.len() * 8) as f64,
        "the key presses crossed denwa: {sent} packets"
    );
}

// ---------------------------------------------------------------------------
// In-band tones and speech, streamed by SIPp

/// Rows and columns of the DTMF keypad (ITU-T Q.23), in Hz.
const ROWS_HZ: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS_HZ: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Level of each of a key's two tones.
const TONE_DBM0: f64 = -10.0;
/// G.711 µ-law's maximum load is +3.17 dBm0: a 0 dBm0 sine peaks that far
/// below a full-scale one.
const DBM0_BELOW_FULL_SCALE_DB: f64 = 3.17;
const TONE_MS: u32 = 100;
const GAP_MS: u32 = 100;
/// µ-law bytes per millisecond at 8000 Hz.
const BYTES_PER_MS: usize = 8;

/// `ms` as seconds for sox (`0.100`).
fn secs(ms: u32) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn sox(args: &[String]) {
    let out = run_bounded("sox", args, LIMIT);
    assert!(
        out.status.success(),
        "sox {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The row and column frequencies of `key`.
fn key_hz(key: char) -> (f64, f64) {
    for (r, row) in KEYPAD.iter().enumerate() {
        if let Some(c) = row.iter().position(|&k| k == key) {
            return (ROWS_HZ[r], COLUMNS_HZ[c]);
        }
    }
    panic!("no key {key}")
}

/// A raw µ-law file at 8000 Hz (SIPp's rtp_stream format) in `dir`
/// pressing `keys`: each a gap of silence then both tones; silence after.
fn key_tones(dir: &Path, keys: &str) -> PathBuf {
    let volume = 10f64.powf((TONE_DBM0 - DBM0_BELOW_FULL_SCALE_DB) / 20.0);
    let mut audio = Vec::new();
    for (i, key) in keys.chars().enumerate() {
        let (row, column) = key_hz(key);
        let part = dir.join(format!("key{i}.ul"));
        // Two channels, one tone each, mixed down to one at the level.
        sox(&[
            "-D".into(),
            "-r".into(),
            "8000".into(),
            "-c".into(),
            "2".into(),
            "-n".into(),
            "-t".into(),
            "ul".into(),
            part.display().to_string(),
            "synth".into(),
            secs(TONE_MS),
            "sine".into(),
            row.to_string(),
            "sine".into(),
            column.to_string(),
            "remix".into(),
            format!("1v{volume:.4},2v{volume:.4}"),
            "pad".into(),
            secs(GAP_MS),
            "0".into(),
        ]);
        let bytes = std::fs::read(&part).expect("key tones");
        assert_eq!(bytes.len(), (TONE_MS + GAP_MS) as usize * BYTES_PER_MS);
        audio.extend(bytes);
    }
    audio.extend(silence(dir, 300));
    let path = dir.join("keys.ul");
    std::fs::write(&path, audio).expect("write keys.ul");
    path
}

/// `ms` of µ-law silence, from sox.
fn silence(dir: &Path, ms: u32) -> Vec<u8> {
    let path = dir.join("silence.ul");
    sox(&[
        "-D".into(),
        "-r".into(),
        "8000".into(),
        "-c".into(),
        "1".into(),
        "-n".into(),
        "-t".into(),
        "ul".into(),
        path.display().to_string(),
        "trim".into(),
        "0".into(),
        secs(ms),
    ]);
    std::fs::read(path).expect("silence")
}

/// `text` spoken by espeak-ng, as a raw µ-law file at 8000 Hz in `dir`.
fn speech(dir: &Path, text: &str) -> PathBuf {
    let wav = dir.join("speech.wav");
    let out = run_bounded(
        "espeak-ng",
        &[
            "-s".into(),
            "190".into(),
            "-w".into(),
            wav.display().to_string(),
            text.into(),
        ],
        LIMIT,
    );
    assert!(
        out.status.success(),
        "espeak-ng: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("speech.ul");
    sox(&[
        "-D".into(),
        wav.display().to_string(),
        "-r".into(),
        "8000".into(),
        "-c".into(),
        "1".into(),
        "-t".into(),
        "ul".into(),
        path.display().to_string(),
    ]);
    path
}

/// A PCMU-only call in which the caller streams `audio` (raw µ-law) once;
/// returns the number of bytes streamed.
fn stream_call(d: &Denwa, audio: &Path) -> usize {
    let len = std::fs::metadata(audio).expect("audio file").len() as usize;
    // Until the file has played, and a second longer.
    let hold_ms = len / BYTES_PER_MS + 1000;
    let callee = callee(d, "uas_pcmu.xml");
    run_call(
        d,
        callee,
        caller(d, "uac_stream.xml")
            .substitute("[audio]", &audio.display().to_string())
            .substitute("[hold_ms]", &hold_ms.to_string()),
    );
    len
}

#[test]
fn inband_keys_streamed_by_sipp_are_logged_once_each() {
    const KEYS: &str = "1234";
    let dir = tempfile::tempdir().expect("temp dir");
    let audio = key_tones(dir.path(), KEYS);
    let d = start_denwa();
    stream_call(&d, &audio);
    let keys: Vec<String> = KEYS.chars().map(String::from).collect();
    let logged = wait_digits(&d, keys.len());
    assert_digits(&d, &logged, &keys, "inband");
    for l in &logged {
        assert!(
            l.duration_ms.abs_diff(TONE_MS) <= 20,
            "a {TONE_MS} ms key measured {} ms: {l:?}",
            l.duration_ms
        );
    }
}

#[test]
fn speech_streamed_by_sipp_gives_no_digit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let audio = speech(
        dir.path(),
        "One, two, three, four, five, six, seven, eight, nine, zero. \
         Please call me back at five five five, one two three four. \
         Your call is important to us.",
    );
    let d = start_denwa();
    let bytes = stream_call(&d, &audio);
    // 50 packets a second of 160 bytes each: most of the speech crossed.
    let packets = bytes / 160;
    let sent = d.metric("denwa_rtp_packets_caller_to_callee_total");
    assert!(
        sent >= packets as f64 * 0.9,
        "{sent} of {packets} packets relayed"
    );
    let rec = call_record(&d);
    assert_eq!(rec.disposition, Disposition::Answered);
    let line = rec.caller_line.expect("the caller's line quality");
    assert!(line.rtp_packets as f64 >= packets as f64 * 0.9, "{line:?}");
    assert_eq!(logged_digits(&d), vec![], "digits heard in speech");
    for source in ["rfc4733", "inband", "info"] {
        assert_eq!(digit_counter(&d, source), 0.0, "{source} counter");
    }
}

// ---------------------------------------------------------------------------
// RFC 4733 from baresip

/// What each baresip phone plays: one tone at a third of full scale, far
/// from every DTMF frequency.
const PHONE_HZ: f64 = 440.0;
const PHONE_LEVEL: f64 = 0.3;

#[test]
fn rfc4733_keys_from_baresip_are_logged_once_each() {
    const KEYS: [&str; 3] = ["1", "5", "#"];
    let d = start_denwa();
    let mut caller = Phone::start(&d, CALLER, PHONE_HZ, PHONE_LEVEL, "manual");
    let _callee = Phone::start(&d, CALLEE, PHONE_HZ, PHONE_LEVEL, "auto");
    assert_eq!(d.wait_metric("denwa_registrations", 2.0), 2.0);
    caller.dial(&d, &CALLEE.to_string());
    assert_eq!(d.wait_metric("denwa_calls_active", 1.0), 1.0);
    // Answered, and the caller's audio crosses denwa, before any key.
    assert!(
        wait_until(LIMIT, || {
            d.metric("denwa_rtp_packets_caller_to_callee_total") >= 25.0
        }),
        "no audio from the caller"
    );
    assert!(d.log().contains("call answered"));
    for (i, key) in KEYS.iter().enumerate() {
        caller.press(key);
        assert!(
            wait_until(Duration::from_secs(10), || logged_digits(&d).len() > i),
            "key {key} not logged: {:#?}",
            logged_digits(&d)
        );
    }
    caller.hang_up();
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
    // The call is over: whatever it logged is all it will log.
    let keys: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
    assert_digits(&d, &logged_digits(&d), &keys, "rfc4733");
    for l in logged_digits(&d) {
        assert!(l.duration_ms > 0, "{l:?}");
    }
}
