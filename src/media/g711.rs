//! G.711 companding: µ-law (PCMU, RTP payload type 0) and A-law (PCMA,
//! payload type 8), and the direct µ-law ↔ A-law conversion.
//!
//! Owns: the mapping between 8-bit G.711 code words and 16-bit linear
//! samples, and between the two laws. Every table is computed by `const fn`
//! at compile time, so decoding and transcoding cost one lookup per sample.
//!
//! Must not: know about RTP packets, clocks or sockets. Callers hand in
//! payload bytes and get samples back.
//!
//! # Scale
//!
//! The Recommendation's tables count decoder outputs in units of a 12-bit
//! magnitude (A-law, overload at 4096) and of a 13-bit magnitude (µ-law,
//! overload at 8159). denwa's 16-bit samples are those units times 8
//! (A-law) and times 4 (µ-law), so the largest outputs are ±32256 (A-law)
//! and ±32124 (µ-law).
//!
//! # Encoding rule
//!
//! A linear sample falls in the quantisation interval `[x_n, x_n+1)` of the
//! Recommendation's decision values (after scaling); magnitudes past the
//! last decision value take the largest code. The quantiser is symmetric
//! around zero, so small negative samples in µ-law give the negative zero
//! code `0x7F`, which decodes to 0 like `0xFF`.
//!
//! # µ-law ↔ A-law
//!
//! [`ulaw_to_alaw`] and [`alaw_to_ulaw`] choose, for each code word, the code
//! word of the other law whose decoder output is nearest at equal level in
//! dBm0. The two laws do not overload at the same level (µ-law's
//! theoretical load capacity is +3.17 dBm0, A-law's +3.14 dBm0), so one
//! µ-law unit is `4096 / 8159 × 10^(0.03/20) ≈ 0.50376` A-law units. With
//! that alignment (and no tie ever arising) the computed tables are those of
//! G.711 Tables 3 and 4, which is what the tests check: the conversion is
//! not transparent both ways, and the code words that change on a round
//! trip are exactly the ones the Recommendation's tables imply.

/// Samples in one 20 ms frame at 8000 Hz.
pub const FRAME_SAMPLES: usize = 160;

/// The µ-law code word for silence (positive zero).
pub const ULAW_SILENCE: u8 = 0xFF;

/// The A-law code word for silence (the smallest positive value).
pub const ALAW_SILENCE: u8 = 0xD5;

/// A-law transmits the code word with its even bits inverted.
const ALAW_EVEN_BITS: u8 = 0x55;

/// Largest µ-law magnitude below the overload decision value 8159.
const ULAW_CLIP: i32 = 8158;

/// µ-law's bias: decision values of segment `s` end at `2^(s+6) - 33`.
const ULAW_BIAS: i32 = 33;

/// Largest A-law magnitude below the overload decision value 4096.
const ALAW_CLIP: i32 = 4095;

/// A-law units per µ-law unit at equal level, times 100 000 (see the module
/// documentation): conversions compare `µ units × 50 376` with
/// `A units × 100 000`.
const ULAW_UNIT_IN_ALAW: i64 = 50_376;
const ALAW_UNIT_SCALE: i64 = 100_000;

/// The two G.711 laws, as negotiated in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// µ-law, RTP static payload type 0.
    Pcmu,
    /// A-law, RTP static payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551 §6).
    pub const fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The codec of a static payload type, `None` for anything but 0 and 8.
    pub const fn from_payload_type(payload_type: u8) -> Option<Codec> {
        match payload_type {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The SDP encoding name (`a=rtpmap`).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The code word of silence in this law.
    pub const fn silence(self) -> u8 {
        match self {
            Codec::Pcmu => ULAW_SILENCE,
            Codec::Pcma => ALAW_SILENCE,
        }
    }

    /// Decodes one sample.
    pub const fn decode_sample(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => ulaw_decode(code),
            Codec::Pcma => alaw_decode(code),
        }
    }

    /// Encodes one sample.
    pub const fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => ulaw_encode(sample),
            Codec::Pcma => alaw_encode(sample),
        }
    }

    /// Decodes a payload into a new vector, one sample per byte.
    pub fn decode(self, payload: &[u8]) -> Vec<i16> {
        let mut samples = vec![0; payload.len()];
        self.decode_into(payload, &mut samples);
        samples
    }

    /// Encodes samples into a new payload, one byte per sample.
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        let mut payload = vec![0; samples.len()];
        self.encode_into(samples, &mut payload);
        payload
    }

    /// Decodes as many samples as both slices allow; returns that count.
    pub fn decode_into(self, payload: &[u8], samples: &mut [i16]) -> usize {
        match self {
            Codec::Pcmu => decode_ulaw_into(payload, samples),
            Codec::Pcma => decode_alaw_into(payload, samples),
        }
    }

    /// Encodes as many samples as both slices allow; returns that count.
    pub fn encode_into(self, samples: &[i16], payload: &mut [u8]) -> usize {
        match self {
            Codec::Pcmu => encode_ulaw_into(samples, payload),
            Codec::Pcma => encode_alaw_into(samples, payload),
        }
    }

    /// Converts a payload of this law into `target`'s law, as many bytes as
    /// both slices allow; returns that count. Same law: a plain copy.
    pub fn transcode_into(self, target: Codec, payload: &[u8], out: &mut [u8]) -> usize {
        let n = payload.len().min(out.len());
        let table: Option<&[u8; 256]> = match (self, target) {
            (Codec::Pcmu, Codec::Pcma) => Some(&ULAW_TO_ALAW),
            (Codec::Pcma, Codec::Pcmu) => Some(&ALAW_TO_ULAW),
            _ => None,
        };
        for (dst, &src) in out.iter_mut().zip(payload) {
            *dst = match table {
                Some(table) => table[usize::from(src)],
                None => src,
            };
        }
        n
    }
}

/// Encodes a 16-bit sample as a µ-law code word.
pub const fn ulaw_encode(sample: i16) -> u8 {
    let negative = sample < 0;
    let mut units = (sample as i32).abs() >> 2;
    if units > ULAW_CLIP {
        units = ULAW_CLIP;
    }
    let biased = units + ULAW_BIAS; // 33..=8191, so 6..=13 significant bits
    let segment = (32 - biased.leading_zeros() - 6) as i32;
    let step = (biased >> (segment + 1)) & 0x0F;
    let sign = if negative { 0x80 } else { 0x00 };
    !((sign | (segment << 4) | step) as u8)
}

/// Decodes a µ-law code word (one table lookup).
pub const fn ulaw_decode(code: u8) -> i16 {
    ULAW_TO_LINEAR[code as usize]
}

/// Encodes a 16-bit sample as an A-law code word.
pub const fn alaw_encode(sample: i16) -> u8 {
    let negative = sample < 0;
    let mut units = (sample as i32).abs() >> 3;
    if units > ALAW_CLIP {
        units = ALAW_CLIP;
    }
    let (segment, step) = if units < 32 {
        (0, units >> 1)
    } else {
        // 32..=4095 has 6..=12 significant bits: segments 1..=7.
        let segment = (32 - units.leading_zeros() - 5) as i32;
        (segment, (units >> segment) & 0x0F)
    };
    let sign = if negative { 0x00 } else { 0x80 };
    ((sign | (segment << 4) | step) as u8) ^ ALAW_EVEN_BITS
}

/// Decodes an A-law code word (one table lookup).
pub const fn alaw_decode(code: u8) -> i16 {
    ALAW_TO_LINEAR[code as usize]
}

/// Converts a µ-law code word to the A-law code word of G.711 Table 3.
pub const fn ulaw_to_alaw(code: u8) -> u8 {
    ULAW_TO_ALAW[code as usize]
}

/// Converts an A-law code word to the µ-law code word of G.711 Table 4.
pub const fn alaw_to_ulaw(code: u8) -> u8 {
    ALAW_TO_ULAW[code as usize]
}

/// Decodes µ-law bytes into samples; returns how many (the shorter length).
pub fn decode_ulaw_into(codes: &[u8], samples: &mut [i16]) -> usize {
    map_into(codes, samples, |&c| ulaw_decode(c))
}

/// Decodes A-law bytes into samples; returns how many (the shorter length).
pub fn decode_alaw_into(codes: &[u8], samples: &mut [i16]) -> usize {
    map_into(codes, samples, |&c| alaw_decode(c))
}

/// Encodes samples as µ-law bytes; returns how many (the shorter length).
pub fn encode_ulaw_into(samples: &[i16], codes: &mut [u8]) -> usize {
    map_into(samples, codes, |&s| ulaw_encode(s))
}

/// Encodes samples as A-law bytes; returns how many (the shorter length).
pub fn encode_alaw_into(samples: &[i16], codes: &mut [u8]) -> usize {
    map_into(samples, codes, |&s| alaw_encode(s))
}

fn map_into<A, B>(from: &[A], to: &mut [B], f: impl Fn(&A) -> B) -> usize {
    for (dst, src) in to.iter_mut().zip(from) {
        *dst = f(src);
    }
    from.len().min(to.len())
}

/// Decoder output magnitude of a µ-law code word in the Recommendation's
/// units (0..=8031), with its sign.
const fn ulaw_units(code: u8) -> (bool, i32) {
    let natural = !code;
    let segment = ((natural >> 4) & 0x07) as i32;
    let step = (natural & 0x0F) as i32;
    let units = ((2 * step + ULAW_BIAS) << segment) - ULAW_BIAS;
    (natural & 0x80 != 0, units)
}

/// Decoder output magnitude of an A-law code word in the Recommendation's
/// units (1..=4032), with its sign.
const fn alaw_units(code: u8) -> (bool, i32) {
    let natural = code ^ ALAW_EVEN_BITS;
    let segment = ((natural >> 4) & 0x07) as i32;
    let step = (natural & 0x0F) as i32;
    let units = if segment == 0 {
        2 * step + 1
    } else {
        (2 * step + 33) << (segment - 1)
    };
    (natural & 0x80 == 0, units)
}

const ULAW_TO_LINEAR: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        let (negative, units) = ulaw_units(code as u8);
        let value = (units * 4) as i16;
        table[code] = if negative { -value } else { value };
        code += 1;
    }
    table
};

const ALAW_TO_LINEAR: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        let (negative, units) = alaw_units(code as u8);
        let value = (units * 8) as i16;
        table[code] = if negative { -value } else { value };
        code += 1;
    }
    table
};

/// For every code of one law, the code of the other law with the same sign
/// whose level-aligned decoder output is nearest. Ties never occur with this
/// alignment; the larger magnitude would win one.
const fn conversion_table(from_ulaw: bool) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut code = 0;
    while code < 256 {
        let (negative, level) = aligned_level(from_ulaw, code as u8);
        let mut best = (0u8, i64::MAX, 0i64);
        let mut candidate = 0;
        while candidate < 256 {
            let (cand_negative, cand_level) = aligned_level(!from_ulaw, candidate as u8);
            let distance = (cand_level - level).abs();
            let nearer = distance < best.1 || (distance == best.1 && cand_level > best.2);
            if cand_negative == negative && nearer {
                best = (candidate as u8, distance, cand_level);
            }
            candidate += 1;
        }
        table[code] = best.0;
        code += 1;
    }
    table
}

/// The sign and the decoder output magnitude of a code word on a scale
/// common to both laws (A-law units × 100 000).
const fn aligned_level(ulaw: bool, code: u8) -> (bool, i64) {
    if ulaw {
        let (negative, units) = ulaw_units(code);
        (negative, units as i64 * ULAW_UNIT_IN_ALAW)
    } else {
        let (negative, units) = alaw_units(code);
        (negative, units as i64 * ALAW_UNIT_SCALE)
    }
}

const ULAW_TO_ALAW: [u8; 256] = conversion_table(true);
const ALAW_TO_ULAW: [u8; 256] = conversion_table(false);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// One line of G.711 Table 1a (A-law) or Table 2a (µ-law), positive
    /// half, in the Recommendation's units: `intervals` quantisation
    /// intervals of size `step` between the segment end points `lower` and
    /// `upper`, decoder outputs `first_output`..=`last_output`, and the code
    /// word (before A-law's even-bit inversion or µ-law's inversion of all
    /// bits) of the first interval.
    struct Row {
        intervals: u32,
        step: u32,
        lower: u32,
        upper: u32,
        first_output: u32,
        last_output: u32,
        first_code: u8,
    }

    const fn row(i: u32, s: u32, lo: u32, up: u32, first: u32, last: u32, code: u8) -> Row {
        Row {
            intervals: i,
            step: s,
            lower: lo,
            upper: up,
            first_output: first,
            last_output: last,
            first_code: code,
        }
    }

    /// Table 1a: A-law, 13 segments; the central one here is 32 × 2.
    const ALAW_TABLE: [Row; 7] = [
        row(32, 2, 0, 64, 1, 63, 0x80),
        row(16, 4, 64, 128, 66, 126, 0xA0),
        row(16, 8, 128, 256, 132, 252, 0xB0),
        row(16, 16, 256, 512, 264, 504, 0xC0),
        row(16, 32, 512, 1024, 528, 1008, 0xD0),
        row(16, 64, 1024, 2048, 1056, 2016, 0xE0),
        row(16, 128, 2048, 4096, 2112, 4032, 0xF0),
    ];

    /// Table 2a: µ-law, 15 segments; the first is 1 × 1 then 15 × 2.
    const ULAW_TABLE: [Row; 9] = [
        row(1, 1, 0, 1, 0, 0, 0x00),
        row(15, 2, 1, 31, 2, 30, 0x01),
        row(16, 4, 31, 95, 33, 93, 0x10),
        row(16, 8, 95, 223, 99, 219, 0x20),
        row(16, 16, 223, 479, 231, 471, 0x30),
        row(16, 32, 479, 991, 495, 975, 0x40),
        row(16, 64, 991, 2015, 1023, 1983, 0x50),
        row(16, 128, 2015, 4063, 2079, 3999, 0x60),
        row(16, 256, 4063, 8159, 4191, 8031, 0x70),
    ];

    /// Transmitted A-law code of a natural magnitude code 0..=127.
    fn alaw_code(negative: bool, magnitude: u8) -> u8 {
        let sign = if negative { 0x00 } else { 0x80 };
        (sign | magnitude) ^ 0x55
    }

    /// Transmitted µ-law code of a natural magnitude code 0..=127.
    fn ulaw_code(negative: bool, magnitude: u8) -> u8 {
        let sign = if negative { 0x80 } else { 0x00 };
        !(sign | magnitude)
    }

    fn check_rows(table: &[Row], overload: u32) {
        let mut expected_lower = 0;
        let mut intervals = 0;
        for r in table {
            assert_eq!(r.lower, expected_lower, "segments are contiguous");
            assert_eq!(r.upper, r.lower + r.intervals * r.step, "end points");
            assert_eq!(r.last_output, r.first_output + (r.intervals - 1) * r.step);
            expected_lower = r.upper;
            intervals += r.intervals;
        }
        assert_eq!(expected_lower, overload);
        assert_eq!(intervals, 128, "128 magnitudes per sign");
    }

    #[test]
    fn tables_as_written_are_consistent() {
        check_rows(&ALAW_TABLE, 4096);
        check_rows(&ULAW_TABLE, 8159);
    }

    /// Every code word of a law decodes to the table's output times
    /// `scale`, and every decision interval encodes to its code word.
    fn check_law(
        table: &[Row],
        scale: i32,
        code: fn(bool, u8) -> u8,
        decode: fn(u8) -> i16,
        encode: fn(i16) -> u8,
        codes: usize,
    ) {
        let mut seen = HashSet::new();
        for r in table {
            for i in 0..r.intervals {
                let magnitude = (r.first_code + i as u8) & 0x7F;
                let output = (r.first_output + i * r.step) as i32 * scale;
                let lower = (r.lower + i * r.step) as i32 * scale;
                let upper = lower + r.step as i32 * scale - 1;
                for negative in [false, true] {
                    let c = code(negative, magnitude);
                    let sign = if negative { -1 } else { 1 };
                    assert!(seen.insert(c), "code {c:#04x} appears twice");
                    assert_eq!(i32::from(decode(c)), sign * output, "code {c:#04x}");
                    // Zero itself is positive: -0 is no negative sample.
                    for x in [lower.max(i32::from(negative)), upper] {
                        let x = (sign * x) as i16;
                        assert_eq!(encode(x), c, "{x} is in the interval of {c:#04x}");
                    }
                }
            }
        }
        assert_eq!(seen.len(), codes, "every code word checked");
    }

    #[test]
    fn alaw_matches_table_1a() {
        check_law(&ALAW_TABLE, 8, alaw_code, alaw_decode, alaw_encode, 256);
        assert_eq!(alaw_decode(alaw_code(false, 127)), 32256);
        assert_eq!(alaw_decode(alaw_code(true, 127)), -32256);
    }

    #[test]
    fn ulaw_matches_table_2a() {
        // The 1 × 1 interval [0, 1) scales to 0..=3 for positive and
        // -3..=-1 for negative samples; both zero codes decode to 0.
        let zero = &ULAW_TABLE[0];
        assert_eq!((zero.lower, zero.upper, zero.first_output), (0, 1, 0));
        assert_eq!(ulaw_decode(ulaw_code(false, zero.first_code)), 0);
        assert_eq!(ulaw_decode(ulaw_code(true, zero.first_code)), 0);
        assert_eq!([ulaw_encode(0), ulaw_encode(3)], [0xFF, 0xFF]);
        assert_eq!([ulaw_encode(-1), ulaw_encode(-3)], [0x7F, 0x7F]);
        check_law(
            &ULAW_TABLE[1..],
            4,
            ulaw_code,
            ulaw_decode,
            ulaw_encode,
            254,
        );
        assert_eq!(ulaw_decode(ulaw_code(false, 127)), 32124);
        assert_eq!(ulaw_decode(ulaw_code(true, 127)), -32124);
    }

    #[test]
    fn overload_takes_the_largest_code() {
        assert_eq!(alaw_encode(i16::MAX), alaw_code(false, 127));
        assert_eq!(alaw_encode(i16::MIN), alaw_code(true, 127));
        assert_eq!(ulaw_encode(i16::MAX), ulaw_code(false, 127));
        assert_eq!(ulaw_encode(i16::MIN), ulaw_code(true, 127));
        assert_eq!(ulaw_encode(32_636), 0x80, "past the 8159 decision value");
    }

    #[test]
    fn encoding_inverts_decoding() {
        for c in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(c)), c, "A-law {c:#04x}");
            // The negative zero 0x7F decodes to 0, which encodes as +0.
            let expected = if c == 0x7F { 0xFF } else { c };
            assert_eq!(ulaw_encode(ulaw_decode(c)), expected, "µ-law {c:#04x}");
        }
    }

    #[test]
    fn alaw_inverts_the_even_bits() {
        // The smallest positive value is 1000 0000 before inversion: 0xD5
        // on the line, the idle pattern; the largest is 1111 1111 → 0xAA.
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(ALAW_SILENCE, 0xD5);
        for c in 0..=255u8 {
            // Bit 1 (the sign) is not inverted: flipping it mirrors the value.
            assert_eq!(alaw_decode(c ^ 0x80), -alaw_decode(c));
            // Before inversion, larger codes are larger magnitudes.
            let natural = c ^ 0x55;
            if natural & 0x7F < 0x7F {
                let next = (natural + 1) ^ 0x55;
                assert!(alaw_decode(next).abs() > alaw_decode(c).abs());
            }
        }
    }

    #[test]
    fn ulaw_inverts_every_bit() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ULAW_SILENCE, 0xFF);
        for c in 0..=255u8 {
            assert_eq!(ulaw_decode(c ^ 0x80), -ulaw_decode(c));
            // On the line, smaller codes (within a sign) are larger values.
            if c & 0x7F > 0 {
                assert!(ulaw_decode(c - 1).abs() > ulaw_decode(c).abs());
            }
        }
    }

    /// Entries of G.711 Table 3 (µ → A) and Table 4 (A → µ), as natural
    /// magnitude codes 0..=127 of both laws (the Recommendation numbers
    /// A-law codes from 1; here both start at 0).
    const TABLE_3: [(u8, u8); 23] = [
        (0, 0),
        (1, 0),
        (2, 1),
        (15, 7),
        (16, 8),
        (31, 23),
        (32, 24),
        (33, 26),
        (34, 28),
        (35, 30),
        (36, 32),
        (47, 43),
        (48, 45),
        (49, 47),
        (50, 48),
        (63, 61),
        (64, 63),
        (79, 78),
        (80, 79),
        (81, 81),
        (95, 95),
        (96, 96),
        (127, 127),
    ];
    const TABLE_4: [(u8, u8); 20] = [
        (0, 1),
        (1, 3),
        (7, 15),
        (8, 16),
        (23, 31),
        (24, 32),
        (25, 32),
        (26, 33),
        (27, 33),
        (31, 35),
        (44, 48),
        (45, 48),
        (46, 49),
        (47, 49),
        (62, 64),
        (63, 64),
        (79, 80),
        (80, 80),
        (81, 81),
        (127, 127),
    ];

    #[test]
    fn conversion_follows_tables_3_and_4() {
        for negative in [false, true] {
            for (u, a) in TABLE_3 {
                let got = ulaw_to_alaw(ulaw_code(negative, u));
                assert_eq!(got, alaw_code(negative, a), "µ {u} (negative {negative})");
            }
            for (a, u) in TABLE_4 {
                let got = alaw_to_ulaw(alaw_code(negative, a));
                assert_eq!(got, ulaw_code(negative, u), "A {a} (negative {negative})");
            }
        }
    }

    #[test]
    fn conversion_round_trips_as_the_tables_imply() {
        // A → µ → A: Table 4 maps pairs of A-law codes to one µ-law code in
        // the ranges where µ-law is coarser; Table 3 brings back one of the
        // pair. These eight magnitudes move to the neighbour Table 3 picks.
        let a_changed = [
            (25, 24),
            (27, 26),
            (29, 28),
            (31, 30),
            (44, 45),
            (46, 47),
            (62, 63),
            (80, 79),
        ];
        // µ → A → µ: below 16 µ-law has twice A-law's resolution, so the
        // even codes come back as the odd one above.
        let u_changed: Vec<(u8, u8)> = (0..8).map(|i| (2 * i, 2 * i + 1)).collect();
        for negative in [false, true] {
            for m in 0..=127u8 {
                let a = alaw_code(negative, m);
                let back = ulaw_to_alaw(alaw_to_ulaw(a));
                let expected = a_changed
                    .iter()
                    .find(|(from, _)| *from == m)
                    .map_or(m, |p| p.1);
                assert_eq!(back, alaw_code(negative, expected), "A {m}");
                // A second round trip changes nothing more.
                assert_eq!(ulaw_to_alaw(alaw_to_ulaw(back)), back);

                let u = ulaw_code(negative, m);
                let back = alaw_to_ulaw(ulaw_to_alaw(u));
                let expected = u_changed
                    .iter()
                    .find(|(from, _)| *from == m)
                    .map_or(m, |p| p.1);
                assert_eq!(back, ulaw_code(negative, expected), "µ {m}");
                assert_eq!(alaw_to_ulaw(ulaw_to_alaw(back)), back);
            }
        }
    }

    #[test]
    fn conversion_keeps_the_sign_and_the_level() {
        for c in 0..=255u8 {
            let (a, u) = (ulaw_to_alaw(c), alaw_to_ulaw(c));
            // On the line, bit 1 is 1 for positive values in both laws.
            assert_eq!(a & 0x80, c & 0x80, "µ {c:#04x}");
            assert_eq!(u & 0x80, c & 0x80, "A {c:#04x}");
            // The converted value is within one step of the other law (its
            // segment's interval size, scaled to 16 bits) of the original.
            let ul = i32::from(ulaw_decode(c));
            let a_segment = ((a ^ 0x55) >> 4) & 7;
            let a_step = 16 << a_segment.saturating_sub(1);
            assert!(
                (i32::from(alaw_decode(a)) - ul).abs() <= a_step,
                "µ {c:#04x}"
            );
            let al = i32::from(alaw_decode(c));
            let u_step = 8 << ((!u >> 4) & 7);
            assert!(
                (i32::from(ulaw_decode(u)) - al).abs() <= u_step,
                "A {c:#04x}"
            );
        }
    }

    #[test]
    fn codec_frames() {
        assert_eq!(Codec::Pcmu.payload_type(), 0);
        assert_eq!(Codec::Pcma.payload_type(), 8);
        assert_eq!(Codec::from_payload_type(0), Some(Codec::Pcmu));
        assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
        assert_eq!(Codec::from_payload_type(9), None);
        assert_eq!(Codec::Pcma.encoding_name(), "PCMA");

        let samples: Vec<i16> = (0..FRAME_SAMPLES as i32)
            .map(|i| ((i * 397) % 20000 - 10000) as i16)
            .collect();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let payload = codec.encode(&samples);
            assert_eq!(payload.len(), FRAME_SAMPLES);
            let decoded = codec.decode(&payload);
            // Decoding a decoded frame's encoding is exact.
            assert_eq!(codec.decode(&codec.encode(&decoded)), decoded);
            for (x, y) in samples.iter().zip(&decoded) {
                let err = (i32::from(*x) - i32::from(*y)).abs();
                assert!(err <= i32::from(x.unsigned_abs()) / 16 + 16, "{x} → {y}");
            }
            assert_eq!(
                codec.decode(&[codec.silence()]),
                vec![codec.decode_sample(codec.silence())]
            );
            assert!(codec.decode_sample(codec.silence()).abs() <= 8);
        }
    }

    #[test]
    fn slice_helpers_stop_at_the_shorter_slice() {
        let mut out = [0i16; 4];
        assert_eq!(decode_ulaw_into(&[0x80, 0x00], &mut out), 2);
        assert_eq!(out, [32124, -32124, 0, 0]);
        assert_eq!(decode_alaw_into(&[0xAA; 6], &mut out), 4);
        assert_eq!(out, [32256; 4]);
        let mut codes = [0u8; 2];
        assert_eq!(encode_ulaw_into(&[0, 0, 0], &mut codes), 2);
        assert_eq!(codes, [0xFF, 0xFF]);
        assert_eq!(encode_alaw_into(&[0], &mut codes), 1);
        assert_eq!(codes, [0xD5, 0xFF]);
    }

    #[test]
    fn transcoding_a_payload() {
        let ulaw: Vec<u8> = (0..=255).collect();
        let mut alaw = vec![0; 256];
        assert_eq!(
            Codec::Pcmu.transcode_into(Codec::Pcma, &ulaw, &mut alaw),
            256
        );
        assert!(alaw.iter().zip(&ulaw).all(|(&a, &u)| a == ulaw_to_alaw(u)));
        let mut back = vec![0; 300];
        assert_eq!(
            Codec::Pcma.transcode_into(Codec::Pcmu, &alaw, &mut back),
            256
        );
        assert!(back.iter().zip(&alaw).all(|(&u, &a)| u == alaw_to_ulaw(a)));
        let mut copy = [0u8; 3];
        assert_eq!(
            Codec::Pcma.transcode_into(Codec::Pcma, &[1, 2, 3, 4], &mut copy),
            3
        );
        assert_eq!(copy, [1, 2, 3]);
    }
}
