//! Trunks to carriers: the registration of `register` trunks. The state
//! machine (`registration.rs`) is pure; `client.rs` is the task that runs
//! one per register trunk, sending through the SIP core like a call actor.
//!
//! Calls over trunks are not here: routing decides them
//! ([`crate::routing`]) and the B2BUA carries them
//! ([`crate::call::outbound`]).

pub mod client;
pub mod registration;
