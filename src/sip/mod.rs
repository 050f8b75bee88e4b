//! The SIP protocol core (RFC 3261). Pure: no sockets, no clock.
//!
//! Transport tasks (in [`crate::server`]) read bytes, hand them to
//! [`message::parse`] and feed the result to the [`transaction`] layer together
//! with `now`; whatever the layer wants sent comes back out of `poll_transmit`.

use std::net::SocketAddr;

pub mod dialog;
pub mod framing;
mod head;
pub mod ipv6;
pub mod message;
pub mod transaction;
mod wire;

/// The transport a message arrived on or must leave on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
}

impl TransportKind {
    /// Unreliable transports need retransmission timers (A, E, G) and wait
    /// states (D, I, J, K) that are zero on reliable ones.
    pub fn is_reliable(self) -> bool {
        matches!(self, TransportKind::Tcp)
    }

    /// The token used in a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
        }
    }
}

/// Where a message came from / must go: the transport, the remote address and
/// the local address of the socket (or TCP connection) involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: TransportKind,
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

/// Bytes the protocol core wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub data: Vec<u8>,
}
