//! Outbound RTP stream continuity (RFC 3550 §5.1, §8.2): what one leg's
//! phone receives from denwa is a single RTP stream, with denwa's own SSRC,
//! a sequence number that grows by one per packet and a timestamp that
//! follows real time, whatever the media's source is at the moment (the
//! other phone, a new phone after a transfer, a prompt player, music on
//! hold, the mixer).
//!
//! Owns: the SSRC, sequence number and timestamp counters of one outgoing
//! stream ([`OutboundStream`]), the rewrite of relayed packets in place and
//! the building of packets denwa generates, and the validation of an RTP
//! header ([`payload_range`]).
//!
//! Must not: read the clock (time is an argument), touch sockets, look at
//! payloads or decide which source plays. Relayed packets come from the
//! network: a malformed one is an [`RtpError`], never a panic.
//!
//! # Mapping
//!
//! Within one source the stream keeps the source's own sequence gaps and
//! timestamp deltas: loss stays visible to the phone, late packets keep
//! their place, and RFC 4733 events keep their repeated timestamp. When the
//! source changes (another [`SourceId`], or the same source under a new
//! SSRC, or a sequence jump larger than [`MAX_DROPOUT`]) the next packet
//! takes the sequence number after the highest sent and a timestamp ahead of
//! the newest one sent by the wall-clock time since that one first went out
//! (8 per millisecond, at least one 20 ms frame), and carries the marker bit
//! so the phone's jitter buffer resynchronises.
//!
//! Packets denwa generates ([`OutboundStream::build`]) take their timestamp
//! from the `now_ms` given: a player passes the media time of each frame
//! (20 ms apart), an RFC 4733 sender passes the event's start for every
//! packet of the event.

use std::ops::Range;

use thiserror::Error;

/// Length of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;
/// Timestamp units per millisecond at the 8000 Hz clock of G.711.
pub const TIMESTAMP_PER_MS: u64 = 8;
/// Timestamp units in one 20 ms frame: the least a switch advances.
pub const FRAME_TIMESTAMP_STEP: u32 = 160;
/// A forward sequence jump this large within one source is a restart.
pub const MAX_DROPOUT: u16 = 3000;
/// How far behind the highest sequence number a packet may arrive and still
/// be relayed.
pub const MAX_MISORDER: u16 = 100;

const VERSION: u8 = 2;
const MARKER: u8 = 0x80;

/// Names where a packet comes from; the caller chooses the numbers and
/// keeps one per origin (a leg, a player, the mixer). A source is either
/// relayed ([`OutboundStream::rewrite`]) or generated
/// ([`OutboundStream::build`]), not both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId(pub u64);

/// Why a packet was not rewritten; the packet is left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    #[error("{len} bytes are too short for an RTP header")]
    TooShort { len: usize },
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("CSRC list or header extension runs past the packet")]
    HeaderOverrun,
    #[error("RTP padding count is zero or longer than the payload")]
    BadPadding,
    #[error("packet is older than its source's first packet in this stream")]
    Predates,
}

/// Validates the RTP header of `packet` (version, CSRC list, extension,
/// padding) and returns where the payload lies.
pub fn payload_range(packet: &[u8]) -> Result<Range<usize>, RtpError> {
    let len = packet.len();
    let Some(fixed) = packet.first_chunk::<RTP_HEADER_LEN>() else {
        return Err(RtpError::TooShort { len });
    };
    let version = fixed[0] >> 6;
    if version != VERSION {
        return Err(RtpError::BadVersion(version));
    }
    let csrc_count = usize::from(fixed[0] & 0x0f);
    let mut header = RTP_HEADER_LEN + 4 * csrc_count;
    if fixed[0] & 0x10 != 0 {
        let words = packet
            .get(header + 2..)
            .and_then(|rest| rest.first_chunk::<2>())
            .ok_or(RtpError::HeaderOverrun)?;
        header += 4 + 4 * usize::from(u16::from_be_bytes(*words));
    }
    if header > len {
        return Err(RtpError::HeaderOverrun);
    }
    let mut end = len;
    if fixed[0] & 0x20 != 0 {
        let padding = usize::from(packet.last().copied().unwrap_or(0));
        if padding == 0 || header + padding > len {
            return Err(RtpError::BadPadding);
        }
        end = len - padding;
    }
    Ok(header..end)
}

/// Sequence number a is after b (RFC 1982 serial arithmetic).
fn seq_after(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

fn ts_after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// `now_ms` in timestamp units, modulo 2^32.
fn ms_to_timestamp(ms: u64) -> u32 {
    (ms.wrapping_mul(TIMESTAMP_PER_MS) & 0xffff_ffff) as u32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Relayed from a peer whose packets carry `ssrc`.
    Relayed {
        ssrc: u32,
        /// The source's sequence number of its first packet in this mapping.
        first_seq: u16,
        /// The source's highest sequence number seen in this mapping.
        highest_seq: u16,
    },
    Generated,
}

/// How the current source's numbers become the stream's.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    source: SourceId,
    origin: Origin,
    seq_offset: u16,
    ts_offset: u32,
}

/// The newest numbers the stream has sent.
#[derive(Debug, Clone, Copy)]
struct Sent {
    highest_seq: u16,
    newest_ts: u32,
    /// When a packet with `newest_ts` first went out.
    newest_ts_ms: u64,
}

/// What a relayed packet is to the current mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    Continues,
    Late,
    TooLate,
    Restarts,
}

/// One leg's outgoing RTP stream. See the module docs.
#[derive(Debug, Clone)]
pub struct OutboundStream {
    ssrc: u32,
    initial_seq: u16,
    initial_ts: u32,
    mapping: Option<Mapping>,
    sent: Option<Sent>,
    packets_sent: u64,
    octets_sent: u64,
}

impl OutboundStream {
    /// A stream that will send as `ssrc`, its first packet numbered
    /// `initial_seq` with timestamp `initial_ts` (both random per RFC 3550).
    pub fn new(ssrc: u32, initial_seq: u16, initial_ts: u32) -> OutboundStream {
        OutboundStream {
            ssrc,
            initial_seq,
            initial_ts,
            mapping: None,
            sent: None,
            packets_sent: 0,
            octets_sent: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Packets sent so far (the RTCP sender report's packet count).
    pub fn packets_sent(&self) -> u64 {
        self.packets_sent
    }

    /// Payload octets sent so far, without headers or padding (the RTCP
    /// sender report's octet count).
    pub fn octets_sent(&self) -> u64 {
        self.octets_sent
    }

    /// The stream's timestamp at `now_ms`, for a sender report: the newest
    /// timestamp sent, advanced by the time since it first went out.
    pub fn rtp_timestamp_at(&self, now_ms: u64) -> u32 {
        match self.sent {
            Some(sent) => sent
                .newest_ts
                .wrapping_add(ms_to_timestamp(now_ms.saturating_sub(sent.newest_ts_ms))),
            None => self.initial_ts,
        }
    }

    /// Rewrites SSRC, sequence number, timestamp (and, on a source switch,
    /// the marker bit) of the relayed `packet` in place. A packet that does
    /// not validate, or a late one older than its source's first packet in
    /// this stream, is left unchanged and should be dropped.
    pub fn rewrite(
        &mut self,
        packet: &mut [u8],
        source: SourceId,
        now_ms: u64,
    ) -> Result<(), RtpError> {
        let payload = payload_range(packet)?;
        let len = packet.len();
        let header = packet
            .first_chunk_mut::<RTP_HEADER_LEN>()
            .ok_or(RtpError::TooShort { len })?;
        let seq = u16::from_be_bytes([header[2], header[3]]);
        let ts = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let fit = self.fit(source, ssrc, seq);
        let mapping = match (fit, self.mapping) {
            (Fit::TooLate, _) => return Err(RtpError::Predates),
            (Fit::Continues | Fit::Late, Some(mapping)) => mapping,
            _ => self.switch(source, Origin::relayed(ssrc, seq), Some(seq), ts, now_ms),
        };
        if let (Fit::Continues, Some(m)) = (fit, self.mapping.as_mut()) {
            m.origin = m.origin.with_highest(seq);
        }
        let out_seq = seq.wrapping_add(mapping.seq_offset);
        let out_ts = ts.wrapping_add(mapping.ts_offset);
        header[2..4].copy_from_slice(&out_seq.to_be_bytes());
        header[4..8].copy_from_slice(&out_ts.to_be_bytes());
        header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        if fit == Fit::Restarts {
            header[1] |= MARKER;
        }
        self.record(out_seq, out_ts, now_ms, payload.len());
        Ok(())
    }

    /// Builds a packet denwa generates itself (player, mixer, RFC 4733
    /// sender): next sequence number, timestamp from `now_ms` within the
    /// source, marker as given (always set on a source's first packet).
    /// Only the low seven bits of `payload_type` are used.
    pub fn build(
        &mut self,
        payload_type: u8,
        payload: &[u8],
        marker: bool,
        source: SourceId,
        now_ms: u64,
    ) -> Vec<u8> {
        let ts = ms_to_timestamp(now_ms);
        let current = self
            .mapping
            .filter(|m| m.source == source && m.origin == Origin::Generated);
        let (mapping, first) = match current {
            Some(mapping) => (mapping, false),
            None => (
                self.switch(source, Origin::Generated, None, ts, now_ms),
                true,
            ),
        };
        let out_seq = self.next_seq();
        let out_ts = ts.wrapping_add(mapping.ts_offset);
        let mut packet = Vec::with_capacity(RTP_HEADER_LEN + payload.len());
        packet.push(VERSION << 6);
        let marker = if marker || first { MARKER } else { 0 };
        packet.push(marker | (payload_type & 0x7f));
        packet.extend_from_slice(&out_seq.to_be_bytes());
        packet.extend_from_slice(&out_ts.to_be_bytes());
        packet.extend_from_slice(&self.ssrc.to_be_bytes());
        packet.extend_from_slice(payload);
        self.record(out_seq, out_ts, now_ms, payload.len());
        packet
    }

    /// Where a relayed packet with `ssrc` and `seq` from `source` stands.
    fn fit(&self, source: SourceId, ssrc: u32, seq: u16) -> Fit {
        let Some(mapping) = self.mapping.filter(|m| m.source == source) else {
            return Fit::Restarts;
        };
        let Origin::Relayed {
            ssrc: mapped,
            first_seq,
            highest_seq,
        } = mapping.origin
        else {
            return Fit::Restarts;
        };
        if mapped != ssrc {
            return Fit::Restarts;
        }
        let ahead = seq.wrapping_sub(highest_seq);
        let behind = highest_seq.wrapping_sub(seq);
        if ahead < MAX_DROPOUT {
            Fit::Continues
        } else if behind > MAX_MISORDER {
            Fit::Restarts
        } else if seq_after(first_seq, seq) {
            Fit::TooLate
        } else {
            Fit::Late
        }
    }

    /// Starts mapping `source` so that its packet (`seq`, `ts`) goes out
    /// right after what has been sent.
    fn switch(
        &mut self,
        source: SourceId,
        origin: Origin,
        seq: Option<u16>,
        ts: u32,
        now_ms: u64,
    ) -> Mapping {
        let out_seq = self.next_seq();
        let out_ts = match self.sent {
            None => self.initial_ts,
            Some(sent) => {
                let elapsed = ms_to_timestamp(now_ms.saturating_sub(sent.newest_ts_ms));
                sent.newest_ts
                    .wrapping_add(elapsed.max(FRAME_TIMESTAMP_STEP))
            }
        };
        let mapping = Mapping {
            source,
            origin,
            seq_offset: seq.map_or(0, |seq| out_seq.wrapping_sub(seq)),
            ts_offset: out_ts.wrapping_sub(ts),
        };
        self.mapping = Some(mapping);
        mapping
    }

    fn next_seq(&self) -> u16 {
        self.sent
            .map_or(self.initial_seq, |sent| sent.highest_seq.wrapping_add(1))
    }

    fn record(&mut self, seq: u16, ts: u32, now_ms: u64, payload_len: usize) {
        self.packets_sent += 1;
        self.octets_sent += u64::try_from(payload_len).unwrap_or(0);
        let sent = self.sent.get_or_insert(Sent {
            highest_seq: seq,
            newest_ts: ts,
            newest_ts_ms: now_ms,
        });
        if seq_after(seq, sent.highest_seq) {
            sent.highest_seq = seq;
        }
        if ts_after(ts, sent.newest_ts) {
            sent.newest_ts = ts;
            sent.newest_ts_ms = now_ms;
        }
    }
}

impl Origin {
    fn relayed(ssrc: u32, seq: u16) -> Origin {
        Origin::Relayed {
            ssrc,
            first_seq: seq,
            highest_seq: seq,
        }
    }

    fn with_highest(self, seq: u16) -> Origin {
        match self {
            Origin::Relayed {
                ssrc,
                first_seq,
                highest_seq,
            } if seq_after(seq, highest_seq) => Origin::Relayed {
                ssrc,
                first_seq,
                highest_seq: seq,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rtp_rs::RtpReader;

    const DENWA: u32 = 0xd3_4a_00_01;
    const PHONE: SourceId = SourceId(1);
    const OTHER: SourceId = SourceId(2);
    const PLAYER: SourceId = SourceId(3);
    const PT_PCMU: u8 = 0;
    const PT_EVENT: u8 = 101;

    fn rtp(seq: u16, ts: u32, ssrc: u32, marker: bool) -> Vec<u8> {
        let mut packet = vec![0x80, PT_PCMU | if marker { MARKER } else { 0 }];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&ts.to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(&[0xff; 160]);
        packet
    }

    /// (seq, timestamp, marker) as an independent parser reads them; the
    /// SSRC must be denwa's.
    fn read(packet: &[u8]) -> (u16, u32, bool) {
        let reader = RtpReader::new(packet).expect("valid RTP");
        assert_eq!(reader.ssrc(), DENWA);
        (
            u16::from(reader.sequence_number()),
            reader.timestamp(),
            reader.mark(),
        )
    }

    fn relay(
        stream: &mut OutboundStream,
        source: SourceId,
        packet: Vec<u8>,
        now_ms: u64,
    ) -> (u16, u32, bool) {
        let mut packet = packet;
        stream
            .rewrite(&mut packet, source, now_ms)
            .expect("rewritten");
        read(&packet)
    }

    #[test]
    fn first_packet_takes_the_initial_numbers_and_the_marker() {
        let mut stream = OutboundStream::new(DENWA, 1000, 50_000);
        let got = relay(&mut stream, PHONE, rtp(7, 123_456, 0xaaaa, false), 0);
        assert_eq!(got, (1000, 50_000, true));
        let got = relay(&mut stream, PHONE, rtp(8, 123_616, 0xaaaa, false), 20);
        assert_eq!(got, (1001, 50_160, false));
        assert_eq!((stream.packets_sent(), stream.octets_sent()), (2, 320));
    }

    #[test]
    fn gaps_and_timestamp_deltas_of_a_source_are_kept() {
        let mut stream = OutboundStream::new(DENWA, 10, 0);
        relay(&mut stream, PHONE, rtp(100, 8000, 0xaaaa, false), 0);
        // Two packets lost, then silence suppression skipped 1 s.
        assert_eq!(
            relay(&mut stream, PHONE, rtp(103, 8480, 0xaaaa, false), 60),
            (13, 480, false)
        );
        assert_eq!(
            relay(&mut stream, PHONE, rtp(104, 16_480, 0xaaaa, true), 1060),
            (14, 8480, true)
        );
    }

    #[test]
    fn telephone_events_keep_their_repeated_timestamp() {
        let mut stream = OutboundStream::new(DENWA, 0, 1_000_000);
        relay(&mut stream, PHONE, rtp(50, 4000, 0xaaaa, false), 0);
        let mut out = Vec::new();
        for (i, seq) in (51..57).enumerate() {
            let mut packet = rtp(seq, 4160, 0xaaaa, i == 0);
            packet[1] = (packet[1] & MARKER) | PT_EVENT;
            stream
                .rewrite(&mut packet, PHONE, 20 + 50 * i as u64)
                .unwrap();
            out.push(read(&packet));
        }
        assert!(out.iter().all(|&(_, ts, _)| ts == 1_000_160), "{out:?}");
        let markers: Vec<bool> = out.iter().map(|o| o.2).collect();
        assert_eq!(markers, [true, false, false, false, false, false]);
        let seqs: Vec<u16> = out.iter().map(|o| o.0).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn reordering_within_a_source_keeps_order_information() {
        let mut stream = OutboundStream::new(DENWA, 500, 0);
        relay(&mut stream, PHONE, rtp(1, 0, 0xaaaa, false), 0);
        assert_eq!(
            relay(&mut stream, PHONE, rtp(3, 320, 0xaaaa, false), 40).0,
            502
        );
        assert_eq!(
            relay(&mut stream, PHONE, rtp(2, 160, 0xaaaa, false), 41),
            (501, 160, false)
        );
        assert_eq!(
            relay(&mut stream, PHONE, rtp(4, 480, 0xaaaa, false), 60).0,
            503
        );
    }

    #[test]
    fn switch_continues_sequence_and_follows_the_wall_clock() {
        let mut stream = OutboundStream::new(DENWA, 0, 0);
        for i in 0..5u16 {
            relay(
                &mut stream,
                PHONE,
                rtp(200 + i, 160 * u32::from(i), 0xaaaa, false),
                20 * u64::from(i),
            );
        }
        // The last packet (ts 640) went out at 80 ms; the transfer target
        // starts 300 ms later with numbers of its own.
        let got = relay(&mut stream, OTHER, rtp(9, 777_777, 0xbbbb, false), 380);
        assert_eq!(got, (5, 640 + 300 * 8, true));
        let got = relay(&mut stream, OTHER, rtp(10, 777_937, 0xbbbb, false), 400);
        assert_eq!(got, (6, 640 + 2400 + 160, false));
        // A switch sooner than a frame still moves on by a frame.
        let got = relay(&mut stream, PHONE, rtp(205, 800, 0xaaaa, false), 401);
        assert_eq!(got, (7, 3200 + 160, true));
    }

    #[test]
    fn switches_back_and_forth_stay_one_stream() {
        let mut stream = OutboundStream::new(DENWA, 65_530, 0);
        let mut last: Option<(u16, u32)> = None;
        let mut now = 0;
        for round in 0..6u16 {
            let (source, ssrc) = if round % 2 == 0 {
                (PHONE, 0xaaaa)
            } else {
                (OTHER, 0xbbbb)
            };
            for i in 0..4u16 {
                let seq = round.wrapping_mul(1000).wrapping_add(i);
                let (out_seq, out_ts, marker) = relay(
                    &mut stream,
                    source,
                    rtp(seq, u32::from(seq) * 160, ssrc, false),
                    now,
                );
                assert_eq!(marker, i == 0, "marker only when the source changes");
                if let Some((s, t)) = last {
                    assert_eq!(out_seq, s.wrapping_add(1));
                    assert_eq!(out_ts, t.wrapping_add(160), "round {round} packet {i}");
                }
                last = Some((out_seq, out_ts));
                now += 20;
            }
        }
        assert_eq!(last.unwrap().0, 65_530u16.wrapping_add(23));
    }

    #[test]
    fn sequence_and_timestamp_wrap_on_both_sides() {
        let mut stream = OutboundStream::new(DENWA, 65_534, u32::MAX - 200);
        let mut out = Vec::new();
        for i in 0..4u16 {
            let seq = 65_535u16.wrapping_add(i);
            let ts = (u32::MAX - 100).wrapping_add(160 * u32::from(i));
            out.push(relay(
                &mut stream,
                PHONE,
                rtp(seq, ts, 0xaaaa, false),
                20 * u64::from(i),
            ));
        }
        let seqs: Vec<u16> = out.iter().map(|o| o.0).collect();
        assert_eq!(seqs, [65_534, 65_535, 0, 1]);
        let ts: Vec<u32> = out.iter().map(|o| o.1).collect();
        assert_eq!(ts, [u32::MAX - 200, u32::MAX - 40, 119, 279]);
        // A late packet across the wrap still finds its place.
        let got = relay(
            &mut stream,
            PHONE,
            rtp(65_535, u32::MAX - 100, 0xaaaa, false),
            81,
        );
        assert_eq!(
            got,
            (65_534, u32::MAX - 200, false),
            "duplicate of the first"
        );
        let got = relay(&mut stream, PLAYER, rtp(0, 0, 0xcccc, false), 100);
        assert_eq!(got, (2, 279 + 40 * 8, true));
    }

    #[test]
    fn late_packet_of_a_source_before_its_switch_is_refused() {
        let mut stream = OutboundStream::new(DENWA, 0, 0);
        relay(&mut stream, OTHER, rtp(1, 0, 0xbbbb, false), 0);
        relay(&mut stream, PHONE, rtp(40, 6400, 0xaaaa, false), 20);
        relay(&mut stream, PHONE, rtp(41, 6560, 0xaaaa, false), 40);
        let original = rtp(39, 6240, 0xaaaa, false);
        let mut packet = original.clone();
        assert_eq!(
            stream.rewrite(&mut packet, PHONE, 41),
            Err(RtpError::Predates)
        );
        assert_eq!(packet, original, "left unchanged");
        assert_eq!(
            relay(&mut stream, PHONE, rtp(42, 6720, 0xaaaa, false), 60).0,
            3
        );
    }

    #[test]
    fn new_ssrc_or_big_jump_within_a_source_restarts_the_mapping() {
        let mut stream = OutboundStream::new(DENWA, 0, 0);
        relay(&mut stream, PHONE, rtp(1, 0, 0xaaaa, false), 0);
        // The phone came back from hold under a new SSRC.
        assert_eq!(
            relay(&mut stream, PHONE, rtp(9000, 5, 0xaaab, false), 20),
            (1, 160, true)
        );
        // Same SSRC, but numbers far ahead: a restart, not 20,000 losses.
        assert_eq!(
            relay(&mut stream, PHONE, rtp(29_000, 9, 0xaaab, false), 40),
            (2, 320, true)
        );
        assert_eq!(
            relay(&mut stream, PHONE, rtp(29_001, 169, 0xaaab, false), 60),
            (3, 480, false)
        );
    }

    #[test]
    fn built_packets_share_the_counters() {
        let mut stream = OutboundStream::new(DENWA, 100, 10_000);
        relay(&mut stream, PHONE, rtp(1, 0, 0xaaaa, false), 0);
        // A prompt starts 30 ms later and plays three frames.
        let mut out = Vec::new();
        for i in 0..3u64 {
            let packet = stream.build(PT_PCMU, &[0xff; 160], false, PLAYER, 30 + 20 * i);
            let reader = RtpReader::new(&packet).unwrap();
            assert_eq!(reader.payload_type(), PT_PCMU);
            assert_eq!(reader.payload(), &[0xff; 160][..]);
            out.push(read(&packet));
        }
        assert_eq!(
            out,
            [
                (101, 10_240, true),
                (102, 10_400, false),
                (103, 10_560, false)
            ]
        );
        // An RFC 4733 sender: every packet of one event (sent at 200, 250
        // and 300 ms) gives the event's start, 200 ms.
        for i in 0..3u16 {
            let event = [1, 0x0a, 0, 160];
            let packet = stream.build(PT_EVENT, &event, i == 0, SourceId(4), 200);
            let (seq, ts, marker) = read(&packet);
            assert_eq!((seq, marker), (104 + i, i == 0));
            assert_eq!(ts, 10_560 + (200 - 70) * 8, "event timestamp");
        }
        let got = relay(&mut stream, PHONE, rtp(2, 160, 0xaaaa, false), 320);
        assert_eq!(got, (107, 11_600 + (320 - 200) * 8, true));
        assert_eq!(stream.packets_sent(), 8);
        assert_eq!(stream.octets_sent(), 5 * 160 + 3 * 4);
        assert_eq!(stream.rtp_timestamp_at(340), 12_560 + 160);
        assert_eq!(OutboundStream::new(DENWA, 0, 77).rtp_timestamp_at(5), 77);
    }

    #[test]
    fn header_validation() {
        let good = rtp(1, 2, 3, false);
        assert_eq!(payload_range(&good), Ok(12..172));
        assert_eq!(
            payload_range(&good[..11]),
            Err(RtpError::TooShort { len: 11 })
        );
        let mut bad = good.clone();
        bad[0] = 0x40;
        assert_eq!(payload_range(&bad), Err(RtpError::BadVersion(1)));
        let mut csrc = good[..20].to_vec();
        csrc[0] = 0x82;
        assert_eq!(payload_range(&csrc), Ok(20..20));
        csrc[0] = 0x83;
        assert_eq!(payload_range(&csrc), Err(RtpError::HeaderOverrun));
        let mut ext = good[..12].to_vec();
        ext[0] = 0x90;
        assert_eq!(payload_range(&ext), Err(RtpError::HeaderOverrun));
        ext.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4, 9]);
        assert_eq!(payload_range(&ext), Ok(20..21));
        ext[15] = 2;
        assert_eq!(payload_range(&ext), Err(RtpError::HeaderOverrun));
        let mut padded = good.clone();
        padded[0] = 0xa0;
        *padded.last_mut().unwrap() = 4;
        assert_eq!(payload_range(&padded), Ok(12..168));
        *padded.last_mut().unwrap() = 0;
        assert_eq!(payload_range(&padded), Err(RtpError::BadPadding));
        *padded.last_mut().unwrap() = 161;
        assert_eq!(payload_range(&padded), Err(RtpError::BadPadding));
        let mut stream = OutboundStream::new(DENWA, 0, 0);
        assert_eq!(
            stream.rewrite(&mut bad, PHONE, 0),
            Err(RtpError::BadVersion(1))
        );
        assert_eq!(stream.packets_sent(), 0);
    }

    #[test]
    fn random_bytes_never_panic_and_valid_ones_stay_consistent() {
        let mut rng = StdRng::seed_from_u64(0xb17e5);
        let mut stream = OutboundStream::new(DENWA, 0, 0);
        let mut accepted = 0u64;
        for i in 0..20_000u64 {
            let len = rng.gen_range(0..64);
            let mut packet: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if rng.gen_bool(0.5) {
                if let Some(first) = packet.first_mut() {
                    *first = (*first & 0x3f) | 0x80;
                }
            }
            let source = SourceId(rng.gen_range(0..3));
            let ours = payload_range(&packet).is_ok();
            let theirs = RtpReader::new(&packet).is_ok();
            let len = packet.len();
            match stream.rewrite(&mut packet, source, i) {
                Ok(()) => {
                    accepted += 1;
                    assert!(ours);
                    assert_eq!(packet.len(), len);
                    read(&packet);
                }
                Err(RtpError::Predates) => assert!(ours),
                Err(_) => assert!(!ours),
            }
            if ours != theirs {
                // The two readers differ only on a zero padding count,
                // which cannot count itself (RFC 3550 §5.1).
                assert!(!ours && packet.last() == Some(&0));
                assert!(packet.first().is_some_and(|b| b & 0x20 != 0));
            }
        }
        assert_eq!(stream.packets_sent(), accepted);
        assert!(accepted > 1000, "{accepted}");
    }
}
