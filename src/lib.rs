//! denwa: an on-prem call-center PBX appliance in one binary.
//!
//! # Layout
//!
//! - [`acd`]: queues: agents, groups, ring strategies, the sans-IO ACD
//!   engine, the queue event log and its statistics.
//! - [`config`]: TOML → raw structs → validated [`config::Config`]; `denwa check`.
//! - [`sip`]: the SIP protocol core. [`sip::message`] wraps rsip (normalising
//!   compact and folded headers first), [`sip::framing`] frames TCP streams,
//!   [`sip::transaction`] is the sans-IO transaction layer (RFC 3261 §17),
//!   [`sip::dialog`] holds dialog state. Nothing under `sip/` touches a socket
//!   or reads the clock: time comes in as an argument.
//! - [`auth`]: digest authentication (RFC 2617/7616/8760) and per-source lockout.
//! - [`registrar`]: REGISTER handling and the location service (pure core).
//! - [`call`]: the B2BUA: routing and one actor task per call.
//! - [`media`]: SDP rewriting and the RTP relay (data plane).
//! - [`store`]: SQLite (WAL) behind one writer task; migrations; call records.
//! - [`http`]: `/healthz` and `/metrics`.
//! - [`metrics`]: process-wide counters rendered as Prometheus text.
//! - [`routing`]: numbers, trunks and outbound routing decisions (pure).
//! - [`trunk`]: registration to carriers (pure state machine and its task).
//! - [`server`]: wiring — sockets, tasks, signals, reload and drain.
//!
//! See `ARCHITECTURE.md` at the repository root for the invariants.
#![forbid(unsafe_code)]

pub mod acd;
pub mod auth;
pub mod call;
pub mod cli;
pub mod config;
pub mod http;
pub mod media;
pub mod metrics;
pub mod registrar;
pub mod routing;
pub mod server;
pub mod sip;
pub mod store;
pub mod trunk;
