//! Connecting the caller to the agent leg the engine committed (leg B's
//! remote set, the caller's music stopped, after a whisper to the agent
//! when the group has one), and what happens on a connected queue call:
//! hold either way (music to the held party), the agent's new offers
//! answered by denwa, leg B aimed at the winner again once a crossing
//! answer has been hung up.
//!
//! What this module must not do: ring or withdraw legs (`agent.rs`) or
//! speak for the engine beyond hold and resume.

use std::sync::Arc;

use rsip::Request;
use tracing::{debug, info};

use super::agent::LegKey;
use super::caller::CallerState;
use super::{leg_codec, now_ms, QueueCall};
use crate::acd::Event;
use crate::call::context::CallContext;
use crate::call::service::answer::negotiate;
use crate::media::player::{Player, Playlist};
use crate::media::relay::Leg;
use crate::media::sdp;
use crate::sip::transaction::TransactionKey;
use crate::store::cdr::{Disposition, Side};

/// Our side of the SDP exchange with the bridged agent, once the agent
/// sends a new offer.
pub(super) struct BAnswer {
    session_id: u64,
    version: u64,
}

/// The system's music on hold, or silence.
pub(super) fn music(ctx: &CallContext) -> Playlist {
    let mut list = Playlist::new();
    for sound in &ctx.config.media.music_on_hold {
        list = list.then_sound(Arc::clone(sound));
    }
    if list.items().is_empty() {
        list = list.then_silence(60_000);
    }
    list
}

impl QueueCall {
    /// Connect the caller to the answered leg `key`.
    pub(super) fn bridge(&mut self, key: LegKey) {
        let Some(i) = self.leg_index(key) else {
            return;
        };
        let Some(answer) = self.legs.get(i).and_then(|l| l.answer()).cloned() else {
            info!("the agent hung up before the call was connected");
            self.bridged = Some(i);
            return self.end_all(Side::Callee);
        };
        if self.caller.state == CallerState::Trying {
            self.answer_caller();
        }
        if self.caller.state != CallerState::Answered {
            return;
        }
        if let Some(media) = &answer.media {
            self.relay.set_remote(Leg::B, media.addr);
            self.relay.set_codec(Leg::B, leg_codec(media));
        }
        let extension = self
            .legs
            .get(i)
            .map(|l| l.extension.clone())
            .unwrap_or_default();
        let whisper = match (key, self.whisper.take()) {
            (LegKey::Offer(offer), Some((o, sound))) if o == offer => {
                self.ctx.acd.sounds().get(&sound).ok()
            }
            _ => None,
        };
        match whisper {
            Some(sound) => {
                self.whispering = true;
                let list = Playlist::new().then_sound(sound);
                self.relay.play(Leg::B, Player::new(list));
            }
            None => self.relay.stop_playing(Leg::A),
        }
        self.start_recording();
        let point = self.relay.tap_point();
        let taps = &self.ctx.taps;
        taps.register_call(&self.s.a_call_id, point, &self.s.caller, &extension);
        self.bridged = Some(i);
        self.bridged_ms = Some(now_ms());
        self.disposition = Disposition::Answered;
        info!(agent = %extension, group = %self.group, "queue call connected");
    }

    /// A hung-up crossing answer may have sent RTP to leg B: aim it at
    /// the bridged agent again, so it latches on the agent's stream.
    pub(super) fn reaim_agent(&mut self) {
        let media = self
            .bridged
            .and_then(|i| self.legs.get(i))
            .and_then(|l| l.answer())
            .and_then(|a| a.media.as_ref().map(|m| m.addr));
        if let Some(addr) = media {
            debug!(%addr, "leg B aimed at the agent again");
            self.relay.set_remote(Leg::B, addr);
        }
    }

    /// The caller put the agent on hold (music to the agent) or back.
    pub(super) fn caller_hold(&mut self, on: bool) {
        self.caller_holds = on;
        if self.bridged.is_none() {
            return;
        }
        if on {
            self.relay.play(Leg::B, Player::new(music(&self.ctx)));
        } else {
            self.relay.stop_playing(Leg::B);
        }
    }

    /// A re-INVITE or UPDATE from the bridged agent: answered by denwa on
    /// leg B; hold plays music to the caller and tells the engine.
    pub(super) fn agent_reoffer(&mut self, key: TransactionKey, req: Request) {
        let Some(i) = self.bridged else { return };
        let Some((peer, _)) = self.legs.get_mut(i).and_then(|l| {
            let a = l.answer_mut()?;
            a.dialog.refresh_target(&req.headers);
            Some((a.peer, ()))
        }) else {
            return self.respond(key, &req, 481, Vec::new(), None);
        };
        let offer = sdp::parse(&req.body).ok();
        let Some(negotiated) = offer.as_ref().and_then(|o| negotiate(o, None).ok()) else {
            return self.respond(key, &req, 488, Vec::new(), None);
        };
        self.relay.set_codec(Leg::B, negotiated.leg_codec());
        if let Some(remote) = negotiated.remote {
            self.relay.set_remote(Leg::B, remote);
        }
        let answer = self.b_answer.get_or_insert_with(|| BAnswer {
            session_id: u64::from(rand::random::<u32>()),
            version: 1,
        });
        answer.version += 1;
        let body = negotiated
            .answer(self.b_local, answer.session_id, answer.version)
            .to_bytes();
        let contact = self.ctx.addressing.contact(&peer, &self.s.caller);
        self.respond(key, &req, 200, body, Some(contact));
        let hold = offer
            .as_ref()
            .and_then(sdp::remote_media)
            .is_some_and(|m| m.is_hold());
        if hold == self.agent_holds {
            return;
        }
        self.agent_holds = hold;
        let call = self.call.clone();
        if hold {
            info!("the agent put the caller on hold");
            self.relay.play(Leg::A, Player::new(music(&self.ctx)));
            self.again = Some(music(&self.ctx));
            self.tell(Event::CallHeld { call });
        } else {
            self.relay.stop_playing(Leg::A);
            self.tell(Event::CallResumed { call });
        }
    }
}
