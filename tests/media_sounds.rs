//! Sound files and music on hold, through the real binary.
//!
//! `[media] music_on_hold` names a WAV file or a directory of them; every
//! file must be 8000 Hz mono 16-bit PCM. `denwa check`, `denwa run` and a
//! SIGHUP reload refuse any other file with an error that names the file,
//! says what is wrong with it and points at the key's line.
//!
//! Then real phones in a call, one putting the other on hold with a
//! re-INVITE (a=sendonly) and resuming:
//! - linphone (linphonec) as the held phone records what it receives: the
//!   other phone (baresip) before, denwa's music during (tones made here,
//!   so every source can be told apart; silence when there is no music),
//!   the other phone again after. (baresip cannot be the recorder here: it
//!   closes its `sndfile` dump when a re-INVITE puts it on hold.)
//! - baresip as the held phone reports what its RTP stack made of the
//!   packets: one RTCP member per SSRC, packets lost by sequence number,
//!   frames thrown away for their timestamps. The stream must stay one
//!   stream through talk, music and talk.

mod common;

use common::baresip::{free_port_pair, tone_share, Phone, RATE, WAIT};
use common::{extensions, free_port, password, run_bounded, wait_exit, wait_until, Denwa};
use std::io::Write;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Sound files
// ---------------------------------------------------------------------------

/// Peak of every 16-bit tone made here (phones and music alike).
const TONE_PEAK: f64 = 16000.0;

/// A WAV file of `secs` of a `hz` sine written with hound in `spec`'s format.
fn hound_wav(path: &Path, spec: hound::WavSpec, hz: f64, secs: f64) {
    let mut w = hound::WavWriter::create(path, spec).expect("create WAV");
    let frames = (f64::from(spec.sample_rate) * secs) as usize;
    for i in 0..frames {
        let x = (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(spec.sample_rate)).sin();
        for _ in 0..spec.channels {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(x as f32 * 0.5),
                (_, 8) => w.write_sample((x * 60.0) as i8),
                (_, 16) => w.write_sample((x * TONE_PEAK) as i16),
                (_, bits) => panic!("no {bits}-bit writer here"),
            }
            .expect("write sample");
        }
    }
    w.finalize().expect("finish WAV");
}

fn spec(channels: u16, sample_rate: u32, bits: u16, float: bool) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    }
}

/// A good music file: `secs` of `hz` at 8000 Hz, mono, 16-bit.
fn good_wav(path: &Path, hz: f64, secs: f64) {
    hound_wav(path, spec(1, RATE, 16, false), hz, secs);
}

/// A file sox converts to `args` (a 1 kHz sine of half a second).
fn sox_wav(path: &Path, args: &[&str]) {
    let mut all: Vec<String> = vec!["-n".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    all.push(path.display().to_string());
    all.extend(["synth", "0.5", "sine", "1000"].map(String::from));
    let out = run_bounded("sox", &all, LIMIT);
    assert!(
        out.status.success(),
        "sox {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every kind of wrong file, each with the problem denwa must name.
fn wrong_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut add = |name: &str, problem: String| files.push((dir.join(name), problem));

    for (name, args, problem) in [
        (
            "cd-rate.wav",
            ["-r", "44100", "-c", "1", "-b", "16"],
            "sample rate 44100 Hz, expected 8000 Hz mono 16-bit PCM",
        ),
        (
            "mu-law.wav",
            ["-r", "8000", "-c", "1", "-e", "u-law"],
            "µ-law encoding, expected 8000 Hz mono 16-bit PCM",
        ),
    ] {
        sox_wav(&dir.join(name), &args);
        add(name, problem.into());
    }
    for (name, spec, problem) in [
        (
            "stereo.wav",
            spec(2, RATE, 16, false),
            "2 channels, expected 8000 Hz mono 16-bit PCM",
        ),
        (
            "eight-bit.wav",
            spec(1, RATE, 8, false),
            "8-bit samples, expected 8000 Hz mono 16-bit PCM",
        ),
        (
            "float.wav",
            spec(1, RATE, 32, true),
            "32-bit float samples, expected 8000 Hz mono 16-bit PCM",
        ),
        (
            "all-wrong.wav",
            spec(2, 44100, 8, false),
            "sample rate 44100 Hz, 2 channels, 8-bit samples, expected 8000 Hz mono 16-bit PCM",
        ),
    ] {
        hound_wav(&dir.join(name), spec, 1000.0, 0.5);
        add(name, problem.into());
    }
    std::fs::write(dir.join("text.wav"), "these are not samples\n").expect("text file");
    add("text.wav", "not a WAV file (no RIFF/WAVE header)".into());
    // A good file cut short: its data chunk says more than there is.
    let whole = dir.join("whole.tmp");
    good_wav(&whole, 1000.0, 0.5);
    let bytes = std::fs::read(&whole).expect("read WAV");
    std::fs::remove_file(&whole).expect("remove");
    let (declared, data_at) = data_chunk(&bytes);
    let cut = data_at + 1000;
    std::fs::write(dir.join("truncated.wav"), &bytes[..cut]).expect("truncated file");
    add(
        "truncated.wav",
        format!("truncated: data chunk declares {declared} bytes, only 1000 present"),
    );
    files
}

/// The declared size of a WAV file's data chunk and where its body starts.
fn data_chunk(bytes: &[u8]) -> (u32, usize) {
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if &bytes[at..at + 4] == b"data" {
            return (size, at + 8);
        }
        at += 8 + size as usize + (size as usize & 1);
    }
    panic!("no data chunk");
}

// ---------------------------------------------------------------------------
// denwa check
// ---------------------------------------------------------------------------

fn denwa_cli(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    run_bounded(env!("CARGO_BIN_EXE_denwa"), &args, LIMIT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The line number of the `music_on_hold` key in a configuration.
fn music_line(config: &str) -> usize {
    config
        .lines()
        .position(|l| l.starts_with("music_on_hold"))
        .expect("key")
        + 1
}

/// The harness's configuration with `music_on_hold = place` put in its
/// `[media]` table (the harness writes one without the key).
fn with_music(config: &str, place: &Path) -> String {
    let with_music = config.replacen(
        "[media]\n",
        &format!("[media]\nmusic_on_hold = \"{}\"\n", place.display()),
        1,
    );
    assert_ne!(with_music, config, "no [media] table in:\n{config}");
    with_music
}

/// A configuration whose `music_on_hold` is `place`; returns its path and
/// the line of the key.
fn moh_config(dir: &Path, place: &Path) -> (String, usize) {
    let body = format!(
        "[sip]\ndomain = \"denwa.test\"\n\n\
         [media]\ntones = \"JP\"\nmusic_on_hold = \"{}\"\n\n\
         [[extensions]]\nnumber = \"1001\"\npassword = \"long-enough-1\"\n",
        place.display()
    );
    let line = music_line(&body);
    let path = dir.join("denwa.toml");
    std::fs::write(&path, body).expect("write config");
    (path.display().to_string(), line)
}

#[test]
fn check_refuses_each_wrong_music_file_naming_file_and_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sounds = dir.path().join("sounds");
    std::fs::create_dir(&sounds).expect("dir");
    for (file, problem) in wrong_files(&sounds) {
        let (config, line) = moh_config(dir.path(), &file);
        let out = denwa_cli(&["check", "--config", &config]);
        assert_eq!(out.status.code(), Some(1), "{}: {out:?}", file.display());
        let lines: Vec<String> = text(&out.stderr).lines().map(str::to_owned).collect();
        assert_eq!(
            lines,
            vec![
                format!(
                    "{config}:{line}: media.music_on_hold: {}: {problem}",
                    file.display()
                ),
                "1 error(s)".to_owned(),
            ],
            "{}",
            file.display()
        );
        assert!(text(&out.stdout).is_empty(), "{out:?}");
    }
}

#[test]
fn check_refuses_a_directory_with_wrong_files_and_names_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    let moh = dir.path().join("moh");
    std::fs::create_dir(&moh).expect("dir");
    let mut wrong = wrong_files(&moh);
    good_wav(&moh.join("good.wav"), 1000.0, 0.5);
    // Only .wav files are music: a note beside them is not read.
    std::fs::write(moh.join("README.txt"), "not music\n").expect("note");
    let (config, line) = moh_config(dir.path(), &moh);
    let out = denwa_cli(&["check", "--config", &config]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // In name order, one error per wrong file; good.wav is not named.
    wrong.sort();
    let mut want: Vec<String> = wrong
        .iter()
        .map(|(file, problem)| {
            format!(
                "{config}:{line}: media.music_on_hold: {}: {problem}",
                file.display()
            )
        })
        .collect();
    want.push(format!("{} error(s)", wrong.len()));
    let lines: Vec<String> = text(&out.stderr).lines().map(str::to_owned).collect();
    assert_eq!(lines, want);
}

#[test]
fn check_accepts_good_music_and_a_missing_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let moh = dir.path().join("moh");
    std::fs::create_dir(&moh).expect("dir");
    good_wav(&moh.join("a.wav"), 1000.0, 0.5);
    good_wav(&moh.join("b.wav"), 1400.0, 0.5);
    std::fs::write(moh.join("README.txt"), "not music\n").expect("note");
    let single = dir.path().join("single.wav");
    good_wav(&single, 1000.0, 0.5);
    // A sox-made file in the right format passes too.
    let converted = dir.path().join("converted.wav");
    sox_wav(&converted, &["-r", "8000", "-c", "1", "-b", "16"]);
    let missing = dir.path().join("no-such-music");
    for place in [&moh, &single, &converted, &missing] {
        let (config, _) = moh_config(dir.path(), place);
        let out = denwa_cli(&["check", "--config", &config]);
        assert!(out.status.success(), "{}: {out:?}", place.display());
        assert_eq!(
            text(&out.stdout).trim(),
            format!("{config}: ok (1 extensions)")
        );
        assert!(text(&out.stderr).is_empty(), "{out:?}");
    }
}

#[test]
fn run_refuses_to_start_with_a_wrong_music_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cd-rate.wav");
    sox_wav(&file, &["-r", "44100", "-c", "1", "-b", "16"]);
    let (sip, http) = (free_port(), free_port());
    let body = format!(
        "[sip]\nudp = [\"127.0.0.1:{sip}\"]\ndomain = \"denwa.test\"\n\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\n\n\
         [storage]\ndata_dir = \"data\"\n\n\
         [media]\nmusic_on_hold = \"{}\"\n\n\
         [[extensions]]\nnumber = \"1001\"\npassword = \"long-enough-1\"\n",
        file.display()
    );
    let line = music_line(&body);
    let config = dir.path().join("denwa.toml");
    std::fs::write(&config, body).expect("write config");
    let out = denwa_cli(&["run", "--config", &config.display().to_string()]);
    // EX_CONFIG at once; a started server would have been killed (124).
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:{line}: media.music_on_hold: {}: sample rate 44100 Hz, expected 8000 Hz mono 16-bit PCM",
            config.display(),
            file.display()
        )),
        "{err}"
    );
    assert!(!dir.path().join("data").exists());
    assert!(UdpSocket::bind(("127.0.0.1", sip)).is_ok());
}

#[test]
fn sighup_with_a_wrong_music_file_keeps_the_running_configuration() {
    let d = Denwa::start(&extensions(6001, 6001));
    let good = std::fs::read_to_string(&d.config).expect("config");
    let bad = d.dir.path().join("stereo.wav");
    hound_wav(&bad, spec(2, RATE, 16, false), 1000.0, 0.5);
    let with_bad = with_music(&good, &bad);
    let line = music_line(&with_bad);
    std::fs::write(&d.config, &with_bad).expect("write config");
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log_count("configuration refused")
            >= 1),
        "the wrong music file was not refused:\n{}",
        d.log()
    );
    let want = format!(
        "{}:{line}: media.music_on_hold: {}: 2 channels, expected 8000 Hz mono 16-bit PCM",
        d.config.display(),
        bad.display()
    );
    assert!(
        d.log()
            .lines()
            .any(|l| l.contains("configuration refused") && l.contains(&want)),
        "the refusal does not say {want:?}:\n{}",
        d.log()
    );
    assert_eq!(d.log_count("configuration reloaded"), 0);
    // Still serving on the old configuration.
    assert_eq!(d.http_get("/healthz"), Some((200, "ok".to_owned())));

    // Fixed file: the next SIGHUP applies it.
    good_wav(&bad, 1000.0, 0.5);
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log_count("configuration reloaded")
            == 1),
        "the fixed music file was not accepted:\n{}",
        d.log()
    );
    assert_eq!(d.log_count("configuration refused"), 1);
}

// ---------------------------------------------------------------------------
// Music on hold between real phones
// ---------------------------------------------------------------------------

/// The baresip of Debian 12 answers MD5 digest challenges only.
const AUTH: &str = "[auth]\nalgorithms = [\"MD5\"]\n\n";
const CALLER: u32 = 4101;
const CALLEE: u32 = 4102;
/// What each phone plays, and the two music files in name order: every
/// source has its own tone, so a recording tells which one was heard when.
const CALLER_HZ: f64 = 440.0;
const CALLEE_HZ: f64 = 620.0;
const MUSIC_HZ: [f64; 2] = [1000.0, 1400.0];
/// Each baresip phone's tone, as a share of full scale: as loud as the
/// music and the linphone phone's tone.
const PHONE_LEVEL: f64 = TONE_PEAK / 32767.0;
/// Length of each music file: the hold lasts long enough to loop.
const MUSIC_SECS: f64 = 1.0;
/// Seconds of the hold, and of talk before and after it.
const HOLD_SECS: usize = 4;
const TALK_SECS: usize = 2;
/// Samples in one 20 ms window (one RTP packet of G.711).
const WINDOW: usize = (RATE / 50) as usize;
const PACKETS_PER_SEC: usize = 50;

/// An even port `p` with `p` and `p + 1` free: RTP and RTCP.
fn free_even_port_pair() -> u16 {
    for _ in 0..100 {
        let p = free_port_pair();
        if p % 2 == 0 {
            return p;
        }
    }
    panic!("no free even port pair on 127.0.0.1");
}

/// The music directory: one file per tone of [`MUSIC_HZ`], in name order.
fn music_dir(dir: &Path) -> PathBuf {
    let moh = dir.join("moh");
    std::fs::create_dir(&moh).expect("music dir");
    for (i, hz) in MUSIC_HZ.iter().enumerate() {
        good_wav(&moh.join(format!("{i}-tone.wav")), *hz, MUSIC_SECS);
    }
    moh
}

/// denwa with the two extensions and `music` as its music on hold.
fn start_denwa(music: &Path) -> Denwa {
    let sections = format!("{AUTH}{}", extensions(CALLER, CALLEE));
    let d = Denwa::start(&sections);
    // Put the key in the harness's configuration and start again, so the
    // music is checked at start-up like in production.
    let config = std::fs::read_to_string(&d.config).expect("config");
    let mut d = d;
    d.stop();
    std::fs::write(&d.config, with_music(&config, music)).expect("write config");
    d.restart();
    d
}

// ----- linphone (linphonec), recording what it receives --------------------

/// A linphone console phone registered as extension `number`: it sends a
/// sine from a file, answers by itself, and records the audio it receives
/// to a WAV file. linphonec only serves its commands on a terminal, so it
/// runs under `script`, which gives it one.
struct Linphone {
    number: u32,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    dir: tempfile::TempDir,
}

impl Linphone {
    fn start(d: &Denwa, number: u32, tone_hz: f64) -> Linphone {
        let dir = tempfile::tempdir().expect("temp dir");
        let tone = dir.path().join("tone.wav");
        good_wav(&tone, tone_hz, 60.0);
        // Its databases go under $HOME.
        std::fs::create_dir_all(dir.path().join(".local/share/linphone")).expect("home");
        let sip_port = free_port();
        let rtp_port = free_even_port_pair();
        let rc = format!(
            "[sip]\nsip_port={sip_port}\nsip_tcp_port=0\nsip_tls_port=0\n\
             default_proxy=0\nguess_hostname=0\nmedia_encryption=none\n\
             contact=sip:{number}@127.0.0.1:{sip_port}\n\n\
             [rtp]\naudio_rtp_port={rtp_port}\n\n\
             [sound]\nechocancellation=0\n\n\
             [proxy_0]\nreg_proxy=<sip:{};transport=udp>\n\
             reg_identity=sip:{number}@127.0.0.1\nreg_expires=600\n\
             reg_sendregister=1\npublish=0\n\n\
             [auth_info_0]\nusername={number}\npasswd={}\n\n\
             [audio_codec_0]\nmime=PCMU\nrate=8000\nchannels=1\nenabled=1\n\n\
             [audio_codec_1]\nmime=PCMA\nrate=8000\nchannels=1\nenabled=0\n\n\
             [video]\ncapture=0\ndisplay=0\nenabled=0\n",
            d.sip_addr(),
            password(number)
        );
        let rc_path = dir.path().join("linphonerc");
        std::fs::write(&rc_path, rc).expect("linphonerc");
        let out = std::fs::File::create(dir.path().join("console.txt")).expect("console");
        let inner = format!(
            "linphonec -c {} -a -d 5 -l {}",
            rc_path.display(),
            dir.path().join("linphone.log").display()
        );
        // `timeout` bounds the phone's life even if this test is killed.
        let child = Command::new("timeout")
            .args(["120", "script", "-qfec", &inner, "/dev/null"])
            .env("HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out.try_clone().expect("console fd")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start linphonec");
        let mut phone = Linphone {
            number,
            child: Some(child),
            stdin: None,
            dir,
        };
        phone.stdin = phone.child.as_mut().and_then(|c| c.stdin.take());
        phone.send("soundcard use files");
        phone.send(&format!("play {}", tone.display()));
        let rec = phone.recording_path();
        phone.send(&format!("record {}", rec.display()));
        phone
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("linphone.log")).unwrap_or_default()
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.txt")).unwrap_or_default()
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "linphone {}: {what}\n---- console ----\n{}",
            self.number,
            self.console()
        )
    }

    fn check_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.fail(&format!("linphonec exited ({status})"));
            }
        }
    }

    /// Type one command line.
    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            self.fail(&format!("typing {line:?}: {e}"));
        }
    }

    fn wait_log(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            self.check_running();
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
        }
        self.fail(&format!("never logged {needle:?}"))
    }

    fn wait_registered(&mut self) {
        self.wait_log("to [LinphoneRegistrationOk]");
    }

    fn recording_path(&self) -> PathBuf {
        self.dir.path().join("received.wav")
    }

    /// Samples recorded so far (from the growing file's length).
    fn received_samples(&self) -> usize {
        let len = std::fs::metadata(self.recording_path()).map_or(0, |m| m.len() as usize);
        len.saturating_sub(44) / 2
    }

    /// Wait (bounded) until `samples` have been recorded in all.
    fn wait_received(&mut self, samples: usize) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            self.check_running();
            if self.received_samples() >= samples {
                return;
            }
            std::thread::sleep(Duration::from_millis(20)); // polling a condition, bounded
        }
        self.fail(&format!(
            "recorded {} samples, not {samples}",
            self.received_samples()
        ))
    }

    /// The recorded samples, once the call is over. linphone closes and
    /// reopens its recording when a re-INVITE restarts the stream, and the
    /// size in its header is not to be trusted then: take every sample up
    /// to the end of the file.
    fn received(&mut self) -> Vec<i16> {
        self.wait_log("to LinphoneCallReleased");
        let bytes = std::fs::read(self.recording_path()).unwrap_or_default();
        let spec = hound::WavReader::new(std::io::Cursor::new(&bytes))
            .unwrap_or_else(|e| self.fail(&format!("recording: {e}")))
            .spec();
        assert_eq!((spec.channels, spec.sample_rate), (1, RATE), "{spec:?}");
        let (_, data_at) = data_chunk(&bytes);
        bytes[data_at..]
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    /// Quit linphonec; TERM and then KILL by PID what lingers (`timeout`,
    /// `script` and linphonec, all started here).
    fn stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "quit");
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        if wait_exit(&mut child, Duration::from_secs(5)) {
            return;
        }
        let mut pids = vec![child.id()];
        let mut i = 0;
        while i < pids.len() {
            let p = pids[i];
            let kids =
                std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
            pids.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok()),
            );
            i += 1;
        }
        for sig in ["-TERM", "-KILL"] {
            for p in pids.iter().rev() {
                let _ = Command::new("kill").args([sig, &p.to_string()]).status();
            }
            if wait_exit(&mut child, Duration::from_secs(3)) {
                return;
            }
        }
        let _ = child.wait();
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- linphone {} console ----\n{}",
                self.number,
                self.console()
            );
        }
    }
}

// ----- what a recording holds ----------------------------------------------

/// A 20 ms window's content: silence, one of the tones, or something else.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Heard {
    Silence,
    Tone(f64),
    Other,
}

/// Below this RMS (16-bit scale) a window is silence.
const SILENCE_RMS: f64 = 300.0;

fn classify(samples: &[i16], tones: &[f64]) -> Vec<Heard> {
    samples
        .chunks_exact(WINDOW)
        .map(|w| {
            let rms = (w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / WINDOW as f64).sqrt();
            if rms < SILENCE_RMS {
                return Heard::Silence;
            }
            tones
                .iter()
                .find(|&&hz| tone_share(w, hz) > 0.6)
                .map_or(Heard::Other, |&hz| Heard::Tone(hz))
        })
        .collect()
}

/// Runs of the same content, as (content, windows), in order.
fn runs(heard: &[Heard]) -> Vec<(Heard, usize)> {
    let mut out: Vec<(Heard, usize)> = Vec::new();
    for &h in heard {
        match out.last_mut() {
            Some((last, n)) if *last == h => *n += 1,
            _ => out.push((h, 1)),
        }
    }
    out
}

/// Tone runs at least this long count; shorter ones are seams where one
/// source gives way to the next.
const MIN_RUN: usize = 5;

/// The tone runs of `heard` (silence, mixtures and seams left out).
fn tone_runs(heard: &[Heard]) -> Vec<(f64, usize)> {
    runs(heard)
        .into_iter()
        .filter_map(|(h, n)| match h {
            Heard::Tone(hz) if n >= MIN_RUN => Some((hz, n)),
            _ => None,
        })
        .collect()
}

/// Share of `heard` that is the tone `hz`.
fn share(heard: &[Heard], hz: f64) -> f64 {
    heard.iter().filter(|&&h| h == Heard::Tone(hz)).count() as f64 / heard.len().max(1) as f64
}

/// The share of a talk span the other phone must fill. Not 1: on a busy
/// machine a phone's sound card stand-in or jitter buffer can leave a few
/// hundred milliseconds of silence; a phone that does not hear the other
/// one scores near 0.
const TALK_SHARE: f64 = 0.75;

/// Windows in one music file.
const MUSIC_WINDOWS: usize = (MUSIC_SECS * 50.0) as usize;

// ----- the tests -------------------------------------------------------------

/// What the held phone recorded, cut where the hold and the resume were
/// asked for, as 20 ms windows, and the other phone's tone.
struct HoldRecording {
    before: Vec<Heard>,
    during: Vec<Heard>,
    after: Vec<Heard>,
    holder_hz: f64,
}

/// A baresip phone holds a linphone phone (the caller holds the callee, or
/// the other way round) for [`HOLD_SECS`] and resumes, with `music` as the
/// music on hold; returns what the linphone phone recorded.
fn hold_and_resume(music: &Path, caller_holds: bool) -> HoldRecording {
    let d = start_denwa(music);
    let (holder_number, held_number) = if caller_holds {
        (CALLER, CALLEE)
    } else {
        (CALLEE, CALLER)
    };
    let holder_hz = if caller_holds { CALLER_HZ } else { CALLEE_HZ };
    let held_hz = if caller_holds { CALLEE_HZ } else { CALLER_HZ };
    let mut holder = Phone::start(&d, holder_number, holder_hz, PHONE_LEVEL, "auto");
    let mut held = Linphone::start(&d, held_number, held_hz);
    holder.wait_registered();
    held.wait_registered();
    assert_eq!(d.wait_metric("denwa_registrations", 2.0), 2.0);
    if caller_holds {
        holder.dial(&d, &CALLEE.to_string());
    } else {
        held.send(&format!("call sip:{CALLEE}@{}", d.sip_addr()));
    }
    holder.wait_event("CALL_ESTABLISHED");
    held.wait_received(TALK_SECS * RATE as usize);

    let held_at = held.received_samples();
    holder.hold();
    held.wait_received(held_at + HOLD_SECS * RATE as usize);
    let resumed_at = held.received_samples();
    holder.resume();
    held.wait_received(resumed_at + TALK_SECS * RATE as usize);
    holder.hang_up();

    let held_leg = if caller_holds { "B" } else { "A" };
    assert_eq!(
        d.log_count(&format!("on hold: music on hold held={held_leg}")),
        1,
        "{}",
        d.log()
    );
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"answered\"}", 1.0),
        1.0
    );
    let samples = held.received();
    let heard = classify(&samples, &[holder_hz, MUSIC_HZ[0], MUSIC_HZ[1]]);
    let w = |samples: usize| (samples / WINDOW).min(heard.len());
    HoldRecording {
        before: heard[..w(held_at)].to_vec(),
        during: heard[w(held_at)..w(resumed_at)].to_vec(),
        after: heard[w(resumed_at)..].to_vec(),
        holder_hz,
    }
}

impl HoldRecording {
    /// Before the hold: the other phone (the first half second may be the
    /// jitter buffer filling).
    fn assert_talk_before(&self) {
        let talk = &self.before[25.min(self.before.len())..];
        assert!(
            share(talk, self.holder_hz) >= TALK_SHARE,
            "before the hold the phone did not hear the other phone ({} Hz): {:?}",
            self.holder_hz,
            runs(&self.before)
        );
    }

    /// While held, after perhaps a moment of the other phone still in
    /// flight: what was heard.
    fn held_part(&self) -> &[Heard] {
        let first = runs(&self.during)
            .first()
            .filter(|&&(h, _)| h == Heard::Tone(self.holder_hz))
            .map_or(0, |&(_, n)| n);
        assert!(
            first < 25,
            "the other phone was heard {first} windows into the hold"
        );
        &self.during[first..]
    }

    /// After the resume: perhaps the end of the hold, then the other phone
    /// and only it.
    fn assert_talk_after(&self) {
        let back = self
            .after
            .iter()
            .position(|&h| h == Heard::Tone(self.holder_hz))
            .unwrap_or_else(|| {
                panic!(
                    "after the resume the phone never heard the other phone again: {:?}",
                    runs(&self.after)
                )
            });
        assert!(
            back < 50,
            "the other phone came back only {back} windows after the resume: {:?}",
            runs(&self.after)
        );
        assert!(
            share(&self.after[back..], self.holder_hz) >= TALK_SHARE,
            "after the resume the phone heard more than the other phone: {:?}",
            runs(&self.after)
        );
    }
}

/// The held phone hears the other phone, then the music files in name
/// order, looping, and nothing else, then the other phone again.
fn held_phone_hears_music_then_the_other_phone(caller_holds: bool) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let rec = hold_and_resume(&music_dir(tmp.path()), caller_holds);
    rec.assert_talk_before();

    let held = rec.held_part();
    let music = tone_runs(held);
    let order: Vec<f64> = music.iter().map(|&(hz, _)| hz).collect();
    let want: Vec<f64> = (0..order.len()).map(|i| MUSIC_HZ[i % 2]).collect();
    assert!(
        order.len() >= HOLD_SECS - 1 && order == want,
        "the held phone did not hear the music files in order and looping; \
         tone runs while held: {music:?}\nall: {:?}",
        runs(&rec.during)
    );
    // Every file played whole (the last run is cut by the resume): never
    // shorter, and not twice over. What the phone plays out can be longer
    // than what was sent when its jitter buffer stretches audio on a busy
    // machine, so the upper bound is loose.
    for &(hz, n) in &music[1..music.len() - 1] {
        assert!(
            n + 3 >= MUSIC_WINDOWS && n < MUSIC_WINDOWS * 3 / 2,
            "{hz} Hz lasted {n} windows, not {MUSIC_WINDOWS}: {music:?}"
        );
    }
    let music_share = share(held, MUSIC_HZ[0]) + share(held, MUSIC_HZ[1]);
    assert!(
        music_share >= 0.9,
        "music was {:.0}% of the hold: {:?}",
        music_share * 100.0,
        runs(&rec.during)
    );

    rec.assert_talk_after();
}

#[test]
fn callee_on_hold_hears_the_music_then_the_caller() {
    held_phone_hears_music_then_the_other_phone(true);
}

#[test]
fn caller_on_hold_hears_the_music_then_the_callee() {
    held_phone_hears_music_then_the_other_phone(false);
}

/// No music where `music_on_hold` points: the held phone hears silence,
/// then the other phone again.
#[test]
fn without_music_the_held_phone_hears_silence() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let rec = hold_and_resume(&tmp.path().join("no-music-here"), true);
    rec.assert_talk_before();
    let held = rec.held_part();
    let silence = held.iter().filter(|&&h| h == Heard::Silence).count();
    assert!(
        silence as f64 >= held.len() as f64 * 0.95,
        "the held phone heard more than silence: {:?}",
        runs(&rec.during)
    );
    rec.assert_talk_after();
}

/// RFC 3550 stream continuity as a real phone sees it: baresip, put on hold
/// by another baresip, keeps one RTCP member per SSRC it receives, counts
/// packets lost from the sequence numbers, and throws away frames whose
/// timestamp runs backwards or repeats. Through talk, music and talk again
/// it must see one SSRC, nothing lost, nothing thrown away, and timestamps
/// that follow the clock.
#[test]
fn held_phone_sees_one_rtp_stream_through_hold_and_resume() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = start_denwa(&music_dir(tmp.path()));
    let mut a = Phone::start(&d, CALLER, CALLER_HZ, PHONE_LEVEL, "auto");
    let mut b = Phone::start(&d, CALLEE, CALLEE_HZ, PHONE_LEVEL, "auto");
    a.wait_registered();
    b.wait_registered();
    assert_eq!(d.wait_metric("denwa_registrations", 2.0), 2.0);
    a.dial(&d, &CALLEE.to_string());
    a.wait_event("CALL_ESTABLISHED");
    b.wait_event("CALL_ESTABLISHED");
    let started = Instant::now();
    let per_sec = PACKETS_PER_SEC as u64;
    let talk = b.wait_packets(TALK_SECS as u64 * per_sec);

    a.hold();
    let held = b.wait_packets(talk.packets() + HOLD_SECS as u64 * per_sec);
    a.resume();
    b.wait_packets(held.packets() + TALK_SECS as u64 * per_sec);
    let rx = b.reception();
    let elapsed = started.elapsed().as_secs_f64();
    a.hang_up();
    b.wait_event("CALL_CLOSED");
    assert_eq!(
        d.log_count("on hold: music on hold held=B"),
        1,
        "{}",
        d.log()
    );

    assert_eq!(
        talk.sources.len(),
        1,
        "one source before the hold: {talk:?}"
    );
    assert_eq!(
        rx.sources.len(),
        1,
        "the held phone saw the SSRC change (talk, music, talk): {:?}\nbefore the hold: {:?}",
        rx.sources,
        talk.sources
    );
    assert_eq!(rx.sources[0].lost, 0, "sequence numbers jumped: {rx:?}");
    assert_eq!(
        rx.discarded, 0,
        "the held phone threw away frames for their timestamps: {rx:?}"
    );
    // The RTP timestamps span the time audio flowed, not more, not less.
    let packets_secs = rx.packets() as f64 / PACKETS_PER_SEC as f64;
    assert!(
        rx.rx_secs >= packets_secs * 0.95 && rx.rx_secs <= elapsed + 1.0,
        "RTP timestamps span {:.2} s for {:.2} s of packets over {elapsed:.2} s: {rx:?}",
        rx.rx_secs,
        packets_secs
    );
    let complaints: Vec<String> = b
        .log()
        .lines()
        .filter(|l| {
            [
                "SSRC changed",
                "timestamp wraps backwards",
                "discard old frame",
            ]
            .iter()
            .any(|c| l.contains(c))
        })
        .map(str::to_owned)
        .collect();
    assert!(
        complaints.is_empty(),
        "the held phone complained: {complaints:?}"
    );
}
