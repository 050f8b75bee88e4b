//! The recording timeline: places each leg's decoded audio on the
//! recording's own sample clock and cuts it into blocks for the writer.
//!
//! Sans-IO: no clock, no file. Every operation takes a position, in frames
//! (one 8 kHz sample per leg) since the recording started, and hands the
//! blocks it completes to a sink. Positions must come from denwa's own
//! clock (arrival time, or RTP timestamps mapped onto it), never straight
//! from packet contents: a position moves the timeline forward.
//!
//! How audio is placed:
//! - A packet that starts within [`TimelineConfig::snap_frames`] of where
//!   the same leg's previous packet ended continues it exactly, so arrival
//!   jitter neither clicks nor leaves holes; further away it is placed where
//!   it is stamped, and the hole stays silent.
//! - Overlapping audio of one leg: the later packet wins.
//! - Frames stay open for [`TimelineConfig::window_frames`] behind the
//!   newest position seen, so reordered packets still land; audio older than
//!   that is dropped and counted as late.
//! - Paused spans come out as silence; the length never changes.
//! - [`Timeline::stop`] emits everything up to the stop position: the total
//!   length is exactly the frames elapsed between start and stop.
//!
//! Must not: allocate without bound (the open span is at most one block
//! plus the window plus one packet), or decide anything about files.

use super::{RecordingLayout, SAMPLE_RATE};
use crate::media::Leg;

/// Frames per block handed to the writer: one second.
pub const BLOCK_FRAMES: usize = SAMPLE_RATE as usize;
/// How far behind the newest position audio is still accepted: 200 ms.
pub const WINDOW_FRAMES: u64 = SAMPLE_RATE as u64 / 5;
/// Jitter absorbed when a leg's packets follow each other: 20 ms.
pub const SNAP_FRAMES: u64 = SAMPLE_RATE as u64 / 50;

/// Tuning of a [`Timeline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineConfig {
    pub layout: RecordingLayout,
    /// Frames per emitted block (the last one may be shorter).
    pub block_frames: usize,
    /// Reordering window behind the newest position.
    pub window_frames: u64,
    /// A packet starting less than this from its leg's previous end is moved
    /// to continue it; 0 places every packet as stamped.
    pub snap_frames: u64,
}

impl TimelineConfig {
    /// The defaults: one-second blocks, a 200 ms window, 20 ms snap.
    pub fn new(layout: RecordingLayout) -> TimelineConfig {
        TimelineConfig {
            layout,
            block_frames: BLOCK_FRAMES,
            window_frames: WINDOW_FRAMES,
            snap_frames: SNAP_FRAMES,
        }
    }
}

/// A run of finished audio: frames `start..start + frames()`, interleaved
/// left (A) then right (B) in stereo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub start: u64,
    pub samples: Vec<i16>,
}

impl Block {
    /// Frames in this block for `layout`.
    pub fn frames(&self, layout: RecordingLayout) -> u64 {
        let frames = self.samples.len() / usize::from(layout.channels());
        u64::try_from(frames).unwrap_or(u64::MAX)
    }
}

/// What the timeline dropped or adjusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimelineStats {
    /// Packets with at least one frame older than the window.
    pub late_packets: u64,
    /// Frames dropped for being older than the window.
    pub late_frames: u64,
    /// Packets moved to continue their leg's previous one.
    pub snapped_packets: u64,
}

/// A paused span; `end` is `None` while still paused.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    end: Option<u64>,
}

/// Places audio of both legs and emits finished blocks. See the module doc.
#[derive(Debug)]
pub struct Timeline {
    config: TimelineConfig,
    /// Frames emitted so far: the first open frame.
    emitted: u64,
    /// The newest position seen.
    horizon: u64,
    /// Open audio per leg, from `emitted` on (shorter means silence).
    open: [Vec<i16>; 2],
    /// Where each leg's last packet ended.
    next: [Option<u64>; 2],
    paused: Vec<Span>,
    stopped: bool,
    stats: TimelineStats,
}

fn leg_index(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

impl Timeline {
    pub fn new(config: TimelineConfig) -> Timeline {
        Timeline {
            config: TimelineConfig {
                block_frames: config.block_frames.max(1),
                ..config
            },
            emitted: 0,
            horizon: 0,
            open: [Vec::new(), Vec::new()],
            next: [None, None],
            paused: Vec::new(),
            stopped: false,
            stats: TimelineStats::default(),
        }
    }

    pub fn layout(&self) -> RecordingLayout {
        self.config.layout
    }

    pub fn stats(&self) -> TimelineStats {
        self.stats
    }

    /// Frames emitted so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// The newest position seen.
    pub fn horizon(&self) -> u64 {
        self.horizon
    }

    pub fn is_paused(&self) -> bool {
        self.paused.last().is_some_and(|span| span.end.is_none())
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Place `samples` of `leg` starting at frame `position`.
    pub fn push(&mut self, leg: Leg, position: u64, samples: &[i16], sink: &mut impl FnMut(Block)) {
        if self.stopped || samples.is_empty() {
            return;
        }
        let index = leg_index(leg);
        let position = self.snap(index, position);
        let len = u64::try_from(samples.len()).unwrap_or(u64::MAX);
        let end = position.saturating_add(len);
        self.next[index] = Some(end);
        // Emit what the packet's start already closes, so the open span
        // stays short even after a long silence; then place; then move on.
        self.advance(position, sink);
        self.place(index, position, samples);
        self.advance(end, sink);
    }

    /// Move the clock to `position`, emitting the blocks it completes.
    /// Call it now and then when no audio flows (hold without media).
    pub fn tick(&mut self, position: u64, sink: &mut impl FnMut(Block)) {
        if !self.stopped {
            self.advance(position, sink);
        }
    }

    /// From `position` on, record silence. Pausing twice is harmless.
    pub fn pause(&mut self, position: u64, sink: &mut impl FnMut(Block)) {
        if self.stopped || self.is_paused() {
            return;
        }
        self.advance(position, sink);
        self.paused.push(Span {
            start: position.max(self.emitted),
            end: None,
        });
    }

    /// From `position` on, record audio again. Harmless when not paused.
    pub fn resume(&mut self, position: u64, sink: &mut impl FnMut(Block)) {
        if self.stopped {
            return;
        }
        self.advance(position, sink);
        if let Some(span) = self.paused.last_mut() {
            if span.end.is_none() {
                span.end = Some(position.max(span.start));
            }
        }
    }

    /// End the recording at `position`: emit every frame up to it and return
    /// the total length in frames (never less than what was already
    /// emitted). Audio stamped after `position` is cut. Later calls do
    /// nothing and return the same length.
    pub fn stop(&mut self, position: u64, sink: &mut impl FnMut(Block)) -> u64 {
        if self.stopped {
            return self.emitted;
        }
        self.stopped = true;
        let total = position.max(self.emitted);
        self.horizon = self.horizon.max(total);
        while self.emitted < total {
            let left = total.saturating_sub(self.emitted);
            let frames = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.config.block_frames);
            self.emit(frames, sink);
        }
        self.open = [Vec::new(), Vec::new()];
        self.paused.clear();
        total
    }

    /// Snap a packet onto its leg's previous end when close enough.
    fn snap(&mut self, index: usize, position: u64) -> u64 {
        match self.next[index] {
            Some(expected)
                if expected != position
                    && position.abs_diff(expected) < self.config.snap_frames =>
            {
                self.stats.snapped_packets = self.stats.snapped_packets.saturating_add(1);
                expected
            }
            _ => position,
        }
    }

    fn place(&mut self, index: usize, position: u64, samples: &[i16]) {
        let len = u64::try_from(samples.len()).unwrap_or(u64::MAX);
        let late = self.emitted.saturating_sub(position).min(len);
        if late > 0 {
            self.stats.late_packets = self.stats.late_packets.saturating_add(1);
            self.stats.late_frames = self.stats.late_frames.saturating_add(late);
        }
        let (Ok(skip), Ok(offset)) = (
            usize::try_from(late),
            usize::try_from(position.saturating_sub(self.emitted)),
        ) else {
            return;
        };
        let Some(kept) = samples.get(skip..) else {
            return;
        };
        if kept.is_empty() {
            return;
        }
        let open = &mut self.open[index];
        if open.len() < offset {
            open.resize(offset, 0);
        }
        // Overwrite what the packet shares with open audio, append the rest.
        let shared = open.len().saturating_sub(offset).min(kept.len());
        let (over, after) = kept.split_at(shared);
        if let Some(slot) = open.get_mut(offset..offset.saturating_add(shared)) {
            slot.copy_from_slice(over);
        }
        open.extend_from_slice(after);
    }

    fn advance(&mut self, position: u64, sink: &mut impl FnMut(Block)) {
        self.horizon = self.horizon.max(position);
        let closed = self.horizon.saturating_sub(self.config.window_frames);
        let block = u64::try_from(self.config.block_frames).unwrap_or(u64::MAX);
        while self.emitted.saturating_add(block) <= closed {
            self.emit(self.config.block_frames, sink);
        }
    }

    /// Emit the next `frames` frames and forget them.
    fn emit(&mut self, frames: usize, sink: &mut impl FnMut(Block)) {
        let start = self.emitted;
        let layout = self.config.layout;
        let mut samples = combine(layout, &self.open[0], &self.open[1], frames);
        let end = start.saturating_add(u64::try_from(frames).unwrap_or(u64::MAX));
        let channels = usize::from(layout.channels());
        for span in &self.paused {
            let from = span.start.max(start);
            let to = span.end.unwrap_or(u64::MAX).min(end);
            if from < to {
                let (Ok(from), Ok(to)) = (
                    usize::try_from(from.saturating_sub(start)),
                    usize::try_from(to.saturating_sub(start)),
                ) else {
                    continue;
                };
                // Both legs silent: silent frames in either layout.
                silence(
                    &mut samples,
                    from.saturating_mul(channels),
                    to.saturating_mul(channels),
                );
            }
        }
        for open in &mut self.open {
            open.drain(..frames.min(open.len()));
        }
        self.emitted = end;
        self.paused
            .retain(|span| span.end.is_none_or(|span_end| span_end > end));
        sink(Block { start, samples });
    }
}

fn silence(samples: &mut [i16], from: usize, to: usize) {
    if let Some(span) = samples.get_mut(from..to) {
        span.fill(0);
    }
}

/// The first `frames` frames of the open audio, interleaved (stereo: A
/// left, B right) or mixed with saturation (mono); a leg's audio that
/// ends early is followed by silence.
fn combine(layout: RecordingLayout, a: &[i16], b: &[i16], frames: usize) -> Vec<i16> {
    let a = a.get(..frames.min(a.len())).unwrap_or_default();
    let b = b.get(..frames.min(b.len())).unwrap_or_default();
    let both = a.len().min(b.len());
    let mut out = Vec::with_capacity(frames.saturating_mul(usize::from(layout.channels())));
    let (a_both, a_rest) = a.split_at(both);
    let (b_both, b_rest) = b.split_at(both);
    match layout {
        RecordingLayout::Stereo => {
            out.extend(a_both.iter().zip(b_both).flat_map(|(&l, &r)| [l, r]));
            out.extend(a_rest.iter().flat_map(|&l| [l, 0]));
            out.extend(b_rest.iter().flat_map(|&r| [0, r]));
        }
        RecordingLayout::Mono => {
            out.extend(
                a_both
                    .iter()
                    .zip(b_both)
                    .map(|(&l, &r)| l.saturating_add(r)),
            );
            out.extend_from_slice(a_rest);
            out.extend_from_slice(b_rest);
        }
    }
    out.resize(frames.saturating_mul(usize::from(layout.channels())), 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of 20 ms at 8 kHz.
    const PACKET: usize = 160;

    fn small(layout: RecordingLayout) -> TimelineConfig {
        TimelineConfig {
            layout,
            block_frames: 1_000,
            window_frames: 200,
            snap_frames: 20,
        }
    }

    fn stereo() -> Timeline {
        Timeline::new(small(RecordingLayout::Stereo))
    }

    fn push(t: &mut Timeline, leg: Leg, pos: u64, samples: &[i16], out: &mut Vec<Block>) {
        t.push(leg, pos, samples, &mut |b| out.push(b));
    }

    fn stop(t: &mut Timeline, pos: u64, out: &mut Vec<Block>) -> u64 {
        t.stop(pos, &mut |b| out.push(b))
    }

    /// Channel `ch` of stereo blocks, concatenated; checks contiguity.
    fn channel(blocks: &[Block], ch: usize) -> Vec<i16> {
        let mut next = 0;
        let mut out = Vec::new();
        for block in blocks {
            assert_eq!(block.start, next, "blocks are contiguous");
            next += block.frames(RecordingLayout::Stereo);
            out.extend(block.samples.iter().skip(ch).step_by(2));
        }
        out
    }

    fn ramp(from: i16, len: usize) -> Vec<i16> {
        (0..len).map(|i| from + i as i16).collect()
    }

    #[test]
    fn contiguous_packets_fill_both_channels_in_order() {
        let mut t = stereo();
        let mut out = Vec::new();
        for k in 0..20u64 {
            let pos = k * PACKET as u64;
            push(&mut t, Leg::A, pos, &[100; PACKET], &mut out);
            push(&mut t, Leg::B, pos, &[-200; PACKET], &mut out);
        }
        assert_eq!(out.len(), 3, "3200 frames seen, the last 200 held back");
        assert_eq!(stop(&mut t, 3_200, &mut out), 3_200);
        let left = channel(&out, 0);
        let right = channel(&out, 1);
        assert_eq!(left, vec![100; 3_200]);
        assert_eq!(right, vec![-200; 3_200]);
        assert!(out
            .iter()
            .all(|b| b.frames(RecordingLayout::Stereo) <= 1_000));
        assert_eq!(t.stats(), TimelineStats::default());
    }

    #[test]
    fn a_gap_is_silence_and_keeps_later_audio_in_place() {
        let mut t = stereo();
        let mut out = Vec::new();
        push(&mut t, Leg::A, 0, &[7; PACKET], &mut out);
        push(&mut t, Leg::A, 800, &[9; PACKET], &mut out);
        stop(&mut t, 1_200, &mut out);
        let left = channel(&out, 0);
        assert_eq!(left.len(), 1_200);
        assert!(left[..160].iter().all(|&s| s == 7));
        assert!(left[160..800].iter().all(|&s| s == 0));
        assert!(left[800..960].iter().all(|&s| s == 9));
        assert!(left[960..].iter().all(|&s| s == 0));
    }

    #[test]
    fn jitter_within_the_snap_continues_the_leg() {
        let mut t = stereo();
        let mut out = Vec::new();
        push(&mut t, Leg::A, 0, &ramp(0, PACKET), &mut out);
        // Arrives 15 frames late, then one 10 frames early: both continue.
        push(&mut t, Leg::A, 175, &ramp(160, PACKET), &mut out);
        push(&mut t, Leg::A, 310, &ramp(320, PACKET), &mut out);
        stop(&mut t, 480, &mut out);
        assert_eq!(channel(&out, 0), ramp(0, 480));
        assert_eq!(t.stats().snapped_packets, 2);
    }

    #[test]
    fn overlapping_audio_of_one_leg_is_overwritten_by_the_later_packet() {
        let mut config = small(RecordingLayout::Stereo);
        config.snap_frames = 0;
        let mut t = Timeline::new(config);
        let mut out = Vec::new();
        push(&mut t, Leg::A, 0, &[1; PACKET], &mut out);
        push(&mut t, Leg::A, 100, &[2; PACKET], &mut out);
        stop(&mut t, 300, &mut out);
        let left = channel(&out, 0);
        assert!(left[..100].iter().all(|&s| s == 1));
        assert!(left[100..260].iter().all(|&s| s == 2));
        assert!(left[260..].iter().all(|&s| s == 0));
        assert_eq!(t.stats().late_packets, 0);
    }

    #[test]
    fn reordered_packets_within_the_window_land_in_place() {
        let mut t = stereo();
        let mut out = Vec::new();
        // Packet 2 before packet 1, 150 frames apart: inside the window.
        push(&mut t, Leg::B, 960, &[2; PACKET], &mut out);
        push(&mut t, Leg::B, 800, &[1; PACKET], &mut out);
        assert!(out.is_empty(), "frame 800 is still open");
        stop(&mut t, 1_120, &mut out);
        let right = channel(&out, 1);
        assert!(right[800..960].iter().all(|&s| s == 1));
        assert!(right[960..1_120].iter().all(|&s| s == 2));
        assert_eq!(t.stats().late_packets, 0);
    }

    #[test]
    fn packets_older_than_the_window_are_dropped_and_counted() {
        let mut t = stereo();
        let mut out = Vec::new();
        t.tick(1_300, &mut |b| out.push(b));
        assert_eq!(t.emitted(), 1_000);
        // Wholly before frame 1000: dropped.
        push(&mut t, Leg::A, 500, &[5; PACKET], &mut out);
        // Straddling frame 1000: the first 60 frames are dropped.
        push(&mut t, Leg::A, 940, &[6; PACKET], &mut out);
        stop(&mut t, 1_300, &mut out);
        let left = channel(&out, 0);
        assert!(left[..1_000].iter().all(|&s| s == 0));
        assert!(left[1_000..1_100].iter().all(|&s| s == 6));
        assert!(left[1_100..].iter().all(|&s| s == 0));
        let stats = t.stats();
        assert_eq!((stats.late_packets, stats.late_frames), (2, 160 + 60));
    }

    #[test]
    fn a_silent_leg_is_a_silent_channel() {
        let mut t = stereo();
        let mut out = Vec::new();
        for k in 0..10u64 {
            push(&mut t, Leg::A, k * 160, &[300; PACKET], &mut out);
        }
        stop(&mut t, 1_600, &mut out);
        assert_eq!(channel(&out, 0), vec![300; 1_600]);
        assert_eq!(channel(&out, 1), vec![0; 1_600]);
    }

    #[test]
    fn pause_records_silence_for_the_span_and_keeps_the_length() {
        let mut t = stereo();
        let mut out = Vec::new();
        let feed = |t: &mut Timeline, from: u64, to: u64, out: &mut Vec<Block>| {
            let mut pos = from;
            while pos < to {
                push(t, Leg::A, pos, &[11; PACKET], out);
                push(t, Leg::B, pos, &[22; PACKET], out);
                pos += PACKET as u64;
            }
        };
        feed(&mut t, 0, 800, &mut out);
        t.pause(800, &mut |b| out.push(b));
        assert!(t.is_paused());
        feed(&mut t, 800, 2_400, &mut out);
        t.resume(2_400, &mut |b| out.push(b));
        assert!(!t.is_paused());
        feed(&mut t, 2_400, 3_200, &mut out);
        assert_eq!(stop(&mut t, 3_200, &mut out), 3_200);
        for (ch, value) in [(0, 11), (1, 22)] {
            let samples = channel(&out, ch);
            assert_eq!(samples.len(), 3_200);
            assert!(samples[..800].iter().all(|&s| s == value));
            assert!(samples[800..2_400].iter().all(|&s| s == 0));
            assert!(samples[2_400..].iter().all(|&s| s == value));
        }
    }

    #[test]
    fn stopping_while_paused_keeps_the_tail_silent() {
        let mut t = stereo();
        let mut out = Vec::new();
        push(&mut t, Leg::A, 0, &[3; PACKET], &mut out);
        t.pause(100, &mut |b| out.push(b));
        t.pause(120, &mut |b| out.push(b));
        push(&mut t, Leg::A, 160, &[3; PACKET], &mut out);
        assert_eq!(stop(&mut t, 400, &mut out), 400);
        let left = channel(&out, 0);
        assert!(left[..100].iter().all(|&s| s == 3));
        assert!(left[100..].iter().all(|&s| s == 0));
    }

    #[test]
    fn mono_mixes_both_legs_with_saturation() {
        let mut t = Timeline::new(small(RecordingLayout::Mono));
        let mut out = Vec::new();
        push(&mut t, Leg::A, 0, &[30_000, -30_000, 1_000, 5], &mut out);
        push(&mut t, Leg::B, 0, &[30_000, -30_000, -3_000, 0], &mut out);
        assert_eq!(stop(&mut t, 6, &mut out), 6);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].samples, [i16::MAX, i16::MIN, -2_000, 5, 0, 0]);
        assert_eq!(out[0].frames(RecordingLayout::Mono), 6);
    }

    #[test]
    fn the_length_is_exactly_the_elapsed_frames() {
        for stop_at in [0u64, 1, 999, 1_000, 1_001, 12_345] {
            let mut t = stereo();
            let mut out = Vec::new();
            let mut pos = 0;
            while pos < stop_at {
                push(&mut t, Leg::A, pos, &[1; PACKET], &mut out);
                pos += PACKET as u64;
            }
            assert_eq!(stop(&mut t, stop_at, &mut out), stop_at);
            let frames: u64 = out.iter().map(|b| b.frames(RecordingLayout::Stereo)).sum();
            assert_eq!(frames, stop_at, "stop at {stop_at}");
            // The last packet may run past the stop: it is cut there.
            assert_eq!(channel(&out, 0), vec![1; stop_at as usize]);
        }
    }

    #[test]
    fn a_stop_behind_emitted_audio_keeps_what_was_written() {
        let mut t = stereo();
        let mut out = Vec::new();
        t.tick(1_500, &mut |b| out.push(b));
        assert_eq!(t.emitted(), 1_000);
        assert_eq!(stop(&mut t, 900, &mut out), 1_000);
        assert_eq!(channel(&out, 0).len(), 1_000);
    }

    #[test]
    fn stop_is_final() {
        let mut t = stereo();
        let mut out = Vec::new();
        assert_eq!(stop(&mut t, 1_500, &mut out), 1_500);
        let before = out.len();
        push(&mut t, Leg::A, 1_500, &[1; PACKET], &mut out);
        t.tick(9_000, &mut |b| out.push(b));
        t.pause(9_000, &mut |b| out.push(b));
        assert_eq!(stop(&mut t, 20_000, &mut out), 1_500);
        assert_eq!(out.len(), before);
        assert!(t.is_stopped());
    }

    #[test]
    fn a_long_silence_emits_blocks_without_holding_them() {
        let mut t = stereo();
        let mut out = Vec::new();
        push(&mut t, Leg::A, 0, &[1; PACKET], &mut out);
        push(&mut t, Leg::B, 100_000, &[2; PACKET], &mut out);
        assert_eq!(t.emitted(), 99_000);
        assert!(t.open.iter().all(|open| open.len() <= 1_000 + 200 + PACKET));
        assert!(out.iter().all(|b| b.samples.len() == 2_000));
        stop(&mut t, 100_160, &mut out);
        let right = channel(&out, 1);
        assert_eq!(right.len(), 100_160);
        assert!(right[100_000..].iter().all(|&s| s == 2));
        assert!(right[..100_000].iter().all(|&s| s == 0));
        assert!(channel(&out, 0)[..160].iter().all(|&s| s == 1));
    }

    #[test]
    fn defaults_are_one_second_blocks_and_a_short_window() {
        let config = TimelineConfig::new(RecordingLayout::Stereo);
        assert_eq!(config.block_frames, 8_000);
        assert_eq!(config.window_frames, 1_600);
        assert_eq!(config.snap_frames, 160);
    }
}
