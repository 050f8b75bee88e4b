//! What a waiting caller hears: the engine's [`Prompt`]s turned into sound
//! names and a [`Playlist`], and the part of it that repeats (music on
//! hold, or ringback) once the rest has played.
//!
//! Pure: sounds come from the library given; a prompt whose sound cannot
//! be found is left out (and named in the log), never an error for the
//! call.
//!
//! What this module must not do: play anything (the actor hands the
//! playlist to the relay) or decide when to announce (the engine does).

use std::sync::Arc;

use tracing::debug;

use crate::acd::types::Prompt;
use crate::media::player::Playlist;
use crate::media::sound::{say_number, Sound, SoundLibrary};
use crate::media::tones::ToneSpec;

/// How long one pass of the repeating part lasts when there is no music:
/// silence, or ringback.
const FILLER_MS: u32 = 60_000;

/// What to play now, and what to play again each time it ends.
#[derive(Debug, Clone)]
pub(super) struct Playback {
    pub now: Playlist,
    pub again: Playlist,
}

/// The sound names that say `prompt` (none for music and ringback).
pub(super) fn names(prompt: &Prompt) -> Vec<String> {
    match prompt {
        Prompt::Greeting(name) | Prompt::Announcement(name) => vec![name.clone()],
        Prompt::Position(1) => vec!["queue-youarenext".to_owned()],
        Prompt::Position(n) => {
            let mut out = vec!["queue-thereare".to_owned()];
            out.extend(say_number(u64::from(n.saturating_sub(1))));
            out.push("queue-callswaiting".to_owned());
            out
        }
        Prompt::EstimatedWait { secs } => {
            let minutes = secs.div_ceil(60).max(1);
            let mut out = vec!["queue-holdtime".to_owned()];
            out.extend(say_number(minutes));
            out.push(if minutes == 1 {
                "queue-minute".to_owned()
            } else {
                "queue-minutes".to_owned()
            });
            out
        }
        Prompt::MusicOnHold(_) | Prompt::Ringback => Vec::new(),
    }
}

/// The playback of `prompts`: everything in order, the last music (or
/// ringback) repeating. `music` is the system's music on hold, used when a
/// group names none.
pub(super) fn playback(
    prompts: &[Prompt],
    library: &SoundLibrary,
    music: &[Arc<Sound>],
    ringback: &ToneSpec,
) -> Playback {
    let mut now = Playlist::new();
    let mut again = Playlist::new().then_silence(FILLER_MS);
    for prompt in prompts {
        match prompt {
            Prompt::MusicOnHold(name) => again = music_list(name.as_deref(), library, music),
            Prompt::Ringback => again = Playlist::new().then_tone(ringback.clone(), FILLER_MS),
            spoken => {
                for name in names(spoken) {
                    match library.get(&name) {
                        Ok(sound) => now = now.then_sound(sound),
                        Err(e) => debug!(error = %e, "queue prompt left out"),
                    }
                }
            }
        }
    }
    now.extend(again.clone());
    Playback { now, again }
}

/// A group's own music by name, else the system's, else silence.
fn music_list(name: Option<&str>, library: &SoundLibrary, music: &[Arc<Sound>]) -> Playlist {
    if let Some(sound) = name.and_then(|n| library.get(n).ok()) {
        return Playlist::new().then_sound(sound);
    }
    let mut list = Playlist::new();
    for sound in music {
        list = list.then_sound(Arc::clone(sound));
    }
    if list.items().is_empty() {
        list = list.then_silence(FILLER_MS);
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::player::PlayItem;
    use crate::media::tones::ToneProfile;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn positions_and_waits_are_spoken_in_prompts() {
        assert_eq!(names(&Prompt::Position(1)), strings(&["queue-youarenext"]));
        assert_eq!(
            names(&Prompt::Position(4)),
            strings(&["queue-thereare", "digits/3", "queue-callswaiting"])
        );
        assert_eq!(
            names(&Prompt::EstimatedWait { secs: 30 }),
            strings(&["queue-holdtime", "digits/1", "queue-minute"])
        );
        assert_eq!(
            names(&Prompt::EstimatedWait { secs: 121 }),
            strings(&["queue-holdtime", "digits/3", "queue-minutes"])
        );
        assert!(names(&Prompt::MusicOnHold(None)).is_empty());
        assert_eq!(
            names(&Prompt::Greeting("welcome".into())),
            strings(&["welcome"])
        );
    }

    /// A library over a directory holding `greeting.wav` (one second).
    fn library() -> (tempfile::TempDir, SoundLibrary) {
        let dir = tempfile::tempdir().unwrap();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(dir.path().join("greeting.wav"), spec).unwrap();
        for _ in 0..8000 {
            w.write_sample(1000i16).unwrap();
        }
        w.finalize().unwrap();
        let library = SoundLibrary::new(vec![dir.path().to_path_buf()]);
        (dir, library)
    }

    #[test]
    fn greeting_then_music_and_only_the_music_repeats() {
        let (_dir, library) = library();
        let music = vec![Arc::new(Sound::from_samples(vec![5; 16_000]))];
        let prompts = [
            Prompt::Greeting("greeting".into()),
            Prompt::Announcement("missing".into()),
            Prompt::MusicOnHold(None),
        ];
        let ringback = ToneProfile::japan().ringback;
        let p = playback(&prompts, &library, &music, &ringback);
        assert_eq!(p.now.duration_ms(), 3000, "greeting 1 s + music 2 s");
        assert_eq!(p.again.duration_ms(), 2000, "the music alone");
        assert!(matches!(p.again.items(), [PlayItem::Sound(_)]));
    }

    #[test]
    fn without_music_the_caller_hears_silence_and_ringback_repeats_as_a_tone() {
        let (_dir, library) = library();
        let ringback = ToneProfile::japan().ringback;
        let quiet = playback(&[Prompt::MusicOnHold(None)], &library, &[], &ringback);
        assert!(matches!(quiet.again.items(), [PlayItem::Silence { .. }]));
        let own = playback(
            &[Prompt::MusicOnHold(Some("greeting".into()))],
            &library,
            &[],
            &ringback,
        );
        assert_eq!(own.again.duration_ms(), 1000, "the group's own music");
        let ring = playback(&[Prompt::Ringback], &library, &[], &ringback);
        assert!(matches!(ring.again.items(), [PlayItem::Tone { .. }]));
        assert_eq!(ring.now.duration_ms(), ring.again.duration_ms());
    }
}
