//! SIP transports of the real binary: REGISTER over TCP and over IPv6 (UDP
//! and TCP) with SIPp; malformed, compact and folded requests, a datagram of
//! garbage and a stream of garbage sent raw; pipelined requests on one TCP
//! connection. Whatever comes in, denwa answers what deserves an answer and
//! keeps serving.

mod common;

use common::{extensions, header, password, register_lines, wait_until, Denwa, Sipp};
use rusqlite::{Connection, OpenFlags};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
const MD5: &str = "[auth]\nalgorithms = [\"MD5\"]\n\n";
/// The largest payload of one IPv4 UDP datagram.
const MAX_DATAGRAM: usize = 65507;

/// A port free on [::1] for both UDP and TCP at the time of the call.
fn free_port_v6() -> u16 {
    for _ in 0..100 {
        let Ok(u) = UdpSocket::bind("[::1]:0") else {
            continue;
        };
        let Ok(addr) = u.local_addr() else { continue };
        if TcpListener::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no free port on [::1]");
}

/// denwa listening on IPv4 (the harness's port) and on [::1]:port as well.
/// The harness writes IPv4 listeners only: start it, stop it, add the IPv6
/// listeners to its configuration and start it again.
fn start_dual_stack(sections: &str) -> (Denwa, u16) {
    let mut d = Denwa::start(sections);
    assert!(d.stop().success());
    let v6 = free_port_v6();
    let text = std::fs::read_to_string(&d.config).expect("config");
    let mut changed = text.clone();
    for proto in ["udp", "tcp"] {
        let from = format!("{proto} = [\"127.0.0.1:{}\"]", d.sip_port);
        let to = format!("{proto} = [\"127.0.0.1:{}\", \"[::1]:{v6}\"]", d.sip_port);
        changed = changed.replace(&from, &to);
    }
    assert_eq!(
        changed.matches("[::1]").count(),
        2,
        "listeners not found in:\n{text}"
    );
    std::fs::write(&d.config, changed).expect("write config");
    d.restart();
    (d, v6)
}

/// The users' bindings as (user, transport, remote address) from the
/// database, once the store writer has committed `want` of them.
fn bindings(d: &Denwa, want: usize) -> Vec<(String, String, String)> {
    let path = d.dir.path().join("data/denwa.sqlite");
    let read = || -> Vec<(String, String, String)> {
        let Ok(db) = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
            return Vec::new();
        };
        let Ok(mut q) = db.prepare(
            "SELECT user, transport, remote_addr FROM registrations ORDER BY user, transport",
        ) else {
            return Vec::new();
        };
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map(|rows| rows.filter_map(Result::ok).collect())
            .unwrap_or_default()
    };
    wait_until(Duration::from_secs(10), || read().len() == want);
    read()
}

fn register(target: &str, ip: &str, users: std::ops::RangeInclusive<u32>, transport: &str) -> Sipp {
    let count = users.clone().count().to_string();
    Sipp::new("register.xml", target, ip)
        .users(&register_lines(users, password))
        .key("contact_port", "5999")
        .arg("-t")
        .arg(transport)
        .arg("-m")
        .arg(&count)
        .arg("-timeout")
        .arg("10s")
        .arg("-timeout_error")
}

#[test]
fn register_over_tcp() {
    let d = Denwa::start(&format!("{MD5}{}", extensions(2000, 2001)));
    let (ok, report) = register(&d.sip_addr(), "127.0.0.1", 2000..=2001, "t1").run_report(LIMIT);
    assert!(ok, "{report}");
    assert_eq!(d.wait_metric("denwa_registrations", 2.0), 2.0);
    let rows = bindings(&d, 2);
    let kinds: Vec<(&str, &str)> = rows
        .iter()
        .map(|(u, t, _)| (u.as_str(), t.as_str()))
        .collect();
    assert_eq!(kinds, vec![("2000", "tcp"), ("2001", "tcp")]);
}

#[test]
fn register_over_ipv6_udp_and_tcp() {
    let (d, v6) = start_dual_stack(&format!("{MD5}{}", extensions(2000, 2002)));
    let target = format!("[::1]:{v6}");
    // What phones configured with the server's address send: IPv6 literals
    // in the Request-URI, From, To, Via and Contact
    // (`REGISTER sip:[::1]:PORT`, `From: <sip:2000@[::1]>`).
    for (user, transport) in [(2000, "u1"), (2001, "t1")] {
        let (ok, report) = register(&target, "::1", user..=user, transport).run_report(LIMIT);
        assert!(ok, "{transport}: {report}");
    }
    // IPv4 still works beside it.
    let (ok, report) = register(&d.sip_addr(), "127.0.0.1", 2002..=2002, "u1").run_report(LIMIT);
    assert!(ok, "{report}");
    assert_eq!(d.wait_metric("denwa_registrations", 3.0), 3.0);
    let rows = bindings(&d, 3);
    let got: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|(u, t, addr)| (u.as_str(), t.as_str(), addr.starts_with("[::1]:")))
        .collect();
    assert_eq!(
        got,
        vec![
            ("2000", "udp", true),
            ("2001", "tcp", true),
            ("2002", "udp", false)
        ]
    );

    // A raw OPTIONS over IPv6 UDP: 200 with our IPv6 Via.
    let sock = UdpSocket::bind("[::1]:0").expect("bind");
    let answer = exchange(&sock, &target, options(&sock, "v6-options", 1).as_bytes());
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    let via = header(&answer, "Via", "v");
    assert!(
        via.first().is_some_and(|v| v.contains("[::1]:")),
        "{answer}"
    );
}

/// The value of the first header `name`/`compact`.
fn value<'a>(msg: &'a str, name: &str, compact: &str) -> Option<&'a str> {
    header(msg, name, compact)
        .first()
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

/// An OPTIONS from `sock`'s address.
fn options(sock: &UdpSocket, call_id: &str, cseq: u32) -> String {
    let local = sock.local_addr().expect("addr");
    sip_options("UDP", local, call_id, cseq)
}

fn sip_options(transport: &str, local: SocketAddr, call_id: &str, cseq: u32) -> String {
    format!(
        "OPTIONS sip:denwa.test SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK-{call_id}-{cseq}\r\n\
         From: <sip:probe@denwa.test>;tag=probe\r\n\
         To: <sip:denwa.test>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Send one datagram and return the first answer (bounded wait).
fn exchange(sock: &UdpSocket, to: &str, data: &[u8]) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.send_to(data, to).expect("send");
    let mut buf = vec![0u8; 65536];
    let n = sock.recv(&mut buf).expect("an answer");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Deterministic garbage of `len` bytes: any byte value but CR and LF, so
/// that nothing in it can end a header section.
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match (x >> 24) as u8 {
                b'\r' | b'\n' => b'#',
                b => b,
            }
        })
        .collect()
}

fn md5_hex(text: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(text.as_bytes()))
}

#[test]
fn malformed_compact_and_folded_requests_over_udp() {
    let d = Denwa::start(&format!("{MD5}{}", extensions(2000, 2000)));
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = sock.local_addr().expect("addr");
    let to = d.sip_addr();

    // A Content-Length larger than the body: 400, with our Via and Call-ID.
    let via = format!("Via: SIP/2.0/UDP {local};branch=z9hG4bK-short-body");
    let short = format!(
        "REGISTER sip:denwa.test SIP/2.0\r\n\
         {via}\r\n\
         From: <sip:2000@denwa.test>;tag=a1\r\n\
         To: <sip:2000@denwa.test>\r\n\
         Call-ID: short-body-1\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:2000@{local}>\r\n\
         Content-Length: 50\r\n\r\n\
         only ten b"
    );
    let answer = exchange(&sock, &to, short.as_bytes());
    assert!(
        answer.starts_with("SIP/2.0 400 Content-Length Mismatch\r\n"),
        "{answer}"
    );
    assert_eq!(header(&answer, "Via", "v"), vec![via.as_str()], "{answer}");
    assert_eq!(value(&answer, "Call-ID", "i"), Some("short-body-1"));
    assert!(
        value(&answer, "To", "t").is_some_and(|t| t.contains(";tag=")),
        "{answer}"
    );

    // Compact header names only: a valid REGISTER, so a digest challenge.
    let compact = format!(
        "REGISTER sip:denwa.test SIP/2.0\r\n\
         v: SIP/2.0/UDP {local};branch=z9hG4bK-compact\r\n\
         f: <sip:2000@denwa.test>;tag=c1\r\n\
         t: <sip:2000@denwa.test>\r\n\
         i: compact-1\r\n\
         CSeq: 1 REGISTER\r\n\
         m: <sip:2000@{local}>\r\n\
         l: 0\r\n\r\n"
    );
    let answer = exchange(&sock, &to, compact.as_bytes());
    assert!(answer.starts_with("SIP/2.0 401 "), "{answer}");
    assert_eq!(value(&answer, "Call-ID", "i"), Some("compact-1"));
    assert!(
        value(&answer, "Via", "v").is_some_and(|v| v.contains("branch=z9hG4bK-compact")),
        "{answer}"
    );
    assert!(
        value(&answer, "WWW-Authenticate", "")
            .is_some_and(|v| v.starts_with("Digest ") && v.contains("realm=\"denwa.test\"")),
        "{answer}"
    );

    // Answer the challenge, still in compact form: registered, and the
    // 200 carries the configured Server header.
    let auth = value(&answer, "WWW-Authenticate", "").unwrap_or_default();
    let nonce = auth
        .split("nonce=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no nonce in {auth}"));
    let uri = "sip:denwa.test";
    let ha1 = md5_hex(&format!("2000:denwa.test:{}", password(2000)));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    let second = compact
        .replace("z9hG4bK-compact", "z9hG4bK-compact-2")
        .replace(
            "CSeq: 1 REGISTER\r\n",
            &format!(
                "CSeq: 2 REGISTER\r\nAuthorization: Digest username=\"2000\", \
                 realm=\"denwa.test\", nonce=\"{nonce}\", uri=\"{uri}\", \
                 response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, \
                 cnonce=\"c0ffee\"\r\n"
            ),
        );
    let answer = exchange(&sock, &to, second.as_bytes());
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    assert!(
        value(&answer, "Contact", "m").is_some_and(|c| c.contains(&format!("@{local}>"))),
        "{answer}"
    );
    assert_eq!(
        value(&answer, "Server", ""),
        Some(format!("denwa/{}", env!("CARGO_PKG_VERSION")).as_str()),
        "{answer}"
    );
    assert_eq!(d.wait_metric("denwa_registrations", 1.0), 1.0);

    // Folded header lines (a continuation starts with white space).
    let folded = format!(
        "REGISTER sip:denwa.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local}\r\n\t;branch=z9hG4bK-folded\r\n\
         From:\r\n <sip:2000@denwa.test>;tag=f1\r\n\
         To: <sip:2000@denwa.test>\r\n\
         Call-ID: folded-1\r\n\
         CSeq: 1\r\n  REGISTER\r\n\
         Contact: <sip:2000@{local}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let answer = exchange(&sock, &to, folded.as_bytes());
    assert!(answer.starts_with("SIP/2.0 401 "), "{answer}");
    assert_eq!(value(&answer, "Call-ID", "i"), Some("folded-1"));
    assert!(
        value(&answer, "Via", "v").is_some_and(|v| v.contains("branch=z9hG4bK-folded")),
        "{answer}"
    );

    // The largest datagram there is, of garbage: no answer. The OPTIONS
    // sent after it on the same socket is answered first, so nothing came
    // for the garbage (one socket, one receiving task, in order).
    sock.send_to(&garbage(MAX_DATAGRAM), &to)
        .expect("send garbage");
    let answer = exchange(&sock, &to, options(&sock, "after-garbage", 1).as_bytes());
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    assert_eq!(value(&answer, "Call-ID", "i"), Some("after-garbage"));

    // Exactly two inputs were refused: the short body and the garbage.
    assert_eq!(d.metric("denwa_sip_parse_errors_total"), 2.0);
    // And a real client still registers.
    let (ok, report) = register(&d.sip_addr(), "127.0.0.1", 2000..=2000, "u1").run_report(LIMIT);
    assert!(ok, "{report}");
}

/// Read from a TCP stream until `done` holds for what was read, EOF, or
/// `limit`; returns the bytes and whether the peer closed the connection.
fn read_stream(s: &mut TcpStream, limit: Duration, done: impl Fn(&str) -> bool) -> (String, bool) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if done(&String::from_utf8_lossy(&got)) {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into_owned(), true)
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

fn connect(d: &Denwa) -> TcpStream {
    let addr: SocketAddr = d.sip_addr().parse().expect("addr");
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect")
}

#[test]
fn pipelined_requests_and_garbage_over_tcp() {
    let d = Denwa::start(&format!("{MD5}{}", extensions(2000, 2000)));

    // Two OPTIONS in one write: two 200s, in order.
    let mut s = connect(&d);
    let local = s.local_addr().expect("addr");
    let two = format!(
        "{}{}",
        sip_options("TCP", local, "pipelined", 1),
        sip_options("TCP", local, "pipelined", 2)
    );
    s.write_all(two.as_bytes()).expect("write");
    let (got, _) = read_stream(&mut s, Duration::from_secs(10), |t| {
        t.matches("\r\n\r\n").count() >= 2
    });
    let answers: Vec<&str> = got.split_terminator("\r\n\r\n").collect();
    assert_eq!(answers.len(), 2, "{got}");
    for (i, a) in answers.iter().enumerate() {
        assert!(a.starts_with("SIP/2.0 200 "), "{got}");
        assert_eq!(
            value(a, "CSeq", ""),
            Some(format!("{} OPTIONS", i + 1).as_str()),
            "{got}"
        );
        assert_eq!(value(a, "Content-Length", "l"), Some("0"), "{got}");
    }

    // 100 kB of garbage on another connection: no answer, the connection is
    // closed, and the first one still works.
    let mut bad = connect(&d);
    // The peer may close before everything is written; that is the point.
    let _ = bad.write_all(&garbage(100 * 1024));
    let (got, closed) = read_stream(&mut bad, Duration::from_secs(10), |_| false);
    assert!(got.is_empty(), "garbage was answered: {got:?}");
    assert!(closed, "the garbage connection stayed open");

    s.write_all(sip_options("TCP", local, "pipelined", 3).as_bytes())
        .expect("write");
    let (got, _) = read_stream(&mut s, Duration::from_secs(10), |t| t.contains("\r\n\r\n"));
    assert!(got.starts_with("SIP/2.0 200 "), "{got}");
    assert_eq!(value(&got, "CSeq", ""), Some("3 OPTIONS"), "{got}");
    assert_eq!(d.metric("denwa_sip_parse_errors_total"), 1.0);
}

#[test]
fn call_over_ipv6_with_media_relayed() {
    let (d, v6) = start_dual_stack(&format!("{MD5}{}", extensions(3001, 3002)));
    let target = format!("[::1]:{v6}");
    // The callee: a SIPp UAS on ::1, echoing media, registered over IPv6.
    let callee_port = free_port_v6();
    let mut callee = Sipp::uas("uas.xml", "::1", callee_port)
        .arg("-mp")
        .arg(&free_port_v6().to_string())
        .arg("-m")
        .arg("1")
        .arg("-rtp_echo")
        .spawn(LIMIT);
    let (ok, report) = register(&target, "::1", 3002..=3002, "u1")
        // (`register` already sets the key; the scenario copy wins.)
        .substitute("[contact_port]", &callee_port.to_string())
        .run_report(LIMIT);
    assert!(ok, "callee registration: {report}");
    // The caller, over IPv6 too: SDP says `c=IN IP6 ::1`.
    let (ok, report) = Sipp::new("uac_call.xml", &target, "::1")
        .arg("-s")
        .arg("3002")
        .key("user", "3001")
        .substitute(
            "[authentication username=[user] password=[pass]]",
            &format!("[authentication username=3001 password={}]", password(3001)),
        )
        .substitute("[pcap]", "/usr/share/sip-tester/g711a.pcap")
        .substitute("[hold_ms]", "2000")
        .arg("-mp")
        .arg(&free_port_v6().to_string())
        .arg("-m")
        .arg("1")
        .arg("-timeout")
        .arg("30s")
        .run_report(LIMIT);
    let callee_ok = callee.wait().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "{report}\n{}", d.log());
    assert!(callee_ok, "the IPv6 callee did not complete its call");
    assert_eq!(
        d.wait_metric("denwa_call_attempts_total{disposition=\"answered\"}", 1.0),
        1.0
    );
    assert!(d.metric("denwa_rtp_packets_caller_to_callee_total") >= 50.0);
    assert!(d.metric("denwa_rtp_packets_callee_to_caller_total") >= 50.0);
}
