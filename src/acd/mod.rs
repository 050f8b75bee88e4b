//! The ACD: agents, groups (queues), ring strategies, reservations, the
//! queue event log and the statistics derived from it.
//!
//! - [`types`]: identifiers, the clock value, statuses and closed enums.
//! - [`config`]: agents, groups and pause reasons as written and validated.
//! - [`event`]: the engine's interface, [`Event`] in and [`Action`] out.
//! - [`engine`]: the sans-IO state machine ([`Engine::handle`]).
//! - [`strategy`]: ring strategies over the candidates the engine allows.
//! - [`log`]: the append-only queue event log records.
//! - [`schema`]: the SQLite table of that log.
//! - [`stats`]: live tally, realtime view, historical tables, CSV.
//!
//! What this module must not do: touch SIP, media, sockets, the store or
//! the clock. A shell task owns the engine, feeds it events with the time,
//! carries out its actions and hands its log records to the store.

pub mod config;
pub mod engine;
pub mod event;
pub mod log;
pub mod schema;
pub mod stats;
pub mod strategy;
pub mod types;

pub use config::{validate, AcdConfig, AcdConfigError, RawAcd};
pub use engine::{AgentView, Engine, WaitingCall};
pub use event::{Action, Event, LegOutcome};
pub use log::{LogRecord, QueueEvent};
pub use types::{AgentId, AgentStatus, CallId, GroupId, OfferId, TimerId, UnixMs};
