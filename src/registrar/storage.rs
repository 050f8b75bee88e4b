//! What of the location service reaches the store, and when: the write
//! policy for registrations, and the conversion to and from stored rows.
//!
//! A refresh that changes nothing but the expiry (and the Call-ID/CSeq) need
//! not be written every time. The policy, chosen so that a crash at any
//! moment keeps every phone registered:
//!
//! - A new binding, a removal, and a refresh that changes where the binding
//!   was received from (transport, source, local socket) or its User-Agent
//!   are always written.
//! - A refresh is written when the stored expiry would fall more than
//!   [`STORE_LAG_SECS`] behind the new one, or when the new expiry is
//!   earlier than the stored one. So the stored expiry is never later than
//!   the real one and at most [`STORE_LAG_SECS`] earlier.
//! - On restore, a binding is kept until its stored expiry plus
//!   [`STORE_LAG_SECS`], which is at or after the real expiry; rows are
//!   purged from the store only once their stored expiry plus the lag has
//!   passed ([`stored_expiry_cutoff`]). The price: after a restart a phone
//!   that vanished without unregistering may be kept up to the lag longer.
//! - Call-ID and CSeq lag along with the expiry. After a restart a REGISTER
//!   with an older CSeq could then pass the ordering check (RFC 3261 §10.3
//!   step 7), but it cannot be a replay: nonces issued before the restart
//!   no longer verify.
//!
//! Pure: no clock, no I/O.

use std::net::SocketAddr;

use super::location::Binding;
use crate::sip::Peer;
use crate::store::PersistedBinding;

/// How far the stored expiry of a binding may lag the real one.
pub const STORE_LAG_SECS: u64 = 60;

/// Whether the refreshed binding `new` must be written, given the binding
/// it replaces (`None` for a new one).
pub(super) fn must_store(old: Option<&Binding>, new: &Binding) -> bool {
    let Some(old) = old else { return true };
    old.received != new.received
        || old.user_agent != new.user_agent
        || new.expires_at_unix < old.stored_expires_at_unix
        || new.expires_at_unix > old.stored_expires_at_unix.saturating_add(STORE_LAG_SECS)
}

/// The stored expiry at or before which a row is gone for sure at
/// `now_unix`: for restoring (rows after it) and purging (rows up to it).
pub fn stored_expiry_cutoff(now_unix: u64) -> u64 {
    now_unix.saturating_sub(STORE_LAG_SECS)
}

/// A binding as stored by [`crate::store`].
pub fn to_persisted(user: &str, binding: &Binding) -> PersistedBinding {
    PersistedBinding {
        user: user.to_owned(),
        contact_uri: binding.contact_uri.clone(),
        expires_at_unix: i64::try_from(binding.expires_at_unix).unwrap_or(i64::MAX),
        transport: binding.received.transport,
        remote_addr: binding.received.remote.to_string(),
        local_addr: binding.received.local.to_string(),
        call_id: binding.call_id.clone(),
        cseq: binding.cseq,
        user_agent: binding.user_agent.clone(),
    }
}

/// A stored binding back as (user, binding), for
/// [`super::Registrar::restore`]; `None` if its addresses do not parse. It
/// expires [`STORE_LAG_SECS`] after its stored expiry (see the module
/// documentation).
pub fn from_persisted(p: &PersistedBinding) -> Option<(String, Binding)> {
    let remote: SocketAddr = p.remote_addr.parse().ok()?;
    let local: SocketAddr = p.local_addr.parse().ok()?;
    let stored = u64::try_from(p.expires_at_unix).unwrap_or(0);
    let binding = Binding {
        contact_uri: p.contact_uri.clone(),
        expires_at_unix: stored.saturating_add(STORE_LAG_SECS),
        stored_expires_at_unix: stored,
        received: Peer {
            transport: p.transport,
            remote,
            local,
        },
        call_id: p.call_id.clone(),
        cseq: p.cseq,
        user_agent: p.user_agent.clone(),
    };
    Some((p.user.clone(), binding))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::TransportKind;

    fn binding(expires: u64, stored: u64) -> Binding {
        Binding {
            contact_uri: "sip:a@x".into(),
            expires_at_unix: expires,
            stored_expires_at_unix: stored,
            received: Peer {
                transport: TransportKind::Udp,
                remote: "203.0.113.5:40000".parse().expect("address"),
                local: "192.0.2.1:5060".parse().expect("address"),
            },
            call_id: "c".into(),
            cseq: 1,
            user_agent: Some("phone".into()),
        }
    }

    #[test]
    fn only_refreshes_that_move_the_expiry_far_enough_are_stored() {
        let old = binding(1000, 1000);
        assert!(must_store(None, &binding(1000, 0)), "new binding");
        assert!(!must_store(Some(&old), &binding(1000, 0)));
        assert!(!must_store(Some(&old), &binding(1000 + STORE_LAG_SECS, 0)));
        assert!(must_store(Some(&old), &binding(1001 + STORE_LAG_SECS, 0)));
        assert!(must_store(Some(&old), &binding(999, 0)), "shortened");
        let mut moved = binding(1000, 0);
        moved.received.remote = "203.0.113.5:40001".parse().expect("address");
        assert!(must_store(Some(&old), &moved), "new source port");
        let mut other_agent = binding(1000, 0);
        other_agent.user_agent = None;
        assert!(must_store(Some(&old), &other_agent));
        let mut new_call = binding(1000, 0);
        new_call.call_id = "d".into();
        new_call.cseq = 7;
        assert!(!must_store(Some(&old), &new_call), "Call-ID and CSeq lag");
    }

    #[test]
    fn restored_bindings_outlive_their_stored_expiry_by_the_lag() {
        let stored = to_persisted("1001", &binding(5000, 5000));
        assert_eq!(stored.remote_addr, "203.0.113.5:40000");
        let (user, back) = from_persisted(&stored).expect("round trip");
        assert_eq!(user, "1001");
        assert_eq!(back, binding(5000 + STORE_LAG_SECS, 5000));
        assert_eq!(stored_expiry_cutoff(5000 + STORE_LAG_SECS), 5000);
        assert_eq!(stored_expiry_cutoff(1), 0);
        let mut bad = stored;
        bad.local_addr = "nowhere".into();
        assert_eq!(from_persisted(&bad), None);
    }
}
