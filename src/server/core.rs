//! The SIP core task: owns the transaction layer, the authenticator and the
//! registrar, and routes dialog traffic to call actors by Call-ID.
//!
//! It is the only owner of that state, so nothing here is behind a lock. It
//! reads the clock once per wake-up and passes `now` into the pure layers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rsip::prelude::*;
use rsip::{Method, Request, SipMessage};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::auth::{AuthOutcome, Authenticator, ChallengeKind};
use crate::call::context::{CallCommand, CallContext};
use crate::call::{self, CallEvent};
use crate::config::{Config, LockoutResponse};
use crate::registrar::{BindingChange, Registrar};
use crate::sip::message::{self, response_for};
use crate::sip::transaction::{TransactionEvent, TransactionKey, TransactionLayer};
use crate::sip::Peer;
use crate::store::{self, Store};

use super::transport::{Transports, UdpInbox};
use crate::call::notice::Notices;
use crate::metrics::Counter;
use crate::routing::channels::Channels;
use crate::routing::lists::Lists;

mod network;

/// Everything the core task is fed from outside.
// Messages are nearly all of the traffic: boxing them would cost an
// allocation each for the sake of two rare variants.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum CoreInput {
    Message {
        msg: SipMessage,
        peer: Peer,
    },
    Reload(Arc<Config>),
    /// Stop accepting new calls (SIGTERM).
    Drain,
    /// The grace period is over: hang up every call.
    HangUpAll,
}

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE";

pub struct Core {
    txl: TransactionLayer,
    auth: Authenticator,
    registrar: Registrar,
    config: Arc<Config>,
    store: Store,
    transports: Transports,
    ctx: CallContext,
    calls: HashMap<String, call::EventSender>,
    /// The call (by Call-ID) each transaction started for or by a call
    /// belongs to, for events that carry only a key (timeouts).
    owners: HashMap<TransactionKey, String>,
    draining: bool,
    /// The blocklist and restriction list, as last loaded.
    lists: tokio::sync::watch::Receiver<Arc<Lists>>,
    /// Calls in progress per number, for the channel limits.
    channels: Channels,
    channel_limit_refusals: Counter,
    notices: Notices,
    /// Register trunks with a registration task: (trunk, its Call-ID).
    trunk_clients: HashMap<String, (crate::config::Trunk, String)>,
}

fn auth_config(config: &Config) -> crate::auth::AuthConfig {
    let mut c = crate::auth::AuthConfig::from_settings(&config.sip.domain, &config.auth);
    c.user_agent = config.sip.user_agent.clone();
    c
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Core {
    pub fn new(
        config: Arc<Config>,
        registrar: Registrar,
        store: Store,
        transports: Transports,
        ctx: CallContext,
        lists: tokio::sync::watch::Receiver<Arc<Lists>>,
        notices: Notices,
    ) -> Self {
        let channel_limit_refusals = ctx
            .metrics
            .register_counter(
                "channel_limit_refusals_total",
                "Calls refused because their number had no free channel.",
            )
            .unwrap_or_default();
        let mut registrar = registrar;
        registrar.set_user_agent(config.sip.user_agent.clone());
        Core {
            txl: TransactionLayer::new(crate::sip::transaction::TimerConfig {
                t1: config.sip.t1,
                ..Default::default()
            }),
            auth: Authenticator::new(auth_config(&config)),
            registrar,
            config,
            store,
            transports,
            ctx,
            calls: HashMap::new(),
            owners: HashMap::new(),
            draining: false,
            lists,
            channels: Channels::default(),
            channel_limit_refusals,
            notices,
            trunk_clients: HashMap::new(),
        }
    }

    /// Run until both input channels close. UDP datagrams are read from
    /// `udp` here, in this task (see [`UdpInbox`]).
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<CoreInput>,
        mut commands: mpsc::UnboundedReceiver<CallCommand>,
        mut udp: UdpInbox,
    ) {
        let mut housekeeping = tokio::time::interval(Duration::from_secs(5));
        self.sync_trunk_clients();
        loop {
            let deadline = self.txl.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.handle_command(cmd),
                    None => break,
                },
                msg = input.recv() => match msg {
                    Some(msg) => {
                        self.handle_input(msg);
                        // Take what else is queued before flushing: batches
                        // the work under load without adding latency.
                        for _ in 0..64 {
                            match input.try_recv() {
                                Ok(msg) => self.handle_input(msg),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                _ = housekeeping.tick() => self.housekeeping(),
                // Polled after the channels and housekeeping: a UDP flood
                // cannot starve a Drain, a TCP peer or the purge.
                index = udp.readable() => {
                    let transports = self.transports.clone();
                    udp.read(index, &transports, |msg, peer| {
                        self.txl.handle_message(msg, peer, Instant::now());
                        self.flush();
                    });
                }
                _ = sleep_until(deadline) => {}
            }
            self.txl.handle_timeout(Instant::now());
            self.flush();
        }
    }

    fn housekeeping(&mut self) {
        self.auth.prune(Instant::now());
        let now_unix = unix_ms() / 1000;
        let gone = self.registrar.purge_expired(now_unix);
        for (user, _) in &gone {
            if !self.phone_up(user, now_unix) {
                self.ctx.acd.phone(user, false);
            }
        }
        if !gone.is_empty() {
            // The store's expiries may lag: purge only what is gone for sure.
            let cutoff = crate::registrar::stored_expiry_cutoff(now_unix);
            let _ = self.store.submit(store::WriteOp::PurgeExpiredBindings {
                now_unix: i64::try_from(cutoff).unwrap_or(i64::MAX),
            });
        }
        self.ctx
            .metrics
            .set_registrations(self.registrar.binding_count() as i64);
    }

    fn handle_input(&mut self, input: CoreInput) {
        match input {
            CoreInput::Message { msg, peer } => self.txl.handle_message(msg, peer, Instant::now()),
            CoreInput::Reload(config) => {
                info!("configuration reloaded");
                self.auth.reconfigure(auth_config(&config));
                self.registrar.reconfigure(config.registrar);
                self.registrar.set_user_agent(config.sip.user_agent.clone());
                self.ctx.config = config.clone();
                self.config = config;
                self.sync_trunk_clients();
            }
            CoreInput::Drain => self.draining = true,
            CoreInput::HangUpAll => {
                for tx in self.calls.values() {
                    let _ = tx.send(Box::new(CallEvent::Shutdown));
                }
            }
        }
        self.flush();
    }

    fn handle_command(&mut self, cmd: CallCommand) {
        let now = Instant::now();
        match cmd {
            CallCommand::Request { request, to } => {
                let owner = message::call_id(&request.headers).map(str::to_owned);
                let key = self.txl.send_request(request, to, now);
                if let Some(owner) = owner {
                    self.owners.insert(key, owner);
                }
            }
            CallCommand::Respond { key, response } => {
                if let Err(e) = self.txl.send_response(&key, response, now) {
                    debug!(error = %e, "response for a finished transaction dropped");
                }
            }
            CallCommand::Stateless { message, to } => self.txl.send_stateless(message, to),
            CallCommand::Ended { call_ids } => {
                self.owners.retain(|_, owner| !call_ids.contains(owner));
                for id in call_ids {
                    self.channels.release(&id);
                    self.calls.remove(&id);
                }
            }
            CallCommand::Adopt { call_id, like } => {
                if let Some(tx) = self.calls.get(&like).cloned() {
                    self.calls.insert(call_id, tx);
                }
            }
            CallCommand::Lookup { user, reply } => {
                let _ = reply.send(self.registrar.lookup(&user, unix_ms() / 1000));
            }
        }
        self.flush();
    }

    /// Send what the transaction layer produced and act on its events.
    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.txl.poll_transmit() {
                self.transports.send(t);
                progressed = true;
            }
            while let Some(ev) = self.txl.poll_event() {
                self.handle_event(ev);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    /// Hand an event to the call owning `call_id`; false when there is none.
    fn route_to_call(&mut self, call_id: Option<&str>, ev: CallEvent) -> bool {
        let Some(id) = call_id else { return false };
        match self.calls.get(id) {
            Some(tx) if tx.send(Box::new(ev)).is_ok() => true,
            Some(_) => {
                self.calls.remove(id);
                false
            }
            None => false,
        }
    }

    fn handle_event(&mut self, ev: TransactionEvent) {
        match ev {
            TransactionEvent::Request {
                key,
                request,
                from,
                cancels,
            } => self.handle_request(key, request, from, cancels),
            TransactionEvent::Ack { request, from } => {
                let id = message::call_id(&request.headers).map(str::to_owned);
                self.route_to_call(id.as_deref(), CallEvent::Ack { request, from });
            }
            TransactionEvent::Response { key, response } => {
                if response.status_code.code() >= 200 {
                    self.owners.remove(&key);
                }
                let id = message::call_id(&response.headers).map(str::to_owned);
                if !self.route_to_call(id.as_deref(), CallEvent::Response { key, response }) {
                    debug!(
                        call_id = id.as_deref().unwrap_or(""),
                        "response for no call"
                    );
                }
            }
            TransactionEvent::Timeout { key } => {
                let id = self.owners.remove(&key);
                self.route_to_call(id.as_deref(), CallEvent::Timeout { key });
            }
            TransactionEvent::AckTimeout { key } => {
                let id = self.owners.remove(&key);
                self.route_to_call(id.as_deref(), CallEvent::AckTimeout { key });
            }
            TransactionEvent::StrayResponse { response, from } => {
                let id = message::call_id(&response.headers).map(str::to_owned);
                let _ =
                    self.route_to_call(id.as_deref(), CallEvent::StrayResponse { response, from });
            }
        }
    }

    fn respond(
        &mut self,
        key: &TransactionKey,
        req: &Request,
        code: u16,
        extra: Vec<rsip::Header>,
    ) {
        let mut resp = response_for(req, code, Some(&call::new_tag()));
        for h in extra {
            resp.headers.push(h);
        }
        resp.headers = message::finish(resp.headers, 0, &self.config.sip.user_agent);
        if let Err(e) = self.txl.send_response(key, resp, Instant::now()) {
            debug!(error = %e, "could not respond");
        }
    }

    fn handle_request(
        &mut self,
        key: TransactionKey,
        req: Request,
        from: Peer,
        cancels: Option<TransactionKey>,
    ) {
        if req.method == Method::Register {
            return self.handle_register(key, req, from);
        }
        let call_id = message::call_id(&req.headers).map(str::to_owned);
        let in_dialog = message::to_value(&req.headers)
            .and_then(message::tag_of)
            .is_some();
        // Anything for a call that exists goes to its actor.
        if call_id
            .as_deref()
            .is_some_and(|id| self.calls.contains_key(id))
        {
            let ev = CallEvent::Request {
                key,
                request: req,
                from,
                cancels,
            };
            self.route_to_call(call_id.as_deref(), ev);
            return;
        }
        match req.method {
            Method::Invite if !in_dialog => self.handle_new_invite(key, req, from),
            Method::Options if !in_dialog => {
                let allow = rsip::Header::Allow(rsip::headers::Allow::new(ALLOW));
                let accept = rsip::Header::Accept(rsip::headers::Accept::new("application/sdp"));
                self.respond(&key, &req, 200, vec![allow, accept]);
            }
            Method::Ack => {}
            Method::Cancel
            | Method::Bye
            | Method::Invite
            | Method::Info
            | Method::Update
            | Method::Options => self.respond(&key, &req, 481, vec![]),
            _ => {
                let allow = rsip::Header::Allow(rsip::headers::Allow::new(ALLOW));
                self.respond(&key, &req, 405, vec![allow]);
            }
        }
    }

    fn handle_register(&mut self, key: TransactionKey, req: Request, from: Peer) {
        let now = Instant::now();
        let ms = unix_ms();
        let extensions = &self.config.extensions;
        let outcome = self.auth.authenticate(
            &req,
            from.remote.ip(),
            |user| extensions.get(user).map(|e| e.password.as_str()),
            now,
            ms,
            ChallengeKind::Www,
        );
        match outcome {
            AuthOutcome::Challenge { response, failed } => {
                if failed {
                    self.ctx.metrics.auth_failure();
                }
                let _ = self.txl.send_response(&key, response, now);
            }
            AuthOutcome::Forbidden(response) => {
                self.ctx.metrics.auth_failure();
                let _ = self.txl.send_response(&key, response, now);
            }
            AuthOutcome::Locked => {
                self.ctx.metrics.auth_lockout();
                if self.config.auth.lockout_response == LockoutResponse::Forbidden {
                    self.respond(&key, &req, 403, vec![]);
                }
            }
            AuthOutcome::Authenticated { username } => {
                let was_up = self.phone_up(&username, ms / 1000);
                let out = self
                    .registrar
                    .handle_register(&req, &username, from, ms / 1000);
                let up = self.phone_up(&username, ms / 1000);
                if up != was_up {
                    self.ctx.acd.phone(&username, up);
                }
                for change in out.changes {
                    self.persist(change);
                }
                self.ctx
                    .metrics
                    .set_registrations(self.registrar.binding_count() as i64);
                let _ = self.txl.send_response(&key, out.response, now);
            }
        }
    }

    /// Whether `user` has a live registration (the ACD's online).
    fn phone_up(&self, user: &str, now_unix: u64) -> bool {
        self.registrar
            .location()
            .live(user, now_unix)
            .next()
            .is_some()
    }

    fn persist(&self, change: BindingChange) {
        let op = match change {
            BindingChange::Upsert { user, binding } => {
                store::WriteOp::UpsertBinding(crate::registrar::to_persisted(&user, &binding))
            }
            BindingChange::Remove { user, contact } => store::WriteOp::RemoveBinding {
                user,
                contact_uri: contact,
            },
            BindingChange::RemoveAll { user } => store::WriteOp::RemoveAllBindings { user },
        };
        if let Err(e) = self.store.submit(op) {
            warn!(error = %e, "binding not persisted");
        }
    }

    fn handle_new_invite(&mut self, key: TransactionKey, req: Request, from: Peer) {
        let now = Instant::now();
        if self.draining {
            let retry = rsip::Header::RetryAfter(rsip::headers::RetryAfter::new("30"));
            return self.respond(&key, &req, 503, vec![retry]);
        }
        // A carrier's call is trusted by its address, not by a password.
        let Some((key, req)) = self.trunk_invite(key, req, from) else {
            return;
        };
        let extensions = &self.config.extensions;
        let outcome = self.auth.authenticate(
            &req,
            from.remote.ip(),
            |user| extensions.get(user).map(|e| e.password.as_str()),
            now,
            unix_ms(),
            ChallengeKind::Proxy,
        );
        let caller = match outcome {
            AuthOutcome::Authenticated { username } => username,
            AuthOutcome::Challenge { response, failed } => {
                if failed {
                    self.ctx.metrics.auth_failure();
                }
                let _ = self.txl.send_response(&key, response, now);
                return;
            }
            AuthOutcome::Forbidden(response) => {
                self.ctx.metrics.auth_failure();
                let _ = self.txl.send_response(&key, response, now);
                return;
            }
            AuthOutcome::Locked => {
                self.ctx.metrics.auth_lockout();
                if self.config.auth.lockout_response == LockoutResponse::Forbidden {
                    self.respond(&key, &req, 403, vec![]);
                }
                return;
            }
        };
        let callee = req
            .uri
            .auth
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default();
        let service = call::Service::classify(&self.config, &callee);
        let group = self
            .config
            .acd
            .group_for_number(&callee)
            .map(|g| g.id.clone());
        let targets = if self.config.extensions.contains_key(&callee) {
            Some(self.registrar.lookup(&callee, unix_ms() / 1000))
        } else {
            None
        };
        if group.is_none() && service.is_none() && targets.is_none() {
            return self.outside_call(key, req, from, caller, callee);
        }
        let start = match (group, service) {
            (Some(group), _) => network::Start::Queue(group),
            (None, Some(service)) => network::Start::Service(service),
            (None, None) => network::Start::Bridge(targets),
        };
        let plan = crate::call::outbound::LegPlan::default();
        self.start_call(key, req, from, caller, callee, plan, start);
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
