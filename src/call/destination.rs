//! What a dialled number means: an extension (a two-leg call through the
//! B2BUA), a conference room, or a supervisor feature code followed by an
//! agent's extension (a call denwa answers itself, see `service.rs`).
//!
//! Pure: decides from the configuration only; whether the caller may use a
//! feature, or the agent exists or is in a call, is the service's business.

use crate::config::Config;

/// What a supervisor does to an agent's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervision {
    /// Listen only.
    Monitor,
    /// The agent hears the supervisor; the other party does not.
    Whisper,
    /// Both parties hear the supervisor.
    Barge,
}

impl Supervision {
    pub fn as_str(self) -> &'static str {
        match self {
            Supervision::Monitor => "monitor",
            Supervision::Whisper => "whisper",
            Supervision::Barge => "barge",
        }
    }
}

/// A call denwa answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// Join the conference room of this number.
    Room(String),
    /// Attach to the call extension `target` is in.
    Supervise { mode: Supervision, target: String },
}

impl Service {
    /// The service `callee` names, or `None` for an ordinary call. A room
    /// wins, then an extension's own number, then a feature code followed
    /// by at least one more digit.
    pub fn classify(config: &Config, callee: &str) -> Option<Service> {
        if config.conference.rooms.iter().any(|r| r == callee) {
            return Some(Service::Room(callee.to_owned()));
        }
        if config.extensions.contains_key(callee) {
            return None;
        }
        let f = &config.features;
        [
            (&f.monitor, Supervision::Monitor),
            (&f.whisper, Supervision::Whisper),
            (&f.barge, Supervision::Barge),
        ]
        .into_iter()
        .find_map(|(prefix, mode)| {
            let target = callee.strip_prefix(prefix.as_deref()?)?;
            (!target.is_empty()).then(|| Service::Supervise {
                mode,
                target: target.to_owned(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let text = format!(
            "{extra}\n[[extensions]]\nnumber = \"1001\"\npassword = \"longenough\"\n\
             [[extensions]]\nnumber = \"9951\"\npassword = \"longenough\"\n"
        );
        crate::config::parse(&text, Path::new("t.toml"), Path::new("/")).expect("valid")
    }

    fn supervise(mode: Supervision, target: &str) -> Option<Service> {
        Some(Service::Supervise {
            mode,
            target: target.to_owned(),
        })
    }

    #[test]
    fn rooms_and_feature_codes_are_recognised() {
        let c = config("");
        assert_eq!(
            Service::classify(&c, "9202"),
            Some(Service::Room("9202".into()))
        );
        assert_eq!(
            Service::classify(&c, "9951001"),
            supervise(Supervision::Monitor, "1001")
        );
        assert_eq!(
            Service::classify(&c, "9941001"),
            supervise(Supervision::Whisper, "1001")
        );
        assert_eq!(
            Service::classify(&c, "9961001"),
            supervise(Supervision::Barge, "1001")
        );
        // Unknown agents are the service's to refuse (404), not routing's.
        assert_eq!(
            Service::classify(&c, "9957777"),
            supervise(Supervision::Monitor, "7777")
        );
    }

    #[test]
    fn extensions_and_bare_codes_are_ordinary_calls() {
        let c = config("");
        assert_eq!(Service::classify(&c, "1001"), None);
        assert_eq!(Service::classify(&c, "9951"), None, "an extension wins");
        assert_eq!(Service::classify(&c, "995"), None, "no agent dialled");
        assert_eq!(Service::classify(&c, "9204"), None);
        assert_eq!(Service::classify(&c, ""), None);
    }

    #[test]
    fn configured_numbers_replace_the_defaults() {
        let c = config(
            "[conference]\nrooms = [\"800\"]\n[features]\nmonitor = \"\"\nwhisper = \"71\"\n",
        );
        assert_eq!(Service::classify(&c, "9201"), None);
        assert_eq!(
            Service::classify(&c, "800"),
            Some(Service::Room("800".into()))
        );
        assert_eq!(Service::classify(&c, "9951001"), None, "monitor disabled");
        assert_eq!(
            Service::classify(&c, "711001"),
            supervise(Supervision::Whisper, "1001")
        );
    }
}
