//! The sans-IO SIP transaction layer (RFC 3261 §17, with the RFC 6026
//! "Accepted" states for INVITE).
//!
//! The layer owns every client and server transaction: it matches incoming
//! messages to them (§17.1.3, §17.2.3), absorbs retransmissions, runs the
//! retransmission and wait timers, generates `100 Trying` and the ACK for a
//! non-2xx final response, retransmits a server's 2xx until its ACK arrives,
//! and stamps `received`/`rport` (RFC 3581) on the top Via of new requests.
//!
//! It must not touch a socket or read the clock: messages come in through
//! `handle_message`, time through `now` arguments and `handle_timeout`, and
//! everything it wants done comes out of `poll_transmit` / `poll_event`, with
//! `poll_timeout` telling the caller when to call `handle_timeout` next. It
//! keeps no dialog state: ACKs for 2xx and their retransmissions are the TU's
//! business (sent with [`TransactionLayer::send_stateless`]).
//!
//! Memory stays bounded because every transaction ends on a timer, with one
//! exception the TU must honour: an INVITE server transaction lives until
//! the TU sends its final response (a non-INVITE one is dropped 64·T1 after
//! arrival if the TU never answers). A completed non-INVITE server
//! transaction, the bulk of what a registrar under load holds, is kept as
//! its key and response bytes alone (`completed.rs`).
//!
//! Responses are sent to the peer the request came from (for UDP its source
//! address and port), whether or not the top Via asked for `rport`: this
//! always satisfies RFC 3581 and is what a NATed phone needs.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsip::prelude::*;
use rsip::{Header, Headers, Method, Request, Response, SipMessage};

use super::head::split_at_byte;
use super::message::{call_id, cseq, push_decimal, tag_of, to_bytes};
use super::{Peer, Transmit};

mod client;
mod completed;
mod key;
mod server;
mod shards;
#[cfg(test)]
mod tests;
mod timers;

use client::ClientTransaction;
use completed::Completed;
pub use key::TransactionKey;
use key::{KeyHash, Side};
use server::{AckMatch, ServerTransaction};
use shards::ShardedMap;
use timers::{deadline, TimerSlot, Timers};

/// The branch prefix of RFC 3261-compliant clients (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// The transaction timer base values (RFC 3261 §17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; 500 ms by default.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE
    /// responses; 4 s by default.
    pub t2: Duration,
    /// Maximum duration a message remains in the network; 5 s by default.
    pub t4: Duration,
}

/// What the layer reports to the transaction user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionEvent {
    /// A new request (never a retransmission). For CANCEL, `cancels` holds
    /// the key of the INVITE server transaction it matches, in whatever state
    /// that transaction is.
    Request {
        key: TransactionKey,
        request: Request,
        from: Peer,
        cancels: Option<TransactionKey>,
    },
    /// An ACK for a 2xx (matched to the accepted INVITE server transaction by
    /// Call-ID, CSeq number and From tag), or an ACK matching nothing.
    /// Retransmitted ACKs of an accepted transaction are absorbed.
    Ack { request: Request, from: Peer },
    /// A response for a client transaction: provisionals, the final, and
    /// 2xx retransmissions while an INVITE is Accepted (the TU re-sends its
    /// ACK for each).
    Response {
        key: TransactionKey,
        response: Response,
    },
    /// Timer B or F fired: the request got no final response. Also raised
    /// once when an INVITE stays in Proceeding past Timer C; that
    /// transaction lives on for 64·T1 so the final response to the TU's
    /// CANCEL is still acknowledged and reported.
    Timeout { key: TransactionKey },
    /// A server INVITE transaction sent a 2xx and got no ACK within 64·T1:
    /// the TU should tear the dialog down with BYE.
    AckTimeout { key: TransactionKey },
    /// A response matching no client transaction.
    StrayResponse { response: Response, from: Peer },
}

/// Why the TU's call into the layer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// The key names no live server transaction (it terminated, or it is a
    /// client key).
    #[error("no live server transaction for this key")]
    UnknownTransaction,
    /// The transaction already sent its final response.
    #[error("the transaction already sent a final response")]
    FinalAlreadySent,
    /// Only 100..=699 can be sent.
    #[error("status code {0} cannot be sent")]
    InvalidStatus(u16),
}

/// What a transaction asks of the layer after handling an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Keep,
    /// The transaction reached Terminated: remove it and its timers.
    Terminate,
    /// A non-INVITE server transaction sent its final response: keep only
    /// that response for this long (Timer J), then forget it.
    Complete(Duration),
}

/// Everything transactions write to: the output queues and the timers.
struct Context {
    cfg: TimerConfig,
    timers: Timers,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TransactionEvent>,
}

impl Context {
    fn transmit(&mut self, peer: Peer, data: Vec<u8>) {
        self.transmits.push_back(Transmit { peer, data });
    }
}

/// The transaction layer: see the module documentation.
pub struct TransactionLayer {
    ctx: Context,
    clients: HashMap<TransactionKey, ClientTransaction, KeyHash>,
    servers: ShardedMap<TransactionKey, ServerTransaction, KeyHash>,
    /// Completed non-INVITE server transactions, and the guards of live ones.
    completed: Completed,
    /// Guards of non-INVITE server transactions started since the last
    /// `handle_timeout`; only those still unanswered then are queued, so a
    /// request the TU answers at once never costs a queue entry.
    new_guards: Vec<(Instant, TransactionKey)>,
    /// Server INVITE transactions in Accepted, by what their 2xx's ACK carries.
    accepted: ShardedMap<AckMatch, TransactionKey>,
}

/// A fresh branch: the magic cookie followed by 20 random alphanumerics.
pub fn new_branch<R: rand::Rng + ?Sized>(rng: &mut R) -> String {
    let suffix: String = (0..20)
        .map(|_| char::from(rng.sample(rand::distributions::Alphanumeric)))
        .collect();
    format!("{MAGIC_COOKIE}{suffix}")
}

impl TransactionLayer {
    pub fn new(cfg: TimerConfig) -> Self {
        TransactionLayer {
            ctx: Context {
                cfg: cfg.sanitized(),
                timers: Timers::default(),
                transmits: VecDeque::new(),
                events: VecDeque::new(),
            },
            clients: HashMap::default(),
            servers: ShardedMap::default(),
            completed: Completed::default(),
            new_guards: Vec::new(),
            accepted: ShardedMap::default(),
        }
    }

    /// A message parsed from the wire (the caller has already rejected
    /// unparsable bytes).
    pub fn handle_message(&mut self, msg: SipMessage, from: Peer, now: Instant) {
        match msg {
            SipMessage::Request(req) if req.method == Method::Ack => self.on_ack(req, from, now),
            SipMessage::Request(req) => self.on_request(req, from, now),
            SipMessage::Response(resp) => self.on_response(resp, from, now),
        }
    }

    /// Fire every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (at, key) in std::mem::take(&mut self.new_guards) {
            if self.is_guarded_by(&key, at) {
                self.completed.guard(key, at);
            }
        }
        while let Some((key, slot)) = self.ctx.timers.pop_expired(now) {
            self.on_timer(key, slot, now);
        }
        while let Some(due) = self.completed.pop_expired(now) {
            if let Some((at, key)) = due {
                self.on_guard(&key, at);
            }
        }
    }

    /// Start a client transaction. The request must already carry its top
    /// Via with a fresh branch (see [`new_branch`]). An ACK creates no
    /// transaction: it is sent as is and its would-be key returned.
    pub fn send_request(&mut self, req: Request, to: Peer, now: Instant) -> TransactionKey {
        let key = client_key(&req, &req.method);
        if req.method == Method::Ack {
            self.send_stateless(SipMessage::Request(req), to);
            return key;
        }
        if key.branch().is_empty() {
            tracing::warn!(method = %req.method, "request sent without a Via branch");
        }
        if self.clients.contains_key(&key) {
            tracing::warn!(branch = %key.branch(), "branch reused: replacing the old client transaction");
            self.remove_client(&key);
        }
        let tx = ClientTransaction::start(key.clone(), req, to, now, &mut self.ctx);
        self.clients.insert(key.clone(), tx);
        key
    }

    /// Respond within a server transaction.
    pub fn send_response(
        &mut self,
        key: &TransactionKey,
        resp: Response,
        now: Instant,
    ) -> Result<(), TransactionError> {
        let Some(tx) = self.servers.get_mut(key) else {
            return Err(match self.completed.response(key) {
                Some(_) => TransactionError::FinalAlreadySent,
                None => TransactionError::UnknownTransaction,
            });
        };
        let next = tx.send_response(resp, now, &mut self.ctx)?;
        if let Some(m) = tx.accepted_ack_match() {
            self.accepted.insert(m.clone(), key.clone());
        }
        match next {
            Next::Keep => {}
            Next::Terminate => self.remove_server(key),
            Next::Complete(wait) => {
                let response = self
                    .servers
                    .remove(key)
                    .map(ServerTransaction::into_response);
                if let (Some(response), false) = (response, wait.is_zero()) {
                    let until = deadline(now, wait);
                    self.completed.insert(key.clone(), response, until);
                }
            }
        }
        Ok(())
    }

    /// Send a message outside any transaction (ACK for 2xx, stateless
    /// replies).
    pub fn send_stateless(&mut self, msg: SipMessage, to: Peer) {
        self.ctx.transmit(to, to_bytes(&msg));
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ctx.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.ctx.events.pop_front()
    }

    /// The earliest instant at which `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.ctx.timers.next_deadline(),
            self.completed.next_deadline(),
            self.new_guards.first().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Transactions kept, client and server (completed ones included).
    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len() + self.completed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn on_request(&mut self, req: Request, from: Peer, now: Instant) {
        let Some(key) = server_key(&req) else {
            tracing::debug!(method = %req.method, "request without a usable Via: dropped");
            return;
        };
        if let Some(tx) = self.servers.get_mut(&key) {
            tx.on_retransmission(from, &mut self.ctx);
            return;
        }
        if let Some(response) = self.completed.response(&key) {
            // RFC 3261 §17.2.2: a retransmission in Completed gets the final
            // response again, sent to where this copy came from.
            self.ctx.transmit(from, response.to_vec());
            return;
        }
        let cancels = (req.method == Method::Cancel)
            .then(|| key.with_method(Method::Invite))
            .filter(|invite| self.servers.contains_key(invite));
        let mut request = req;
        stamp_received(&mut request.headers, from.remote);
        let tx = ServerTransaction::start(key.clone(), &request, from, now, &mut self.ctx);
        if let Some(guard) = tx.guard() {
            self.new_guards.push((guard, key.clone()));
        }
        self.servers.insert(key.clone(), tx);
        self.ctx.events.push_back(TransactionEvent::Request {
            key,
            request,
            from,
            cancels,
        });
    }

    fn on_ack(&mut self, ack: Request, from: Peer, now: Instant) {
        let by_branch = server_key(&ack).filter(|k| self.servers.contains_key(k));
        let key =
            by_branch.or_else(|| AckMatch::of(&ack).and_then(|m| self.accepted.get(&m).cloned()));
        let Some(key) = key else {
            self.ctx
                .events
                .push_back(TransactionEvent::Ack { request: ack, from });
            return;
        };
        let Some(tx) = self.servers.get_mut(&key) else {
            return;
        };
        if tx.on_ack(ack, from, now, &mut self.ctx) == Next::Terminate {
            self.remove_server(&key);
        }
    }

    fn on_response(&mut self, resp: Response, from: Peer, now: Instant) {
        let method = cseq(&resp).map(|(_, m)| m);
        let key = method.map(|m| client_key(&resp, &m));
        let Some(tx) = key.as_ref().and_then(|k| self.clients.get_mut(k)) else {
            self.ctx.events.push_back(TransactionEvent::StrayResponse {
                response: resp,
                from,
            });
            return;
        };
        if tx.on_response(resp, now, &mut self.ctx) == Next::Terminate {
            if let Some(key) = key {
                self.remove_client(&key);
            }
        }
    }

    /// The 64·T1 guard of a non-INVITE server transaction came due: drop the
    /// transaction if it is the one the guard was queued for and the TU never
    /// answered it.
    fn on_guard(&mut self, key: &TransactionKey, at: Instant) {
        if self.is_guarded_by(key, at) {
            tracing::debug!(branch = %key.branch(), "TU never answered: transaction dropped");
            self.remove_server(key);
        }
    }

    /// `key` is a live, unanswered transaction whose guard is due at `at`.
    fn is_guarded_by(&self, key: &TransactionKey, at: Instant) -> bool {
        self.servers
            .get(key)
            .is_some_and(|tx| tx.guard() == Some(at) && tx.is_unanswered())
    }

    fn on_timer(&mut self, key: TransactionKey, slot: TimerSlot, now: Instant) {
        let next = match key.side() {
            Side::Client => match self.clients.get_mut(&key) {
                Some(tx) => tx.on_timer(slot, now, &mut self.ctx),
                None => Next::Keep,
            },
            Side::Server => match self.servers.get_mut(&key) {
                Some(tx) => tx.on_timer(slot, now, &mut self.ctx),
                None => Next::Keep,
            },
        };
        if next == Next::Terminate {
            match key.side() {
                Side::Client => self.remove_client(&key),
                Side::Server => self.remove_server(&key),
            }
        }
    }

    fn remove_client(&mut self, key: &TransactionKey) {
        self.ctx.timers.disarm_all(key);
        self.clients.remove(key);
    }

    fn remove_server(&mut self, key: &TransactionKey) {
        self.ctx.timers.disarm_all(key);
        if let Some(tx) = self.servers.remove(key) {
            if let Some(m) = tx.ack_match() {
                if self.accepted.get(m) == Some(key) {
                    self.accepted.remove(m);
                }
            }
        }
    }
}

/// The top Via of a message, split into its parts. Only the first
/// comma-separated value of the first Via header counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TopVia<'a> {
    /// The whole first via-parm, trimmed.
    text: &'a str,
    /// `host[:port]`.
    sent_by: &'a str,
    /// Everything after the first `;` (empty when there are no params).
    params: &'a str,
}

impl<'a> TopVia<'a> {
    fn of(headers: &'a Headers) -> Option<Self> {
        let value = headers.iter().find_map(|h| match h {
            Header::Via(v) => Some(v.value()),
            _ => None,
        })?;
        Self::parse(value)
    }

    fn parse(value: &'a str) -> Option<Self> {
        let text = split_at_byte(value, b',')
            .map_or(value, |(first, _)| first)
            .trim();
        let (head, params) = split_at_byte(text, b';').unwrap_or((text, ""));
        let mut words = head.split_whitespace();
        let protocol = words.next()?;
        let sent_by = words.last()?;
        let is_sip = protocol
            .get(..3)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP"));
        if !is_sip || memchr::memchr(b'/', sent_by.as_bytes()).is_some() {
            return None;
        }
        Some(TopVia {
            text,
            sent_by,
            params,
        })
    }

    /// A parameter's value (`Some("")` for a flag such as `rport`).
    fn param(&self, name: &str) -> Option<&'a str> {
        let mut rest = Some(self.params);
        while let Some(current) = rest {
            let (p, next) = match split_at_byte(current, b';') {
                Some((p, next)) => (p, Some(next)),
                None => (current, None),
            };
            let (k, v) = split_at_byte(p, b'=').unwrap_or((p, ""));
            if k.trim().eq_ignore_ascii_case(name) {
                return Some(v.trim());
            }
            rest = next;
        }
        None
    }

    /// The host part of sent-by, without IPv6 brackets.
    fn host(&self) -> &'a str {
        match self.sent_by.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => self.sent_by.split(':').next().unwrap_or(self.sent_by),
        }
    }
}

/// Client transaction key (§17.1.3): top Via branch + CSeq method. Used for
/// the requests we send and the responses we receive.
fn client_key(msg: &impl HeadersExt, method: &Method) -> TransactionKey {
    let branch = TopVia::of(msg.headers())
        .and_then(|v| v.param("branch"))
        .unwrap_or_default();
    TransactionKey::new(Side::Client, branch, "", *method)
}

/// Server transaction key (§17.2.3). `None` when the request has no
/// parsable top Via.
fn server_key(req: &Request) -> Option<TransactionKey> {
    let via = TopVia::of(&req.headers)?;
    let method = match req.method {
        Method::Ack => Method::Invite,
        m => m,
    };
    let sent_by = lower_case(via.sent_by);
    Some(match via.param("branch") {
        Some(b) if b.starts_with(MAGIC_COOKIE) => {
            TransactionKey::new(Side::Server, b, &sent_by, method)
        }
        _ => TransactionKey::new(Side::Server, &rfc2543_branch(req, &via), &sent_by, method),
    })
}

/// `s` in ASCII lower case, borrowed when it already is.
fn lower_case(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The stand-in branch for requests from RFC 2543 clients: the same for an
/// INVITE, its retransmissions, its CANCEL and the ACK of its non-2xx final.
fn rfc2543_branch(req: &Request, via: &TopVia<'_>) -> String {
    let call = call_id(&req.headers).unwrap_or_default();
    let seq = cseq(req).map(|(n, _)| n).unwrap_or_default();
    let from_tag = req
        .from_header()
        .ok()
        .and_then(|f| tag_of(f.value()))
        .unwrap_or_default();
    format!("rfc2543|{call}|{seq}|{from_tag}|{}", via.text)
}

/// RFC 3581 §4 / RFC 3261 §18.2.1: record where a request really came from
/// in its top Via. With `rport`, both `rport=<port>` and `received=<ip>` are
/// set; without, `received` is added only when the sent-by host differs from
/// the source address. An existing `received` is replaced.
fn stamp_received(headers: &mut Headers, source: SocketAddr) {
    let Some(via) = headers.iter_mut().find_map(|h| match h {
        Header::Via(v) => Some(v),
        _ => None,
    }) else {
        return;
    };
    if let Some(stamped) = stamped_via(via.value(), source) {
        *via = rsip::headers::Via::new(stamped);
    }
}

/// The Via header value with its first via-parm stamped, or `None` when
/// nothing needs to change.
fn stamped_via(value: &str, source: SocketAddr) -> Option<String> {
    let top = TopVia::parse(value)?;
    let ip = source.ip().to_canonical();
    let rport = top.param("rport").is_some();
    let same_host = top.host().parse::<std::net::IpAddr>().ok() == Some(ip);
    if !rport && same_host {
        return None;
    }
    use std::fmt::Write;
    let (head, _) = split_at_byte(top.text, b';').unwrap_or((top.text, ""));
    let mut out = String::with_capacity(value.len() + 48);
    out.push_str(head.trim_end());
    let mut has_received = false;
    // Writing into a String cannot fail.
    for p in top.params.split(';').filter(|p| !p.trim().is_empty()) {
        let name = split_at_byte(p, b'=').map_or(p, |(k, _)| k).trim();
        if name.eq_ignore_ascii_case("rport") {
            out.push_str(";rport=");
            push_decimal(&mut out, u64::from(source.port()));
        } else if name.eq_ignore_ascii_case("received") {
            has_received = true;
            let _ = write!(out, ";received={ip}");
        } else {
            out.push(';');
            out.push_str(p.trim());
        }
    }
    if !has_received {
        let _ = write!(out, ";received={ip}");
    }
    if let Some((_, rest)) = split_at_byte(value, b',') {
        out.push(',');
        out.push_str(rest);
    }
    Some(out)
}
