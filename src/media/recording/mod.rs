//! Call recording: both legs of a call into one WAV file per recording.
//!
//! Owns: the recording's timeline ([`timeline`], sans-IO) and the layout of
//! the two legs in the file.
//!
//! Must not: decode RTP or read the clock on the call path (the call layer
//! hands in decoded 16-bit 8 kHz samples and positions).

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::store::cdr::ParseEnumError;

pub mod timeline;

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
