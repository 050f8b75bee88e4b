//! Call recording: both legs of a call into one WAV file per recording,
//! indexed in the store.
//!
//! Owns: the recording's timeline ([`timeline`], sans-IO), the one writer
//! thread that touches recording files (`writer.rs`), their layout on disk
//! ([`files`]) and the repair of recordings left open by a crash
//! ([`mod@recover`]).
//!
//! Must not: decode RTP or read the clock on the call path (the call layer
//! hands in decoded 16-bit 8 kHz samples and positions), block or wait on
//! the disk from the call path, or let a slow disk stall a call.
//!
//! # How a call uses it
//!
//! At startup [`Recorder::start`] repairs recordings a crash left open and
//! starts the writer thread. For each recorded call the call actor holds a
//! [`RecordingHandle`] from [`Recorder::record`] and feeds it decoded audio
//! per leg ([`Leg::A`], the caller, is the left channel; [`Leg::B`], the
//! callee, the right; mono mixes both), each packet tagged with its
//! position in frames since the recording started ([`frames_between`] turns
//! two instants into one). The handle belongs to the call, not to a relay,
//! so the recording follows the call through hold, transfer and queueing;
//! when no audio flows the actor calls [`RecordingHandle::tick`] now and
//! then. [`RecordingHandle::pause`] and [`RecordingHandle::resume`] record
//! silence in between (the length still matches the call);
//! [`RecordingHandle::stop`] (or dropping the handle) closes the file.
//!
//! # What happens to the audio
//!
//! The timeline cuts the call into one-second blocks; each is queued to the
//! writer without blocking. The queue is bounded in bytes for all
//! recordings together: when it is full the block is dropped, counted, and
//! the recording will be closed `incomplete` with the lost span as silence,
//! while the call goes on. The writer appends each block and then
//! rewrites the header for the new length, so after a `kill -9` the file
//! is a valid WAV up to its last written second; the next start ([`recover()`]) closes such
//! files from their real length and marks them `recovered`. On close the
//! writer records the duration, size and SHA-256 in the recording's row
//! (`store::recordings`), linked to the call by the caller leg's Call-ID.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::store::cdr::ParseEnumError;
use crate::store::StoreError;

pub mod files;
mod handle;
pub mod recover;
pub mod timeline;
mod writer;

pub use handle::{
    Recorder, RecorderConfig, RecorderStats, RecordingHandle, RecordingSpec, RecordingSummary,
};
pub use recover::{recover, RecoveryReport};
pub use timeline::{Block, Timeline, TimelineConfig, TimelineStats};

pub use crate::media::Leg;

/// Sample rate of every recording (narrowband telephony).
pub const SAMPLE_RATE: u32 = 8_000;

/// How the two legs are laid out in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingLayout {
    /// Two channels: caller (A) left, callee (B) right.
    #[default]
    Stereo,
    /// One channel: both legs mixed, saturating.
    Mono,
}

impl RecordingLayout {
    /// Every value, in declaration order.
    pub const ALL: &'static [RecordingLayout] = &[RecordingLayout::Stereo, RecordingLayout::Mono];

    /// The stored (and configured) text form.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingLayout::Stereo => "stereo",
            RecordingLayout::Mono => "mono",
        }
    }

    /// Channels in the file.
    pub fn channels(self) -> u16 {
        match self {
            RecordingLayout::Stereo => 2,
            RecordingLayout::Mono => 1,
        }
    }

    /// The WAV format: 16-bit PCM at [`SAMPLE_RATE`].
    pub fn wav_spec(self) -> hound::WavSpec {
        hound::WavSpec {
            channels: self.channels(),
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        }
    }
}

impl fmt::Display for RecordingLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordingLayout {
    type Err = ParseEnumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordingLayout::ALL
            .iter()
            .copied()
            .find(|layout| layout.as_str() == s)
            .ok_or_else(|| ParseEnumError {
                kind: "recording layout",
                value: s.to_string(),
            })
    }
}

/// Frames (samples per leg) elapsed from `start` to `now`, at
/// [`SAMPLE_RATE`]; zero when `now` is earlier.
pub fn frames_between(start: Instant, now: Instant) -> u64 {
    let micros = now.saturating_duration_since(start).as_micros();
    let frames = micros.saturating_mul(u128::from(SAMPLE_RATE)) / 1_000_000;
    u64::try_from(frames).unwrap_or(u64::MAX)
}

/// Errors of the recorder.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("recording store: {0}")]
    Store(#[from] StoreError),
    #[error("recording file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the recording writer has stopped")]
    Closed,
    #[error("could not start the recording writer thread: {0}")]
    Spawn(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn layouts_read_from_configuration_in_lowercase() {
        #[derive(Deserialize)]
        struct Section {
            layout: RecordingLayout,
        }
        let stereo: Section = toml::from_str("layout = \"stereo\"").unwrap();
        let mono: Section = toml::from_str("layout = \"mono\"").unwrap();
        assert_eq!(stereo.layout, RecordingLayout::Stereo);
        assert_eq!(mono.layout, RecordingLayout::Mono);
        assert!(toml::from_str::<Section>("layout = \"Stereo\"").is_err());
        for layout in RecordingLayout::ALL {
            assert_eq!(layout.as_str().parse::<RecordingLayout>().unwrap(), *layout);
        }
        assert_eq!(RecordingLayout::default(), RecordingLayout::Stereo);
        assert_eq!(RecordingLayout::Mono.wav_spec().channels, 1);
    }

    #[test]
    fn frames_between_counts_samples_at_8_khz() {
        let start = Instant::now();
        assert_eq!(frames_between(start, start), 0);
        assert_eq!(
            frames_between(start, start + Duration::from_millis(20)),
            160
        );
        assert_eq!(
            frames_between(start, start + Duration::from_secs(3_600)),
            28_800_000
        );
        assert_eq!(frames_between(start + Duration::from_secs(1), start), 0);
    }
}
