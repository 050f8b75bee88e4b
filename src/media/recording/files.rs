//! Where recordings live on disk and what their bytes look like.
//!
//! Owns the layout `recordings/YYYY/MM/DD/<call>-<id>.wav` under the data
//! directory (the date of the start, UTC), the canonical 44-byte RIFF/WAVE
//! header of a 16-bit 8 kHz PCM file (RIFF, `fmt ` and `data` chunks), and
//! the SHA-256 of a closed file.
//!
//! Must not: keep files open or decide a recording's state.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{RecordingLayout, SAMPLE_RATE};

/// The directory under the data directory that holds every recording.
pub const RECORDINGS_DIR: &str = "recordings";
/// Size of the header denwa writes: RIFF (12) + `fmt ` (24) + `data` (8).
pub const HEADER_LEN: u64 = 44;
/// Bytes per sample (16-bit PCM).
pub const SAMPLE_BYTES: u16 = 2;
/// Longest call-id prefix kept in a file name.
const MAX_NAME_PREFIX: usize = 48;

/// The UTC civil date (year, month 1–12, day 1–31) of a unix time in ms.
pub fn utc_date(unix_ms: i64) -> (i64, u32, u32) {
    let days = unix_ms.div_euclid(86_400_000);
    // Count from 0000-03-01 so that leap days fall at the end of a year,
    // in 400-year eras of 146,097 days.
    let shifted = days.saturating_add(719_468);
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// The call-id as a file-name prefix: ASCII letters, digits, `.`, `_` and
/// `-` kept, anything else `_`, at most 48 characters.
pub fn sanitize(call_id: &str) -> String {
    let name: String = call_id
        .chars()
        .take(MAX_NAME_PREFIX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "call".to_string()
    } else {
        name
    }
}

/// The path of a recording relative to the data directory, `/`-separated.
pub fn relative_path(call_id: &str, id: &str, started_at_ms: i64) -> String {
    let (year, month, day) = utc_date(started_at_ms);
    format!(
        "{RECORDINGS_DIR}/{year:04}/{month:02}/{day:02}/{}-{id}.wav",
        sanitize(call_id)
    )
}

/// Resolve a stored relative path under `data_dir`; `None` when it is
/// absolute or climbs out (`..`), which denwa never writes.
pub fn resolve(data_dir: &Path, relative: &str) -> Option<PathBuf> {
    let mut out = data_dir.to_path_buf();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Bytes per frame (one sample per channel).
pub fn frame_bytes(layout: RecordingLayout) -> u64 {
    u64::from(layout.channels()) * u64::from(SAMPLE_BYTES)
}

/// The largest whole-frame data size a WAV header can describe.
pub fn max_data_bytes(layout: RecordingLayout) -> u64 {
    let limit = u64::from(u32::MAX) - (HEADER_LEN - 8);
    limit - limit % frame_bytes(layout)
}

/// The canonical header for `data_bytes` of audio (clamped to what fits).
pub fn wav_header(layout: RecordingLayout, data_bytes: u64) -> [u8; 44] {
    let data = u32::try_from(data_bytes.min(max_data_bytes(layout))).unwrap_or(0);
    let channels = layout.channels();
    let block_align = channels * SAMPLE_BYTES;
    let byte_rate = SAMPLE_RATE * u32::from(block_align);
    let riff_size = data.saturating_add(36);
    let mut header = [0u8; 44];
    let fields: [(usize, &[u8]); 13] = [
        (0, b"RIFF"),
        (4, &riff_size.to_le_bytes()),
        (8, b"WAVE"),
        (12, b"fmt "),
        (16, &16u32.to_le_bytes()),
        (20, &1u16.to_le_bytes()), // PCM
        (22, &channels.to_le_bytes()),
        (24, &SAMPLE_RATE.to_le_bytes()),
        (28, &byte_rate.to_le_bytes()),
        (32, &block_align.to_le_bytes()),
        (34, &(SAMPLE_BYTES * 8).to_le_bytes()),
        (36, b"data"),
        (40, &data.to_le_bytes()),
    ];
    for (at, bytes) in fields {
        if let Some(slot) = header.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
    }
    header
}

/// Lowercase hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Milliseconds of audio in `frames` frames.
pub fn frames_to_ms(frames: u64) -> i64 {
    i64::try_from(frames.saturating_mul(1_000) / u64::from(SAMPLE_RATE)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_of_known_instants() {
        assert_eq!(utc_date(0), (1970, 1, 1));
        assert_eq!(utc_date(86_399_999), (1970, 1, 1));
        assert_eq!(utc_date(-1), (1969, 12, 31));
        assert_eq!(utc_date(951_782_400_000), (2000, 2, 29));
        assert_eq!(utc_date(951_868_800_000), (2000, 3, 1));
        assert_eq!(utc_date(1_700_000_000_000), (2023, 11, 14));
        assert_eq!(utc_date(1_709_164_800_000), (2024, 2, 29));
        assert_eq!(utc_date(4_102_444_800_000), (2100, 1, 1));
        // 2100 is not a leap year.
        assert_eq!(utc_date(4_107_456_000_000), (2100, 2, 28));
        assert_eq!(utc_date(4_107_542_400_000), (2100, 3, 1));
    }

    #[test]
    fn paths_are_dated_and_names_are_safe() {
        let path = relative_path(
            "a84b4c76e66710@pc33.example.com",
            "0123abcd",
            1_700_000_000_000,
        );
        assert_eq!(
            path,
            "recordings/2023/11/14/a84b4c76e66710_pc33.example.com-0123abcd.wav"
        );
        assert_eq!(sanitize("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(sanitize(""), "call");
        assert_eq!(sanitize("呼び出し"), "____");
        assert_eq!(sanitize(&"x".repeat(200)).len(), 48);
    }

    #[test]
    fn resolve_stays_inside_the_data_directory() {
        let base = Path::new("data");
        assert_eq!(
            resolve(base, "recordings/2024/01/02/a.wav"),
            Some(
                base.join("recordings")
                    .join("2024")
                    .join("01")
                    .join("02")
                    .join("a.wav")
            )
        );
        assert_eq!(resolve(base, "../a.wav"), None);
        assert_eq!(resolve(base, "/etc/a.wav"), None);
    }

    #[test]
    fn the_header_matches_what_hound_writes() {
        for layout in [RecordingLayout::Stereo, RecordingLayout::Mono] {
            let mut cursor = std::io::Cursor::new(Vec::new());
            let mut writer = hound::WavWriter::new(&mut cursor, layout.wav_spec()).unwrap();
            for i in 0..10i16 {
                writer.write_sample(i).unwrap();
            }
            writer.finalize().unwrap();
            let bytes = cursor.into_inner();
            assert_eq!(bytes.len(), 44 + 20);
            assert_eq!(bytes[..44], wav_header(layout, 20));
        }
    }

    #[test]
    fn the_header_never_overflows() {
        let header = wav_header(RecordingLayout::Stereo, u64::MAX);
        let data = u32::from_le_bytes(header[40..44].try_into().unwrap());
        let riff = u32::from_le_bytes(header[4..8].try_into().unwrap());
        assert_eq!(data % 4, 0);
        assert_eq!(u64::from(riff), u64::from(data) + 36);
        assert_eq!(frames_to_ms(8_000), 1_000);
        assert_eq!(frames_to_ms(12), 1);
    }

    #[test]
    fn checksum_is_sha256_hex() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
