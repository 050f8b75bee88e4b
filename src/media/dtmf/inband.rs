//! DTMF detection in audio (Q.23 frequencies, Q.24-style acceptance).
//!
//! Owns: turning decoded G.711 samples into one [`DigitEvent`] per key
//! press, with its start and duration, while staying silent on speech,
//! music, noise and call-progress tones.
//!
//! Must not: decode RTP or read the clock. The caller passes samples and
//! the time of the first of them.
//!
//! # How
//!
//! The detector looks at 32 ms windows (256 samples, Hann-weighted) every
//! 5 ms (40 samples). For each window it measures the eight DTMF
//! frequencies with Goertzel's algorithm and calls the window a *hit* for
//! a key when all of these hold:
//!
//! - the strongest row and the strongest column tone are each at least
//!   [`MIN_LEVEL_DBM0`];
//! - twist: the column tone is at most [`NORMAL_TWIST_DB`] above the row
//!   tone and at most [`REVERSE_TWIST_DB`] below it;
//! - both are at least [`DOMINANCE_DB`] above each of the other six;
//! - together they carry at least [`TONE_SHARE`] of the window's energy;
//! - their second harmonics are at least [`HARMONIC_DB`] below them
//!   (voiced speech has harmonics, a key does not);
//! - their frequencies, measured from how far their phase turned since the
//!   previous window, are within [`FREQUENCY_TOLERANCE`] of nominal.
//!
//! Timing does not depend on the window length: once a key is found, its
//! *coverage* in each window is the row and column amplitudes relative to
//! their largest values during the press (1 when the tone fills the
//! window, 0.5 when it fills exactly half of it). The press starts and ends
//! where coverage crosses one half, interpolated between windows. Coverage
//! staying below [`GAP_COVERAGE`] for [`GAP_WINDOWS`] windows ends the
//! press, so interruptions of up to about 15 ms are bridged while a pause
//! of 20 ms or more separates two presses of the same key. A press is
//! reported once, when it ends, if it had at least [`MIN_HITS`] consecutive
//! hits and lasted [`MIN_DURATION_MS`].

use std::collections::VecDeque;
use std::f64::consts::{PI, TAU};

use super::{DigitEvent, DigitSource};
use crate::media::goertzel::{Goertzel, SAMPLE_RATE_HZ};
use crate::media::tones::{DBM0_PEAK, DTMF_COLUMN_HZ, DTMF_KEYPAD, DTMF_ROW_HZ};

/// Analysis window (32 ms).
const WINDOW: usize = 256;
/// Step between windows (5 ms).
const HOP: usize = 40;
/// Samples per millisecond.
const SAMPLES_PER_MS: i64 = 8;

/// Each of the two tones must be at least this loud.
pub const MIN_LEVEL_DBM0: f64 = -36.0;
/// Largest excess of the column (high) tone over the row (low) tone.
pub const NORMAL_TWIST_DB: f64 = 8.0;
/// Largest excess of the row (low) tone over the column (high) tone.
pub const REVERSE_TWIST_DB: f64 = 4.0;
/// Each tone's lead over every other DTMF frequency.
pub const DOMINANCE_DB: f64 = 10.0;
/// Share of the window's energy the two tones must carry.
pub const TONE_SHARE: f64 = 0.8;
/// Each tone's lead over its own second harmonic.
pub const HARMONIC_DB: f64 = 15.0;
/// Largest relative frequency deviation accepted (keys within ±1.5 % of
/// nominal must be accepted, keys off by ±3.5 % rejected).
pub const FREQUENCY_TOLERANCE: f64 = 0.025;
/// Consecutive hit windows a press needs.
pub const MIN_HITS: u32 = 3;
/// Shortest press reported: 40 ms, less 5 ms for the measuring error and
/// for the rise and fall of the tone's edges (a 40 ms key measures 37 to
/// 39 ms, a 30 ms one at most 30).
pub const MIN_DURATION_MS: i64 = 35;
/// Coverage below which the key may have been released ...
pub const GAP_COVERAGE: f64 = 0.3;
/// ... for this many consecutive windows (15 ms) to end the press.
pub const GAP_WINDOWS: u32 = 3;

/// Coverage that marks a press's edges.
const EDGE_COVERAGE: f64 = 0.5;
/// Windows kept from before a press to find where it started.
const HISTORY: usize = 10;
/// Windows kept from a press's beginning (enough to cover its rise).
const EARLY_WINDOWS: usize = 24;

/// One analysed window: where it is and what it holds.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Sample index of the window's centre.
    centre: i64,
    /// Estimated amplitude of each DTMF frequency (rows, then columns).
    amplitude: [f64; 8],
}

/// A key being pressed.
#[derive(Debug, Clone)]
struct Press {
    row: usize,
    column: usize,
    consecutive: u32,
    best_run: u32,
    /// Largest row and column amplitudes seen in hit windows.
    reference: [f64; 2],
    /// Windows from shortly before the press to a little into it.
    early: Vec<Window>,
    /// Where coverage last fell below one half, while it stays below.
    falling_edge: Option<f64>,
    /// Consecutive windows with coverage below [`GAP_COVERAGE`].
    quiet_windows: u32,
    last: (i64, f64),
}

impl Press {
    fn coverage(&self, w: &Window) -> f64 {
        let row = w.amplitude[self.row] / self.reference[0].max(f64::MIN_POSITIVE);
        let column = w.amplitude[4 + self.column] / self.reference[1].max(f64::MIN_POSITIVE);
        ((row + column) / 2.0).min(1.0)
    }

    /// Follows the press's edges through one more window; true once the
    /// key has been released.
    fn follow(&mut self, window: &Window) -> bool {
        if self.early.len() < EARLY_WINDOWS {
            self.early.push(*window);
        }
        let c = self.coverage(window);
        if c >= EDGE_COVERAGE {
            self.falling_edge = None;
        } else if self.falling_edge.is_none() {
            self.falling_edge = Some(crossing(self.last, (window.centre, c)));
        }
        self.quiet_windows = if c < GAP_COVERAGE {
            self.quiet_windows + 1
        } else {
            0
        };
        self.last = (window.centre, c);
        self.quiet_windows >= GAP_WINDOWS
    }

    /// Where coverage first rose through one half, on the early windows.
    fn rising_edge(&self) -> f64 {
        let mut previous: Option<(i64, f64)> = None;
        for w in &self.early {
            let c = self.coverage(w);
            if c >= EDGE_COVERAGE {
                return match previous {
                    Some(p) if p.1 < EDGE_COVERAGE => crossing(p, (w.centre, c)),
                    _ => w.centre as f64,
                };
            }
            previous = Some((w.centre, c));
        }
        self.early.first().map_or(0.0, |w| w.centre as f64)
    }
}

/// Where the line through two (position, coverage) points crosses one half.
fn crossing(a: (i64, f64), b: (i64, f64)) -> f64 {
    let span = b.1 - a.1;
    if span.abs() < 1e-9 {
        return b.0 as f64;
    }
    a.0 as f64 + (b.0 - a.0) as f64 * (EDGE_COVERAGE - a.1) / span
}

/// Finds key presses in 8000 Hz 16-bit mono audio.
#[derive(Debug, Clone)]
pub struct InbandDetector {
    /// The last [`WINDOW`] samples, oldest first at `head`.
    ring: Vec<f64>,
    head: usize,
    since_window: usize,
    /// Index of the next sample to arrive.
    next_sample: i64,
    /// The time of sample `clock.1` was `clock.0` ms.
    clock: (u64, i64),
    hann: Vec<f64>,
    /// The eight DTMF frequencies, rows then columns.
    nominal: [f64; 8],
    bins: [Goertzel; 8],
    previous_dft: Option<[(f64, f64); 8]>,
    history: VecDeque<Window>,
    press: Option<Press>,
}

impl Default for InbandDetector {
    fn default() -> Self {
        InbandDetector::new()
    }
}

impl InbandDetector {
    /// A detector that has heard silence so far.
    pub fn new() -> InbandDetector {
        let nominal: [f64; 8] = std::array::from_fn(|i| {
            if i < 4 {
                DTMF_ROW_HZ[i]
            } else {
                DTMF_COLUMN_HZ[i - 4]
            }
        });
        InbandDetector {
            ring: vec![0.0; WINDOW],
            head: 0,
            since_window: 0,
            next_sample: 0,
            clock: (0, 0),
            hann: (0..WINDOW)
                .map(|n| 0.5 - 0.5 * (TAU * n as f64 / WINDOW as f64).cos())
                .collect(),
            nominal,
            bins: nominal.map(Goertzel::at),
            previous_dft: None,
            history: VecDeque::with_capacity(HISTORY),
            press: None,
        }
    }

    /// Feeds samples whose first one was heard at `now_ms`; returns the
    /// presses that ended in them.
    pub fn push(&mut self, samples: &[i16], now_ms: u64) -> Vec<DigitEvent> {
        self.clock = (now_ms, self.next_sample);
        let mut events = Vec::new();
        for &sample in samples {
            self.ring[self.head] = f64::from(sample);
            self.head = (self.head + 1) % WINDOW;
            self.next_sample += 1;
            self.since_window += 1;
            if self.since_window == HOP {
                self.since_window = 0;
                events.extend(self.analyse());
            }
        }
        events
    }

    /// Whether a key seems to be held now: a window held one and the
    /// press has not ended yet. The relay mutes such audio towards a phone
    /// that gets the key as an RFC 4733 event instead.
    pub fn pressing(&self) -> bool {
        self.press.is_some()
    }

    /// Ends a press still in progress (the call is over); returns it if it
    /// qualifies.
    pub fn flush(&mut self) -> Option<DigitEvent> {
        let end = (self.next_sample - WINDOW as i64 / 2) as f64;
        let press = self.press.take()?;
        self.report(&press, press.falling_edge.unwrap_or(end))
    }

    fn analyse(&mut self) -> Option<DigitEvent> {
        let frame: Vec<f64> = (0..WINDOW)
            .map(|n| self.ring[(self.head + n) % WINDOW] * self.hann[n])
            .collect();
        let dft: [(f64, f64); 8] = std::array::from_fn(|i| self.bins[i].dft(frame.iter().copied()));
        // A sine of amplitude A gives |X| = A N / 4 through the window.
        let amplitude = dft.map(|(re, im)| 4.0 * re.hypot(im) / WINDOW as f64);
        let window = Window {
            centre: self.next_sample - WINDOW as i64 / 2,
            amplitude,
        };
        // Energy through the window: Σ w x² / Σ w, where Σ w = N / 2.
        let energy = (0..WINDOW)
            .map(|n| self.ring[(self.head + n) % WINDOW].powi(2) * self.hann[n])
            .sum::<f64>()
            / (WINDOW as f64 / 2.0);
        let hit = self.classify(&frame, energy, &dft, &amplitude);
        self.previous_dft = Some(dft);
        let event = self.track(window, hit);
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(window);
        event
    }

    /// The (row, column) of the key this window holds, if it is a hit.
    fn classify(
        &self,
        frame: &[f64],
        energy: f64,
        dft: &[(f64, f64); 8],
        amplitude: &[f64; 8],
    ) -> Option<(usize, usize)> {
        let row = strongest(&amplitude[..4]);
        let column = 4 + strongest(&amplitude[4..]);
        // Frequencies first: their deviation from the bins' centres tells
        // how much of each tone's amplitude the window's response lost.
        let previous = self.previous_dft.as_ref()?;
        let mut tones = [(0.0, 0.0); 2];
        for (tone, i) in tones.iter_mut().zip([row, column]) {
            let deviation = frequency_offset(previous[i], dft[i], self.nominal[i]);
            if deviation.abs() > FREQUENCY_TOLERANCE * self.nominal[i] {
                return None;
            }
            let gain = hann_gain(deviation).max(0.25);
            *tone = (self.nominal[i] + deviation, amplitude[i] / gain);
        }
        let others = (0..8).filter(|&i| i != row && i != column);
        let loudest_other = others.map(|i| amplitude[i]).fold(0.0, f64::max);
        let fits = levels_fit([tones[0].1, tones[1].1], loudest_other, energy)
            && harmonics_below(frame, tones);
        fits.then_some((row, column - 4))
    }

    /// Follows the press through windows; returns it when it ends.
    fn track(&mut self, window: Window, hit: Option<(usize, usize)>) -> Option<DigitEvent> {
        let Some(mut press) = self.press.take() else {
            if let Some((row, column)) = hit {
                self.press = Some(self.begin(row, column, window));
            }
            return None;
        };
        if let Some((row, column)) = hit {
            if (row, column) != (press.row, press.column) {
                // Another key without a pause: the first one is over.
                let end = press.falling_edge.unwrap_or(window.centre as f64);
                self.press = Some(self.begin(row, column, window));
                return self.report(&press, end);
            }
            press.consecutive += 1;
            press.best_run = press.best_run.max(press.consecutive);
            press.reference[0] = press.reference[0].max(window.amplitude[row]);
            press.reference[1] = press.reference[1].max(window.amplitude[4 + column]);
        } else {
            press.consecutive = 0;
        }
        if press.follow(&window) {
            let end = press.falling_edge.unwrap_or(window.centre as f64);
            return self.report(&press, end);
        }
        self.press = Some(press);
        None
    }

    fn begin(&self, row: usize, column: usize, window: Window) -> Press {
        let mut early: Vec<Window> = self.history.iter().copied().collect();
        early.push(window);
        Press {
            row,
            column,
            consecutive: 1,
            best_run: 1,
            reference: [window.amplitude[row], window.amplitude[4 + column]],
            early,
            falling_edge: None,
            quiet_windows: 0,
            last: (window.centre, 1.0),
        }
    }

    fn report(&self, press: &Press, end: f64) -> Option<DigitEvent> {
        let start = press.rising_edge();
        let samples = (end - start).round() as i64;
        let duration_ms = samples / SAMPLES_PER_MS;
        if press.best_run < MIN_HITS || duration_ms < MIN_DURATION_MS {
            return None;
        }
        let (clock_ms, clock_sample) = self.clock;
        let offset_ms = (start.round() as i64 - clock_sample).div_euclid(SAMPLES_PER_MS);
        Some(DigitEvent {
            digit: DTMF_KEYPAD[press.row][press.column],
            start: clock_ms.saturating_add_signed(offset_ms),
            duration_ms: u32::try_from(duration_ms).unwrap_or(u32::MAX),
            source: DigitSource::Inband,
        })
    }
}

/// Level, twist, dominance and energy share of the (row, column) tone
/// amplitudes, given the loudest other DTMF frequency and the window's
/// energy (mean square).
fn levels_fit([row, column]: [f64; 2], loudest_other: f64, energy: f64) -> bool {
    let (l_row, l_column) = (dbm0(row), dbm0(column));
    let twist = l_column - l_row;
    l_row.min(l_column) >= MIN_LEVEL_DBM0
        && twist <= NORMAL_TWIST_DB
        && -twist <= REVERSE_TWIST_DB
        && l_row.min(l_column) - dbm0(loudest_other) >= DOMINANCE_DB
        && (row * row + column * column) / 2.0 >= TONE_SHARE * energy
}

/// Each tone's second harmonic (measured at twice its measured frequency)
/// at least [`HARMONIC_DB`] below it. The other tone may lie close to that
/// harmonic (2 × 697 Hz is 58 Hz from 1336 Hz): the part of it the window
/// lets through is taken off the measurement first.
fn harmonics_below(frame: &[f64], tones: [(f64, f64); 2]) -> bool {
    (0..2).all(|k| {
        let (hz, amplitude) = tones[k];
        let (other_hz, other_amplitude) = tones[1 - k];
        let power = Goertzel::at(2.0 * hz).power(frame.iter().copied());
        let measured = 4.0 * power.sqrt() / WINDOW as f64;
        let leak = other_amplitude * hann_gain(2.0 * hz - other_hz);
        dbm0(amplitude) - dbm0((measured - leak).max(0.0)) >= HARMONIC_DB
    })
}

/// Level in dBm0 of a sine of amplitude `a`.
fn dbm0(a: f64) -> f64 {
    20.0 * (a.max(1e-9) / DBM0_PEAK).log10()
}

/// The Hann window's amplitude response to a sine `offset_hz` from a
/// bin's centre, relative to a centred one.
fn hann_gain(offset_hz: f64) -> f64 {
    let bins = offset_hz * WINDOW as f64 / SAMPLE_RATE_HZ;
    let x = PI * bins;
    let sinc = if x.abs() < 1e-9 { 1.0 } else { x.sin() / x };
    let denominator = 1.0 - bins * bins;
    if denominator.abs() < 1e-6 {
        0.5
    } else {
        (sinc / denominator).abs()
    }
}

/// Index of the largest value.
fn strongest(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Frequency minus `nominal`, from the phase turned at `nominal`'s bin
/// between two windows [`HOP`] samples apart (unambiguous within ±100 Hz).
fn frequency_offset(before: (f64, f64), after: (f64, f64), nominal: f64) -> f64 {
    // after · conj(before)
    let re = after.0 * before.0 + after.1 * before.1;
    let im = after.1 * before.0 - after.0 * before.1;
    let turned = im.atan2(re);
    let expected = TAU * nominal * HOP as f64 / SAMPLE_RATE_HZ;
    let extra = (turned - expected + PI).rem_euclid(TAU) - PI;
    extra * SAMPLE_RATE_HZ / (TAU * HOP as f64)
}

#[cfg(test)]
#[path = "inband_tests.rs"]
mod tests;
