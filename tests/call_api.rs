//! The call-control API (`/api/`) on the real binary, with baresip phones
//! in calls and HTTP requests from the test: recording paused (silence in
//! the file for that span), stopped and started again (two files, both
//! indexed), digits said to a party (the prompt's samples in what its phone
//! received), DTMF sent to each party (announced by its phone), a room
//! member muted (the others stop hearing its tone), and the API's refusals.

mod common;

use std::path::Path;
use std::time::Duration;

use common::baresip::{json_str, read_wav, tone_share, Phone, RATE};
use common::{extensions, Denwa};
use denwa::store::{RecordingRow, RecordingState};
use serde_json::Value;

/// baresip 1.0 answers MD5 digest challenges only.
const SETUP: &str = "[auth]\nalgorithms = [\"MD5\"]\n\n";
const TOKEN: &str = "api-test-token-0123456789";
/// Each phone's tone (a whole number of periods in 20 ms) and level.
const TONES: [f64; 3] = [450.0, 700.0, 1150.0];
const LEVEL: f64 = 0.2;
/// Where Debian's asterisk-core-sounds-en-wav puts the digit prompts
/// (one of denwa's default sound directories).
const PROMPTS: &str = "/usr/share/asterisk/sounds/en_US_f_Allison";

fn start(first: u32, last: u32) -> Denwa {
    let http = format!("api_token = \"{TOKEN}\"");
    Denwa::start_with_http(&http, &format!("{SETUP}{}", extensions(first, last)))
}

fn secs(s: f64) -> usize {
    (s * f64::from(RATE)) as usize
}

/// POST `json` to `path`; the status and the JSON answer.
fn post(d: &Denwa, path: &str, json: &str) -> (u16, Value) {
    let (status, body) = d.http_post(path, TOKEN, json).expect("HTTP answer");
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
    (status, value)
}

/// The live calls, as `GET /api/calls` lists them.
fn calls(d: &Denwa) -> Vec<Value> {
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = d
        .http("GET", "/api/calls", &[("Authorization", &auth)], "")
        .expect("HTTP answer");
    assert_eq!(status, 200, "{body}");
    let value: Value = serde_json::from_str(&body).expect("JSON");
    value["calls"].as_array().cloned().unwrap_or_default()
}

/// Caller `first` dials `first + 1`, which answers; both play their tone.
fn call(d: &Denwa, first: u32) -> (Phone, Phone, String) {
    let mut caller = Phone::start(d, first, TONES[0], LEVEL, "manual");
    let mut callee = Phone::start(d, first + 1, TONES[1], LEVEL, "auto");
    caller.wait_registered();
    callee.wait_registered();
    caller.dial(d, &(first + 1).to_string());
    caller.wait_event("CALL_ESTABLISHED");
    callee.wait_event("CALL_ESTABLISHED");
    callee.wait_received_secs(1);
    let live = calls(d);
    assert_eq!(live.len(), 1, "{live:?}");
    let id = live[0]["id"].as_str().expect("call id").to_owned();
    assert_eq!(live[0]["caller"], first.to_string());
    assert_eq!(live[0]["callee"], (first + 1).to_string());
    (caller, callee, id)
}

/// `/api/calls/<id>/<what>` with the Call-ID percent-encoded.
fn call_path(id: &str, what: &str) -> String {
    let encoded: String = id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/api/calls/{encoded}/{what}")
}

/// Lets `s` seconds of the call pass, as the phone's dump counts them.
fn talk(phone: &mut Phone, s: f64) {
    let at = phone.position();
    phone.wait_position(at + secs(s));
}

/// The recordings of a call once `n` of them are closed.
fn closed_recordings(d: &Denwa, call_id: &str, n: usize) -> Vec<RecordingRow> {
    let db = d.dir.path().join("data").join("denwa.sqlite");
    let mut rows = Vec::new();
    common::wait_until(Duration::from_secs(10), || {
        let reader = denwa::store::Reader::open(&db).expect("database");
        rows = reader.recordings_of_call(call_id).expect("query");
        rows.len() >= n && rows.iter().all(|r| r.state != RecordingState::Recording)
    });
    rows
}

/// The energy (mean square, both channels) of each whole second of a
/// recording.
fn energy_per_second(d: &Denwa, row: &RecordingRow) -> Vec<f64> {
    let path = d.dir.path().join("data").join(&row.path);
    let mut wav = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let channels = usize::from(wav.spec().channels);
    let samples: Vec<i16> = wav.samples::<i16>().map(|s| s.expect("sample")).collect();
    samples
        .chunks_exact(RATE as usize * channels)
        .map(|second| {
            second.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / second.len() as f64
        })
        .collect()
}

/// Seconds of a recording: loud (both tones) or silent.
fn loudness(energy: &[f64]) -> String {
    energy
        .iter()
        .map(|&e| match e {
            e if e < 1.0 => 's',
            e if e > 1e6 => 'L',
            _ => '?',
        })
        .collect()
}

#[test]
fn recording_is_paused_stopped_and_started_again_over_the_api() {
    let d = start(7001, 7002);
    let (mut caller, mut callee, id) = call(&d, 7001);
    let path = call_path(&id, "recording");
    assert_eq!(
        calls(&d)[0]["recording"],
        "recording",
        "recorded from the answer"
    );

    talk(&mut callee, 2.0);
    let (status, body) = post(&d, &path, r#"{"action":"pause"}"#);
    assert_eq!((status, body["recording"].as_str()), (200, Some("paused")));
    assert_eq!(calls(&d)[0]["recording"], "paused");
    talk(&mut callee, 3.0);
    let (status, _) = post(&d, &path, r#"{"action":"resume"}"#);
    assert_eq!(status, 200);
    talk(&mut callee, 2.0);
    let (status, body) = post(&d, &path, r#"{"action":"stop"}"#);
    assert_eq!((status, body["recording"].as_str()), (200, Some("off")));
    let (status, body) = post(&d, &path, r#"{"action":"pause"}"#);
    assert_eq!(status, 409, "nothing to pause: {body}");
    talk(&mut callee, 1.0);
    let (status, body) = post(&d, &path, r#"{"action":"start"}"#);
    assert_eq!(
        (status, body["recording"].as_str()),
        (200, Some("recording"))
    );
    let (status, _) = post(&d, &path, r#"{"action":"start"}"#);
    assert_eq!(status, 409, "already recording");
    talk(&mut callee, 2.5);
    caller.hang_up();
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
    assert!(calls(&d).is_empty(), "the ended call is no longer listed");
    let (status, _) = post(&d, &path, r#"{"action":"start"}"#);
    assert_eq!(status, 404, "the call is gone");

    let rows = closed_recordings(&d, &id, 2);
    assert_eq!(rows.len(), 2, "one file per start: {rows:?}");
    for row in &rows {
        assert_eq!(row.state, RecordingState::Complete, "{row:?}");
        assert!(
            d.dir.path().join("data").join(&row.path).is_file(),
            "{row:?}"
        );
    }
    assert_ne!(rows[0].path, rows[1].path);
    // The first file: talk, the paused span as silence, talk again.
    let first = loudness(&energy_per_second(&d, &rows[0]));
    let trimmed = first.trim_matches('?');
    let silent: Vec<&str> = trimmed.split('L').filter(|r| !r.is_empty()).collect();
    assert!(
        trimmed.starts_with('L') && trimmed.ends_with('L') && silent.len() == 1,
        "talk, one silent span, talk: {first}"
    );
    let pause = silent[0].trim_matches('?');
    assert!(
        pause.chars().all(|c| c == 's') && (2..=3).contains(&pause.len()),
        "3 s paused, so 2 or 3 whole silent seconds: {first}"
    );
    // The second file: talk throughout.
    let second = loudness(&energy_per_second(&d, &rows[1]));
    assert!(second.trim_matches('?').len() >= 2, "{second}");
    assert!(
        !second.contains('s'),
        "no silence after the restart: {second}"
    );
    drop(callee);
}

/// The samples of a prompt.
fn prompt(name: &str) -> Vec<i16> {
    let path = Path::new(PROMPTS).join(format!("{name}.wav"));
    read_wav(&path).unwrap_or_else(|| panic!("{}", path.display()))
}

/// The best normalised correlation of `needle` within `hay`.
fn best_match(hay: &[i16], needle: &[i16]) -> f64 {
    let n: f64 = needle
        .iter()
        .map(|&x| f64::from(x).powi(2))
        .sum::<f64>()
        .sqrt();
    let mut best = 0.0f64;
    for window in hay.windows(needle.len()) {
        let (mut dot, mut energy) = (0.0f64, 0.0f64);
        for (&a, &b) in window.iter().zip(needle) {
            dot += f64::from(a) * f64::from(b);
            energy += f64::from(a).powi(2);
        }
        if energy > 0.0 {
            best = best.max(dot / (n * energy.sqrt()));
        }
    }
    best
}

/// Waits (bounded) for the phone to announce `n` received keys.
fn announced(phone: &mut Phone, n: usize) -> String {
    (0..n)
        .map(|_| json_str(&phone.wait_event("CALL_DTMF_START"), "param"))
        .collect()
}

#[test]
fn digits_said_and_keys_sent_over_the_api_reach_the_phone() {
    let d = start(7101, 7102);
    let (mut caller, mut callee, id) = call(&d, 7101);
    let said: Vec<Vec<i16>> = ["1", "2", "3"]
        .map(|k| prompt(&format!("digits/{k}")))
        .into();
    let said_len: usize = said.iter().map(Vec::len).sum();

    let before = callee.position();
    let (status, body) = post(
        &d,
        &call_path(&id, "say"),
        r#"{"leg":"callee","digits":"123"}"#,
    );
    assert_eq!(
        (status, body["playing"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    callee.wait_position(before + said_len + secs(1.5));

    let (status, body) = post(
        &d,
        &call_path(&id, "dtmf"),
        r#"{"leg":"callee","digits":"42#"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(announced(&mut callee, 3), "42#");
    let body = r#"{"leg":"caller","digits":"9","duration_ms":200}"#;
    assert_eq!(post(&d, &call_path(&id, "dtmf"), body).0, 200);
    assert_eq!(announced(&mut caller, 1), "9");
    let (status, body) = post(&d, &call_path(&id, "say"), r#"{"leg":"callee","number":1}"#);
    assert_eq!(status, 200, "{body}");
    caller.hang_up();
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);

    // Where the prompts played, the callee heard them and not the caller.
    let heard = callee.received();
    let from = before.saturating_sub(secs(0.5)).min(heard.len());
    let to = (before + said_len + secs(1.0)).min(heard.len());
    let span = &heard[from..to];
    for (k, samples) in said.iter().enumerate() {
        // The prompt's middle half: clear of edges cut by a frame.
        let core = &samples[samples.len() / 4..samples.len() * 3 / 4];
        let score = best_match(span, core);
        assert!(score > 0.9, "digit prompt {} matched at {score:.2}", k + 1);
    }
    // Speech has some energy at the caller's frequency too: no more than
    // the prompts themselves have.
    let own = tone_share(&said.concat(), TONES[0]);
    let caller_tone = tone_share(&span[secs(0.7)..secs(0.7) + said_len / 2], TONES[0]);
    assert!(
        caller_tone < own + 0.05,
        "the caller's tone under the prompts: {caller_tone:.2} (the prompts' own {own:.2})"
    );
}

#[test]
fn a_muted_room_member_is_not_heard_by_the_others() {
    let d = start(7201, 7203);
    let mut phones: [Phone; 3] =
        std::array::from_fn(|i| Phone::start(&d, 7201 + i as u32, TONES[i], LEVEL, "manual"));
    for p in &mut phones {
        p.wait_registered();
    }
    for p in &mut phones {
        p.dial(&d, "9201");
        p.wait_event("CALL_ESTABLISHED");
    }
    talk(&mut phones[1], 1.5);
    let mute = |muted: bool| {
        let body = format!("{{\"muted\":{muted}}}");
        post(&d, "/api/rooms/9201/members/7201/mute", &body)
    };
    // Phases judged on phone 1's and 2's dumps: unmuted, muted, unmuted.
    let mut marks = Vec::new();
    for muted in [false, true, false] {
        let (status, body) = mute(muted);
        assert_eq!(
            (status, body["muted"].as_bool()),
            (200, Some(muted)),
            "{body}"
        );
        let at = [phones[1].position(), phones[2].position()];
        talk(&mut phones[1], 2.5);
        talk(&mut phones[2], 2.5);
        marks.push(at);
    }
    let (status, _) = post(&d, "/api/rooms/9201/members/7299/mute", r#"{"muted":true}"#);
    assert_eq!(status, 404, "not in the room");
    for p in &mut phones {
        p.hang_up();
    }
    for (i, p) in phones.iter_mut().enumerate().skip(1) {
        let all = p.received();
        let shares: Vec<f64> = marks
            .iter()
            .map(|at| {
                let from = (at[i - 1] + secs(1.0)).min(all.len());
                let to = (from + secs(1.5)).min(all.len());
                tone_share(&all[from..to], TONES[0])
            })
            .collect();
        assert!(shares[0] > 0.2, "phone {i} hears 7201 before: {shares:?}");
        assert!(
            shares[1] < 0.02,
            "phone {i} hears 7201 while muted: {shares:?}"
        );
        assert!(shares[2] > 0.2, "phone {i} hears 7201 again: {shares:?}");
        let other = if i == 1 { 2 } else { 1 };
        let from = (marks[1][i - 1] + secs(1.0)).min(all.len());
        let to = (from + secs(1.5)).min(all.len());
        assert!(
            tone_share(&all[from..to], TONES[other]) > 0.2,
            "phone {i} still hears phone {other} while 7201 is muted"
        );
    }
}

#[test]
fn the_api_is_off_without_a_token_and_refuses_a_wrong_one() {
    let off = Denwa::start(&format!("{SETUP}{}", extensions(7301, 7302)));
    let (status, _) = off.http("GET", "/api/calls", &[], "").expect("answer");
    assert_eq!(status, 404, "no API without a token");
    let (status, _) = off
        .http_post("/api/calls/x/recording", TOKEN, "{}")
        .expect("answer");
    assert_eq!(status, 404);

    let on = start(7301, 7302);
    let (status, body) = on.http("GET", "/api/calls", &[], "").expect("answer");
    assert_eq!(status, 401, "{body}");
    let wrong = [("Authorization", "Bearer not-the-token-0123456789")];
    assert_eq!(
        on.http("GET", "/api/calls", &wrong, "").expect("answer").0,
        401
    );
    assert!(calls(&on).is_empty());
    let (status, body) = post(&on, "/api/calls/nope/recording", r#"{"action":"stop"}"#);
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no such call"))
    );
    let (status, body) = post(&on, "/api/calls/nope/recording", "{\"action\":");
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid JSON"),
        "{body}"
    );
    assert_eq!(on.metric("denwa_calls_active"), 0.0, "denwa still serves");
}
