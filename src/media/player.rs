//! Playback as a pure frame source.
//!
//! Owns: the [`Playlist`] (sounds, tones for a while, silences) and the
//! [`Player`] that turns it into 20 ms frames of 160 samples, one after
//! another, until the playlist is over. Items join inside a frame, without
//! gaps; the last frame is padded with silence.
//!
//! Must not: pace itself or touch sockets. Whoever sends the frames (the
//! relay's injection path) takes one every 20 ms and encodes it with the
//! call's codec.
//!
//! ```
//! use denwa::media::player::{Playlist, Player};
//! use denwa::media::sound::Sound;
//! use denwa::media::tones::ToneProfile;
//! use std::sync::Arc;
//!
//! let greeting = Arc::new(Sound::from_samples(vec![100; 1200]));
//! let beep = ToneProfile::united_states().beep;
//! let playlist = Playlist::new()
//!     .then_sound(greeting)
//!     .then_silence(200)
//!     .then_tone(beep, 500);
//! assert_eq!(playlist.duration_ms(), 850);
//! assert_eq!(Player::new(playlist).count(), 43); // 6800 samples, 160 a frame
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use super::g711::FRAME_SAMPLES;
use super::sound::{Sound, SoundError, SoundLibrary};
use super::tones::{ToneGenerator, ToneSpec};

/// Samples per millisecond at 8000 Hz.
const SAMPLES_PER_MS: u64 = 8;

/// One thing to play.
#[derive(Debug, Clone)]
pub enum PlayItem {
    /// A whole sound.
    Sound(Arc<Sound>),
    /// A tone, cut after `duration_ms` (or ended earlier by its own spec).
    Tone { spec: ToneSpec, duration_ms: u32 },
    /// Silence.
    Silence { duration_ms: u32 },
}

impl PlayItem {
    /// Length in samples, at most (a non-repeating tone may end earlier).
    fn samples(&self) -> u64 {
        match self {
            PlayItem::Sound(sound) => sound.samples().len() as u64,
            PlayItem::Tone { duration_ms, .. } | PlayItem::Silence { duration_ms } => {
                u64::from(*duration_ms) * SAMPLES_PER_MS
            }
        }
    }
}

/// Items played in order.
#[derive(Debug, Clone, Default)]
pub struct Playlist {
    items: Vec<PlayItem>,
}

impl Playlist {
    pub fn new() -> Playlist {
        Playlist::default()
    }

    /// The sounds called `names`, looked up in `library`, in order.
    pub fn from_names<S: AsRef<str>>(
        library: &SoundLibrary,
        names: &[S],
    ) -> Result<Playlist, SoundError> {
        let mut playlist = Playlist::new();
        for name in names {
            playlist.push(PlayItem::Sound(library.get(name.as_ref())?));
        }
        Ok(playlist)
    }

    pub fn push(&mut self, item: PlayItem) {
        self.items.push(item);
    }

    /// Appends the items of another playlist.
    pub fn extend(&mut self, other: Playlist) {
        self.items.extend(other.items);
    }

    pub fn then_sound(mut self, sound: Arc<Sound>) -> Playlist {
        self.push(PlayItem::Sound(sound));
        self
    }

    pub fn then_tone(mut self, spec: ToneSpec, duration_ms: u32) -> Playlist {
        self.push(PlayItem::Tone { spec, duration_ms });
        self
    }

    pub fn then_silence(mut self, duration_ms: u32) -> Playlist {
        self.push(PlayItem::Silence { duration_ms });
        self
    }

    pub fn items(&self) -> &[PlayItem] {
        &self.items
    }

    /// Total length in milliseconds, at most (see [`PlayItem::Tone`]).
    pub fn duration_ms(&self) -> u64 {
        self.items.iter().map(PlayItem::samples).sum::<u64>() / SAMPLES_PER_MS
    }
}

/// The item being played.
#[derive(Debug)]
enum Source {
    Sound { sound: Arc<Sound>, offset: usize },
    Tone { generator: ToneGenerator, left: u64 },
    Silence { left: u64 },
}

impl Source {
    fn new(item: PlayItem) -> Source {
        let left = item.samples();
        match item {
            PlayItem::Sound(sound) => Source::Sound { sound, offset: 0 },
            PlayItem::Tone { spec, .. } => Source::Tone {
                generator: ToneGenerator::new(&spec),
                left,
            },
            PlayItem::Silence { .. } => Source::Silence { left },
        }
    }

    /// Writes into `out` from the start; returns how many samples it had
    /// (fewer than `out.len()` means it is over).
    fn fill(&mut self, out: &mut [i16]) -> usize {
        match self {
            Source::Sound { sound, offset } => {
                let rest = sound.samples().get(*offset..).unwrap_or(&[]);
                let n = rest.len().min(out.len());
                out[..n].copy_from_slice(&rest[..n]);
                *offset += n;
                n
            }
            Source::Tone { generator, left } => {
                let want = out.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = generator.fill(&mut out[..want]);
                *left = if n < want { 0 } else { *left - n as u64 };
                n
            }
            Source::Silence { left } => {
                let n = out.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                out[..n].fill(0);
                *left -= n as u64;
                n
            }
        }
    }
}

impl Source {
    fn is_over(&self) -> bool {
        match self {
            Source::Sound { sound, offset } => *offset >= sound.samples().len(),
            Source::Tone { generator, left } => *left == 0 || generator.is_finished(),
            Source::Silence { left } => *left == 0,
        }
    }
}

/// Plays a [`Playlist`] frame by frame; an iterator of 160-sample frames.
#[derive(Debug)]
pub struct Player {
    items: VecDeque<PlayItem>,
    current: Option<Source>,
}

impl Player {
    pub fn new(playlist: Playlist) -> Player {
        Player {
            items: playlist.items.into(),
            current: None,
        }
    }

    /// The next 20 ms, or `None` once everything has been played.
    pub fn next_frame(&mut self) -> Option<[i16; FRAME_SAMPLES]> {
        let mut frame = [0i16; FRAME_SAMPLES];
        let mut filled = 0;
        while filled < FRAME_SAMPLES {
            let source = match self.current.as_mut() {
                Some(source) => source,
                None => match self.items.pop_front() {
                    Some(item) => self.current.insert(Source::new(item)),
                    None => break,
                },
            };
            let want = FRAME_SAMPLES - filled;
            let got = source.fill(&mut frame[filled..]);
            filled += got;
            if got < want || source.is_over() {
                self.current = None;
            }
        }
        (filled > 0).then_some(frame)
    }

    /// Nothing is left to play.
    pub fn is_done(&self) -> bool {
        self.current.is_none() && self.items.is_empty()
    }
}

impl Iterator for Player {
    type Item = [i16; FRAME_SAMPLES];

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tones::{Signal, ToneProfile};

    fn ramp(n: usize) -> Arc<Sound> {
        Arc::new(Sound::from_samples((1..=n as i16).collect()))
    }

    fn play(playlist: Playlist) -> Vec<i16> {
        Player::new(playlist).flatten().collect()
    }

    #[test]
    fn items_join_inside_frames_and_the_last_frame_is_padded() {
        let tone = ToneSpec::continuous(Signal::single(1000.0, -10.0));
        let playlist = Playlist::new()
            .then_sound(ramp(250))
            .then_silence(10)
            .then_tone(tone.clone(), 30);
        assert_eq!(playlist.duration_ms(), 31 + 10 + 30);
        let mut player = Player::new(playlist);
        let frames: Vec<[i16; FRAME_SAMPLES]> = player.by_ref().collect();
        assert_eq!(frames.len(), 4, "250 + 80 + 240 = 570 samples");
        assert!(player.is_done());
        let all: Vec<i16> = frames.concat();
        assert_eq!(all[..250], *ramp(250).samples());
        assert!(all[250..330].iter().all(|&v| v == 0));
        let mut expected = vec![0; 240];
        ToneGenerator::new(&tone).fill(&mut expected);
        assert_eq!(all[330..570], expected[..]);
        assert!(all[570..].iter().all(|&v| v == 0), "padding");
    }

    #[test]
    fn empty_playlists_and_empty_items() {
        let mut player = Player::new(Playlist::new());
        assert!(player.is_done());
        assert_eq!(player.next_frame(), None);
        let nothing = Playlist::new()
            .then_silence(0)
            .then_sound(Arc::new(Sound::from_samples(vec![])));
        assert_eq!(Player::new(nothing).count(), 0);
    }

    #[test]
    fn exact_frames_leave_nothing_behind() {
        let mut player = Player::new(Playlist::new().then_sound(ramp(320)));
        assert!(player.next_frame().is_some());
        assert!(player.next_frame().is_some());
        assert!(player.is_done(), "done with the last sample");
        assert_eq!(player.next_frame(), None);
    }

    #[test]
    fn a_tone_that_ends_first_ends_its_item() {
        // The beep lasts 500 ms; asking for 2 s plays 500 ms.
        let beep = ToneProfile::japan().beep;
        let samples = play(Playlist::new().then_tone(beep, 2000).then_sound(ramp(10)));
        assert_eq!(samples.len(), 4000 + 160);
        assert_eq!(samples[4000..4010], *ramp(10).samples());
    }

    #[test]
    fn playlists_extend() {
        let mut first = Playlist::new().then_sound(ramp(100));
        first.extend(Playlist::new().then_silence(5).then_sound(ramp(20)));
        assert_eq!(first.items().len(), 3);
        let samples = play(first);
        assert_eq!(samples.len(), 160);
        assert_eq!(samples[140..160], *ramp(20).samples());
    }
}
