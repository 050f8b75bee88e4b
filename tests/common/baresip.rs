//! baresip softphones for interop tests, and what is needed to judge the
//! audio they received.
//!
//! baresip runs without a sound card: its microphone is a WAV file of one
//! sine (`aufile`), its player a null ALSA device, and the `sndfile` module
//! dumps what each call received as a WAV file. It is driven over its TCP
//! control interface (netstrings carrying JSON). Every wait is bounded;
//! each phone runs under `timeout` and is stopped by PID.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, password, terminate, wait_exit, Denwa};

/// Bound on every wait for a phone.
pub const WAIT: Duration = Duration::from_secs(15);
/// Samples per second of every tone and dump.
pub const RATE: u32 = 8000;

/// A port `p` such that `p` and `p + 1` are free for UDP and TCP on
/// 127.0.0.1: baresip listens for SIP on `p` and for SIP over TLS on `p + 1`.
pub fn free_port_pair() -> u16 {
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
pub fn json_str(msg: &str, key: &str) -> String {
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
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
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
pub fn strip_ansi(s: &str) -> String {
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

/// A mono 8 kHz 16-bit WAV of a `hz` sine at `level` (0 to 1 of full
/// scale), `secs` long.
pub fn write_tone(path: &Path, hz: f64, level: f64, secs: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("tone file");
    let amplitude = level * f64::from(i16::MAX);
    for n in 0..secs * RATE {
        let t = f64::from(n) / f64::from(RATE);
        let s = amplitude * (2.0 * std::f64::consts::PI * hz * t).sin();
        w.write_sample(s.round() as i16).expect("tone sample");
    }
    w.finalize().expect("tone file");
}

/// The samples of a complete 8 kHz mono 16-bit PCM WAV file; None while the
/// file is incomplete (no data chunk yet, or its size not yet written).
pub fn read_wav(path: &Path) -> Option<Vec<i16>> {
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
                    tag == 1 && channels == 1 && bits == 16 && rate == RATE,
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

/// The share of `samples`' energy at `hz` (0 to 1): Goertzel over 20 ms
/// windows, each window's bin power scaled so that a pure tone at `hz`
/// filling the window measures its whole energy.
pub fn tone_share(samples: &[i16], hz: f64) -> f64 {
    const WINDOW: usize = 160;
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / f64::from(RATE)).cos();
    let (mut tone, mut energy) = (0.0f64, 0.0f64);
    for w in samples.chunks_exact(WINDOW) {
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in w {
            let s = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        tone += 2.0 * power / WINDOW as f64;
        energy += w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
    }
    if energy == 0.0 {
        0.0
    } else {
        tone / energy
    }
}

/// One baresip softphone registered at denwa as extension `number`, with
/// its own temporary configuration directory.
pub struct Phone {
    pub number: u32,
    child: Option<Child>,
    dir: tempfile::TempDir,
    ctrl: Option<TcpStream>,
    buf: Vec<u8>,
    /// Events that arrived while waiting for something else.
    pub events: VecDeque<String>,
    token: u32,
}

impl Phone {
    /// Start a phone that plays a `tone_hz` sine at `level` (0 to 1 of full
    /// scale); `answermode` is baresip's account parameter (`auto` answers
    /// at once, `manual` only rings).
    pub fn start(d: &Denwa, number: u32, tone_hz: f64, level: f64, answermode: &str) -> Phone {
        let dir = tempfile::tempdir().expect("temp dir");
        let tone = dir.path().join("tone.wav");
        // Longer than any call here: baresip hangs up when the file ends.
        write_tone(&tone, tone_hz, level, 60);
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "phone {}: {what}\n---- baresip log ----\n{}",
            self.number,
            self.log()
        )
    }

    fn check_running(&mut self) {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            self.child = None;
            self.fail(&format!("baresip exited ({status})"));
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
                let Some(len) = std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                else {
                    self.fail(&format!(
                        "bad netstring: {}",
                        String::from_utf8_lossy(&self.buf)
                    ))
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
    pub fn command(&mut self, command: &str, params: &str) -> String {
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
    pub fn wait_event(&mut self, kind: &str) -> String {
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
    pub fn wait_registered(&mut self) {
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

    /// Dial `number` at denwa.
    pub fn dial(&mut self, d: &Denwa, number: &str) {
        self.command("dial", &format!("sip:{number}@{}", d.sip_addr()));
    }

    /// Press `key` and release it (`sndcode`): an RFC 4733 telephone-event
    /// in the current call.
    pub fn press(&mut self, key: &str) {
        self.command("sndcode", key);
    }

    /// Put the other party of the current call on hold (a re-INVITE with
    /// a=sendonly).
    pub fn hold(&mut self) {
        self.command("hold", "");
    }

    /// Take the other party of the current call off hold.
    pub fn resume(&mut self) {
        self.command("resume", "");
    }

    /// Hang up the current call and wait (bounded) until it is closed.
    pub fn hang_up(&mut self) {
        self.command("hangup", "");
        self.wait_event("CALL_CLOSED");
    }

    /// What the phone says (`audio_debug`) about the RTP it has received in
    /// its current call.
    pub fn reception(&mut self) -> Reception {
        let debug = self.command("audio_debug", "");
        Reception::parse(&debug).unwrap_or_else(|| self.fail(&format!("audio_debug:\n{debug}")))
    }

    /// Wait (bounded) until the phone has received `packets` RTP packets in
    /// its current call; returns what it says then.
    pub fn wait_packets(&mut self, packets: u64) -> Reception {
        let deadline = Instant::now() + WAIT;
        loop {
            let rx = self.reception();
            if rx.packets() >= packets {
                return rx;
            }
            if Instant::now() > deadline {
                self.fail(&format!("received {rx:?}, not {packets} packets"));
            }
            std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
        }
    }

    /// The dump of the audio this phone received in its (only) call.
    pub fn received_path(&self) -> Option<PathBuf> {
        let entries = std::fs::read_dir(self.dir.path().join("snd")).ok()?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        assert!(found.len() <= 1, "more than one call dumped: {found:?}");
        found.pop()
    }

    /// Samples the phone has received so far in its current call (the dump
    /// grows as audio arrives).
    pub fn position(&self) -> usize {
        self.received_path()
            .and_then(|path| std::fs::metadata(path).ok())
            .map_or(0, |m| (m.len().saturating_sub(44) / 2) as usize)
    }

    /// Wait (bounded) until the phone's dump of its current call holds
    /// `samples`.
    pub fn wait_position(&mut self, samples: usize) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            self.check_running();
            if self.position() >= samples {
                return;
            }
            std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
        }
        self.fail(&format!("{} of {samples} samples", self.position()))
    }

    /// Wait (bounded) until the phone has received `secs` of audio in its
    /// current call.
    pub fn wait_received_secs(&mut self, secs: usize) {
        self.wait_position(secs * RATE as usize);
    }

    /// The samples this phone received, once the call is over and the dump
    /// is complete (its WAV header is written when the call ends).
    pub fn received(&mut self) -> Vec<i16> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(samples) = self.received_path().and_then(|p| read_wav(&p)) {
                return samples;
            }
            std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
        }
        self.fail("no complete dump of the received audio")
    }

    /// Like [`Phone::received`], and removes the dump so that the phone's
    /// next call is dumped afresh.
    pub fn take_received(&mut self) -> Vec<i16> {
        let samples = self.received();
        if let Some(path) = self.received_path() {
            std::fs::remove_file(path).expect("remove the dump");
        }
        samples
    }

    /// Quit baresip; TERM and then KILL it by PID if it lingers.
    pub fn stop(&mut self) {
        if let Some(ctrl) = self.ctrl.as_mut() {
            let _ = ctrl.write_all(&netstring(
                "{\"command\":\"quit\",\"params\":\"\",\"token\":\"quit\"}",
            ));
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        if !wait_exit(&mut child, Duration::from_secs(3)) {
            terminate(&mut child, Duration::from_secs(3));
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

/// One RTP source a phone received from, as baresip's RTCP session keeps
/// it: the SSRC, the packets counted lost from the sequence numbers, and
/// the packets received.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub ssrc: String,
    pub lost: i64,
    pub received: u64,
}

/// baresip's `audio_debug`: one entry per SSRC heard, the frames it threw
/// away for their timestamps, and the span of RTP timestamps received.
#[derive(Debug, Clone)]
pub struct Reception {
    pub sources: Vec<Source>,
    pub discarded: u64,
    pub rx_secs: f64,
}

impl Reception {
    /// None when `debug` lacks a part this needs.
    pub fn parse(debug: &str) -> Option<Reception> {
        let field = |line: &str, key: &str| -> Option<String> {
            let at = line.find(key)? + key.len();
            Some(
                line[at..]
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .next()?
                    .to_owned(),
            )
        };
        let mut sources = Vec::new();
        let mut lines = debug.lines();
        let mut discarded = None;
        let mut rx_secs = None;
        let mut in_rx = false;
        while let Some(line) = lines.next() {
            let t = line.trim();
            if t.starts_with("rx:") {
                in_rx = true;
            } else if t.starts_with("tx:") || t.starts_with("audio ") {
                in_rx = false;
            }
            if let Some(n) = t.strip_prefix("n_discard:") {
                discarded = n.trim().parse().ok();
            }
            if in_rx && t.starts_with("time = ") {
                // "(not started)" before the first packet.
                rx_secs = Some(
                    field(t, "time = ")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0.0),
                );
            }
            if t.starts_with("member ") {
                let ssrc = t
                    .strip_prefix("member ")?
                    .split(':')
                    .next()?
                    .trim()
                    .to_owned();
                let lost = field(t, "lost=")?.parse().ok()?;
                let next = lines.next()?;
                let received = field(next, "rcvd=")?.parse().ok()?;
                sources.push(Source {
                    ssrc,
                    lost,
                    received,
                });
            }
        }
        Some(Reception {
            sources,
            discarded: discarded?,
            rx_secs: rx_secs?,
        })
    }

    /// Packets received from all sources.
    pub fn packets(&self) -> u64 {
        self.sources.iter().map(|s| s.received).sum()
    }
}
