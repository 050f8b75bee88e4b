//! Operating the real binary: SIGHUP reloads the configuration (a broken file
//! is refused and the running one stays), SIGTERM drains (no new calls,
//! `/healthz` 503, exit once the active call ends or at the grace deadline),
//! and a crash (SIGKILL) loses no committed registration or call record.

mod common;

use common::{
    caller_sipp, extensions, header, password, register_lines, register_users, wait_until, Denwa,
    Sipp,
};
use rusqlite::{Connection, OpenFlags};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
/// SIPp's digest is MD5 only; many failed attempts from one source are part
/// of these tests, so lockout is out of the way.
const AUTH: &str = "[auth]\nalgorithms = [\"MD5\"]\nlockout_threshold = 1000\n\n";
const CALLER: u32 = 3001;
const CALLEE: u32 = 3002;

/// SIGHUP, then wait (bounded) until the log shows the `nth` successful reload.
fn reload(d: &Denwa, nth: usize) {
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || log_count(
            d,
            "configuration reloaded"
        ) == nth),
        "no reload:\n{}",
        d.log()
    );
}

/// How many lines of denwa's log contain `needle`.
fn log_count(d: &Denwa, needle: &str) -> usize {
    d.log().lines().filter(|l| l.contains(needle)).count()
}

/// A read-only connection to denwa's database (it runs in WAL mode, so this
/// sees every committed transaction and never blocks the writer).
fn database(d: &Denwa) -> Connection {
    let path = d.dir.path().join("data/denwa.sqlite");
    Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn count_rows(d: &Denwa, table: &str) -> i64 {
    database(d)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap_or(-1)
}

/// Wait (bounded) until denwa's process has exited: it is our child, so it
/// stays a zombie until `Denwa::stop` reaps it and reads its status.
fn wait_exited(pid: u32, limit: Duration) -> bool {
    wait_until(limit, || {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
            Err(_) => true,
        }
    })
}

/// A minimal SIP callee on a plain UDP socket, so the test decides when the
/// call ends: it answers the INVITE with 180 and later with a final status.
struct Callee {
    sock: UdpSocket,
}

impl Callee {
    fn bind() -> Callee {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind callee");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        Callee { sock }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().expect("addr").port()
    }

    /// The next request with `method` (bounded wait); others are skipped.
    fn wait_request(&self, method: &str, limit: Duration) -> Option<(String, SocketAddr)> {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.starts_with(&format!("{method} ")) {
                return Some((msg, from));
            }
        }
        None
    }

    fn respond(&self, invite: &str, to: SocketAddr, status: &str) {
        let mut out = format!("SIP/2.0 {status}\r\n");
        for line in header(invite, "Via", "v") {
            out.push_str(line);
            out.push_str("\r\n");
        }
        for (name, compact) in [("From", "f"), ("Call-ID", "i"), ("CSeq", "")] {
            for line in header(invite, name, compact) {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        for line in header(invite, "To", "t") {
            out.push_str(&format!("{line};tag=callee1\r\n"));
        }
        out.push_str(&format!(
            "Contact: <sip:{CALLEE}@127.0.0.1:{}>\r\nContent-Length: 0\r\n\r\n",
            self.port()
        ));
        self.sock.send_to(out.as_bytes(), to).expect("send");
    }
}

/// A SIPp caller in the background dialling the callee; expects `status`.
fn start_caller(d: &Denwa, status: u16) -> (Child, Sipp) {
    let sipp = caller_sipp(d, "uac_refused.xml", CALLER, &CALLEE.to_string())
        .substitute("[expect]", &status.to_string())
        .arg("-timeout")
        .arg("40s");
    let child = sipp.spawn(Duration::from_secs(50));
    (child, sipp)
}

/// A call from CALLER to CALLEE that is ringing at our callee.
struct RingingCall {
    callee: Callee,
    invite: String,
    denwa: SocketAddr,
    caller: Option<Child>,
    sipp: Sipp,
}

impl RingingCall {
    fn start(d: &Denwa, final_status: u16) -> RingingCall {
        let callee = Callee::bind();
        let (ok, report) = Sipp::new("register.xml", &d.sip_addr(), "127.0.0.1")
            .users(&register_lines(CALLEE..=CALLEE, password))
            .key("contact_port", &callee.port().to_string())
            .arg("-m")
            .arg("1")
            .run_report(LIMIT);
        assert!(ok, "callee registration failed: {report}");
        let (caller, sipp) = start_caller(d, final_status);
        let (invite, denwa) = callee
            .wait_request("INVITE", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no INVITE reached the callee:\n{}", d.log()));
        callee.respond(&invite, denwa, "180 Ringing");
        assert_eq!(d.wait_metric("denwa_calls_active", 1.0), 1.0);
        RingingCall {
            callee,
            invite,
            denwa,
            caller: Some(caller),
            sipp,
        }
    }

    /// Wait for the SIPp caller; (success, report).
    fn caller_result(&mut self) -> (bool, String) {
        let mut child = self.caller.take().expect("caller running");
        let status = child.wait().expect("wait sipp");
        let errors = self.sipp.errors();
        (status.success(), format!("caller exit {status}:\n{errors}"))
    }
}

impl Drop for RingingCall {
    fn drop(&mut self) {
        // The child is `timeout`: SIGTERM makes it stop SIPp too (SIGKILL
        // would leave SIPp running on its own).
        if let Some(mut c) = self.caller.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            if !wait_until(Duration::from_secs(5), || {
                matches!(c.try_wait(), Ok(Some(_)))
            }) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// Send a fresh, unauthenticated INVITE from a plain socket; the answer.
fn probe_invite(d: &Denwa) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = sock.local_addr().expect("addr").port();
    let invite = format!(
        "INVITE sip:{CALLEE}@denwa.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-probe-1;rport\r\n\
         From: <sip:{CALLER}@denwa.test>;tag=probe1\r\n\
         To: <sip:{CALLEE}@denwa.test>\r\n\
         Call-ID: drain-probe-{port}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{CALLER}@127.0.0.1:{port}>\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), d.sip_addr()).expect("send");
    let mut buf = vec![0u8; 65536];
    // The final answer, after any provisional one (100 Trying).
    let answer = loop {
        let n = sock.recv(&mut buf).expect("an answer to the INVITE");
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !answer.starts_with("SIP/2.0 1") {
            break answer;
        }
    };
    // ACK the final answer (RFC 3261 §17.1.1.3) so its transaction ends.
    if let Some(to) = header(&answer, "To", "t").first() {
        let ack = format!(
            "ACK sip:{CALLEE}@denwa.test SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-probe-1;rport\r\n\
             From: <sip:{CALLER}@denwa.test>;tag=probe1\r\n\
             {to}\r\n\
             Call-ID: drain-probe-{port}\r\n\
             CSeq: 1 ACK\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(ack.as_bytes(), d.sip_addr());
    }
    answer
}

#[test]
fn sighup_applies_a_new_configuration_and_refuses_a_broken_one() {
    let d = Denwa::start(&format!("{AUTH}{}", extensions(5001, 5001)));
    let (ok, report) = register_users(&d, "127.0.0.1", 5001..=5001, password, "register.xml");
    assert!(ok, "{report}");

    // 5002 is unknown: even its right password gets a fresh 401.
    let (ok, report) = register_users(&d, "127.0.0.1", 5002..=5002, password, "register_wrong.xml");
    assert!(ok, "an unknown user was not refused: {report}");
    assert_eq!(d.metric("denwa_registrations"), 1.0);

    // Add 5002 and reload.
    let good = std::fs::read_to_string(&d.config).expect("config");
    let with_5002 = format!("{good}\n{}", extensions(5002, 5002));
    std::fs::write(&d.config, &with_5002).expect("write config");
    reload(&d, 1);
    let (ok, report) = register_users(&d, "127.0.0.1", 5002..=5002, password, "register.xml");
    assert!(ok, "5002 did not register after the reload: {report}");
    assert_eq!(d.wait_metric("denwa_registrations", 2.0), 2.0);

    // A syntax error: refused, the running configuration stays.
    let broken_line = with_5002.lines().count() + 2;
    std::fs::write(&d.config, format!("{with_5002}\n[calls\n")).expect("write config");
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || log_count(
            &d,
            "configuration refused"
        ) >= 1),
        "the broken configuration was not refused:\n{}",
        d.log()
    );
    let where_ = format!("{}:{broken_line}: ", d.config.display());
    assert!(
        d.log()
            .lines()
            .any(|l| l.contains("configuration refused") && l.contains(&where_)),
        "the refusal does not name {where_}:\n{}",
        d.log()
    );
    assert_eq!(log_count(&d, "configuration reloaded"), 1);
    assert_eq!(d.http_get("/healthz"), Some((200, "ok".to_owned())));
    let (ok, report) = register_users(&d, "127.0.0.1", 5001..=5002, password, "register.xml");
    assert!(ok, "registration failed after a refused reload: {report}");
    assert_eq!(d.metric("denwa_registrations"), 2.0);
}

#[test]
fn sigterm_drains_and_exits_when_the_last_call_ends() {
    let mut d = Denwa::start(&format!(
        "{AUTH}[calls]\nno_answer_timeout_secs = 120\nshutdown_grace_secs = 60\n\n{}",
        extensions(3001, 3003)
    ));
    let mut call = RingingCall::start(&d, 486);
    let pid = d.pid();

    d.signal("TERM");
    assert!(
        wait_until(Duration::from_secs(10), || d.http_get("/healthz")
            == Some((503, "draining".to_owned()))),
        "/healthz does not say draining:\n{}",
        d.log()
    );
    // A new call is refused while the old one goes on.
    let answer = probe_invite(&d);
    assert!(answer.starts_with("SIP/2.0 503 "), "{answer}");
    assert!(!header(&answer, "Retry-After", "").is_empty(), "{answer}");
    assert_eq!(d.metric("denwa_calls_active"), 1.0);
    assert!(!wait_exited(pid, Duration::ZERO), "exited with a call up");

    // The callee ends the call: busy.
    call.callee
        .respond(&call.invite, call.denwa, "486 Busy Here");
    let ended = Instant::now();
    assert!(
        call.callee
            .wait_request("ACK", Duration::from_secs(10))
            .is_some(),
        "denwa did not ACK the 486"
    );
    let (ok, report) = call.caller_result();
    assert!(ok, "{report}");
    assert!(
        wait_exited(pid, Duration::from_secs(20)),
        "denwa still runs after its last call ended:\n{}",
        d.log()
    );
    let took = ended.elapsed();
    assert!(took < Duration::from_secs(10), "exit took {took:?}");
    assert!(d.stop().success(), "{}", d.log());

    // The call record was written before the exit.
    let row: (String, String, String, i64) = database(&d)
        .query_row(
            "SELECT caller, callee, disposition, sip_status FROM call_records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("one call record");
    assert_eq!(
        row,
        (
            CALLER.to_string(),
            CALLEE.to_string(),
            "busy".to_owned(),
            486
        )
    );
}

#[test]
fn sigterm_stops_at_the_grace_deadline_with_a_call_still_up() {
    // Started with a long grace, reloaded with a short one: the reloaded
    // value is the one that counts.
    let grace = Duration::from_secs(3);
    let calls = "[calls]\nno_answer_timeout_secs = 120\nshutdown_grace_secs = ";
    let mut d = Denwa::start(&format!("{AUTH}{calls}600\n\n{}", extensions(3001, 3003)));
    let text = std::fs::read_to_string(&d.config).expect("config");
    let short = text.replace(
        &format!("{calls}600\n"),
        &format!("{calls}{}\n", grace.as_secs()),
    );
    assert_ne!(text, short);
    std::fs::write(&d.config, short).expect("write config");
    reload(&d, 1);
    // At the deadline the ringing call is ended: 503 to the caller, CANCEL
    // to the callee.
    let mut call = RingingCall::start(&d, 503);
    let pid = d.pid();
    let asked = Instant::now();
    d.signal("TERM");
    assert!(
        wait_exited(pid, Duration::from_secs(20)),
        "denwa did not stop at its grace deadline:\n{}",
        d.log()
    );
    let took = asked.elapsed();
    assert!(
        took >= grace - Duration::from_millis(500) && took < grace + Duration::from_secs(10),
        "stopped after {took:?} with a grace of {grace:?}"
    );
    assert!(d.stop().success(), "{}", d.log());
    assert_eq!(log_count(&d, "shutdown deadline reached"), 1, "{}", d.log());
    let (ok, report) = call.caller_result();
    assert!(ok, "the caller did not get 503 at the deadline: {report}");
    assert!(
        call.callee
            .wait_request("CANCEL", Duration::from_secs(5))
            .is_some(),
        "the ringing phone was not cancelled:\n{}",
        d.log()
    );
}

#[test]
fn a_crash_loses_no_committed_registration_or_call_record() {
    let mut d = Denwa::start(&format!(
        "{AUTH}{}{}",
        extensions(2000, 2009),
        extensions(3001, 3003)
    ));
    let (ok, report) = register_users(&d, "127.0.0.1", 2000..=2009, password, "register.xml");
    assert!(ok, "{report}");
    assert_eq!(d.wait_metric("denwa_registrations", 10.0), 10.0);

    // A call to a known but unregistered extension: 480, one call record.
    let (ok, report) = Sipp::new("uac_refused.xml", &d.sip_addr(), "127.0.0.1")
        .arg("-s")
        .arg("3003")
        .key("user", &CALLER.to_string())
        .substitute(
            "[authentication username=[user] password=[pass]]",
            &format!(
                "[authentication username={CALLER} password={}]",
                password(CALLER)
            ),
        )
        .substitute("[expect]", "480")
        .arg("-mp")
        .arg(&common::free_port().to_string())
        .arg("-m")
        .arg("1")
        .arg("-timeout")
        .arg("20s")
        .run_report(LIMIT);
    assert!(ok, "{report}");

    // The writer commits asynchronously: wait until it has, then crash.
    assert!(
        wait_until(Duration::from_secs(10), || count_rows(&d, "registrations")
            == 10
            && count_rows(&d, "call_records") == 1),
        "the store did not commit: {} registrations, {} call records",
        count_rows(&d, "registrations"),
        count_rows(&d, "call_records")
    );
    d.crash();
    d.restart();
    assert_eq!(d.metric("denwa_registrations"), 10.0);
    assert!(
        d.log().contains("registrations restored count=10"),
        "{}",
        d.log()
    );
    let users: Vec<String> = {
        let db = database(&d);
        let mut q = db
            .prepare("SELECT user FROM registrations ORDER BY user")
            .expect("query");
        let rows = q.query_map([], |r| r.get(0)).expect("rows");
        rows.map(|r| r.expect("row")).collect()
    };
    let want: Vec<String> = (2000..=2009).map(|n| n.to_string()).collect();
    assert_eq!(users, want);
    let record: (String, String, String, i64) = database(&d)
        .query_row(
            "SELECT caller, callee, disposition, sip_status FROM call_records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("the call record");
    assert_eq!(
        record,
        (
            CALLER.to_string(),
            "3003".to_owned(),
            "unavailable".to_owned(),
            480
        )
    );
    // And it keeps serving: a registered user can register again.
    let (ok, report) = register_users(&d, "127.0.0.1", 2000..=2000, password, "register.xml");
    assert!(ok, "{report}");
}
