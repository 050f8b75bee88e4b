//! Tests of the in-band detector: every key at many levels, in noise and
//! through G.711; frequency, duration, twist and level limits; and talk-off
//! (speech-like, noise, music-like and call-progress signals give nothing).

use super::*;
use crate::media::g711::Codec;
use crate::media::tones::{
    dbm0_peak, dtmf_frequencies, Component, Signal, ToneGenerator, ToneProfile, ToneSpec,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KEYS: &str = "0123456789*#ABCD";
/// The caller's clock at the first sample.
const T0: u64 = 1_000_000;

/// A key press in a test signal: key, start and length in ms.
#[derive(Debug, Clone, Copy)]
struct Pressed {
    key: char,
    start_ms: usize,
    ms: usize,
}

/// A key at the given row and column levels, with both frequencies moved
/// by the given fractions.
fn key_tone(key: char, low_dbm0: f64, high_dbm0: f64, shift: (f64, f64), ms: usize) -> Vec<i16> {
    let (row, column) = dtmf_frequencies(key).expect("a key");
    let signal = Signal::Dual(
        Component::new(row * (1.0 + shift.0), low_dbm0),
        Component::new(column * (1.0 + shift.1), high_dbm0),
    );
    let mut out = vec![0; ms * 8];
    ToneGenerator::new(&ToneSpec::once(signal, ms as u32)).fill(&mut out);
    out
}

/// The keys one after the other with seeded lengths (50–200 ms) and
/// pauses (60–150 ms), after 100 ms of silence and followed by 200 ms.
fn key_sequence(seed: u64, level: f64) -> (Vec<i16>, Vec<Pressed>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut audio = vec![0i16; 800];
    let mut pressed = Vec::new();
    for key in KEYS.chars() {
        let ms = rng.gen_range(50..=200);
        pressed.push(Pressed {
            key,
            start_ms: audio.len() / 8,
            ms,
        });
        audio.extend(key_tone(key, level, level, (0.0, 0.0), ms));
        audio.extend(vec![0; rng.gen_range(60..=150) * 8]);
    }
    audio.extend(vec![0; 1600]);
    (audio, pressed)
}

/// Runs the detector over `audio` in 20 ms frames.
fn detect(audio: &[i16]) -> Vec<DigitEvent> {
    let mut detector = InbandDetector::new();
    let mut events = Vec::new();
    for (i, frame) in audio.chunks(160).enumerate() {
        events.extend(detector.push(frame, T0 + 20 * i as u64));
    }
    events.extend(detector.flush());
    events
}

fn keys(events: &[DigitEvent]) -> String {
    events.iter().map(|e| e.digit).collect()
}

/// Exactly the pressed keys, each with start and duration within ±20 ms.
fn check_detected(name: &str, events: &[DigitEvent], pressed: &[Pressed]) {
    let expected: String = pressed.iter().map(|p| p.key).collect();
    assert_eq!(keys(events), expected, "{name}");
    for (e, p) in events.iter().zip(pressed) {
        let start = T0 + p.start_ms as u64;
        assert!(e.start.abs_diff(start) <= 20, "{name}: {e:?} vs {p:?}");
        let duration = i64::from(e.duration_ms) - p.ms as i64;
        assert!(duration.abs() <= 20, "{name}: {e:?} vs {p:?}");
        assert_eq!(e.source, DigitSource::Inband);
    }
}

/// Seeded Gaussian white noise with the given mean square.
fn add_noise(audio: &mut [i16], mean_square: f64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let sigma = mean_square.sqrt();
    for x in audio.iter_mut() {
        let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
        let gauss = (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos();
        *x = (f64::from(*x) + sigma * gauss)
            .round()
            .clamp(-32768.0, 32767.0) as i16;
    }
}

/// Mean square of a dual tone at `level` per component.
fn dual_power(level: f64) -> f64 {
    2.0 * dbm0_peak(level).powi(2) / 2.0
}

fn g711(audio: &[i16], codec: Codec) -> Vec<i16> {
    codec.decode(&codec.encode(audio))
}

const LEVELS: [f64; 5] = [-3.0, -10.0, -17.0, -24.0, -30.0];

#[test]
fn every_key_at_every_level() {
    for (i, level) in LEVELS.into_iter().enumerate() {
        let (audio, pressed) = key_sequence(i as u64, level);
        check_detected(&format!("{level} dBm0"), &detect(&audio), &pressed);
    }
}

#[test]
fn every_key_in_white_noise_at_15_db_snr() {
    for (i, level) in LEVELS.into_iter().enumerate() {
        let (mut audio, pressed) = key_sequence(10 + i as u64, level);
        add_noise(
            &mut audio,
            dual_power(level) / 10f64.powf(1.5),
            100 + i as u64,
        );
        check_detected(&format!("{level} dBm0 in noise"), &detect(&audio), &pressed);
    }
}

#[test]
fn every_key_through_g711() {
    for codec in [Codec::Pcmu, Codec::Pcma] {
        for (i, level) in LEVELS.into_iter().enumerate() {
            let (mut audio, pressed) = key_sequence(20 + i as u64, level);
            add_noise(
                &mut audio,
                dual_power(level) / 10f64.powf(1.5),
                200 + i as u64,
            );
            let name = format!("{codec:?} at {level} dBm0");
            check_detected(&name, &detect(&g711(&audio, codec)), &pressed);
        }
    }
}

/// One press of `key` between silences.
fn lone(key: char, low: f64, high: f64, shift: (f64, f64), ms: usize) -> Vec<i16> {
    let mut audio = vec![0; 800];
    audio.extend(key_tone(key, low, high, shift, ms));
    audio.extend(vec![0; 1600]);
    audio
}

#[test]
fn frequency_deviation_of_1_5_percent_is_accepted() {
    for key in KEYS.chars() {
        for shift in [
            (0.015, 0.015),
            (-0.015, -0.015),
            (0.015, -0.015),
            (-0.015, 0.015),
        ] {
            let events = detect(&lone(key, -12.0, -10.0, shift, 100));
            assert_eq!(keys(&events), key.to_string(), "{key} shifted {shift:?}");
        }
    }
}

#[test]
fn frequency_deviation_of_3_5_percent_is_rejected() {
    for key in KEYS.chars() {
        for shift in [
            (0.035, 0.0),
            (-0.035, 0.0),
            (0.0, 0.035),
            (0.0, -0.035),
            (0.035, 0.035),
        ] {
            let events = detect(&lone(key, -12.0, -10.0, shift, 100));
            assert!(events.is_empty(), "{key} shifted {shift:?}: {events:?}");
        }
    }
}

#[test]
fn thirty_ms_is_too_short_and_forty_is_enough() {
    for key in KEYS.chars() {
        for level in [-5.0, -15.0, -28.0] {
            let short = detect(&lone(key, level, level, (0.0, 0.0), 30));
            assert!(short.is_empty(), "{key} for 30 ms at {level}: {short:?}");
            let enough = detect(&lone(key, level, level, (0.0, 0.0), 40));
            assert_eq!(keys(&enough), key.to_string(), "{key} for 40 ms at {level}");
            assert!(enough[0].duration_ms.abs_diff(40) <= 20);
        }
    }
}

#[test]
fn twist_limits() {
    for key in ['1', '5', '9', 'D'] {
        let ok = [(-15.0, -8.0), (-10.0, -13.0)]; // +7 dB normal, 3 dB reverse
        for (low, high) in ok {
            let events = detect(&lone(key, low, high, (0.0, 0.0), 100));
            assert_eq!(keys(&events), key.to_string(), "{key} at {low}/{high}");
        }
        let too_much = [(-18.0, -8.0), (-8.0, -14.0)]; // +10 dB normal, 6 dB reverse
        for (low, high) in too_much {
            let events = detect(&lone(key, low, high, (0.0, 0.0), 100));
            assert!(events.is_empty(), "{key} at {low}/{high}");
        }
    }
}

#[test]
fn too_quiet_is_ignored() {
    let events = detect(&lone('5', -40.0, -40.0, (0.0, 0.0), 200));
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_repeated_key_needs_a_pause() {
    // Two presses of 5 with a 40 ms pause are two digits.
    let mut audio = lone('5', -10.0, -10.0, (0.0, 0.0), 100);
    audio.truncate(800 + 800 + 320);
    audio.extend(key_tone('5', -10.0, -10.0, (0.0, 0.0), 100));
    audio.extend(vec![0; 1600]);
    assert_eq!(keys(&detect(&audio)), "55");
    // An 8 ms dropout inside one press is bridged.
    let mut audio = lone('5', -10.0, -10.0, (0.0, 0.0), 60);
    audio.truncate(800 + 480);
    audio.extend(vec![0; 64]);
    audio.extend(key_tone('5', -10.0, -10.0, (0.0, 0.0), 60));
    audio.extend(vec![0; 1600]);
    let events = detect(&audio);
    assert_eq!(keys(&events), "5");
    assert!(events[0].duration_ms.abs_diff(128) <= 20, "{events:?}");
}

#[test]
fn one_key_straight_after_another() {
    let mut audio = vec![0; 800];
    audio.extend(key_tone('1', -10.0, -10.0, (0.0, 0.0), 100));
    audio.extend(key_tone('9', -10.0, -10.0, (0.0, 0.0), 100));
    audio.extend(vec![0; 1600]);
    let events = detect(&audio);
    assert_eq!(keys(&events), "19");
    assert!(events[0].start.abs_diff(T0 + 100) <= 20);
    assert!(events[1].start.abs_diff(T0 + 200) <= 20);
}

#[test]
fn start_follows_the_callers_clock_whatever_the_chunk_sizes() {
    let audio = lone('7', -10.0, -10.0, (0.0, 0.0), 120);
    let mut detector = InbandDetector::new();
    let mut events = Vec::new();
    let (mut at, mut sizes) = (0, [37usize, 160, 1, 333, 80].iter().cycle());
    while at < audio.len() {
        let n = (*sizes.next().expect("cycle")).min(audio.len() - at);
        // The caller's clock runs at 8 samples per ms from 5000.
        events.extend(detector.push(&audio[at..at + n], 5000 + at as u64 / 8));
        at += n;
    }
    assert_eq!(keys(&events), "7");
    assert!(events[0].start.abs_diff(5100) <= 20, "{events:?}");
}

#[test]
fn flush_reports_a_press_cut_by_the_end_of_the_call() {
    let mut audio = vec![0; 800];
    audio.extend(key_tone('3', -10.0, -10.0, (0.0, 0.0), 200));
    let mut detector = InbandDetector::new();
    assert!(detector.push(&audio, T0).is_empty());
    let event = detector.flush().expect("still pressed");
    assert_eq!(event.digit, '3');
    assert_eq!(detector.flush(), None);
}

// Talk-off: none of these may give a digit.

/// Formants (Hz) of English vowels.
const VOWELS: [[f64; 3]; 8] = [
    [730.0, 1090.0, 2440.0],
    [270.0, 2290.0, 3010.0],
    [300.0, 870.0, 2240.0],
    [530.0, 1840.0, 2480.0],
    [570.0, 840.0, 2410.0],
    [660.0, 1720.0, 2410.0],
    [490.0, 1350.0, 1690.0],
    [640.0, 1190.0, 2390.0],
];
const BANDWIDTHS: [f64; 3] = [90.0, 110.0, 150.0];

/// Relative amplitude of a harmonic at `hz` under a vowel's formants,
/// with a falling source spectrum.
fn vocal_tract(hz: f64, formants: &[f64; 3]) -> f64 {
    let mut gain = 0.0;
    for (f, bw) in formants.iter().zip(BANDWIDTHS) {
        gain += 1.0 / (1.0 + ((hz - f) / (bw / 2.0)).powi(2)).sqrt();
    }
    gain * (100.0 / hz).sqrt()
}

/// A syllable: a vowel's harmonic series under a pitch glide, shaped by a
/// raised-cosine envelope, at `level` dBm0 (peak of the envelope).
fn syllable(formants: &[f64; 3], f0: (f64, f64), ms: usize, level: f64) -> Vec<i16> {
    let n = ms * 8;
    let harmonics = (3400.0 / f0.0.max(f0.1)) as usize;
    let mut phases = vec![0.0f64; harmonics + 1];
    let mut raw = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f64 / n as f64;
        let pitch = f0.0 + (f0.1 - f0.0) * t;
        let mut v = 0.0;
        for (k, phase) in phases.iter_mut().enumerate().skip(1) {
            let hz = pitch * k as f64;
            *phase = (*phase + hz / SAMPLE_RATE_HZ).fract();
            v += vocal_tract(hz, formants) * (TAU * *phase).sin();
        }
        raw.push(v * (0.5 - 0.5 * (TAU * t).cos()));
    }
    scale_to(&raw, level)
}

/// Scales to a mean square of `level` dBm0 over the signal.
fn scale_to(raw: &[f64], level: f64) -> Vec<i16> {
    let ms = raw.iter().map(|v| v * v).sum::<f64>() / raw.len().max(1) as f64;
    let gain = (dbm0_peak(level).powi(2) / 2.0 / ms.max(f64::MIN_POSITIVE)).sqrt();
    raw.iter()
        .map(|v| (v * gain).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

#[test]
fn speech_like_sounds_give_no_digit() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut audio = Vec::new();
    for _ in 0..120 {
        let formants = VOWELS[rng.gen_range(0..VOWELS.len())];
        let start = rng.gen_range(80.0..260.0);
        let glide = start * rng.gen_range(0.7..1.3);
        let ms = rng.gen_range(80..300);
        audio.extend(syllable(
            &formants,
            (start, glide),
            ms,
            rng.gen_range(-25.0..-5.0),
        ));
        audio.extend(vec![0; rng.gen_range(0..80) * 8]);
    }
    for codec in [None, Some(Codec::Pcmu)] {
        let heard = codec.map_or(audio.clone(), |c| g711(&audio, c));
        let events = detect(&heard);
        assert!(events.is_empty(), "{codec:?}: {events:?}");
    }
}

#[test]
fn noise_bursts_give_no_digit() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut audio = Vec::new();
    for burst in 0..60 {
        let ms = rng.gen_range(30..500);
        let mut noise = vec![0i16; ms * 8];
        add_noise(
            &mut noise,
            dbm0_peak(rng.gen_range(-30.0..-5.0)).powi(2) / 2.0,
            burst,
        );
        if burst % 2 == 1 {
            // Every other burst through a one-pole low-pass: rumble.
            let mut y = 0.0;
            for x in noise.iter_mut() {
                y = 0.9 * y + 0.1 * f64::from(*x) * 3.0;
                *x = y.round().clamp(-32768.0, 32767.0) as i16;
            }
        }
        audio.extend(noise);
        audio.extend(vec![0; rng.gen_range(0..200) * 8]);
    }
    let events = detect(&audio);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn music_like_chords_give_no_digit() {
    let mut rng = StdRng::seed_from_u64(13);
    let mut audio = Vec::new();
    let note_hz = |midi: i32| 440.0 * 2f64.powf(f64::from(midi - 69) / 12.0);
    for _ in 0..80 {
        let root = rng.gen_range(57..88);
        let third = if rng.gen_bool(0.5) { 4 } else { 3 };
        let mut notes = vec![root, root + third, root + 7];
        if rng.gen_bool(0.5) {
            notes.push(root + if rng.gen_bool(0.5) { 10 } else { 11 });
        }
        let ms = rng.gen_range(150..600);
        let n = ms * 8;
        let raw: Vec<f64> = (0..n)
            .map(|i| {
                let t = i as f64 / SAMPLE_RATE_HZ;
                let envelope = (-3.0 * t).exp() * (1.0 - (-200.0 * t).exp());
                let mut v = 0.0;
                for &m in &notes {
                    for k in 1..=4 {
                        v += (TAU * note_hz(m) * k as f64 * t).sin() / k as f64;
                    }
                }
                v * envelope
            })
            .collect();
        audio.extend(scale_to(&raw, rng.gen_range(-25.0..-8.0)));
    }
    let events = detect(&audio);
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn single_tones_and_call_progress_tones_give_no_digit() {
    let mut audio = Vec::new();
    let singles = DTMF_ROW_HZ.iter().chain(&DTMF_COLUMN_HZ).copied();
    for hz in singles.chain([350.0, 440.0, 1000.0, 1400.0, 2000.0]) {
        for level in [-5.0, -20.0] {
            let mut tone = vec![0; 4000];
            ToneGenerator::new(&ToneSpec::once(Signal::single(hz, level), 500)).fill(&mut tone);
            audio.extend(tone);
            audio.extend(vec![0; 800]);
        }
    }
    for p in [ToneProfile::japan(), ToneProfile::united_states()] {
        for spec in [p.dial, p.ringback, p.busy, p.call_waiting, p.beep] {
            let mut tone = vec![0; 8000 * 7];
            ToneGenerator::new(&spec).fill(&mut tone);
            audio.extend(tone);
        }
    }
    let events = detect(&audio);
    assert!(events.is_empty(), "{events:?}");
}
