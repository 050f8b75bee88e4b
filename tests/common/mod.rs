//! Test harness for interop tests: starts denwa on free loopback ports with
//! its own temporary data directory, and runs real SIP peers against it.
//! Every wait is bounded; every process started here is killed by PID.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod baresip;
pub mod rtp;

pub const PASSWORD_PREFIX: &str = "secret-pw-";

/// The password the test configuration gives extension `n`.
pub fn password(n: u32) -> String {
    format!("{PASSWORD_PREFIX}{n}")
}

/// A port free on 127.0.0.1 for both UDP and TCP at the time of the call.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let Ok(u) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = u.local_addr() else { continue };
        if TcpListener::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// Extensions `from..=to`, each with [`password`].
pub fn extensions(from: u32, to: u32) -> String {
    (from..=to)
        .map(|n| {
            format!(
                "[[extensions]]\nnumber = \"{n}\"\nname = \"Ext {n}\"\npassword = \"{}\"\n\n",
                password(n)
            )
        })
        .collect()
}

pub struct Denwa {
    child: Option<Child>,
    env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
    pub sip_port: u16,
    pub http_port: u16,
    pub config: PathBuf,
}

impl Denwa {
    /// Start denwa with `sections` (TOML: extra tables and extensions).
    pub fn start(sections: &str) -> Denwa {
        Denwa::start_with_env(sections, &[])
    }

    /// Like [`Denwa::start`], with extra environment variables.
    pub fn start_with_env(sections: &str, env: &[(&str, &str)]) -> Denwa {
        Denwa::start_full(sections, env, "")
    }

    /// Like [`Denwa::start`], with extra lines in the `[http]` table (such
    /// as `api_token = "..."`).
    pub fn start_with_http(http: &str, sections: &str) -> Denwa {
        Denwa::start_full(sections, &[], http)
    }

    fn start_full(sections: &str, env: &[(&str, &str)], http: &str) -> Denwa {
        // A port free_port() found can be taken by another process before
        // denwa binds it: then start again on other ports (bounded).
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let mut d = Denwa::configure(sections, env, http);
            match d.try_spawn() {
                Ok(()) => return d,
                Err(log) if attempt < ATTEMPTS && log.contains("Address already in use") => {
                    continue
                }
                Err(log) => panic!("denwa exited at start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// A temporary directory with a configuration on fresh ports.
    fn configure(sections: &str, env: &[(&str, &str)], http: &str) -> Denwa {
        let dir = tempfile::tempdir().expect("temp dir");
        let sip_port = free_port();
        let http_port = free_port();
        // Below Linux's ephemeral ports (32768 and up), 100 ports per
        // instance. Two instances running at once may draw the same range:
        // denwa then skips the ports the other one holds.
        let rtp_base = 10000 + (sip_port % 220) * 100;
        let config = dir.path().join("denwa.toml");
        let text = format!(
            "[sip]\nudp = [\"127.0.0.1:{sip_port}\"]\ntcp = [\"127.0.0.1:{sip_port}\"]\ndomain = \"denwa.test\"\n\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n{http}\n\n\
             [media]\nrtp_port_min = {rtp_base}\nrtp_port_max = {}\n\n\
             [storage]\ndata_dir = \"data\"\n\n\
             [log]\nlevel = \"debug\"\n\n{sections}",
            rtp_base + 99
        );
        std::fs::write(&config, text).expect("write config");
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Denwa {
            child: None,
            env,
            dir,
            sip_port,
            http_port,
            config,
        }
    }

    pub fn sip_addr(&self) -> String {
        format!("127.0.0.1:{}", self.sip_port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("denwa.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_denwa"))
            .args(["run", "--config"])
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start denwa");
        self.child = Some(child);
        self.wait_ready()
    }

    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("denwa exited at start:\n{log}");
        }
    }

    /// Waits until denwa answers /healthz; `Err` with its log when it
    /// exited instead.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("({status})\n{}", self.log()));
                }
            }
            if matches!(self.http_get("/healthz"), Some((200, _))) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
        }
        panic!("denwa did not become ready:\n{}", self.log());
    }

    /// GET a path from the HTTP endpoint: (status, body).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.http_port).parse().ok()?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((status, body))
    }

    /// A request to the HTTP endpoint with `method`, extra `headers` and
    /// `body`: (status, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Option<(u16, String)> {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.http_port).parse().ok()?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        write!(s, "{head}\r\n{body}").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((status, body))
    }

    /// POST `json` to `path` with `Authorization: Bearer <token>`.
    pub fn http_post(&self, path: &str, token: &str, json: &str) -> Option<(u16, String)> {
        let auth = format!("Bearer {token}");
        let headers = [
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ];
        self.http("POST", path, &headers, json)
    }

    /// The value of one metric series, such as `denwa_registrations` or
    /// `denwa_call_attempts_total{disposition="answered"}`.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.http_get("/metrics").expect("metrics");
        body.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in:\n{body}"))
    }

    /// Wait (bounded) until a metric reaches `want`.
    pub fn wait_metric(&self, series: &str, want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.metric(series);
            if v == want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    /// Send a signal to our own denwa by PID.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// SIGTERM and wait for a clean exit (bounded).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("denwa did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
        }
    }

    /// SIGKILL (a crash) and wait.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same configuration and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or crash first");
        self.spawn();
    }

    /// How many lines of the log contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// The call records written so far, newest first, once there are at
    /// least `n` (polled: the writer commits asynchronously).
    pub fn call_records(&self, n: usize) -> Vec<denwa::store::cdr::CallRecord> {
        let db = self.dir.path().join("data").join("denwa.sqlite");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reader = denwa::store::Reader::open(&db).expect("database");
            let recs = reader.recent_calls(n + 5).expect("query");
            if recs.len() >= n {
                return recs;
            }
            assert!(
                Instant::now() < deadline,
                "{} call records, not {n}",
                recs.len()
            );
            std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
        }
    }
}

impl Drop for Denwa {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- denwa log ----\n{}", self.log());
        }
    }
}

/// The directory of this crate's SIPp scenarios.
pub fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
        .display()
        .to_string()
}

/// Run a command with a hard time limit; returns its output.
pub fn run_bounded(cmd: &str, args: &[String], limit: Duration) -> Output {
    let mut full = vec![format!("{}", limit.as_secs().max(1)), cmd.to_owned()];
    full.extend(args.iter().cloned());
    Command::new("timeout")
        .args(&full)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// A SIPp run; the arguments after the common ones are given by the test.
pub struct Sipp {
    pub args: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl Sipp {
    /// SIPp with scenario `name` against `target`, bound to `ip`:free port.
    pub fn new(name: &str, target: &str, ip: &str) -> Sipp {
        let mut sipp = Sipp::uas(name, ip, free_port());
        sipp.args.insert(0, target.to_owned());
        sipp
    }

    /// SIPp with scenario `name` waiting for requests on `ip`:`port` (a
    /// callee: no target).
    pub fn uas(name: &str, ip: &str, port: u16) -> Sipp {
        let dir = tempfile::tempdir().expect("temp dir");
        let args = vec![
            "-sf".into(),
            scenario(name),
            "-i".into(),
            ip.into(),
            "-p".into(),
            port.to_string(),
            "-nostdin".into(),
            "-trace_err".into(),
            "-error_file".into(),
            dir.path().join("errors.log").display().to_string(),
        ];
        Sipp { args, dir }
    }

    /// Start in the background under `timeout` (output discarded; errors go
    /// to [`Sipp::errors`]). Stop it with SIGTERM to the returned child,
    /// which `timeout` passes on to SIPp.
    pub fn spawn(&self, limit: Duration) -> Child {
        let mut full = vec![limit.as_secs().max(1).to_string(), "sipp".to_owned()];
        full.extend(self.args.iter().cloned());
        Command::new("timeout")
            .args(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sipp")
    }

    /// What SIPp wrote to its error file so far.
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("errors.log")).unwrap_or_default()
    }

    pub fn arg(mut self, a: &str) -> Sipp {
        self.args.push(a.to_owned());
        self
    }

    /// Use a copy of the scenario with `from` replaced by `to` (SIPp cannot
    /// substitute keys inside attributes such as `response="..."`).
    pub fn substitute(mut self, from: &str, to: &str) -> Sipp {
        let Some(i) = self.args.iter().position(|a| a == "-sf") else {
            return self;
        };
        let src = std::fs::read_to_string(&self.args[i + 1]).expect("scenario");
        let path = self.dir.path().join("scenario.xml");
        std::fs::write(&path, src.replace(from, to)).expect("scenario copy");
        self.args[i + 1] = path.display().to_string();
        self
    }

    pub fn key(self, k: &str, v: &str) -> Sipp {
        self.arg("-key").arg(k).arg(v)
    }

    /// Write an injection file and use it.
    pub fn users(self, lines: &[String]) -> Sipp {
        let path = self.dir.path().join("users.csv");
        let mut text = String::from("SEQUENTIAL\n");
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(&path, text).expect("users.csv");
        let p = path.display().to_string();
        self.arg("-inf").arg(&p)
    }

    pub fn run(&self, limit: Duration) -> Output {
        run_bounded("sipp", &self.args, limit)
    }

    /// Run and describe the result for an assertion message.
    pub fn run_report(&self, limit: Duration) -> (bool, String) {
        let out = self.run(limit);
        let errors = self.errors();
        let report = format!(
            "sipp {:?}\nexit: {}\nstdout:\n{}\nstderr:\n{}\nerrors:\n{}",
            self.args,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            errors
        );
        (out.status.success(), report)
    }
}

/// A process started here under `timeout`, stopped with SIGTERM by PID
/// (which `timeout` passes on) when dropped.
pub struct Background(Option<Child>);

impl Background {
    pub fn new(child: Child) -> Background {
        Background(Some(child))
    }

    /// SIGTERM, then SIGKILL if it lingers; waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            terminate(&mut c, Duration::from_secs(5));
        }
    }

    /// Wait (bounded) for the process to end; true when it succeeded.
    pub fn finish(&mut self, limit: Duration) -> bool {
        let Some(c) = self.0.as_mut() else {
            return false;
        };
        if !wait_exit(c, limit) {
            return false;
        }
        let ok = c.try_wait().ok().flatten().is_some_and(|s| s.success());
        self.0 = None;
        ok
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A SIPp callee for one call: `scenario` (with `extra` arguments) on its
/// own port in the background, registered at denwa as `number`.
pub struct SippCallee {
    pub process: Background,
    pub sipp: Sipp,
}

impl SippCallee {
    pub fn start(
        d: &Denwa,
        scenario: &str,
        number: u32,
        extra: &[&str],
        limit: Duration,
    ) -> SippCallee {
        let port = free_port();
        let mut sipp = Sipp::uas(scenario, "127.0.0.1", port)
            .arg("-mp")
            .arg(&free_port().to_string())
            .arg("-m")
            .arg("1");
        for a in extra {
            sipp = sipp.arg(a);
        }
        let process = Background::new(sipp.spawn(limit));
        let (ok, report) = Sipp::new("register.xml", &d.sip_addr(), "127.0.0.1")
            .users(&register_lines(number..=number, password))
            .key("contact_port", &port.to_string())
            .arg("-m")
            .arg("1")
            .run_report(limit);
        assert!(ok, "callee registration failed: {report}");
        SippCallee { process, sipp }
    }

    /// Like [`SippCallee::start`], with a copy of the scenario in which
    /// each `(from, to)` of `subs` is replaced.
    pub fn start_substituted(
        d: &Denwa,
        scenario: &str,
        number: u32,
        subs: &[(&str, &str)],
        limit: Duration,
    ) -> SippCallee {
        let port = free_port();
        let mut sipp = Sipp::uas(scenario, "127.0.0.1", port)
            .arg("-mp")
            .arg(&free_port().to_string())
            .arg("-m")
            .arg("1");
        for (from, to) in subs {
            sipp = sipp.substitute(from, to);
        }
        let process = Background::new(sipp.spawn(limit));
        let (ok, report) = Sipp::new("register.xml", &d.sip_addr(), "127.0.0.1")
            .users(&register_lines(number..=number, password))
            .key("contact_port", &port.to_string())
            .arg("-m")
            .arg("1")
            .run_report(limit);
        assert!(ok, "callee registration failed: {report}");
        SippCallee { process, sipp }
    }

    /// Wait (bounded) for the scenario to end; panics unless it succeeded.
    pub fn finish(&mut self, limit: Duration) {
        assert!(
            self.process.finish(limit),
            "callee scenario failed; errors:\n{}",
            self.sipp.errors()
        );
    }
}

/// Injection lines for the register scenario: user;[authentication ...].
pub fn register_lines(
    users: impl Iterator<Item = u32>,
    pass: impl Fn(u32) -> String,
) -> Vec<String> {
    users
        .map(|n| format!("{n};[authentication username={n} password={}];", pass(n)))
        .collect()
}

/// Poll `cond` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
    }
}

/// Register `users` from `ip` with the SIPp `scenario` (register.xml or
/// register_wrong.xml); each user's password is `pass(user)`.
pub fn register_users(
    d: &Denwa,
    ip: &str,
    users: std::ops::RangeInclusive<u32>,
    pass: impl Fn(u32) -> String,
    scenario: &str,
) -> (bool, String) {
    let count = users.clone().count().to_string();
    Sipp::new(scenario, &d.sip_addr(), ip)
        .users(&register_lines(users, pass))
        .key("contact_port", "5999")
        .arg("-m")
        .arg(&count)
        .arg("-r")
        .arg("50")
        .arg("-timeout")
        .arg("10s")
        .arg("-timeout_error")
        .run_report(Duration::from_secs(60))
}

/// A SIPp caller: extension `from` dials `to` with `scenario`, answering
/// denwa's 407 with `from`'s password.
pub fn caller_sipp(d: &Denwa, scenario: &str, from: u32, to: &str) -> Sipp {
    Sipp::new(scenario, &d.sip_addr(), "127.0.0.1")
        .arg("-s")
        .arg(to)
        .key("user", &from.to_string())
        // SIPp does not expand keys inside its [authentication] keyword.
        .substitute(
            "[authentication username=[user] password=[pass]]",
            &format!(
                "[authentication username={from} password={}]",
                password(from)
            ),
        )
        .arg("-mp")
        .arg(&free_port().to_string())
        .arg("-m")
        .arg("1")
}

/// SIGTERM to `child` by PID (`timeout` passes it on to what it runs),
/// SIGKILL if it is still there after `grace`; then reap it.
pub fn terminate(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    if !wait_exit(child, grace) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Wait (bounded) for a child process to exit; true when it did.
pub fn wait_exit(child: &mut Child, limit: Duration) -> bool {
    wait_until(limit, || matches!(child.try_wait(), Ok(Some(_))))
}

/// The lines of header `name` (or its compact form; "" for none) in the
/// head of a SIP message.
pub fn header<'a>(msg: &'a str, name: &str, compact: &str) -> Vec<&'a str> {
    msg.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_once(':').is_some_and(|(n, _)| {
                let n = n.trim();
                n.eq_ignore_ascii_case(name)
                    || (!compact.is_empty() && n.eq_ignore_ascii_case(compact))
            })
        })
        .collect()
}
