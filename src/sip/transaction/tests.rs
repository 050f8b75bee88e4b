//! Deterministic simulation of the transaction layer: a UAC layer and a UAS
//! layer joined by a simulated network with a virtual clock. The clock jumps
//! to the next packet delivery or `poll_timeout` deadline; packets are
//! dropped, duplicated or delayed by an explicit script or a seeded RNG.
//!
//! Test-only: `mod.rs` declares this module under `#[cfg(test)]`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rsip::prelude::*;
use rsip::{Method, Request, Response, SipMessage};

use super::*;
use crate::sip::message::{finish, response_for};
use crate::sip::{Peer, TransportKind};

const LATENCY: Duration = Duration::from_millis(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

/// Which way a packet travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToUas,
    ToUac,
}

/// What the network does with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deliver,
    Drop,
    Duplicate,
}

/// A packet as put on the wire, for assertions.
#[derive(Debug, Clone)]
struct Sent {
    at: Duration,
    dir: Dir,
    /// `INVITE`, `ACK`… for requests; `200 INVITE`, `100 INVITE`… for responses.
    label: String,
    msg: SipMessage,
    /// The peer the sending layer addressed.
    peer: Peer,
    fate: Fate,
}

type Script = Box<dyn FnMut(Dir, &str, &mut StdRng) -> Fate>;
type AnswerPolicy = Box<dyn Fn(&Request) -> Vec<u16>>;

fn label(msg: &SipMessage) -> String {
    match msg {
        SipMessage::Request(r) => r.method.to_string(),
        SipMessage::Response(r) => {
            let method = crate::sip::message::cseq(r).map(|(_, m)| m.to_string());
            format!("{} {}", r.status_code.code(), method.unwrap_or_default())
        }
    }
}

/// Deliver everything.
fn perfect() -> Script {
    Box::new(|_, _, _| Fate::Deliver)
}

/// Drop `dir` packets labelled `what` while `drop_first` says so (counted
/// from 0), deliver everything else.
fn drop_nth(dir: Dir, what: &'static str, drops: &'static [usize]) -> Script {
    let mut seen = 0;
    Box::new(move |d, l, _| {
        if d != dir || l != what {
            return Fate::Deliver;
        }
        seen += 1;
        if drops.contains(&(seen - 1)) {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    })
}

/// Lose `loss` and duplicate `dup` of all packets, from the seeded RNG.
fn lossy(loss: f64, dup: f64) -> Script {
    Box::new(move |_, _, rng| {
        let r: f64 = rng.gen();
        if r < loss {
            Fate::Drop
        } else if r < loss + dup {
            Fate::Duplicate
        } else {
            Fate::Deliver
        }
    })
}

struct Node {
    layer: TransactionLayer,
    addr: SocketAddr,
    events: Vec<(Duration, TransactionEvent)>,
    /// Events already seen by the automatic TU.
    reacted: usize,
}

impl Node {
    fn new(addr: SocketAddr) -> Self {
        Node {
            layer: TransactionLayer::new(TimerConfig::default()),
            addr,
            events: Vec::new(),
            reacted: 0,
        }
    }
}

/// The simulation: UAC at 10.0.0.1:5060, UAS at 10.0.0.2:5060.
struct Sim {
    start: Instant,
    now: Instant,
    transport: TransportKind,
    uac: Node,
    uas: Node,
    /// The source address the UAS sees for UAC packets (a NAT if set).
    uac_public: SocketAddr,
    in_flight: BTreeMap<(Instant, u64), (Dir, Vec<u8>)>,
    seq: u64,
    wire: Vec<Sent>,
    rng: StdRng,
    script: Script,
    /// Extra random delay per packet, up to this much (reordering).
    jitter: Duration,
    /// The automatic UAS TU: the status codes to answer a new request with.
    uas_answers: Option<AnswerPolicy>,
    /// The automatic UAC TU acknowledges every 2xx to an INVITE.
    uac_acks_2xx: bool,
    /// Requests the UAC sent, by client key (to build ACKs for 2xx).
    sent_requests: HashMap<TransactionKey, Request>,
}

impl Sim {
    fn new(transport: TransportKind, script: Script) -> Self {
        let start = Instant::now();
        Sim {
            start,
            now: start,
            transport,
            uac: Node::new(addr("10.0.0.1:5060")),
            uas: Node::new(addr("10.0.0.2:5060")),
            uac_public: addr("10.0.0.1:5060"),
            in_flight: BTreeMap::new(),
            seq: 0,
            wire: Vec::new(),
            rng: StdRng::seed_from_u64(7),
            script,
            jitter: Duration::ZERO,
            uas_answers: None,
            uac_acks_2xx: true,
            sent_requests: HashMap::new(),
        }
    }

    fn udp(script: Script) -> Self {
        Sim::new(TransportKind::Udp, script)
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn to_uas(&self) -> Peer {
        Peer {
            transport: self.transport,
            remote: self.uas.addr,
            local: self.uac.addr,
        }
    }

    /// A request from the UAC with a fresh branch and `rport`.
    fn request(&mut self, method: &str, call: &str, seq: u32) -> Request {
        let branch = new_branch(&mut self.rng);
        let via = format!(
            "SIP/2.0/{} 10.0.0.1:5060;branch={branch};rport",
            self.transport.via_token()
        );
        request_text(method, &via, call, seq)
    }

    fn uac_send(&mut self, req: Request) -> TransactionKey {
        let key = self
            .uac
            .layer
            .send_request(req.clone(), self.to_uas(), self.now);
        self.sent_requests.insert(key.clone(), req);
        self.flush();
        key
    }

    /// The UAS TU answers the request of `key` with `code`.
    fn uas_respond(&mut self, key: &TransactionKey, code: u16) -> Result<(), TransactionError> {
        let req = self.uas_request(key);
        let result = self
            .uas
            .layer
            .send_response(key, answer(&req, code), self.now);
        self.flush();
        result
    }

    fn uas_request(&self, key: &TransactionKey) -> Request {
        self.uas
            .events
            .iter()
            .find_map(|(_, e)| match e {
                TransactionEvent::Request {
                    key: k, request, ..
                } if k == key => Some(request.clone()),
                _ => None,
            })
            .expect("the UAS saw this request")
    }

    fn uas_request_keys(&self) -> Vec<TransactionKey> {
        self.uas
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                TransactionEvent::Request { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect()
    }

    fn put_on_wire(&mut self, dir: Dir, t: Transmit) {
        let msg = SipMessage::try_from(t.data.as_slice()).expect("the layer emits parsable SIP");
        let label = label(&msg);
        let fate = (self.script)(dir, &label, &mut self.rng);
        let copies = match fate {
            Fate::Drop => 0,
            Fate::Deliver => 1,
            Fate::Duplicate => 2,
        };
        for copy in 0..copies {
            let jitter = if self.jitter.is_zero() {
                Duration::ZERO
            } else {
                self.rng.gen_range(Duration::ZERO..self.jitter)
            };
            let at = self.now + LATENCY + jitter + ms(5) * copy;
            self.seq += 1;
            self.in_flight.insert((at, self.seq), (dir, t.data.clone()));
        }
        let at = self.elapsed();
        self.wire.push(Sent {
            at,
            dir,
            label,
            msg,
            peer: t.peer,
            fate,
        });
    }

    /// Move every pending transmit onto the wire and every event into the
    /// logs, letting the automatic TUs react, until nothing moves.
    fn flush(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.uac.layer.poll_transmit() {
                self.put_on_wire(Dir::ToUas, t);
                moved = true;
            }
            while let Some(t) = self.uas.layer.poll_transmit() {
                self.put_on_wire(Dir::ToUac, t);
                moved = true;
            }
            let at = self.elapsed();
            while let Some(e) = self.uac.layer.poll_event() {
                self.uac.events.push((at, e));
                moved = true;
            }
            while let Some(e) = self.uas.layer.poll_event() {
                self.uas.events.push((at, e));
                moved = true;
            }
            moved |= self.react();
            if !moved {
                return;
            }
        }
    }

    /// The automatic TUs: answer new requests at the UAS, ACK 2xx at the UAC.
    fn react(&mut self) -> bool {
        let mut acted = false;
        while self.uas.reacted < self.uas.events.len() {
            let (_, event) = self.uas.events[self.uas.reacted].clone();
            self.uas.reacted += 1;
            if let (TransactionEvent::Request { key, request, .. }, Some(policy)) =
                (event, &self.uas_answers)
            {
                for code in policy(&request) {
                    let resp = answer(&request, code);
                    self.uas
                        .layer
                        .send_response(&key, resp, self.now)
                        .expect("automatic answer accepted");
                    acted = true;
                }
            }
        }
        while self.uac.reacted < self.uac.events.len() {
            let (_, event) = self.uac.events[self.uac.reacted].clone();
            self.uac.reacted += 1;
            let TransactionEvent::Response { key, response } = event else {
                continue;
            };
            if !self.uac_acks_2xx || response.status_code.code() / 100 != 2 || !key.is_invite() {
                continue;
            }
            let invite = self.sent_requests[&key].clone();
            let branch = new_branch(&mut self.rng);
            let ack = ack_for_2xx(&invite, &response, &branch, self.transport);
            let to = self.to_uas();
            self.uac.layer.send_stateless(SipMessage::Request(ack), to);
            acted = true;
        }
        acted
    }

    fn next_time(&self) -> Option<Instant> {
        let packet = self.in_flight.keys().next().map(|(at, _)| *at);
        [
            packet,
            self.uac.layer.poll_timeout(),
            self.uas.layer.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Advance to `at`: deliver due packets, then fire due timers.
    fn step_to(&mut self, at: Instant) {
        self.now = self.now.max(at);
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (dir, data) = entry.remove();
            self.deliver(dir, &data);
            self.flush();
        }
        for node in [&mut self.uac, &mut self.uas] {
            if node.layer.poll_timeout().is_some_and(|t| t <= self.now) {
                node.layer.handle_timeout(self.now);
            }
        }
        self.flush();
    }

    fn deliver(&mut self, dir: Dir, data: &[u8]) {
        let msg = SipMessage::try_from(data).expect("parsable packet");
        let (uac, uas) = (self.uac.addr, self.uas.addr);
        let (node, remote, local) = match dir {
            Dir::ToUas => (&mut self.uas, self.uac_public, uas),
            Dir::ToUac => (&mut self.uac, uas, uac),
        };
        let from = Peer {
            transport: self.transport,
            remote,
            local,
        };
        node.layer.handle_message(msg, from, self.now);
    }

    /// Run the simulation until `t` after the start (inclusive).
    fn run_until(&mut self, t: Duration) {
        let end = self.start + t;
        self.flush();
        while let Some(next) = self.next_time() {
            if next > end {
                break;
            }
            self.step_to(next);
        }
        self.now = self.now.max(end);
    }

    /// Run until nothing is left to do.
    fn run_to_quiescence(&mut self) {
        self.flush();
        while let Some(next) = self.next_time() {
            self.step_to(next);
        }
    }

    /// Send times of `dir` packets labelled `what`.
    fn times(&self, dir: Dir, what: &str) -> Vec<Duration> {
        self.wire
            .iter()
            .filter(|s| s.dir == dir && s.label == what)
            .map(|s| s.at)
            .collect()
    }

    fn count_wire(&self, dir: Dir, what: &str) -> usize {
        self.times(dir, what).len()
    }
}

fn request_text(method: &str, via: &str, call: &str, seq: u32) -> Request {
    let text = format!(
        "{method} sip:bob@10.0.0.2 SIP/2.0\r\n\
         Via: {via}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@10.0.0.1>;tag=f-{call}\r\n\
         To: <sip:bob@10.0.0.2>\r\n\
         Call-ID: {call}\r\n\
         CSeq: {seq} {method}\r\n\
         Contact: <sip:alice@10.0.0.1:5060>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Request::try_from(text.as_bytes()).expect("test request parses")
}

/// The CANCEL for `invite` (RFC 3261 §9.1): same branch, CSeq number.
fn cancel_for(invite: &Request) -> Request {
    let via = invite.via_header().expect("via").value().to_string();
    let call = crate::sip::message::call_id(&invite.headers).expect("call-id");
    let seq = crate::sip::message::cseq(invite).expect("cseq").0;
    let mut cancel = request_text("CANCEL", &via, call, seq);
    cancel.headers = invite
        .headers
        .iter()
        .map(|h| match h {
            rsip::Header::CSeq(_) => {
                rsip::Header::CSeq(rsip::headers::CSeq::new(format!("{seq} CANCEL")))
            }
            other => other.clone(),
        })
        .collect::<Vec<_>>()
        .into();
    cancel
}

/// What a TU answers: `response_for` plus Server and Content-Length.
fn answer(req: &Request, code: u16) -> Response {
    let tag = (code > 100).then_some("uas-tag");
    let mut resp = response_for(req, code, tag);
    resp.headers = finish(resp.headers, 0, "denwa-test");
    resp
}

/// The UAC TU's ACK for a 2xx: a new branch, the To of the 2xx.
fn ack_for_2xx(invite: &Request, resp: &Response, branch: &str, t: TransportKind) -> Request {
    let call = crate::sip::message::call_id(&invite.headers).expect("call-id");
    let seq = crate::sip::message::cseq(invite).expect("cseq").0;
    let via = format!(
        "SIP/2.0/{} 10.0.0.1:5060;branch={branch};rport",
        t.via_token()
    );
    let mut ack = request_text("ACK", &via, call, seq);
    let to = resp.to_header().expect("to").clone();
    *ack.to_header_mut().expect("to") = to;
    ack
}

fn responses(node: &Node, key: &TransactionKey) -> Vec<u16> {
    node.events
        .iter()
        .filter_map(|(_, e)| match e {
            TransactionEvent::Response { key: k, response } if k == key => {
                Some(response.status_code.code())
            }
            _ => None,
        })
        .collect()
}

fn count(node: &Node, pred: impl Fn(&TransactionEvent) -> bool) -> usize {
    node.events.iter().filter(|(_, e)| pred(e)).count()
}

fn is_request(e: &TransactionEvent) -> bool {
    matches!(e, TransactionEvent::Request { .. })
}

fn is_ack(e: &TransactionEvent) -> bool {
    matches!(e, TransactionEvent::Ack { .. })
}

fn is_stray(e: &TransactionEvent) -> bool {
    matches!(e, TransactionEvent::StrayResponse { .. })
}

fn invite_answers(codes: &'static [u16]) -> Option<AnswerPolicy> {
    Some(Box::new(move |req: &Request| {
        if req.method == Method::Invite {
            codes.to_vec()
        } else {
            vec![200]
        }
    }))
}

#[test]
fn invite_200_retransmitted_over_lossy_link_until_ack() {
    // The first two 200s and the first ACK are lost.
    let mut lost_200 = drop_nth(Dir::ToUac, "200 INVITE", &[0, 1]);
    let mut lost_ack = drop_nth(Dir::ToUas, "ACK", &[0]);
    let mut sim = Sim::udp(Box::new(move |d, l, r| {
        match (lost_200(d, l, r), lost_ack(d, l, r)) {
            (Fate::Drop, _) | (_, Fate::Drop) => Fate::Drop,
            _ => Fate::Deliver,
        }
    }));
    sim.uas_answers = invite_answers(&[180, 200]);
    let invite = sim.request("INVITE", "call-1", 1);
    let key = sim.uac_send(invite);
    sim.run_to_quiescence();

    // The UAS got the INVITE at 10 ms and answered at once; 200 sent at
    // 10 ms, then Timer G at +0.5, +1.5 (delivered), and again at +3.5
    // because the first ACK was lost; the second ACK stops it.
    let t0 = ms(10);
    assert_eq!(
        sim.times(Dir::ToUac, "200 INVITE"),
        vec![t0, t0 + ms(500), t0 + ms(1500), t0 + ms(3500)]
    );
    assert_eq!(sim.count_wire(Dir::ToUac, "100 INVITE"), 1);
    assert_eq!(
        sim.count_wire(Dir::ToUas, "INVITE"),
        1,
        "100 stopped Timer A"
    );
    assert_eq!(sim.count_wire(Dir::ToUas, "ACK"), 2);
    assert_eq!(count(&sim.uas, is_request), 1);
    assert_eq!(count(&sim.uas, is_ack), 1);
    // 100, 180, the 200 and its retransmission (for the TU to re-ACK).
    assert_eq!(responses(&sim.uac, &key), vec![100, 180, 200, 200]);
    assert_eq!(count(&sim.uac, is_stray), 0);
    assert!(sim.uac.layer.is_empty() && sim.uas.layer.is_empty());
}

#[test]
fn invite_486_acked_by_client_layer_and_absorbed() {
    // The first 486 and the first ACK are lost.
    let mut lost_486 = drop_nth(Dir::ToUac, "486 INVITE", &[0]);
    let mut lost_ack = drop_nth(Dir::ToUas, "ACK", &[0]);
    let mut sim = Sim::udp(Box::new(move |d, l, r| {
        match (lost_486(d, l, r), lost_ack(d, l, r)) {
            (Fate::Drop, _) | (_, Fate::Drop) => Fate::Drop,
            _ => Fate::Deliver,
        }
    }));
    sim.uas_answers = invite_answers(&[486]);
    let invite = sim.request("INVITE", "call-486", 1);
    let branch = invite.via_header().expect("via").value().to_string();
    let key = sim.uac_send(invite);
    sim.run_until(ms(20_000));

    let t0 = ms(10);
    // Timer G: 486 at t0, t0+0.5 (arrives, ACK lost), t0+1.5 (ACK arrives).
    assert_eq!(
        sim.times(Dir::ToUac, "486 INVITE"),
        vec![t0, t0 + ms(500), t0 + ms(1500)]
    );
    let acks: Vec<&Sent> = sim.wire.iter().filter(|s| s.label == "ACK").collect();
    assert_eq!(acks.len(), 2, "one ACK per received 486");
    for ack in acks {
        let SipMessage::Request(req) = &ack.msg else {
            panic!("ACK is a request")
        };
        assert_eq!(
            req.via_header().expect("via").value(),
            branch,
            "same Via as the INVITE"
        );
        assert_eq!(
            tag_of(req.to_header().expect("to").value()),
            Some("uas-tag")
        );
        assert_eq!(crate::sip::message::cseq(req), Some((1, Method::Ack)));
    }
    assert_eq!(
        responses(&sim.uac, &key),
        vec![100, 486],
        "the 486 passed up once"
    );
    assert_eq!(count(&sim.uas, is_ack), 0, "ACK for a non-2xx is absorbed");
    // UAS: Timer I (T4 = 5 s) after the ACK; UAC: Timer D (32 s).
    assert!(sim.uas.layer.is_empty());
    assert_eq!(sim.uac.layer.len(), 1);
    sim.run_until(ms(40_000));
    assert!(sim.uac.layer.is_empty());
    assert_eq!(sim.uac.layer.poll_timeout(), None);
}

#[test]
fn lost_invite_retransmitted_by_timer_a_with_doubling_intervals() {
    let mut sim = Sim::udp(drop_nth(Dir::ToUas, "INVITE", &[0, 1, 2]));
    let invite = sim.request("INVITE", "call-a", 1);
    let key = sim.uac_send(invite);
    sim.run_until(ms(60_000));
    assert_eq!(
        sim.times(Dir::ToUas, "INVITE"),
        vec![ms(0), ms(500), ms(1500), ms(3500)]
    );
    assert_eq!(count(&sim.uas, is_request), 1);
    assert_eq!(responses(&sim.uac, &key), vec![100]);
    // Proceeding: no Timer B; only Timer C remains.
    assert_eq!(
        sim.uac.layer.poll_timeout(),
        Some(sim.start + ms(3520) + timers::TIMER_C)
    );
}

#[test]
fn timer_b_times_out_after_64_t1() {
    let mut sim = Sim::udp(Box::new(|_, _, _| Fate::Drop));
    let invite = sim.request("INVITE", "call-b", 1);
    let key = sim.uac_send(invite);
    sim.run_to_quiescence();
    let expected: Vec<Duration> = [0, 500, 1500, 3500, 7500, 15500, 31500]
        .into_iter()
        .map(ms)
        .collect();
    assert_eq!(sim.times(Dir::ToUas, "INVITE"), expected);
    assert_eq!(
        sim.uac.events,
        vec![(ms(32_000), TransactionEvent::Timeout { key })]
    );
    assert!(sim.uac.layer.is_empty());
}

#[test]
fn non_invite_timer_e_capped_at_t2_then_timer_f() {
    let mut sim = Sim::udp(Box::new(|_, _, _| Fate::Drop));
    let options = sim.request("OPTIONS", "call-e", 1);
    let key = sim.uac_send(options);
    sim.run_to_quiescence();
    let expected: Vec<Duration> = [
        0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
    ]
    .into_iter()
    .map(ms)
    .collect();
    assert_eq!(sim.times(Dir::ToUas, "OPTIONS"), expected);
    assert_eq!(
        sim.uac.events,
        vec![(ms(32_000), TransactionEvent::Timeout { key })]
    );
    assert!(sim.uac.layer.is_empty());
}

#[test]
fn non_invite_proceeding_retransmits_every_t2() {
    let mut sim = Sim::udp(perfect());
    sim.uas_answers = Some(Box::new(|_| vec![100]));
    let options = sim.request("OPTIONS", "call-p", 1);
    let key = sim.uac_send(options);
    sim.run_to_quiescence();
    let expected: Vec<Duration> = [0, 500, 4500, 8500, 12500, 16500, 20500, 24500, 28500]
        .into_iter()
        .map(ms)
        .collect();
    assert_eq!(sim.times(Dir::ToUas, "OPTIONS"), expected);
    // Each retransmission is re-answered with the 100, never re-delivered.
    assert_eq!(sim.count_wire(Dir::ToUac, "100 OPTIONS"), expected.len());
    assert_eq!(count(&sim.uas, is_request), 1);
    let last = sim.uac.events.last().cloned();
    assert_eq!(last, Some((ms(32_000), TransactionEvent::Timeout { key })));
    // The UAS's guard dropped the unanswered transaction too.
    assert!(sim.uas.layer.is_empty() && sim.uac.layer.is_empty());
}

#[test]
fn duplicated_requests_never_produce_two_request_events() {
    let mut sim = Sim::udp(Box::new(|_, _, _| Fate::Duplicate));
    sim.uas_answers = invite_answers(&[180, 200]);
    let invite = sim.request("INVITE", "call-d1", 1);
    let ik = sim.uac_send(invite);
    let options = sim.request("OPTIONS", "call-d2", 1);
    let ok = sim.uac_send(options);
    sim.run_to_quiescence();
    assert_eq!(count(&sim.uas, is_request), 2);
    assert_eq!(count(&sim.uas, is_ack), 1, "duplicated ACK absorbed");
    assert_eq!(
        responses(&sim.uac, &ok),
        vec![200],
        "duplicated 200 absorbed"
    );
    let invite_finals: Vec<u16> = responses(&sim.uac, &ik)
        .into_iter()
        .filter(|c| *c >= 200)
        .collect();
    // Duplicated 2xx are passed up while Accepted, so the TU re-ACKs.
    assert_eq!(invite_finals, vec![200, 200]);
    assert!(sim.uac.layer.is_empty() && sim.uas.layer.is_empty());
}

#[test]
fn retransmitted_final_responses_absorbed() {
    // The first 200 to OPTIONS is lost: Timer E retransmits the request and
    // the UAS re-answers from Completed without bothering its TU.
    let mut sim = Sim::udp(drop_nth(Dir::ToUac, "200 OPTIONS", &[0]));
    sim.uas_answers = invite_answers(&[]);
    let options = sim.request("OPTIONS", "call-r", 1);
    let key = sim.uac_send(options);
    sim.run_until(ms(2_000));
    assert_eq!(sim.times(Dir::ToUas, "OPTIONS"), vec![ms(0), ms(500)]);
    assert_eq!(sim.times(Dir::ToUac, "200 OPTIONS"), vec![ms(10), ms(510)]);
    assert_eq!(count(&sim.uas, is_request), 1);
    assert_eq!(responses(&sim.uac, &key), vec![200]);

    // A late copy of the final is absorbed by Completed (Timer K).
    let late = sim
        .wire
        .iter()
        .find(|s| s.label == "200 OPTIONS")
        .map(|s| s.msg.clone())
        .expect("a 200 was sent");
    let from = Peer {
        transport: TransportKind::Udp,
        remote: sim.uas.addr,
        local: sim.uac.addr,
    };
    sim.uac.layer.handle_message(late.clone(), from, sim.now);
    sim.flush();
    assert_eq!(responses(&sim.uac, &key), vec![200]);
    assert_eq!(count(&sim.uac, is_stray), 0);
    // After Timer K the same response is stray.
    sim.run_until(ms(10_000));
    sim.uac.layer.handle_message(late, from, sim.now);
    sim.flush();
    assert_eq!(count(&sim.uac, is_stray), 1);
}

#[test]
fn cancel_is_matched_to_its_invite() {
    let mut sim = Sim::udp(perfect());
    sim.uas_answers = Some(Box::new(|req: &Request| match req.method {
        Method::Invite => vec![180],
        _ => vec![],
    }));
    let invite = sim.request("INVITE", "call-c", 1);
    let ik = sim.uac_send(invite.clone());
    sim.run_until(ms(1_000));
    let ck = sim.uac_send(cancel_for(&invite));
    sim.run_until(ms(1_100));

    let (invite_key, cancel_key, cancels) = {
        let mut it = sim.uas.events.iter().filter_map(|(_, e)| match e {
            TransactionEvent::Request { key, cancels, .. } => Some((key.clone(), cancels.clone())),
            _ => None,
        });
        let (ik, _) = it.next().expect("INVITE");
        let (ck, cancels) = it.next().expect("CANCEL");
        (ik, ck, cancels)
    };
    assert_eq!(cancel_key.method(), "CANCEL");
    assert_eq!(cancels, Some(invite_key.clone()));
    assert_eq!(cancel_key.branch(), invite_key.branch());

    sim.uas_respond(&cancel_key, 200).expect("200 to CANCEL");
    sim.uas_respond(&invite_key, 487).expect("487 to INVITE");
    sim.run_to_quiescence();
    assert_eq!(responses(&sim.uac, &ck), vec![200]);
    assert_eq!(responses(&sim.uac, &ik), vec![100, 180, 487]);
    assert_eq!(
        sim.count_wire(Dir::ToUas, "ACK"),
        1,
        "the layer ACKed the 487"
    );
    assert_eq!(count(&sim.uas, is_ack), 0);
    assert_eq!(
        sim.uas_respond(&invite_key, 200),
        Err(TransactionError::UnknownTransaction)
    );
    assert!(sim.uac.layer.is_empty() && sim.uas.layer.is_empty());
}

#[test]
fn cancel_without_invite_has_no_match() {
    let mut sim = Sim::udp(perfect());
    let invite = sim.request("INVITE", "call-nc", 1);
    sim.uac_send(cancel_for(&invite));
    sim.run_until(ms(100));
    let cancels = sim.uas.events.iter().find_map(|(_, e)| match e {
        TransactionEvent::Request { cancels, .. } => Some(cancels.clone()),
        _ => None,
    });
    assert_eq!(cancels, Some(None));
}

#[test]
fn tcp_has_no_retransmissions_and_no_wait_states() {
    let mut sim = Sim::new(TransportKind::Tcp, perfect());
    sim.uas_answers = invite_answers(&[486]);
    let invite = sim.request("INVITE", "call-t1", 1);
    let ik = sim.uac_send(invite);
    sim.run_until(ms(100));
    assert_eq!(responses(&sim.uac, &ik), vec![100, 486]);
    assert_eq!(sim.count_wire(Dir::ToUac, "486 INVITE"), 1, "no Timer G");
    assert_eq!(sim.count_wire(Dir::ToUas, "ACK"), 1);
    assert!(sim.uac.layer.is_empty(), "Timer D is zero");
    assert!(sim.uas.layer.is_empty(), "Timer I is zero");

    let options = sim.request("OPTIONS", "call-t2", 1);
    let ok = sim.uac_send(options);
    sim.run_until(ms(200));
    assert_eq!(responses(&sim.uac, &ok), vec![200]);
    assert!(sim.uac.layer.is_empty(), "Timer K is zero");
    assert!(sim.uas.layer.is_empty(), "Timer J is zero");

    // An unanswered request is sent once and still times out (Timer F).
    let mut silent = Sim::new(TransportKind::Tcp, Box::new(|_, _, _| Fate::Drop));
    let options = silent.request("OPTIONS", "call-t3", 1);
    let key = silent.uac_send(options);
    silent.run_to_quiescence();
    assert_eq!(silent.times(Dir::ToUas, "OPTIONS"), vec![ms(0)]);
    assert_eq!(
        silent.uac.events,
        vec![(ms(32_000), TransactionEvent::Timeout { key })]
    );
}

#[test]
fn tcp_2xx_is_still_retransmitted_until_acked() {
    // RFC 3261 §13.3.1.4: the UAS core retransmits its 2xx on any transport.
    let mut sim = Sim::new(TransportKind::Tcp, perfect());
    sim.uac_acks_2xx = false;
    sim.uas_answers = invite_answers(&[200]);
    let invite = sim.request("INVITE", "call-t4", 1);
    sim.uac_send(invite);
    sim.run_until(ms(1_000));
    assert_eq!(sim.times(Dir::ToUac, "200 INVITE"), vec![ms(10), ms(510)]);
}

#[test]
fn ack_timeout_when_2xx_never_acked() {
    let mut sim = Sim::udp(perfect());
    sim.uac_acks_2xx = false;
    sim.uas_answers = invite_answers(&[200]);
    let invite = sim.request("INVITE", "call-l", 1);
    sim.uac_send(invite);
    sim.run_to_quiescence();
    let t0 = ms(10);
    let expected: Vec<Duration> = [
        0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500,
    ]
    .into_iter()
    .map(|d| t0 + ms(d))
    .collect();
    assert_eq!(sim.times(Dir::ToUac, "200 INVITE"), expected);
    let key = sim.uas_request_keys().pop().expect("INVITE key");
    assert_eq!(
        sim.uas.events.last().cloned(),
        Some((t0 + ms(32_000), TransactionEvent::AckTimeout { key }))
    );
    assert!(sim.uas.layer.is_empty() && sim.uac.layer.is_empty());
}

#[test]
fn rport_and_received_are_stamped_and_responses_go_to_the_source() {
    let mut sim = Sim::udp(perfect());
    sim.uac_public = addr("203.0.113.5:40000");
    let invite = sim.request("INVITE", "call-nat", 1);
    sim.uac_send(invite);
    sim.run_until(ms(100));
    let key = sim.uas_request_keys().pop().expect("INVITE");
    let via = sim
        .uas_request(&key)
        .via_header()
        .expect("via")
        .value()
        .to_string();
    assert!(via.contains(";rport=40000"), "{via}");
    assert!(via.contains(";received=203.0.113.5"), "{via}");
    assert!(
        via.starts_with("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK"),
        "{via}"
    );

    sim.uas_respond(&key, 486).expect("486");
    for sent in sim.wire.iter().filter(|s| s.dir == Dir::ToUac) {
        assert_eq!(
            sent.peer.remote,
            addr("203.0.113.5:40000"),
            "{}",
            sent.label
        );
        let SipMessage::Response(resp) = &sent.msg else {
            panic!("UAS sends responses only")
        };
        assert_eq!(
            resp.via_header().expect("via").value(),
            via,
            "{}",
            sent.label
        );
    }
    assert_eq!(sim.count_wire(Dir::ToUac, "100 INVITE"), 1);
    assert_eq!(sim.count_wire(Dir::ToUac, "486 INVITE"), 1);
}

#[test]
fn received_rules_without_rport() {
    let source = addr("192.0.2.7:5070");
    // Sent-by differs from the source: received only.
    assert_eq!(
        stamped_via("SIP/2.0/UDP pbx.example.com;branch=z9hG4bKx", source).as_deref(),
        Some("SIP/2.0/UDP pbx.example.com;branch=z9hG4bKx;received=192.0.2.7")
    );
    // Same host, no rport: untouched.
    assert_eq!(
        stamped_via("SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKx", source),
        None
    );
    // An existing received is replaced, later via-parms kept.
    assert_eq!(
        stamped_via(
            "SIP/2.0/UDP 10.1.1.1:4540;received=6.6.6.6;rport;branch=z9hG4bKy, SIP/2.0/UDP p;branch=z9hG4bKz",
            source
        )
        .as_deref(),
        Some("SIP/2.0/UDP 10.1.1.1:4540;received=192.0.2.7;rport=5070;branch=z9hG4bKy, SIP/2.0/UDP p;branch=z9hG4bKz")
    );
    // IPv6 sent-by equal to an IPv4-mapped source.
    let mapped = addr("[::ffff:192.0.2.7]:5060");
    assert_eq!(
        stamped_via("SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKx", mapped),
        None
    );
    assert_eq!(
        stamped_via("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx", source).as_deref(),
        Some("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx;received=192.0.2.7")
    );
    assert_eq!(stamped_via("garbage", source), None);
}

#[test]
fn server_keys_follow_rfc3261_17_2_3() {
    let invite = request_text(
        "INVITE",
        "SIP/2.0/UDP Host.Example:5060;branch=z9hG4bK1",
        "k",
        1,
    );
    let ack = request_text(
        "ACK",
        "SIP/2.0/UDP host.example:5060;branch=z9hG4bK1",
        "k",
        1,
    );
    let cancel = request_text(
        "CANCEL",
        "SIP/2.0/UDP host.example:5060;branch=z9hG4bK1",
        "k",
        1,
    );
    let other_host = request_text(
        "INVITE",
        "SIP/2.0/UDP elsewhere:5060;branch=z9hG4bK1",
        "k",
        1,
    );
    let ik = server_key(&invite).expect("key");
    assert!(ik.is_server() && ik.method() == "INVITE" && ik.branch() == "z9hG4bK1");
    assert_eq!(server_key(&ack), Some(ik.clone()), "ACK maps onto INVITE");
    let ck = server_key(&cancel).expect("key");
    assert_ne!(ck, ik);
    assert_eq!(ck.with_method(Method::Invite), ik);
    assert_ne!(
        server_key(&other_host),
        Some(ik.clone()),
        "sent-by is part of the key"
    );
    let no_via = Request {
        headers: Default::default(),
        ..invite
    };
    assert_eq!(server_key(&no_via), None);
}

#[test]
fn rfc2543_requests_match_without_magic_cookie() {
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let now = Instant::now();
    let peer = Peer {
        transport: TransportKind::Udp,
        remote: addr("10.0.0.9:5060"),
        local: addr("10.0.0.2:5060"),
    };
    let via = "SIP/2.0/UDP 10.0.0.9:5060;branch=old-style-1";
    let invite = request_text("INVITE", via, "legacy", 3);
    layer.handle_message(SipMessage::Request(invite.clone()), peer, now);
    layer.handle_message(SipMessage::Request(invite), peer, now + ms(500));
    let key = match layer.poll_event() {
        Some(TransactionEvent::Request { key, .. }) => key,
        other => panic!("expected a request, got {other:?}"),
    };
    assert_eq!(layer.poll_event(), None, "retransmission absorbed");
    assert!(key.branch().starts_with("rfc2543|legacy|3|"));
    let req = request_text("INVITE", via, "legacy", 3);
    layer
        .send_response(&key, answer(&req, 404), now + ms(600))
        .expect("404");
    let ack = request_text("ACK", via, "legacy", 3);
    layer.handle_message(SipMessage::Request(ack), peer, now + ms(700));
    assert_eq!(layer.poll_event(), None, "ACK for the 404 absorbed");
    layer.handle_timeout(now + ms(700) + TimerConfig::default().t4);
    assert!(layer.is_empty());
}

#[test]
fn unmatched_ack_and_stray_response_are_reported() {
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let now = Instant::now();
    let peer = Peer {
        transport: TransportKind::Udp,
        remote: addr("10.0.0.9:5060"),
        local: addr("10.0.0.2:5060"),
    };
    let ack = request_text("ACK", "SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKa", "x", 1);
    layer.handle_message(SipMessage::Request(ack.clone()), peer, now);
    assert_eq!(
        layer.poll_event(),
        Some(TransactionEvent::Ack {
            request: ack,
            from: peer
        })
    );
    let resp = answer(
        &request_text("OPTIONS", "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKnope", "x", 2),
        200,
    );
    layer.handle_message(SipMessage::Response(resp.clone()), peer, now);
    assert_eq!(
        layer.poll_event(),
        Some(TransactionEvent::StrayResponse {
            response: resp,
            from: peer
        })
    );
    assert!(layer.is_empty());
    assert_eq!(layer.poll_transmit(), None);
}

#[test]
fn send_response_errors() {
    let mut sim = Sim::udp(perfect());
    let options = sim.request("OPTIONS", "call-err", 1);
    let ck = sim.uac_send(options);
    sim.run_until(ms(100));
    let key = sim.uas_request_keys().pop().expect("OPTIONS");
    assert_eq!(
        sim.uas
            .layer
            .send_response(&ck, answer(&sim.uas_request(&key), 200), sim.now),
        Err(TransactionError::UnknownTransaction),
        "a client key is not a server transaction"
    );
    let mut bad = answer(&sim.uas_request(&key), 200);
    bad.status_code = rsip::StatusCode::from(700);
    assert_eq!(
        sim.uas.layer.send_response(&key, bad, sim.now),
        Err(TransactionError::InvalidStatus(700))
    );
    assert_eq!(sim.uas_respond(&key, 200), Ok(()));
    assert_eq!(
        sim.uas_respond(&key, 500),
        Err(TransactionError::FinalAlreadySent)
    );
    assert_eq!(
        sim.uas_respond(&key, 180),
        Err(TransactionError::FinalAlreadySent)
    );
    assert_eq!(sim.count_wire(Dir::ToUac, "200 OPTIONS"), 1);
}

#[test]
fn invite_stuck_in_proceeding_times_out_with_timer_c() {
    let mut sim = Sim::udp(perfect());
    sim.uas_answers = invite_answers(&[180]);
    let invite = sim.request("INVITE", "call-tc", 1);
    let key = sim.uac_send(invite);
    sim.run_to_quiescence();
    let timeout_at = ms(20) + timers::TIMER_C;
    let timeouts: Vec<Duration> = sim
        .uac
        .events
        .iter()
        .filter(|(_, e)| matches!(e, TransactionEvent::Timeout { key: k } if *k == key))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(timeouts, vec![timeout_at], "reported once");
    assert!(sim.uac.layer.is_empty());
    assert_eq!(
        sim.elapsed(),
        timeout_at + ms(32_000),
        "then 64*T1 of grace"
    );
}

#[test]
fn randomized_200_transactions_on_a_lossy_link_deliver_exactly_once() {
    let mut sim = Sim::udp(lossy(0.20, 0.10));
    sim.rng = StdRng::seed_from_u64(0x5eed_2024);
    sim.jitter = ms(30);
    sim.uas_answers = Some(Box::new(|req: &Request| {
        let call = crate::sip::message::call_id(&req.headers).unwrap_or_default();
        let n: usize = call.trim_start_matches("rnd-").parse().unwrap_or_default();
        match (&req.method, n % 5) {
            (Method::Invite, 0) => vec![486],
            (Method::Invite, _) => vec![180, 200],
            _ => vec![200],
        }
    }));
    let mut keys = Vec::new();
    for n in 0..200usize {
        sim.run_until(ms(20) * n as u32);
        let method = if n % 3 == 0 { "OPTIONS" } else { "INVITE" };
        let req = sim.request(method, &format!("rnd-{n}"), 1);
        keys.push((n, sim.uac_send(req)));
    }
    sim.run_to_quiescence();

    let drops = sim.wire.iter().filter(|s| s.fate == Fate::Drop).count();
    let dups = sim
        .wire
        .iter()
        .filter(|s| s.fate == Fate::Duplicate)
        .count();
    assert!(
        drops > 100 && dups > 50,
        "the link was lossy: {drops} drops, {dups} dups"
    );

    let mut requests_per_call: HashMap<String, usize> = HashMap::new();
    let mut acks_per_call: HashMap<String, usize> = HashMap::new();
    for (_, e) in &sim.uas.events {
        let (req, map) = match e {
            TransactionEvent::Request { request, .. } => (request, &mut requests_per_call),
            TransactionEvent::Ack { request, .. } => (request, &mut acks_per_call),
            other => panic!("unexpected UAS event {other:?}"),
        };
        let call = crate::sip::message::call_id(&req.headers).expect("call-id");
        *map.entry(call.to_string()).or_default() += 1;
    }
    for (n, key) in &keys {
        let call = format!("rnd-{n}");
        assert_eq!(
            requests_per_call.get(&call),
            Some(&1),
            "{call}: one Request"
        );
        let finals: Vec<u16> = responses(&sim.uac, key)
            .into_iter()
            .filter(|c| *c >= 200)
            .collect();
        let invite = key.is_invite();
        match (invite, n % 5) {
            (true, 0) => {
                assert_eq!(finals, vec![486], "{call}");
                assert_eq!(
                    acks_per_call.get(&call),
                    None,
                    "{call}: non-2xx ACK absorbed"
                );
            }
            (true, _) => {
                assert!(
                    !finals.is_empty() && finals.iter().all(|c| *c == 200),
                    "{call}"
                );
                assert_eq!(acks_per_call.get(&call), Some(&1), "{call}: one Ack");
            }
            (false, _) => assert_eq!(finals, vec![200], "{call}"),
        }
    }
    let unexpected: Vec<&TransactionEvent> = sim
        .uac
        .events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| !matches!(e, TransactionEvent::Response { .. }))
        .collect();
    assert!(
        unexpected.is_empty(),
        "no timeouts or strays: {unexpected:?}"
    );
    assert!(sim.uac.layer.is_empty() && sim.uas.layer.is_empty());
}

#[test]
fn poll_timeout_is_the_earliest_deadline_and_time_is_never_read() {
    let mut layer = TransactionLayer::new(TimerConfig::default());
    assert_eq!(layer.poll_timeout(), None);
    let t0 = Instant::now() + Duration::from_secs(1000);
    let peer = Peer {
        transport: TransportKind::Udp,
        remote: addr("10.0.0.2:5060"),
        local: addr("10.0.0.1:5060"),
    };
    let req = request_text("OPTIONS", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKq", "q", 1);
    layer.send_request(req, peer, t0);
    assert_eq!(layer.poll_timeout(), Some(t0 + ms(500)));
    assert!(layer.poll_transmit().is_some());
    // Firing early does nothing; at the deadline it retransmits.
    layer.handle_timeout(t0 + ms(499));
    assert_eq!(layer.poll_transmit(), None);
    layer.handle_timeout(t0 + ms(500));
    assert!(layer.poll_transmit().is_some());
    assert_eq!(layer.poll_timeout(), Some(t0 + ms(1500)));
}

#[test]
fn new_branch_has_magic_cookie_and_is_seeded() {
    let a = new_branch(&mut StdRng::seed_from_u64(1));
    let b = new_branch(&mut StdRng::seed_from_u64(1));
    let c = new_branch(&mut StdRng::seed_from_u64(2));
    assert!(a.starts_with(MAGIC_COOKIE));
    assert_eq!(a.len(), MAGIC_COOKIE.len() + 20);
    assert!(a.chars().all(|ch| ch.is_ascii_alphanumeric()));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn completed_non_invite_keeps_only_its_response_and_guards_are_per_transaction() {
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let t0 = Instant::now();
    let udp = Peer {
        transport: TransportKind::Udp,
        remote: addr("10.0.0.9:5060"),
        local: addr("10.0.0.2:5060"),
    };
    let via = "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKdone";
    let req = request_text("OPTIONS", via, "done", 1);
    layer.handle_message(SipMessage::Request(req.clone()), udp, t0);
    let Some(TransactionEvent::Request { key, .. }) = layer.poll_event() else {
        panic!("expected the request");
    };
    layer
        .send_response(&key, answer(&req, 200), t0)
        .expect("200");
    let sent = layer.poll_transmit().expect("the 200").data;
    // A retransmission from another port gets the same bytes, sent there.
    let moved = Peer {
        remote: addr("10.0.0.9:5070"),
        ..udp
    };
    layer.handle_message(SipMessage::Request(req.clone()), moved, t0 + ms(500));
    assert_eq!(
        layer.poll_transmit(),
        Some(Transmit {
            peer: moved,
            data: sent
        })
    );
    assert_eq!(layer.poll_event(), None);
    assert_eq!(layer.len(), 1);
    layer.handle_timeout(t0 + ms(32_000));
    assert!(layer.is_empty(), "Timer J");

    // Over TCP nothing lingers; the same key again is a new transaction,
    // and the guard queued for the first one does not drop it.
    let tcp = Peer {
        transport: TransportKind::Tcp,
        ..udp
    };
    let t1 = t0 + ms(40_000);
    layer.handle_message(SipMessage::Request(req.clone()), tcp, t1);
    let Some(TransactionEvent::Request { key, .. }) = layer.poll_event() else {
        panic!("expected the request");
    };
    layer
        .send_response(&key, answer(&req, 200), t1)
        .expect("200");
    assert!(layer.is_empty());
    layer.handle_message(SipMessage::Request(req), tcp, t1 + ms(1000));
    assert!(matches!(
        layer.poll_event(),
        Some(TransactionEvent::Request { .. })
    ));
    layer.handle_timeout(t1 + ms(32_000));
    assert_eq!(layer.len(), 1, "its own guard is not due yet");
    layer.handle_timeout(t1 + ms(33_000));
    assert!(layer.is_empty(), "unanswered: dropped by its guard");
    assert_eq!(layer.poll_timeout(), None);
}

#[test]
fn top_via_params_read_as_a_plain_split_would() {
    let reference = |params: &str, name: &str| -> Option<String> {
        params.split(';').find_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    for value in [
        "SIP/2.0/UDP h;branch=z9hG4bK1;rport",
        "SIP/2.0/UDP h ; Branch = z9 ;rport=;received=1.2.3.4;;",
        "SIP/2.0/UDP h;a=b=c;rport",
        "SIP/2.0/UDP h",
        "SIP/2.0/UDP h;",
        "SIP/2.0/UDP h;branch=x, SIP/2.0/UDP k;rport",
    ] {
        let via = TopVia::parse(value).expect("a usable Via");
        for name in ["branch", "rport", "received", "a", "x", ""] {
            assert_eq!(
                via.param(name).map(str::to_owned),
                reference(via.params, name),
                "{value} {name}"
            );
        }
    }
    assert_eq!(TopVia::parse("HTTP/1.1 h"), None);
    assert_eq!(TopVia::parse("SIP/2.0/UDP"), None);
}
