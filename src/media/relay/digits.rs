//! Key presses denwa sends to a leg, and what happens to DTMF crossing
//! between legs that signal it differently.
//!
//! Owns: per leg, the queue of digits to send and the one being sent
//! ([`DigitOut`]): RFC 4733 telephone-events under the leg's negotiated
//! payload type when it has one (every packet of a press with the press's
//! timestamp, the marker on the first, the end packet three times), DTMF
//! tones in the leg's G.711 audio otherwise, each followed by a short
//! silence. Both go out on the leg's own continuous RTP stream; while a
//! digit is being sent the leg gets nothing else. Also the crossing rules
//! ([`cross`]): an event is forwarded as is, renumbered to the other leg's
//! payload type, or not forwarded to a leg that did not negotiate events
//! (the call actor regenerates it as tones); audio from a leg that sends
//! its keys in-band is muted towards a leg that gets them as events while
//! the detector hears a key.
//!
//! Must not: read the clock or touch sockets (the worker passes its frame
//! time and sends what comes out), or decide which digits to send (the
//! call actor does).

use std::collections::VecDeque;

use super::signal::{LegCodec, LegSignal};
use crate::media::dtmf::{digit_to_event, EventPacket, TelephoneEventSender};
use crate::media::g711::{Codec, FRAME_SAMPLES};
use crate::media::player::{Player, Playlist};
use crate::media::rtp_stream::{payload_range, SourceId};
use crate::media::tones::dtmf_tone;

/// Where the packets of sent digits come from, for stream continuity.
pub(super) const FROM_DIGITS: SourceId = SourceId(101);
/// Silence after each in-band key, so that a detector hears two presses of
/// the same key as two, and the key's end before relayed audio resumes.
pub const INBAND_GAP_MS: u32 = 80;
/// Frames of nothing after each RFC 4733 press (the same 80 ms).
const EVENT_GAP_FRAMES: u32 = INBAND_GAP_MS / 20;
/// Shortest and longest press denwa sends.
pub const MIN_DIGIT_MS: u32 = 40;
pub const MAX_DIGIT_MS: u32 = 8000;
/// Digits queued for one leg at most; more are refused.
pub const MAX_QUEUED: usize = 64;

/// One key to send and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    pub key: char,
    pub duration_ms: u32,
}

impl Digit {
    /// `key` for `duration_ms` (held to [`MIN_DIGIT_MS`]..=[`MAX_DIGIT_MS`]),
    /// or `None` when `key` is not one of the sixteen DTMF keys.
    pub fn new(key: char, duration_ms: u32) -> Option<Digit> {
        digit_to_event(key)?;
        Some(Digit {
            key: key.to_ascii_uppercase(),
            duration_ms: duration_ms.clamp(MIN_DIGIT_MS, MAX_DIGIT_MS),
        })
    }
}

/// The digit on its way out.
enum Sending {
    /// RFC 4733: the press's packets, one per frame, all with the
    /// timestamp of `start_ms`.
    Events {
        packets: VecDeque<EventPacket>,
        payload_type: u8,
        start_ms: u64,
    },
    /// In-band: the key's tone, then silence, as audio frames.
    Tone { player: Player, codec: Codec },
    /// Frames left with nothing sent after an event.
    Gap(u32),
}

/// What a leg gets in one frame while digits are being sent to it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame {
    /// No digit to send: the leg gets what it would otherwise get.
    Idle,
    /// A digit is under way but nothing goes out in this frame.
    Quiet,
    /// This packet goes out.
    Send(Vec<u8>),
}

/// The digits queued for one leg.
#[derive(Default)]
pub(super) struct DigitOut {
    queue: VecDeque<Digit>,
    current: Option<Sending>,
}

impl DigitOut {
    /// Queues `digit`; false when the queue is full.
    pub fn push(&mut self, digit: Digit) -> bool {
        if self.queue.len() >= MAX_QUEUED {
            return false;
        }
        self.queue.push_back(digit);
        true
    }

    /// A digit is being sent or waits: the leg hears nothing else.
    pub fn is_busy(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty()
    }

    /// The frame at `now_ms` for the leg whose signal state is `signal`:
    /// the next packet of the digit being sent, built on the leg's own
    /// outgoing stream (started here if the leg had none yet).
    pub fn next_frame(&mut self, signal: &mut LegSignal, now_ms: u64) -> Frame {
        loop {
            if self.current.is_none() {
                let Some(digit) = self.queue.pop_front() else {
                    return Frame::Idle;
                };
                // A leg with neither events nor G.711 cannot be sent keys.
                self.current = start(digit, signal.codec, now_ms);
                continue;
            }
            signal.ensure_out_stream(now_ms);
            let Some(out) = signal.out.as_mut() else {
                return Frame::Idle;
            };
            let (frame, next) = match self.current.take() {
                Some(Sending::Events {
                    mut packets,
                    payload_type,
                    start_ms,
                }) => match packets.pop_front() {
                    Some(p) => {
                        let packet =
                            out.build(payload_type, &p.payload(), p.marker, FROM_DIGITS, start_ms);
                        let next = Sending::Events {
                            packets,
                            payload_type,
                            start_ms,
                        };
                        (Frame::Send(packet), Some(next))
                    }
                    None => (Frame::Quiet, Some(Sending::Gap(EVENT_GAP_FRAMES))),
                },
                Some(Sending::Tone { mut player, codec }) => match player.next_frame() {
                    Some(samples) => {
                        let mut payload = [0u8; FRAME_SAMPLES];
                        codec.encode_into(&samples, &mut payload);
                        let packet =
                            out.build(codec.payload_type(), &payload, false, FROM_DIGITS, now_ms);
                        (Frame::Send(packet), Some(Sending::Tone { player, codec }))
                    }
                    None => (Frame::Idle, None),
                },
                Some(Sending::Gap(frames)) if frames > 1 => {
                    (Frame::Quiet, Some(Sending::Gap(frames - 1)))
                }
                Some(Sending::Gap(_)) | None => (Frame::Idle, None),
            };
            self.current = next;
            if frame == Frame::Idle {
                // This digit is done: the next one, or back to relaying.
                continue;
            }
            return frame;
        }
    }
}

/// How `digit` goes out to a leg that negotiated `codec`, from `now_ms`.
fn start(digit: Digit, codec: LegCodec, now_ms: u64) -> Option<Sending> {
    if let Some(payload_type) = codec.telephone_event {
        let packets = TelephoneEventSender::new(8000).packets(digit.key, 0, digit.duration_ms)?;
        return Some(Sending::Events {
            packets: packets.into(),
            payload_type,
            start_ms: now_ms,
        });
    }
    let audio = codec.codec?;
    let playlist = Playlist::new()
        .then_tone(dtmf_tone(digit.key)?, digit.duration_ms)
        .then_silence(INBAND_GAP_MS);
    Some(Sending::Tone {
        player: Player::new(playlist),
        codec: audio,
    })
}

/// Makes an RTP packet from a leg that negotiated `from` fit a leg that
/// negotiated `to`, as far as DTMF goes; false when it must not be
/// forwarded. `from_signal` is the sending leg's state (its in-band
/// detector). The packet is the one about to be relayed (already
/// transcoded to `to`'s audio codec).
pub(super) fn cross(from_signal: &LegSignal, to: LegCodec, packet: &mut [u8]) -> bool {
    let from = from_signal.codec;
    let Some(pt_byte) = packet.get(1).copied() else {
        return true;
    };
    let pt = pt_byte & 0x7f;
    if from.telephone_event.is_some_and(|event| event == pt) {
        return match to.telephone_event {
            Some(theirs) if theirs == pt => true,
            Some(theirs) => {
                if let Some(byte) = packet.get_mut(1) {
                    *byte = (pt_byte & 0x80) | (theirs & 0x7f);
                }
                true
            }
            // The call actor plays the key to that leg as tones.
            None => false,
        };
    }
    if from.telephone_event.is_none() && to.telephone_event.is_some() {
        if let Some(codec) = to.codec.filter(|c| c.payload_type() == pt) {
            if from_signal.inband_pressing() {
                silence(packet, codec);
            }
        }
    }
    true
}

/// Replaces the audio of a G.711 packet with silence.
fn silence(packet: &mut [u8], codec: Codec) {
    if let Ok(range) = payload_range(packet) {
        if let Some(payload) = packet.get_mut(range) {
            payload.fill(codec.silence());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dtmf::{InbandDetector, TelephoneEvent, TelephoneEventReceiver};
    use rtp_rs::RtpReader;

    const PCMU_EVENTS: LegCodec = LegCodec {
        codec: Some(Codec::Pcmu),
        telephone_event: Some(101),
    };
    const PCMU: LegCodec = LegCodec {
        codec: Some(Codec::Pcmu),
        telephone_event: None,
    };

    fn leg(codec: LegCodec) -> LegSignal {
        let mut signal = LegSignal::new();
        signal.codec = codec;
        signal
    }

    /// Runs the frame clock from `t0` until the digits are sent; returns
    /// each frame's packet (None for a quiet frame).
    fn run(out: &mut DigitOut, signal: &mut LegSignal, t0: u64) -> Vec<Option<Vec<u8>>> {
        let mut frames = Vec::new();
        for i in 0..2000u64 {
            match out.next_frame(signal, t0 + 20 * i) {
                Frame::Idle => return frames,
                Frame::Quiet => frames.push(None),
                Frame::Send(p) => frames.push(Some(p)),
            }
        }
        panic!("digits never ended");
    }

    #[test]
    fn digits_are_keys_held_within_bounds() {
        assert_eq!(
            Digit::new('a', 5),
            Some(Digit {
                key: 'A',
                duration_ms: MIN_DIGIT_MS
            })
        );
        assert_eq!(Digit::new('#', 60_000).map(|d| d.duration_ms), Some(8000));
        assert_eq!(Digit::new('x', 100), None);
        let mut out = DigitOut::default();
        for _ in 0..MAX_QUEUED {
            assert!(out.push(Digit::new('1', 100).unwrap()));
        }
        assert!(!out.push(Digit::new('1', 100).unwrap()), "queue full");
        assert!(out.is_busy());
    }

    #[test]
    fn events_go_out_as_one_press_each_with_redundant_ends() {
        let mut signal = leg(PCMU_EVENTS);
        let mut out = DigitOut::default();
        out.push(Digit::new('5', 100).unwrap());
        out.push(Digit::new('#', 60).unwrap());
        let frames = run(&mut out, &mut signal, 1000);
        let packets: Vec<&Vec<u8>> = frames.iter().flatten().collect();
        // 5: four updates then three ends; #: two updates, three ends.
        assert_eq!(packets.len(), 7 + 5);
        assert_eq!(frames.len(), 12 + 2 * EVENT_GAP_FRAMES as usize);
        let mut rx = TelephoneEventReceiver::new(8000);
        let mut got = Vec::new();
        let mut seqs = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            let rtp = RtpReader::new(p).expect("RTP");
            assert_eq!(rtp.payload_type(), 101);
            seqs.push(u16::from(rtp.sequence_number()));
            let ev = TelephoneEvent::parse(rtp.payload()).expect("event");
            assert_eq!(rtp.mark(), i == 0 || i == 7, "marker on each press's start");
            if i < 7 {
                assert_eq!(ev.end, i >= 4, "packet {i}");
            }
            got.extend(rx.on_packet(rtp.timestamp(), rtp.mark(), rtp.payload(), 20 * i as u64));
        }
        let keys: Vec<(char, u32)> = got.iter().map(|d| (d.digit, d.duration_ms)).collect();
        assert_eq!(keys, [('5', 100), ('#', 60)]);
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "{seqs:?}"
        );
        let ts = |p: &Vec<u8>| RtpReader::new(p).unwrap().timestamp();
        assert!(packets[..7].iter().all(|p| ts(p) == ts(packets[0])));
        // The second press starts 11 frames (220 ms) after the first.
        assert_eq!(ts(packets[7]).wrapping_sub(ts(packets[0])), 220 * 8);
        assert!(!out.is_busy());
    }

    #[test]
    fn a_leg_without_events_hears_the_key_as_tones() {
        let mut signal = leg(PCMU);
        let mut out = DigitOut::default();
        for key in ['1', '9', '9'] {
            out.push(Digit::new(key, 100).unwrap());
        }
        let frames = run(&mut out, &mut signal, 0);
        // 100 ms of tone and 80 ms of silence each.
        assert_eq!(frames.len(), 3 * 9);
        let mut detector = InbandDetector::new();
        let mut keys = String::new();
        for (i, frame) in frames.iter().enumerate() {
            let packet = frame.as_ref().expect("every frame carries audio");
            let rtp = RtpReader::new(packet).unwrap();
            assert_eq!(rtp.payload_type(), 0);
            let samples = Codec::Pcmu.decode(rtp.payload());
            keys.extend(
                detector
                    .push(&samples, 20 * i as u64)
                    .iter()
                    .map(|d| d.digit),
            );
        }
        keys.extend(detector.flush().map(|d| d.digit));
        assert_eq!(keys, "199");
    }

    #[test]
    fn a_leg_with_no_known_codec_gets_nothing() {
        let mut signal = leg(LegCodec::default());
        let mut out = DigitOut::default();
        out.push(Digit::new('1', 100).unwrap());
        assert_eq!(out.next_frame(&mut signal, 0), Frame::Idle);
        assert!(!out.is_busy());
    }

    fn rtp(pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0x80 | pt, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn events_cross_only_to_legs_that_negotiated_them() {
        let from = leg(PCMU_EVENTS);
        let mut packet = rtp(101, &[5, 0x0a, 0, 160]);
        assert!(cross(&from, PCMU_EVENTS, &mut packet));
        assert_eq!(packet[1], 0x80 | 101);
        let other_pt = LegCodec {
            telephone_event: Some(96),
            ..PCMU_EVENTS
        };
        assert!(cross(&from, other_pt, &mut packet));
        assert_eq!(packet[1], 0x80 | 96, "renumbered, marker kept");
        let mut packet = rtp(101, &[5, 0x0a, 0, 160]);
        assert!(!cross(&from, PCMU, &mut packet), "played as tones instead");
        let mut audio = rtp(0, &[1, 2, 3]);
        assert!(cross(&from, PCMU, &mut audio));
        assert_eq!(&audio[12..], &[1, 2, 3]);
        assert!(cross(&from, PCMU, &mut [0x80]), "too short to judge");
    }

    #[test]
    fn an_inband_key_is_muted_towards_a_leg_that_gets_events() {
        use super::super::{signal::hear, Leg};
        let mut from = leg(PCMU);
        from.set_inband(true);
        let mut key = crate::media::tones::ToneGenerator::new(&dtmf_tone('4').unwrap());
        let mut samples = [0i16; FRAME_SAMPLES];
        let mut muted = Vec::new();
        for i in 0..8u64 {
            key.fill(&mut samples);
            let payload = Codec::Pcmu.encode(&samples);
            let mut packet = rtp(0, &payload);
            let reader = rtp_rs::RtpReader::new(&packet).unwrap();
            hear(&mut from, None, Leg::A, &reader, 20_000 * i, 20 * i);
            assert!(cross(&from, PCMU_EVENTS, &mut packet));
            muted.push(packet[12..].iter().all(|&b| b == Codec::Pcmu.silence()));
            // Towards a leg without events the key passes as it is.
            let mut plain = rtp(0, &payload);
            assert!(cross(&from, PCMU, &mut plain));
            assert_eq!(&plain[12..], &payload[..]);
        }
        assert!(!muted[0], "the first 20 ms cannot be known yet");
        assert!(muted[2..].iter().all(|&m| m), "{muted:?}");
    }
}
