//! The `[acd]` section against the rest of the file: the ACD's own checks
//! (`acd::config::validate`) reported with file, line and key like every
//! other section, then what only the whole configuration can tell: an
//! agent's phone is a configured extension, a group number means nothing
//! else, a destination can be dialled, a sound can be found.
//!
//! What this module must not do: decide what the ACD does with a valid
//! configuration, or load anything but the sounds it checks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::locate::Seg;
use super::validate::Errors;
use super::{ConferenceConfig, Extension, FeatureCodes};
use crate::acd::config::{AcdConfig, GroupConfig};
use crate::media::sound::SoundLibrary;

use Seg::{Index, Key};

/// Everything a group number or a destination could collide with.
struct Numbering<'a> {
    extensions: &'a BTreeMap<String, Extension>,
    rooms: &'a [String],
    features: &'a FeatureCodes,
}

impl Numbering<'_> {
    /// Why `number` cannot also be a group's number, if it cannot.
    fn clash(&self, number: &str) -> Option<String> {
        if self.extensions.contains_key(number) {
            return Some(format!("`{number}` is also an extension number"));
        }
        if self.rooms.iter().any(|r| r == number) {
            return Some(format!("`{number}` is also a conference room"));
        }
        let f = self.features;
        [&f.whisper, &f.monitor, &f.barge]
            .into_iter()
            .flatten()
            .find(|code| number.starts_with(code.as_str()))
            .map(|code| format!("`{number}` begins with the feature code `{code}`"))
    }
}

/// Validate `[acd]`; every problem goes to `errs`. The returned value is
/// only used when `errs` stays empty.
pub(super) fn validate(
    errs: &mut Errors,
    raw: &crate::acd::RawAcd,
    extensions: &BTreeMap<String, Extension>,
    conference: &ConferenceConfig,
    features: &FeatureCodes,
    sounds: &[PathBuf],
) -> AcdConfig {
    let acd = match crate::acd::validate(raw) {
        Ok(acd) => acd,
        Err(list) => {
            for e in list {
                let mut path = vec![Key("acd")];
                path.extend(e.path.iter().cloned());
                errs.push(&path, format!("{}: {}", e.scope, e.problem));
            }
            return AcdConfig {
                error_retry_secs: raw.error_retry_secs,
                pause_reasons: Vec::new(),
                agents: Vec::new(),
                groups: Vec::new(),
            };
        }
    };
    for (i, agent) in acd.agents.iter().enumerate() {
        if let Some(ext) = &agent.extension {
            if !extensions.contains_key(ext) {
                errs.push(
                    &[Key("acd"), Key("agents"), Index(i), Key("extension")],
                    format!("agent {:?}: no extension {ext} is defined", agent.id.0),
                );
            }
        }
    }
    let numbering = Numbering {
        extensions,
        rooms: &conference.rooms,
        features,
    };
    let library = SoundLibrary::new(sounds.to_vec());
    for (i, group) in acd.groups.iter().enumerate() {
        check_group(errs, i, group, &acd, &numbering, &library);
    }
    acd
}

fn check_group(
    errs: &mut Errors,
    i: usize,
    group: &GroupConfig,
    acd: &AcdConfig,
    numbering: &Numbering,
    library: &SoundLibrary,
) {
    let at = |k| [Key("acd"), Key("groups"), Index(i), Key(k)];
    let name = &group.id.0;
    for (j, number) in group.numbers.iter().enumerate() {
        if let Some(why) = numbering.clash(number) {
            let path = [
                Key("acd"),
                Key("groups"),
                Index(i),
                Key("numbers"),
                Index(j),
            ];
            errs.push(&path, format!("group {name:?}: {why}"));
        }
    }
    for (key, destination) in [
        ("overflow", &group.overflow),
        ("timeout_destination", &group.timeout_destination),
    ] {
        let Some(d) = destination else { continue };
        let known = numbering.extensions.contains_key(d) || acd.group_for_number(d).is_some();
        if !known {
            errs.push(
                &at(key),
                format!("group {name:?}: `{d}` is neither an extension nor a group number"),
            );
        }
    }
    let s = &group.sounds;
    for (key, sound) in [
        ("greeting", &s.greeting),
        ("announcement", &s.announcement),
        ("music_on_hold", &s.music_on_hold),
        ("whisper", &s.whisper),
    ] {
        if let Some(Err(e)) = sound.as_deref().map(|n| library.get(n)) {
            errs.push(&at(key), format!("group {name:?}: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use std::path::Path;

    const EXTENSIONS: &str = "[[extensions]]\nnumber = \"1001\"\npassword = \"longenough\"\n\
                              [[extensions]]\nnumber = \"1002\"\npassword = \"longenough\"\n";

    fn errors(text: &str) -> Vec<String> {
        let text = format!("{EXTENSIONS}{text}");
        match parse(&text, Path::new("t.toml"), Path::new("/nowhere")) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_working_section_is_read_with_its_numbers() {
        let text = format!(
            "{EXTENSIONS}[acd]\n[[acd.agents]]\nid = \"alice\"\nname = \"Alice\"\nextension = \"1001\"\n\
             [[acd.groups]]\nid = \"sales\"\nnumbers = [\"2001\"]\noverflow = \"1002\"\n\
             members = [{{ agent = \"alice\" }}]\n"
        );
        let c = parse(&text, Path::new("t.toml"), Path::new("/nowhere")).expect("valid");
        let group = c.acd.group_for_number("2001").expect("group");
        assert_eq!(group.id.as_str(), "sales");
        assert_eq!(group.overflow.as_deref(), Some("1002"));
        assert_eq!(c.acd.agents[0].extension.as_deref(), Some("1001"));
    }

    #[test]
    fn acd_problems_carry_file_line_and_key() {
        let text = "[acd]\n\n[[acd.agents]]\nid = \"alice\"\nname = \"Alice\"\nextension = \"1001\"\n\n\
                    [[acd.groups]]\nid = \"sales\"\nring_secs = 0\nmembers = [{ agent = \"bob\" }]\n";
        assert_eq!(
            errors(text),
            vec![
                "t.toml:16: acd.groups[0].ring_secs: group \"sales\": 0 is out of range 1..=600",
                "t.toml:17: acd.groups[0].members[0].agent: group \"sales\": no agent \"bob\" is defined",
            ]
        );
    }

    #[test]
    fn unknown_keys_in_acd_are_errors_with_their_line() {
        let e = errors("[[acd.groups]]\nid = \"sales\"\nring_sec = 3\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("t.toml:9: acd.groups[0].ring_sec: unknown field"),
            "{e:?}"
        );
    }

    #[test]
    fn numbers_phones_destinations_and_sounds_are_checked_against_the_file() {
        let text = "[conference]\nrooms = [\"9201\"]\n\
                    [[acd.agents]]\nid = \"alice\"\nname = \"Alice\"\nextension = \"1009\"\n\
                    [[acd.groups]]\nid = \"sales\"\nnumbers = [\"1001\", \"9201\", \"9951\", \"2001\"]\n\
                    overflow = \"3000\"\ntimeout_destination = \"2001\"\ngreeting = \"no-such-sound\"\n";
        assert_eq!(
            errors(text),
            vec![
                "t.toml:12: acd.agents[0].extension: agent \"alice\": no extension 1009 is defined",
                "t.toml:15: acd.groups[0].numbers[0]: group \"sales\": `1001` is also an extension number",
                "t.toml:15: acd.groups[0].numbers[1]: group \"sales\": `9201` is also a conference room",
                "t.toml:15: acd.groups[0].numbers[2]: group \"sales\": `9951` begins with the feature code `995`",
                "t.toml:16: acd.groups[0].overflow: group \"sales\": `3000` is neither an extension nor a group number",
                "t.toml:18: acd.groups[0].greeting: group \"sales\": sound \"no-such-sound\" not found in /nowhere/sounds, /usr/share/asterisk/sounds/en_US_f_Allison",
            ]
        );
    }
}
