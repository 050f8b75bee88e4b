//! SHA-256 digest authentication (RFC 8760, RFC 7616) with a real SIP stack:
//! linphone's daemon (liblinphone over belle-sip) registers at denwa, which
//! challenges with SHA-256 and MD5. The client must answer with
//! `algorithm=SHA-256` and denwa must accept it, for the REGISTER, the
//! un-REGISTER and a call's INVITE (challenged with 407); a wrong password
//! must still be refused under SHA-256.
//!
//! The evidence of the algorithm is the client's own log: liblinphone logs
//! every SIP message it sends and receives, so the credentials it sent and
//! the challenges it got are read from there; denwa's side is its
//! `denwa_registrations`, `denwa_auth_failures_total` and call metrics.
//!
//! The daemon reads commands on its standard input; it runs without a sound
//! card, with its own HOME, its SIP socket on 127.0.0.1, an outbound route
//! to denwa (so no name is ever resolved) and a fresh configuration file per
//! client (liblinphone rewrites that file, replacing the password by a
//! stored hash).

mod common;

use common::{extensions, free_port, password, wait_exit, Denwa};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on every wait for the client.
const WAIT: Duration = Duration::from_secs(15);
const NUMBER: u32 = 5001;

fn start_denwa(algorithms: &str) -> Denwa {
    Denwa::start(&format!(
        "[auth]\nalgorithms = {algorithms}\n\n{}",
        extensions(NUMBER, NUMBER)
    ))
}

/// The `algorithm=` parameter of a digest challenge or credentials line.
fn algorithm_of(line: &str) -> String {
    let Some(start) = line.find("algorithm=").map(|i| i + "algorithm=".len()) else {
        return String::new();
    };
    line[start..]
        .split([',', ' '])
        .next()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned()
}

/// One linphone daemon with account `number` at denwa.
struct Linphone {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    dir: tempfile::TempDir,
}

impl Linphone {
    /// Start a daemon for `number`; `auto_answer` makes it answer calls.
    fn start(d: &Denwa, number: u32, secret: &str, auto_answer: bool) -> Linphone {
        assert!(!secret.contains(['\n', '"']), "a plain password");
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().join("home");
        let data = home.join(".local/share/linphone");
        std::fs::create_dir_all(&data).expect("linphone data dir");
        let sip_port = free_port();
        let rtp_port = free_port();
        let config = format!(
            "[sip]\n\
             bind_address=127.0.0.1\n\
             sip_port={sip_port}\n\
             sip_tcp_port=0\n\
             sip_tls_port=0\n\
             ipv6_enabled=0\n\
             guess_hostname=0\n\
             default_proxy=0\n\
             \n\
             [rtp]\n\
             audio_rtp_port={rtp_port}\n\
             \n\
             [storage]\n\
             uri={1}\n\
             \n\
             [proxy_0]\n\
             reg_proxy=<sip:{0};transport=udp>\n\
             reg_route=<sip:{0};transport=udp;lr>\n\
             reg_identity=<sip:{number}@denwa.test>\n\
             reg_expires=600\n\
             reg_sendregister=1\n\
             publish=0\n\
             \n\
             [auth_info_0]\n\
             username={number}\n\
             passwd={secret}\n\
             realm=denwa.test\n\
             domain=denwa.test\n",
            d.sip_addr(),
            data.join("linphone.db").display(),
        );
        let rc = dir.path().join("linphonerc");
        std::fs::write(&rc, config).expect("linphone config");
        let out = std::fs::File::create(dir.path().join("daemon.out")).expect("output file");
        // `timeout` bounds the daemon's life even if this test is killed.
        let child = Command::new("timeout")
            .args(["60", "linphone-daemon", "--config"])
            .arg(&rc)
            .arg("--log")
            .arg(dir.path().join("linphone.log"))
            .args(auto_answer.then_some("--auto-answer"))
            .env("HOME", &home)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out.try_clone().expect("output fd")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start linphone-daemon");
        let mut client = Linphone {
            child: Some(child),
            stdin: None,
            dir,
        };
        client.stdin = client.child.as_mut().and_then(|c| c.stdin.take());
        client
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("linphone.log")
    }

    /// liblinphone's log, with the SIP messages it sent and received.
    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Panic with the daemon's output; the log follows from [`Drop`].
    fn fail(&self, what: &str) -> ! {
        panic!(
            "linphone: {what}\n---- daemon output ----\n{}",
            std::fs::read_to_string(self.dir.path().join("daemon.out")).unwrap_or_default()
        )
    }

    /// The log without liblinphone's chatter about sound cards and codecs.
    fn sip_lines(&self) -> String {
        self.log()
            .lines()
            .filter(|l| !l.contains("mediastreamer") && !l.contains("ortp-"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The `algorithm=` of every `header` line in the SIP messages logged.
    fn algorithms(&self, header: &str) -> Vec<String> {
        let prefix = format!("{header}:");
        self.log()
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(algorithm_of)
            .collect()
    }

    /// The registration states the account went through, in order.
    fn registration_states(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("moving from state [LinphoneRegistration"))
            .filter_map(|l| {
                let to = &l[l.find(" to [")? + 5..];
                Some(to[..to.find(']')?].to_owned())
            })
            .collect()
    }

    /// The states the calls went through, in order.
    fn call_states(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("CallSession [") && l.contains(" moving from state "))
            .filter_map(|l| l.rsplit(" to ").next().map(|s| s.trim().to_owned()))
            .collect()
    }

    /// Wait (bounded) until the account reaches registration state `state`
    /// (such as `LinphoneRegistrationOk`).
    fn wait_state(&mut self, state: &str) {
        self.wait_for(state, Linphone::registration_states);
    }

    /// Wait (bounded) until a call reaches `state` (such as
    /// `LinphoneCallStreamsRunning`).
    fn wait_call_state(&mut self, state: &str) {
        self.wait_for(state, Linphone::call_states);
    }

    fn wait_for(&mut self, state: &str, states: fn(&Linphone) -> Vec<String>) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if states(self).iter().any(|s| s == state) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                self.fail(&format!("linphone-daemon exited ({status})"));
            }
            std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
        }
        self.fail(&format!(
            "never reached {state}; states: {:?}",
            states(self)
        ))
    }

    /// Send one command line to the daemon.
    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("daemon running");
        if let Err(e) = stdin.write_all(format!("{command}\n").as_bytes()) {
            self.fail(&format!("sending {command}: {e}"));
        }
    }

    /// Quit the daemon (it unregisters first); TERM and then KILL it by PID
    /// if it lingers. True when it quit by itself.
    fn stop(&mut self) -> bool {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"quit\n");
        }
        let Some(mut child) = self.child.take() else {
            return false;
        };
        if wait_exit(&mut child, Duration::from_secs(10)) {
            return true;
        }
        // `timeout` passes TERM on to the daemon.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        if !wait_exit(&mut child, Duration::from_secs(3)) {
            let _ = child.kill();
            let _ = child.wait();
        }
        false
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- linphone log (SIP) ----\n{}", self.sip_lines());
        }
    }
}

/// Register, check what was offered and answered, then quit: the client's
/// un-REGISTER must authenticate with SHA-256 as well.
/// The client sent credentials, and every one of them used SHA-256; returns
/// how many.
fn assert_sent_sha256(client: &Linphone) -> usize {
    let answers = client.algorithms("Authorization");
    assert!(
        !answers.is_empty(),
        "no credentials sent:\n{}",
        client.sip_lines()
    );
    assert!(
        answers.iter().all(|a| a == "SHA-256"),
        "credentials not all SHA-256: {answers:?}"
    );
    answers.len()
}

fn registers_with_sha256(algorithms: &str, offered: &[&str]) {
    let d = start_denwa(algorithms);
    let mut client = Linphone::start(&d, NUMBER, &password(NUMBER), false);
    client.wait_state("LinphoneRegistrationOk");
    assert_eq!(d.wait_metric("denwa_registrations", 1.0), 1.0);

    let challenges = client.algorithms("WWW-Authenticate");
    assert_eq!(challenges, offered, "challenges the client received");
    assert_sent_sha256(&client);

    assert!(client.stop(), "linphone-daemon did not quit");
    assert_eq!(d.wait_metric("denwa_registrations", 0.0), 0.0);
    assert_eq!(
        client.registration_states().last().map(String::as_str),
        Some("LinphoneRegistrationCleared"),
        "the un-REGISTER was not accepted"
    );
    assert!(
        assert_sent_sha256(&client) >= 2,
        "un-REGISTER without credentials"
    );
    assert_eq!(d.metric("denwa_auth_failures_total"), 0.0);
}

#[test]
fn client_registers_with_sha256_when_md5_is_offered_too() {
    // Whatever the configured order, SHA-256 is challenged first (RFC 8760).
    registers_with_sha256("[\"SHA-256\", \"MD5\"]", &["SHA-256", "MD5"]);
}

#[test]
fn client_registers_when_only_sha256_is_offered() {
    registers_with_sha256("[\"SHA-256\"]", &["SHA-256"]);
}

#[test]
fn wrong_password_is_refused_under_sha256() {
    let d = start_denwa("[\"SHA-256\", \"MD5\"]");
    let mut client = Linphone::start(&d, NUMBER, "not-the-password", false);
    client.wait_state("LinphoneRegistrationFailed");
    assert_sent_sha256(&client);
    assert!(
        d.wait_metric("denwa_auth_failures_total", 1.0) >= 1.0,
        "denwa counted no failure"
    );
    assert_eq!(d.metric("denwa_registrations"), 0.0);
    assert!(
        !client
            .registration_states()
            .iter()
            .any(|s| s == "LinphoneRegistrationOk"),
        "registered with a wrong password"
    );
}

#[test]
fn call_invite_is_authenticated_with_sha256() {
    let callee = NUMBER + 1;
    let d = Denwa::start(&format!(
        "[auth]\nalgorithms = [\"SHA-256\", \"MD5\"]\n\n{}",
        extensions(NUMBER, callee)
    ));
    let mut a = Linphone::start(&d, NUMBER, &password(NUMBER), false);
    let mut b = Linphone::start(&d, callee, &password(callee), true);
    a.wait_state("LinphoneRegistrationOk");
    b.wait_state("LinphoneRegistrationOk");
    assert_eq!(d.wait_metric("denwa_registrations", 2.0), 2.0);

    a.send(&format!("call sip:{callee}@denwa.test"));
    a.wait_call_state("LinphoneCallStreamsRunning");
    b.wait_call_state("LinphoneCallStreamsRunning");
    assert_eq!(d.wait_metric("denwa_calls_active", 1.0), 1.0);
    a.send("terminate");
    b.wait_call_state("LinphoneCallEnd");
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"answered\"}", 1.0),
        1.0
    );

    assert_eq!(
        a.algorithms("Proxy-Authenticate"),
        ["SHA-256", "MD5"],
        "the INVITE was not challenged with both algorithms"
    );
    let answers = a.algorithms("Proxy-Authorization");
    assert!(!answers.is_empty(), "INVITE without credentials");
    assert!(
        answers.iter().all(|x| x == "SHA-256"),
        "INVITE credentials not all SHA-256: {answers:?}"
    );
    // The callee was never asked to authenticate anything but its REGISTER.
    assert!(b.algorithms("Proxy-Authorization").is_empty());
    assert_eq!(d.metric("denwa_auth_failures_total"), 0.0);
    // Both phones offered and were offered media on loopback only.
    for client in [&a, &b] {
        let log = client.log();
        let hosts: Vec<&str> = log.lines().filter(|l| l.starts_with("c=")).collect();
        assert!(!hosts.is_empty(), "no SDP logged");
        assert!(
            hosts.iter().all(|c| c.trim_end() == "c=IN IP4 127.0.0.1"),
            "media outside loopback: {hosts:?}"
        );
    }
}
