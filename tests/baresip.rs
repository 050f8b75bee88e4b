//! Two real softphones (baresip) through denwa: both register, one calls the
//! other, each plays its own tone from a WAV file, and each phone's dump of
//! the audio it received must hold the other phone's tone, so the audio
//! crossed denwa's relay both ways. Then the call is hung up with a BYE.
//!
//! baresip runs without a sound card: its audio source is a file (`aufile`),
//! its player a null ALSA device, and the `sndfile` module dumps what each
//! call sent and received as WAV files. It is driven over its TCP control
//! interface (netstrings carrying JSON).

mod common;

use common::{extensions, free_port, password, run_bounded, wait_exit, Denwa};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on every wait for a phone.
const WAIT: Duration = Duration::from_secs(15);
/// The baresip of Debian 12 (1.0) answers MD5 digest challenges only, and
/// gives up ("Function not implemented") when any challenge in the 401 names
/// another algorithm, so denwa offers MD5 alone here.
const SETUP: &str = "[auth]\nalgorithms = [\"MD5\"]\n\n";
const CALLER: u32 = 4001;
const CALLEE: u32 = 4002;
/// Each phone plays its own tone, so a phone hearing itself is caught.
const CALLER_HZ: f64 = 440.0;
const CALLEE_HZ: f64 = 1000.0;
const RATE: usize = 8000;
/// Seconds of audio each phone must have received before the hang-up.
const TALK_SECS: usize = 3;
/// A 20 ms window quieter than this (RMS, 16-bit scale) counts as silence.
const SILENCE_RMS: f64 = 500.0;

fn start_denwa() -> Denwa {
    Denwa::start(&format!("{SETUP}{}", extensions(CALLER, CALLEE)))
}

/// A port `p` such that `p` and `p + 1` are free for UDP and TCP on
/// 127.0.0.1: baresip listens for SIP on `p` and for SIP over TLS on `p + 1`.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let p = free_port();
        let Some(next) = p.checked_add(1) else {
            continue;
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], next));
        if UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok() {
            return p;
        }
    }
    panic!("no two consecutive free ports on 127.0.0.1");
}

fn netstring(json: &str) -> Vec<u8> {
    format!("{}:{json},", json.len()).into_bytes()
}

/// The string value of `"key":"..."` in one of baresip's JSON messages.
fn json_str(msg: &str, key: &str) -> String {
    let pat = format!("\"{key}\":\"");
    let Some(start) = msg.find(&pat).map(|i| i + pat.len()) else {
        return String::new();
    };
    let mut out = String::new();
    let mut chars = msg[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        out.push(c);
                    }
                }
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

/// Text without ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One baresip softphone registered at denwa as extension `number`, with
/// its own temporary configuration directory.
struct Phone {
    number: u32,
    child: Option<Child>,
    dir: tempfile::TempDir,
    ctrl: Option<TcpStream>,
    buf: Vec<u8>,
    events: VecDeque<String>,
    token: u32,
}

impl Phone {
    /// Start a phone that plays a `tone_hz` sine; `answermode` is baresip's
    /// account parameter (`auto` answers at once, `manual` only rings).
    fn start(d: &Denwa, number: u32, tone_hz: f64, answermode: &str) -> Phone {
        let dir = tempfile::tempdir().expect("temp dir");
        let tone = dir.path().join("tone.wav");
        // Longer than any call here: baresip hangs up when the file ends.
        let out = run_bounded(
            "sox",
            &[
                "-n".into(),
                "-r".into(),
                RATE.to_string(),
                "-c".into(),
                "1".into(),
                "-b".into(),
                "16".into(),
                tone.display().to_string(),
                "synth".into(),
                "60".into(),
                "sine".into(),
                tone_hz.to_string(),
                "vol".into(),
                "0.5".into(),
            ],
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "sox: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let snd = dir.path().join("snd");
        std::fs::create_dir(&snd).expect("dump dir");
        let sip_port = free_port_pair();
        let ctrl_port = free_port();
        let rtp_min = 50000 + (ctrl_port % 1000) * 10;
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             net_interface 127.0.0.1\n\
             rtp_ports {rtp_min}-{}\n\
             audio_source aufile,{}\n\
             audio_player alsa,null\n\
             audio_alert alsa,null\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module alsa.so\n\
             module aufile.so\n\
             module sndfile.so\n\
             snd_path {}\n\
             module_tmp uuid.so\n\
             module_tmp account.so\n\
             module_app menu.so\n\
             module_app ctrl_tcp.so\n\
             ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n",
            rtp_min + 9,
            tone.display(),
            snd.display(),
        );
        std::fs::write(dir.path().join("config"), config).expect("baresip config");
        let account = format!(
            "<sip:{number}@{}>;auth_pass={};answermode={answermode};audio_codecs=PCMU;regint=600\n",
            d.sip_addr(),
            password(number)
        );
        std::fs::write(dir.path().join("accounts"), account).expect("baresip accounts");
        let log = std::fs::File::create(dir.path().join("baresip.log")).expect("log file");
        // `timeout` bounds the phone's life even if this test is killed.
        let child = Command::new("timeout")
            .args(["120", "baresip", "-f"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start baresip");
        let mut phone = Phone {
            number,
            child: Some(child),
            dir,
            ctrl: None,
            buf: Vec::new(),
            events: VecDeque::new(),
            token: 0,
        };
        phone.connect(ctrl_port);
        phone
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "phone {}: {what}\n---- baresip log ----\n{}",
            self.number,
            self.log()
        )
    }

    fn check_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.fail(&format!("baresip exited ({status})"));
            }
        }
    }

    fn connect(&mut self, port: u16) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            self.check_running();
            if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .expect("read timeout");
                self.ctrl = Some(s);
                return;
            }
            std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
        }
        self.fail("control port never opened");
    }

    /// The next message from the control connection, or None at `deadline`.
    fn next_message(&mut self, deadline: Instant) -> Option<String> {
        loop {
            if let Some(colon) = self.buf.iter().position(|&b| b == b':') {
                let len: usize = match std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.parse().ok())
                {
                    Some(len) => len,
                    None => self.fail(&format!(
                        "bad netstring: {}",
                        String::from_utf8_lossy(&self.buf)
                    )),
                };
                let end = colon + 1 + len;
                if self.buf.len() > end {
                    if self.buf[end] != b',' {
                        self.fail("netstring without its comma");
                    }
                    let msg = String::from_utf8_lossy(&self.buf[colon + 1..end]).into_owned();
                    self.buf.drain(..=end);
                    return Some(msg);
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            self.check_running();
            let mut chunk = [0u8; 4096];
            let read = self.ctrl.as_mut().expect("connected").read(&mut chunk);
            match read {
                Ok(0) => self.fail("control connection closed"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => self.fail(&format!("control connection: {e}")),
            }
        }
    }

    /// Run a control command; returns its response data. Events that arrive
    /// meanwhile are kept for [`Phone::wait_event`].
    fn command(&mut self, command: &str, params: &str) -> String {
        assert!(!params.contains(['"', '\\']), "params need no escaping");
        self.token += 1;
        let token = format!("t{}", self.token);
        let json =
            format!("{{\"command\":\"{command}\",\"params\":\"{params}\",\"token\":\"{token}\"}}");
        let sent = self
            .ctrl
            .as_mut()
            .expect("connected")
            .write_all(&netstring(&json));
        if let Err(e) = sent {
            self.fail(&format!("sending {command}: {e}"));
        }
        let deadline = Instant::now() + WAIT;
        while let Some(msg) = self.next_message(deadline) {
            if msg.contains("\"event\":true") {
                self.events.push_back(msg);
            } else if json_str(&msg, "token") == token {
                if !msg.contains("\"ok\":true") {
                    self.fail(&format!("{command} {params} failed: {msg}"));
                }
                return json_str(&msg, "data");
            }
        }
        self.fail(&format!("no response to {command}"))
    }

    /// Wait (bounded) for an event of type `kind`; returns the event.
    fn wait_event(&mut self, kind: &str) -> String {
        if let Some(i) = self.events.iter().position(|e| json_str(e, "type") == kind) {
            return self.events.remove(i).expect("present");
        }
        let deadline = Instant::now() + WAIT;
        while let Some(msg) = self.next_message(deadline) {
            if json_str(&msg, "type") == kind {
                return msg;
            }
            if msg.contains("\"event\":true") {
                self.events.push_back(msg);
            }
        }
        self.fail(&format!(
            "no {kind} event; events so far: {:?}",
            self.events
        ))
    }

    /// Wait (bounded) until the phone says its registration at denwa is OK.
    /// (baresip announces it before the control connection is up, so ask.)
    fn wait_registered(&mut self) {
        let aor = format!("sip:{}@", self.number);
        let deadline = Instant::now() + WAIT;
        let mut info = String::new();
        while Instant::now() < deadline {
            info = strip_ansi(&self.command("reginfo", ""));
            if info
                .lines()
                .any(|l| l.contains(&aor) && l.split_whitespace().any(|w| w == "OK"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100)); // polling a condition, bounded
        }
        self.fail(&format!("not registered; reginfo:\n{info}"))
    }

    /// The dump of the audio this phone received in its (only) call.
    fn received_path(&self) -> Option<PathBuf> {
        let entries = std::fs::read_dir(self.dir.path().join("snd")).ok()?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        assert!(found.len() <= 1, "more than one call dumped: {found:?}");
        found.pop()
    }

    /// Wait (bounded) until the phone has received `secs` of audio.
    fn wait_received_secs(&mut self, secs: usize) {
        let want = (44 + secs * RATE * 2) as u64;
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            self.check_running();
            let len = self
                .received_path()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len());
            if len >= want {
                return;
            }
            std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
        }
        self.fail(&format!("did not receive {secs} s of audio"))
    }

    /// The samples this phone received, once the call is over and the dump
    /// is complete (its WAV header is written when the call ends).
    fn received(&mut self) -> Vec<i16> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(samples) = self.received_path().and_then(|p| read_wav(&p)) {
                return samples;
            }
            std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
        }
        self.fail("no complete dump of the received audio")
    }

    /// Quit baresip; TERM and then KILL it by PID if it lingers.
    fn stop(&mut self) {
        if let Some(ctrl) = self.ctrl.as_mut() {
            let _ = ctrl.write_all(&netstring(
                "{\"command\":\"quit\",\"params\":\"\",\"token\":\"quit\"}",
            ));
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        if !wait_exit(&mut child, Duration::from_secs(3)) {
            // `timeout` passes TERM on to baresip.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            if !wait_exit(&mut child, Duration::from_secs(3)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- baresip {} log ----\n{}", self.number, self.log());
        }
    }
}

/// The samples of a complete 8 kHz mono 16-bit PCM WAV file; None while the
/// file is incomplete (no data chunk yet, or its size not yet written).
fn read_wav(path: &Path) -> Option<Vec<i16>> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let le16 = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let mut i = 12;
    let mut format_ok = false;
    while let Some(head) = bytes.get(i..i + 8) {
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let body = bytes.get(i + 8..(i + 8).checked_add(size)?)?;
        match &head[..4] {
            b"fmt " if body.len() >= 16 => {
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                let (tag, channels, bits) = (le16(body, 0), le16(body, 2), le16(body, 14));
                assert!(
                    tag == 1 && channels == 1 && bits == 16 && rate as usize == RATE,
                    "{}: format {tag}, {channels} channels, {bits} bits, {rate} Hz",
                    path.display()
                );
                format_ok = true;
            }
            b"data" if format_ok && size > 0 => {
                return Some(
                    body.chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]))
                        .collect(),
                );
            }
            _ => {}
        }
        i += 8 + size + (size & 1);
    }
    None
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
    const WINDOW: usize = RATE / 50;
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
    let mut a = Phone::start(d, CALLER, CALLER_HZ, "manual");
    let mut b = Phone::start(d, CALLEE, CALLEE_HZ, callee_answermode);
    a.wait_registered();
    b.wait_registered();
    assert_eq!(d.wait_metric("denwa_registrations", 2.0), 2.0);
    (a, b)
}

fn dial(d: &Denwa, a: &mut Phone) {
    a.command("dial", &format!("sip:{CALLEE}@{}", d.sip_addr()));
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
