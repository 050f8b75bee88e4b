//! Calls: the B2BUA. One actor task per call owns both legs (the caller's
//! dialog "A" and the callee's dialog "B"), their media relay and the call
//! record. The SIP core hands it every message whose Call-ID belongs to it;
//! it answers through [`context::CallCommand`]s.
//!
//! Calls to a conference room or a supervisor feature code are answered by
//! denwa itself (`service.rs`); [`Taps`] is how a supervisor finds the call
//! an agent is in, [`Calls`] how the HTTP API and scripts find a live call
//! (or a room member) and its [`CallControl`] handle.
//!
//! Later modules (prompts, recording, DTMF, queues, conferences) insert
//! themselves through the relay's taps and through new call commands; they
//! do not reach into the actor's state.

use rand::Rng;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::registrar::location::Binding;
use crate::sip::transaction::TransactionKey;
use crate::sip::Peer;
use crate::store::cdr::{CallRecord, LineStats};
use crate::store::WriteOp;

mod b2bua;
mod calls;
pub mod context;
pub mod control;
mod destination;
mod dtmf;
pub mod notice;
pub mod outbound;
pub mod queue;
mod refusal;
mod service;
mod taps;

pub use calls::{CallDirectory, Calls, LiveCall};
use context::CallContext;
pub use control::{CallControl, ControlError, RecordingAction, RecordingState};
pub use destination::{Service, Supervision};
pub use taps::{Claim, Directory, Lookup, Taps};

/// The sending side of a call actor's event queue. Events are boxed: the
/// queue allocates its slots in blocks of 32, and a call that sits in a
/// block of unboxed events (several hundred bytes each) for its whole
/// life costs more memory than all the rest of its state.
pub type EventSender = mpsc::UnboundedSender<Box<CallEvent>>;
pub type EventReceiver = mpsc::UnboundedReceiver<Box<CallEvent>>;

/// What the SIP core delivers to a call actor.
#[derive(Debug)]
pub enum CallEvent {
    Request {
        key: TransactionKey,
        request: rsip::Request,
        from: Peer,
        cancels: Option<TransactionKey>,
    },
    Ack {
        request: rsip::Request,
        from: Peer,
    },
    Response {
        key: TransactionKey,
        response: rsip::Response,
    },
    Timeout {
        key: TransactionKey,
    },
    AckTimeout {
        key: TransactionKey,
    },
    StrayResponse {
        response: rsip::Response,
        from: Peer,
    },
    /// denwa is stopping and the grace period is over: hang up.
    Shutdown,
}

/// Everything known when a new INVITE has been authenticated.
#[derive(Debug)]
pub struct CallSetup {
    pub a_key: TransactionKey,
    pub a_invite: rsip::Request,
    pub a_peer: Peer,
    pub a_call_id: String,
    pub b_call_id: String,
    /// Authenticated calling extension.
    pub caller: String,
    /// Dialled user part.
    pub callee: String,
    /// `None`: no such extension; `Some(empty)`: not registered.
    pub targets: Option<Vec<Binding>>,
    /// How the B leg differs from an internal call's (trunk calls).
    pub plan: outbound::LegPlan,
}

/// Start the actor for a new call.
/// What denwa received from one side's phone, for the call record (and
/// the log), when the phone sent anything.
fn line_stats(side: &str, q: &crate::media::rtcp::LineQuality) -> Option<LineStats> {
    if q.packets_received == 0 {
        return None;
    }
    tracing::info!(
        side,
        packets = q.packets_received,
        lost = q.packets_lost,
        jitter_ms = q.jitter_ms_avg,
        reported_loss_percent = ?q.remote_reported_loss_percent,
        reported_jitter_ms = ?q.remote_reported_jitter_ms,
        "line quality"
    );
    Some(LineStats {
        rtp_packets: q.packets_received,
        rtp_lost: q.packets_lost,
        jitter_us: (f64::from(q.jitter_ms_avg) * 1000.0) as u64,
    })
}

/// Completes a response a call actor sends: the SDP body (if any) with its
/// Content-Type, then the headers every message gets.
fn finish_response(resp: &mut rsip::Response, body: Vec<u8>, user_agent: &str) {
    use rsip::headers::UntypedHeader;
    if !body.is_empty() {
        resp.headers
            .push(rsip::Header::ContentType(rsip::headers::ContentType::new(
                "application/sdp",
            )));
    }
    let headers = std::mem::take(&mut resp.headers);
    resp.headers = crate::sip::message::finish(headers, body.len(), user_agent);
    resp.body = body;
}

/// The end of every call: log, count, store the record (never waiting),
/// and tell the core its Call-IDs are free.
fn record_call_end(ctx: &CallContext, rec: CallRecord, call_ids: Vec<String>) {
    tracing::info!(
        disposition = rec.disposition.as_str(),
        status = rec.sip_status,
        "call ended"
    );
    ctx.metrics.call_ended(rec.disposition);
    if let Err(e) = ctx.store.submit(WriteOp::RecordCall(rec)) {
        tracing::warn!(error = %e, "call record not stored");
    }
    let _ = ctx.commands.send(context::CallCommand::Ended { call_ids });
}

pub fn spawn(setup: CallSetup, events: EventReceiver, ctx: CallContext) {
    let span = tracing::info_span!("call", call_id = %setup.a_call_id);
    tokio::spawn(b2bua::run(setup, events, ctx).instrument(span));
}

/// Start the actor for a call denwa answers itself (a room, supervision).
pub fn spawn_service(setup: CallSetup, service: Service, events: EventReceiver, ctx: CallContext) {
    let span = tracing::info_span!("call", call_id = %setup.a_call_id);
    tokio::spawn(service::run(setup, service, events, ctx).instrument(span));
}

/// Start the actor for a call the router refuses, playing `announcement`
/// first as early media when the refusal asks for one.
pub fn spawn_refusal(
    setup: CallSetup,
    refusal: crate::routing::Refusal,
    announcement: Option<std::sync::Arc<crate::media::sound::Sound>>,
    events: EventReceiver,
    ctx: CallContext,
) {
    let span = tracing::info_span!("call", call_id = %setup.a_call_id);
    tokio::spawn(refusal::run(setup, refusal, announcement, events, ctx).instrument(span));
}

/// Start the actor for a call to a queue group's number.
pub fn spawn_queue(
    setup: CallSetup,
    group: crate::acd::GroupId,
    events: EventReceiver,
    ctx: CallContext,
) {
    let span = tracing::info_span!("call", call_id = %setup.a_call_id);
    tokio::spawn(queue::run(setup, group, events, ctx).instrument(span));
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A fresh From/To tag.
pub fn new_tag() -> String {
    random_token(12)
}

/// A fresh Call-ID for a leg denwa originates.
pub fn new_call_id() -> String {
    format!("{}@denwa", random_token(20))
}

/// A fresh Via branch.
pub fn new_branch() -> String {
    format!("z9hG4bK{}", random_token(16))
}
