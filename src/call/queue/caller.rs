//! The caller's leg of a queue call: denwa as the UAS that answers the
//! caller itself (RFC 3261 §13.3) with its own SDP answer, rings them
//! (180) while agents ring first, answers re-INVITEs and UPDATEs without
//! passing them on, and ends the dialog either way.
//!
//! What this module must not do: touch the media relay or the agent legs;
//! it tells the actor what the caller did ([`CallerNews`]).

use std::net::SocketAddr;

use rsip::prelude::*;
use rsip::{Header, Method, Request};
use tracing::info;

use super::super::context::{CallCommand, CallContext};
use super::super::new_branch;
use super::super::service::answer::negotiate;
pub(super) use super::super::service::answer::Negotiated;
use super::ALLOW;
use crate::media::sdp;
use crate::sip::dialog::Dialog;
use crate::sip::message::{self, response_for, tag_of};
use crate::sip::transaction::TransactionKey;
use crate::sip::Peer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallerState {
    /// No final answer yet.
    Trying,
    /// 200 sent.
    Answered,
    /// A final answer other than 2xx was sent, or the dialog ended.
    Gone,
}

/// What the caller did, for the actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallerNews {
    Nothing,
    /// CANCEL before the answer (487 already sent).
    Cancelled,
    /// BYE.
    HungUp,
    /// A new offer put the agent on hold (`true`) or took them back.
    Hold(bool),
}

/// Our side of the caller's SDP exchange.
pub(super) struct CallerLeg {
    pub state: CallerState,
    pub negotiated: Negotiated,
    pub local: SocketAddr,
    tag: String,
    dialog: Option<Dialog>,
    ringing_sent: bool,
    session_id: u64,
    version: u64,
    body: Vec<u8>,
    /// The caller holds the call (its last offer was sendonly/inactive).
    holding: bool,
    /// Where the caller is, and the number they dialled (our Contact user).
    peer: Peer,
    callee: String,
}

/// Why the caller's offer cannot be taken (answered with 488).
pub(super) fn check_offer(body: &[u8]) -> Result<Negotiated, String> {
    let offer = sdp::parse(body).map_err(|e| e.to_string())?;
    negotiate(&offer, None).map_err(|e| e.to_string())
}

impl CallerLeg {
    pub fn new(negotiated: Negotiated, local: SocketAddr, peer: Peer, callee: &str) -> CallerLeg {
        let session_id = u64::from(rand::random::<u32>());
        let body = negotiated.answer(local, session_id, 1).to_bytes();
        CallerLeg {
            state: CallerState::Trying,
            negotiated,
            local,
            tag: super::super::new_tag(),
            dialog: None,
            ringing_sent: false,
            session_id,
            version: 1,
            body,
            holding: false,
            peer,
            callee: callee.to_owned(),
        }
    }

    fn respond(
        &self,
        ctx: &CallContext,
        key: TransactionKey,
        req: &Request,
        code: u16,
        body: Vec<u8>,
    ) {
        let mut resp = response_for(req, code, Some(&self.tag));
        if (101..300).contains(&code) {
            let contact = ctx.addressing.contact(&self.peer, &self.callee);
            resp.headers
                .push(Header::Contact(rsip::headers::Contact::new(format!(
                    "<{contact}>"
                ))));
        }
        if matches!(code, 200 | 405 | 501) {
            resp.headers
                .push(Header::Allow(rsip::headers::Allow::new(ALLOW)));
        }
        super::super::finish_response(&mut resp, body, &ctx.config.sip.user_agent);
        let _ = ctx.commands.send(CallCommand::Respond {
            key,
            response: resp,
        });
    }

    /// 180 Ringing to the INVITE, once.
    pub fn ring(&mut self, ctx: &CallContext, key: &TransactionKey, invite: &Request) {
        if self.state == CallerState::Trying && !self.ringing_sent {
            self.ringing_sent = true;
            self.respond(ctx, key.clone(), invite, 180, Vec::new());
        }
    }

    /// 200 with our SDP answer; false when the INVITE cannot start a dialog.
    pub fn answer(&mut self, ctx: &CallContext, key: &TransactionKey, invite: &Request) -> bool {
        if self.state != CallerState::Trying {
            return self.state == CallerState::Answered;
        }
        match Dialog::uas(invite, &self.tag) {
            Ok(d) => self.dialog = Some(d),
            Err(e) => {
                info!(error = %e, "the caller's INVITE cannot start a dialog");
                self.reject(ctx, key, invite, 400);
                return false;
            }
        }
        self.respond(ctx, key.clone(), invite, 200, self.body.clone());
        self.state = CallerState::Answered;
        true
    }

    /// A final answer other than 2xx to the INVITE.
    pub fn reject(&mut self, ctx: &CallContext, key: &TransactionKey, invite: &Request, code: u16) {
        if self.state == CallerState::Trying {
            self.respond(ctx, key.clone(), invite, code, Vec::new());
            self.state = CallerState::Gone;
        }
    }

    /// denwa ends an answered call: BYE to the caller.
    pub fn hang_up(&mut self, ctx: &CallContext) {
        if self.state != CallerState::Answered {
            return;
        }
        self.state = CallerState::Gone;
        let Some(dialog) = self.dialog.as_mut() else {
            return;
        };
        let via = ctx.addressing.via(&self.peer, &new_branch());
        let contact = ctx.addressing.contact(&self.peer, &self.callee);
        let mut bye = dialog.request(Method::Bye, &via, &contact, None);
        bye.headers = message::finish(bye.headers, 0, &ctx.config.sip.user_agent);
        let _ = ctx.commands.send(CallCommand::Request {
            request: bye,
            to: self.peer,
        });
    }

    /// A request on the caller's Call-ID.
    pub fn request(
        &mut self,
        ctx: &CallContext,
        key: TransactionKey,
        req: Request,
        cancels: bool,
        invite: &Request,
        invite_key: &TransactionKey,
    ) -> CallerNews {
        if req.method == Method::Cancel {
            self.respond(ctx, key, &req, 200, Vec::new());
            if cancels && self.state == CallerState::Trying {
                info!("caller cancelled");
                self.reject(ctx, invite_key, invite, 487);
                return CallerNews::Cancelled;
            }
            return CallerNews::Nothing;
        }
        if !self.in_dialog(&req) {
            self.respond(ctx, key, &req, 481, Vec::new());
            return CallerNews::Nothing;
        }
        let seq = message::cseq(&req).map(|(seq, _)| seq).unwrap_or(0);
        if let Some(d) = self.dialog.as_mut() {
            if !d.accept_remote_cseq(seq) {
                self.respond(ctx, key, &req, 500, Vec::new());
                return CallerNews::Nothing;
            }
        }
        match req.method {
            Method::Bye => {
                self.respond(ctx, key, &req, 200, Vec::new());
                if self.state == CallerState::Answered {
                    info!("caller hung up");
                    self.state = CallerState::Gone;
                    return CallerNews::HungUp;
                }
                CallerNews::Nothing
            }
            Method::Invite => self.reoffer(ctx, key, req),
            Method::Update if !req.body.is_empty() => self.reoffer(ctx, key, req),
            Method::Update | Method::Info | Method::Options => {
                self.respond(ctx, key, &req, 200, Vec::new());
                CallerNews::Nothing
            }
            _ => {
                self.respond(ctx, key, &req, 501, Vec::new());
                CallerNews::Nothing
            }
        }
    }

    fn in_dialog(&self, req: &Request) -> bool {
        let Some(dialog) = &self.dialog else {
            return false;
        };
        let to_tag = req
            .to_header()
            .ok()
            .and_then(|t| tag_of(t.value()).map(str::to_owned));
        to_tag.as_deref() == Some(dialog.local_tag.as_str())
    }

    /// A new offer from the caller: answered from our side with the codec
    /// in use; the address it names becomes where the relay sends.
    fn reoffer(&mut self, ctx: &CallContext, key: TransactionKey, req: Request) -> CallerNews {
        if let Some(d) = self.dialog.as_mut() {
            d.refresh_target(&req.headers);
        }
        if req.body.is_empty() {
            self.respond(ctx, key, &req, 200, self.body.clone());
            return CallerNews::Nothing;
        }
        let offer = sdp::parse(&req.body).ok();
        let negotiated = offer
            .as_ref()
            .and_then(|o| negotiate(o, Some(self.negotiated.codec)).ok());
        let Some(negotiated) = negotiated else {
            self.respond(ctx, key, &req, 488, Vec::new());
            return CallerNews::Nothing;
        };
        let hold = offer
            .as_ref()
            .and_then(sdp::remote_media)
            .is_some_and(|m| m.is_hold());
        if negotiated != self.negotiated {
            self.version += 1;
            self.body = negotiated
                .answer(self.local, self.session_id, self.version)
                .to_bytes();
            self.negotiated = negotiated;
        }
        self.respond(ctx, key, &req, 200, self.body.clone());
        if hold != self.holding {
            self.holding = hold;
            return CallerNews::Hold(hold);
        }
        CallerNews::Nothing
    }
}
