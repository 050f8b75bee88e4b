//! The append-only queue event log: what happened to each queued call and
//! each agent, in the order the engine decided it. The store writes every
//! record to `acd_events`; statistics are folds over these records only, so
//! replaying the stored log gives the numbers the live engine showed.
//!
//! A queued call's life in the log: one `enter`, any number of `offer` /
//! `offer_end`, then exactly one of `answer`, `abandon`, `overflow`,
//! `timeout`; an answered call later gets `transfer` (optional) and `end`.
//! A call refused at the door (channel limit) gets `refused` and nothing
//! else.
//!
//! What this module must not do: decide anything. It is the record format.

use super::types::{
    AgentId, AgentStatus, CallId, GroupId, OfferOutcome, PauseReasonId, RefusalReason, UnixMs,
};

/// One entry of the queue event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub at: UnixMs,
    pub event: QueueEvent,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEvent {
    /// A call entered a group (counted as inbound whatever follows).
    Enter {
        call: CallId,
        group: GroupId,
        caller: String,
    },
    /// A call was refused before entering (not counted as inbound).
    Refused {
        call: CallId,
        group: GroupId,
        caller: String,
        reason: RefusalReason,
    },
    /// An agent's phone is rung for the call.
    Offer {
        call: CallId,
        group: GroupId,
        agent: AgentId,
    },
    /// An offer ended without the agent answering.
    OfferEnd {
        call: CallId,
        group: GroupId,
        agent: AgentId,
        outcome: OfferOutcome,
    },
    /// An agent answered: the call is connected.
    Answer {
        call: CallId,
        group: GroupId,
        agent: AgentId,
        wait_ms: u64,
    },
    /// The caller hung up before an agent answered.
    Abandon {
        call: CallId,
        group: GroupId,
        wait_ms: u64,
    },
    /// The queue was full: routed to the overflow destination (or busy).
    Overflow {
        call: CallId,
        group: GroupId,
        destination: Option<String>,
    },
    /// The queue timeout ran out: routed to the timeout destination (or busy).
    Timeout {
        call: CallId,
        group: GroupId,
        wait_ms: u64,
        destination: Option<String>,
    },
    /// The agent transferred the connected call away (an `end` follows).
    Transfer {
        call: CallId,
        group: GroupId,
        agent: AgentId,
        to: String,
    },
    /// The connected call ended.
    End {
        call: CallId,
        group: GroupId,
        agent: AgentId,
        talk_ms: u64,
    },
    Pause {
        agent: AgentId,
        reason: PauseReasonId,
    },
    Unpause {
        agent: AgentId,
    },
    /// After-call work started (`group`: the call's group, `None` for a
    /// campaign call; `secs` = its timer, 0 = until ready).
    WrapUp {
        agent: AgentId,
        group: Option<GroupId>,
        secs: u32,
    },
    /// The agent's status changed (`reason`: the pause reason, the error).
    Status {
        agent: AgentId,
        from: AgentStatus,
        to: AgentStatus,
        reason: Option<String>,
    },
}

/// The kinds of [`QueueEvent`] as stored text.
pub const KINDS: &[&str] = &[
    "enter",
    "refused",
    "offer",
    "offer_end",
    "answer",
    "abandon",
    "overflow",
    "timeout",
    "transfer",
    "end",
    "pause",
    "unpause",
    "wrap_up",
    "status",
];

impl QueueEvent {
    /// The stored kind (one of [`KINDS`]).
    pub fn kind(&self) -> &'static str {
        match self {
            QueueEvent::Enter { .. } => "enter",
            QueueEvent::Refused { .. } => "refused",
            QueueEvent::Offer { .. } => "offer",
            QueueEvent::OfferEnd { .. } => "offer_end",
            QueueEvent::Answer { .. } => "answer",
            QueueEvent::Abandon { .. } => "abandon",
            QueueEvent::Overflow { .. } => "overflow",
            QueueEvent::Timeout { .. } => "timeout",
            QueueEvent::Transfer { .. } => "transfer",
            QueueEvent::End { .. } => "end",
            QueueEvent::Pause { .. } => "pause",
            QueueEvent::Unpause { .. } => "unpause",
            QueueEvent::WrapUp { .. } => "wrap_up",
            QueueEvent::Status { .. } => "status",
        }
    }

    /// The call the event is about, if any.
    pub fn call(&self) -> Option<&CallId> {
        match self {
            QueueEvent::Enter { call, .. }
            | QueueEvent::Refused { call, .. }
            | QueueEvent::Offer { call, .. }
            | QueueEvent::OfferEnd { call, .. }
            | QueueEvent::Answer { call, .. }
            | QueueEvent::Abandon { call, .. }
            | QueueEvent::Overflow { call, .. }
            | QueueEvent::Timeout { call, .. }
            | QueueEvent::Transfer { call, .. }
            | QueueEvent::End { call, .. } => Some(call),
            _ => None,
        }
    }

    /// The group the event is about, if any.
    pub fn group(&self) -> Option<&GroupId> {
        match self {
            QueueEvent::Enter { group, .. }
            | QueueEvent::Refused { group, .. }
            | QueueEvent::Offer { group, .. }
            | QueueEvent::OfferEnd { group, .. }
            | QueueEvent::Answer { group, .. }
            | QueueEvent::Abandon { group, .. }
            | QueueEvent::Overflow { group, .. }
            | QueueEvent::Timeout { group, .. }
            | QueueEvent::Transfer { group, .. }
            | QueueEvent::End { group, .. } => Some(group),
            QueueEvent::WrapUp { group, .. } => group.as_ref(),
            _ => None,
        }
    }

    /// The agent the event is about, if any.
    pub fn agent(&self) -> Option<&AgentId> {
        match self {
            QueueEvent::Offer { agent, .. }
            | QueueEvent::OfferEnd { agent, .. }
            | QueueEvent::Answer { agent, .. }
            | QueueEvent::Transfer { agent, .. }
            | QueueEvent::End { agent, .. }
            | QueueEvent::Pause { agent, .. }
            | QueueEvent::Unpause { agent }
            | QueueEvent::WrapUp { agent, .. }
            | QueueEvent::Status { agent, .. } => Some(agent),
            _ => None,
        }
    }

    /// Whether this event closes a call's time in the queue (each entered
    /// call gets exactly one).
    pub fn is_queue_outcome(&self) -> bool {
        matches!(
            self,
            QueueEvent::Answer { .. }
                | QueueEvent::Abandon { .. }
                | QueueEvent::Overflow { .. }
                | QueueEvent::Timeout { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_once_each() {
        let mut kinds = KINDS.to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), KINDS.len());
        let unpause = QueueEvent::Unpause { agent: "a".into() };
        assert!(KINDS.contains(&unpause.kind()));
        assert_eq!(unpause.agent(), Some(&AgentId::from("a")));
        assert_eq!(unpause.call(), None);
    }

    #[test]
    fn only_the_four_outcomes_close_a_queued_call() {
        let call = CallId::from("c");
        let group = GroupId::from("g");
        let agent = AgentId::from("a");
        let answer = QueueEvent::Answer {
            call: call.clone(),
            group: group.clone(),
            agent: agent.clone(),
            wait_ms: 1,
        };
        let end = QueueEvent::End {
            call,
            group,
            agent,
            talk_ms: 5,
        };
        assert!(answer.is_queue_outcome());
        assert!(!end.is_queue_outcome());
    }
}
