//! Client transactions: the INVITE state machine of RFC 3261 §17.1.1 with
//! the RFC 6026 Accepted state, and the non-INVITE one of §17.1.2.
//!
//! A client transaction retransmits its request (Timers A and E), gives up
//! (Timers B and F), builds and re-sends the ACK for a non-2xx final
//! (§17.1.1.3) and lingers to absorb retransmitted responses (Timers D, K
//! and M). It never builds the ACK for a 2xx: that belongs to the TU.

use std::time::{Duration, Instant};

use rsip::prelude::*;
use rsip::{Header, Headers, Method, Request, Response, SipMessage};

use super::timers::{deadline, TimerSlot, TIMER_C};
use super::{Context, Next, TopVia, TransactionEvent, TransactionKey};
use crate::sip::message::{cseq, to_bytes};
use crate::sip::Peer;

/// Client transaction states. `Calling` is INVITE-only, `Trying`
/// non-INVITE-only, `Accepted` INVITE-only (RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Accepted,
}

/// The class of a response status code, or `None` outside 100..=699.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Provisional,
    Success,
    Failure,
}

impl Class {
    pub(super) fn of(code: u16) -> Option<Class> {
        match code {
            100..=199 => Some(Class::Provisional),
            200..=299 => Some(Class::Success),
            300..=699 => Some(Class::Failure),
            _ => None,
        }
    }
}

pub(super) struct ClientTransaction {
    key: TransactionKey,
    state: State,
    request: Request,
    /// The request as sent, for retransmissions.
    wire: Vec<u8>,
    peer: Peer,
    /// Current retransmission interval (Timers A and E).
    interval: Duration,
    /// The ACK sent for a non-2xx final, re-sent when the final is
    /// retransmitted.
    ack: Option<Vec<u8>>,
    /// Timer C already fired and the TU was told.
    timed_out: bool,
}

impl ClientTransaction {
    /// Send `request` and arm Timers A/B (INVITE) or E/F (non-INVITE).
    pub(super) fn start(
        key: TransactionKey,
        request: Request,
        peer: Peer,
        now: Instant,
        ctx: &mut Context,
    ) -> Self {
        let wire = to_bytes(&SipMessage::Request(request.clone()));
        ctx.transmit(peer, wire.clone());
        let state = if key.is_invite() {
            State::Calling
        } else {
            State::Trying
        };
        let interval = ctx.cfg.t1;
        if !peer.transport.is_reliable() {
            ctx.timers
                .arm(&key, TimerSlot::Retransmit, deadline(now, interval));
        }
        let expiry = deadline(now, ctx.cfg.timeout());
        ctx.timers.arm(&key, TimerSlot::Expiry, expiry);
        ClientTransaction {
            key,
            state,
            request,
            wire,
            peer,
            interval,
            ack: None,
            timed_out: false,
        }
    }

    pub(super) fn on_response(&mut self, resp: Response, now: Instant, ctx: &mut Context) -> Next {
        let Some(class) = Class::of(resp.status_code.code()) else {
            tracing::debug!(
                code = resp.status_code.code(),
                "response outside 100..=699 ignored"
            );
            return Next::Keep;
        };
        if self.key.is_invite() {
            self.on_invite_response(class, resp, now, ctx)
        } else {
            self.on_non_invite_response(class, resp, now, ctx)
        }
    }

    /// RFC 3261 §17.1.1.2 with RFC 6026 §8.4.
    fn on_invite_response(
        &mut self,
        class: Class,
        resp: Response,
        now: Instant,
        ctx: &mut Context,
    ) -> Next {
        let live = matches!(self.state, State::Calling | State::Proceeding);
        match class {
            Class::Provisional if live => {
                self.state = State::Proceeding;
                ctx.timers.disarm(&self.key, TimerSlot::Retransmit);
                if !self.timed_out {
                    ctx.timers
                        .arm(&self.key, TimerSlot::Expiry, deadline(now, TIMER_C));
                }
                self.pass_up(resp, ctx);
                Next::Keep
            }
            Class::Success if live || self.state == State::Accepted => {
                if live {
                    self.state = State::Accepted;
                    ctx.timers.disarm(&self.key, TimerSlot::Retransmit);
                    let m = deadline(now, ctx.cfg.timeout());
                    ctx.timers.arm(&self.key, TimerSlot::Expiry, m);
                }
                self.pass_up(resp, ctx);
                Next::Keep
            }
            Class::Failure if live => {
                let ack = to_bytes(&SipMessage::Request(ack_for(&self.request, &resp)));
                ctx.transmit(self.peer, ack.clone());
                self.ack = Some(ack);
                self.state = State::Completed;
                self.pass_up(resp, ctx);
                self.linger(ctx.cfg.timer_d(self.peer.transport), now, ctx)
            }
            Class::Failure if self.state == State::Completed => {
                if let Some(ack) = &self.ack {
                    ctx.transmit(self.peer, ack.clone());
                }
                Next::Keep
            }
            _ => Next::Keep,
        }
    }

    /// RFC 3261 §17.1.2.2.
    fn on_non_invite_response(
        &mut self,
        class: Class,
        resp: Response,
        now: Instant,
        ctx: &mut Context,
    ) -> Next {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return Next::Keep;
        }
        if class == Class::Provisional {
            self.state = State::Proceeding;
            self.pass_up(resp, ctx);
            return Next::Keep;
        }
        self.state = State::Completed;
        self.pass_up(resp, ctx);
        self.linger(ctx.cfg.timer_i_k(self.peer.transport), now, ctx)
    }

    pub(super) fn on_timer(&mut self, slot: TimerSlot, now: Instant, ctx: &mut Context) -> Next {
        match slot {
            TimerSlot::Retransmit => {
                self.retransmit(now, ctx);
                Next::Keep
            }
            TimerSlot::Expiry => self.expire(now, ctx),
        }
    }

    /// Timer A (doubling) or E (doubling up to T2; T2 once Proceeding).
    fn retransmit(&mut self, now: Instant, ctx: &mut Context) {
        self.interval = match self.state {
            State::Calling => ctx.cfg.invite_backoff(self.interval),
            State::Trying => ctx.cfg.backoff(self.interval),
            State::Proceeding if !self.key.is_invite() => ctx.cfg.t2,
            _ => return,
        };
        ctx.transmit(self.peer, self.wire.clone());
        let at = deadline(now, self.interval);
        ctx.timers.arm(&self.key, TimerSlot::Retransmit, at);
    }

    /// Timers B, F (timeout), C (INVITE stuck in Proceeding), D, K, M.
    fn expire(&mut self, now: Instant, ctx: &mut Context) -> Next {
        match self.state {
            State::Calling | State::Trying => self.time_out(ctx),
            State::Proceeding if !self.key.is_invite() => self.time_out(ctx),
            State::Proceeding if !self.timed_out => {
                self.timed_out = true;
                let key = self.key.clone();
                ctx.events.push_back(TransactionEvent::Timeout { key });
                let grace = deadline(now, ctx.cfg.timeout());
                ctx.timers.arm(&self.key, TimerSlot::Expiry, grace);
                Next::Keep
            }
            _ => Next::Terminate,
        }
    }

    fn time_out(&mut self, ctx: &mut Context) -> Next {
        let key = self.key.clone();
        ctx.events.push_back(TransactionEvent::Timeout { key });
        Next::Terminate
    }

    /// Enter the absorbing wait of Completed for `wait` (Timer D or K);
    /// terminate at once when the wait is zero (reliable transports).
    fn linger(&mut self, wait: Duration, now: Instant, ctx: &mut Context) -> Next {
        ctx.timers.disarm_all(&self.key);
        if wait.is_zero() {
            return Next::Terminate;
        }
        ctx.timers
            .arm(&self.key, TimerSlot::Expiry, deadline(now, wait));
        Next::Keep
    }

    fn pass_up(&self, response: Response, ctx: &mut Context) {
        ctx.events.push_back(TransactionEvent::Response {
            key: self.key.clone(),
            response,
        });
    }
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): the INVITE's
/// Request-URI, top Via, From, Call-ID, Route and Max-Forwards; the To of the
/// response (with its tag); CSeq with the INVITE's number and method ACK.
fn ack_for(invite: &Request, resp: &Response) -> Request {
    let mut headers = Headers::default();
    let mut via_done = false;
    for h in invite.headers.iter() {
        match h {
            Header::Via(_) if !via_done => {
                via_done = true;
                if let Some(top) = TopVia::of(&invite.headers) {
                    headers.push(Header::Via(rsip::headers::Via::new(top.text)));
                }
            }
            Header::From(_) | Header::CallId(_) | Header::Route(_) | Header::MaxForwards(_) => {
                headers.push(h.clone())
            }
            Header::To(to) => match resp.to_header() {
                Ok(resp_to) => headers.push(Header::To(resp_to.clone())),
                Err(_) => headers.push(Header::To(to.clone())),
            },
            Header::CSeq(_) => {
                let seq = cseq(invite).map(|(n, _)| n).unwrap_or_default();
                headers.push(Header::CSeq(rsip::headers::CSeq::new(format!("{seq} ACK"))));
            }
            _ => {}
        }
    }
    headers.push(Header::ContentLength(rsip::headers::ContentLength::from(0)));
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn ack_for_non_2xx_follows_rfc3261_17_1_1_3() {
        let invite = "INVITE sip:bob@10.0.0.2 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKold\r\n\
            Max-Forwards: 69\r\n\
            Route: <sip:proxy@10.0.0.3;lr>\r\n\
            From: <sip:alice@10.0.0.1>;tag=a1\r\n\
            To: <sip:bob@10.0.0.2>\r\n\
            Call-ID: c1@x\r\n\
            CSeq: 7 INVITE\r\n\
            Contact: <sip:alice@10.0.0.1>\r\n\
            Content-Length: 0\r\n\r\n";
        let invite = Request::try_from(invite.as_bytes()).expect("parse invite");
        let mut resp = crate::sip::message::response_for(&invite, 486, Some("b9"));
        resp.headers
            .push(Header::ContentLength(rsip::headers::ContentLength::from(0)));
        let ack = ack_for(&invite, &resp);
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, invite.uri);
        let text = ack.to_string();
        assert!(
            text.contains("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc\r\n"),
            "{text}"
        );
        assert!(!text.contains("z9hG4bKold"), "{text}");
        assert!(text.contains("To: <sip:bob@10.0.0.2>;tag=b9\r\n"), "{text}");
        assert!(text.contains("CSeq: 7 ACK\r\n"), "{text}");
        assert!(
            text.contains("Route: <sip:proxy@10.0.0.3;lr>\r\n"),
            "{text}"
        );
        assert!(text.contains("Max-Forwards: 69\r\n"), "{text}");
        assert!(!text.contains("Contact"), "{text}");
    }

    #[test]
    fn status_classes() {
        assert_eq!(Class::of(99), None);
        assert_eq!(Class::of(100), Some(Class::Provisional));
        assert_eq!(Class::of(299), Some(Class::Success));
        assert_eq!(Class::of(699), Some(Class::Failure));
        assert_eq!(Class::of(700), None);
    }
}
