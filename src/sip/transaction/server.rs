//! Server transactions: the INVITE state machine of RFC 3261 §17.2.1 with
//! the RFC 6026 Accepted state, and the non-INVITE one of §17.2.2.
//!
//! A server transaction answers retransmitted requests with its last
//! response, sends `100 Trying` for a new INVITE, retransmits a non-2xx final
//! until the ACK arrives (Timers G, H, I), retransmits a 2xx until the TU's
//! ACK arrives (Timer G up to T2, given up after Timer L = 64·T1 with
//! [`TransactionEvent::AckTimeout`]) and lingers to absorb retransmissions
//! (Timer J). It does not decide what to answer: that is the TU's job.
//!
//! Deviation kept on purpose: the 2xx is retransmitted on reliable
//! transports too, as RFC 3261 §13.3.1.4 asks of the UAS core (a proxy may
//! forward it over UDP further on).

use std::time::{Duration, Instant};

use rsip::prelude::*;
use rsip::{Header, Request, Response, SipMessage};

use super::client::Class;
use super::timers::{deadline, TimerSlot};
use super::{Context, Next, TransactionError, TransactionEvent, TransactionKey};
use crate::sip::message::{call_id, cseq, response_for, tag_of, to_bytes};
use crate::sip::Peer;

/// What identifies the ACK of a 2xx, which carries a fresh branch: the
/// INVITE's Call-ID, CSeq number and From tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct AckMatch {
    call_id: String,
    seq: u32,
    from_tag: String,
}

impl AckMatch {
    /// `None` when a header needed for matching is missing.
    pub(super) fn of(req: &Request) -> Option<AckMatch> {
        let from = req.from_header().ok()?;
        Some(AckMatch {
            call_id: call_id(&req.headers)?.to_string(),
            seq: cseq(req)?.0,
            from_tag: tag_of(from.value())?.to_string(),
        })
    }
}

/// Server transaction states. `Trying` is non-INVITE-only; `Confirmed` and
/// `Accepted` are INVITE-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    /// RFC 6026: a 2xx was sent; `acked` once its ACK arrived.
    Accepted {
        acked: bool,
    },
}

pub(super) struct ServerTransaction {
    key: TransactionKey,
    state: State,
    /// Where responses go: the source of the latest copy of the request.
    peer: Peer,
    /// The last response sent, re-sent on retransmitted requests.
    last_response: Option<Vec<u8>>,
    /// Current Timer G interval.
    interval: Duration,
    /// For INVITE: how the ACK of a 2xx will be recognised.
    ack_match: Option<AckMatch>,
    /// For non-INVITE: when the transaction is dropped if the TU has not
    /// answered it by then.
    guard: Option<Instant>,
}

impl ServerTransaction {
    /// Create the transaction for a new request. An INVITE is answered with
    /// `100 Trying` at once; a non-INVITE gets a 64·T1 guard so a TU that
    /// never answers cannot leak it (the client gave up by then anyway).
    pub(super) fn start(
        key: TransactionKey,
        request: &Request,
        peer: Peer,
        now: Instant,
        ctx: &mut Context,
    ) -> Self {
        let mut tx = ServerTransaction {
            state: State::Trying,
            ack_match: None,
            guard: None,
            last_response: None,
            interval: ctx.cfg.t1,
            peer,
            key,
        };
        if tx.key.is_invite() {
            tx.state = State::Proceeding;
            tx.ack_match = AckMatch::of(request);
            let mut trying = response_for(request, 100, None);
            trying
                .headers
                .push(Header::ContentLength(rsip::headers::ContentLength::from(0)));
            tx.transmit(to_bytes(&SipMessage::Response(trying)), ctx);
        } else {
            tx.guard = Some(deadline(now, ctx.cfg.timeout()));
        }
        tx
    }

    /// The 64·T1 guard of a non-INVITE transaction (the layer queues it).
    pub(super) fn guard(&self) -> Option<Instant> {
        self.guard
    }

    /// No final response sent yet.
    pub(super) fn is_unanswered(&self) -> bool {
        matches!(self.state, State::Trying | State::Proceeding)
    }

    /// The last response sent: all a completed non-INVITE transaction keeps.
    pub(super) fn into_response(self) -> Box<[u8]> {
        self.last_response.unwrap_or_default().into_boxed_slice()
    }

    /// The ACK match, while the transaction is Accepted.
    pub(super) fn accepted_ack_match(&self) -> Option<&AckMatch> {
        match self.state {
            State::Accepted { .. } => self.ack_match.as_ref(),
            _ => None,
        }
    }

    pub(super) fn ack_match(&self) -> Option<&AckMatch> {
        self.ack_match.as_ref()
    }

    /// A retransmission of the request: answer with the last response in
    /// Proceeding and Completed. Absorbed in Trying (nothing to send yet),
    /// Confirmed, and Accepted (RFC 6026 §8.7: Timer G re-sends the 2xx).
    pub(super) fn on_retransmission(&mut self, from: Peer, ctx: &mut Context) {
        self.peer = from;
        match self.state {
            State::Proceeding | State::Completed => {
                if let Some(last) = self.last_response.clone() {
                    ctx.transmit(self.peer, last);
                }
            }
            State::Trying | State::Confirmed | State::Accepted { .. } => {
                tracing::trace!(branch = %self.key.branch(), "request retransmission absorbed");
            }
        }
    }

    /// The TU's response. Enforces one final response per transaction.
    pub(super) fn send_response(
        &mut self,
        resp: Response,
        now: Instant,
        ctx: &mut Context,
    ) -> Result<Next, TransactionError> {
        let code = resp.status_code.code();
        let class = Class::of(code).ok_or(TransactionError::InvalidStatus(code))?;
        let open = matches!(self.state, State::Trying | State::Proceeding);
        let resend_2xx =
            self.state == (State::Accepted { acked: false }) && class == Class::Success;
        if !open && !resend_2xx {
            return Err(TransactionError::FinalAlreadySent);
        }
        self.transmit(to_bytes(&SipMessage::Response(resp)), ctx);
        if resend_2xx || class == Class::Provisional {
            if self.state == State::Trying {
                self.state = State::Proceeding;
            }
            return Ok(Next::Keep);
        }
        Ok(if self.key.is_invite() {
            self.finish_invite(class, now, ctx)
        } else {
            self.finish_non_invite(ctx)
        })
    }

    /// A final response to an INVITE was sent: Accepted (2xx) or Completed.
    /// Timer G runs for the 2xx on every transport, for other finals only
    /// on unreliable ones.
    fn finish_invite(&mut self, class: Class, now: Instant, ctx: &mut Context) -> Next {
        let success = class == Class::Success;
        self.state = if success {
            State::Accepted { acked: false }
        } else {
            State::Completed
        };
        self.interval = ctx.cfg.t1;
        if success || !self.peer.transport.is_reliable() {
            let g = deadline(now, self.interval);
            ctx.timers.arm(&self.key, TimerSlot::Retransmit, g);
        }
        let h_or_l = deadline(now, ctx.cfg.timeout());
        ctx.timers.arm(&self.key, TimerSlot::Expiry, h_or_l);
        Next::Keep
    }

    /// A final response to a non-INVITE was sent: Completed for Timer J,
    /// which the layer keeps as the response alone.
    fn finish_non_invite(&mut self, ctx: &mut Context) -> Next {
        self.state = State::Completed;
        Next::Complete(ctx.cfg.timer_j(self.peer.transport))
    }

    /// An ACK matched this (INVITE) transaction, by branch or, for a 2xx,
    /// by [`AckMatch`].
    pub(super) fn on_ack(
        &mut self,
        ack: Request,
        from: Peer,
        now: Instant,
        ctx: &mut Context,
    ) -> Next {
        match self.state {
            State::Completed => {
                self.state = State::Confirmed;
                self.linger(ctx.cfg.timer_i_k(self.peer.transport), now, ctx)
            }
            State::Accepted { acked: false } => {
                self.state = State::Accepted { acked: true };
                ctx.timers.disarm(&self.key, TimerSlot::Retransmit);
                ctx.events
                    .push_back(TransactionEvent::Ack { request: ack, from });
                Next::Keep
            }
            _ => {
                tracing::trace!(branch = %self.key.branch(), "ACK absorbed");
                Next::Keep
            }
        }
    }

    pub(super) fn on_timer(&mut self, slot: TimerSlot, now: Instant, ctx: &mut Context) -> Next {
        match slot {
            TimerSlot::Retransmit => {
                self.retransmit_final(now, ctx);
                Next::Keep
            }
            TimerSlot::Expiry => self.expire(ctx),
        }
    }

    /// Timer G: re-send the final (non-2xx in Completed, 2xx in Accepted).
    fn retransmit_final(&mut self, now: Instant, ctx: &mut Context) {
        if !matches!(
            self.state,
            State::Completed | State::Accepted { acked: false }
        ) {
            return;
        }
        if let Some(last) = self.last_response.clone() {
            ctx.transmit(self.peer, last);
        }
        self.interval = ctx.cfg.backoff(self.interval);
        let g = deadline(now, self.interval);
        ctx.timers.arm(&self.key, TimerSlot::Retransmit, g);
    }

    /// Timers H, I, J, L and the non-INVITE guard: always the end.
    fn expire(&mut self, ctx: &mut Context) -> Next {
        match self.state {
            State::Accepted { acked: false } => {
                let key = self.key.clone();
                ctx.events.push_back(TransactionEvent::AckTimeout { key });
            }
            State::Completed if self.key.is_invite() => {
                tracing::debug!(branch = %self.key.branch(), "Timer H: no ACK for the final response");
            }
            State::Trying | State::Proceeding => {
                tracing::debug!(branch = %self.key.branch(), "TU never answered: transaction dropped");
            }
            _ => {}
        }
        Next::Terminate
    }

    /// Wait `wait` (Timer I or J) absorbing retransmissions; terminate at
    /// once when it is zero (reliable transports).
    fn linger(&mut self, wait: Duration, now: Instant, ctx: &mut Context) -> Next {
        ctx.timers.disarm_all(&self.key);
        if wait.is_zero() {
            return Next::Terminate;
        }
        ctx.timers
            .arm(&self.key, TimerSlot::Expiry, deadline(now, wait));
        Next::Keep
    }

    fn transmit(&mut self, wire: Vec<u8>, ctx: &mut Context) {
        ctx.transmit(self.peer, wire.clone());
        self.last_response = Some(wire);
    }
}
