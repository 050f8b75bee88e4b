//! Routing between the public network and the extensions: what an INVITE
//! from a carrier is for (which number, blocked or not, over its channel
//! limit or not), and where an extension's outside call leaves (prefix
//! routing, caller ID, permission classes, emergency numbers, the
//! restriction list).
//!
//! Pure decisions over the configuration, the lists and the channel
//! counts, which the SIP core owns and passes in; no sockets, no clock,
//! no database reads (the lists come in memory from [`lists`]).

pub mod channels;
pub mod inbound;
pub mod lists;
pub mod number;
pub mod outbound;

use crate::store::Disposition;

/// A call the router turns away, with what the caller hears and what the
/// call record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Final SIP status.
    pub code: u16,
    pub disposition: Disposition,
    /// For the log.
    pub reason: &'static str,
    /// Play the restriction announcement (early media) before the final
    /// answer.
    pub announce: bool,
    /// The number (national form) and trunk involved, when known.
    pub did: Option<String>,
    pub trunk: Option<String>,
}

impl Refusal {
    pub fn new(code: u16, disposition: Disposition, reason: &'static str) -> Refusal {
        Refusal {
            code,
            disposition,
            reason,
            announce: false,
            did: None,
            trunk: None,
        }
    }

    /// Over a number's channel limit: busy, counted as such.
    pub fn channel_limit(did: &str, trunk: &str) -> Refusal {
        Refusal {
            did: Some(did.to_owned()),
            trunk: Some(trunk.to_owned()),
            ..Refusal::new(486, Disposition::ChannelLimit, "channel limit reached")
        }
    }
}
