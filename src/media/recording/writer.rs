//! The recording writer: the one thread that writes recording files.
//!
//! It receives [`Message`]s in order from every recording's handle, opens
//! each file (and queues its store row), appends each block with hound and
//! rewrites the WAV header after it (`flush`), so a file is always valid up
//! to its last written block. A block that never arrived (the queue was
//! full) leaves a hole: the writer fills it with silence when the next
//! block or the close shows it, so durations still match the call, and the
//! recording closes `incomplete`. On close it finalizes the file, syncs it,
//! computes its SHA-256 and queues the row's update.
//!
//! Must not: be reached by a blocking call from the call path (handles only
//! send, see `handle.rs`), panic on an I/O error (the recording is marked
//! incomplete and the others go on), or wait on the store.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use hound::WavWriter;

use super::files::{self, frame_bytes, frames_to_ms, max_data_bytes};
use super::timeline::{Block, BLOCK_FRAMES};
use super::RecordingLayout;
use crate::store::{RecordingEnd, RecordingStart, RecordingState, Store};

/// Write buffer in front of each file; a one-second stereo block is 32 KB.
const FILE_BUFFER: usize = 64 * 1024;

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
    wav: Option<WavWriter<BufWriter<File>>>,
    /// Frames in the file.
    frames: u64,
    /// Frames of silence written in place of blocks that never came.
    lost_frames: u64,
    /// Why the file stopped being written, if it did.
    failure: Option<String>,
}

impl OpenFile {
    fn layout(&self) -> RecordingLayout {
        self.start.layout
    }

    /// Append `block`, filling any hole before it with silence.
    fn append(&mut self, block: &Block) {
        let layout = self.layout();
        let channels = usize::from(layout.channels());
        if block.start > self.frames {
            let hole = block.start - self.frames;
            self.lost_frames = self.lost_frames.saturating_add(hole);
            self.write_silence(hole);
        }
        let overlap = self.frames.saturating_sub(block.start);
        let skip = usize::try_from(overlap)
            .unwrap_or(usize::MAX)
            .saturating_mul(channels);
        if let Some(samples) = block.samples.get(skip..) {
            self.write(samples);
        }
    }

    fn write_silence(&mut self, frames: u64) {
        let channels = usize::from(self.layout().channels());
        let chunk = vec![0i16; BLOCK_FRAMES * channels];
        let mut left = frames;
        while left > 0 && self.wav.is_some() {
            let now = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(BLOCK_FRAMES);
            self.write(chunk.get(..now * channels).unwrap_or_default());
            left = left.saturating_sub(u64::try_from(now).unwrap_or(u64::MAX));
        }
    }

    /// Append interleaved samples and rewrite the header.
    fn write(&mut self, samples: &[i16]) {
        let layout = self.layout();
        let Some(wav) = self.wav.as_mut() else {
            return;
        };
        let frames = (samples.len() / usize::from(layout.channels())) as u64;
        let after = self.frames.saturating_add(frames);
        if after.saturating_mul(frame_bytes(layout)) > max_data_bytes(layout) {
            self.fail("the file reached the WAV size limit".into());
            return;
        }
        let Ok(count) = u32::try_from(samples.len()) else {
            return;
        };
        let mut sample_writer = wav.get_i16_writer(count);
        for &sample in samples {
            sample_writer.write_sample(sample);
        }
        match sample_writer.flush().and_then(|()| wav.flush()) {
            Ok(()) => self.frames = after,
            Err(err) => self.fail(format!("writing failed: {err}")),
        }
    }

    /// Stop writing this file; the first reason is kept.
    fn fail(&mut self, reason: String) {
        tracing::warn!(id = %self.start.id, %reason, "recording: file no longer written");
        if let Some(wav) = self.wav.take() {
            // Best effort: make the header match what was written.
            let _ = wav.finalize();
        }
        self.failure.get_or_insert(reason);
    }
}

/// The writer thread's state.
pub struct Writer {
    data_dir: PathBuf,
    store: Store,
    counters: Arc<Counters>,
    open: HashMap<u64, OpenFile>,
}

impl Writer {
    pub fn new(data_dir: PathBuf, store: Store, counters: Arc<Counters>) -> Writer {
        Writer {
            data_dir,
            store,
            counters,
            open: HashMap::new(),
        }
    }

    /// Handle messages until [`Message::Shutdown`] or every sender is gone,
    /// then close what is still open.
    pub fn run(mut self, rx: Receiver<Message>) {
        while let Ok(message) = rx.recv() {
            if !self.handle(message) {
                break;
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
                    file.append(&block);
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
            wav: None,
            frames: 0,
            lost_frames: 0,
            failure: None,
        };
        let created = match &file.path {
            Some(path) => create_wav(path, file.layout()).map_err(|err| err.to_string()),
            None => Err("the path leaves the data directory".to_string()),
        };
        match created {
            Ok(wav) => file.wav = Some(wav),
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
            file.write_silence(hole);
        }
        if let Some(wav) = file.wav.take() {
            if let Err(err) = wav.finalize() {
                file.failure
                    .get_or_insert(format!("closing the file failed: {err}"));
            }
        }
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

/// Create the directories and a new file (never overwriting one).
fn create_wav(
    path: &std::path::Path,
    layout: RecordingLayout,
) -> Result<WavWriter<BufWriter<File>>, hound::Error> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().write(true).create_new(true).open(path)?;
    WavWriter::new(
        BufWriter::with_capacity(FILE_BUFFER, file),
        layout.wav_spec(),
    )
}

/// Sync a closed file to disk; its size and SHA-256.
fn seal(path: &std::path::Path) -> io::Result<(i64, String)> {
    let file = File::open(path)?;
    file.sync_all()?;
    let len = file.metadata()?.len();
    let sha = files::sha256_file(path)?;
    Ok((i64::try_from(len).unwrap_or(i64::MAX), sha))
}
