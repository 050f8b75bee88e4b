//! The engine's interface: the [`Event`]s the shell feeds into
//! [`crate::acd::Engine::handle`] and the [`Action`]s it gets back.
//!
//! The shell turns actions into SIP and media commands (ring a phone,
//! bridge, play, route) and timers, and turns what comes back (agent leg
//! progress, hang-ups, fired timers, registrations, feature codes) into
//! events. Actions are returned in the order they must be carried out.
//!
//! What this module must not do: carry SIP or media types; the ACD speaks
//! of calls, agents and offers only.

use super::log::LogRecord;
use super::types::{
    AgentId, AgentStatus, CallId, CampaignId, GroupId, LegFailure, OfferId, PauseReasonId, Prompt,
    RefusalReason, TimerId, UnixMs,
};

/// What happened to an agent leg the engine offered a call on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegOutcome {
    /// The phone is ringing (180).
    Ringing,
    /// The agent answered (2xx).
    Answered,
    /// The phone reported that nobody answered.
    NoAnswer,
    Failed(LegFailure),
}

/// An input to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A call is sent to a group (by a script or a number's route).
    CallArrived {
        call: CallId,
        group: GroupId,
        caller: String,
    },
    /// A call for a group was refused before entering it (channel limit):
    /// counted, never queued.
    CallRefused {
        call: CallId,
        group: GroupId,
        caller: String,
        reason: RefusalReason,
    },
    /// The caller hung up (waiting: abandoned; connected: the call ends).
    CallerHungUp {
        call: CallId,
    },
    /// A connected call ended (either side hung up).
    CallEnded {
        call: CallId,
    },
    /// The agent transferred the connected call elsewhere (ignored for a
    /// call no agent has answered).
    CallTransferred {
        call: CallId,
        to: String,
    },
    /// The agent put the caller on hold / took them back.
    CallHeld {
        call: CallId,
    },
    CallResumed {
        call: CallId,
    },
    /// Progress of an agent leg.
    AgentLeg {
        offer: OfferId,
        outcome: LegOutcome,
    },
    /// Hot-desk login (`998`): bind the agent to this phone.
    AgentLogin {
        agent: AgentId,
        extension: String,
        pin: Option<String>,
    },
    /// Hot-desk logout (`997`) or logout from the console.
    AgentLogout {
        agent: AgentId,
    },
    PhoneRegistered {
        extension: String,
    },
    PhoneUnregistered {
        extension: String,
    },
    Pause {
        agent: AgentId,
        reason: PauseReasonId,
    },
    /// Lift a pause (after-call work and error stay).
    Unpause {
        agent: AgentId,
    },
    /// The agent is ready: ends pause, after-call work and error status.
    Ready {
        agent: AgentId,
    },
    TimerFired {
        timer: TimerId,
    },
    /// Reserve one of `agents` (longest idle first) for a campaign call,
    /// exactly like a queue offer. Answered with an [`Action::OfferCall`]
    /// or [`Action::CampaignNoAgent`].
    CampaignReserve {
        campaign: CampaignId,
        call: CallId,
        agents: Vec<AgentId>,
        ring_secs: u32,
        /// After-call work when the campaign call ends (`None`: none).
        wrap_up_secs: Option<u32>,
    },
    /// The agent dialled `990`: their phone stays connected for this
    /// campaign; they get no queue calls until [`Event::CampaignLogout`].
    CampaignLogin {
        agent: AgentId,
        campaign: CampaignId,
    },
    CampaignLogout {
        agent: AgentId,
    },
}

/// What an offer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferSource {
    Group(GroupId),
    Campaign(CampaignId),
}

/// How the agent is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferMode {
    /// Ring the agent's phone.
    Ring,
    /// The agent is on an open `990` line: connect into it (report
    /// `Answered` once done).
    OpenLine,
}

/// Why an offer was withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// Another agent answered first (ring all).
    AnsweredElsewhere,
    /// The agent's ring time ran out.
    RingTimeout,
    /// The caller hung up.
    CallerGone,
    /// The call left the queue (timeout).
    QueueTimeout,
    /// The agent logged out or lost their phone.
    AgentGone,
}

/// Why a call is routed away from the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteReason {
    Overflow,
    Timeout,
}

/// Why a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Queue full or timed out with no destination set: busy.
    Busy,
    /// The group does not exist.
    UnknownGroup,
}

/// Why a hot-desk login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    UnknownAgent,
    WrongPin,
}

/// An output of the engine, for the shell to carry out in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer the caller's leg (they leave ringback for the queue).
    AnswerCaller {
        call: CallId,
    },
    /// Replace what the caller hears with these prompts, in order.
    PlayToCaller {
        call: CallId,
        prompts: Vec<Prompt>,
    },
    /// Ring `agent` at `extension` for `call`; the engine ends the offer by
    /// itself after `ring_ms` (and sends [`Action::CancelOffer`]).
    OfferCall {
        offer: OfferId,
        call: CallId,
        agent: AgentId,
        extension: String,
        source: OfferSource,
        mode: OfferMode,
        ring_ms: u64,
        /// Text shown on the phone while it rings.
        display: Option<String>,
    },
    /// Stop ringing this offer (CANCEL).
    CancelOffer {
        offer: OfferId,
        call: CallId,
        agent: AgentId,
        reason: CancelReason,
    },
    /// The agent answered an offer that was already withdrawn (the 200 OK
    /// crossed the CANCEL): acknowledge it and hang the agent leg up.
    DropLateAnswer {
        offer: OfferId,
    },
    /// Play to the agent only, on answer (the caller does not hear it).
    WhisperToAgent {
        offer: OfferId,
        call: CallId,
        sound: String,
    },
    /// Connect the caller to the agent leg of `offer`.
    Bridge {
        call: CallId,
        offer: OfferId,
        agent: AgentId,
    },
    /// Send the call to a destination outside the group.
    RouteTo {
        call: CallId,
        destination: String,
        reason: RouteReason,
    },
    /// Refuse the call (busy).
    Reject {
        call: CallId,
        reason: RejectReason,
    },
    /// Fire [`Event::TimerFired`] with `timer` at `at` (unless cancelled).
    SetTimer {
        timer: TimerId,
        at: UnixMs,
    },
    CancelTimer {
        timer: TimerId,
    },
    /// Append to the queue event log.
    Log(LogRecord),
    /// For the dashboard bus; also in the log as a `status` record.
    AgentStatusChanged {
        agent: AgentId,
        from: AgentStatus,
        to: AgentStatus,
        reason: Option<String>,
    },
    LoginRefused {
        agent: AgentId,
        extension: String,
        reason: LoginRefusal,
    },
    /// No agent of the pool is free for this campaign call.
    CampaignNoAgent {
        campaign: CampaignId,
        call: CallId,
    },
    /// The reserved agent did not take the campaign call; the pacer
    /// decides what to do next.
    CampaignReleased {
        campaign: CampaignId,
        call: CallId,
        agent: AgentId,
    },
}
