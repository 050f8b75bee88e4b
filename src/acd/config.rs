//! ACD configuration: agents, groups (queues) and pause reasons, first as
//! written in TOML (`Raw*`, serde, unknown keys refused), then validated
//! into the typed [`AcdConfig`] the engine runs on.
//!
//! Validation collects every problem at once; each [`AcdConfigError`] names
//! the agent, group or reason it is about, the key path below the ACD
//! section (ready for the config locator to find its line) and a typed
//! [`Problem`].
//!
//! What this module must not do: read files, or know about phones beyond an
//! agent's static extension; what a destination string means is the
//! router's business (it is only checked for being non-empty).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

use super::types::{AgentId, GroupId, PauseReasonId, Strategy};
use crate::config::locate::Seg;

/// The pause reason auto-pause uses. It always exists; configuring a
/// reason with this id only changes its name, colour and icon.
pub const NO_ANSWER_REASON: &str = "no-answer";

/// Skill levels run from 1 (tried first) to this.
pub const MAX_LEVEL: u8 = 99;

/// `[acd]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAcd {
    /// How long an agent whose phone was unreachable stays in error status
    /// (0 = until the phone registers again or the agent says ready).
    pub error_retry_secs: u32,
    pub pause_reasons: Vec<RawPauseReason>,
    pub agents: Vec<RawAgent>,
    pub groups: Vec<RawGroup>,
}

impl Default for RawAcd {
    fn default() -> Self {
        RawAcd {
            error_retry_secs: 60,
            pause_reasons: Vec::new(),
            agents: Vec::new(),
            groups: Vec::new(),
        }
    }
}

/// `[[acd.pause_reasons]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPauseReason {
    pub id: String,
    pub name: String,
    pub colour: Option<String>,
    pub icon: Option<String>,
}

/// `[[acd.agents]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAgent {
    /// Login id.
    pub id: String,
    pub name: String,
    /// The phone the agent is bound to at start; unset = hot-desk only.
    pub extension: Option<String>,
    /// Digits asked at hot-desk login; unset = no PIN.
    pub pin: Option<String>,
}

/// One member of a group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMember {
    pub agent: String,
    pub level: u32,
}

impl Default for RawMember {
    fn default() -> Self {
        RawMember {
            agent: String::new(),
            level: 1,
        }
    }
}

/// `[[acd.groups]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGroup {
    pub id: String,
    pub name: String,
    /// The numbers callers dial to reach the group.
    pub numbers: Vec<String>,
    pub strategy: String,
    pub members: Vec<RawMember>,
    /// Calls allowed to wait (0 = only as many calls as free agents).
    pub max_waiting: u32,
    /// From arrival (0 = no timeout).
    pub timeout_secs: u32,
    /// Where a call goes when the queue is full (unset = busy).
    pub overflow: Option<String>,
    /// Where a call goes on queue timeout (unset = busy).
    pub timeout_destination: Option<String>,
    /// How long one agent rings.
    pub ring_secs: u32,
    /// Ring agents for this long before answering the caller into the queue.
    pub ring_then_queue_secs: u32,
    /// Calls (ringing or connected) an agent may hold at once.
    pub max_calls_per_agent: u32,
    /// How long an agent who did not take a call rests before the next offer.
    pub retry_secs: u32,
    /// Pause an agent after this many missed offers in a row (0 = never).
    pub auto_pause_misses: u32,
    /// Lift an auto-pause after this long (0 = until the agent unpauses).
    pub auto_unpause_secs: u32,
    /// After-call work after each call (unset = none, 0 = until ready).
    pub wrap_up_secs: Option<u32>,
    pub greeting: Option<String>,
    pub announcement: Option<String>,
    /// Period of the announcement (0 = never).
    pub announce_every_secs: u32,
    pub announce_position: bool,
    pub announce_wait: bool,
    pub music_on_hold: Option<String>,
    /// Played to the agent only, on answer.
    pub whisper: Option<String>,
    /// Shown on the agent's phone while it rings.
    pub ring_text: Option<String>,
    /// Tag colour for the dashboard.
    pub colour: Option<String>,
}

impl Default for RawGroup {
    fn default() -> Self {
        RawGroup {
            id: String::new(),
            name: String::new(),
            numbers: Vec::new(),
            strategy: Strategy::LongestIdle.as_str().to_string(),
            members: Vec::new(),
            max_waiting: 10,
            timeout_secs: 300,
            overflow: None,
            timeout_destination: None,
            ring_secs: 15,
            ring_then_queue_secs: 0,
            max_calls_per_agent: 1,
            retry_secs: 5,
            auto_pause_misses: 0,
            auto_unpause_secs: 0,
            wrap_up_secs: None,
            greeting: None,
            announcement: None,
            announce_every_secs: 0,
            announce_position: false,
            announce_wait: false,
            music_on_hold: None,
            whisper: None,
            ring_text: None,
            colour: None,
        }
    }
}

/// A pause reason, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseReason {
    pub id: PauseReasonId,
    pub name: String,
    pub colour: Option<String>,
    pub icon: Option<String>,
}

/// An agent, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub id: AgentId,
    pub name: String,
    pub extension: Option<String>,
    pub pin: Option<String>,
}

/// A member of a group with its skill level (1 is tried first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub agent: AgentId,
    pub level: u8,
}

/// What a group plays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSounds {
    pub greeting: Option<String>,
    pub announcement: Option<String>,
    pub announce_every_secs: u32,
    pub announce_position: bool,
    pub announce_wait: bool,
    pub music_on_hold: Option<String>,
    pub whisper: Option<String>,
}

/// A group (queue), validated. Times are seconds; see [`RawGroup`] for
/// what 0 means for each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    pub id: GroupId,
    pub name: String,
    /// The numbers callers dial to reach the group (digits).
    pub numbers: Vec<String>,
    pub strategy: Strategy,
    pub members: Vec<Member>,
    pub max_waiting: u32,
    pub timeout_secs: u32,
    pub overflow: Option<String>,
    pub timeout_destination: Option<String>,
    pub ring_secs: u32,
    pub ring_then_queue_secs: u32,
    pub max_calls_per_agent: u32,
    pub retry_secs: u32,
    pub auto_pause_misses: u32,
    pub auto_unpause_secs: u32,
    pub wrap_up_secs: Option<u32>,
    pub sounds: GroupSounds,
    pub ring_text: Option<String>,
    pub colour: Option<String>,
}

/// The validated ACD configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcdConfig {
    pub error_retry_secs: u32,
    /// Always holds [`NO_ANSWER_REASON`].
    pub pause_reasons: Vec<PauseReason>,
    pub agents: Vec<AgentConfig>,
    pub groups: Vec<GroupConfig>,
}

impl AcdConfig {
    /// Whether `pin` opens `agent`'s hot-desk login (no PIN configured:
    /// any PIN, or none, does).
    pub fn pin_matches(&self, agent: &AgentId, pin: Option<&str>) -> bool {
        match self.agents.iter().find(|a| &a.id == agent) {
            Some(a) => match &a.pin {
                None => true,
                Some(expected) => pin == Some(expected.as_str()),
            },
            None => false,
        }
    }

    /// The group callers reach by dialling `number`.
    pub fn group_for_number(&self, number: &str) -> Option<&GroupConfig> {
        self.groups
            .iter()
            .find(|g| g.numbers.iter().any(|n| n == number))
    }

    /// The pause reason with this id.
    pub fn pause_reason(&self, id: &PauseReasonId) -> Option<&PauseReason> {
        self.pause_reasons.iter().find(|r| &r.id == id)
    }
}

/// Whose configuration a problem is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Acd,
    Agent(String),
    Group(String),
    PauseReason(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Acd => f.write_str("acd"),
            Scope::Agent(id) => write!(f, "agent {id:?}"),
            Scope::Group(id) => write!(f, "group {id:?}"),
            Scope::PauseReason(id) => write!(f, "pause reason {id:?}"),
        }
    }
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("must not be empty")]
    Empty,
    #[error("{0:?} may only hold letters, digits, '-', '_' and '.'")]
    BadId(String),
    #[error("{0:?} is defined twice")]
    Duplicate(String),
    #[error("no agent {0:?} is defined")]
    UnknownAgent(String),
    #[error("agent {0:?} is listed twice")]
    DuplicateMember(String),
    #[error("unknown strategy {0:?} (ring-all, longest-idle, least-talk-time, random, round-robin, weighted)")]
    UnknownStrategy(String),
    #[error("{value} is out of range {min}..={max}")]
    OutOfRange { value: u64, min: u64, max: u64 },
    #[error("{0:?} must be digits only")]
    NotDigits(String),
    #[error("extension {extension:?} is already bound to agent {other:?}")]
    ExtensionTaken { extension: String, other: String },
    #[error("number {number:?} already reaches group {other:?}")]
    NumberTaken { number: String, other: String },
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{scope}: {key}: {problem}")]
pub struct AcdConfigError {
    pub scope: Scope,
    /// The key path below the ACD section, for the config locator.
    pub path: Vec<Seg>,
    /// The same path as dotted text (`groups[1].ring_secs`).
    pub key: String,
    pub problem: Problem,
}

struct Errors(Vec<AcdConfigError>);

impl Errors {
    fn push(&mut self, scope: &Scope, path: Vec<Seg>, problem: Problem) {
        let key = path
            .iter()
            .map(|s| match s {
                Seg::Key(k) => format!(".{k}"),
                Seg::Index(i) => format!("[{i}]"),
            })
            .collect::<String>()
            .trim_start_matches('.')
            .to_string();
        self.0.push(AcdConfigError {
            scope: scope.clone(),
            path,
            key,
            problem,
        });
    }

    fn range(&mut self, scope: &Scope, path: Vec<Seg>, value: u32, min: u32, max: u32) {
        if value < min || value > max {
            let problem = Problem::OutOfRange {
                value: value.into(),
                min: min.into(),
                max: max.into(),
            };
            self.push(scope, path, problem);
        }
    }
}

use Seg::{Index, Key};

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_id(
    errs: &mut Errors,
    scope: &Scope,
    path: Vec<Seg>,
    id: &str,
    seen: &mut BTreeSet<String>,
) {
    if id.is_empty() {
        errs.push(scope, path, Problem::Empty);
    } else if !valid_id(id) {
        errs.push(scope, path, Problem::BadId(id.to_string()));
    } else if !seen.insert(id.to_string()) {
        errs.push(scope, path, Problem::Duplicate(id.to_string()));
    }
}

/// Turn the raw section into the typed configuration, or list every problem.
pub fn validate(raw: &RawAcd) -> Result<AcdConfig, Vec<AcdConfigError>> {
    let mut errs = Errors(Vec::new());
    let pause_reasons = pause_reasons(&mut errs, &raw.pause_reasons);
    let agents = agents(&mut errs, &raw.agents);
    let known: BTreeSet<&str> = raw.agents.iter().map(|a| a.id.as_str()).collect();
    let mut seen = BTreeSet::new();
    let groups = raw
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| group(&mut errs, i, g, &known, &mut seen))
        .collect();
    group_numbers(&mut errs, &raw.groups);
    if errs.0.is_empty() {
        Ok(AcdConfig {
            error_retry_secs: raw.error_retry_secs,
            pause_reasons,
            agents,
            groups,
        })
    } else {
        Err(errs.0)
    }
}

fn pause_reasons(errs: &mut Errors, raw: &[RawPauseReason]) -> Vec<PauseReason> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<PauseReason> = raw
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let scope = Scope::PauseReason(r.id.clone());
            let at = |k| vec![Key("pause_reasons"), Index(i), Key(k)];
            check_id(errs, &scope, at("id"), &r.id, &mut seen);
            if r.name.trim().is_empty() {
                errs.push(&scope, at("name"), Problem::Empty);
            }
            PauseReason {
                id: PauseReasonId(r.id.clone()),
                name: r.name.clone(),
                colour: r.colour.clone(),
                icon: r.icon.clone(),
            }
        })
        .collect();
    if !seen.contains(NO_ANSWER_REASON) {
        out.push(PauseReason {
            id: PauseReasonId(NO_ANSWER_REASON.to_string()),
            name: "No answer".to_string(),
            colour: None,
            icon: None,
        });
    }
    out
}

fn agents(errs: &mut Errors, raw: &[RawAgent]) -> Vec<AgentConfig> {
    let mut seen = BTreeSet::new();
    let mut extensions: BTreeMap<&str, &str> = BTreeMap::new();
    raw.iter()
        .enumerate()
        .map(|(i, a)| {
            let scope = Scope::Agent(a.id.clone());
            let at = |k| vec![Key("agents"), Index(i), Key(k)];
            check_id(errs, &scope, at("id"), &a.id, &mut seen);
            if a.name.trim().is_empty() {
                errs.push(&scope, at("name"), Problem::Empty);
            }
            if let Some(ext) = &a.extension {
                if ext.is_empty() {
                    errs.push(&scope, at("extension"), Problem::Empty);
                } else if let Some(other) = extensions.insert(ext, &a.id) {
                    let problem = Problem::ExtensionTaken {
                        extension: ext.clone(),
                        other: other.to_string(),
                    };
                    errs.push(&scope, at("extension"), problem);
                }
            }
            if let Some(pin) = &a.pin {
                if pin.is_empty() || !pin.chars().all(|c| c.is_ascii_digit()) {
                    errs.push(&scope, at("pin"), Problem::NotDigits(pin.clone()));
                }
            }
            AgentConfig {
                id: AgentId(a.id.clone()),
                name: a.name.clone(),
                extension: a.extension.clone(),
                pin: a.pin.clone(),
            }
        })
        .collect()
}

fn group(
    errs: &mut Errors,
    i: usize,
    g: &RawGroup,
    known: &BTreeSet<&str>,
    seen: &mut BTreeSet<String>,
) -> GroupConfig {
    let scope = Scope::Group(g.id.clone());
    let at = |k| vec![Key("groups"), Index(i), Key(k)];
    check_id(errs, &scope, at("id"), &g.id, seen);
    let strategy = g.strategy.parse().unwrap_or_else(|_| {
        errs.push(
            &scope,
            at("strategy"),
            Problem::UnknownStrategy(g.strategy.clone()),
        );
        Strategy::LongestIdle
    });
    errs.range(&scope, at("ring_secs"), g.ring_secs, 1, 600);
    errs.range(
        &scope,
        at("max_calls_per_agent"),
        g.max_calls_per_agent,
        1,
        16,
    );
    errs.range(&scope, at("retry_secs"), g.retry_secs, 0, 3600);
    for (key, dest) in [
        ("overflow", &g.overflow),
        ("timeout_destination", &g.timeout_destination),
    ] {
        if dest.as_deref().is_some_and(|d| d.trim().is_empty()) {
            errs.push(&scope, at(key), Problem::Empty);
        }
    }
    GroupConfig {
        id: GroupId(g.id.clone()),
        name: if g.name.is_empty() {
            g.id.clone()
        } else {
            g.name.clone()
        },
        numbers: g.numbers.clone(),
        strategy,
        members: members(errs, &scope, i, &g.members, known),
        max_waiting: g.max_waiting,
        timeout_secs: g.timeout_secs,
        overflow: g.overflow.clone(),
        timeout_destination: g.timeout_destination.clone(),
        ring_secs: g.ring_secs,
        ring_then_queue_secs: g.ring_then_queue_secs,
        max_calls_per_agent: g.max_calls_per_agent,
        retry_secs: g.retry_secs,
        auto_pause_misses: g.auto_pause_misses,
        auto_unpause_secs: g.auto_unpause_secs,
        wrap_up_secs: g.wrap_up_secs,
        sounds: GroupSounds {
            greeting: g.greeting.clone(),
            announcement: g.announcement.clone(),
            announce_every_secs: g.announce_every_secs,
            announce_position: g.announce_position,
            announce_wait: g.announce_wait,
            music_on_hold: g.music_on_hold.clone(),
            whisper: g.whisper.clone(),
        },
        ring_text: g.ring_text.clone(),
        colour: g.colour.clone(),
    }
}

/// Each group number is digits (at most 15, like an extension) and
/// reaches one group only.
fn group_numbers(errs: &mut Errors, raw: &[RawGroup]) {
    let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, g) in raw.iter().enumerate() {
        let scope = Scope::Group(g.id.clone());
        for (j, number) in g.numbers.iter().enumerate() {
            let at = vec![Key("groups"), Index(i), Key("numbers"), Index(j)];
            let digits = number.bytes().all(|b| b.is_ascii_digit());
            if number.is_empty() || number.len() > 15 || !digits {
                errs.push(&scope, at, Problem::NotDigits(number.clone()));
            } else if let Some(other) = owners.insert(number, &g.id) {
                let problem = Problem::NumberTaken {
                    number: number.clone(),
                    other: other.to_string(),
                };
                errs.push(&scope, at, problem);
            }
        }
    }
}

fn members(
    errs: &mut Errors,
    scope: &Scope,
    group: usize,
    raw: &[RawMember],
    known: &BTreeSet<&str>,
) -> Vec<Member> {
    let mut listed = BTreeSet::new();
    raw.iter()
        .enumerate()
        .map(|(j, m)| {
            let at = |k| {
                vec![
                    Key("groups"),
                    Index(group),
                    Key("members"),
                    Index(j),
                    Key(k),
                ]
            };
            if !known.contains(m.agent.as_str()) {
                errs.push(scope, at("agent"), Problem::UnknownAgent(m.agent.clone()));
            } else if !listed.insert(m.agent.as_str()) {
                errs.push(
                    scope,
                    at("agent"),
                    Problem::DuplicateMember(m.agent.clone()),
                );
            }
            errs.range(scope, at("level"), m.level, 1, MAX_LEVEL.into());
            Member {
                agent: AgentId(m.agent.clone()),
                level: u8::try_from(m.level)
                    .unwrap_or(MAX_LEVEL)
                    .clamp(1, MAX_LEVEL),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RawAcd {
        toml::from_str(text).unwrap()
    }

    const GOOD: &str = r##"
        [[pause_reasons]]
        id = "lunch"
        name = "Lunch"
        colour = "#ffaa00"

        [[agents]]
        id = "alice"
        name = "Alice"
        extension = "1001"
        pin = "1234"

        [[agents]]
        id = "bob"
        name = "Bob"

        [[groups]]
        id = "sales"
        strategy = "round-robin"
        wrap_up_secs = 0
        members = [{ agent = "alice" }, { agent = "bob", level = 2 }]
    "##;

    #[test]
    fn a_good_section_validates_with_defaults() {
        let cfg = validate(&parse(GOOD)).unwrap();
        assert_eq!(cfg.agents.len(), 2);
        let g = &cfg.groups[0];
        assert_eq!(g.strategy, Strategy::RoundRobin);
        assert_eq!(g.name, "sales", "name defaults to the id");
        assert_eq!(g.members[1].level, 2);
        assert_eq!(g.ring_secs, 15);
        assert_eq!(g.max_calls_per_agent, 1);
        assert_eq!(g.wrap_up_secs, Some(0));
        let ids: Vec<_> = cfg.pause_reasons.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            ["lunch", NO_ANSWER_REASON],
            "the auto-pause reason always exists"
        );
        assert!(cfg.pin_matches(&"alice".into(), Some("1234")));
        assert!(!cfg.pin_matches(&"alice".into(), Some("9999")));
        assert!(cfg.pin_matches(&"bob".into(), None));
        assert!(!cfg.pin_matches(&"carol".into(), None));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<RawAcd>("[[groups]]\nid = \"a\"\nring_sec = 3\n").unwrap_err();
        assert!(err.to_string().contains("ring_sec"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_owner_and_key() {
        let raw = parse(
            r#"
            [[agents]]
            id = "alice"
            name = "Alice"
            extension = "1001"
            pin = "12a4"
            [[agents]]
            id = "alice"
            name = ""
            extension = "1001"
            [[groups]]
            id = "sales desk"
            strategy = "fastest"
            ring_secs = 0
            members = [{ agent = "carol" }, { agent = "alice", level = 100 }, { agent = "alice" }]
            "#,
        );
        let errs = validate(&raw).unwrap_err();
        let listed: Vec<_> = errs
            .iter()
            .map(|e| (e.scope.clone(), e.key.as_str(), e.problem.clone()))
            .collect();
        let alice = || Scope::Agent("alice".into());
        let group = || Scope::Group("sales desk".into());
        assert_eq!(
            listed,
            [
                (alice(), "agents[0].pin", Problem::NotDigits("12a4".into())),
                (alice(), "agents[1].id", Problem::Duplicate("alice".into())),
                (alice(), "agents[1].name", Problem::Empty),
                (
                    alice(),
                    "agents[1].extension",
                    Problem::ExtensionTaken {
                        extension: "1001".into(),
                        other: "alice".into()
                    }
                ),
                (group(), "groups[0].id", Problem::BadId("sales desk".into())),
                (
                    group(),
                    "groups[0].strategy",
                    Problem::UnknownStrategy("fastest".into())
                ),
                (
                    group(),
                    "groups[0].ring_secs",
                    Problem::OutOfRange {
                        value: 0,
                        min: 1,
                        max: 600
                    }
                ),
                (
                    group(),
                    "groups[0].members[0].agent",
                    Problem::UnknownAgent("carol".into())
                ),
                (
                    group(),
                    "groups[0].members[1].level",
                    Problem::OutOfRange {
                        value: 100,
                        min: 1,
                        max: 99
                    }
                ),
                (
                    group(),
                    "groups[0].members[2].agent",
                    Problem::DuplicateMember("alice".into())
                ),
            ]
        );
        assert_eq!(
            errs[6].path,
            vec![Key("groups"), Index(0), Key("ring_secs")]
        );
        assert_eq!(
            errs[6].to_string(),
            "group \"sales desk\": groups[0].ring_secs: 0 is out of range 1..=600"
        );
    }

    #[test]
    fn group_numbers_are_digits_and_reach_one_group() {
        let raw = parse(
            r#"
            [[groups]]
            id = "sales"
            numbers = ["2001", "20a"]
            [[groups]]
            id = "support"
            numbers = ["2002", "2001", ""]
            "#,
        );
        let errs = validate(&raw).unwrap_err();
        let listed: Vec<_> = errs
            .iter()
            .map(|e| (e.key.as_str(), e.problem.clone()))
            .collect();
        assert_eq!(
            listed,
            [
                ("groups[0].numbers[1]", Problem::NotDigits("20a".into())),
                (
                    "groups[1].numbers[1]",
                    Problem::NumberTaken {
                        number: "2001".into(),
                        other: "sales".into()
                    }
                ),
                ("groups[1].numbers[2]", Problem::NotDigits(String::new())),
            ]
        );
        let cfg = validate(&parse(
            "[[groups]]\nid = \"sales\"\nnumbers = [\"2001\", \"2011\"]\n",
        ))
        .unwrap();
        let found = cfg.group_for_number("2011").map(|g| g.id.as_str());
        assert_eq!(found, Some("sales"));
        assert!(cfg.group_for_number("1001").is_none());
    }
}
