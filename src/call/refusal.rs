//! Calls the router turns away (a blocked caller, a number over its
//! channel limit, a destination the extension may not or must never
//! dial): the final answer, after an announcement played as early media
//! (183 with denwa's SDP, RFC 3960) when the refusal asks for one, and
//! the call record with the refusal as its disposition.
//!
//! Must not: ring anybody or answer (200) the call.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rsip::prelude::*;
use rsip::{Header, Method};
use tokio::time::Instant;
use tracing::{info, warn};

use super::context::{CallCommand, CallContext};
use super::service::answer;
use super::{new_tag, CallEvent, CallSetup, EventReceiver};
use crate::media::player::{Player, Playlist};
use crate::media::relay::{Leg, MediaEndpoint, MediaEvent, RelayHandle};
use crate::media::sdp;
use crate::media::sound::Sound;
use crate::routing::Refusal;
use crate::sip::message::response_for;
use crate::store::cdr::{CallRecord, Side};

/// Longest time an announcement may hold the caller beyond its length.
const ANNOUNCEMENT_SLACK: Duration = Duration::from_secs(2);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

struct Refused {
    ctx: CallContext,
    s: CallSetup,
    refusal: Refusal,
    tag: String,
    sip_status: u16,
    hangup_side: Option<Side>,
}

pub(super) async fn run(
    setup: CallSetup,
    refusal: Refusal,
    announcement: Option<Arc<Sound>>,
    mut events: EventReceiver,
    ctx: CallContext,
) {
    ctx.metrics.call_started();
    let started_ms = now_ms();
    info!(caller = %setup.caller, callee = %setup.callee, reason = refusal.reason, "call refused");
    let mut call = Refused {
        ctx,
        s: setup,
        refusal,
        tag: new_tag(),
        sip_status: 0,
        hangup_side: None,
    };
    let relay = match announcement.filter(|_| call.refusal.announce) {
        Some(sound) => call.announce(sound).await,
        None => None,
    };
    if let Some((relay, length_ms)) = relay {
        let media_events = relay.events();
        call.wait_for_announcement(&mut events, media_events, length_ms)
            .await;
        let _ = relay.stop().await;
    }
    if call.sip_status == 0 {
        call.respond_invite(call.refusal.code, None);
    }
    call.finish(started_ms);
}

impl Refused {
    fn respond_invite(&mut self, code: u16, sdp: Option<Vec<u8>>) {
        let mut resp = response_for(&self.s.a_invite, code, Some(&self.tag));
        let body = match sdp {
            Some(body) => {
                let contact = self.ctx.addressing.contact(&self.s.a_peer, &self.s.callee);
                resp.headers
                    .push(Header::Contact(rsip::headers::Contact::new(format!(
                        "<{contact}>"
                    ))));
                body
            }
            None => Vec::new(),
        };
        super::finish_response(&mut resp, body, &self.ctx.config.sip.user_agent);
        if code >= 200 {
            self.sip_status = code;
        }
        let _ = self.ctx.commands.send(CallCommand::Respond {
            key: self.s.a_key.clone(),
            response: resp,
        });
    }

    /// 183 with our SDP and the announcement playing to the caller; `None`
    /// when the offer or the ports do not allow it (then no announcement).
    async fn announce(&mut self, sound: Arc<Sound>) -> Option<(RelayHandle, u64)> {
        let offer = sdp::parse(&self.s.a_invite.body).ok()?;
        let negotiated = answer::negotiate(&offer, None).ok()?;
        let ip = self.ctx.addressing.media_ip(&self.s.a_peer);
        let (a, b) = match (
            MediaEndpoint::bind(ip, &self.ctx.ports).await,
            MediaEndpoint::bind(ip, &self.ctx.ports).await,
        ) {
            (Ok(a), Ok(b)) => (a, b),
            _ => {
                warn!("no RTP ports for the announcement");
                return None;
            }
        };
        let local = a.local_rtp_addr();
        let metrics = super::b2bua::relay_metrics(&self.ctx.metrics);
        let relay = self
            .ctx
            .media
            .start_relay(a, b, negotiated.remote, None, metrics);
        relay.set_codec(Leg::A, negotiated.leg_codec());
        relay.play(
            Leg::A,
            Player::new(Playlist::new().then_sound(sound.clone())),
        );
        let body = negotiated
            .answer(local, u64::from(rand::random::<u32>()), 1)
            .to_bytes();
        self.respond_invite(183, Some(body));
        info!(duration_ms = sound.duration_ms(), "announcement playing");
        Some((relay, sound.duration_ms()))
    }

    /// Until the announcement (`length` ms) ends, the caller cancels, or
    /// its time is up.
    async fn wait_for_announcement(
        &mut self,
        events: &mut EventReceiver,
        mut media: tokio::sync::mpsc::UnboundedReceiver<MediaEvent>,
        length: u64,
    ) {
        let until = Instant::now() + Duration::from_millis(length) + ANNOUNCEMENT_SLACK;
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => if self.caller_event(*ev) { return },
                    None => return,
                },
                ev = media.recv() => match ev {
                    Some(MediaEvent::PlaybackFinished { .. }) | None => return,
                    Some(_) => {}
                },
                () = tokio::time::sleep_until(until) => return,
            }
        }
    }

    /// A request from the caller during the announcement; true when the
    /// call is over (CANCEL).
    fn caller_event(&mut self, ev: CallEvent) -> bool {
        let CallEvent::Request {
            key,
            request,
            cancels,
            ..
        } = ev
        else {
            return false;
        };
        let code = match request.method {
            Method::Cancel => 200,
            _ => 481,
        };
        let mut resp = response_for(&request, code, None);
        super::finish_response(&mut resp, Vec::new(), &self.ctx.config.sip.user_agent);
        let _ = self.ctx.commands.send(CallCommand::Respond {
            key,
            response: resp,
        });
        if request.method == Method::Cancel && cancels.is_some() {
            self.hangup_side = Some(Side::Caller);
            self.respond_invite(487, None);
            return true;
        }
        false
    }

    fn finish(self, started_ms: i64) {
        let rec = CallRecord {
            call_id: self.s.a_call_id.clone(),
            started_at_ms: started_ms,
            answered_at_ms: None,
            ended_at_ms: now_ms(),
            caller: self.s.caller.clone(),
            callee: self.s.callee.clone(),
            direction: self.s.plan.direction,
            disposition: self.refusal.disposition,
            hangup_side: self.hangup_side.or(Some(Side::System)),
            sip_status: self.sip_status,
            ring_ms: 0,
            talk_ms: 0,
            caller_ip: Some(self.s.a_peer.remote.ip().to_string()),
            caller_line: None,
            callee_line: None,
            did: self.refusal.did.clone().or(self.s.plan.did.clone()),
            trunk: self.refusal.trunk.clone().or(self.s.plan.trunk.clone()),
        }
        .with_derived_durations();
        let call_ids = vec![self.s.a_call_id.clone(), self.s.b_call_id.clone()];
        super::record_call_end(&self.ctx, rec, call_ids);
    }
}
