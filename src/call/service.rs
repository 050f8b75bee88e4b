//! Calls denwa answers itself: a phone joining a conference room, and a
//! supervisor attaching to an agent's call (monitor, whisper, barge).
//!
//! Owns: one dialog as UAS (RFC 3261 §13.3: the 200 with an SDP answer,
//! the ACK, CANCEL before the answer, BYE either way, re-INVITE and UPDATE
//! offers, other in-dialog requests), the phone's media endpoint handed to
//! the media engine (a room member or a supervisor's tap), and the call
//! record. Who may supervise whom is decided here.
//!
//! Must not: reach into the supervised call's actor (it finds the call
//! only through [`super::Taps`]) or touch the media of a room itself; the
//! mixing is the media worker's.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use rsip::prelude::*;
use rsip::{Header, Method, Request};
use tokio::time::Instant;
use tracing::{info, warn};

use super::context::{CallCommand, CallContext};
use super::destination::{Service, Supervision};
use super::taps::{Claim, Lookup};
use super::{new_branch, new_tag, CallEvent, CallSetup, EventReceiver};
use crate::media::g711::Codec;
use crate::media::mixer::{Frame, FRAME_SAMPLES};
use crate::media::relay::{MediaEndpoint, MemberHandle, SupervisorHandle, TapMode, TapPoint};
use crate::media::sdp;
use crate::media::tones::{ToneGenerator, ToneSpec};
use crate::sip::dialog::Dialog;
use crate::sip::message::{self, response_for, tag_of};
use crate::sip::transaction::TransactionKey;
use crate::store::cdr::{CallRecord, Direction, Disposition, Side};

pub(super) mod answer;

use answer::Negotiated;

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";
/// The longest join or leave tone played to a room (a repeating tone is
/// cut there).
const MAX_TONE_FRAMES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The INVITE has no final answer yet.
    Trying,
    /// 200 sent; the phone is in the room or attached.
    Answered,
    Ended,
}

/// The supervised call, how to attach, and the hold on it.
type Supervising = (TapPoint, TapMode, Claim<TapPoint>);

/// The phone's media, once attached.
enum Media {
    None,
    Room(MemberHandle),
    /// The claim is let go with the handle.
    Supervisor(SupervisorHandle, Claim<TapPoint>),
}

impl Media {
    fn set_remote(&self, rtp: SocketAddr) {
        match self {
            Media::Room(m) => m.set_remote(rtp),
            Media::Supervisor(s, _) => s.set_remote(rtp),
            Media::None => {}
        }
    }
}

/// Our side of the SDP exchange.
struct Answer {
    negotiated: Negotiated,
    local: SocketAddr,
    session_id: u64,
    version: u64,
    body: Vec<u8>,
}

struct ServiceCall {
    ctx: CallContext,
    s: CallSetup,
    service: Service,
    tag: String,
    dialog: Option<Dialog>,
    media: Media,
    answer: Option<Answer>,
    phase: Phase,
    started_ms: i64,
    answered_ms: Option<i64>,
    disposition: Disposition,
    hangup_side: Option<Side>,
    sip_status: u16,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What denwa accepts of an SDP body (`keep`: the codec in use).
fn negotiate(body: &[u8], keep: Option<Codec>) -> Result<Negotiated, String> {
    let offer = sdp::parse(body).map_err(|e| e.to_string())?;
    answer::negotiate(&offer, keep).map_err(|e| e.to_string())
}

/// A tone as 20 ms frames, at most [`MAX_TONE_FRAMES`] of them.
fn tone_frames(spec: &ToneSpec) -> Vec<Frame> {
    let mut tone = ToneGenerator::new(spec);
    let mut frames = Vec::new();
    while !tone.is_finished() && frames.len() < MAX_TONE_FRAMES {
        let mut frame = [0i16; FRAME_SAMPLES];
        if tone.fill(&mut frame) == 0 {
            break;
        }
        frames.push(frame);
    }
    frames
}

pub(super) async fn run(
    setup: CallSetup,
    service: Service,
    mut events: EventReceiver,
    ctx: CallContext,
) {
    ctx.metrics.call_started();
    let mut call = ServiceCall {
        ctx,
        s: setup,
        service,
        tag: new_tag(),
        dialog: None,
        media: Media::None,
        answer: None,
        phase: Phase::Trying,
        started_ms: now_ms(),
        answered_ms: None,
        disposition: Disposition::Failed,
        hangup_side: None,
        sip_status: 0,
    };
    info!(caller = %call.s.caller, callee = %call.s.callee, service = ?call.service, "service call");
    // A CANCEL that came in before the actor ran is honoured first.
    while let Ok(ev) = events.try_recv() {
        call.handle(*ev);
    }
    if call.phase == Phase::Trying {
        call.start().await;
    }
    let until = Instant::now() + call.ctx.config.calls.max_duration;
    while call.phase != Phase::Ended {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => call.handle(*ev),
                None => break,
            },
            () = supervised_call_ended(&mut call.media) => {
                info!("the supervised call has ended");
                call.hang_up(Side::System);
            }
            () = tokio::time::sleep_until(until) => {
                info!("maximum call duration reached");
                call.hang_up(Side::System);
            }
        }
    }
    call.finish().await;
}

/// Resolves when the call a supervisor is attached to ends; never for a
/// room member.
async fn supervised_call_ended(media: &mut Media) {
    match media {
        Media::Supervisor(s, _) => s.call_ended().await,
        _ => std::future::pending().await,
    }
}

impl ServiceCall {
    fn send(&self, cmd: CallCommand) {
        let _ = self.ctx.commands.send(cmd);
    }

    fn contact(&self) -> String {
        self.ctx.addressing.contact(&self.s.a_peer, &self.s.callee)
    }

    /// Answers `req` within transaction `key`; a body is SDP and comes with
    /// our Contact.
    fn respond(&self, key: TransactionKey, req: &Request, code: u16, body: Option<Vec<u8>>) {
        let mut resp = response_for(req, code, Some(&self.tag));
        if (200..300).contains(&code) {
            resp.headers
                .push(Header::Contact(rsip::headers::Contact::new(format!(
                    "<{}>",
                    self.contact()
                ))));
        }
        if matches!(code, 200 | 405 | 501) {
            resp.headers
                .push(Header::Allow(rsip::headers::Allow::new(ALLOW)));
        }
        super::finish_response(
            &mut resp,
            body.unwrap_or_default(),
            &self.ctx.config.sip.user_agent,
        );
        self.send(CallCommand::Respond {
            key,
            response: resp,
        });
    }

    /// The final answer to the INVITE that started the call.
    fn respond_invite(&mut self, code: u16, body: Option<Vec<u8>>) {
        self.sip_status = code;
        let (key, invite) = (self.s.a_key.clone(), self.s.a_invite.clone());
        self.respond(key, &invite, code, body);
    }

    fn reject(&mut self, code: u16, disposition: Disposition) {
        info!(status = code, "service call refused");
        self.disposition = disposition;
        self.respond_invite(code, None);
        self.phase = Phase::Ended;
    }

    /// Who may do what, then the offer, then the media, then the 200.
    async fn start(&mut self) {
        let supervising = match self.service.clone() {
            Service::Room(_) => None,
            Service::Supervise { mode, target } => match self.supervision(mode, &target) {
                Ok(found) => Some(found),
                Err((code, disposition)) => return self.reject(code, disposition),
            },
        };
        let negotiated = match negotiate(&self.s.a_invite.body, None) {
            Ok(n) => n,
            Err(e) => {
                info!(error = %e, "no acceptable SDP offer");
                return self.reject(488, Disposition::Failed);
            }
        };
        let dialog = match Dialog::uas(&self.s.a_invite, &self.tag) {
            Ok(d) => d,
            Err(e) => {
                info!(error = %e, "INVITE cannot start a dialog");
                return self.reject(400, Disposition::Failed);
            }
        };
        let ip = self.ctx.addressing.media_ip(&self.s.a_peer);
        let endpoint = match MediaEndpoint::bind(ip, &self.ctx.ports).await {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "no RTP ports");
                return self.reject(503, Disposition::Failed);
            }
        };
        let local = endpoint.local_rtp_addr();
        self.media = self.attach(endpoint, &negotiated, supervising);
        let session_id = u64::from(rand::random::<u32>());
        let body = negotiated.answer(local, session_id, 1).to_bytes();
        self.answer = Some(Answer {
            negotiated,
            local,
            session_id,
            version: 1,
            body: body.clone(),
        });
        self.dialog = Some(dialog);
        self.respond_invite(200, Some(body));
        self.phase = Phase::Answered;
        self.disposition = Disposition::Answered;
        self.answered_ms = Some(now_ms());
        info!("service call answered");
    }

    /// Hands the phone's endpoint to the media engine: into the room, or
    /// onto the supervised call.
    fn attach(
        &self,
        endpoint: MediaEndpoint,
        negotiated: &Negotiated,
        supervise: Option<Supervising>,
    ) -> Media {
        let (remote, codec) = (negotiated.remote, negotiated.leg_codec());
        match (&self.service, supervise) {
            (Service::Room(room), _) => {
                let tone = tone_frames(&self.ctx.config.media.tones.beep);
                let member = self
                    .ctx
                    .media
                    .join_room(room, endpoint, remote, codec, tone);
                info!(room = %room, "joined the conference room");
                Media::Room(member)
            }
            (Service::Supervise { .. }, Some((point, tap, claim))) => {
                info!(mode = ?tap, "supervisor attached");
                Media::Supervisor(point.attach(endpoint, remote, codec, tap), claim)
            }
            (Service::Supervise { .. }, None) => Media::None,
        }
    }

    /// The supervised call and the tap mode, or the refusal: 403 for a
    /// caller who is not a supervisor, 404 for an unknown agent, 480 when
    /// the agent is in no call, 486 when another supervisor is on it.
    fn supervision(
        &self,
        mode: Supervision,
        target: &str,
    ) -> Result<Supervising, (u16, Disposition)> {
        let extensions = &self.ctx.config.extensions;
        if !extensions.get(&self.s.caller).is_some_and(|e| e.supervisor) {
            info!(caller = %self.s.caller, mode = mode.as_str(), "not a supervisor");
            return Err((403, Disposition::Rejected));
        }
        if !extensions.contains_key(target) {
            info!(target, "no such extension to supervise");
            return Err((404, Disposition::NotFound));
        }
        let (point, leg, claim) = match self.ctx.taps.claim(target) {
            Lookup::Found { point, leg, claim } => (point, leg, claim),
            Lookup::NotInCall => {
                info!(target, "extension to supervise is in no call");
                return Err((480, Disposition::Unavailable));
            }
            Lookup::Supervised => {
                info!(target, "the call has a supervisor already");
                return Err((486, Disposition::Busy));
            }
        };
        let tap = match mode {
            Supervision::Monitor => TapMode::Monitor,
            Supervision::Whisper => TapMode::Whisper(leg),
            Supervision::Barge => TapMode::Barge,
        };
        info!(target, leg = ?leg, mode = mode.as_str(), "supervising");
        Ok((point, tap, claim))
    }

    fn handle(&mut self, ev: CallEvent) {
        match ev {
            CallEvent::Request {
                key,
                request,
                cancels,
                ..
            } => self.request(key, request, cancels),
            CallEvent::AckTimeout { .. } => {
                warn!("the phone never acknowledged the answer");
                self.hang_up(Side::System);
            }
            CallEvent::Shutdown => {
                info!("hanging up: denwa is stopping");
                self.hang_up(Side::System);
            }
            // Our BYE's answer, ACKs and timeouts need nothing more.
            CallEvent::Ack { .. }
            | CallEvent::Response { .. }
            | CallEvent::StrayResponse { .. }
            | CallEvent::Timeout { .. } => {}
        }
    }

    fn request(&mut self, key: TransactionKey, req: Request, cancels: Option<TransactionKey>) {
        if req.method == Method::Cancel {
            self.respond(key, &req, 200, None);
            if cancels.is_some() && self.phase == Phase::Trying {
                info!("caller cancelled");
                self.hangup_side = Some(Side::Caller);
                self.reject(487, Disposition::Cancelled);
            }
            return;
        }
        if !self.in_our_dialog(&req) {
            return self.respond(key, &req, 481, None);
        }
        let seq = message::cseq(&req).map(|(seq, _)| seq).unwrap_or(0);
        if let Some(d) = self.dialog.as_mut() {
            if !d.accept_remote_cseq(seq) {
                return self.respond(key, &req, 500, None);
            }
        }
        match req.method {
            Method::Bye => {
                self.respond(key, &req, 200, None);
                info!("caller hung up");
                self.hangup_side = Some(Side::Caller);
                self.phase = Phase::Ended;
            }
            Method::Invite => self.reoffer(key, req),
            Method::Update if !req.body.is_empty() => self.reoffer(key, req),
            Method::Update | Method::Info | Method::Options => self.respond(key, &req, 200, None),
            _ => self.respond(key, &req, 501, None),
        }
    }

    /// An in-dialog request for our dialog (its To tag is ours).
    fn in_our_dialog(&self, req: &Request) -> bool {
        let Some(dialog) = &self.dialog else {
            return false;
        };
        let to_tag = req
            .to_header()
            .ok()
            .and_then(|t| tag_of(t.value()).map(str::to_owned));
        let from_tag = req
            .from_header()
            .ok()
            .and_then(|f| tag_of(f.value()).map(str::to_owned));
        to_tag.as_deref() == Some(dialog.local_tag.as_str())
            && from_tag.as_deref() == Some(dialog.remote_tag.as_str())
    }

    /// A re-INVITE or UPDATE: a new offer (or none: ours again as the
    /// offer). The answer keeps the codec and port; its version goes up
    /// only when it changes.
    fn reoffer(&mut self, key: TransactionKey, req: Request) {
        if let Some(d) = self.dialog.as_mut() {
            d.refresh_target(&req.headers);
        }
        let Some(current) = self.answer.as_ref() else {
            return self.respond(key, &req, 491, None);
        };
        if req.body.is_empty() {
            let body = current.body.clone();
            return self.respond(key, &req, 200, Some(body));
        }
        let negotiated = match negotiate(&req.body, Some(current.negotiated.codec)) {
            Ok(n) => n,
            Err(e) => {
                info!(error = %e, "new offer refused");
                return self.respond(key, &req, 488, None);
            }
        };
        if let Some(remote) = negotiated.remote {
            self.media.set_remote(remote);
        }
        let Some(answer) = self.answer.as_mut() else {
            return;
        };
        if negotiated != answer.negotiated {
            answer.version += 1;
            answer.body = negotiated
                .answer(answer.local, answer.session_id, answer.version)
                .to_bytes();
            answer.negotiated = negotiated;
        }
        let body = answer.body.clone();
        self.respond(key, &req, 200, Some(body));
    }

    /// denwa ends the call: BYE once answered, 503 before.
    fn hang_up(&mut self, side: Side) {
        if self.hangup_side.is_none() {
            self.hangup_side = Some(side);
        }
        match self.phase {
            Phase::Trying => self.reject(503, Disposition::Failed),
            Phase::Answered => self.send_bye(),
            Phase::Ended => {}
        }
        self.phase = Phase::Ended;
    }

    fn send_bye(&mut self) {
        let peer = self.s.a_peer;
        let via = self.ctx.addressing.via(&peer, &new_branch());
        let contact = self.contact();
        let Some(dialog) = self.dialog.as_mut() else {
            return;
        };
        let mut bye = dialog.request(Method::Bye, &via, &contact, None);
        bye.headers = message::finish(bye.headers, 0, &self.ctx.config.sip.user_agent);
        self.send(CallCommand::Request {
            request: bye,
            to: peer,
        });
    }

    async fn finish(mut self) {
        let quality = match std::mem::replace(&mut self.media, Media::None) {
            Media::Room(member) => {
                let tone = tone_frames(&self.ctx.config.media.tones.beep);
                let quality = member.leave(tone).await;
                info!("left the conference room");
                Some(quality)
            }
            Media::Supervisor(supervisor, claim) => {
                supervisor.detach();
                drop(claim);
                None
            }
            Media::None => None,
        };
        let rec = CallRecord {
            call_id: self.s.a_call_id.clone(),
            started_at_ms: self.started_ms,
            answered_at_ms: self.answered_ms,
            ended_at_ms: now_ms(),
            caller: self.s.caller.clone(),
            callee: self.s.callee.clone(),
            direction: Direction::Internal,
            disposition: self.disposition,
            hangup_side: self.hangup_side,
            sip_status: self.sip_status,
            ring_ms: 0,
            talk_ms: 0,
            caller_ip: Some(self.s.a_peer.remote.ip().to_string()),
            caller_line: quality
                .as_ref()
                .and_then(|q| super::line_stats("caller", q)),
            callee_line: None,
        }
        .with_derived_durations();
        let call_ids = vec![self.s.a_call_id.clone(), self.s.b_call_id.clone()];
        super::record_call_end(&self.ctx, rec, call_ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tones::{Signal, ToneProfile};

    #[test]
    fn the_beep_becomes_whole_frames_of_tone() {
        let frames = tone_frames(&ToneProfile::japan().beep);
        // 500 ms of tone in 20 ms frames.
        assert_eq!(frames.len(), 25);
        let peak = frames
            .iter()
            .flat_map(|f| f.iter())
            .map(|s| s.unsigned_abs())
            .max();
        assert!(peak.is_some_and(|p| p > 1000), "audible: {peak:?}");
    }

    #[test]
    fn a_repeating_tone_is_cut() {
        let frames = tone_frames(&ToneSpec::continuous(Signal::single(400.0, -13.0)));
        assert_eq!(frames.len(), MAX_TONE_FRAMES);
    }
}
