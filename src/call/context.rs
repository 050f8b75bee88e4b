//! What every call actor shares: the way back to the SIP core, addressing
//! (which host:port to write into Via/Contact/SDP for a given peer), the RTP
//! port pool, the store and the metrics.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::config::Config;
use crate::media::ports::PortAllocator;
use crate::media::recording::Recorder;
use crate::media::relay::MediaEngine;
use crate::media::sound::SoundLibrary;
use crate::metrics::Metrics;
use crate::sip::transaction::TransactionKey;
use crate::sip::{Peer, TransportKind};
use crate::store::Store;

/// What a call actor asks of the SIP core.
#[derive(Debug)]
pub enum CallCommand {
    /// Start a client transaction.
    Request { request: rsip::Request, to: Peer },
    /// Answer within a server transaction.
    Respond {
        key: TransactionKey,
        response: rsip::Response,
    },
    /// Send outside any transaction (ACK for a 2xx).
    Stateless { message: rsip::SipMessage, to: Peer },
    /// The call is over: forget its Call-IDs.
    Ended { call_ids: Vec<String> },
    /// Deliver traffic for `call_id` (a leg the actor starts itself) to
    /// the actor that owns Call-ID `like`.
    Adopt { call_id: String, like: String },
    /// The live contacts of extension `user` (empty: not registered).
    Lookup {
        user: String,
        reply: tokio::sync::oneshot::Sender<Vec<crate::registrar::location::Binding>>,
    },
}

/// Addresses denwa advertises.
pub struct Addressing {
    advertise: Option<IpAddr>,
    media: Option<IpAddr>,
    routes: Mutex<HashMap<IpAddr, IpAddr>>,
}

impl Addressing {
    pub fn new(advertise: Option<IpAddr>, media: Option<IpAddr>) -> Self {
        Addressing {
            advertise,
            media,
            routes: Mutex::new(HashMap::new()),
        }
    }

    /// The local IP a peer should address us by.
    pub fn local_ip(&self, peer: &Peer) -> IpAddr {
        if let Some(ip) = self.advertise {
            return ip;
        }
        if !peer.local.ip().is_unspecified() {
            return peer.local.ip();
        }
        let remote = peer.remote.ip();
        if let Ok(mut cache) = self.routes.lock() {
            if let Some(ip) = cache.get(&remote) {
                return *ip;
            }
            let ip = crate::server::transport::route_source(remote).unwrap_or(peer.local.ip());
            if cache.len() > 4096 {
                cache.clear();
            }
            cache.insert(remote, ip);
            return ip;
        }
        peer.local.ip()
    }

    /// `host:port` for Via and Contact towards `peer`.
    pub fn sent_by(&self, peer: &Peer) -> String {
        SocketAddr::new(self.local_ip(peer), peer.local.port()).to_string()
    }

    /// The IP media for `peer` is relayed on.
    pub fn media_ip(&self, peer: &Peer) -> IpAddr {
        self.media.unwrap_or_else(|| self.local_ip(peer))
    }

    /// A Via value with `branch` towards `peer`.
    pub fn via(&self, peer: &Peer, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {};branch={};rport",
            peer.transport.via_token(),
            self.sent_by(peer),
            branch
        )
    }

    /// Our Contact URI towards `peer`.
    pub fn contact(&self, peer: &Peer, user: &str) -> String {
        match peer.transport {
            TransportKind::Udp => format!("sip:{user}@{}", self.sent_by(peer)),
            TransportKind::Tcp => format!("sip:{user}@{};transport=tcp", self.sent_by(peer)),
        }
    }
}

/// Shared by all call actors; cheap to clone.
#[derive(Clone)]
pub struct CallContext {
    pub commands: mpsc::UnboundedSender<CallCommand>,
    pub config: Arc<Config>,
    pub addressing: Arc<Addressing>,
    pub ports: PortAllocator,
    pub media: MediaEngine,
    pub recorder: Recorder,
    pub store: Store,
    pub metrics: Metrics,
    /// Running calls by extension, for supervisors.
    pub taps: super::Taps,
    /// Live calls and room members by id, for call control (HTTP API).
    pub calls: super::Calls,
    /// Prompts played by call control (`[media] sounds`).
    pub prompts: Arc<SoundLibrary>,
    /// The ACD task: queue calls and phone registrations go there.
    pub acd: super::queue::AcdHandle,
}
