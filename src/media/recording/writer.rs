//! The recording writer: the one thread that writes recording files.
//!
//! It receives [`Message`]s in order from every recording's handle, opens
//! each file (and queues its store row), appends each block as 16-bit
//! little-endian PCM at its own offset (a positioned write, no seeks) and
//! every [`HEADER_EVERY`] blocks rewrites the 44-byte WAV header
//! ([`files::wav_header`]) for the new length, so a file is always a valid
//! WAV, at most a few seconds shorter than what is on disk (recovery
//! lengthens it after a crash). A block that never arrived (the queue was
//! full) leaves a hole: the writer fills it with silence when the next
//! block or the close shows it, so durations still match the call, and the
//! recording closes `incomplete`. On close it writes the final header,
//! syncs the file, computes its SHA-256 and queues the row's update.
//!
//! Must not: be reached by a blocking call from the call path (handles only
//! send, see `handle.rs`), panic on an I/O error (the recording is marked
//! incomplete and the others go on), or wait on the store.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use super::files::{self, frame_bytes, frames_to_ms, max_data_bytes, HEADER_LEN};
use super::timeline::{Block, BLOCK_FRAMES};
use super::RecordingLayout;
use crate::store::{RecordingEnd, RecordingStart, RecordingState, Store};

/// Blocks written between two rewrites of a file's header (and at its
/// close). A rewrite is a system call per block otherwise; after a crash
/// the file is still a valid WAV, at most this many seconds short, and
/// recovery sets its length from what is on disk.
const HEADER_EVERY: u32 = 5;

/// How long the writer lets audio blocks gather after writing some.
const PACE: Duration = Duration::from_millis(100);

/// What the handles send to the writer thread.
#[derive(Debug)]
pub enum Message {
    /// Create the file and the row.
    Open { key: u64, start: RecordingStart },
    /// Append audio; `bytes` was reserved in the queue budget.
    Block { key: u64, block: Block, bytes: u64 },
    /// Close the file at `total_frames` frames.
    Finish {
        key: u64,
        total_frames: u64,
        ended_at_ms: i64,
        dropped_blocks: u64,
    },
    /// Answered once everything sent before it is on disk.
    Flush(SyncSender<()>),
    /// Close every open recording (incomplete) and stop.
    Shutdown,
}

/// Counters shared by the handles and the writer.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes of audio queued and not yet written.
    pub queued_bytes: AtomicU64,
    pub started: AtomicU64,
    pub complete: AtomicU64,
    pub incomplete: AtomicU64,
    pub blocks_dropped: AtomicU64,
    pub write_errors: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One open recording.
struct OpenFile {
    start: RecordingStart,
    /// `None` when the stored path was unusable (never created).
    path: Option<PathBuf>,
    /// The file while it is written; its header always matches `frames`.
    file: Option<File>,
    /// Frames in the file.
    frames: u64,
    /// Writes since the header last described the file's length.
    writes_since_header: u32,
    /// Frames of silence written in place of blocks that never came.
    lost_frames: u64,
    /// Why the file stopped being written, if it did.
    failure: Option<String>,
}

impl OpenFile {
    fn layout(&self) -> RecordingLayout {
        self.start.layout
    }

    /// Append `block`, filling any hole before it with silence; `scratch`
    /// is the writer's reusable byte buffer.
    fn append(&mut self, block: &Block, scratch: &mut Vec<u8>) {
        let layout = self.layout();
        let channels = usize::from(layout.channels());
        if block.start > self.frames {
            let hole = block.start - self.frames;
            self.lost_frames = self.lost_frames.saturating_add(hole);
            self.write_silence(hole, scratch);
        }
        let overlap = self.frames.saturating_sub(block.start);
        let skip = usize::try_from(overlap)
            .unwrap_or(usize::MAX)
            .saturating_mul(channels);
        if let Some(samples) = block.samples.get(skip..) {
            self.write(samples, scratch);
        }
    }

    fn write_silence(&mut self, frames: u64, scratch: &mut Vec<u8>) {
        let channels = usize::from(self.layout().channels());
        let chunk = vec![0i16; BLOCK_FRAMES * channels];
        let mut left = frames;
        while left > 0 && self.file.is_some() {
            let now = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(BLOCK_FRAMES);
            self.write(chunk.get(..now * channels).unwrap_or_default(), scratch);
            left = left.saturating_sub(u64::try_from(now).unwrap_or(u64::MAX));
        }
    }

    /// Append interleaved samples after the last frame; every
    /// [`HEADER_EVERY`] writes, rewrite the header for the new length (the
    /// data first: a file cut between the two is a valid WAV a few seconds
    /// short, which recovery lengthens).
    fn write(&mut self, samples: &[i16], scratch: &mut Vec<u8>) {
        let layout = self.layout();
        let Some(file) = self.file.as_ref() else {
            return;
        };
        let frames = (samples.len() / usize::from(layout.channels())) as u64;
        let after = self.frames.saturating_add(frames);
        let data_bytes = after.saturating_mul(frame_bytes(layout));
        if data_bytes > max_data_bytes(layout) {
            self.fail("the file reached the WAV size limit".into());
            return;
        }
        let bytes = pcm_bytes(samples, scratch);
        let offset = HEADER_LEN.saturating_add(self.frames.saturating_mul(frame_bytes(layout)));
        if let Err(err) = file.write_all_at(bytes, offset) {
            return self.fail(format!("writing failed: {err}"));
        }
        self.frames = after;
        self.writes_since_header += 1;
        if self.writes_since_header >= HEADER_EVERY {
            if let Err(err) = self.write_header() {
                self.fail(format!("writing failed: {err}"));
            }
        }
    }

    /// Rewrites the header for the frames written so far.
    fn write_header(&mut self) -> io::Result<()> {
        let layout = self.layout();
        let Some(file) = self.file.as_ref() else {
            return Ok(());
        };
        let data_bytes = self.frames.saturating_mul(frame_bytes(layout));
        file.write_all_at(&files::wav_header(layout, data_bytes), 0)?;
        self.writes_since_header = 0;
        Ok(())
    }

    /// Stop writing this file; the first reason is kept. The header is
    /// made to describe what was written (best effort).
    fn fail(&mut self, reason: String) {
        tracing::warn!(id = %self.start.id, %reason, "recording: file no longer written");
        let _ = self.write_header();
        self.file = None;
        self.failure.get_or_insert(reason);
    }
}

/// `samples` as 16-bit little-endian PCM bytes, in `scratch` (which only
/// ever grows, so no block pays for zeroing it). Eight samples at a time,
/// which the compiler turns into vector code.
fn pcm_bytes<'a>(samples: &[i16], scratch: &'a mut Vec<u8>) -> &'a [u8] {
    let len = samples.len().saturating_mul(2);
    if scratch.len() < len {
        scratch.resize(len, 0);
    }
    let Some(out) = scratch.get_mut(..len) else {
        return &[];
    };
    let mut dst = out.chunks_exact_mut(16);
    let mut src = samples.chunks_exact(8);
    for (bytes, chunk) in (&mut dst).zip(&mut src) {
        let mut eight = [0u8; 16];
        for (pair, sample) in eight.chunks_exact_mut(2).zip(chunk) {
            pair.copy_from_slice(&sample.to_le_bytes());
        }
        bytes.copy_from_slice(&eight);
    }
    let rest = dst.into_remainder().chunks_exact_mut(2);
    for (pair, sample) in rest.zip(src.remainder()) {
        pair.copy_from_slice(&sample.to_le_bytes());
    }
    out
}

/// The writer thread's state.
pub struct Writer {
    data_dir: PathBuf,
    store: Store,
    counters: Arc<Counters>,
    open: HashMap<u64, OpenFile>,
    /// One block's bytes on their way to a file, reused.
    scratch: Vec<u8>,
}

impl Writer {
    pub fn new(data_dir: PathBuf, store: Store, counters: Arc<Counters>) -> Writer {
        Writer {
            data_dir,
            store,
            counters,
            open: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// Handle messages until [`Message::Shutdown`] or every sender is gone,
    /// then close what is still open.
    ///
    /// Paced: after a turn that wrote audio the thread waits [`PACE`]
    /// before it looks again, so the blocks of every recording gather and
    /// a handle's send finds it awake instead of waking it for each block
    /// (one wake-up per block cost as much CPU as writing it). Queued audio
    /// stays within the handles' byte budget either way.
    pub fn run(mut self, rx: Receiver<Message>) {
        'run: while let Ok(mut message) = rx.recv() {
            let mut wrote_audio = false;
            loop {
                wrote_audio |= matches!(message, Message::Block { .. });
                if !self.handle(message) {
                    break 'run;
                }
                match rx.try_recv() {
                    Ok(next) => message = next,
                    Err(_) => break,
                }
            }
            if wrote_audio {
                std::thread::sleep(PACE);
            }
        }
        self.close_all();
        tracing::debug!("recording writer stopped");
    }

    /// Returns false on shutdown.
    fn handle(&mut self, message: Message) -> bool {
        match message {
            Message::Open { key, start } => self.open_file(key, start),
            Message::Block { key, block, bytes } => {
                if let Some(file) = self.open.get_mut(&key) {
                    let healthy = file.failure.is_none();
                    file.append(&block, &mut self.scratch);
                    if healthy && file.failure.is_some() {
                        bump(&self.counters.write_errors);
                    }
                }
                self.counters
                    .queued_bytes
                    .fetch_sub(bytes, Ordering::Relaxed);
            }
            Message::Finish {
                key,
                total_frames,
                ended_at_ms,
                dropped_blocks,
            } => {
                if let Some(file) = self.open.remove(&key) {
                    self.close(file, total_frames, ended_at_ms, dropped_blocks, None);
                }
            }
            Message::Flush(done) => {
                // The waiter may have given up.
                let _ = done.send(());
            }
            Message::Shutdown => return false,
        }
        true
    }

    fn open_file(&mut self, key: u64, start: RecordingStart) {
        bump(&self.counters.started);
        // The row goes first, so that recovery finds any file this creates.
        if let Err(err) = self.store.start_recording(start.clone()) {
            tracing::warn!(%err, id = %start.id, "recording: row not queued");
        }
        let path = files::resolve(&self.data_dir, &start.path);
        let mut file = OpenFile {
            start,
            path,
            file: None,
            frames: 0,
            writes_since_header: 0,
            lost_frames: 0,
            failure: None,
        };
        let created = match &file.path {
            Some(path) => create_wav(path, file.layout()).map_err(|err| err.to_string()),
            None => Err("the path leaves the data directory".to_string()),
        };
        match created {
            Ok(created) => file.file = Some(created),
            Err(err) => {
                bump(&self.counters.write_errors);
                file.fail(format!("could not create the file: {err}"));
            }
        }
        self.open.insert(key, file);
    }

    fn close_all(&mut self) {
        for (_, file) in std::mem::take(&mut self.open) {
            let frames = file.frames;
            let ended = file
                .start
                .started_at_ms
                .saturating_add(frames_to_ms(frames));
            let reason = "denwa stopped before the recording ended".to_string();
            self.close(file, frames, ended, 0, Some(reason));
        }
    }

    /// Pad to `total_frames`, finalize, checksum and queue the row update.
    fn close(
        &mut self,
        mut file: OpenFile,
        total_frames: u64,
        ended_at_ms: i64,
        dropped_blocks: u64,
        extra_reason: Option<String>,
    ) {
        if total_frames > file.frames {
            let hole = total_frames - file.frames;
            file.lost_frames = file.lost_frames.saturating_add(hole);
            file.write_silence(hole, &mut self.scratch);
        }
        if let Err(err) = file.write_header() {
            file.failure
                .get_or_insert(format!("closing the file failed: {err}"));
        }
        file.file = None;
        let mut reasons: Vec<String> = file.failure.take().into_iter().collect();
        if file.lost_frames > 0 {
            reasons.push(format!(
                "writes fell behind: {dropped_blocks} block(s) dropped, {} ms of audio \
                 replaced by silence",
                frames_to_ms(file.lost_frames)
            ));
        }
        reasons.extend(extra_reason);
        let sealed = match &file.path {
            Some(path) => seal(path),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        let (bytes, sha256) = match sealed {
            Ok((bytes, sha256)) => (bytes, Some(sha256)),
            Err(err) => {
                if reasons.is_empty() {
                    reasons.push(format!("could not checksum the file: {err}"));
                }
                (0, None)
            }
        };
        let state = if reasons.is_empty() {
            bump(&self.counters.complete);
            RecordingState::Complete
        } else {
            bump(&self.counters.incomplete);
            tracing::warn!(id = %file.start.id, reason = %reasons.join("; "), "recording incomplete");
            RecordingState::Incomplete
        };
        let end = RecordingEnd {
            id: file.start.id.clone(),
            ended_at_ms,
            duration_ms: frames_to_ms(file.frames),
            bytes,
            state,
            sha256,
            reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        };
        if let Err(err) = self.store.finish_recording(end) {
            tracing::warn!(%err, id = %file.start.id, "recording: row update not queued");
        }
    }
}

/// Create the directories and a new file (never overwriting one) holding
/// the header of an empty recording.
fn create_wav(path: &std::path::Path, layout: RecordingLayout) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all_at(&files::wav_header(layout, 0), 0)?;
    Ok(file)
}

/// Sync a closed file to disk; its size and SHA-256.
fn seal(path: &std::path::Path) -> io::Result<(i64, String)> {
    let file = File::open(path)?;
    file.sync_all()?;
    let len = file.metadata()?.len();
    let sha = files::sha256_file(path)?;
    Ok((i64::try_from(len).unwrap_or(i64::MAX), sha))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(id: &str, layout: RecordingLayout) -> RecordingStart {
        RecordingStart {
            path: format!("recordings/2024/01/02/call-{id}.wav"),
            id: id.to_string(),
            call_id: "call".to_string(),
            layout,
            started_at_ms: 1_704_153_600_000,
        }
    }

    fn block(start: u64, frames: usize, channels: usize, value: i16) -> Block {
        Block {
            start,
            samples: (0..frames * channels)
                .map(|i| value.wrapping_add(i as i16))
                .collect(),
        }
    }

    /// The file as a reader sees it while the writer still has it open.
    fn read(path: &std::path::Path) -> (hound::WavSpec, Vec<i16>) {
        let reader = hound::WavReader::open(path).unwrap();
        let spec = reader.spec();
        (spec, reader.into_samples().map(Result::unwrap).collect())
    }

    /// Feeds one block of recording 7 to the writer.
    fn send(writer: &mut Writer, block: Block) {
        assert!(writer.handle(Message::Block {
            key: 7,
            block,
            bytes: 0
        }));
    }

    #[test]
    fn the_file_is_always_a_valid_wav_and_holes_are_silence() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("denwa.db")).unwrap();
        let mut writer = Writer::new(
            dir.path().to_path_buf(),
            store.clone(),
            Arc::new(Counters::default()),
        );
        let layout = RecordingLayout::Stereo;
        let opened = start("0001", layout);
        let path = files::resolve(dir.path(), &opened.path).unwrap();
        assert!(writer.handle(Message::Open {
            key: 7,
            start: opened
        }));
        let (spec, samples) = read(&path);
        assert_eq!((spec, samples.len()), (layout.wav_spec(), 0));

        let first = block(0, 8_000, 2, 100);
        send(&mut writer, first.clone());
        // As after a kill -9 here: a valid WAV, its header not grown yet,
        // the block on disk for recovery.
        assert_eq!(read(&path).1.len(), 0);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            HEADER_LEN + 8_000 * 4
        );

        // Block 2 never came: the third lands after a second of silence,
        // which makes the third write; HEADER_EVERY writes grow the header.
        let third = block(16_000, 4_000, 2, -5);
        send(&mut writer, third.clone());
        let mut written = 20_000;
        for _ in 3..HEADER_EVERY {
            send(&mut writer, block(written, 100, 2, 7));
            written += 100;
        }
        let (_, samples) = read(&path);
        assert_eq!(samples.len() as u64, 2 * written, "the header caught up");
        assert_eq!(samples[..16_000], first.samples[..]);
        assert!(samples[16_000..32_000].iter().all(|&s| s == 0));
        assert_eq!(samples[32_000..40_000], third.samples[..]);

        // The close pads to the call's length and writes the final header.
        let total = written + 1_000;
        assert!(writer.handle(Message::Finish {
            key: 7,
            total_frames: total,
            ended_at_ms: 1_704_153_602_500,
            dropped_blocks: 1,
        }));
        store.flush_blocking().unwrap();
        let row = store.reader().unwrap().recording("0001").unwrap().unwrap();
        assert_eq!(row.state, RecordingState::Incomplete);
        assert_eq!(row.bytes as u64, HEADER_LEN + total * 4);
        assert_eq!(row.sha256, Some(files::sha256_file(&path).unwrap()));
        let (_, samples) = read(&path);
        assert_eq!(samples.len() as u64, 2 * total);
        assert!(samples[2 * written as usize..].iter().all(|&s| s == 0));
        store.close().unwrap();
    }

    #[test]
    fn pcm_bytes_are_little_endian() {
        let mut scratch = vec![9; 3];
        let bytes = pcm_bytes(&[1, -2, 0x1234], &mut scratch);
        assert_eq!(bytes, [1, 0, 0xfe, 0xff, 0x34, 0x12]);
        let samples: Vec<i16> = (0..19).map(|i| i * 1000 - 9000).collect();
        let back: Vec<i16> = pcm_bytes(&samples, &mut scratch)
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(back, samples, "whole chunks of eight and the rest");
        assert_eq!(
            pcm_bytes(&[-1], &mut scratch),
            [0xff, 0xff],
            "shorter again"
        );
    }
}
