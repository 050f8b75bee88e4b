//! Goertzel's algorithm: the discrete Fourier transform of a block of
//! samples at one chosen frequency.
//!
//! Owns: the single-bin DFT used by the DTMF detector and by the tests that
//! measure what the tone generator produces.
//!
//! Must not: decide anything about what it measures. It has no state between
//! blocks.

/// The sample rate every signal core works at.
pub const SAMPLE_RATE_HZ: f64 = 8000.0;

/// A DFT bin at one frequency (not necessarily an integer bin of the block).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goertzel {
    /// Radians per sample.
    omega: f64,
    /// `2 cos ω`, the recurrence coefficient.
    coeff: f64,
}

impl Goertzel {
    /// A bin at `hz` for samples at `sample_rate_hz`.
    pub fn new(hz: f64, sample_rate_hz: f64) -> Goertzel {
        let omega = 2.0 * std::f64::consts::PI * hz / sample_rate_hz;
        Goertzel {
            omega,
            coeff: 2.0 * omega.cos(),
        }
    }

    /// A bin at `hz` for samples at [`SAMPLE_RATE_HZ`].
    pub fn at(hz: f64) -> Goertzel {
        Goertzel::new(hz, SAMPLE_RATE_HZ)
    }

    /// The recurrence's last two states after running over `samples`.
    fn run(&self, samples: impl IntoIterator<Item = f64>) -> (f64, f64, usize) {
        let (mut s1, mut s2, mut n) = (0.0, 0.0, 0usize);
        for x in samples {
            let s0 = x + self.coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
            n += 1;
        }
        (s1, s2, n)
    }

    /// `|X(ω)|²` of the block, where `X(ω) = Σ x[n] e^(-jωn)`.
    pub fn power(&self, samples: impl IntoIterator<Item = f64>) -> f64 {
        let (s1, s2, _) = self.run(samples);
        (s1 * s1 + s2 * s2 - self.coeff * s1 * s2).max(0.0)
    }

    /// `X(ω) = Σ x[n] e^(-jωn)` as (real, imaginary), phase referred to the
    /// block's first sample.
    pub fn dft(&self, samples: impl IntoIterator<Item = f64>) -> (f64, f64) {
        let (s1, s2, n) = self.run(samples);
        // y = s1 - e^(-jω) s2 = e^(jω(N-1)) X(ω).
        let (re, im) = (s1 - self.omega.cos() * s2, self.omega.sin() * s2);
        let turn = -self.omega * n.saturating_sub(1) as f64;
        let (sin, cos) = turn.sin_cos();
        (re * cos - im * sin, re * sin + im * cos)
    }

    /// The amplitude of a sine at this bin's frequency that gives the
    /// block's `power` over `n` unweighted samples: `2 |X| / N`.
    pub fn amplitude(power: f64, n: usize) -> f64 {
        if n == 0 {
            return 0.0;
        }
        2.0 * power.sqrt() / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(hz: f64, amplitude: f64, phase: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| amplitude * (2.0 * PI * hz * i as f64 / SAMPLE_RATE_HZ + phase).sin())
            .collect()
    }

    #[test]
    fn on_bin_sine_gives_its_amplitude() {
        // 1000 Hz is bin 20 of a 160-sample block at 8000 Hz.
        let x = sine(1000.0, 1000.0, 0.3, 160);
        let g = Goertzel::at(1000.0);
        let amplitude = Goertzel::amplitude(g.power(x.iter().copied()), x.len());
        assert!((amplitude - 1000.0).abs() < 1e-6, "{amplitude}");
        // Another integer bin sees nothing.
        let other = Goertzel::at(1050.0).power(x.iter().copied());
        assert!(other < 1e-12 * 1e6 * 160.0 * 160.0, "{other}");
    }

    #[test]
    fn dft_matches_the_direct_sum() {
        let x = sine(697.0, 500.0, 1.1, 205);
        let g = Goertzel::at(700.0);
        let (re, im) = g.dft(x.iter().copied());
        let w = 2.0 * PI * 700.0 / SAMPLE_RATE_HZ;
        let (mut dre, mut dim) = (0.0, 0.0);
        for (n, v) in x.iter().enumerate() {
            dre += v * (w * n as f64).cos();
            dim -= v * (w * n as f64).sin();
        }
        assert!((re - dre).abs() < 1e-6 && (im - dim).abs() < 1e-6);
        let power = g.power(x.iter().copied());
        assert!((power - (re * re + im * im)).abs() < 1e-6 * power);
    }

    #[test]
    fn phase_advances_with_the_tone_between_blocks() {
        // Two blocks 40 samples apart: the phase moves by 2π f 40 / 8000.
        let x = sine(710.0, 800.0, 0.0, 300);
        let g = Goertzel::at(697.0);
        let (a_re, a_im) = g.dft(x[0..256].iter().copied());
        let (b_re, b_im) = g.dft(x[40..296].iter().copied());
        let turn = (b_im.atan2(b_re) - a_im.atan2(a_re)).rem_euclid(2.0 * PI);
        let expected = (2.0 * PI * 710.0 * 40.0 / SAMPLE_RATE_HZ).rem_euclid(2.0 * PI);
        // The tone's negative-frequency image leaks a little into the bin.
        assert!((turn - expected).abs() < 1e-3, "{turn} vs {expected}");
    }

    #[test]
    fn empty_block_is_silent() {
        assert_eq!(Goertzel::at(440.0).power(std::iter::empty()), 0.0);
        assert_eq!(Goertzel::amplitude(0.0, 0), 0.0);
    }
}
