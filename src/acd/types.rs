//! The vocabulary the ACD speaks: identifiers, the clock value, agent
//! statuses and the small closed enums that events, actions and the queue
//! event log share.
//!
//! What this module must not do: hold state or read the clock. Every enum
//! stored as text has one `as_str` spelling and parses back from it.

use std::fmt;
use std::str::FromStr;

/// Wall-clock time as milliseconds since the Unix epoch. The engine never
/// reads a clock: the shell passes `now` with every event, and statistics
/// bucket by it.
pub type UnixMs = u64;

/// An unknown text value for one of the enums of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub String);

        impl $name {
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }
    };
}

string_id!(
    /// A call waiting for or talking to an agent: the caller leg's SIP
    /// Call-ID, the same key as `call_records.call_id`.
    CallId
);
string_id!(
    /// An agent's login id (not a phone: see [`crate::acd::config::AgentConfig`]).
    AgentId
);
string_id!(
    /// A group (queue) id.
    GroupId
);
string_id!(
    /// An outbound campaign id.
    CampaignId
);
string_id!(
    /// A configured pause reason id.
    PauseReasonId
);

/// One attempt to ring one agent for one call (queue or campaign). The
/// shell reports the agent leg's progress under this id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OfferId(pub u64);

/// A timer the engine asked the shell to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub u64);

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text form (logs, SQLite, CSV).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { kind: $kind, value: s.to_string() }),
                }
            }
        }
    };
}

text_enum!(
    /// What an agent is doing, as the dashboard and the status log show it.
    AgentStatus, "agent status" {
        /// No phone: logged out, or the bound phone is not registered.
        Offline => "offline",
        /// Ready for a call.
        Idle => "idle",
        /// An offer is ringing the agent's phone.
        Ringing => "ringing",
        /// Connected to a caller.
        Talking => "talking",
        /// Connected, with the caller on hold.
        OnHold => "on_hold",
        /// After-call work (wrap-up).
        WrapUp => "wrap_up",
        /// Paused with a reason; every reason counts as stopped.
        Paused => "paused",
        /// The agent's phone failed an offer (unreachable); no calls until
        /// it registers again, the agent says ready, or the retry timer ends.
        Error => "error",
    }
);

impl AgentStatus {
    /// Whether the dashboard counts this status as talking (ringing counts).
    pub fn counts_as_talking(self) -> bool {
        matches!(
            self,
            AgentStatus::Ringing | AgentStatus::Talking | AgentStatus::OnHold
        )
    }
}

text_enum!(
    /// The ring strategies of a group.
    Strategy, "ring strategy" {
        /// Ring every free agent of the lowest level at once.
        RingAll => "ring-all",
        /// The agent whose last call ended longest ago.
        LongestIdle => "longest-idle",
        /// The agent with the least talk time.
        LeastTalkTime => "least-talk-time",
        /// A random agent (seeded generator).
        Random => "random",
        /// In turn, in member order.
        RoundRobin => "round-robin",
        /// Levels as shares: level 1 gets twice the calls of level 2.
        Weighted => "weighted",
    }
);

text_enum!(
    /// Why an agent leg failed without answering.
    LegFailure, "leg failure" {
        /// The phone is busy (486, 600): the agent rests, no miss counted.
        Busy => "busy",
        /// The agent declined (603): counts as a miss.
        Declined => "declined",
        /// The phone could not be reached (408, 5xx, no contact, transport
        /// error): the agent goes to error status.
        Unreachable => "unreachable",
    }
);

text_enum!(
    /// How an offer ended, when it did not end in an answer.
    OfferOutcome, "offer outcome" {
        /// The agent's ring time ran out (or the phone said no answer).
        NoAnswer => "no_answer",
        Declined => "declined",
        Busy => "busy",
        Unreachable => "unreachable",
        /// Withdrawn by the engine: answered elsewhere, caller gone, queue
        /// timeout, agent logged out.
        Cancelled => "cancelled",
    }
);

impl From<LegFailure> for OfferOutcome {
    fn from(f: LegFailure) -> Self {
        match f {
            LegFailure::Busy => OfferOutcome::Busy,
            LegFailure::Declined => OfferOutcome::Declined,
            LegFailure::Unreachable => OfferOutcome::Unreachable,
        }
    }
}

text_enum!(
    /// Why a call was refused before it entered a group.
    RefusalReason, "refusal reason" {
        /// Over the contracted channel limit.
        ChannelLimit => "channel_limit",
    }
);

/// Something played to a waiting caller. A [`crate::acd::Action::PlayToCaller`]
/// carries a list played in order; the last item (music on hold or
/// ringback) repeats until the next play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Ringing tone (ring-then-queue phase; the caller is not answered).
    Ringback,
    Greeting(String),
    Announcement(String),
    /// "You are caller number N."
    Position(u32),
    /// "Your estimated wait is about N seconds."
    EstimatedWait {
        secs: u64,
    },
    /// The group's music, or the system default when `None`.
    MusicOnHold(Option<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enum_parses_back_from_its_text() {
        for s in AgentStatus::ALL {
            assert_eq!(s.as_str().parse::<AgentStatus>(), Ok(*s));
        }
        for s in Strategy::ALL {
            assert_eq!(s.as_str().parse::<Strategy>(), Ok(*s));
        }
        for s in OfferOutcome::ALL {
            assert_eq!(s.as_str().parse::<OfferOutcome>(), Ok(*s));
        }
        for s in LegFailure::ALL {
            assert_eq!(s.as_str().parse::<LegFailure>(), Ok(*s));
        }
        let err = "lunch".parse::<AgentStatus>().unwrap_err();
        assert_eq!(err.kind, "agent status");
    }

    #[test]
    fn ringing_and_hold_count_as_talking() {
        let talking: Vec<_> = AgentStatus::ALL
            .iter()
            .filter(|s| s.counts_as_talking())
            .collect();
        assert_eq!(
            talking,
            [
                &AgentStatus::Ringing,
                &AgentStatus::Talking,
                &AgentStatus::OnHold
            ]
        );
    }
}
