//! The call actor: a caller leg (A) bridged to the first callee contact that
//! answers (B), with media anchored through a relay.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rsip::prelude::*;
use rsip::{Header, Method, Request, Response, SipMessage};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::context::{CallCommand, CallContext};
use super::control::{self, CallControl, Control, RecordingControl, RecordingState};
use super::dtmf;
use super::LiveCall;
use super::{new_branch, new_tag, CallEvent, CallSetup};
use crate::config::DtmfMode;
use crate::media::dtmf::negotiation;
use crate::media::dtmf::{DigitEvent, DigitSource};
use crate::media::player::{Player, Playlist};
use crate::media::recording::RecordingSpec;
use crate::media::relay::{Leg, LegCodec, MediaEndpoint, MediaEvent, RelayHandle, RelayMetrics};
use crate::media::sdp;
use crate::metrics::Metrics;
use crate::registrar::location::Binding;
use crate::sip::dialog::Dialog;
use crate::sip::message::{self, response_for, tag_of};
use crate::sip::transaction::TransactionKey;
use crate::sip::Peer;
use crate::store::cdr::{CallRecord, Disposition, Side};

/// How long a finished call waits for the other forks' final answers
/// (64*T1, the INVITE client transaction's lifetime).
const LINGER: Duration = Duration::from_secs(32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForkState {
    Calling,
    Early,
    Done,
}

struct Fork {
    branch: String,
    invite: Request,
    peer: Peer,
    state: ForkState,
    final_code: Option<u16>,
    /// Credentials were sent after a 401/407 (answered once only).
    challenged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Answered,
    /// The caller got a final answer; waiting for stray forks to settle.
    Ending,
}

/// An in-dialog request relayed from one leg to the other.
struct Relayed {
    from_a: bool,
    key: TransactionKey,
    request: Request,
}

struct Call {
    ctx: CallContext,
    s: CallSetup,
    a_tag: String,
    b_from_tag: String,
    a_dialog: Option<Dialog>,
    b_dialog: Option<Dialog>,
    b_peer: Option<Peer>,
    forks: Vec<Fork>,
    relay: Option<RelayHandle>,
    a_media: Option<std::net::SocketAddr>,
    b_media: Option<std::net::SocketAddr>,
    phase: Phase,
    relayed: Vec<(String, Relayed)>,
    started_ms: i64,
    answered_ms: Option<i64>,
    disposition: Disposition,
    hangup_side: Option<Side>,
    sip_status: u16,
    sdp_version: u64,
    /// Digits, playback ends: from the relay once the call is answered.
    media_events: Option<mpsc::UnboundedReceiver<MediaEvent>>,
    /// Which legs have put the other on hold (and so hear music).
    holding: [bool; 2],
    /// What each leg speaks (A, B), from the last offer/answer.
    codecs: [LegCodec; 2],
    /// The last SDP offer from each leg (A, B), for the answer to it.
    offers: [Option<sdp::MediaInfo>; 2],
    /// The handle listed with the call once it is answered.
    control: CallControl,
    /// Whether the call is in the directory of live calls.
    listed: bool,
    recording: RecordingControl,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn top_branch(headers: &rsip::Headers) -> Option<String> {
    headers.iter().find_map(|h| match h {
        Header::Via(v) => message::param_of(v.value(), "branch").map(str::to_owned),
        _ => None,
    })
}

/// Where to send a request for a registered contact: the Contact's own
/// address when the phone is reachable as it says (same IP as the REGISTER
/// came from), otherwise the address the REGISTER really came from (NAT).
pub(super) fn target_peer(b: &Binding) -> Peer {
    let mut peer = b.received;
    if peer.transport.is_reliable() {
        return peer;
    }
    if let Ok(uri) = rsip::Uri::try_from(b.contact_uri.as_str()) {
        let ip = match &uri.host_with_port.host {
            rsip::Host::IpAddr(ip) => Some(*ip),
            rsip::Host::Domain(name) => {
                crate::sip::ipv6::masked_addr(&name.to_string()).map(std::net::IpAddr::V6)
            }
        };
        if let Some(ip) = ip {
            if ip == peer.remote.ip() {
                let port = uri.host_with_port.port.map(|p| *p.value()).unwrap_or(5060);
                peer.remote = std::net::SocketAddr::new(ip, port);
            }
        }
    }
    peer
}

fn disposition_for(code: u16) -> Disposition {
    match code {
        200..=299 => Disposition::Answered,
        486 | 600 => Disposition::Busy,
        408 | 480 => Disposition::NoAnswer,
        404 | 604 => Disposition::NotFound,
        603 => Disposition::Rejected,
        487 => Disposition::Cancelled,
        _ => Disposition::Failed,
    }
}

pub(super) async fn run(setup: CallSetup, mut events: super::EventReceiver, ctx: CallContext) {
    ctx.metrics.call_started();
    let (control, mut commands) = control::channel(std::sync::Arc::clone(&ctx.prompts));
    let mut call = Call {
        ctx,
        a_tag: new_tag(),
        b_from_tag: new_tag(),
        s: setup,
        a_dialog: None,
        b_dialog: None,
        b_peer: None,
        forks: Vec::new(),
        relay: None,
        a_media: None,
        b_media: None,
        phase: Phase::Ringing,
        relayed: Vec::new(),
        started_ms: now_ms(),
        answered_ms: None,
        disposition: Disposition::Failed,
        hangup_side: None,
        sip_status: 0,
        sdp_version: 1,
        media_events: None,
        holding: [false, false],
        codecs: [LegCodec::default(); 2],
        offers: [None, None],
        control,
        listed: false,
        recording: RecordingControl::new(RecordingState::Off),
    };
    info!(caller = %call.s.caller, callee = %call.s.callee, "call attempt");
    call.start().await;
    let calls = call.ctx.config.calls;
    let ringing_until = Instant::now() + calls.no_answer_timeout;
    let mut answered_until: Option<Instant> = None;
    let mut ending_until: Option<Instant> = None;
    loop {
        // One deadline per phase: ring time, call length, then the time
        // given to late answers from other forks (they get ACK + BYE).
        let deadline = match call.phase {
            Phase::Ringing => ringing_until,
            Phase::Answered => {
                *answered_until.get_or_insert_with(|| Instant::now() + calls.max_duration)
            }
            Phase::Ending => {
                call.unlist();
                if call.forks.iter().all(|f| f.state == ForkState::Done) {
                    break;
                }
                *ending_until.get_or_insert_with(|| Instant::now() + LINGER)
            }
        };
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => call.handle(*ev),
                None => break,
            },
            Some(ev) = next_media_event(&mut call.media_events) => call.media_event(ev),
            Some(command) = commands.recv() => call.command(command),
            _ = tokio::time::sleep_until(deadline) => match call.phase {
                Phase::Ringing => call.no_answer(),
                Phase::Answered => {
                    info!("maximum call duration reached");
                    call.hang_up_both(Side::System);
                }
                Phase::Ending => break,
            },
        }
    }
    call.finish().await;
}

impl Call {
    fn send(&self, cmd: CallCommand) {
        let _ = self.ctx.commands.send(cmd);
    }

    fn respond_a(&mut self, code: u16, extra: Vec<Header>, body: Option<Vec<u8>>) {
        let mut resp = response_for(&self.s.a_invite, code, Some(&self.a_tag));
        resp.headers.extend(extra);
        let body = body.unwrap_or_default();
        super::finish_response(&mut resp, body, &self.ctx.config.sip.user_agent);
        if code >= 200 {
            self.sip_status = code;
        }
        self.send(CallCommand::Respond {
            key: self.s.a_key.clone(),
            response: resp,
        });
    }

    /// Reject the call outright with a final response.
    fn reject(&mut self, code: u16, disposition: Disposition) {
        self.disposition = disposition;
        self.respond_a(code, vec![], None);
        self.phase = Phase::Ending;
    }

    async fn start(&mut self) {
        let Some(targets) = self.s.targets.clone() else {
            info!(callee = %self.s.callee, "no such extension");
            return self.reject(404, Disposition::NotFound);
        };
        if targets.is_empty() {
            info!(callee = %self.s.callee, "extension not registered");
            return self.reject(480, Disposition::Unavailable);
        }
        let mut offer = match sdp::parse(&self.s.a_invite.body) {
            Ok(o) => o,
            Err(e) => {
                info!(error = %e, "no usable SDP offer");
                return self.reject(488, Disposition::Failed);
            }
        };
        // The answer to the phone keeps to what the phone itself offered
        // (with its events), whatever the trunk takes.
        self.offers[leg_index(Leg::A)] = sdp::remote_media(&offer);
        if let Some(media) = &self.s.plan.media {
            if !super::outbound::restrict_offer(&mut offer, media) {
                info!("none of the offered codecs is the trunk's");
                return self.reject(488, Disposition::Failed);
            }
        }
        // Refuse an offer without PCMU or PCMA before any port is bound.
        let supported = sdp::remote_media(&offer)
            .is_some_and(|m| m.payload_types.iter().any(|pt| *pt == 0 || *pt == 8));
        if !supported {
            return self.reject(488, Disposition::Failed);
        }
        let a_remote = sdp::remote_media(&offer).map(|m| m.addr);
        let Some(first) = targets.first() else { return };
        let a_ip = self.ctx.addressing.media_ip(&self.s.a_peer);
        let b_ip = self.ctx.addressing.media_ip(&target_peer(first));
        let (a_ep, b_ep) = match (
            MediaEndpoint::bind(a_ip, &self.ctx.ports).await,
            MediaEndpoint::bind(b_ip, &self.ctx.ports).await,
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                warn!(a = ?a.err(), b = ?b.err(), "no RTP ports");
                return self.reject(503, Disposition::Failed);
            }
        };
        self.a_media = Some(a_ep.local_rtp_addr());
        let b_local = b_ep.local_rtp_addr();
        self.b_media = Some(b_local);
        let metrics = relay_metrics(&self.ctx.metrics);
        let relay = self
            .ctx
            .media
            .start_relay(a_ep, b_ep, a_remote, None, metrics);
        self.relay = Some(relay);
        let Ok(mut b_offer) = sdp::rewrite_for_relay(
            &offer,
            b_local,
            rand::random::<u32>() as u64,
            self.sdp_version,
        ) else {
            return self.reject(488, Disposition::Failed);
        };
        // denwa can carry keys to a callee that wants events even when the
        // caller sends them as tones.
        if self.trunk_takes_events() {
            negotiation::offer_telephone_event(&mut b_offer);
        }
        let body = b_offer.to_string().into_bytes();
        let display = self
            .ctx
            .config
            .extensions
            .get(&self.s.caller)
            .map(|e| e.name.clone())
            .unwrap_or_default();
        for t in targets {
            let peer = target_peer(&t);
            debug!(contact = %t.contact_uri, to = %peer.remote, "offering the call");
            let branch = new_branch();
            let domain = &self.ctx.config.sip.domain;
            let Ok(uri) = rsip::Uri::try_from(t.contact_uri.as_str()) else {
                continue;
            };
            let mut h = rsip::Headers::default();
            h.push(Header::Via(rsip::headers::Via::new(
                self.ctx.addressing.via(&peer, &branch),
            )));
            h.push(Header::MaxForwards(rsip::headers::MaxForwards::new("70")));
            let plan = &self.s.plan;
            let from = plan.from_value(&self.s.caller, &display, domain, &self.b_from_tag);
            h.push(Header::From(rsip::headers::From::new(from)));
            h.push(Header::To(rsip::headers::To::new(
                plan.to_value(&self.s.callee, domain),
            )));
            for extra in plan.extra_headers() {
                h.push(extra);
            }
            h.push(Header::CallId(rsip::headers::CallId::new(
                self.s.b_call_id.clone(),
            )));
            h.push(Header::CSeq(rsip::headers::CSeq::new("1 INVITE")));
            h.push(Header::Contact(rsip::headers::Contact::new(format!(
                "<{}>",
                self.ctx.addressing.contact(&peer, &self.s.caller)
            ))));
            h.push(Header::Allow(rsip::headers::Allow::new(
                "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE",
            )));
            h.push(Header::ContentType(rsip::headers::ContentType::new(
                "application/sdp",
            )));
            let headers = message::finish(h, body.len(), &self.ctx.config.sip.user_agent);
            let invite = Request {
                method: Method::Invite,
                uri,
                version: rsip::Version::V2,
                headers,
                body: body.clone(),
            };
            self.send(CallCommand::Request {
                request: invite.clone(),
                to: peer,
            });
            self.forks.push(Fork {
                branch,
                invite,
                peer,
                state: ForkState::Calling,
                final_code: None,
                challenged: false,
            });
        }
        if self.forks.is_empty() {
            self.reject(480, Disposition::Unavailable);
        }
    }

    fn is_a(&self, headers: &rsip::Headers) -> bool {
        message::call_id(headers) == Some(self.s.a_call_id.as_str())
    }

    fn handle(&mut self, ev: CallEvent) {
        match ev {
            CallEvent::Request {
                key,
                request,
                from,
                cancels,
            } => {
                if self.is_a(&request.headers) {
                    self.request_from_a(key, request, cancels)
                } else {
                    self.request_from_b(key, request, from)
                }
            }
            CallEvent::Ack { .. } => {}
            CallEvent::Response { response, .. } => self.response(response),
            CallEvent::StrayResponse { response, .. } => self.response(response),
            CallEvent::Timeout { key } => self.timeout(key),
            CallEvent::AckTimeout { .. } => {
                warn!("caller never acknowledged the answer");
                self.hang_up_both(Side::System);
            }
            CallEvent::Shutdown => {
                info!("hanging up: denwa is stopping");
                self.hang_up_both(Side::System);
            }
        }
    }

    fn respond_to(
        &self,
        key: TransactionKey,
        req: &Request,
        code: u16,
        tag: Option<&str>,
        body: Option<(Vec<u8>, Option<&str>)>,
    ) {
        let mut resp = response_for(req, code, tag);
        let body = match body {
            Some((b, contact)) => {
                if let Some(c) = contact {
                    resp.headers
                        .push(Header::Contact(rsip::headers::Contact::new(format!(
                            "<{c}>"
                        ))));
                }
                b
            }
            None => Vec::new(),
        };
        super::finish_response(&mut resp, body, &self.ctx.config.sip.user_agent);
        self.send(CallCommand::Respond {
            key,
            response: resp,
        });
    }

    fn request_from_a(
        &mut self,
        key: TransactionKey,
        req: Request,
        cancels: Option<TransactionKey>,
    ) {
        match req.method {
            Method::Cancel => {
                self.respond_to(key, &req, 200, None, None);
                if cancels.is_some() && self.phase == Phase::Ringing {
                    info!("caller cancelled");
                    self.hangup_side = Some(Side::Caller);
                    self.disposition = Disposition::Cancelled;
                    self.respond_a(487, vec![], None);
                    self.cancel_forks(None);
                    self.phase = Phase::Ending;
                }
            }
            Method::Bye => {
                self.respond_to(key, &req, 200, None, None);
                if self.phase == Phase::Answered {
                    info!("caller hung up");
                    self.hangup_side = Some(Side::Caller);
                    self.bye_b();
                    self.phase = Phase::Ending;
                }
            }
            _ => self.relay_in_dialog(true, key, req),
        }
    }

    fn request_from_b(&mut self, key: TransactionKey, req: Request, from: Peer) {
        let to_tag = req
            .from_header()
            .ok()
            .and_then(|f| tag_of(f.value()).map(str::to_owned));
        let ours = self
            .b_dialog
            .as_ref()
            .map(|d| Some(&d.remote_tag) == to_tag.as_ref())
            .unwrap_or(false);
        if !ours {
            let code = if req.method == Method::Bye { 200 } else { 481 };
            return self.respond_to(key, &req, code, None, None);
        }
        let _ = from;
        match req.method {
            Method::Bye => {
                self.respond_to(key, &req, 200, None, None);
                if self.phase == Phase::Answered {
                    info!("callee hung up");
                    self.hangup_side = Some(Side::Callee);
                    self.bye_a();
                    self.phase = Phase::Ending;
                }
            }
            _ => self.relay_in_dialog(false, key, req),
        }
    }

    /// Pass an in-dialog request (re-INVITE for hold, INFO, UPDATE...) to
    /// the other leg, rewriting SDP so media stays anchored.
    fn relay_in_dialog(&mut self, from_a: bool, key: TransactionKey, req: Request) {
        if self.phase != Phase::Answered {
            return self.respond_to(key, &req, 481, None, None);
        }
        if req.method == Method::Invite
            && self
                .relayed
                .iter()
                .any(|(_, r)| r.request.method == Method::Invite)
        {
            return self.respond_to(key, &req, 491, None, None);
        }
        let mut body = req.body.clone();
        if matches!(req.method, Method::Invite | Method::Update) && !req.body.is_empty() {
            match self.rewrite_offer(&req.body, from_a) {
                Some(b) => body = b,
                None => return self.respond_to(key, &req, 488, None, None),
            }
            self.hold_changed(from_a, &req.body);
        }
        if req.method == Method::Info {
            let now = u64::try_from(now_ms()).unwrap_or(0);
            if let Some(digit) = dtmf::info_digit(&req, now) {
                // denwa takes the key and gives it to the other leg its
                // own way; the INFO itself goes no further.
                self.respond_to(key, &req, 200, None, None);
                let leg = if from_a { Leg::A } else { Leg::B };
                self.digit(leg, digit);
                return;
            }
        }
        let (dialog, peer) = if from_a {
            (self.b_dialog.as_mut(), self.b_peer)
        } else {
            (self.a_dialog.as_mut(), Some(self.s.a_peer))
        };
        let (Some(dialog), Some(peer)) = (dialog, peer) else {
            return self.respond_to(key, &req, 481, None, None);
        };
        let branch = new_branch();
        let via = self.ctx.addressing.via(&peer, &branch);
        let user = if from_a {
            &self.s.caller
        } else {
            &self.s.callee
        };
        let contact = self.ctx.addressing.contact(&peer, user);
        let mut out = dialog.request(req.method, &via, &contact, None);
        for h in req.headers.iter() {
            if let Header::ContentType(_) = h {
                out.headers.push(h.clone());
            }
        }
        out.headers = message::finish(out.headers, body.len(), &self.ctx.config.sip.user_agent);
        out.body = body;
        self.send(CallCommand::Request {
            request: out,
            to: peer,
        });
        self.relayed.push((
            branch,
            Relayed {
                from_a,
                key,
                request: req,
            },
        ));
    }

    /// Rewrite an SDP offer from one leg for the other: learn the
    /// offerer's media address, keep its offer for the answer, and offer
    /// telephone-events whatever the offerer had.
    fn rewrite_offer(&mut self, body: &[u8], from_a: bool) -> Option<Vec<u8>> {
        let parsed = sdp::parse(body).ok()?;
        let local = if from_a { self.b_media? } else { self.a_media? };
        let offerer = if from_a { Leg::A } else { Leg::B };
        let media = sdp::remote_media(&parsed);
        if let (Some(relay), Some(m)) = (&self.relay, &media) {
            relay.set_remote(offerer, m.addr);
        }
        self.offers[leg_index(offerer)] = media;
        self.sdp_version += 1;
        let mut out = sdp::rewrite_for_relay(&parsed, local, 1, self.sdp_version).ok()?;
        if !from_a || self.trunk_takes_events() {
            negotiation::offer_telephone_event(&mut out);
        }
        // Towards a trunk, only what it takes (a hold re-INVITE too).
        if let (true, Some(media)) = (from_a, &self.s.plan.media) {
            super::outbound::restrict_offer(&mut out, media);
        }
        Some(out.to_bytes())
    }

    /// Rewrite an SDP answer from one leg for the other (the offerer),
    /// keeping to the offer; both legs' codecs follow from it.
    fn rewrite_answer(&mut self, body: &[u8], from_a: bool) -> Option<Vec<u8>> {
        let parsed = sdp::parse(body).ok()?;
        let local = if from_a { self.b_media? } else { self.a_media? };
        let answerer = if from_a { Leg::A } else { Leg::B };
        let offerer = answerer.other();
        let offer = self.offers[leg_index(offerer)].as_ref();
        self.sdp_version += 1;
        let mut out = sdp::rewrite_for_relay(&parsed, local, 1, self.sdp_version).ok()?;
        if let Some(offer) = offer {
            negotiation::answer_to_offer(&mut out, offer);
        }
        if let Some(m) = sdp::remote_media(&parsed) {
            let (theirs, ours) = dtmf::answered(offer, &m);
            self.codecs[leg_index(offerer)] = theirs;
            self.codecs[leg_index(answerer)] = ours;
            if let Some(relay) = &self.relay {
                relay.set_remote(answerer, m.addr);
                relay.set_codec(offerer, theirs);
                relay.set_codec(answerer, ours);
            }
        }
        Some(out.to_bytes())
    }

    fn response(&mut self, resp: Response) {
        let Some((_, method)) = message::cseq(&resp) else {
            return;
        };
        let branch = top_branch(&resp.headers).unwrap_or_default();
        if let Some(i) = self.relayed.iter().position(|(b, _)| *b == branch) {
            return self.relayed_response(i, resp);
        }
        if method != Method::Invite || self.is_a(&resp.headers) {
            return;
        }
        let code = resp.status_code.code();
        let Some(i) = self.forks.iter().position(|f| f.branch == branch) else {
            // A 2xx retransmission after the client transaction ended.
            if (200..300).contains(&code) {
                self.ack_or_drop_stray(&resp);
            }
            return;
        };
        match code {
            100 => {}
            101..=199 => self.provisional(i, resp),
            200..=299 => self.answered(i, resp),
            401 | 407 if self.answer_challenge(i, &resp) => {}
            _ => self.fork_failed(i, code),
        }
    }

    fn provisional(&mut self, i: usize, resp: Response) {
        if let Some(f) = self.forks.get_mut(i) {
            if f.state == ForkState::Calling {
                f.state = ForkState::Early;
            }
        }
        if self.phase != Phase::Ringing {
            return;
        }
        let code = resp.status_code.code();
        let body = if code == 183 && !resp.body.is_empty() {
            self.rewrite_answer(&resp.body, false)
        } else {
            None
        };
        let code = if code == 183 && body.is_none() {
            180
        } else {
            code
        };
        let contact = self.ctx.addressing.contact(&self.s.a_peer, &self.s.callee);
        self.respond_to(
            self.s.a_key.clone(),
            &self.s.a_invite.clone(),
            code,
            Some(&self.a_tag.clone()),
            Some((body.unwrap_or_default(), Some(&contact))),
        );
    }

    fn ack_2xx(&self, invite: &Request, resp: &Response, peer: Peer) -> Option<Dialog> {
        let mut dialog = Dialog::uac(invite, resp).ok()?;
        let branch = new_branch();
        let via = self.ctx.addressing.via(&peer, &branch);
        let contact = self.ctx.addressing.contact(&peer, &self.s.caller);
        let seq = message::cseq(invite).map(|(s, _)| s).unwrap_or(1);
        let mut ack = dialog.request(Method::Ack, &via, &contact, Some(seq));
        ack.headers = message::finish(ack.headers, 0, &self.ctx.config.sip.user_agent);
        self.send(CallCommand::Stateless {
            message: SipMessage::Request(ack),
            to: peer,
        });
        Some(dialog)
    }

    fn bye_dialog(&self, dialog: &mut Dialog, peer: Peer, user: &str) {
        let branch = new_branch();
        let via = self.ctx.addressing.via(&peer, &branch);
        let contact = self.ctx.addressing.contact(&peer, user);
        let mut bye = dialog.request(Method::Bye, &via, &contact, None);
        bye.headers = message::finish(bye.headers, 0, &self.ctx.config.sip.user_agent);
        self.send(CallCommand::Request {
            request: bye,
            to: peer,
        });
    }

    fn answered(&mut self, i: usize, resp: Response) {
        let Some(f) = self.forks.get(i) else { return };
        let (invite, peer) = (f.invite.clone(), f.peer);
        let to_tag = resp
            .to_header()
            .ok()
            .and_then(|t| tag_of(t.value()).map(str::to_owned));
        let same_dialog = self
            .b_dialog
            .as_ref()
            .map(|d| Some(&d.remote_tag) == to_tag.as_ref())
            .unwrap_or(false);
        if same_dialog {
            // Retransmitted 2xx: acknowledge again.
            let _ = self.ack_2xx(&invite, &resp, peer);
            return;
        }
        let Some(mut dialog) = self.ack_2xx(&invite, &resp, peer) else {
            warn!("2xx without a usable Contact");
            return;
        };
        if let Some(f) = self.forks.get_mut(i) {
            f.state = ForkState::Done;
            f.final_code = Some(resp.status_code.code());
        }
        if self.phase != Phase::Ringing {
            // Answered after the caller cancelled or another fork won.
            info!("late answer: hanging it up");
            self.bye_dialog(&mut dialog, peer, &self.s.caller.clone());
            return;
        }
        let body = self.rewrite_answer(&resp.body, false).unwrap_or_default();
        self.b_dialog = Some(dialog);
        self.b_peer = Some(peer);
        self.cancel_forks(Some(i));
        match Dialog::uas(&self.s.a_invite, &self.a_tag) {
            Ok(d) => self.a_dialog = Some(d),
            Err(e) => warn!(error = %e, "caller dialog incomplete"),
        }
        let contact = self.ctx.addressing.contact(&self.s.a_peer, &self.s.callee);
        let mut resp_a = response_for(&self.s.a_invite, 200, Some(&self.a_tag));
        resp_a
            .headers
            .push(Header::Contact(rsip::headers::Contact::new(format!(
                "<{contact}>"
            ))));
        resp_a.headers.push(Header::Allow(rsip::headers::Allow::new(
            "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE",
        )));
        super::finish_response(&mut resp_a, body, &self.ctx.config.sip.user_agent);
        self.sip_status = 200;
        self.send(CallCommand::Respond {
            key: self.s.a_key.clone(),
            response: resp_a,
        });
        self.phase = Phase::Answered;
        self.disposition = Disposition::Answered;
        self.answered_ms = Some(now_ms());
        info!("call answered");
        self.start_media_features();
        if let Some(relay) = &self.relay {
            let (id, point) = (&self.s.a_call_id, relay.tap_point());
            let taps = &self.ctx.taps;
            taps.register_call(id, point, &self.s.caller, &self.s.callee);
        }
        let live = LiveCall {
            call_id: self.s.a_call_id.clone(),
            caller: self.s.caller.clone(),
            callee: self.s.callee.clone(),
            answered_at_ms: self.answered_ms.unwrap_or_else(now_ms),
            recording: self.recording.state(),
        };
        self.ctx.calls.add(live, self.control.clone());
        self.listed = true;
    }

    /// Once answered (the legs' codecs are set by the answer): record the
    /// call and listen for tones from the legs that send no events.
    fn start_media_features(&mut self) {
        let Some(relay) = &self.relay else { return };

        self.media_events = Some(relay.events());
        if self.ctx.config.media.inband_dtmf {
            for leg in [Leg::A, Leg::B] {
                if self.codecs[leg_index(leg)].telephone_event.is_none() {
                    relay.detect_inband(leg, true);
                }
            }
        }
        let rec = &self.ctx.config.recording;
        if rec.enabled {
            let spec = RecordingSpec {
                call_id: self.s.a_call_id.clone(),
                layout: rec.layout,
                started_at_ms: now_ms(),
            };
            match self.ctx.recorder.record(spec) {
                Ok(handle) => {
                    relay.record(handle);
                    self.recording = RecordingControl::new(RecordingState::Recording);
                }
                Err(e) => warn!(error = %e, "call not recorded"),
            }
        }
    }

    /// A command from outside the call (see `control.rs`).
    fn command(&mut self, command: Control) {
        let relay = self
            .relay
            .as_ref()
            .filter(|_| self.phase == Phase::Answered);
        let (recorder, call_id) = (&self.ctx.recorder, &self.s.a_call_id);
        let layout = self.ctx.config.recording.layout;
        let start = || {
            recorder.record(RecordingSpec {
                call_id: call_id.clone(),
                layout,
                started_at_ms: now_ms(),
            })
        };
        let calls = &self.ctx.calls;
        let publish = |state: RecordingState| {
            info!(
                recording = state.as_str(),
                "recording changed by call control"
            );
            calls.set_recording(call_id, state);
        };
        control::execute(command, relay, &mut self.recording, start, publish);
    }

    /// Takes the call out of the directory of live calls.
    fn unlist(&mut self) {
        if std::mem::take(&mut self.listed) {
            self.ctx.calls.remove(&self.s.a_call_id);
        }
    }

    fn media_event(&mut self, ev: MediaEvent) {
        match ev {
            MediaEvent::Digit { leg, digit } => self.digit(leg, digit),
            MediaEvent::PlaybackFinished { leg } => {
                // Music on hold ran out: start it again while still held.
                if self.holding[leg_index(leg.other())] {
                    self.play_music(leg);
                }
            }
        }
    }

    /// Whether the B leg may be offered RFC 4733 events: always, unless it
    /// is a trunk that takes keys as SIP INFO or tones.
    fn trunk_takes_events(&self) -> bool {
        self.s
            .plan
            .media
            .as_ref()
            .is_none_or(|m| m.dtmf == DtmfMode::Rfc4733)
    }

    /// A key from the phone towards a trunk that takes keys as SIP INFO.
    /// False when the call has no such trunk.
    fn info_to_trunk(&mut self, digit: &DigitEvent) -> bool {
        let Some(body) = super::outbound::info_key_press(self.s.plan.media.as_ref(), digit) else {
            return false;
        };
        let (Some(dialog), Some(peer)) = (self.b_dialog.as_mut(), self.b_peer) else {
            return true;
        };
        let via = self.ctx.addressing.via(&peer, &new_branch());
        let contact = self.ctx.addressing.contact(&peer, &self.s.caller);
        let ua = &self.ctx.config.sip.user_agent;
        let request = super::outbound::info_request(dialog, &via, &contact, body, ua);
        self.send(CallCommand::Request { request, to: peer });
        true
    }

    /// A key pressed on `leg`: logged and counted once, and played to the
    /// other leg when it would not get it otherwise.
    fn digit(&mut self, leg: Leg, digit: DigitEvent) {
        let source = match digit.source {
            DigitSource::Rfc4733 => "rfc4733",
            DigitSource::Info => "info",
            DigitSource::Inband => "inband",
        };
        info!(
            leg = ?leg,
            digit = %digit.digit,
            source,
            duration_ms = digit.duration_ms,
            "DTMF digit"
        );
        if let Ok(c) = self.ctx.metrics.register_counter(
            &format!("dtmf_digits_{source}_total"),
            "DTMF key presses received, by how they were signalled.",
        ) {
            c.inc();
        }
        let to = leg.other();
        if to == Leg::B && self.info_to_trunk(&digit) {
            debug!(digit = %digit.digit, "DTMF digit sent to the trunk as SIP INFO");
            return;
        }
        if let Some(relay) = &self.relay {
            if dtmf::regenerate(digit.source, self.codecs[leg_index(to)]) {
                debug!(?to, digit = %digit.digit, "DTMF digit played to the other leg");
                let duration = dtmf::regenerated_duration(&digit);
                if let Err(e) = relay.send_digit(to, digit.digit, duration) {
                    warn!(error = %e, "DTMF digit not played");
                }
            }
        }
    }

    /// `leg` hears music on hold (silence when none is configured).
    fn play_music(&self, leg: Leg) {
        let Some(relay) = &self.relay else { return };
        let mut list = Playlist::new();
        for sound in &self.ctx.config.media.music_on_hold {
            list = list.then_sound(sound.clone());
        }
        if list.items().is_empty() {
            list = list.then_silence(60_000);
        }
        relay.play(leg, Player::new(list));
    }

    /// A re-INVITE or UPDATE from one leg: music for the other while held.
    fn hold_changed(&mut self, from_a: bool, body: &[u8]) {
        let Some(m) = sdp::parse(body).ok().and_then(|s| sdp::remote_media(&s)) else {
            return;
        };
        let (holder, held) = if from_a {
            (Leg::A, Leg::B)
        } else {
            (Leg::B, Leg::A)
        };
        let was = self.holding[leg_index(holder)];
        let now = m.is_hold();
        self.holding[leg_index(holder)] = now;
        match (was, now) {
            (false, true) => {
                info!(?held, "on hold: music on hold");
                self.play_music(held);
            }
            (true, false) => {
                if let Some(relay) = &self.relay {
                    relay.stop_playing(held);
                }
            }
            _ => {}
        }
    }

    fn ack_or_drop_stray(&mut self, resp: &Response) {
        let to_tag = resp
            .to_header()
            .ok()
            .and_then(|t| tag_of(t.value()).map(str::to_owned));
        let ours = self
            .b_dialog
            .as_ref()
            .map(|d| Some(&d.remote_tag) == to_tag.as_ref())
            .unwrap_or(false);
        let Some(f) = self.forks.first() else { return };
        let (invite, peer) = (f.invite.clone(), self.b_peer.unwrap_or(f.peer));
        if let Some(mut d) = self.ack_2xx(&invite, resp, peer) {
            if !ours {
                self.bye_dialog(&mut d, peer, &self.s.caller.clone());
            }
        }
    }

    fn fork_failed(&mut self, i: usize, code: u16) {
        if let Some(f) = self.forks.get_mut(i) {
            f.state = ForkState::Done;
            f.final_code = Some(code);
        }
        if self.phase != Phase::Ringing || self.forks.iter().any(|f| f.state != ForkState::Done) {
            return;
        }
        let codes: Vec<u16> = self.forks.iter().filter_map(|f| f.final_code).collect();
        let best = if codes.iter().any(|c| *c == 486 || *c == 600) {
            486
        } else if codes.contains(&603) {
            603
        } else if codes.iter().all(|c| *c == 408 || *c == 480 || *c == 487) {
            480
        } else {
            codes.first().copied().unwrap_or(480)
        };
        info!(status = best, "callee did not take the call");
        self.hangup_side = Some(Side::Callee);
        self.reject(best, disposition_for(best));
    }

    /// A trunk's 401/407 to our INVITE: send it again once with the
    /// trunk's credentials (same Call-ID and tags, next CSeq, new branch).
    fn answer_challenge(&mut self, i: usize, resp: &Response) -> bool {
        let Some(creds) = self.s.plan.credentials.clone() else {
            return false;
        };
        let Some(f) = self.forks.get(i) else {
            return false;
        };
        if f.challenged || self.phase != Phase::Ringing {
            return false;
        }
        let branch = new_branch();
        let via = self.ctx.addressing.via(&f.peer, &branch);
        let cnonce = super::new_tag();
        let Some(invite) =
            super::outbound::authenticated_retry(&f.invite, resp, &creds, &via, &cnonce)
        else {
            info!("trunk challenge cannot be answered");
            return false;
        };
        let peer = f.peer;
        info!(
            status = resp.status_code.code(),
            "answering the trunk's challenge"
        );
        self.send(CallCommand::Request {
            request: invite.clone(),
            to: peer,
        });
        if let Some(f) = self.forks.get_mut(i) {
            f.branch = branch;
            f.invite = invite;
            f.state = ForkState::Calling;
            f.challenged = true;
        }
        true
    }

    fn timeout(&mut self, key: TransactionKey) {
        // Timer B on a fork: that contact is gone.
        if let Some(i) = self
            .forks
            .iter()
            .position(|f| f.branch == key.branch() && f.state != ForkState::Done)
        {
            self.fork_failed(i, 408);
        }
    }

    fn cancel_forks(&mut self, except: Option<usize>) {
        let mut cancels = Vec::new();
        for (i, f) in self.forks.iter().enumerate() {
            if Some(i) == except || f.state == ForkState::Done {
                continue;
            }
            let mut h = rsip::Headers::default();
            for header in f.invite.headers.iter() {
                match header {
                    Header::Via(_)
                    | Header::From(_)
                    | Header::To(_)
                    | Header::CallId(_)
                    | Header::MaxForwards(_) => h.push(header.clone()),
                    _ => {}
                }
            }
            let seq = message::cseq(&f.invite).map_or(1, |(seq, _)| seq);
            h.push(Header::CSeq(rsip::headers::CSeq::new(format!(
                "{seq} CANCEL"
            ))));
            let h = message::finish(h, 0, &self.ctx.config.sip.user_agent);
            let cancel = Request {
                method: Method::Cancel,
                uri: f.invite.uri.clone(),
                version: rsip::Version::V2,
                headers: h,
                body: Vec::new(),
            };
            cancels.push((cancel, f.peer));
        }
        for (cancel, peer) in cancels {
            self.send(CallCommand::Request {
                request: cancel,
                to: peer,
            });
        }
    }

    fn no_answer(&mut self) {
        info!("no answer");
        self.cancel_forks(None);
        self.hangup_side = Some(Side::System);
        self.reject(480, Disposition::NoAnswer);
    }

    fn bye_a(&mut self) {
        if let Some(mut d) = self.a_dialog.take() {
            let peer = self.s.a_peer;
            self.bye_dialog(&mut d, peer, &self.s.callee.clone());
        }
    }

    fn bye_b(&mut self) {
        if let (Some(mut d), Some(peer)) = (self.b_dialog.take(), self.b_peer) {
            self.bye_dialog(&mut d, peer, &self.s.caller.clone());
        }
    }

    fn hang_up_both(&mut self, side: Side) {
        self.hangup_side = Some(side);
        match self.phase {
            Phase::Answered => {
                self.bye_a();
                self.bye_b();
            }
            Phase::Ringing => {
                self.cancel_forks(None);
                self.respond_a(503, vec![], None);
            }
            Phase::Ending => {}
        }
        self.phase = Phase::Ending;
    }

    fn relayed_response(&mut self, i: usize, resp: Response) {
        let code = resp.status_code.code();
        if code < 200 {
            return;
        }
        let (_, r) = self.relayed.remove(i);
        // A 2xx to our re-INVITE needs our ACK on that leg.
        if r.request.method == Method::Invite && (200..300).contains(&code) {
            let (dialog, peer) = if r.from_a {
                (self.b_dialog.as_ref(), self.b_peer)
            } else {
                (self.a_dialog.as_ref(), Some(self.s.a_peer))
            };
            if let (Some(d), Some(peer), Some((seq, _))) =
                (dialog.cloned(), peer, message::cseq(&resp))
            {
                let mut d = d;
                let branch = new_branch();
                let via = self.ctx.addressing.via(&peer, &branch);
                let contact = self.ctx.addressing.contact(&peer, &self.s.caller);
                let mut ack = d.request(Method::Ack, &via, &contact, Some(seq));
                ack.headers = message::finish(ack.headers, 0, &self.ctx.config.sip.user_agent);
                self.send(CallCommand::Stateless {
                    message: SipMessage::Request(ack),
                    to: peer,
                });
            }
        }
        let body = if !resp.body.is_empty()
            && matches!(r.request.method, Method::Invite | Method::Update)
        {
            self.rewrite_answer(&resp.body, !r.from_a)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let tag = if r.from_a {
            self.a_tag.clone()
        } else {
            self.b_from_tag.clone()
        };
        let peer = if r.from_a {
            self.s.a_peer
        } else {
            self.b_peer.unwrap_or(self.s.a_peer)
        };
        let user = if r.from_a {
            self.s.callee.clone()
        } else {
            self.s.caller.clone()
        };
        let contact = self.ctx.addressing.contact(&peer, &user);
        self.respond_to(
            r.key,
            &r.request,
            code,
            Some(&tag),
            Some((body, Some(&contact))),
        );
    }

    async fn finish(mut self) {
        self.ctx.taps.remove_call(&self.s.a_call_id);
        self.unlist();
        let mut lines = [None, None];
        if let Some(relay) = self.relay.take() {
            let report = relay.stop().await;
            debug!(stats = ?report.stats, "media relay stopped");
            for (i, q) in report.quality.iter().enumerate() {
                lines[i] = super::line_stats(if i == 0 { "caller" } else { "callee" }, q);
            }
            if let Some(rec) = report.recording {
                info!(recording = %rec.id, "call recording closed");
            }
        }
        let ended = now_ms();
        let rec = CallRecord {
            call_id: self.s.a_call_id.clone(),
            started_at_ms: self.started_ms,
            answered_at_ms: self.answered_ms,
            ended_at_ms: ended,
            caller: self.s.caller.clone(),
            callee: self.s.callee.clone(),
            direction: self.s.plan.direction,
            disposition: self.disposition,
            hangup_side: self.hangup_side,
            sip_status: self.sip_status,
            ring_ms: 0,
            talk_ms: 0,
            caller_ip: Some(self.s.a_peer.remote.ip().to_string()),
            caller_line: lines[0],
            callee_line: lines[1],
            did: self.s.plan.did.clone(),
            trunk: self.s.plan.trunk.clone(),
        }
        .with_derived_durations();
        let call_ids = vec![self.s.a_call_id.clone(), self.s.b_call_id.clone()];
        super::record_call_end(&self.ctx, rec, call_ids);
    }
}

/// The appliance-wide media counters a call's relay keeps current.
pub(super) fn relay_metrics(m: &Metrics) -> RelayMetrics {
    let counter = |name: &str, help: &str| m.register_counter(name, help).unwrap_or_default();
    RelayMetrics {
        relayed: m.rtp_packets_relayed().clone(),
        // Packets sent towards leg B came from the caller.
        a_to_b: counter(
            "rtp_packets_caller_to_callee_total",
            "RTP packets relayed from callers to callees.",
        ),
        b_to_a: counter(
            "rtp_packets_callee_to_caller_total",
            "RTP packets relayed from callees to callers.",
        ),
        dropped: m.rtp_packets_dropped().clone(),
    }
}

/// The next media event, or never when the call has no media yet.
async fn next_media_event(
    events: &mut Option<mpsc::UnboundedReceiver<MediaEvent>>,
) -> Option<MediaEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn leg_index(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}
