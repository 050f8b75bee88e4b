//! The recorder service and the per-recording handle a call actor holds.
//!
//! [`Recorder`] starts the writer thread (after recovery) and hands out
//! [`RecordingHandle`]s. A handle owns its recording's [`Timeline`] and
//! sends what it completes to the writer: sending never blocks, and audio
//! blocks only go out while the shared queue budget
//! ([`RecorderConfig::queue_limit_bytes`]) has room; otherwise the block is
//! dropped and counted, and the writer closes the recording `incomplete`.
//! Opening and closing messages are tiny and always sent, so a recording is
//! always closed.
//!
//! Must not: touch a file or the store from the call path, or block.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::files::{self, frames_to_ms};
use super::recover::{recover, RecoveryReport};
use super::timeline::{Block, Timeline, TimelineConfig, TimelineStats};
use super::writer::{Counters, Message, Writer};
use super::{Leg, RecordingError, RecordingLayout};
use crate::store::{RecordingStart, Store};

/// Default queue budget: about 17 minutes of one stereo call, or 2 seconds
/// of 500 calls, buffered in front of a slow disk.
pub const DEFAULT_QUEUE_LIMIT_BYTES: u64 = 32 * 1024 * 1024;

/// How the recorder is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderConfig {
    /// The data directory; files go under `recordings/` in it.
    pub data_dir: PathBuf,
    /// Audio bytes queued for the writer, all recordings together, beyond
    /// which blocks are dropped.
    pub queue_limit_bytes: u64,
}

impl RecorderConfig {
    pub fn new(data_dir: PathBuf) -> RecorderConfig {
        RecorderConfig {
            data_dir,
            queue_limit_bytes: DEFAULT_QUEUE_LIMIT_BYTES,
        }
    }
}

/// What to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSpec {
    /// The caller leg's Call-ID (the call record's key).
    pub call_id: String,
    pub layout: RecordingLayout,
    /// Wall-clock start, unix epoch milliseconds; position 0.
    pub started_at_ms: i64,
}

/// Counters of the recorder since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    pub started: u64,
    pub complete: u64,
    pub incomplete: u64,
    /// Audio blocks dropped because the writer fell behind.
    pub blocks_dropped: u64,
    /// Files that could not be created or written.
    pub write_errors: u64,
    /// Audio bytes queued for the writer now.
    pub queued_bytes: u64,
}

/// How a recording ended, from the handle's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSummary {
    pub id: String,
    /// Length of the recording in frames.
    pub frames: u64,
    /// Blocks dropped because the writer fell behind.
    pub dropped_blocks: u64,
    pub timeline: TimelineStats,
}

/// Cheap-clone handle to the recorder. Close it before the store.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: Sender<Message>,
    counters: Arc<Counters>,
    queue_limit_bytes: u64,
    next_key: Arc<AtomicU64>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Recorder {
    /// Repair the recordings a crash left open, then start the writer
    /// thread. Blocking (file repair, store flush): call it at startup,
    /// outside async tasks or through `spawn_blocking`.
    pub fn start(
        config: RecorderConfig,
        store: Store,
    ) -> Result<(Recorder, RecoveryReport), RecordingError> {
        let report = recover(&config.data_dir, &store)?;
        let (recorder, writer, rx) = Recorder::unstarted(config, store);
        let handle = std::thread::Builder::new()
            .name("denwa-recorder".into())
            .spawn(move || writer.run(rx))
            .map_err(RecordingError::Spawn)?;
        if let Ok(mut slot) = recorder.writer.lock() {
            *slot = Some(handle);
        }
        Ok((recorder, report))
    }

    /// The recorder and its writer, not yet running (tests drive the
    /// writer by hand to make the queue's behaviour deterministic).
    pub(super) fn unstarted(
        config: RecorderConfig,
        store: Store,
    ) -> (Recorder, Writer, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let writer = Writer::new(config.data_dir, store, Arc::clone(&counters));
        let recorder = Recorder {
            tx,
            counters,
            queue_limit_bytes: config.queue_limit_bytes,
            next_key: Arc::new(AtomicU64::new(0)),
            writer: Arc::new(Mutex::new(None)),
        };
        (recorder, writer, rx)
    }

    /// Start recording a call. Never blocks: the file is created by the
    /// writer thread.
    pub fn record(&self, spec: RecordingSpec) -> Result<RecordingHandle, RecordingError> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:016x}", rand::random::<u64>());
        let start = RecordingStart {
            path: files::relative_path(&spec.call_id, &id, spec.started_at_ms),
            id: id.clone(),
            call_id: spec.call_id,
            layout: spec.layout,
            started_at_ms: spec.started_at_ms,
        };
        self.tx
            .send(Message::Open { key, start })
            .map_err(|_| RecordingError::Closed)?;
        Ok(RecordingHandle {
            id,
            started_at_ms: spec.started_at_ms,
            timeline: Timeline::new(TimelineConfig::new(spec.layout)),
            outbox: Outbox {
                key,
                tx: self.tx.clone(),
                counters: Arc::clone(&self.counters),
                limit: self.queue_limit_bytes,
                dropped_blocks: 0,
                finished: false,
            },
        })
    }

    pub fn stats(&self) -> RecorderStats {
        let c = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RecorderStats {
            started: load(&c.started),
            complete: load(&c.complete),
            incomplete: load(&c.incomplete),
            blocks_dropped: load(&c.blocks_dropped),
            write_errors: load(&c.write_errors),
            queued_bytes: load(&c.queued_bytes),
        }
    }

    /// Wait until everything sent before this call is written and its rows
    /// queued to the store. Blocking.
    pub fn flush_blocking(&self) -> Result<(), RecordingError> {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        self.tx
            .send(Message::Flush(done_tx))
            .map_err(|_| RecordingError::Closed)?;
        done_rx.recv().map_err(|_| RecordingError::Closed)
    }

    /// Close every recording still open (as incomplete), stop the writer
    /// and wait for it. Blocking; calling it twice is harmless.
    pub fn close(&self) -> Result<(), RecordingError> {
        let handle = match self.writer.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let Some(handle) = handle else {
            return Ok(());
        };
        let _ = self.tx.send(Message::Shutdown);
        handle.join().map_err(|_| RecordingError::Closed)
    }
}

/// The sending side of one recording.
#[derive(Debug)]
struct Outbox {
    key: u64,
    tx: Sender<Message>,
    counters: Arc<Counters>,
    limit: u64,
    dropped_blocks: u64,
    finished: bool,
}

impl Outbox {
    /// Queue a block if the budget allows; never blocks.
    fn deliver(&mut self, block: Block) {
        let bytes = u64::try_from(block.samples.len())
            .unwrap_or(u64::MAX)
            .saturating_mul(2);
        let limit = self.limit;
        let reserved = self
            .counters
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                let after = queued.saturating_add(bytes);
                (after <= limit).then_some(after)
            })
            .is_ok();
        let sent = reserved
            && self
                .tx
                .send(Message::Block {
                    key: self.key,
                    block,
                    bytes,
                })
                .is_ok();
        if !sent {
            if reserved {
                self.counters
                    .queued_bytes
                    .fetch_sub(bytes, Ordering::Relaxed);
            }
            self.dropped_blocks = self.dropped_blocks.saturating_add(1);
            self.counters.blocks_dropped.fetch_add(1, Ordering::Relaxed);
            if self.dropped_blocks == 1 {
                tracing::warn!(key = self.key, "recording: writer behind, audio dropped");
            }
        }
    }
}

/// One recording in progress, held by the call actor. `Send`; every method
/// is cheap enough to call per 20 ms packet. Dropping it stops the
/// recording at the newest position seen.
#[derive(Debug)]
pub struct RecordingHandle {
    id: String,
    started_at_ms: i64,
    timeline: Timeline,
    outbox: Outbox,
}

impl RecordingHandle {
    /// The recording's id (its row in the store).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn layout(&self) -> RecordingLayout {
        self.timeline.layout()
    }

    pub fn is_paused(&self) -> bool {
        self.timeline.is_paused()
    }

    /// Blocks dropped so far because the writer fell behind.
    pub fn dropped_blocks(&self) -> u64 {
        self.outbox.dropped_blocks
    }

    pub fn timeline_stats(&self) -> TimelineStats {
        self.timeline.stats()
    }

    /// Decoded audio of `leg` starting `position` frames after the start.
    pub fn push(&mut self, leg: Leg, position: u64, samples: &[i16]) {
        let outbox = &mut self.outbox;
        self.timeline
            .push(leg, position, samples, &mut |block| outbox.deliver(block));
    }

    /// The clock moved to `position` with no audio (hold, queue silence).
    pub fn tick(&mut self, position: u64) {
        let outbox = &mut self.outbox;
        self.timeline
            .tick(position, &mut |block| outbox.deliver(block));
    }

    /// Record silence from `position` on.
    pub fn pause(&mut self, position: u64) {
        let outbox = &mut self.outbox;
        self.timeline
            .pause(position, &mut |block| outbox.deliver(block));
    }

    /// Record audio again from `position` on.
    pub fn resume(&mut self, position: u64) {
        let outbox = &mut self.outbox;
        self.timeline
            .resume(position, &mut |block| outbox.deliver(block));
    }

    /// End the recording at `position` (frames since the start; the file
    /// is exactly that long) and `ended_at_ms` (wall clock).
    pub fn stop(mut self, position: u64, ended_at_ms: i64) -> RecordingSummary {
        self.finish(position, ended_at_ms)
    }

    fn finish(&mut self, position: u64, ended_at_ms: i64) -> RecordingSummary {
        let outbox = &mut self.outbox;
        let total_frames = self
            .timeline
            .stop(position, &mut |block| outbox.deliver(block));
        if !outbox.finished {
            outbox.finished = true;
            let message = Message::Finish {
                key: outbox.key,
                total_frames,
                ended_at_ms,
                dropped_blocks: outbox.dropped_blocks,
            };
            if outbox.tx.send(message).is_err() {
                tracing::warn!(id = %self.id, "recording: writer gone before the close");
            }
        }
        RecordingSummary {
            id: self.id.clone(),
            frames: total_frames,
            dropped_blocks: outbox.dropped_blocks,
            timeline: self.timeline.stats(),
        }
    }
}

impl Drop for RecordingHandle {
    fn drop(&mut self) {
        if !self.outbox.finished {
            let position = self.timeline.horizon();
            let ended = self.started_at_ms.saturating_add(frames_to_ms(position));
            self.finish(position, ended);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RecordingRow, RecordingState};

    /// 1 s past 2023-11-14T22:13:20Z.
    const STARTED_AT_MS: i64 = 1_700_000_001_000;
    const PACKET: usize = 160;

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

        fn config(&self) -> RecorderConfig {
            RecorderConfig::new(self.dir.path().to_path_buf())
        }

        fn row(&self, id: &str) -> RecordingRow {
            self.store.flush_blocking().unwrap();
            self.store.reader().unwrap().recording(id).unwrap().unwrap()
        }

        fn read_wav(&self, row: &RecordingRow) -> (hound::WavSpec, Vec<i16>) {
            let path = files::resolve(self.dir.path(), &row.path).unwrap();
            let reader = hound::WavReader::open(path).unwrap();
            let spec = reader.spec();
            let samples = reader.into_samples::<i16>().map(Result::unwrap).collect();
            (spec, samples)
        }
    }

    fn spec(layout: RecordingLayout) -> RecordingSpec {
        RecordingSpec {
            call_id: "a84b4c76e66710@pc33.example.com".into(),
            layout,
            started_at_ms: STARTED_AT_MS,
        }
    }

    /// `len` samples of a sine at `freq` Hz from frame `from`.
    fn tone(freq: f64, amplitude: f64, from: u64, len: usize) -> Vec<i16> {
        (0..len)
            .map(|i| {
                let t = (from + i as u64) as f64 / f64::from(crate::media::recording::SAMPLE_RATE);
                (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
            })
            .collect()
    }

    /// Push `frames` frames of 440 Hz on A and 1 kHz on B, packet by packet.
    fn talk(handle: &mut RecordingHandle, frames: u64) {
        let mut pos = 0;
        while pos < frames {
            handle.push(Leg::A, pos, &tone(440.0, 8_000.0, pos, PACKET));
            handle.push(Leg::B, pos, &tone(1_000.0, 4_000.0, pos, PACKET));
            pos += PACKET as u64;
        }
    }

    #[test]
    fn stereo_tones_land_on_their_own_channels_with_the_call_length() {
        let fx = Fixture::new();
        let (recorder, report) = Recorder::start(fx.config(), fx.store.clone()).unwrap();
        assert_eq!(report, RecoveryReport::default());
        let mut handle = recorder.record(spec(RecordingLayout::Stereo)).unwrap();
        talk(&mut handle, 28_000);
        let summary = handle.stop(28_000, STARTED_AT_MS + 3_500);
        assert_eq!((summary.frames, summary.dropped_blocks), (28_000, 0));
        recorder.flush_blocking().unwrap();

        let row = fx.row(&summary.id);
        assert_eq!(row.state, RecordingState::Complete, "{:?}", row.reason);
        assert_eq!(row.reason, None);
        assert_eq!(row.call_id, "a84b4c76e66710@pc33.example.com");
        assert_eq!(row.duration_ms, 3_500);
        assert_eq!(row.ended_at_ms, Some(STARTED_AT_MS + 3_500));
        assert_eq!(
            row.path,
            format!(
                "recordings/2023/11/14/a84b4c76e66710_pc33.example.com-{}.wav",
                summary.id
            )
        );
        let path = files::resolve(fx.dir.path(), &row.path).unwrap();
        assert_eq!(row.bytes, 44 + 28_000 * 4);
        assert_eq!(row.bytes as u64, std::fs::metadata(&path).unwrap().len());
        assert_eq!(row.sha256, Some(files::sha256_file(&path).unwrap()));

        let (wav_spec, samples) = fx.read_wav(&row);
        assert_eq!(wav_spec, RecordingLayout::Stereo.wav_spec());
        let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
        let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(left, tone(440.0, 8_000.0, 0, 28_000));
        assert_eq!(right, tone(1_000.0, 4_000.0, 0, 28_000));

        let stats = recorder.stats();
        assert_eq!((stats.started, stats.complete, stats.incomplete), (1, 1, 0));
        assert_eq!(stats.queued_bytes, 0);
        recorder.close().unwrap();
        recorder.close().unwrap();
        assert!(matches!(
            recorder.record(spec(RecordingLayout::Stereo)),
            Err(RecordingError::Closed)
        ));
        fx.store.close().unwrap();
    }

    #[test]
    fn mono_mixes_both_legs() {
        let fx = Fixture::new();
        let (recorder, _) = Recorder::start(fx.config(), fx.store.clone()).unwrap();
        let mut handle = recorder.record(spec(RecordingLayout::Mono)).unwrap();
        talk(&mut handle, 8_800);
        let summary = handle.stop(8_800, STARTED_AT_MS + 1_100);
        recorder.close().unwrap();
        let row = fx.row(&summary.id);
        assert_eq!(row.state, RecordingState::Complete);
        assert_eq!(row.layout, RecordingLayout::Mono);
        assert_eq!((row.duration_ms, row.bytes), (1_100, 44 + 8_800 * 2));
        let (wav_spec, samples) = fx.read_wav(&row);
        assert_eq!(wav_spec.channels, 1);
        let a = tone(440.0, 8_000.0, 0, 8_800);
        let b = tone(1_000.0, 4_000.0, 0, 8_800);
        let mixed: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(samples, mixed);
        fx.store.close().unwrap();
    }

    #[test]
    fn a_full_queue_drops_blocks_and_the_recording_closes_incomplete() {
        let fx = Fixture::new();
        let mut config = fx.config();
        // Room for two one-second stereo blocks; the writer is not running,
        // as if the disk had stalled.
        config.queue_limit_bytes = 2 * 8_000 * 2 * 2;
        let (recorder, writer, rx) = Recorder::unstarted(config, fx.store.clone());
        let mut handle = recorder.record(spec(RecordingLayout::Stereo)).unwrap();
        talk(&mut handle, 40_000);
        assert_eq!(handle.dropped_blocks(), 2, "blocks 3 and 4 found no room");
        let summary = handle.stop(40_000, STARTED_AT_MS + 5_000);
        assert_eq!((summary.frames, summary.dropped_blocks), (40_000, 3));
        let stats = recorder.stats();
        assert_eq!(stats.blocks_dropped, 3);
        assert_eq!(stats.queued_bytes, 64_000);

        // The disk comes back: the writer drains what was queued.
        recorder.tx.send(Message::Shutdown).unwrap();
        writer.run(rx);
        let stats = recorder.stats();
        assert_eq!(
            (stats.complete, stats.incomplete, stats.queued_bytes),
            (0, 1, 0)
        );
        let row = fx.row(&summary.id);
        assert_eq!(row.state, RecordingState::Incomplete);
        let reason = row.reason.clone().unwrap();
        assert!(reason.contains("writes fell behind"), "{reason}");
        assert!(reason.contains("3000 ms"), "{reason}");
        assert_eq!(row.duration_ms, 5_000, "lost audio is silence, not a gap");
        let (_, samples) = fx.read_wav(&row);
        let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
        assert_eq!(left.len(), 40_000);
        assert_eq!(left[..16_000], tone(440.0, 8_000.0, 0, 16_000));
        assert!(left[16_000..].iter().all(|&s| s == 0));
        fx.store.close().unwrap();
    }

    #[test]
    fn an_unwritable_directory_marks_the_recording_and_the_call_goes_on() {
        let fx = Fixture::new();
        std::fs::write(fx.dir.path().join("recordings"), b"not a directory").unwrap();
        let (recorder, _) = Recorder::start(fx.config(), fx.store.clone()).unwrap();
        let mut handle = recorder.record(spec(RecordingLayout::Stereo)).unwrap();
        talk(&mut handle, 16_000);
        let summary = handle.stop(16_000, STARTED_AT_MS + 2_000);
        assert_eq!(summary.frames, 16_000);
        recorder.close().unwrap();
        let row = fx.row(&summary.id);
        assert_eq!(row.state, RecordingState::Incomplete);
        let reason = row.reason.unwrap();
        assert!(reason.starts_with("could not create the file"), "{reason}");
        assert_eq!((row.bytes, row.sha256), (0, None));
        let stats = recorder.stats();
        assert_eq!((stats.write_errors, stats.incomplete), (1, 1));
        fx.store.close().unwrap();
    }

    #[test]
    fn dropping_the_handle_closes_the_recording_at_the_last_position() {
        let fx = Fixture::new();
        let (recorder, _) = Recorder::start(fx.config(), fx.store.clone()).unwrap();
        let mut handle = recorder.record(spec(RecordingLayout::Stereo)).unwrap();
        talk(&mut handle, 8_000);
        handle.pause(8_000);
        handle.tick(12_000);
        let id = handle.id().to_string();
        drop(handle);
        recorder.flush_blocking().unwrap();
        let row = fx.row(&id);
        assert_eq!(row.state, RecordingState::Complete);
        assert_eq!(row.duration_ms, 1_500);
        assert_eq!(row.ended_at_ms, Some(STARTED_AT_MS + 1_500));
        let (_, samples) = fx.read_wav(&row);
        assert_eq!(samples.len(), 24_000);
        assert!(samples[16_000..].iter().all(|&s| s == 0), "paused: silence");
        recorder.close().unwrap();
        fx.store.close().unwrap();
    }

    #[test]
    fn closing_the_recorder_closes_open_recordings_incomplete() {
        let fx = Fixture::new();
        let (recorder, _) = Recorder::start(fx.config(), fx.store.clone()).unwrap();
        let mut handle = recorder.record(spec(RecordingLayout::Stereo)).unwrap();
        talk(&mut handle, 12_000);
        recorder.close().unwrap();
        let row = fx.row(handle.id());
        assert_eq!(row.state, RecordingState::Incomplete);
        assert_eq!(
            row.reason.as_deref(),
            Some("denwa stopped before the recording ended")
        );
        assert_eq!(row.duration_ms, 1_000, "the one block written");
        // The call side never notices.
        handle.push(Leg::A, 12_000, &[1; PACKET]);
        let summary = handle.stop(13_000, STARTED_AT_MS + 1_625);
        assert_eq!(summary.frames, 13_000);
        fx.store.close().unwrap();
    }

    #[test]
    fn a_recording_cut_by_a_crash_is_recovered_at_the_next_start() {
        let fx = Fixture::new();
        let (recorder, _) = Recorder::start(fx.config(), fx.store.clone()).unwrap();
        let mut handle = recorder.record(spec(RecordingLayout::Stereo)).unwrap();
        talk(&mut handle, 24_000);
        handle.tick(26_000);
        recorder.flush_blocking().unwrap();
        let id = handle.id().to_string();
        // The process dies: nothing is finalized, the writer never closes.
        std::mem::forget(handle);
        std::mem::forget(recorder);
        let row = fx.row(&id);
        assert_eq!(row.state, RecordingState::Recording);
        let path = files::resolve(fx.dir.path(), &row.path).unwrap();
        // A torn write: half a frame after the last block.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, &[1, 2]).unwrap();
        drop(file);

        let (recorder, report) = Recorder::start(fx.config(), fx.store.clone()).unwrap();
        assert_eq!(
            report,
            RecoveryReport {
                recovered: 1,
                failed: 0
            }
        );
        let row = fx.row(&id);
        assert_eq!(row.state, RecordingState::Recovered);
        assert_eq!(row.duration_ms, 3_000);
        assert_eq!(row.bytes, 44 + 24_000 * 4);
        assert_eq!(row.sha256, Some(files::sha256_file(&path).unwrap()));
        let (_, samples) = fx.read_wav(&row);
        let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
        assert_eq!(left, tone(440.0, 8_000.0, 0, 24_000));
        recorder.close().unwrap();
        fx.store.close().unwrap();
    }

    #[test]
    fn handles_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<RecordingHandle>();
        assert_send::<Recorder>();
    }
}
