//! The SIP core's side of the public network: a new INVITE from a trunk's
//! address is routed to its number (blocklist, channel limit, screen pop),
//! and an extension's outside call to its trunk (see
//! [`crate::routing::outbound`]); refusals go to the refusal actor so that
//! every attempt gets its call record.
//!
//! The decisions are [`crate::routing`]'s; this file only applies them
//! with the state the core owns (channels, registrations, lists).

use std::net::SocketAddr;

use rsip::Request;
use tokio::sync::mpsc;
use tracing::info;

use super::Core;
use crate::call::notice::CallNotice;
use crate::call::outbound::{self as leg, LegPlan};
use crate::call::{self, CallSetup};
use crate::config::{Presentation, Route, TrunkKind};
use crate::routing::inbound::{self, Delivery, Inbound, Offer};
use crate::routing::outbound::{self, Departure, Outbound};
use crate::routing::Refusal;
use crate::sip::message;
use crate::sip::transaction::TransactionKey;
use crate::sip::Peer;
use crate::store::Direction;

/// How a new call is run.
pub(super) enum Start {
    /// Through the B2BUA to these targets (`None`: no such extension).
    Bridge(Option<Vec<crate::registrar::location::Binding>>),
    /// Turned away by the refusal actor.
    Refuse(Refusal),
    /// Turned away after this sound as early media (a `sound:` route).
    Announce(Refusal, std::sync::Arc<crate::media::sound::Sound>),
    /// Queued in this ACD group (a `group:` route, a group's number).
    Queue(crate::acd::GroupId),
    /// Answered by denwa itself (a room, a supervisor's feature code).
    Service(call::Service),
}

/// Whom a screen pop names.
enum PopTarget<'a> {
    Extension(&'a str),
    Group(&'a str),
}

/// The user part of a header's URI.
fn header_user(value: Option<&str>) -> Option<String> {
    message::user_of(message::uri_of(value?)).map(str::to_owned)
}

impl Core {
    /// A new INVITE from a trunk's address is handled here; anything else
    /// is handed back for the phones' authentication.
    pub(super) fn trunk_invite(
        &mut self,
        key: TransactionKey,
        req: Request,
        from: Peer,
    ) -> Option<(TransactionKey, Request)> {
        let request_user = req
            .uri
            .auth
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default();
        let to_user = header_user(message::to_value(&req.headers));
        let caller = header_user(message::from_value(&req.headers)).unwrap_or_default();
        let lists = self.lists.borrow().clone();
        let offer = Offer {
            source: from.remote.ip(),
            request_user: &request_user,
            to_user: to_user.as_deref(),
            caller: &caller,
        };
        match inbound::classify(&self.config.telephony, &lists, &offer) {
            Inbound::NotTrunk => Some((key, req)),
            Inbound::Refuse(r) => {
                info!(caller = %caller, called = %request_user, reason = r.reason, "trunk call refused");
                let plan = LegPlan {
                    direction: Direction::Inbound,
                    ..LegPlan::default()
                };
                self.start_call(key, req, from, caller, request_user, plan, Start::Refuse(r));
                None
            }
            Inbound::Deliver(d) => {
                self.deliver(key, req, from, *d);
                None
            }
        }
    }

    /// A trunk call to its number's route, within the number's channels.
    /// Announces a number's screen pop (when it has one) for the call.
    fn screen_pop(&self, call_id: &str, d: &Delivery, target: PopTarget) {
        let Some(url) = &d.screen_pop else { return };
        let (did, caller) = (&d.number.number, &d.caller);
        let to = match target {
            PopTarget::Extension(ext) => {
                info!(did = %did, caller = %caller, extension = %ext, url = %url, "screen pop");
                ext
            }
            PopTarget::Group(group) => {
                info!(did = %did, caller = %caller, group = %group, url = %url, "screen pop");
                group
            }
        };
        self.notices.publish(CallNotice::ScreenPop {
            call_id: call_id.to_owned(),
            did: did.clone(),
            caller: caller.clone(),
            extension: to.to_owned(),
            url: url.clone(),
        });
    }

    fn deliver(&mut self, key: TransactionKey, req: Request, from: Peer, d: Delivery) {
        let call_id = message::call_id(&req.headers)
            .unwrap_or_default()
            .to_owned();
        let mut plan = leg::inbound_plan(&d);
        if !self
            .channels
            .take(&d.number.number, d.number.max_channels, &call_id)
        {
            info!(did = %d.number.number, "channel limit reached");
            self.channel_limit_refusals.inc();
            let refusal = Refusal::channel_limit(&d.number.number, &d.trunk);
            let callee = d.number.number.clone();
            return self.start_call(
                key,
                req,
                from,
                d.caller,
                callee,
                plan,
                Start::Refuse(refusal),
            );
        }
        match d.number.route.clone() {
            Route::Extension(ext) => {
                let targets = self.registrar.lookup(&ext, super::unix_ms() / 1000);
                self.screen_pop(&call_id, &d, PopTarget::Extension(&ext));
                self.start_call(
                    key,
                    req,
                    from,
                    d.caller,
                    ext,
                    plan,
                    Start::Bridge(Some(targets)),
                );
            }
            Route::Group(group) => {
                // The agent is not known yet: the notice names the group.
                self.screen_pop(&call_id, &d, PopTarget::Group(&group));
                let callee = d.number.number.clone();
                let start = Start::Queue(crate::acd::GroupId::from(group.as_str()));
                self.start_call(key, req, from, d.caller, callee, plan, start);
            }
            Route::Sound(name) => {
                let sound = self.config.telephony.sounds.get(&name).cloned();
                let refusal = Refusal {
                    announce: true,
                    did: Some(d.number.number.clone()),
                    trunk: Some(d.trunk.clone()),
                    ..Refusal::new(480, crate::store::Disposition::Unavailable, "a sound route")
                };
                let start = match sound {
                    Some(sound) => Start::Announce(refusal, sound),
                    None => Start::Refuse(refusal),
                };
                self.start_call(key, req, from, d.caller, name, plan, start);
            }
            Route::Forward(name) => {
                let Some(departure) = self.forward_departure(&name, &d) else {
                    let refusal =
                        Refusal::new(503, crate::store::Disposition::Failed, "forward unusable");
                    return self.start_call(
                        key,
                        req,
                        from,
                        d.caller,
                        name,
                        plan,
                        Start::Refuse(refusal),
                    );
                };
                info!(forward = %name, destination = %departure.destination, "forwarding outside");
                let target = self.trunk_target(&departure);
                let out = leg::departure_plan(&departure, &self.config.telephony.outbound.plan);
                plan.from = out.from;
                plan.to_uri = out.to_uri;
                plan.headers = out.headers;
                plan.credentials = out.credentials;
                plan.media = out.media;
                let callee = departure.destination.clone();
                self.start_call(
                    key,
                    req,
                    from,
                    d.caller,
                    callee,
                    plan,
                    Start::Bridge(target.map(|t| vec![t])),
                );
            }
        }
    }

    /// The outside leg of forward `name` for a call that came in as `d`.
    fn forward_departure(&self, name: &str, d: &Delivery) -> Option<Departure> {
        let t = &self.config.telephony;
        let forward = t.forwards.get(name)?;
        let number = match &forward.present {
            Presentation::Called => d.number.clone(),
            Presentation::Number(n) => t.numbers.get(n)?.clone(),
        };
        let trunk = t.trunks.iter().find(|tr| tr.name == number.trunk)?.clone();
        let class = t
            .outbound
            .plan
            .classify(&forward.destination, &t.outbound.emergency);
        Some(Departure {
            number,
            trunk,
            destination: forward.destination.clone(),
            class,
            withheld: false,
        })
    }

    /// The contact a departure is sent to, from our socket towards it.
    fn trunk_target(&self, d: &Departure) -> Option<crate::registrar::location::Binding> {
        let remote = SocketAddr::new(d.trunk.host, d.trunk.port);
        let peer = self.transports.udp_peer_for(remote)?;
        Some(leg::trunk_target(
            &d.trunk,
            d,
            &self.config.telephony.outbound.plan,
            peer,
        ))
    }

    /// An authenticated extension dialled something that is neither an
    /// extension nor a service: an outside call, or nothing.
    pub(super) fn outside_call(
        &mut self,
        key: TransactionKey,
        req: Request,
        from: Peer,
        caller: String,
        dialled: String,
    ) {
        let Some(ext) = self.config.extensions.get(&caller).cloned() else {
            return self.start_call(
                key,
                req,
                from,
                caller,
                dialled,
                LegPlan::default(),
                Start::Bridge(None),
            );
        };
        let lists = self.lists.borrow().clone();
        let outbound_plan = LegPlan {
            direction: Direction::Outbound,
            ..LegPlan::default()
        };
        match outbound::route(&self.config.telephony, &lists, &ext, &dialled) {
            Outbound::NotExternal => self.start_call(
                key,
                req,
                from,
                caller,
                dialled,
                LegPlan::default(),
                Start::Bridge(None),
            ),
            Outbound::Refuse(r) => {
                info!(caller = %caller, dialled = %dialled, reason = r.reason, "outside call refused");
                self.start_call(
                    key,
                    req,
                    from,
                    caller,
                    dialled,
                    outbound_plan,
                    Start::Refuse(r),
                )
            }
            Outbound::Depart(d) => {
                let call_id = message::call_id(&req.headers)
                    .unwrap_or_default()
                    .to_owned();
                if !self
                    .channels
                    .take(&d.number.number, d.number.max_channels, &call_id)
                {
                    self.channel_limit_refusals.inc();
                    let r = Refusal::channel_limit(&d.number.number, &d.trunk.name);
                    return self.start_call(
                        key,
                        req,
                        from,
                        caller,
                        d.destination,
                        outbound_plan,
                        Start::Refuse(r),
                    );
                }
                info!(
                    caller = %caller,
                    destination = %d.destination,
                    number = %d.number.number,
                    trunk = %d.trunk.name,
                    withheld = d.withheld,
                    "outside call"
                );
                let plan = leg::departure_plan(&d, &self.config.telephony.outbound.plan);
                let target = self.trunk_target(&d);
                let callee = d.destination.clone();
                self.start_call(
                    key,
                    req,
                    from,
                    caller,
                    callee,
                    plan,
                    Start::Bridge(target.map(|t| vec![t])),
                );
            }
        }
    }

    /// One registration task per register trunk of the configuration:
    /// tasks of trunks removed or changed are stopped (they un-register),
    /// new ones started.
    pub(super) fn sync_trunk_clients(&mut self) {
        let wanted: Vec<crate::config::Trunk> = self
            .config
            .telephony
            .trunks
            .iter()
            .filter(|t| matches!(t.kind, TrunkKind::Register(_)))
            .cloned()
            .collect();
        let stale: Vec<String> = self
            .trunk_clients
            .iter()
            .filter(|(_, (running, _))| !wanted.contains(running))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some((_, call_id)) = self.trunk_clients.remove(&name) {
                if let Some(tx) = self.calls.get(&call_id) {
                    let _ = tx.send(Box::new(call::CallEvent::Shutdown));
                }
            }
        }
        for trunk in wanted {
            let TrunkKind::Register(settings) = &trunk.kind else {
                continue;
            };
            if self.trunk_clients.contains_key(&trunk.name) {
                continue;
            }
            let remote = SocketAddr::new(trunk.host, trunk.port);
            let Some(peer) = self.transports.udp_peer_for(remote) else {
                tracing::warn!(trunk = %trunk.name, "no UDP socket to reach the trunk from");
                continue;
            };
            let call_id = call::new_call_id();
            let (tx, rx) = mpsc::unbounded_channel();
            self.calls.insert(call_id.clone(), tx);
            crate::trunk::client::spawn(
                trunk.name.clone(),
                settings.clone(),
                peer,
                call_id.clone(),
                rx,
                self.ctx.clone(),
            );
            self.trunk_clients
                .insert(trunk.name.clone(), (trunk, call_id));
        }
    }

    /// Register the call's Call-IDs and start its actor.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_call(
        &mut self,
        key: TransactionKey,
        req: Request,
        from: Peer,
        caller: String,
        callee: String,
        plan: LegPlan,
        start: Start,
    ) {
        let Some(a_call_id) = message::call_id(&req.headers).map(str::to_owned) else {
            return;
        };
        let b_call_id = call::new_call_id();
        let (tx, rx) = mpsc::unbounded_channel();
        self.owners.insert(key.clone(), a_call_id.clone());
        self.calls.insert(a_call_id.clone(), tx.clone());
        self.calls.insert(b_call_id.clone(), tx);
        let targets = match &start {
            Start::Bridge(t) => t.clone(),
            Start::Refuse(_) | Start::Announce(..) | Start::Queue(_) | Start::Service(_) => None,
        };
        let setup = CallSetup {
            a_key: key,
            a_invite: req,
            a_peer: from,
            a_call_id,
            b_call_id,
            caller,
            callee,
            targets,
            plan,
        };
        match start {
            Start::Bridge(_) => call::spawn(setup, rx, self.ctx.clone()),
            Start::Refuse(r) => {
                let restricted = &self.config.telephony.outbound.restricted_announcement;
                call::spawn_refusal(setup, r, restricted.clone(), rx, self.ctx.clone())
            }
            Start::Announce(r, sound) => {
                call::spawn_refusal(setup, r, Some(sound), rx, self.ctx.clone())
            }
            Start::Queue(group) => call::spawn_queue(setup, group, rx, self.ctx.clone()),
            Start::Service(service) => call::spawn_service(setup, service, rx, self.ctx.clone()),
        }
    }
}
