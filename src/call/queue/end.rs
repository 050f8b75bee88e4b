//! The end of a queue call: who ended it (the caller, the agent, denwa,
//! or a refusal), what the engine is told, every leg withdrawn or hung up,
//! the relay stopped and the call record written, naming the group.
//!
//! What this module must not do: decide that a call ends (the actor's
//! events and the engine's actions do).

use tokio::time::Instant;
use tracing::info;

use super::{now_ms, AcdInput, QueueCall};
use crate::acd::Event;
use crate::call::context::{CallCommand, CallContext};
use crate::call::CallSetup;
use crate::sip::message::response_for;
use crate::store::cdr::{CallRecord, Disposition, Side};

/// Refuse the INVITE before anything else exists, and record it.
pub(super) fn refuse(ctx: &CallContext, s: &CallSetup, code: u16, disposition: Disposition) {
    let mut resp = response_for(&s.a_invite, code, Some(&crate::call::new_tag()));
    crate::call::finish_response(&mut resp, Vec::new(), &ctx.config.sip.user_agent);
    let _ = ctx.commands.send(CallCommand::Respond {
        key: s.a_key.clone(),
        response: resp,
    });
    let call_ids = vec![s.a_call_id.clone(), s.b_call_id.clone()];
    crate::call::record_call_end(ctx, refused_record(s, code, disposition), call_ids);
}

fn refused_record(s: &CallSetup, code: u16, disposition: Disposition) -> CallRecord {
    let now = now_ms();
    CallRecord {
        call_id: s.a_call_id.clone(),
        started_at_ms: now,
        answered_at_ms: None,
        ended_at_ms: now,
        caller: s.caller.clone(),
        callee: s.callee.clone(),
        direction: s.plan.direction,
        disposition,
        hangup_side: Some(Side::System),
        sip_status: code,
        ring_ms: 0,
        talk_ms: 0,
        caller_ip: Some(s.a_peer.remote.ip().to_string()),
        caller_line: None,
        callee_line: None,
        did: s.plan.did.clone(),
        trunk: s.plan.trunk.clone(),
    }
    .with_derived_durations()
}

impl QueueCall {
    /// The caller hung up or cancelled.
    pub(super) fn caller_gone(&mut self) {
        self.hangup_side = Some(Side::Caller);
        self.disposition = if self.bridged.is_some() {
            Disposition::Answered
        } else {
            Disposition::Cancelled
        };
        self.tell(Event::CallerHungUp {
            call: self.call.clone(),
        });
        self.begin_ending();
    }

    /// denwa or the agent ends the call.
    pub(super) fn end_all(&mut self, side: Side) {
        if self.ending.is_some() {
            return;
        }
        if self.hangup_side.is_none() {
            self.hangup_side = Some(side);
        }
        let call = self.call.clone();
        if self.bridged.is_some() {
            self.disposition = Disposition::Answered;
            self.tell(Event::CallEnded { call });
        } else {
            self.tell(Event::CallerHungUp { call });
        }
        let (key, invite) = (&self.s.a_key, &self.s.a_invite);
        self.caller.reject(&self.ctx, key, invite, 503);
        self.caller.hang_up(&self.ctx);
        self.begin_ending();
    }

    /// The engine (or a destination) refused the call.
    pub(super) fn end_refused(&mut self, code: u16, disposition: Disposition) {
        if self.ending.is_some() {
            return;
        }
        info!(status = code, "queue call refused");
        self.engine_has_call = false;
        self.disposition = disposition;
        self.hangup_side = Some(Side::System);
        let (key, invite) = (&self.s.a_key, &self.s.a_invite);
        self.caller.reject(&self.ctx, key, invite, code);
        self.caller.hang_up(&self.ctx);
        self.begin_ending();
    }

    /// Withdraw every leg (CANCEL, or BYE when answered); then wait for
    /// their last answers.
    pub(super) fn begin_ending(&mut self) {
        for leg in &mut self.legs {
            leg.withdraw(&self.ctx);
        }
        self.ending = Some(Instant::now());
    }

    pub(super) fn sip_status(&self) -> u16 {
        match self.disposition {
            Disposition::Answered => 200,
            Disposition::Busy => 486,
            Disposition::NotFound => 404,
            Disposition::Cancelled => 487,
            Disposition::NoAnswer | Disposition::Unavailable => 480,
            _ => 503,
        }
    }

    pub(super) async fn finish(self) {
        self.ctx.taps.remove_call(&self.s.a_call_id);
        let _ = self.ctx.acd.send(AcdInput::Gone {
            call: self.call.clone(),
        });
        let sip_status = self.sip_status();
        let report = self.relay.stop().await;
        let lines = [
            crate::call::line_stats("caller", &report.quality[0]),
            crate::call::line_stats("callee", &report.quality[1]),
        ];
        if let Some(rec) = report.recording {
            info!(recording = %rec.id, "call recording closed");
        }
        let rec = CallRecord {
            call_id: self.s.a_call_id.clone(),
            started_at_ms: self.started_ms,
            answered_at_ms: self.bridged_ms,
            ended_at_ms: now_ms(),
            caller: self.s.caller.clone(),
            callee: self.callee.clone(),
            direction: self.s.plan.direction,
            disposition: self.disposition,
            hangup_side: self.hangup_side,
            sip_status,
            ring_ms: 0,
            talk_ms: 0,
            caller_ip: Some(self.s.a_peer.remote.ip().to_string()),
            caller_line: lines[0],
            callee_line: lines[1],
            did: self.s.plan.did.clone(),
            trunk: self.s.plan.trunk.clone(),
        }
        .with_derived_durations();
        let mut call_ids = vec![self.s.a_call_id.clone(), self.s.b_call_id.clone()];
        call_ids.extend(self.legs.iter().map(|l| l.call_id.clone()));
        crate::call::record_call_end(&self.ctx, rec, call_ids);
    }
}
