//! The queue call actor: a caller who dialled a group's number, steered by
//! the ACD engine. One task per call owns the caller's leg (denwa answers
//! it itself, `caller.rs`), the agent legs the engine offers (`agent.rs`),
//! one media relay and the call record.
//!
//! The call model: leg A is the caller; the relay is created when the
//! call arrives, with leg B's remote unset, so denwa can play greetings and
//! music to A (`prompts.rs`). Every offer rings an agent on a leg of its
//! own (its own Call-ID); a leg's answer goes to the engine, which commits
//! the first and withdraws the others (CANCEL, or BYE for an answer that
//! crossed). The committed leg is bridged: its SDP becomes leg B's remote,
//! A stops hearing music (after a whisper to the agent when the group has
//! one). A hang-up on either side ends both and tells the engine.
//!
//! The engine's actions arrive on a channel of their own ([`link`]); what
//! the caller and the agents do goes back through [`AcdHandle`].
//!
//! What this module must not do: choose agents or keep queue state (the
//! engine does), or reach into another call's actor.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rsip::prelude::*;
use rsip::{Header, Method, Request};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::b2bua::{relay_metrics, target_peer};
use super::context::{CallCommand, CallContext};
use super::dtmf::leg_codec;
use super::{CallEvent, CallSetup, EventReceiver};
use crate::acd::event::{RejectReason, RouteReason};
use crate::acd::{Action, CallId, Event, GroupId, LegOutcome, OfferId};
use crate::media::player::{Player, Playlist};
use crate::media::recording::RecordingSpec;
use crate::media::relay::{Leg, MediaEndpoint, MediaEvent, RelayHandle};
use crate::registrar::location::Binding;
use crate::sip::message::{self, response_for};
use crate::sip::transaction::TransactionKey;
use crate::store::cdr::{Disposition, Side};

mod agent;
mod bridge;
mod caller;
mod end;
pub mod link;
mod prompts;

use agent::{AgentLeg, Invitation, LegKey, LegNews};
use caller::{CallerLeg, CallerNews, CallerState};
pub use link::{AcdHandle, AcdInput, CommandReceiver, CommandSender};

pub(super) const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";

/// How long an ending call waits for its agent legs' last answers.
const LINGER: Duration = Duration::from_secs(32);
/// How long after a crossing answer's BYE is answered leg B is aimed at
/// the bridged agent once more: longer than RTP already sent can take to
/// arrive.
const REAIM_AFTER: Duration = Duration::from_millis(300);
/// Most times a call may be sent on from one group to another.
const MAX_HOPS: u8 = 4;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One queue call. See the module documentation.
struct QueueCall {
    ctx: CallContext,
    s: CallSetup,
    call: CallId,
    group: GroupId,
    /// Where the engine's actions for this call arrive (cloned when the
    /// call enters another group).
    actions: CommandSender,
    caller: CallerLeg,
    relay: RelayHandle,
    b_local: SocketAddr,
    legs: Vec<AgentLeg>,
    /// The index of the bridged leg.
    bridged: Option<usize>,
    /// A whisper for the agent of this offer, played before the bridge.
    whisper: Option<(OfferId, String)>,
    whispering: bool,
    /// What the caller hears again when a playback ends (while waiting).
    again: Option<Playlist>,
    media_events: mpsc::UnboundedReceiver<MediaEvent>,
    /// The engine knows this call (it entered a group and was not routed
    /// away).
    engine_has_call: bool,
    hops: u8,
    ending: Option<Instant>,
    direct_until: Option<Instant>,
    /// When to aim leg B at the bridged agent once more (see
    /// [`QueueCall::reaim_agent`]).
    reaim_at: Option<Instant>,
    /// Who holds whom: the agent holds the caller, the caller the agent.
    agent_holds: bool,
    caller_holds: bool,
    b_answer: Option<bridge::BAnswer>,
    started_ms: i64,
    bridged_ms: Option<i64>,
    disposition: Disposition,
    hangup_side: Option<Side>,
    callee: String,
}

pub(super) async fn run(setup: CallSetup, group: GroupId, events: EventReceiver, ctx: CallContext) {
    ctx.metrics.call_started();
    info!(caller = %setup.caller, number = %setup.callee, group = %group, "queue call");
    let (actions, commands) = mpsc::unbounded_channel();
    match QueueCall::start(setup, group, ctx, actions).await {
        Ok(call) => call.serve(events, commands).await,
        Err((ctx, s, code, disposition)) => {
            end::refuse(&ctx, &s, code, disposition);
        }
    }
}

type Refusal = (CallContext, CallSetup, u16, Disposition);

/// Both legs' RTP endpoints and the relay over them, leg B's remote
/// unset; `None` when no ports are free.
async fn bind_media(
    ctx: &CallContext,
    s: &CallSetup,
    negotiated: &caller::Negotiated,
) -> Option<(RelayHandle, SocketAddr, SocketAddr)> {
    let ip = ctx.addressing.media_ip(&s.a_peer);
    let (a, b) = match (
        MediaEndpoint::bind(ip, &ctx.ports).await,
        MediaEndpoint::bind(ip, &ctx.ports).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            warn!(a = ?a.err(), b = ?b.err(), "no RTP ports");
            return None;
        }
    };
    let (a_local, b_local) = (a.local_rtp_addr(), b.local_rtp_addr());
    let metrics = relay_metrics(&ctx.metrics);
    let relay = ctx
        .media
        .start_relay(a, b, negotiated.remote, None, metrics);
    relay.set_codec(Leg::A, negotiated.leg_codec());
    Some((relay, a_local, b_local))
}

impl QueueCall {
    /// Take the caller's offer, bind both legs' media, tell the engine.
    async fn start(
        s: CallSetup,
        group: GroupId,
        ctx: CallContext,
        actions: CommandSender,
    ) -> Result<QueueCall, Refusal> {
        let negotiated = match caller::check_offer(&s.a_invite.body) {
            Ok(n) => n,
            Err(e) => {
                info!(error = %e, "no acceptable SDP offer");
                return Err((ctx, s, 488, Disposition::Failed));
            }
        };
        let Some((relay, a_local, b_local)) = bind_media(&ctx, &s, &negotiated).await else {
            return Err((ctx, s, 503, Disposition::Failed));
        };
        let media_events = relay.events();
        let call = CallId(s.a_call_id.clone());
        let arrived = ctx.acd.send(AcdInput::Arrived {
            call: call.clone(),
            group: group.clone(),
            caller: s.caller.clone(),
            actor: actions.clone(),
        });
        if !arrived {
            warn!("the ACD is not running");
            return Err((ctx, s, 503, Disposition::Failed));
        }
        let caller = CallerLeg::new(negotiated, a_local, s.a_peer, &s.callee);
        Ok(QueueCall {
            callee: group.0.clone(),
            ctx,
            s,
            call,
            group,
            actions,
            caller,
            relay,
            b_local,
            legs: Vec::new(),
            bridged: None,
            whisper: None,
            whispering: false,
            again: None,
            media_events,
            engine_has_call: true,
            hops: 0,
            ending: None,
            direct_until: None,
            reaim_at: None,
            agent_holds: false,
            caller_holds: false,
            b_answer: None,
            started_ms: now_ms(),
            bridged_ms: None,
            disposition: Disposition::Failed,
            hangup_side: None,
        })
    }

    async fn serve(mut self, mut events: EventReceiver, mut commands: CommandReceiver) {
        let longest = Instant::now() + self.ctx.config.calls.max_duration;
        loop {
            if let Some(since) = self.ending {
                let settled = self.legs.iter().all(AgentLeg::settled);
                if settled || since.elapsed() >= LINGER {
                    break;
                }
            }
            let deadline = [
                self.ending.map(|t| t + LINGER),
                self.direct_until,
                self.reaim_at,
            ]
            .into_iter()
            .flatten()
            .fold(longest, Instant::min);
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.sip(*ev),
                    None => break,
                },
                action = commands.recv(), if self.ending.is_none() => match action {
                    Some(action) => self.action(action).await,
                    None => {
                        warn!("the ACD stopped");
                        self.end_all(Side::System);
                    }
                },
                Some(ev) = self.media_events.recv() => self.media_event(ev),
                () = tokio::time::sleep_until(deadline) => self.deadline(longest),
            }
        }
        self.finish().await;
    }

    fn deadline(&mut self, longest: Instant) {
        let now = Instant::now();
        if self.reaim_at.is_some_and(|t| now >= t) {
            self.reaim_at = None;
            self.reaim_agent();
        }
        if now >= longest && self.ending.is_none() {
            info!("maximum call duration reached");
            self.end_all(Side::System);
        } else if self.direct_until.is_some_and(|t| now >= t) {
            self.direct_until = None;
            info!("nobody answered at the destination");
            self.end_refused(480, Disposition::NoAnswer);
        }
    }

    /// Tell the engine, unless it has let go of the call.
    fn tell(&self, event: Event) {
        if self.engine_has_call {
            let _ = self.ctx.acd.event(event);
        }
    }

    fn send(&self, cmd: CallCommand) {
        let _ = self.ctx.commands.send(cmd);
    }

    // ----- SIP -----

    fn sip(&mut self, ev: CallEvent) {
        match ev {
            CallEvent::Request {
                key,
                request,
                cancels,
                ..
            } => self.request(key, request, cancels.is_some()),
            CallEvent::Response { response, .. } | CallEvent::StrayResponse { response, .. } => {
                let id = message::call_id(&response.headers).unwrap_or_default();
                let Some(i) = self.legs.iter().position(|l| l.call_id == id) else {
                    return;
                };
                let news = self
                    .legs
                    .get_mut(i)
                    .and_then(|l| l.response(&self.ctx, &response));
                self.leg_news(news);
            }
            CallEvent::Timeout { key } => {
                let news: Vec<LegNews> = self
                    .legs
                    .iter_mut()
                    .filter_map(|l| l.timeout(&key))
                    .collect();
                for n in news {
                    self.leg_news(Some(n));
                }
            }
            CallEvent::AckTimeout { .. } => {
                warn!("the caller never acknowledged the answer");
                self.end_all(Side::System);
            }
            CallEvent::Shutdown => {
                info!("hanging up: denwa is stopping");
                self.end_all(Side::System);
            }
            CallEvent::Ack { .. } => {}
        }
    }

    fn request(&mut self, key: TransactionKey, req: Request, cancels: bool) {
        let id = message::call_id(&req.headers)
            .unwrap_or_default()
            .to_owned();
        if id == self.s.a_call_id {
            let (invite, invite_key) = (self.s.a_invite.clone(), self.s.a_key.clone());
            let news = self
                .caller
                .request(&self.ctx, key, req, cancels, &invite, &invite_key);
            match news {
                CallerNews::Cancelled | CallerNews::HungUp => self.caller_gone(),
                CallerNews::Hold(on) => self.caller_hold(on),
                CallerNews::Nothing => {}
            }
            return;
        }
        match self.legs.iter().position(|l| l.call_id == id) {
            Some(i) => self.agent_request(i, key, req),
            None => self.respond(key, &req, 481, Vec::new(), None),
        }
    }

    /// Answer a request outside the caller's leg (agents' in-dialog
    /// requests); `contact` for a 2xx.
    fn respond(
        &self,
        key: TransactionKey,
        req: &Request,
        code: u16,
        body: Vec<u8>,
        contact: Option<String>,
    ) {
        let mut resp = response_for(req, code, None);
        if let Some(c) = contact {
            resp.headers
                .push(Header::Contact(rsip::headers::Contact::new(format!(
                    "<{c}>"
                ))));
        }
        super::finish_response(&mut resp, body, &self.ctx.config.sip.user_agent);
        self.send(CallCommand::Respond {
            key,
            response: resp,
        });
    }

    fn agent_request(&mut self, i: usize, key: TransactionKey, req: Request) {
        let in_dialog = self.legs.get(i).is_some_and(|l| l.in_dialog(&req));
        if req.method == Method::Cancel || !in_dialog {
            let code = if req.method == Method::Bye { 200 } else { 481 };
            return self.respond(key, &req, code, Vec::new(), None);
        }
        match req.method {
            Method::Bye => {
                self.respond(key, &req, 200, Vec::new(), None);
                if let Some(leg) = self.legs.get_mut(i) {
                    leg.closed();
                }
                if self.bridged == Some(i) {
                    info!("agent hung up");
                    self.end_all(Side::Callee);
                }
            }
            Method::Invite | Method::Update if self.bridged == Some(i) => {
                self.agent_reoffer(key, req)
            }
            Method::Ack => {}
            _ => self.respond(key, &req, 200, Vec::new(), None),
        }
    }

    fn leg_news(&mut self, news: Option<LegNews>) {
        let Some(news) = news else { return };
        match news {
            LegNews::Ringing(LegKey::Offer(offer)) => self.tell(Event::AgentLeg {
                offer,
                outcome: LegOutcome::Ringing,
            }),
            LegNews::Answered(LegKey::Offer(offer)) => {
                if self.ending.is_some() {
                    self.withdraw(LegKey::Offer(offer));
                } else {
                    self.tell(Event::AgentLeg {
                        offer,
                        outcome: LegOutcome::Answered,
                    });
                }
            }
            LegNews::Failed(LegKey::Offer(offer), outcome) => {
                self.tell(Event::AgentLeg { offer, outcome })
            }
            LegNews::Answered(LegKey::Direct) => self.bridge(LegKey::Direct),
            LegNews::Failed(LegKey::Direct, outcome) => {
                let (code, disposition) = match outcome {
                    LegOutcome::Failed(crate::acd::types::LegFailure::Busy) => {
                        (486, Disposition::Busy)
                    }
                    _ => (480, Disposition::NoAnswer),
                };
                self.direct_until = None;
                self.end_refused(code, disposition);
            }
            LegNews::Ringing(LegKey::Direct) => {}
            LegNews::ByeAnswered(key) => {
                if self.bridged.is_some() && self.bridged != self.leg_index(key) {
                    // Once now, and once more after what the hung-up
                    // phone still had on the way has arrived.
                    self.reaim_agent();
                    self.reaim_at = Some(Instant::now() + REAIM_AFTER);
                }
            }
        }
    }

    // ----- the engine's actions -----

    async fn action(&mut self, action: Action) {
        match action {
            Action::AnswerCaller { .. } => self.answer_caller(),
            Action::PlayToCaller { prompts, .. } => {
                let ringback = prompts.contains(&crate::acd::types::Prompt::Ringback);
                if self.caller.state == CallerState::Trying {
                    if ringback {
                        let (key, invite) = (&self.s.a_key, &self.s.a_invite);
                        self.caller.ring(&self.ctx, key, invite);
                    }
                } else if self.bridged.is_none() {
                    self.play(&prompts);
                }
            }
            Action::OfferCall {
                offer,
                extension,
                display,
                ..
            } => self.offer(offer, &extension, display).await,
            Action::CancelOffer { offer, .. } => self.withdraw(LegKey::Offer(offer)),
            Action::DropLateAnswer { offer } => {
                if self.bridged != self.leg_index(LegKey::Offer(offer)) {
                    self.withdraw(LegKey::Offer(offer));
                }
            }
            Action::WhisperToAgent { offer, sound, .. } => self.whisper = Some((offer, sound)),
            Action::Bridge { offer, .. } => self.bridge(LegKey::Offer(offer)),
            Action::RouteTo {
                destination,
                reason,
                ..
            } => self.route(&destination, reason).await,
            Action::Reject { reason, .. } => {
                self.engine_has_call = false;
                match reason {
                    RejectReason::Busy => self.end_refused(486, Disposition::Busy),
                    RejectReason::UnknownGroup => self.end_refused(404, Disposition::NotFound),
                }
            }
            other => debug!(action = ?other, "not for a queue call"),
        }
    }

    fn answer_caller(&mut self) {
        let (key, invite) = (&self.s.a_key, &self.s.a_invite);
        if self.caller.answer(&self.ctx, key, invite) {
            debug!("caller answered into the queue");
        } else {
            self.end_all(Side::System);
        }
    }

    fn play(&mut self, prompts: &[crate::acd::types::Prompt]) {
        let media = &self.ctx.config.media;
        let p = prompts::playback(
            prompts,
            self.ctx.acd.sounds(),
            &media.music_on_hold,
            &media.tones.ringback,
        );
        self.relay.play(Leg::A, Player::new(p.now));
        self.again = Some(p.again);
    }

    fn leg_index(&self, key: LegKey) -> Option<usize> {
        self.legs.iter().rposition(|l| l.key == key)
    }

    fn withdraw(&mut self, key: LegKey) {
        if let Some(i) = self.leg_index(key) {
            if let Some(leg) = self.legs.get_mut(i) {
                leg.withdraw(&self.ctx);
            }
        }
    }

    /// Ring `extension` for the engine's `offer`.
    async fn offer(&mut self, offer: OfferId, extension: &str, display: Option<String>) {
        let key = LegKey::Offer(offer);
        let display = display.unwrap_or_else(|| self.caller_name());
        let leg = self.ring(key, extension, &display).await;
        if !leg.is_ringing() {
            info!(extension, "agent has no registered phone");
            let failure = crate::acd::types::LegFailure::Unreachable;
            self.tell(Event::AgentLeg {
                offer,
                outcome: LegOutcome::Failed(failure),
            });
        }
        self.legs.push(leg);
    }

    fn caller_name(&self) -> String {
        let ext = self.ctx.config.extensions.get(&self.s.caller);
        ext.map(|e| e.name.clone()).unwrap_or_default()
    }

    /// A new leg ringing every contact of `extension`.
    async fn ring(&mut self, key: LegKey, extension: &str, display: &str) -> AgentLeg {
        let targets = self.lookup(extension).await;
        let call_id = super::new_call_id();
        if !targets.is_empty() {
            self.send(CallCommand::Adopt {
                call_id: call_id.clone(),
                like: self.s.a_call_id.clone(),
            });
        }
        let negotiated = &self.caller.negotiated;
        let body = agent::agent_offer(
            negotiated.codec,
            negotiated.telephone_event.as_ref().map(|(pt, _)| *pt),
            self.b_local,
            u64::from(rand::random::<u32>()),
        );
        let invitation = Invitation {
            caller: &self.s.caller,
            display,
            body: &body,
        };
        AgentLeg::ring(
            &self.ctx,
            key,
            call_id,
            extension,
            &targets,
            target_peer,
            &invitation,
        )
    }

    async fn lookup(&self, user: &str) -> Vec<Binding> {
        let (reply, answer) = oneshot::channel();
        self.send(CallCommand::Lookup {
            user: user.to_owned(),
            reply,
        });
        answer.await.unwrap_or_default()
    }

    /// Send the call on: another group by its number, or an extension.
    async fn route(&mut self, destination: &str, reason: RouteReason) {
        self.engine_has_call = false;
        info!(destination, ?reason, "queue call sent on");
        let next = self.ctx.config.acd.group_for_number(destination);
        if let Some(group) = next.map(|g| g.id.clone()) {
            self.hops = self.hops.saturating_add(1);
            if self.hops > MAX_HOPS {
                info!("sent on too many times: busy");
                return self.end_refused(486, Disposition::Busy);
            }
            self.group = group.clone();
            self.callee = group.0.clone();
            self.engine_has_call = self.ctx.acd.send(AcdInput::Arrived {
                call: self.call.clone(),
                group,
                caller: self.s.caller.clone(),
                actor: self.actions.clone(),
            });
            return;
        }
        if !self.ctx.config.extensions.contains_key(destination) {
            return self.end_refused(404, Disposition::NotFound);
        }
        self.callee = destination.to_owned();
        let name = self.caller_name();
        let leg = self.ring(LegKey::Direct, destination, &name).await;
        if !leg.is_ringing() {
            return self.end_refused(480, Disposition::Unavailable);
        }
        self.legs.push(leg);
        self.direct_until = Some(Instant::now() + self.ctx.config.calls.no_answer_timeout);
        let (key, invite) = (&self.s.a_key, &self.s.a_invite);
        self.caller.ring(&self.ctx, key, invite);
    }

    // ----- media -----

    fn media_event(&mut self, ev: MediaEvent) {
        match ev {
            MediaEvent::PlaybackFinished { leg: Leg::A } => {
                let waiting = self.bridged.is_none() || self.whispering;
                if waiting || self.agent_holds {
                    if let Some(again) = self.again.clone() {
                        self.relay.play(Leg::A, Player::new(again));
                    }
                }
            }
            MediaEvent::PlaybackFinished { leg: Leg::B } => {
                if std::mem::take(&mut self.whispering) {
                    debug!("whisper played: caller connected");
                    self.relay.stop_playing(Leg::A);
                } else if self.caller_holds {
                    self.relay
                        .play(Leg::B, Player::new(bridge::music(&self.ctx)));
                }
            }
            MediaEvent::Digit { leg, digit } => {
                debug!(?leg, digit = %digit.digit, "DTMF digit in a queue call");
            }
        }
    }

    fn start_recording(&self) {
        let rec = &self.ctx.config.recording;
        if !rec.enabled {
            return;
        }
        let spec = RecordingSpec {
            call_id: self.s.a_call_id.clone(),
            layout: rec.layout,
            started_at_ms: now_ms(),
        };
        match self.ctx.recorder.record(spec) {
            Ok(handle) => self.relay.record(handle),
            Err(e) => warn!(error = %e, "call not recorded"),
        }
    }
}
