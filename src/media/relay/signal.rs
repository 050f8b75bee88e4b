//! What a media worker does with a leg's audio besides forwarding it:
//! line quality, DTMF detection, recording, and playing to the leg.
//!
//! Owns: per leg, the negotiated codec, the RFC 4733 receiver, the in-band
//! detector, the line-quality meter, the outgoing stream state (once denwa
//! has sent that leg anything of its own) and the player; per call, the
//! recording.
//!
//! Must not: block, or decode on the plain relay path when nothing asked
//! for audio (decoding happens only for a recording or in-band detection).
//! Everything here runs on the worker thread, fed with the worker's clock.

use rtp_rs::RtpReader;
use tokio::sync::mpsc;

use super::{Leg, MediaEvent};
use crate::media::dtmf::{DigitEvent, InbandDetector, TelephoneEventReceiver};
use crate::media::g711::{Codec, FRAME_SAMPLES};
use crate::media::player::Player;
use crate::media::recording::{RecordingHandle, SAMPLE_RATE};
use crate::media::rtcp::{LineQuality, LineQualityMeter};
use crate::media::rtp_stream::{payload_range, OutboundStream, SourceId};

/// The codec and DTMF payload type a leg negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegCodec {
    /// PCMU or PCMA; `None` when the leg uses something denwa cannot decode.
    pub codec: Option<Codec>,
    /// RFC 4733 telephone-event payload type, if negotiated.
    pub telephone_event: Option<u8>,
}

/// Where a packet sent to a leg came from, for stream continuity.
pub(super) const FROM_PLAYER: SourceId = SourceId(100);

pub(super) fn relayed_from(leg: Leg) -> SourceId {
    match leg {
        Leg::A => SourceId(1),
        Leg::B => SourceId(2),
    }
}

/// One leg's signal state on the worker.
pub(super) struct LegSignal {
    pub codec: LegCodec,
    pub quality: LineQualityMeter,
    rfc4733: TelephoneEventReceiver,
    inband: Option<InbandDetector>,
    /// Set once denwa sent this leg a packet of its own (a player): from
    /// then on every packet to the leg goes through it.
    pub out: Option<OutboundStream>,
    pub player: Option<Player>,
    /// The first player frame goes out with the marker bit.
    player_fresh: bool,
    /// SSRC, sequence number and timestamp of the last packet relayed to
    /// the leg unchanged, and when.
    last_relayed: Option<(u32, u16, u32, u64)>,
    /// Packets and payload octets relayed to the leg unchanged under that
    /// SSRC: where denwa's own stream, continuing it, starts its counts.
    relayed_counts: (u64, u64),
    /// Where this leg's audio is decoded for the recording and detector.
    decoded: Decoded,
}

/// A leg's decode buffer, kept between packets so that no packet pays for
/// zeroing one.
#[derive(Default)]
struct Decoded(Vec<i16>);

impl Decoded {
    /// The most samples decoded from one packet (80 ms of G.711).
    const MAX: usize = 4 * FRAME_SAMPLES;

    /// `payload` decoded, at most [`Self::MAX`] samples.
    fn fill(&mut self, codec: Codec, payload: &[u8]) -> &[i16] {
        let n = payload.len().min(Self::MAX);
        if self.0.len() < n {
            self.0.resize(n, 0);
        }
        let Some(samples) = self.0.get_mut(..n) else {
            return &[];
        };
        let n = codec.decode_into(payload, samples);
        self.0.get(..n).unwrap_or_default()
    }
}

impl LegSignal {
    pub fn new() -> LegSignal {
        LegSignal {
            codec: LegCodec::default(),
            quality: LineQualityMeter::new(),
            rfc4733: TelephoneEventReceiver::new(8000),
            inband: None,
            out: None,
            player: None,
            player_fresh: false,
            last_relayed: None,
            relayed_counts: (0, 0),
            decoded: Decoded::default(),
        }
    }

    pub fn set_inband(&mut self, on: bool) {
        self.inband = on.then(InbandDetector::new);
    }

    /// The in-band detector hears a key being held now.
    pub fn inband_pressing(&self) -> bool {
        self.inband.as_ref().is_some_and(InbandDetector::pressing)
    }

    /// Notes the header of a packet relayed to this leg unchanged, so that
    /// denwa's own stream, when it starts, continues it.
    pub fn note_relayed(&mut self, packet: &[u8], now_ms: u64) {
        if let Some(h) = packet.get(2..12) {
            let seq = u16::from_be_bytes([h[0], h[1]]);
            let ts = u32::from_be_bytes([h[2], h[3], h[4], h[5]]);
            let ssrc = u32::from_be_bytes([h[6], h[7], h[8], h[9]]);
            if self.last_relayed.map(|(last, ..)| last) != Some(ssrc) {
                self.relayed_counts = (0, 0);
            }
            let octets = payload_range(packet).map_or(0, |r| r.len() as u64);
            self.relayed_counts.0 += 1;
            self.relayed_counts.1 += octets;
            self.last_relayed = Some((ssrc, seq, ts, now_ms));
        }
    }

    /// The sender report's figures for what the leg receives from denwa:
    /// its stream's SSRC, packets and payload octets since the stream
    /// began (counting what was relayed under the same SSRC before denwa
    /// took it over). `None` while denwa only relays to the leg.
    pub fn sent_counts(&self) -> Option<(u32, u64, u64)> {
        let out = self.out.as_ref()?;
        let continued = self
            .last_relayed
            .is_some_and(|(ssrc, ..)| ssrc == out.ssrc());
        let (packets, octets) = if continued {
            self.relayed_counts
        } else {
            (0, 0)
        };
        Some((
            out.ssrc(),
            packets + out.packets_sent(),
            octets + out.octets_sent(),
        ))
    }

    /// From now on the leg gets denwa's own stream: the stream it was
    /// getting, continued (same SSRC, next sequence number, timestamp
    /// advanced by the time since), or a fresh one if it got nothing yet.
    pub fn ensure_out_stream(&mut self, now_ms: u64) {
        if self.out.is_some() {
            return;
        }
        self.out = Some(match self.last_relayed {
            Some((ssrc, seq, ts, at_ms)) => {
                let elapsed = u32::try_from(now_ms.saturating_sub(at_ms).saturating_mul(8))
                    .unwrap_or(u32::MAX);
                OutboundStream::new(
                    ssrc,
                    seq.wrapping_add(1),
                    ts.wrapping_add(elapsed.max(FRAME_SAMPLES as u32)),
                )
            }
            None => {
                let seed = rand::random::<u32>();
                OutboundStream::new(seed, seed as u16, seed)
            }
        });
    }

    pub fn start_player(&mut self, player: Player, now_ms: u64) {
        self.ensure_out_stream(now_ms);
        self.player = Some(player);
        self.player_fresh = true;
    }

    /// The next packet for the leg from its player, or `None` when the
    /// player is done (and then removed) or the leg's codec is unknown.
    pub fn next_player_packet(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        let codec = self.codec.codec?;
        let frame = self.player.as_mut()?.next_frame()?;
        let mut payload = [0u8; FRAME_SAMPLES];
        codec.encode_into(&frame, &mut payload);
        let marker = std::mem::take(&mut self.player_fresh);
        let out = self.out.as_mut()?;
        Some(out.build(codec.payload_type(), &payload, marker, FROM_PLAYER, now_ms))
    }

    /// An RTCP packet from this leg's phone: its reports about the stream
    /// it receives from denwa (ours, or the one relayed to it).
    pub fn hear_rtcp(&mut self, packet: &[u8], now_ms: u64) {
        let ssrc = self
            .out
            .as_ref()
            .map(OutboundStream::ssrc)
            .or(self.last_relayed.map(|(ssrc, ..)| ssrc));
        if let Some(ssrc) = ssrc {
            // A malformed report teaches nothing; it is still relayed or
            // dropped like any RTCP.
            let _ = self.quality.on_rtcp(packet, ssrc, now_ms);
        }
    }

    pub fn line_quality(&self) -> LineQuality {
        self.quality.summary()
    }

    pub fn tick(&mut self, now_ms: u64) -> Option<DigitEvent> {
        self.rfc4733.on_tick(now_ms)
    }
}

/// How far the RTP timestamps of a leg may lead or lag the worker's
/// clock before placement falls back to arrival time (samples, 200 ms).
const MAX_TIMESTAMP_SKEW: u64 = 1600;

/// The recording of a call, on the worker.
pub(super) struct CallRecording {
    pub handle: RecordingHandle,
    /// When the recording started, in microseconds of the worker's clock.
    pub started_us: u64,
    /// Per leg: the RTP timestamp and recording position of the last packet.
    last: [Option<(u32, u64)>; 2],
}

impl CallRecording {
    pub fn new(handle: RecordingHandle, started_us: u64) -> CallRecording {
        CallRecording {
            handle,
            started_us,
            last: [None, None],
        }
    }

    pub fn position(&self, now_us: u64) -> u64 {
        frames_between_us(self.started_us, now_us)
    }

    /// Where a packet of `samples` samples with RTP timestamp `ts` starts
    /// in the recording. Within one stream the timestamps place it, so a
    /// packet delayed on its way (or by a busy worker) lands where it was
    /// spoken rather than leaving a hole; the arrival time bounds that, so
    /// a peer's timestamps can never move audio more than
    /// [`MAX_TIMESTAMP_SKEW`] from the truth.
    fn place(&mut self, leg: Leg, ts: u32, samples: u64, now_us: u64) -> u64 {
        let arrived = self.position(now_us).saturating_sub(samples);
        let slot = &mut self.last[leg_slot(leg)];
        let position = place(*slot, ts, arrived);
        *slot = Some((ts, position));
        position
    }
}

fn leg_slot(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

/// What the worker learnt from one RTP packet that it must act on.
pub(super) struct Heard {
    pub digits: Vec<DigitEvent>,
}

/// Looks at one accepted RTP packet from `leg`: quality, DTMF, recording.
/// Decodes audio only when a recording or an in-band detector wants it.
pub(super) fn hear(
    signal: &mut LegSignal,
    recording: Option<&mut CallRecording>,
    leg: Leg,
    rtp: &RtpReader<'_>,
    now_us: u64,
    now_ms: u64,
) -> Heard {
    let mut heard = Heard { digits: Vec::new() };
    signal
        .quality
        .on_rtp(rtp.sequence_number().into(), rtp.timestamp(), now_ms);
    let pt = rtp.payload_type();
    if Some(pt) == signal.codec.telephone_event {
        heard.digits.extend(signal.rfc4733.on_packet(
            rtp.timestamp(),
            rtp.mark(),
            rtp.payload(),
            now_ms,
        ));
        return heard;
    }
    let Some(codec) = signal.codec.codec.filter(|c| c.payload_type() == pt) else {
        return heard;
    };
    if recording.is_none() && signal.inband.is_none() {
        return heard;
    }
    let payload = rtp.payload();
    let samples = signal.decoded.fill(codec, payload);
    let n = samples.len();
    if let Some(rec) = recording {
        let position = rec.place(leg, rtp.timestamp(), n as u64, now_us);
        rec.handle.push(leg, position, samples);
    }
    if let Some(detector) = signal.inband.as_mut() {
        heard.digits = detector.push(samples, now_ms);
    }
    heard
}

/// Sends `event` to the call's subscriber, if any; a gone subscriber is
/// forgotten.
pub(super) fn emit(events: &mut Option<mpsc::UnboundedSender<MediaEvent>>, event: MediaEvent) {
    if let Some(tx) = events {
        if tx.send(event).is_err() {
            *events = None;
        }
    }
}

/// Frames at [`SAMPLE_RATE`] from `start_us` to `now_us` (microseconds of
/// one clock); zero when `now_us` is earlier. Integer arithmetic on the
/// worker's clock of the loop turn: no clock read per packet.
fn frames_between_us(start_us: u64, now_us: u64) -> u64 {
    let micros = now_us.saturating_sub(start_us);
    // 8 frames per millisecond; exact for any call length.
    micros.saturating_mul(u64::from(SAMPLE_RATE / 1000)) / 1000
}

/// The recording position of a packet with RTP timestamp `ts` that
/// arrived at position `arrived`, given the last packet of its stream.
fn place(last: Option<(u32, u64)>, ts: u32, arrived: u64) -> u64 {
    let predicted = last.and_then(|(last_ts, last_pos)| {
        let delta = ts.wrapping_sub(last_ts);
        (delta > 0 && delta <= 8000).then(|| last_pos + u64::from(delta))
    });
    match predicted {
        Some(p) if p.abs_diff(arrived) <= MAX_TIMESTAMP_SKEW => p,
        _ => arrived,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_packet_lands_where_its_timestamp_says() {
        let last = Some((1000, 8000));
        // Next frame, 60 ms late: still right after the previous one.
        assert_eq!(place(last, 1160, 8160 + 480), 8160);
        // Timestamps wrap around.
        assert_eq!(place(Some((u32::MAX - 79, 100)), 80, 260), 260);
    }

    #[test]
    fn recording_positions_count_8000_frames_a_second_on_the_worker_clock() {
        assert_eq!(frames_between_us(1_000, 1_000), 0);
        assert_eq!(frames_between_us(1_000, 21_000), 160);
        assert_eq!(frames_between_us(0, 124), 0, "less than one frame");
        assert_eq!(frames_between_us(0, 125), 1);
        assert_eq!(frames_between_us(0, 3_600_000_000), 28_800_000);
        assert_eq!(frames_between_us(5_000, 1_000), 0, "never negative");
    }

    #[test]
    fn arrival_time_wins_when_timestamps_stray() {
        // First packet of a stream, a jump back, a repeat, a far jump.
        assert_eq!(place(None, 5, 777), 777);
        assert_eq!(place(Some((1000, 8000)), 840, 8160), 8160);
        assert_eq!(place(Some((1000, 8000)), 1000, 8160), 8160);
        assert_eq!(place(Some((1000, 8000)), 1000 + 8000, 16000), 16000);
        // A peer claiming 1 s of audio in 20 ms is held to the clock.
        assert_eq!(place(Some((1000, 8000)), 1000 + 8000, 8160), 8160);
    }
}
