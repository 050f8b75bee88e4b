//! Call-progress and DTMF tone generation.
//!
//! Owns: the description of a tone ([`ToneSpec`]: segments of one or two
//! sines, or an amplitude-modulated carrier, each with its level in dBm0 and
//! its on/off cadence), the phase-continuous [`ToneGenerator`], the country
//! profiles ([`ToneProfile`]) and the DTMF keypad frequencies.
//!
//! Must not: know about time or packets. The generator produces samples on
//! demand; the caller paces it (160 samples per 20 ms frame).
//!
//! # Level
//!
//! 0 dBm0 is a sine whose peak is 3.14 dB below 16-bit full scale: A-law's
//! theoretical load capacity is +3.14 dBm0 (G.711), and denwa's A-law
//! decoder puts that overload point at 32768. A dual tone's level is given
//! per component, as tone plans state them ("440 + 480 Hz at -19 dBm0
//! each"); a modulated carrier's level is its mean power.
//!
//! # Edges
//!
//! A burst that starts after silence rises over 2 ms and one followed by
//! silence falls over 2 ms, so cadenced tones do not click. Back-to-back
//! segments (no silence between them) join without a ramp and without a
//! phase jump: the oscillators run on from one segment to the next.

use std::f64::consts::TAU;

use super::goertzel::SAMPLE_RATE_HZ;

/// Peak amplitude, in 16-bit units, of a sine at 0 dBm0.
pub const DBM0_PEAK: f64 = 22_827.6;

/// Samples per millisecond at 8000 Hz.
const SAMPLES_PER_MS: u64 = 8;

/// Length of the rise and fall at burst edges (2 ms).
const RAMP_SAMPLES: u64 = 16;

/// DTMF low-group (row) frequencies, Q.23.
pub const DTMF_ROW_HZ: [f64; 4] = [697.0, 770.0, 852.0, 941.0];

/// DTMF high-group (column) frequencies, Q.23.
pub const DTMF_COLUMN_HZ: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// The keypad: `DTMF_KEYPAD[row][column]`.
pub const DTMF_KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Level of the low-group component of a generated digit.
pub const DTMF_LOW_LEVEL_DBM0: f64 = -9.0;

/// Level of the high-group component (2 dB above the low group, the usual
/// pre-emphasis against the line's high-frequency loss).
pub const DTMF_HIGH_LEVEL_DBM0: f64 = -7.0;

/// The peak amplitude of a sine at `level_dbm0`.
pub fn dbm0_peak(level_dbm0: f64) -> f64 {
    DBM0_PEAK * 10f64.powf(level_dbm0 / 20.0)
}

/// The level in dBm0 of a signal with this mean square (16-bit units²).
pub fn mean_square_dbm0(mean_square: f64) -> f64 {
    10.0 * (mean_square / (DBM0_PEAK * DBM0_PEAK / 2.0)).log10()
}

/// One sine: its frequency and its level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Component {
    pub hz: f64,
    pub level_dbm0: f64,
}

impl Component {
    pub const fn new(hz: f64, level_dbm0: f64) -> Component {
        Component { hz, level_dbm0 }
    }
}

/// What sounds during the "on" part of a segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// One sine.
    Single(Component),
    /// Two sines added (dual tones, DTMF).
    Dual(Component, Component),
    /// A carrier whose amplitude follows `1 + depth · sin(2π modulation_hz t)`
    /// (Japan's 400 Hz × 16 Hz ringback). `carrier.level_dbm0` is the mean
    /// power of the modulated signal.
    Modulated {
        carrier: Component,
        modulation_hz: f64,
        depth: f64,
    },
}

impl Signal {
    /// One sine at `hz`.
    pub const fn single(hz: f64, level_dbm0: f64) -> Signal {
        Signal::Single(Component::new(hz, level_dbm0))
    }

    /// Two sines, each at `level_dbm0`.
    pub const fn dual(low_hz: f64, high_hz: f64, level_dbm0: f64) -> Signal {
        Signal::Dual(
            Component::new(low_hz, level_dbm0),
            Component::new(high_hz, level_dbm0),
        )
    }
}

/// A signal sounding for `on_ms`, then `off_ms` of silence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneSegment {
    pub signal: Signal,
    pub on_ms: u32,
    pub off_ms: u32,
}

/// A tone: its segments in order, played once or repeated forever.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneSpec {
    pub segments: Vec<ToneSegment>,
    pub repeat: bool,
}

impl ToneSpec {
    /// `signal` without interruption.
    pub fn continuous(signal: Signal) -> ToneSpec {
        ToneSpec::cadence(signal, 1000, 0)
    }

    /// `signal` for `on_ms`, silence for `off_ms`, repeated.
    pub fn cadence(signal: Signal, on_ms: u32, off_ms: u32) -> ToneSpec {
        ToneSpec {
            segments: vec![ToneSegment {
                signal,
                on_ms,
                off_ms,
            }],
            repeat: true,
        }
    }

    /// `signal` once for `on_ms`.
    pub fn once(signal: Signal, on_ms: u32) -> ToneSpec {
        ToneSpec {
            segments: vec![ToneSegment {
                signal,
                on_ms,
                off_ms: 0,
            }],
            repeat: false,
        }
    }

    /// The length of one pass through the segments.
    pub fn period_ms(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| u64::from(s.on_ms) + u64::from(s.off_ms))
            .sum()
    }
}

/// The tones a country's callers expect to hear.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneProfile {
    pub dial: ToneSpec,
    pub ringback: ToneSpec,
    pub busy: ToneSpec,
    pub call_waiting: ToneSpec,
    /// The short tone before a recording starts (denwa's choice: no tone
    /// plan standardises it).
    pub beep: ToneSpec,
}

impl ToneProfile {
    /// The profile of an ISO 3166 country code (`"JP"`, `"US"`; any case).
    pub fn for_country(code: &str) -> Option<ToneProfile> {
        match code.to_ascii_uppercase().as_str() {
            "JP" => Some(ToneProfile::japan()),
            "US" => Some(ToneProfile::united_states()),
            _ => None,
        }
    }

    /// NTT's tones: everything on 400 Hz; ringback 400 Hz modulated by
    /// 16 Hz, 1 s on, 2 s off; busy 0.5 s on, 0.5 s off. Call waiting is two
    /// 0.1 s pips every 3 s.
    pub fn japan() -> ToneProfile {
        let tone = |level| Signal::single(400.0, level);
        ToneProfile {
            dial: ToneSpec::continuous(tone(-13.0)),
            ringback: ToneSpec::cadence(
                Signal::Modulated {
                    carrier: Component::new(400.0, -16.0),
                    modulation_hz: 16.0,
                    depth: 0.8,
                },
                1000,
                2000,
            ),
            busy: ToneSpec::cadence(tone(-16.0), 500, 500),
            call_waiting: ToneSpec {
                segments: vec![
                    ToneSegment {
                        signal: tone(-16.0),
                        on_ms: 100,
                        off_ms: 100,
                    },
                    ToneSegment {
                        signal: tone(-16.0),
                        on_ms: 100,
                        off_ms: 3000,
                    },
                ],
                repeat: true,
            },
            beep: beep(),
        }
    }

    /// The North American precise tone plan: dial 350 + 440 Hz at
    /// -13 dBm0; ringback 440 + 480 Hz at -19 dBm0, 2 s on, 4 s off; busy
    /// 480 + 620 Hz at -24 dBm0, 0.5 s on, 0.5 s off; call waiting 440 Hz
    /// at -13 dBm0, 0.3 s every 10 s.
    pub fn united_states() -> ToneProfile {
        ToneProfile {
            dial: ToneSpec::continuous(Signal::dual(350.0, 440.0, -13.0)),
            ringback: ToneSpec::cadence(Signal::dual(440.0, 480.0, -19.0), 2000, 4000),
            busy: ToneSpec::cadence(Signal::dual(480.0, 620.0, -24.0), 500, 500),
            call_waiting: ToneSpec::cadence(Signal::single(440.0, -13.0), 300, 9700),
            beep: beep(),
        }
    }
}

/// 1000 Hz for 0.5 s at -13 dBm0, once.
fn beep() -> ToneSpec {
    ToneSpec::once(Signal::single(1000.0, -13.0), 500)
}

/// The (row, column) frequencies of a DTMF key: `0`–`9`, `*`, `#`, `A`–`D`
/// (letters in either case).
pub fn dtmf_frequencies(digit: char) -> Option<(f64, f64)> {
    let digit = digit.to_ascii_uppercase();
    DTMF_KEYPAD.iter().enumerate().find_map(|(row, keys)| {
        let column = keys.iter().position(|&k| k == digit)?;
        Some((DTMF_ROW_HZ[row], DTMF_COLUMN_HZ[column]))
    })
}

/// A DTMF key's two sines at the given levels.
pub fn dtmf_signal(digit: char, low_dbm0: f64, high_dbm0: f64) -> Option<Signal> {
    let (row, column) = dtmf_frequencies(digit)?;
    Some(Signal::Dual(
        Component::new(row, low_dbm0),
        Component::new(column, high_dbm0),
    ))
}

/// A DTMF key held down, at the standard sending levels; the caller decides
/// how long it plays.
pub fn dtmf_tone(digit: char) -> Option<ToneSpec> {
    let signal = dtmf_signal(digit, DTMF_LOW_LEVEL_DBM0, DTMF_HIGH_LEVEL_DBM0)?;
    Some(ToneSpec::continuous(signal))
}

/// A segment with its amplitudes and per-sample phase steps worked out.
#[derive(Debug, Clone, Copy)]
struct Prepared {
    /// (peak amplitude, cycles per sample) of up to two sines.
    sines: [(f64, f64); 2],
    /// (depth, cycles per sample) of the modulation, depth 0 when none.
    modulation: (f64, f64),
    on: u64,
    off: u64,
}

impl Prepared {
    fn new(segment: &ToneSegment) -> Prepared {
        let step = |hz: f64| hz / SAMPLE_RATE_HZ;
        let sine = |c: Component| (dbm0_peak(c.level_dbm0), step(c.hz));
        let (sines, modulation) = match segment.signal {
            Signal::Single(c) => ([sine(c), (0.0, 0.0)], (0.0, 0.0)),
            Signal::Dual(a, b) => ([sine(a), sine(b)], (0.0, 0.0)),
            Signal::Modulated {
                carrier,
                modulation_hz,
                depth,
            } => {
                // Mean power of A (1 + m sin) sin is A²/2 (1 + m²/2).
                let (peak, carrier_step) = sine(carrier);
                let peak = peak / (1.0 + depth * depth / 2.0).sqrt();
                (
                    [(peak, carrier_step), (0.0, 0.0)],
                    (depth, step(modulation_hz)),
                )
            }
        };
        Prepared {
            sines,
            modulation,
            on: u64::from(segment.on_ms) * SAMPLES_PER_MS,
            off: u64::from(segment.off_ms) * SAMPLES_PER_MS,
        }
    }
}

/// Plays a [`ToneSpec`] sample by sample. Filling in pieces gives exactly
/// the samples one fill of the total length would.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    segments: Vec<Prepared>,
    repeat: bool,
    /// Current segment and sample position inside its on + off period.
    segment: usize,
    position: u64,
    /// Oscillator phases in cycles: the two sines and the modulation.
    phases: [f64; 3],
    /// The last sample played was silence (or nothing played yet).
    after_silence: bool,
    /// The current burst rises from zero.
    ramp_in: bool,
    finished: bool,
}

impl ToneGenerator {
    /// A generator at the start of `spec`. Segments with neither on nor off
    /// time are skipped; a spec with no time at all is finished at once.
    pub fn new(spec: &ToneSpec) -> ToneGenerator {
        let segments: Vec<Prepared> = spec
            .segments
            .iter()
            .map(Prepared::new)
            .filter(|p| p.on + p.off > 0)
            .collect();
        ToneGenerator {
            finished: segments.is_empty(),
            segments,
            repeat: spec.repeat,
            segment: 0,
            position: 0,
            phases: [0.0; 3],
            after_silence: true,
            ramp_in: true,
        }
    }

    /// Writes the next samples into `out`; returns how many came from the
    /// tone. Once a non-repeating tone is over, the rest of `out` is zeros.
    pub fn fill(&mut self, out: &mut [i16]) -> usize {
        let mut produced = 0;
        for slot in out.iter_mut() {
            match self.next_sample() {
                Some(sample) => {
                    *slot = sample;
                    produced += 1;
                }
                None => *slot = 0,
            }
        }
        produced
    }

    /// A non-repeating tone has played all its segments.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn next_sample(&mut self) -> Option<i16> {
        if self.finished {
            return None;
        }
        let seg = *self.segments.get(self.segment)?;
        let value = if self.position < seg.on {
            if self.position == 0 {
                self.ramp_in = self.after_silence;
            }
            self.after_silence = false;
            let gain = self.edge_gain(&seg);
            self.oscillate(&seg) * gain
        } else {
            self.after_silence = true;
            0.0
        };
        self.position += 1;
        if self.position >= seg.on + seg.off {
            self.advance_segment();
        }
        Some(value.round().clamp(-32768.0, 32767.0) as i16)
    }

    /// 0..1 near a burst's edges that border silence, else 1.
    fn edge_gain(&self, seg: &Prepared) -> f64 {
        let mut gain: f64 = 1.0;
        if self.ramp_in {
            gain = gain.min((self.position + 1) as f64 / RAMP_SAMPLES as f64);
        }
        if self.falls_after(seg) {
            gain = gain.min((seg.on - self.position) as f64 / RAMP_SAMPLES as f64);
        }
        gain
    }

    /// The current burst is followed by silence (or by the end).
    fn falls_after(&self, seg: &Prepared) -> bool {
        let last = self.segment + 1 == self.segments.len();
        seg.off > 0 || (last && !self.repeat)
    }

    fn oscillate(&mut self, seg: &Prepared) -> f64 {
        let mut value = 0.0;
        for (phase, (peak, _)) in self.phases.iter().zip(seg.sines) {
            value += peak * (TAU * phase).sin();
        }
        let (depth, _) = seg.modulation;
        if depth != 0.0 {
            value *= 1.0 + depth * (TAU * self.phases[2]).sin();
        }
        let steps = [seg.sines[0].1, seg.sines[1].1, seg.modulation.1];
        for (phase, step) in self.phases.iter_mut().zip(steps) {
            *phase = (*phase + step).fract();
        }
        value
    }

    fn advance_segment(&mut self) {
        self.position = 0;
        self.segment += 1;
        if self.segment >= self.segments.len() {
            if self.repeat {
                self.segment = 0;
            } else {
                self.finished = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::goertzel::Goertzel;

    fn render(spec: &ToneSpec, ms: usize) -> Vec<i16> {
        let mut out = vec![0; ms * 8];
        ToneGenerator::new(spec).fill(&mut out);
        out
    }

    fn samples_ms(x: &[i16], from_ms: usize, to_ms: usize) -> impl Iterator<Item = f64> + '_ {
        x[from_ms * 8..to_ms * 8].iter().map(|&v| f64::from(v))
    }

    /// Level in dBm0 of the sine at `hz` in `x[from_ms..to_ms]`.
    fn component_dbm0(x: &[i16], hz: f64, from_ms: usize, to_ms: usize) -> f64 {
        let n = (to_ms - from_ms) * 8;
        let power = Goertzel::at(hz).power(samples_ms(x, from_ms, to_ms));
        20.0 * (Goertzel::amplitude(power, n) / DBM0_PEAK).log10()
    }

    fn hann_component_dbm0(x: &[i16], hz: f64, from_ms: usize, to_ms: usize) -> f64 {
        let n = (to_ms - from_ms) * 8;
        let hann = |i: usize| 0.5 - 0.5 * (TAU * i as f64 / n as f64).cos();
        let windowed = samples_ms(x, from_ms, to_ms)
            .enumerate()
            .map(|(i, v)| v * hann(i));
        let power = Goertzel::at(hz).power(windowed);
        // The window halves a sine's coherent sum.
        20.0 * (2.0 * Goertzel::amplitude(power, n) / DBM0_PEAK).log10()
    }

    fn rms_dbm0(x: &[i16], from_ms: usize, to_ms: usize) -> f64 {
        let n = ((to_ms - from_ms) * 8) as f64;
        mean_square_dbm0(samples_ms(x, from_ms, to_ms).map(|v| v * v).sum::<f64>() / n)
    }

    fn power_sum_dbm0(levels: &[f64]) -> f64 {
        10.0 * levels
            .iter()
            .map(|l| 10f64.powf(l / 10.0))
            .sum::<f64>()
            .log10()
    }

    const PROBES: [f64; 8] = [350.0, 400.0, 440.0, 480.0, 620.0, 1000.0, 697.0, 1209.0];

    /// The first burst of `spec` holds exactly `components` at their levels
    /// (±1 dB), nothing at the other probe frequencies, and its total level
    /// is their power sum (±1 dB).
    fn check_first_burst(name: &str, spec: &ToneSpec, components: &[(f64, f64)]) {
        let on = spec.segments[0].on_ms as usize;
        let x = render(spec, on);
        let (from, to) = (20, on - 20);
        for &(hz, level) in components {
            let got = component_dbm0(&x, hz, from, to);
            assert!(
                (got - level).abs() <= 1.0,
                "{name}: {hz} Hz at {got:.2} dBm0"
            );
        }
        // Other frequencies, through a Hann window so that the sidelobes of
        // a short burst's components do not count as strays.
        let weakest = components.iter().map(|c| c.1).fold(f64::MAX, f64::min);
        for hz in PROBES
            .iter()
            .filter(|hz| components.iter().all(|c| c.0 != **hz))
        {
            let got = hann_component_dbm0(&x, *hz, from, to);
            assert!(
                got < weakest - 25.0,
                "{name}: stray {hz} Hz at {got:.1} dBm0"
            );
        }
        let expected = power_sum_dbm0(&components.iter().map(|c| c.1).collect::<Vec<_>>());
        let got = rms_dbm0(&x, from, to);
        assert!(
            (got - expected).abs() <= 1.0,
            "{name}: total {got:.2} vs {expected:.2}"
        );
    }

    #[test]
    fn level_reference() {
        assert!((dbm0_peak(0.0) - DBM0_PEAK).abs() < 1e-9);
        assert!((dbm0_peak(-20.0) - DBM0_PEAK / 10.0).abs() < 1e-9);
        // 0 dBm0 peaks 3.14 dB below full scale.
        // A-law's +3.14 dBm0 (written so that it does not read as π).
        let alaw_load_capacity_db = 314.0 / 100.0;
        assert!((20.0 * (32768.0 / DBM0_PEAK).log10() - alaw_load_capacity_db).abs() < 0.001);
        let x = render(&ToneSpec::continuous(Signal::single(1000.0, 0.0)), 100);
        assert!(rms_dbm0(&x, 10, 100).abs() < 0.01);
    }

    #[test]
    fn us_tones_have_their_frequencies_and_levels() {
        let us = ToneProfile::for_country("US").expect("US profile");
        check_first_burst("dial", &us.dial, &[(350.0, -13.0), (440.0, -13.0)]);
        check_first_burst("ringback", &us.ringback, &[(440.0, -19.0), (480.0, -19.0)]);
        check_first_burst("busy", &us.busy, &[(480.0, -24.0), (620.0, -24.0)]);
        check_first_burst("call waiting", &us.call_waiting, &[(440.0, -13.0)]);
        check_first_burst("beep", &us.beep, &[(1000.0, -13.0)]);
    }

    #[test]
    fn japanese_tones_have_their_frequencies_and_levels() {
        let jp = ToneProfile::for_country("jp").expect("JP profile");
        check_first_burst("dial", &jp.dial, &[(400.0, -13.0)]);
        check_first_burst("busy", &jp.busy, &[(400.0, -16.0)]);
        check_first_burst("call waiting", &jp.call_waiting, &[(400.0, -16.0)]);
        assert_eq!(ToneProfile::for_country("Jp"), Some(jp));
        assert_eq!(ToneProfile::for_country("DE"), None);
    }

    #[test]
    fn japanese_ringback_is_400_hz_modulated_by_16_hz() {
        let jp = ToneProfile::japan();
        let x = render(&jp.ringback, 1000);
        // The whole burst: 16 modulation periods exactly.
        let total = rms_dbm0(&x, 0, 1000);
        assert!((total + 16.0).abs() <= 1.0, "mean power {total:.2} dBm0");
        // Carrier and the two side bands at depth / 2 = 0.4 (-7.96 dB).
        let carrier = component_dbm0(&x, 400.0, 0, 1000);
        for hz in [384.0, 416.0] {
            let side = component_dbm0(&x, hz, 0, 1000) - carrier;
            assert!(
                (side + 7.96).abs() < 0.3,
                "{hz} Hz side band at {side:.2} dB"
            );
        }
        assert!(component_dbm0(&x, 368.0, 0, 1000) - carrier < -40.0);
        // The envelope swings: 1/64 s blocks around the 16 Hz peak and trough.
        let block = |start: usize| {
            let b = &x[start..start + 125];
            (b.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / 125.0).sqrt()
        };
        // sin(2π 16 t) peaks at 1/64 s (125 samples) and dips at 3/64 s.
        let ratio = block(2000 + 62) / block(2000 + 312);
        assert!(ratio > 5.0, "peak to trough {ratio:.1}");
    }

    /// 10 ms blocks of the first `ms` of `spec`: on blocks carry energy
    /// (above -40 dBm0), off blocks are digital silence.
    fn check_cadence(name: &str, spec: &ToneSpec, pattern: &[(usize, usize)], ms: usize) {
        let x = render(spec, ms);
        let period: usize = pattern.iter().map(|(on, off)| on + off).sum();
        for block in 0..ms / 10 {
            let mut t = (block * 10) % period;
            let mut on = false;
            for &(on_ms, off_ms) in pattern {
                if t < on_ms {
                    on = true;
                    break;
                }
                if t < on_ms + off_ms {
                    break;
                }
                t -= on_ms + off_ms;
            }
            let samples = &x[block * 80..(block + 1) * 80];
            if on {
                let level = rms_dbm0(&x, block * 10, block * 10 + 10);
                assert!(
                    level > -40.0,
                    "{name}: block {block} should sound ({level:.1})"
                );
            } else {
                assert!(
                    samples.iter().all(|&v| v == 0),
                    "{name}: block {block} should be silent"
                );
            }
        }
    }

    #[test]
    fn cadences() {
        let us = ToneProfile::united_states();
        check_cadence("US ringback", &us.ringback, &[(2000, 4000)], 12_500);
        check_cadence("US busy", &us.busy, &[(500, 500)], 3000);
        check_cadence("US call waiting", &us.call_waiting, &[(300, 9700)], 20_500);
        check_cadence("US dial", &us.dial, &[(1000, 0)], 3000);
        let jp = ToneProfile::japan();
        check_cadence("JP ringback", &jp.ringback, &[(1000, 2000)], 6500);
        check_cadence("JP busy", &jp.busy, &[(500, 500)], 3000);
        check_cadence(
            "JP call waiting",
            &jp.call_waiting,
            &[(100, 100), (100, 3000)],
            7000,
        );
    }

    #[test]
    fn a_tone_played_once_ends() {
        let beep = ToneProfile::united_states().beep;
        let mut generator = ToneGenerator::new(&beep);
        let mut out = vec![1i16; 8000];
        assert_eq!(generator.fill(&mut out), 4000);
        assert!(generator.is_finished());
        assert!(out[4000..].iter().all(|&v| v == 0));
        assert!(out[100..3900].iter().any(|&v| v != 0));
        assert_eq!(generator.fill(&mut out[..160]), 0);

        let empty = ToneSpec {
            segments: vec![],
            repeat: true,
        };
        assert!(ToneGenerator::new(&empty).is_finished());
        let nothing = ToneSpec::cadence(Signal::single(400.0, -10.0), 0, 0);
        let mut generator = ToneGenerator::new(&nothing);
        assert_eq!(generator.fill(&mut out[..10]), 0, "no time, no samples");
    }

    fn every_tone() -> Vec<ToneSpec> {
        let mut all = Vec::new();
        for p in [ToneProfile::japan(), ToneProfile::united_states()] {
            all.extend([p.dial, p.ringback, p.busy, p.call_waiting, p.beep]);
        }
        all.extend("0123456789*#ABCD".chars().filter_map(dtmf_tone));
        all
    }

    #[test]
    fn filling_in_pieces_gives_the_same_samples() {
        let sizes = [1usize, 7, 160, 33, 80, 1000, 3, 2500];
        for spec in every_tone() {
            let whole = render(&spec, 4000);
            let mut generator = ToneGenerator::new(&spec);
            let mut pieces = Vec::new();
            for n in sizes.iter().cycle() {
                if pieces.len() >= whole.len() {
                    break;
                }
                let mut buf = vec![0; (*n).min(whole.len() - pieces.len())];
                generator.fill(&mut buf);
                pieces.extend(buf);
            }
            assert_eq!(pieces, whole, "{spec:?}");
        }
    }

    /// The largest step between samples a spec's signals can make: each
    /// sine's slope plus the 2 ms ramp's, scaled by the modulation peak.
    fn slope_bound(spec: &ToneSpec) -> f64 {
        let mut bound: f64 = 0.0;
        for seg in &spec.segments {
            let p = Prepared::new(seg);
            let peak_gain = 1.0 + p.modulation.0;
            let mut slope = 0.0;
            for (amp, step) in p.sines {
                slope += amp * peak_gain * (TAU * step + 1.0 / RAMP_SAMPLES as f64);
            }
            slope += p.sines[0].0 * p.modulation.0 * TAU * p.modulation.1;
            bound = bound.max(slope);
        }
        bound + 1.0
    }

    #[test]
    fn no_discontinuity_anywhere() {
        for spec in every_tone() {
            let x = render(&spec, 13_000);
            let bound = slope_bound(&spec);
            for (i, pair) in x.windows(2).enumerate() {
                let step = (f64::from(pair[1]) - f64::from(pair[0])).abs();
                assert!(step <= bound, "{spec:?}: jump of {step} at sample {i}");
            }
        }
    }

    #[test]
    fn continuous_tone_keeps_its_level_across_periods() {
        // 100 ms blocks hold whole cycles of 350, 440 Hz and their 90 Hz beat.
        let x = render(&ToneProfile::united_states().dial, 3000);
        let first = rms_dbm0(&x, 100, 200);
        for block in 1..30 {
            let level = rms_dbm0(&x, block * 100, block * 100 + 100);
            assert!(
                (level - first).abs() < 0.05,
                "block {block}: {level} vs {first}"
            );
        }
    }

    #[test]
    fn dtmf_keys_use_the_row_and_column_frequencies() {
        let all: Vec<f64> = DTMF_ROW_HZ.iter().chain(&DTMF_COLUMN_HZ).copied().collect();
        for (row, keys) in DTMF_KEYPAD.iter().enumerate() {
            for (column, &key) in keys.iter().enumerate() {
                let (low, high) = (DTMF_ROW_HZ[row], DTMF_COLUMN_HZ[column]);
                assert_eq!(dtmf_frequencies(key), Some((low, high)));
                let x = render(&dtmf_tone(key).expect("a key"), 100);
                for hz in &all {
                    let got = component_dbm0(&x, *hz, 5, 95);
                    if *hz == low {
                        assert!((got - DTMF_LOW_LEVEL_DBM0).abs() <= 1.0, "{key}: {got}");
                    } else if *hz == high {
                        assert!((got - DTMF_HIGH_LEVEL_DBM0).abs() <= 1.0, "{key}: {got}");
                    } else {
                        assert!(got < -30.0, "{key}: {hz} Hz at {got:.1}");
                    }
                }
            }
        }
        assert_eq!(dtmf_frequencies('a'), Some((697.0, 1633.0)));
        assert_eq!(dtmf_frequencies('E'), None);
        assert!(dtmf_tone('x').is_none());
        assert!(dtmf_signal('5', -20.0, -18.0).is_some());
    }
}
