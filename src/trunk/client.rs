//! The task that keeps one trunk registered: it runs
//! [`Registration`](super::registration::Registration) with the clock,
//! sends its REGISTERs through the SIP core (the core hands back the
//! responses and timeouts of its Call-ID, as for a call), logs every
//! change and shows the state in `/metrics`
//! (`denwa_trunk_registered{trunk=...}`,
//! `denwa_trunk_registration_failures_total{trunk=...}`).
//!
//! On [`CallEvent::Shutdown`] (the trunk was removed or changed, or denwa
//! stops) it un-registers and ends.

use std::time::Instant;

use tracing::{info, warn, Instrument};

use super::registration::{Local, Registration, Status};
use crate::call::context::{CallCommand, CallContext};
use crate::call::{new_branch, new_tag, CallEvent, EventReceiver};
use crate::config::RegisterSettings;
use crate::metrics::{Counter, Gauge};
use crate::sip::Peer;

/// Start keeping trunk `name` registered at `peer` with `call_id`, whose
/// events the core sends to `events`.
pub fn spawn(
    name: String,
    settings: RegisterSettings,
    peer: Peer,
    call_id: String,
    events: EventReceiver,
    ctx: CallContext,
) {
    let span = tracing::info_span!("trunk", trunk = %name);
    tokio::spawn(run(name, settings, peer, call_id, events, ctx).instrument(span));
}

struct Shell {
    ctx: CallContext,
    peer: Peer,
    registered: Gauge,
    failures: Counter,
    shown: Status,
}

impl Shell {
    fn send(&self, request: rsip::Request) {
        let _ = self.ctx.commands.send(CallCommand::Request {
            request,
            to: self.peer,
        });
    }

    /// Log and count what changed since the last look.
    fn show(&mut self, reg: &Registration, now: Instant) {
        self.registered.set(i64::from(reg.is_registered(now)));
        let status = reg.status().clone();
        if status == self.shown {
            return;
        }
        match &status {
            Status::Registered { until } => info!(
                expires_secs = whole_secs(until.saturating_duration_since(now)),
                "trunk registered"
            ),
            Status::Retrying { at, reason } => {
                self.failures.inc();
                warn!(
                    reason = %reason,
                    retry_in_secs = whole_secs(at.saturating_duration_since(now)),
                    still_registered = reg.is_registered(now),
                    "trunk registration failed"
                );
            }
            Status::Registering | Status::Idle => {}
        }
        self.shown = status;
    }
}

async fn run(
    name: String,
    settings: RegisterSettings,
    peer: Peer,
    call_id: String,
    mut events: EventReceiver,
    ctx: CallContext,
) {
    let m = &ctx.metrics;
    let label = [("trunk", name.as_str())];
    let registered = m
        .register_labelled_gauge(
            "trunk_registered",
            "Whether each register trunk is registered.",
            &label,
        )
        .unwrap_or_default();
    let failures = m
        .register_labelled_counter(
            "trunk_registration_failures_total",
            "Failed registration attempts per trunk.",
            &label,
        )
        .unwrap_or_default();
    let sent_by = ctx.addressing.sent_by(&peer);
    let mut reg = Registration::new(
        settings,
        peer.remote,
        call_id.clone(),
        new_tag(),
        Instant::now(),
    );
    let mut shell = Shell {
        ctx,
        peer,
        registered,
        failures,
        shown: Status::Idle,
    };
    info!(registrar = %peer.remote, "trunk registration starting");
    loop {
        let deadline = reg.poll_timeout().map(tokio::time::Instant::from_std);
        let (branch, cnonce) = (new_branch(), new_tag());
        let local = Local {
            sent_by: &sent_by,
            branch: &branch,
            cnonce: &cnonce,
        };
        tokio::select! {
            ev = events.recv() => match ev.map(|e| *e) {
                Some(CallEvent::Response { response, .. } | CallEvent::StrayResponse { response, .. }) => {
                    if let Some(next) = reg.handle_response(&response, Instant::now(), local) {
                        shell.send(next);
                    }
                }
                Some(CallEvent::Timeout { .. }) => reg.handle_no_response(Instant::now()),
                Some(CallEvent::Shutdown) | None => {
                    if reg.is_registered(Instant::now()) {
                        shell.send(reg.unregister(Instant::now(), local));
                        finish_unregistering(&mut reg, &mut events, &shell).await;
                    }
                    break;
                }
                Some(_) => {}
            },
            () = sleep_until(deadline) => {
                if let Some(req) = reg.handle_timeout(Instant::now(), local) {
                    shell.send(req);
                }
            }
        }
        shell.show(&reg, Instant::now());
    }
    shell.registered.set(0);
    info!("trunk registration stopped");
    let _ = shell.ctx.commands.send(CallCommand::Ended {
        call_ids: vec![call_id],
    });
}

/// How long an un-REGISTER may take, its challenge included.
const UNREGISTER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Answer the un-REGISTER's challenge, until it is finally answered, times
/// out, or [`UNREGISTER_WAIT`] passes.
async fn finish_unregistering(reg: &mut Registration, events: &mut EventReceiver, shell: &Shell) {
    let until = tokio::time::Instant::now() + UNREGISTER_WAIT;
    while reg.is_unregistering() {
        let (branch, cnonce) = (new_branch(), new_tag());
        let local = Local {
            sent_by: &shell.ctx.addressing.sent_by(&shell.peer),
            branch: &branch,
            cnonce: &cnonce,
        };
        tokio::select! {
            ev = events.recv() => match ev.map(|e| *e) {
                Some(CallEvent::Response { response, .. }) => {
                    if let Some(next) = reg.handle_response(&response, Instant::now(), local) {
                        shell.send(next);
                    }
                }
                Some(CallEvent::Timeout { .. }) | None => return,
                Some(_) => {}
            },
            () = tokio::time::sleep_until(until) => return,
        }
    }
    info!("trunk unregistered");
}

/// Seconds, rounded to the nearest.
fn whole_secs(d: std::time::Duration) -> u64 {
    (d + std::time::Duration::from_millis(500)).as_secs()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
