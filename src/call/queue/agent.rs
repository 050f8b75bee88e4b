//! Agent legs: denwa as the UAC that rings an agent's phone for a queued
//! call. One leg per offer (its own Call-ID and dialog), forked to every
//! registered contact of the agent's extension the way the B2BUA forks its
//! B leg: the first 2xx wins and is acknowledged, the other forks are
//! cancelled, a 2xx that comes after the leg was won elsewhere or withdrawn
//! gets ACK and BYE. A CANCEL waits for the fork's first provisional
//! response (RFC 3261 §9.1).
//!
//! What this module must not do: decide who is rung or which answer
//! counts (the ACD engine does, through the actor), or touch the media.

use std::net::SocketAddr;

use rsip::prelude::*;
use rsip::{Header, Method, Request, Response, SipMessage};
use tracing::{debug, info};

use super::super::context::{CallCommand, CallContext};
use super::super::new_branch;
use crate::acd::types::LegFailure;
use crate::acd::{LegOutcome, OfferId};
use crate::media::g711::Codec;
use crate::media::sdp::{
    self, Attribute, Connection, MediaDescription, MediaInfo, Origin, SessionDescription, PT_PCMA,
    PT_PCMU,
};
use crate::registrar::location::Binding;
use crate::sip::dialog::Dialog;
use crate::sip::message::{self, tag_of};
use crate::sip::transaction::TransactionKey;
use crate::sip::Peer;

/// Which leg: one the engine offered, or a direct call to an extension (a
/// route destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LegKey {
    Offer(OfferId),
    Direct,
}

/// An answered leg: its dialog and where the phone wants RTP.
#[derive(Debug, Clone)]
pub(super) struct Answered {
    pub dialog: Dialog,
    pub peer: Peer,
    pub media: Option<MediaInfo>,
}

#[derive(Debug, Clone)]
pub(super) enum LegState {
    Ringing,
    /// 2xx received and acknowledged.
    Answered(Box<Answered>),
    /// Withdrawn by denwa: CANCEL sent (or waiting for a provisional).
    Withdrawn,
    /// Every fork failed.
    Failed,
    /// The dialog is over (BYE sent or received).
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForkState {
    Calling,
    Early,
    Done,
}

#[derive(Debug)]
struct Fork {
    branch: String,
    invite: Request,
    peer: Peer,
    state: ForkState,
    cancel_pending: bool,
    /// The final status; 0 when the phone never answered (Timer B).
    final_code: Option<u16>,
}

/// What a response or a timeout meant for a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LegNews {
    Ringing(LegKey),
    Answered(LegKey),
    Failed(LegKey, LegOutcome),
    /// Our BYE on this leg was answered.
    ByeAnswered(LegKey),
}

/// How a leg is introduced to the agent's phone.
pub(super) struct Invitation<'a> {
    /// The calling extension (From user).
    pub caller: &'a str,
    /// Shown on the phone (From display name); empty for none.
    pub display: &'a str,
    /// Our SDP offer.
    pub body: &'a [u8],
}

/// One agent leg.
#[derive(Debug)]
pub(super) struct AgentLeg {
    pub key: LegKey,
    pub call_id: String,
    pub extension: String,
    pub state: LegState,
    from_tag: String,
    forks: Vec<Fork>,
    ringing_reported: bool,
    /// The branches of the BYEs sent on this leg.
    byes: Vec<String>,
}

/// The engine's reading of the final answers of every contact rung: a
/// busy phone wins, then a decline, then "nobody answered"; only when no
/// phone was reachable at all is the agent unreachable. `0` stands for a
/// contact that never answered (Timer B).
pub(super) fn outcome_of(codes: &[u16]) -> LegOutcome {
    if codes.iter().any(|c| matches!(c, 486 | 600)) {
        LegOutcome::Failed(LegFailure::Busy)
    } else if codes.contains(&603) {
        LegOutcome::Failed(LegFailure::Declined)
    } else if codes.iter().any(|c| matches!(c, 408 | 480 | 487)) {
        LegOutcome::NoAnswer
    } else {
        LegOutcome::Failed(LegFailure::Unreachable)
    }
}

/// The SDP offer denwa sends an agent: one audio stream on `local`, the
/// caller's G.711 law first and the other law second (the relay
/// transcodes), telephone-event when the caller has it.
pub(super) fn agent_offer(
    codec: Codec,
    telephone_event: Option<u8>,
    local: SocketAddr,
    session_id: u64,
) -> Vec<u8> {
    let laws = match codec {
        Codec::Pcmu => [(PT_PCMU, "PCMU"), (PT_PCMA, "PCMA")],
        Codec::Pcma => [(PT_PCMA, "PCMA"), (PT_PCMU, "PCMU")],
    };
    let attribute = |name: &str, value: Option<String>| Attribute {
        name: name.to_owned(),
        value,
    };
    let mut formats: Vec<String> = laws.iter().map(|(pt, _)| pt.to_string()).collect();
    let mut attributes: Vec<Attribute> = laws
        .iter()
        .map(|(pt, name)| attribute("rtpmap", Some(format!("{pt} {name}/8000"))))
        .collect();
    if let Some(te) = telephone_event {
        formats.push(te.to_string());
        attributes.push(attribute(
            "rtpmap",
            Some(format!("{te} telephone-event/8000")),
        ));
        attributes.push(attribute("fmtp", Some(format!("{te} 0-15"))));
    }
    attributes.push(attribute("ptime", Some("20".to_owned())));
    attributes.push(attribute("sendrecv", None));
    let connection = Connection::for_ip(local.ip());
    SessionDescription {
        origin: Origin {
            username: "denwa".to_owned(),
            session_id: session_id.to_string(),
            session_version: "1".to_owned(),
            net_type: connection.net_type.clone(),
            addr_type: connection.addr_type.clone(),
            address: connection.address.clone(),
        },
        session_name: "-".to_owned(),
        connection: Some(connection),
        timing: vec!["0 0".to_owned()],
        attributes: Vec::new(),
        other: Vec::new(),
        media: vec![MediaDescription {
            media: "audio".to_owned(),
            port: local.port(),
            port_count: None,
            proto: "RTP/AVP".to_owned(),
            formats,
            connection: None,
            attributes,
            other: Vec::new(),
        }],
    }
    .to_bytes()
}

fn top_branch(headers: &rsip::Headers) -> Option<&str> {
    headers.iter().find_map(|h| match h {
        Header::Via(v) => message::param_of(v.value(), "branch"),
        _ => None,
    })
}

fn to_tag(resp: &Response) -> Option<String> {
    resp.to_header()
        .ok()
        .and_then(|t| tag_of(t.value()).map(str::to_owned))
}

impl AgentLeg {
    /// Ring `targets` (the extension's registered contacts; each through
    /// `peer_of`) on a fresh dialog `call_id`. A leg with no target is
    /// created failed.
    pub fn ring(
        ctx: &CallContext,
        key: LegKey,
        call_id: String,
        extension: &str,
        targets: &[Binding],
        peer_of: impl Fn(&Binding) -> Peer,
        invitation: &Invitation,
    ) -> AgentLeg {
        let mut leg = AgentLeg {
            key,
            call_id,
            extension: extension.to_owned(),
            state: LegState::Ringing,
            from_tag: super::super::new_tag(),
            forks: Vec::new(),
            ringing_reported: false,
            byes: Vec::new(),
        };
        for target in targets {
            let Ok(uri) = rsip::Uri::try_from(target.contact_uri.as_str()) else {
                continue;
            };
            let peer = peer_of(target);
            let branch = new_branch();
            let invite = leg.invite(ctx, uri, &peer, &branch, invitation);
            debug!(contact = %target.contact_uri, to = %peer.remote, "ringing an agent");
            send(
                ctx,
                CallCommand::Request {
                    request: invite.clone(),
                    to: peer,
                },
            );
            leg.forks.push(Fork {
                branch,
                invite,
                peer,
                state: ForkState::Calling,
                cancel_pending: false,
                final_code: None,
            });
        }
        if leg.forks.is_empty() {
            leg.state = LegState::Failed;
        }
        leg
    }

    fn invite(
        &self,
        ctx: &CallContext,
        uri: rsip::Uri,
        peer: &Peer,
        branch: &str,
        inv: &Invitation,
    ) -> Request {
        let domain = &ctx.config.sip.domain;
        let mut h = rsip::Headers::default();
        h.push(Header::Via(rsip::headers::Via::new(
            ctx.addressing.via(peer, branch),
        )));
        h.push(Header::MaxForwards(rsip::headers::MaxForwards::new("70")));
        let from = format!("<sip:{}@{domain}>;tag={}", inv.caller, self.from_tag);
        let from = if inv.display.is_empty() {
            from
        } else {
            format!("\"{}\" {from}", inv.display.replace(['"', '\\'], ""))
        };
        h.push(Header::From(rsip::headers::From::new(from)));
        h.push(Header::To(rsip::headers::To::new(format!(
            "<sip:{}@{domain}>",
            self.extension
        ))));
        h.push(Header::CallId(rsip::headers::CallId::new(
            self.call_id.clone(),
        )));
        h.push(Header::CSeq(rsip::headers::CSeq::new("1 INVITE")));
        h.push(Header::Contact(rsip::headers::Contact::new(format!(
            "<{}>",
            ctx.addressing.contact(peer, inv.caller)
        ))));
        h.push(Header::Allow(rsip::headers::Allow::new(super::ALLOW)));
        h.push(Header::ContentType(rsip::headers::ContentType::new(
            "application/sdp",
        )));
        let headers = message::finish(h, inv.body.len(), &ctx.config.sip.user_agent);
        Request {
            method: Method::Invite,
            uri,
            version: rsip::Version::V2,
            headers,
            body: inv.body.to_vec(),
        }
    }

    /// Whether the leg is still ringing.
    pub fn is_ringing(&self) -> bool {
        matches!(self.state, LegState::Ringing)
    }

    /// Whether the leg has no transaction or dialog left to wait for.
    pub fn settled(&self) -> bool {
        let forks_done = self.forks.iter().all(|f| f.state == ForkState::Done);
        forks_done && !matches!(self.state, LegState::Answered(_) | LegState::Ringing)
    }

    /// A response on this leg's Call-ID.
    pub fn response(&mut self, ctx: &CallContext, resp: &Response) -> Option<LegNews> {
        let (_, method) = message::cseq(resp)?;
        let code = resp.status_code.code();
        if method == Method::Bye {
            return (code >= 200).then_some(LegNews::ByeAnswered(self.key));
        }
        if method != Method::Invite {
            return None;
        }
        let branch = top_branch(&resp.headers).unwrap_or_default();
        let Some(i) = self.forks.iter().position(|f| f.branch == branch) else {
            if (200..300).contains(&code) {
                self.stray_2xx(ctx, resp);
            }
            return None;
        };
        match code {
            100 => None,
            101..=199 => self.provisional(ctx, i),
            200..=299 => self.answered(ctx, i, resp),
            _ => self.fork_failed(i, code),
        }
    }

    /// Timer B (or a transport error) on one of this leg's INVITEs; a BYE
    /// that timed out is over as much as an answered one.
    pub fn timeout(&mut self, key: &TransactionKey) -> Option<LegNews> {
        if key.method() == "BYE" {
            let ours = self.byes.iter().any(|b| b == key.branch());
            return ours.then_some(LegNews::ByeAnswered(self.key));
        }
        if key.method() != "INVITE" {
            return None;
        }
        let i = self
            .forks
            .iter()
            .position(|f| f.branch == key.branch() && f.state != ForkState::Done)?;
        self.fork_failed(i, 0)
    }

    fn provisional(&mut self, ctx: &CallContext, i: usize) -> Option<LegNews> {
        let fork = self.forks.get_mut(i)?;
        if fork.state == ForkState::Calling {
            fork.state = ForkState::Early;
        }
        if std::mem::take(&mut fork.cancel_pending) {
            let (cancel, peer) = cancel_for(ctx, fork);
            send(
                ctx,
                CallCommand::Request {
                    request: cancel,
                    to: peer,
                },
            );
        }
        if self.is_ringing() && !self.ringing_reported {
            self.ringing_reported = true;
            return Some(LegNews::Ringing(self.key));
        }
        None
    }

    fn answered(&mut self, ctx: &CallContext, i: usize, resp: &Response) -> Option<LegNews> {
        let tag = to_tag(resp);
        if let LegState::Answered(a) = &self.state {
            if Some(&a.dialog.remote_tag) == tag.as_ref() {
                // Retransmitted 2xx: acknowledge again.
                let (invite, peer) = {
                    let f = self.forks.get(i)?;
                    (f.invite.clone(), f.peer)
                };
                let _ = ack_2xx(ctx, &invite, resp, peer);
                return None;
            }
        }
        let (invite, peer) = {
            let f = self.forks.get_mut(i)?;
            f.state = ForkState::Done;
            f.final_code = Some(resp.status_code.code());
            (f.invite.clone(), f.peer)
        };
        let mut dialog = ack_2xx(ctx, &invite, resp, peer)?;
        if !self.is_ringing() {
            info!(extension = %self.extension, "late answer from an agent: hanging it up");
            self.byes.push(bye(ctx, &mut dialog, peer));
            return None;
        }
        let media = sdp::parse(&resp.body)
            .ok()
            .and_then(|s| sdp::remote_media(&s));
        self.state = LegState::Answered(Box::new(Answered {
            dialog,
            peer,
            media,
        }));
        self.cancel_forks(ctx);
        Some(LegNews::Answered(self.key))
    }

    /// A 2xx for no fork we still track (its transaction is over): the
    /// answered dialog's retransmission gets its ACK again, any other
    /// dialog ACK and BYE.
    fn stray_2xx(&mut self, ctx: &CallContext, resp: &Response) {
        let Some(f) = self.forks.first() else { return };
        let (invite, peer) = (f.invite.clone(), f.peer);
        let ours = match &self.state {
            LegState::Answered(a) => Some(&a.dialog.remote_tag) == to_tag(resp).as_ref(),
            _ => false,
        };
        if let Some(mut dialog) = ack_2xx(ctx, &invite, resp, peer) {
            if !ours {
                self.byes.push(bye(ctx, &mut dialog, peer));
            }
        }
    }

    fn fork_failed(&mut self, i: usize, code: u16) -> Option<LegNews> {
        let fork = self.forks.get_mut(i)?;
        fork.state = ForkState::Done;
        fork.final_code = Some(code);
        fork.cancel_pending = false;
        if !self.is_ringing() || self.forks.iter().any(|f| f.state != ForkState::Done) {
            return None;
        }
        self.state = LegState::Failed;
        let codes: Vec<u16> = self.forks.iter().filter_map(|f| f.final_code).collect();
        Some(LegNews::Failed(self.key, outcome_of(&codes)))
    }

    /// CANCEL every fork still ringing (now, or on its first provisional).
    fn cancel_forks(&mut self, ctx: &CallContext) {
        for fork in &mut self.forks {
            match fork.state {
                ForkState::Done => {}
                ForkState::Calling => fork.cancel_pending = true,
                ForkState::Early => {
                    let (cancel, peer) = cancel_for(ctx, fork);
                    send(
                        ctx,
                        CallCommand::Request {
                            request: cancel,
                            to: peer,
                        },
                    );
                }
            }
        }
    }

    /// denwa takes the leg back: stop ringing, or hang up an answer that
    /// was not bridged.
    pub fn withdraw(&mut self, ctx: &CallContext) {
        match std::mem::replace(&mut self.state, LegState::Withdrawn) {
            LegState::Ringing => self.cancel_forks(ctx),
            LegState::Answered(a) => {
                let mut a = *a;
                self.byes.push(bye(ctx, &mut a.dialog, a.peer));
                self.state = LegState::Closed;
            }
            other => self.state = other,
        }
    }

    /// The answered dialog, taken out for the bridge (the leg stays
    /// answered until [`AgentLeg::closed`]).
    pub fn answer(&self) -> Option<&Answered> {
        match &self.state {
            LegState::Answered(a) => Some(a),
            _ => None,
        }
    }

    pub fn answer_mut(&mut self) -> Option<&mut Answered> {
        match &mut self.state {
            LegState::Answered(a) => Some(a),
            _ => None,
        }
    }

    /// The dialog ended by a BYE either way.
    pub fn closed(&mut self) {
        self.state = LegState::Closed;
    }

    /// Whether a request's tags belong to this leg's answered dialog.
    pub fn in_dialog(&self, req: &Request) -> bool {
        let from_tag = req
            .from_header()
            .ok()
            .and_then(|f| tag_of(f.value()).map(str::to_owned));
        self.answer()
            .is_some_and(|a| Some(&a.dialog.remote_tag) == from_tag.as_ref())
    }
}

fn send(ctx: &CallContext, cmd: CallCommand) {
    let _ = ctx.commands.send(cmd);
}

/// The CANCEL for a fork's INVITE (RFC 3261 §9.1).
fn cancel_for(ctx: &CallContext, fork: &Fork) -> (Request, Peer) {
    let mut h = rsip::Headers::default();
    for header in fork.invite.headers.iter() {
        match header {
            Header::Via(_)
            | Header::From(_)
            | Header::To(_)
            | Header::CallId(_)
            | Header::MaxForwards(_) => h.push(header.clone()),
            _ => {}
        }
    }
    h.push(Header::CSeq(rsip::headers::CSeq::new("1 CANCEL")));
    let headers = message::finish(h, 0, &ctx.config.sip.user_agent);
    let cancel = Request {
        method: Method::Cancel,
        uri: fork.invite.uri.clone(),
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    };
    (cancel, fork.peer)
}

/// ACK a 2xx (outside any transaction); the dialog it made.
fn ack_2xx(ctx: &CallContext, invite: &Request, resp: &Response, peer: Peer) -> Option<Dialog> {
    let mut dialog = Dialog::uac(invite, resp).ok()?;
    let via = ctx.addressing.via(&peer, &new_branch());
    let user = message::user_of(message::uri_of(&dialog.local_uri))
        .unwrap_or("denwa")
        .to_owned();
    let contact = ctx.addressing.contact(&peer, &user);
    let seq = message::cseq(invite).map(|(s, _)| s).unwrap_or(1);
    let mut ack = dialog.request(Method::Ack, &via, &contact, Some(seq));
    ack.headers = message::finish(ack.headers, 0, &ctx.config.sip.user_agent);
    send(
        ctx,
        CallCommand::Stateless {
            message: SipMessage::Request(ack),
            to: peer,
        },
    );
    Some(dialog)
}

/// BYE in `dialog`; returns its branch.
fn bye(ctx: &CallContext, dialog: &mut Dialog, peer: Peer) -> String {
    let branch = new_branch();
    let via = ctx.addressing.via(&peer, &branch);
    let user = message::user_of(message::uri_of(&dialog.local_uri))
        .unwrap_or("denwa")
        .to_owned();
    let contact = ctx.addressing.contact(&peer, &user);
    let mut bye = dialog.request(Method::Bye, &via, &contact, None);
    bye.headers = message::finish(bye.headers, 0, &ctx.config.sip.user_agent);
    send(
        ctx,
        CallCommand::Request {
            request: bye,
            to: peer,
        },
    );
    branch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_answers_become_the_engines_outcome() {
        let busy = LegOutcome::Failed(LegFailure::Busy);
        let declined = LegOutcome::Failed(LegFailure::Declined);
        let unreachable = LegOutcome::Failed(LegFailure::Unreachable);
        assert_eq!(outcome_of(&[486]), busy);
        assert_eq!(outcome_of(&[480, 600]), busy, "a busy phone wins");
        assert_eq!(outcome_of(&[603, 480]), declined);
        assert_eq!(outcome_of(&[480]), LegOutcome::NoAnswer);
        assert_eq!(outcome_of(&[0, 408]), LegOutcome::NoAnswer);
        assert_eq!(outcome_of(&[0]), unreachable, "Timer B: nobody there");
        assert_eq!(outcome_of(&[404, 503]), unreachable);
        assert_eq!(outcome_of(&[]), unreachable);
    }

    #[test]
    fn the_offer_puts_the_callers_law_first_and_keeps_events() {
        let local: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let body = agent_offer(Codec::Pcma, Some(101), local, 42);
        let offer = sdp::parse(&body).expect("our own SDP parses");
        let m = sdp::remote_media(&offer).expect("audio");
        assert_eq!(m.addr, local);
        assert_eq!(m.payload_types, vec![PT_PCMA, PT_PCMU, 101]);
        assert_eq!(m.telephone_event_pt, Some(101));
        assert!(!m.is_hold());
        let plain = agent_offer(Codec::Pcmu, None, local, 42);
        let m = sdp::remote_media(&sdp::parse(&plain).unwrap()).unwrap();
        assert_eq!(m.payload_types, vec![PT_PCMU, PT_PCMA]);
        assert_eq!(m.telephone_event_pt, None);
    }
}
