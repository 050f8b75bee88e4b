//! Recovery at startup: closes the recordings an unclean stop (crash,
//! `kill -9`, power cut) left in state `recording`.
//!
//! Each such file is repaired in place into a valid WAV: its RIFF and
//! `data` sizes are set from the file's real length, cut to whole frames; a
//! file too short to hold a header becomes an empty valid WAV. The row then
//! gets the duration, size and SHA-256 of the repaired file and state
//! `recovered`; a row whose file is missing or cannot be repaired is closed
//! `incomplete` with the reason.
//!
//! Must not: run while the recorder's writer is running (it would take the
//! files being written for abandoned ones), or touch rows in other states.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::files::{self, frame_bytes, frames_to_ms, max_data_bytes, HEADER_LEN, SAMPLE_BYTES};
use super::{RecordingError, RecordingLayout, SAMPLE_RATE};
use crate::store::{RecordingEnd, RecordingRow, RecordingState, Store};

/// How much of a file's start is searched for the `data` chunk.
const HEAD_LIMIT: u64 = 4096;

/// What recovery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Rows closed `recovered` with a repaired file.
    pub recovered: usize,
    /// Rows closed `incomplete` (file missing or unrepairable).
    pub failed: usize,
}

/// A repaired file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    pub layout: RecordingLayout,
    /// Whole frames in the file now.
    pub frames: u64,
    /// Size of the file now.
    pub bytes: u64,
}

/// Close every recording left open; blocks until the rows are committed.
pub fn recover(data_dir: &Path, store: &Store) -> Result<RecoveryReport, RecordingError> {
    let open = store
        .reader()?
        .recordings_in_state(RecordingState::Recording)?;
    let mut report = RecoveryReport::default();
    for row in &open {
        let end = match recover_row(data_dir, row) {
            Ok(end) => {
                report.recovered += 1;
                end
            }
            Err(reason) => {
                report.failed += 1;
                tracing::warn!(id = %row.id, %reason, "recording: not recoverable");
                RecordingEnd {
                    id: row.id.clone(),
                    ended_at_ms: row.started_at_ms,
                    duration_ms: 0,
                    bytes: 0,
                    state: RecordingState::Incomplete,
                    sha256: None,
                    reason: Some(reason),
                }
            }
        };
        store.finish_recording(end)?;
    }
    if !open.is_empty() {
        tracing::info!(
            recovered = report.recovered,
            failed = report.failed,
            "recording: closed recordings left open by an unclean stop"
        );
        store.flush_blocking()?;
    }
    Ok(report)
}

fn recover_row(data_dir: &Path, row: &RecordingRow) -> Result<RecordingEnd, String> {
    let path = files::resolve(data_dir, &row.path)
        .ok_or_else(|| "the stored path leaves the data directory".to_string())?;
    let repaired = match repair(&path, row.layout) {
        Ok(repaired) => repaired,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err("the file was missing after an unclean stop".to_string())
        }
        Err(err) => return Err(format!("the file could not be repaired: {err}")),
    };
    let sha256 = files::sha256_file(&path).map_err(|err| format!("checksum failed: {err}"))?;
    let duration_ms = frames_to_ms(repaired.frames);
    Ok(RecordingEnd {
        id: row.id.clone(),
        ended_at_ms: row.started_at_ms.saturating_add(duration_ms),
        duration_ms,
        bytes: i64::try_from(repaired.bytes).unwrap_or(i64::MAX),
        state: RecordingState::Recovered,
        sha256: Some(sha256),
        reason: Some("closed after an unclean stop; the last second may be missing".into()),
    })
}

/// Repair a WAV file in place. `layout` is used when the header cannot be
/// read (the file's own `fmt ` chunk wins when it can).
pub fn repair(path: &Path, layout: RecordingLayout) -> io::Result<Repaired> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut head = Vec::new();
    (&mut file).take(HEAD_LIMIT).read_to_end(&mut head)?;
    let repaired = match parse_header(&head) {
        Some(header) => {
            let data = whole_frames(len.saturating_sub(header.data_offset), header.layout);
            let riff_size = header.data_offset.saturating_sub(8).saturating_add(data);
            file.set_len(header.data_offset.saturating_add(data))?;
            write_u32_at(&mut file, 4, riff_size)?;
            write_u32_at(&mut file, header.data_offset.saturating_sub(4), data)?;
            Repaired {
                layout: header.layout,
                frames: data / frame_bytes(header.layout),
                bytes: header.data_offset.saturating_add(data),
            }
        }
        // No readable header: denwa's own header is 44 bytes; rewrite it
        // and keep whatever audio follows, or start an empty file.
        None => {
            let data = whole_frames(len.saturating_sub(HEADER_LEN), layout);
            file.set_len(HEADER_LEN.saturating_add(data))?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&files::wav_header(layout, data))?;
            Repaired {
                layout,
                frames: data / frame_bytes(layout),
                bytes: HEADER_LEN.saturating_add(data),
            }
        }
    };
    file.sync_all()?;
    Ok(repaired)
}

fn whole_frames(data_bytes: u64, layout: RecordingLayout) -> u64 {
    let capped = data_bytes.min(max_data_bytes(layout));
    capped - capped % frame_bytes(layout)
}

fn write_u32_at(file: &mut File, at: u64, value: u64) -> io::Result<()> {
    let value = u32::try_from(value).unwrap_or(u32::MAX);
    file.seek(SeekFrom::Start(at))?;
    file.write_all(&value.to_le_bytes())
}

/// Where a readable header says the audio starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    layout: RecordingLayout,
    data_offset: u64,
}

fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let raw = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([*raw.first()?, *raw.get(1)?]))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// Walk the RIFF chunks in `head` to a `fmt ` denwa can write (16-bit PCM,
/// 8 kHz, one or two channels) followed by the `data` chunk's start.
fn parse_header(head: &[u8]) -> Option<Header> {
    if head.get(0..4)? != b"RIFF" || head.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12usize;
    let mut layout = None;
    loop {
        let id = head.get(at..at.checked_add(4)?)?;
        let size = usize::try_from(le_u32(head, at.checked_add(4)?)?).ok()?;
        let body = at.checked_add(8)?;
        match id {
            b"data" => {
                return Some(Header {
                    layout: layout?,
                    data_offset: u64::try_from(body).ok()?,
                })
            }
            b"fmt " => layout = Some(parse_fmt(head.get(body..body.checked_add(size)?)?)?),
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body.checked_add(size)?.checked_add(size % 2)?;
    }
}

fn parse_fmt(fmt: &[u8]) -> Option<RecordingLayout> {
    let format = le_u16(fmt, 0)?;
    let channels = le_u16(fmt, 2)?;
    let rate = le_u32(fmt, 4)?;
    let bits = le_u16(fmt, 14)?;
    if format != 1 || rate != SAMPLE_RATE || bits != SAMPLE_BYTES * 8 {
        return None;
    }
    match channels {
        1 => Some(RecordingLayout::Mono),
        2 => Some(RecordingLayout::Stereo),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RecordingStart;

    struct Fixture {
        dir: tempfile::TempDir,
        store: Store,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("denwa.db")).unwrap();
            Fixture { dir, store }
        }

        /// A row in state `recording` for `name`; returns the file's path.
        fn open_row(&self, name: &str, layout: RecordingLayout) -> std::path::PathBuf {
            let relative = format!("recordings/2024/01/02/{name}.wav");
            self.store
                .start_recording(RecordingStart {
                    id: name.into(),
                    call_id: format!("call-{name}"),
                    path: relative.clone(),
                    layout,
                    started_at_ms: 1_704_153_600_000,
                })
                .unwrap();
            self.store.flush_blocking().unwrap();
            let path = files::resolve(self.dir.path(), &relative).unwrap();
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            path
        }

        fn row(&self, id: &str) -> RecordingRow {
            self.store.reader().unwrap().recording(id).unwrap().unwrap()
        }
    }

    fn read(path: &Path) -> (hound::WavSpec, Vec<i16>) {
        let reader = hound::WavReader::open(path).unwrap();
        let spec = reader.spec();
        (spec, reader.into_samples().map(Result::unwrap).collect())
    }

    /// What a crash leaves: `flushed` frames written and flushed with
    /// hound, then `more` frames and `extra` stray bytes appended without
    /// the header knowing.
    fn crashed_file(path: &Path, layout: RecordingLayout, flushed: u16, more: u16, extra: &[u8]) {
        let mut writer = hound::WavWriter::create(path, layout.wav_spec()).unwrap();
        let channels = layout.channels();
        for i in 0..flushed * channels {
            writer.write_sample(i as i16).unwrap();
        }
        writer.flush().unwrap();
        // Dying here: the writer's destructor never runs.
        std::mem::forget(writer);
        let mut file = OpenOptions::new().append(true).open(path).unwrap();
        for i in 0..more * channels {
            file.write_all(&(-(i as i16) - 1).to_le_bytes()).unwrap();
        }
        file.write_all(extra).unwrap();
    }

    #[test]
    fn a_file_cut_by_a_crash_is_repaired_to_its_whole_frames() {
        let fx = Fixture::new();
        let path = fx.open_row("cut", RecordingLayout::Stereo);
        crashed_file(&path, RecordingLayout::Stereo, 1_000, 600, &[9, 9, 9]);
        assert_eq!(
            read(&path).1.len(),
            2_000,
            "the stale header hides the tail"
        );

        let report = recover(fx.dir.path(), &fx.store).unwrap();
        assert_eq!(
            report,
            RecoveryReport {
                recovered: 1,
                failed: 0
            }
        );
        let (spec, samples) = read(&path);
        assert_eq!(spec, RecordingLayout::Stereo.wav_spec());
        assert_eq!(samples.len(), 3_200);
        assert_eq!(samples[1_999], 1_999);
        assert_eq!(samples[2_000], -1);
        assert_eq!(samples[3_199], -1_200);

        let row = fx.row("cut");
        assert_eq!(row.state, RecordingState::Recovered);
        assert_eq!(row.duration_ms, 200);
        assert_eq!(row.ended_at_ms, Some(1_704_153_600_200));
        assert_eq!(row.bytes, 44 + 1_600 * 4);
        assert_eq!(row.bytes as u64, std::fs::metadata(&path).unwrap().len());
        assert_eq!(row.sha256, Some(files::sha256_file(&path).unwrap()));
        assert!(row.reason.unwrap().contains("unclean stop"));
        fx.store.close().unwrap();
    }

    #[test]
    fn a_file_shorter_than_a_header_becomes_an_empty_wav() {
        let fx = Fixture::new();
        let path = fx.open_row("short", RecordingLayout::Mono);
        std::fs::write(&path, b"RIFF\0\0\0\0WAVEfmt ").unwrap();
        recover(fx.dir.path(), &fx.store).unwrap();
        let (spec, samples) = read(&path);
        assert_eq!(spec, RecordingLayout::Mono.wav_spec());
        assert!(samples.is_empty());
        let row = fx.row("short");
        assert_eq!(
            (row.state, row.duration_ms, row.bytes),
            (RecordingState::Recovered, 0, 44)
        );
        fx.store.close().unwrap();
    }

    #[test]
    fn a_torn_header_is_rewritten_and_the_audio_kept() {
        let fx = Fixture::new();
        let path = fx.open_row("torn", RecordingLayout::Mono);
        let mut bytes = vec![0u8; 44];
        for i in 0..401i16 {
            bytes.extend_from_slice(&i.to_le_bytes());
        }
        bytes.push(7);
        std::fs::write(&path, bytes).unwrap();
        recover(fx.dir.path(), &fx.store).unwrap();
        let (_, samples) = read(&path);
        assert_eq!(samples, (0..401).collect::<Vec<i16>>());
        assert_eq!(fx.row("torn").bytes, 44 + 802);
        fx.store.close().unwrap();
    }

    #[test]
    fn the_file_header_wins_over_the_stored_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        crashed_file(&path, RecordingLayout::Mono, 10, 5, &[1]);
        let repaired = repair(&path, RecordingLayout::Stereo).unwrap();
        assert_eq!(
            repaired,
            Repaired {
                layout: RecordingLayout::Mono,
                frames: 15,
                bytes: 44 + 30
            }
        );
        // Repairing twice changes nothing.
        assert_eq!(repair(&path, RecordingLayout::Stereo).unwrap(), repaired);
        assert_eq!(read(&path).1.len(), 15);
    }

    #[test]
    fn extra_chunks_before_the_audio_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.wav");
        let header = files::wav_header(RecordingLayout::Mono, 0);
        let mut bytes = header[..36].to_vec();
        bytes.extend_from_slice(b"LIST\x04\0\0\0abcd");
        bytes.extend_from_slice(b"data\0\0\0\0");
        bytes.extend_from_slice(&[1, 0, 2, 0, 3]);
        std::fs::write(&path, &bytes).unwrap();
        let repaired = repair(&path, RecordingLayout::Stereo).unwrap();
        assert_eq!((repaired.frames, repaired.bytes), (2, 56 + 4));
        assert_eq!(read(&path).1, [1, 2]);

        // An odd-sized chunk is followed by a pad byte.
        let mut odd = header[..36].to_vec();
        odd.extend_from_slice(b"LIST\x03\0\0\0abc\0data\0\0\0\0");
        assert_eq!(parse_header(&odd).map(|h| h.data_offset), Some(56));
    }

    #[test]
    fn a_missing_file_closes_the_row_incomplete() {
        let fx = Fixture::new();
        fx.open_row("gone", RecordingLayout::Stereo);
        let report = recover(fx.dir.path(), &fx.store).unwrap();
        assert_eq!(
            report,
            RecoveryReport {
                recovered: 0,
                failed: 1
            }
        );
        let row = fx.row("gone");
        assert_eq!(row.state, RecordingState::Incomplete);
        assert_eq!(
            row.reason.as_deref(),
            Some("the file was missing after an unclean stop")
        );
        assert_eq!((row.bytes, row.sha256), (0, None));
        fx.store.close().unwrap();
    }

    #[test]
    fn closed_recordings_are_left_alone() {
        let fx = Fixture::new();
        let path = fx.open_row("done", RecordingLayout::Stereo);
        crashed_file(&path, RecordingLayout::Stereo, 10, 10, &[]);
        fx.store
            .finish_recording(RecordingEnd {
                id: "done".into(),
                ended_at_ms: 1,
                duration_ms: 1,
                bytes: 84,
                state: RecordingState::Complete,
                sha256: None,
                reason: None,
            })
            .unwrap();
        fx.store.flush_blocking().unwrap();
        let before = std::fs::read(&path).unwrap();
        assert_eq!(
            recover(fx.dir.path(), &fx.store).unwrap(),
            RecoveryReport::default()
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(fx.row("done").state, RecordingState::Complete);
        fx.store.close().unwrap();
    }

    #[test]
    fn headers_denwa_cannot_write_are_not_trusted() {
        let mut header = files::wav_header(RecordingLayout::Stereo, 0);
        assert_eq!(
            parse_header(&header),
            Some(Header {
                layout: RecordingLayout::Stereo,
                data_offset: 44
            })
        );
        header[24..28].copy_from_slice(&44_100u32.to_le_bytes());
        assert_eq!(parse_header(&header), None);
        assert_eq!(parse_header(b"RIFF"), None);
        // A chunk size that points past the end.
        let mut huge = files::wav_header(RecordingLayout::Mono, 0).to_vec();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_header(&huge), None);
    }
}
