//! Call recording and line quality, end to end with real peers.
//!
//! Two baresip softphones each play their own generated tone through a
//! call at denwa; denwa's recording must hold the caller's tone on the left
//! channel and the callee's on the right (or both mixed in mono), and its
//! row in `recordings` must describe the file. SIPp pairs with RTP show that
//! a disabled recorder writes nothing, that a recording survives a `kill -9`
//! as a valid WAV marked `recovered`, and that the call record carries the
//! RTP packet counts and loss denwa saw on each leg.
//!
//! The audio is analysed here, in the test: the share of a channel's energy
//! at a frequency is measured with the Goertzel algorithm over 20 ms
//! windows, and the tones are chosen with a whole number of periods per
//! window so that a clean tone measures close to 1.

mod common;

use common::baresip::{tone_share, Phone, RATE};
use common::{caller_sipp, extensions, wait_until, Background, Denwa, Sipp, SippCallee};
use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bound on every wait for a phone or for the store.
const WAIT: Duration = Duration::from_secs(15);
/// Bound on every SIPp run.
const LIMIT: Duration = Duration::from_secs(60);
/// baresip 1.0 answers MD5 digest challenges only.
const SETUP: &str = "[auth]\nalgorithms = [\"MD5\"]\n\n";
const CALLER: u32 = 5001;
const CALLEE: u32 = 5002;
/// 8 and 21 whole periods in a 20 ms window; neither a harmonic of the
/// other.
const CALLER_HZ: f64 = 400.0;
const CALLEE_HZ: f64 = 1050.0;
/// Peak of each phone's tone, as a share of full scale: the mono mix of
/// both stays clear of clipping.
const TONE_LEVEL: f64 = 0.3;
/// Seconds of call recorded before the hang-up (or the crash).
const TALK_SECS: u64 = 3;
/// The PCMA capture (about 7 s of speech) SIPp plays as the caller.
const PCAP: &str = "/usr/share/sip-tester/g711a.pcap";
/// A generous bound on the mean interarrival jitter of a loopback call
/// (a few milliseconds are usual; SIPp's echo adds some).
const MAX_JITTER_US: i64 = 50_000;

// ---------------------------------------------------------------- store

fn data_dir(d: &Denwa) -> PathBuf {
    d.dir.path().join("data")
}

fn db(d: &Denwa) -> Connection {
    let conn = Connection::open(data_dir(d).join("denwa.sqlite")).expect("open database");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn
}

/// One row of `recordings`.
#[derive(Debug, Clone)]
struct RecordingRow {
    call_id: String,
    path: String,
    layout: String,
    state: String,
    started_at_ms: i64,
    duration_ms: i64,
    bytes: i64,
    sha256: Option<String>,
}

fn recordings(d: &Denwa) -> Vec<RecordingRow> {
    let conn = db(d);
    let mut stmt = conn
        .prepare(
            "SELECT call_id, path, layout, state, started_at_ms, duration_ms, bytes, sha256
             FROM recordings ORDER BY started_at_ms, id",
        )
        .expect("query recordings");
    stmt.query_map([], |r| {
        Ok(RecordingRow {
            call_id: r.get(0)?,
            path: r.get(1)?,
            layout: r.get(2)?,
            state: r.get(3)?,
            started_at_ms: r.get(4)?,
            duration_ms: r.get(5)?,
            bytes: r.get(6)?,
            sha256: r.get(7)?,
        })
    })
    .expect("recordings")
    .map(|r| r.expect("recording row"))
    .collect()
}

/// Wait (bounded) for the only recording to be in a state `accept` takes.
fn wait_recording(d: &Denwa, accept: impl Fn(&str) -> bool) -> RecordingRow {
    let mut last = Vec::new();
    let found = wait_until(WAIT, || {
        last = recordings(d);
        last.len() == 1 && accept(&last[0].state)
    });
    assert!(found, "recordings: {last:?}");
    last.remove(0)
}

/// One row of `call_records`, with the line quality of schema version 3.
#[derive(Debug, Clone)]
struct CallRow {
    call_id: String,
    disposition: String,
    talk_ms: i64,
    caller_rtp_packets: Option<i64>,
    caller_rtp_lost: Option<i64>,
    caller_jitter_us: Option<i64>,
    callee_rtp_packets: Option<i64>,
    callee_rtp_lost: Option<i64>,
    callee_jitter_us: Option<i64>,
}

impl CallRow {
    /// Each leg's name, RTP packets, packets lost and jitter (µs), all of
    /// which must be recorded.
    fn legs(&self) -> [(&'static str, i64, i64, i64); 2] {
        [
            (
                "caller",
                self.caller_rtp_packets,
                self.caller_rtp_lost,
                self.caller_jitter_us,
            ),
            (
                "callee",
                self.callee_rtp_packets,
                self.callee_rtp_lost,
                self.callee_jitter_us,
            ),
        ]
        .map(|(side, packets, lost, jitter)| {
            let get = |v: Option<i64>, what: &str| {
                v.unwrap_or_else(|| panic!("no {side} {what}: {self:?}"))
            };
            (
                side,
                get(packets, "packets"),
                get(lost, "loss"),
                get(jitter, "jitter"),
            )
        })
    }
}

/// Wait (bounded) for the call record of the only call.
fn wait_call_record(d: &Denwa) -> CallRow {
    let mut row = None;
    let found = wait_until(WAIT, || {
        row = db(d)
            .query_row(
                "SELECT call_id, disposition, talk_ms,
                        caller_rtp_packets, caller_rtp_lost, caller_jitter_us,
                        callee_rtp_packets, callee_rtp_lost, callee_jitter_us
                 FROM call_records ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(CallRow {
                        call_id: r.get(0)?,
                        disposition: r.get(1)?,
                        talk_ms: r.get(2)?,
                        caller_rtp_packets: r.get(3)?,
                        caller_rtp_lost: r.get(4)?,
                        caller_jitter_us: r.get(5)?,
                        callee_rtp_packets: r.get(6)?,
                        callee_rtp_lost: r.get(7)?,
                        callee_jitter_us: r.get(8)?,
                    })
                },
            )
            .optional()
            .expect("query call_records");
        row.is_some()
    });
    assert!(found, "no call record written");
    row.expect("found")
}

// ---------------------------------------------------------------- audio

/// A recording file: its format and its samples, one Vec per channel.
struct Wav {
    spec: hound::WavSpec,
    channels: Vec<Vec<i16>>,
}

impl Wav {
    fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
}

fn read_wav(path: &Path) -> Wav {
    let mut reader = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("{} is not a readable WAV: {e}", path.display()));
    let spec = reader.spec();
    let n = usize::from(spec.channels.max(1));
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: bad sample data: {e}", path.display()));
    assert_eq!(samples.len() % n, 0, "a partial frame at the end");
    let channels = (0..n)
        .map(|c| samples.iter().skip(c).step_by(n).copied().collect())
        .collect();
    Wav { spec, channels }
}

fn rms(samples: &[i16]) -> f64 {
    let energy: f64 = samples.iter().map(|&x| f64::from(x).powi(2)).sum();
    (energy / samples.len().max(1) as f64).sqrt()
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read recording")))
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(since.as_millis()).expect("ms")
}

/// The UTC date of a unix time in ms as `YYYY/MM/DD`, from date(1).
fn utc_day(unix_ms: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{}", unix_ms / 1000), "+%Y/%m/%d"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The checks every closed recording passes: where it lives, its format,
/// and that its row describes the file. Returns the file's content.
fn check_file(d: &Denwa, row: &RecordingRow, channels: u16) -> Wav {
    let prefix = format!("recordings/{}/", utc_day(row.started_at_ms));
    assert!(
        row.path.starts_with(&prefix) && row.path.ends_with(".wav"),
        "path {} is not under {prefix}",
        row.path
    );
    let path = data_dir(d).join(&row.path);
    let wav = read_wav(&path);
    assert_eq!(
        (
            wav.spec.channels,
            wav.spec.sample_rate,
            wav.spec.bits_per_sample,
            wav.spec.sample_format
        ),
        (channels, RATE, 16, hound::SampleFormat::Int),
        "{}",
        row.path
    );
    let len = std::fs::metadata(&path).expect("recording size").len();
    assert_eq!(row.bytes, i64::try_from(len).expect("size"), "bytes");
    assert_eq!(
        row.sha256.as_deref(),
        Some(sha256_hex(&path).as_str()),
        "sha256 of {}",
        row.path
    );
    let file_ms = wav.frames() as i64 * 1000 / i64::from(RATE);
    assert!(
        (row.duration_ms - file_ms).abs() <= 1,
        "duration_ms {} but the file holds {file_ms} ms",
        row.duration_ms
    );
    wav
}

/// Every `.wav` file under `dir`, at any depth.
fn wav_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(wav_files(&p));
        } else if p.extension().is_some_and(|x| x == "wav") {
            out.push(p);
        }
    }
    out
}

// ---------------------------------------------------------------- baresip

/// denwa with `recording` (a `[recording]` table or "") and the two
/// extensions.
fn start_denwa(recording: &str) -> Denwa {
    Denwa::start(&format!("{SETUP}{recording}{}", extensions(CALLER, CALLEE)))
}

/// denwa with `recording` (a `[recording]` table or ""), and the two
/// softphones registered; the callee answers by itself.
fn denwa_and_phones(recording: &str) -> (Denwa, Phone, Phone) {
    let d = start_denwa(recording);
    let a = Phone::start(&d, CALLER, CALLER_HZ, TONE_LEVEL, "manual");
    let b = Phone::start(&d, CALLEE, CALLEE_HZ, TONE_LEVEL, "auto");
    assert_eq!(d.wait_metric("denwa_registrations", 2.0), 2.0);
    (d, a, b)
}

/// Wait (bounded) until the open recording `open` holds [`TALK_SECS`].
fn wait_recorded(d: &Denwa, open: &RecordingRow) {
    let file = data_dir(d).join(&open.path);
    let frame_bytes = if open.layout == "stereo" { 4 } else { 2 };
    let want = 44 + TALK_SECS * u64::from(RATE) * frame_bytes;
    let grown = wait_until(WAIT, || {
        std::fs::metadata(&file).is_ok_and(|m| m.len() >= want)
    });
    assert!(grown, "the recording did not reach {TALK_SECS} s: {open:?}");
}

/// The caller dials the callee, both talk until the recording holds
/// [`TALK_SECS`], then the caller hangs up. Returns the closed recording's
/// row and the call record.
fn talk_and_hang_up(d: &Denwa, a: &mut Phone, b: &mut Phone) -> (RecordingRow, CallRow) {
    a.dial(d, &CALLEE.to_string());
    a.wait_event("CALL_ESTABLISHED");
    b.wait_event("CALL_ESTABLISHED");
    wait_recorded(d, &wait_recording(d, |s| s == "recording"));
    a.hang_up();
    b.wait_event("CALL_CLOSED");
    let call = wait_call_record(d);
    let closed = wait_recording(d, |s| s != "recording");
    (closed, call)
}

// ---------------------------------------------------------------- SIPp

/// A SIPp callee answering with PCMA and echoing the RTP it receives,
/// registered at denwa as [`CALLEE`].
fn sipp_callee(d: &Denwa) -> SippCallee {
    SippCallee::start(d, "uas.xml", CALLEE, &["-rtp_echo"], LIMIT)
}

/// A SIPp caller that plays the PCMA recording for `hold_ms`, then hangs up.
fn sipp_caller(d: &Denwa, hold_ms: u64) -> Sipp {
    caller_sipp(d, "uac_call.xml", CALLER, &CALLEE.to_string())
        .substitute("[pcap]", PCAP)
        .substitute("[hold_ms]", &hold_ms.to_string())
        .arg("-timeout")
        .arg("30s")
}

/// One whole SIPp call of `hold_ms` to the echoing callee; returns its
/// call record.
fn sipp_call(d: &Denwa, hold_ms: u64) -> CallRow {
    let mut callee = sipp_callee(d);
    let (ok, report) = sipp_caller(d, hold_ms).run_report(LIMIT);
    assert!(ok, "{report}");
    callee.finish(LIMIT);
    wait_call_record(d)
}

/// The RTP packets in a pcap file (every captured packet in it is one).
fn pcap_packets(path: &str) -> i64 {
    let bytes = std::fs::read(path).expect("pcap");
    assert_eq!(
        &bytes[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "a little-endian pcap"
    );
    let (mut i, mut n) = (24usize, 0i64);
    while let Some(head) = bytes.get(i..i + 16) {
        let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        i += 16 + len;
        n += 1;
    }
    assert_eq!(i, bytes.len(), "a truncated pcap");
    n
}

/// The checks of a baresip call's closed recording: complete, in
/// `layout`, linked to the answered call, the file as its row says, and as
/// long as the call was answered. Returns the file's content.
fn check_complete(d: &Denwa, row: &RecordingRow, call: &CallRow, layout: &str) -> Wav {
    assert_eq!(
        (row.state.as_str(), row.layout.as_str()),
        ("complete", layout)
    );
    assert_eq!(call.disposition, "answered");
    assert_eq!(row.call_id, call.call_id, "the recording names its call");
    let channels = if layout == "stereo" { 2 } else { 1 };
    let wav = check_file(d, row, channels);
    assert!(
        (row.duration_ms - call.talk_ms).abs() <= 300,
        "recording {} ms for {} ms of talk",
        row.duration_ms,
        call.talk_ms
    );
    wav
}

// ---------------------------------------------------------------- tests

/// The caller's tone on the left channel only, the callee's on the right
/// only; the row describes the file, links to the call record, and the
/// recording is as long as the call was answered.
#[test]
fn stereo_recording_holds_the_caller_left_and_the_callee_right() {
    let (d, mut a, mut b) = denwa_and_phones("[recording]\nlayout = \"stereo\"\n\n");
    let (row, call) = talk_and_hang_up(&d, &mut a, &mut b);
    let wav = check_complete(&d, &row, &call, "stereo");

    let (left, right) = (&wav.channels[0], &wav.channels[1]);
    let report = format!(
        "left: rms {:.0}, {CALLER_HZ} Hz {:.3}, {CALLEE_HZ} Hz {:.3}; \
         right: rms {:.0}, {CALLER_HZ} Hz {:.3}, {CALLEE_HZ} Hz {:.3}",
        rms(left),
        tone_share(left, CALLER_HZ),
        tone_share(left, CALLEE_HZ),
        rms(right),
        tone_share(right, CALLER_HZ),
        tone_share(right, CALLEE_HZ),
    );
    // Each tone is about 6900 RMS; over the whole call, a little less.
    assert!(rms(left) > 2000.0 && rms(right) > 2000.0, "{report}");
    assert!(tone_share(left, CALLER_HZ) > 0.7, "{report}");
    assert!(tone_share(left, CALLEE_HZ) < 0.05, "{report}");
    assert!(tone_share(right, CALLEE_HZ) > 0.7, "{report}");
    assert!(tone_share(right, CALLER_HZ) < 0.05, "{report}");
}

/// Mono mixes both legs into one channel.
#[test]
fn mono_recording_mixes_both_tones_into_one_channel() {
    let (d, mut a, mut b) = denwa_and_phones("[recording]\nlayout = \"mono\"\n\n");
    let (row, call) = talk_and_hang_up(&d, &mut a, &mut b);
    let wav = check_complete(&d, &row, &call, "mono");
    let mix = &wav.channels[0];
    let (caller, callee) = (tone_share(mix, CALLER_HZ), tone_share(mix, CALLEE_HZ));
    let report = format!(
        "rms {:.0}, {CALLER_HZ} Hz {caller:.3}, {CALLEE_HZ} Hz {callee:.3}",
        rms(mix)
    );
    // Two tones of equal level: about half of the energy each.
    assert!(rms(mix) > 2000.0, "{report}");
    assert!(caller > 0.3 && callee > 0.3, "{report}");
    assert!(caller + callee > 0.7, "{report}");
}

/// The baresip call's record carries what denwa received from each phone:
/// 50 packets a second (20 ms frames) for the whole talk time, none lost.
#[test]
fn baresip_call_record_carries_line_quality() {
    let (d, mut a, mut b) = denwa_and_phones("");
    let (row, call) = talk_and_hang_up(&d, &mut a, &mut b);
    // Recording is on by default, in stereo.
    assert_eq!(
        (row.state.as_str(), row.layout.as_str()),
        ("complete", "stereo")
    );

    let expected = 50.0 * call.talk_ms as f64 / 1000.0;
    for (side, packets, lost, jitter) in call.legs() {
        assert!(
            (packets as f64 - expected).abs() <= expected * 0.2,
            "{side}: {packets} packets in {} ms of talk: {call:?}",
            call.talk_ms
        );
        assert!(lost <= packets / 100, "{side}: {call:?}");
        assert!((0..MAX_JITTER_US).contains(&jitter), "{side}: {call:?}");
    }
}

/// SIPp plays a PCMA capture as the caller and the callee echoes it: the
/// call record counts the capture's packets on each leg (within 5 %: RFC
/// 3550 source validation leaves a stream's first packet uncounted), none
/// lost.
#[test]
fn sipp_call_record_counts_the_packets_sent() {
    let sent = pcap_packets(PCAP);
    let d = start_denwa("");
    // Longer than the capture (about 7 s), so all of it is played.
    let call = sipp_call(&d, 7500);
    assert_eq!(call.disposition, "answered");
    for (side, packets, lost, jitter) in call.legs() {
        assert!(
            (packets - sent).abs() <= sent / 20,
            "{side}: {packets} packets, {sent} sent: {call:?}"
        );
        assert!(lost <= sent / 100, "{side}: {call:?}");
        assert!((0..MAX_JITTER_US).contains(&jitter), "{side}: {call:?}");
    }
    assert_eq!(recordings(&d).len(), 1, "recorded by default");
}

/// `enabled = false`: the call is answered and recorded in `call_records`,
/// but there is no recording row and no file.
#[test]
fn disabled_recording_writes_no_file_and_no_row() {
    let d = start_denwa("[recording]\nenabled = false\n\n");
    // The recording row would have been queued before the call record.
    let call = sipp_call(&d, 2000);
    assert_eq!(call.disposition, "answered");
    assert!(call.talk_ms >= 1500, "{call:?}");
    assert!(
        call.caller_rtp_packets.unwrap_or(0) > 0,
        "audio flowed: {call:?}"
    );
    assert_eq!(recordings(&d).len(), 0, "{:?}", recordings(&d));
    let files = wav_files(&data_dir(&d));
    assert!(files.is_empty(), "files written: {files:?}");
}

/// `kill -9` during a call with RTP flowing: at the next start the
/// recording is repaired into a valid WAV holding what was written before
/// the crash, and its row is closed `recovered`.
#[test]
fn recording_cut_by_a_crash_is_recovered_at_the_next_start() {
    let mut d = start_denwa("");
    let mut callee = sipp_callee(&d);
    // Kept until the end: its directory holds the scenario SIPp reads.
    let caller_sipp = sipp_caller(&d, 20_000);
    let mut caller = Background::new(caller_sipp.spawn(LIMIT));

    let open = wait_recording(&d, |s| s == "recording");
    wait_recorded(&d, &open);
    let crashed_at_ms = now_ms();
    d.crash();
    caller.stop();
    callee.process.stop();
    d.restart();

    let row = wait_recording(&d, |s| s != "recording");
    assert_eq!(
        (row.state.as_str(), row.layout.as_str()),
        ("recovered", "stereo")
    );
    assert_eq!(row.call_id, open.call_id);
    let wav = check_file(&d, &row, 2);
    let recorded_secs = (crashed_at_ms - open.started_at_ms) as f64 / 1000.0;
    let file_secs = wav.frames() as f64 / f64::from(RATE);
    assert!(
        file_secs > 0.0 && file_secs >= recorded_secs - 2.0 && file_secs <= recorded_secs + 0.1,
        "{file_secs} s in the file after {recorded_secs} s of recording"
    );
    // The caller's audio (the capture, speech) is in it, and its echo.
    let (left, right) = (&wav.channels[0], &wav.channels[1]);
    assert!(rms(left) > 100.0, "left rms {}", rms(left));
    assert!(rms(right) > 100.0, "right rms {}", rms(right));
}
