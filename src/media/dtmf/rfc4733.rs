//! RFC 4733 telephone-events: receiving digits from RTP and building the
//! payloads denwa sends.
//!
//! Owns: the 4-byte event payload (§2.3), the receiver that turns a stream
//! of possibly lost, duplicated and reordered event packets into one
//! [`DigitEvent`] per key press, and the sender's packet schedule.
//!
//! Must not: parse or build RTP headers (the relay does, with rtp-rs, and
//! passes the timestamp, marker bit and payload), or read the clock.
//!
//! # Receiving
//!
//! An event is identified by its RTP timestamp (§2.5.1.2): every packet of
//! one key press carries the press's start timestamp, with a growing
//! duration, and the last one is sent three times with the E bit. The
//! receiver reports the digit when the first E-bit packet arrives and
//! absorbs the others, and duplicates of any packet. If every end packet
//! is lost, the digit is finished by [`TelephoneEventReceiver::on_tick`]
//! once no packet has come for the end timeout, or as soon as a packet of a
//! later event arrives. Packets of events older than the current one, too
//! short payloads and events other than the sixteen keys are ignored.
//!
//! A press longer than the 16-bit duration field can carry (8.2 s at
//! 8000 Hz) is sent in segments (§2.5.1.3): a packet without the marker
//! bit, for the same event, whose timestamp continues the previous
//! segment, extends the current digit instead of starting a new one.

use std::collections::VecDeque;

use super::{digit_to_event, event_to_digit, DigitEvent, DigitSource};

/// Default time after the last packet of an unfinished event at which it
/// is considered ended (its end packets were lost).
pub const DEFAULT_END_TIMEOUT_MS: u64 = 1000;

/// Timestamps of finished events remembered to absorb their late packets.
const FINISHED_MEMORY: usize = 8;

/// One event block (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (0–15 are the keys, 16 is flash).
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level, 0 to 63 meaning 0 to -63 dBm0.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Size of an event block on the wire.
    pub const LEN: usize = 4;

    /// The first event block of a payload; `None` if it is too short.
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let block: &[u8; 4] = payload.get(..Self::LEN)?.try_into().ok()?;
        Some(TelephoneEvent {
            event: block[0],
            end: block[1] & 0x80 != 0,
            volume: block[1] & 0x3F,
            duration: u16::from_be_bytes([block[2], block[3]]),
        })
    }

    /// The event block as sent (the reserved bit is zero).
    pub fn to_bytes(&self) -> [u8; 4] {
        let [hi, lo] = self.duration.to_be_bytes();
        let end = if self.end { 0x80 } else { 0x00 };
        [self.event, end | (self.volume & 0x3F), hi, lo]
    }
}

/// The digit being received.
#[derive(Debug, Clone, Copy)]
struct Active {
    digit: char,
    event: u8,
    /// RTP timestamp of the current segment.
    timestamp: u32,
    /// Duration of earlier segments of a long press, in timestamp units.
    carried: u64,
    /// Largest duration seen in the current segment.
    duration: u16,
    start_ms: u64,
    last_packet_ms: u64,
}

/// Turns telephone-event packets into one [`DigitEvent`] per key press.
#[derive(Debug, Clone)]
pub struct TelephoneEventReceiver {
    /// Timestamp units per second of the telephone-event payload type.
    clock_rate: u32,
    end_timeout_ms: u64,
    active: Option<Active>,
    finished: VecDeque<u32>,
    ready: VecDeque<DigitEvent>,
}

impl TelephoneEventReceiver {
    /// A receiver for a telephone-event clock of `clock_rate` Hz (8000 with
    /// G.711; 0 is taken as 8000).
    pub fn new(clock_rate: u32) -> TelephoneEventReceiver {
        TelephoneEventReceiver {
            clock_rate: if clock_rate == 0 { 8000 } else { clock_rate },
            end_timeout_ms: DEFAULT_END_TIMEOUT_MS,
            active: None,
            finished: VecDeque::with_capacity(FINISHED_MEMORY),
            ready: VecDeque::new(),
        }
    }

    /// Sets the end timeout (see [`DEFAULT_END_TIMEOUT_MS`]).
    pub fn with_end_timeout(mut self, end_timeout_ms: u64) -> TelephoneEventReceiver {
        self.end_timeout_ms = end_timeout_ms;
        self
    }

    /// Feeds one RTP packet of the telephone-event payload type. Returns a
    /// digit when one is complete. At most one digit comes out per call:
    /// in the rare case that a packet completes two (the previous digit's
    /// end packets were all lost and this one ends the next), the second
    /// comes out of the next call to `on_packet` or [`Self::on_tick`].
    pub fn on_packet(
        &mut self,
        rtp_timestamp: u32,
        marker: bool,
        payload: &[u8],
        now_ms: u64,
    ) -> Option<DigitEvent> {
        if let Some(event) = TelephoneEvent::parse(payload) {
            if let Some(digit) = event_to_digit(event.event) {
                self.accept(rtp_timestamp, marker, digit, event, now_ms);
            }
        }
        self.ready.pop_front()
    }

    /// Lets time pass: finishes a digit whose packets stopped coming
    /// without an end packet. Call it every frame or so.
    pub fn on_tick(&mut self, now_ms: u64) -> Option<DigitEvent> {
        if let Some(active) = self.active {
            if now_ms.saturating_sub(active.last_packet_ms) >= self.end_timeout_ms {
                self.finish();
            }
        }
        self.ready.pop_front()
    }

    /// Forgets everything (a new RTP stream: new SSRC or re-INVITE).
    pub fn reset(&mut self) {
        self.active = None;
        self.finished.clear();
        self.ready.clear();
    }

    fn accept(&mut self, timestamp: u32, marker: bool, digit: char, ev: TelephoneEvent, now: u64) {
        if self.finished.contains(&timestamp) {
            return; // late or repeated packet of a reported digit
        }
        match self.active {
            Some(active) if active.timestamp == timestamp => {}
            Some(active) if is_older(timestamp, active.timestamp) => return,
            Some(active) if self.continues(&active, timestamp, marker, ev.event) => {
                self.next_segment(timestamp);
            }
            Some(_) => {
                self.finish();
                self.start(timestamp, digit, ev, now);
            }
            None => self.start(timestamp, digit, ev, now),
        }
        if let Some(active) = self.active.as_mut() {
            active.duration = active.duration.max(ev.duration);
            active.last_packet_ms = now;
        }
        if ev.end {
            self.finish();
        }
    }

    /// A packet of the next segment of the current long press.
    fn continues(&self, active: &Active, timestamp: u32, marker: bool, event: u8) -> bool {
        let offset = u64::from(timestamp.wrapping_sub(active.timestamp));
        let slack = u64::from(self.clock_rate); // one second of units
        !marker
            && event == active.event
            && active.duration >= 0xF000
            && offset <= u64::from(active.duration) + slack
    }

    fn next_segment(&mut self, timestamp: u32) {
        if let Some(active) = self.active.as_mut() {
            let old = active.timestamp;
            active.carried += u64::from(timestamp.wrapping_sub(old));
            active.timestamp = timestamp;
            active.duration = 0;
            self.remember(old);
        }
    }

    fn start(&mut self, timestamp: u32, digit: char, ev: TelephoneEvent, now: u64) {
        let already = self.units_to_ms(u64::from(ev.duration));
        self.active = Some(Active {
            digit,
            event: ev.event,
            timestamp,
            carried: 0,
            duration: 0,
            start_ms: now.saturating_sub(already),
            last_packet_ms: now,
        });
    }

    fn finish(&mut self) {
        if let Some(active) = self.active.take() {
            let units = active.carried + u64::from(active.duration);
            self.ready.push_back(DigitEvent {
                digit: active.digit,
                start: active.start_ms,
                duration_ms: u32::try_from(self.units_to_ms(units)).unwrap_or(u32::MAX),
                source: DigitSource::Rfc4733,
            });
            self.remember(active.timestamp);
        }
    }

    fn remember(&mut self, timestamp: u32) {
        if self.finished.len() == FINISHED_MEMORY {
            self.finished.pop_front();
        }
        self.finished.push_back(timestamp);
    }

    fn units_to_ms(&self, units: u64) -> u64 {
        units * 1000 / u64::from(self.clock_rate)
    }
}

/// `a` is before `b` in RTP timestamp order (modulo 2³²).
fn is_older(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

/// One telephone-event packet to send: the relay wraps it in RTP with the
/// negotiated payload type and its own sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// When to send it, in ms after the first packet. The first packet goes
    /// out one interval after the key went down: its duration covers that
    /// interval (a receiver dates the press from `now - duration`).
    pub offset_ms: u32,
    /// RTP marker bit: set on the first packet of the event only.
    pub marker: bool,
    /// RTP timestamp: the event's start, the same in every packet.
    pub timestamp: u32,
    pub event: TelephoneEvent,
}

impl EventPacket {
    /// The RTP payload.
    pub fn payload(&self) -> [u8; 4] {
        self.event.to_bytes()
    }
}

/// Builds the packet schedule of a key press (RFC 4733 §2.5.1).
#[derive(Debug, Clone, Copy)]
pub struct TelephoneEventSender {
    clock_rate: u32,
    interval_ms: u32,
    volume: u8,
}

/// Each end packet is sent this many times (§2.5.1.4).
const END_REPEATS: u32 = 3;

impl TelephoneEventSender {
    /// A sender for a telephone-event clock of `clock_rate` Hz (0 is taken
    /// as 8000), sending every 20 ms at volume 10 (-10 dBm0).
    pub fn new(clock_rate: u32) -> TelephoneEventSender {
        TelephoneEventSender {
            clock_rate: if clock_rate == 0 { 8000 } else { clock_rate },
            interval_ms: 20,
            volume: 10,
        }
    }

    /// Sets the packet interval (at least 1 ms).
    pub fn with_interval_ms(mut self, interval_ms: u32) -> TelephoneEventSender {
        self.interval_ms = interval_ms.max(1);
        self
    }

    /// Sets the volume field (0–63, meaning 0 to -63 dBm0).
    pub fn with_volume(mut self, volume: u8) -> TelephoneEventSender {
        self.volume = volume.min(63);
        self
    }

    /// The packets of `digit` held for `duration_ms`, starting at RTP
    /// timestamp `timestamp`: the first with the marker bit, one update
    /// per interval with the duration so far, then three end packets with
    /// the E bit and the full duration. A press longer than the duration
    /// field can carry (65535 units, 8.2 s at 8000 Hz) is cut to that
    /// length. `None` for anything but a key.
    pub fn packets(
        &self,
        digit: char,
        timestamp: u32,
        duration_ms: u32,
    ) -> Option<Vec<EventPacket>> {
        let event = digit_to_event(digit)?;
        let total = u64::from(self.units(duration_ms));
        let interval = u64::from(self.units(self.interval_ms)).max(1);
        let mut packets = Vec::new();
        let mut k = 0u32;
        loop {
            let covered = (u64::from(k) + 1) * interval;
            let end = covered >= total;
            let repeats = if end { END_REPEATS } else { 1 };
            for r in 0..repeats {
                packets.push(EventPacket {
                    offset_ms: (k + r).saturating_mul(self.interval_ms),
                    marker: packets.is_empty(),
                    timestamp,
                    event: TelephoneEvent {
                        event,
                        end,
                        volume: self.volume,
                        // At most `total`, which fits the field.
                        duration: u16::try_from(covered.min(total)).unwrap_or(u16::MAX),
                    },
                });
            }
            if end {
                return Some(packets);
            }
            k += 1;
        }
    }

    /// Milliseconds in timestamp units, saturating at the field's maximum.
    fn units(&self, ms: u32) -> u16 {
        let units = u64::from(ms) * u64::from(self.clock_rate) / 1000;
        u16::try_from(units).unwrap_or(u16::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 50_000;

    /// Feeds packets at `T0 + offset`; returns the digits reported.
    fn feed(rx: &mut TelephoneEventReceiver, packets: &[EventPacket]) -> Vec<DigitEvent> {
        packets
            .iter()
            .filter_map(|p| {
                let now = T0 + u64::from(p.offset_ms);
                rx.on_packet(p.timestamp, p.marker, &p.payload(), now)
            })
            .collect()
    }

    fn press(digit: char, timestamp: u32, ms: u32) -> Vec<EventPacket> {
        TelephoneEventSender::new(8000)
            .packets(digit, timestamp, ms)
            .expect("a key")
    }

    fn packet(timestamp: u32, marker: bool, event: u8, end: bool, duration: u16) -> EventPacket {
        EventPacket {
            offset_ms: 0,
            marker,
            timestamp,
            event: TelephoneEvent {
                event,
                end,
                volume: 10,
                duration,
            },
        }
    }

    #[test]
    fn payload_layout() {
        let ev = TelephoneEvent {
            event: 11,
            end: true,
            volume: 13,
            duration: 0x0320,
        };
        assert_eq!(ev.to_bytes(), [11, 0x8D, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&ev.to_bytes()), Some(ev));
        // The reserved bit is ignored; extra bytes are not this block's.
        let parsed = TelephoneEvent::parse(&[5, 0x4A, 0, 160, 9, 9]).expect("4 bytes");
        assert_eq!(
            (parsed.event, parsed.end, parsed.volume, parsed.duration),
            (5, false, 10, 160)
        );
        assert_eq!(TelephoneEvent::parse(&[5, 0x80, 0]), None);
        assert_eq!(TelephoneEvent::parse(&[]), None);
    }

    #[test]
    fn sender_schedule() {
        let packets = press('5', 1234, 100);
        let offsets: Vec<u32> = packets.iter().map(|p| p.offset_ms).collect();
        assert_eq!(offsets, [0, 20, 40, 60, 80, 100, 120]);
        let durations: Vec<u16> = packets.iter().map(|p| p.event.duration).collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
        let ends: Vec<bool> = packets.iter().map(|p| p.event.end).collect();
        assert_eq!(ends, [false, false, false, false, true, true, true]);
        assert!(packets[0].marker && packets[1..].iter().all(|p| !p.marker));
        assert!(packets
            .iter()
            .all(|p| p.timestamp == 1234 && p.event.event == 5));
        assert!(packets.iter().all(|p| p.event.volume == 10));

        let instant = press('#', 7, 0);
        assert_eq!(instant.len(), 3);
        assert!(instant[0].marker && instant.iter().all(|p| p.event.end && p.event.duration == 0));
        assert_eq!(instant[0].event.event, 11);

        let long = press('1', 0, 60_000);
        let last = long.last().expect("packets");
        assert_eq!(last.event.duration, u16::MAX, "cut to the field's range");
        assert!(long.len() < 420);
        assert!(TelephoneEventSender::new(8000)
            .packets('E', 0, 100)
            .is_none());
        let quiet = TelephoneEventSender::new(8000)
            .with_volume(99)
            .with_interval_ms(50);
        let p = quiet.packets('0', 0, 100).expect("a key");
        assert_eq!(p[0].event.volume, 63);
        assert_eq!(
            p.iter().map(|p| p.offset_ms).collect::<Vec<_>>(),
            [0, 50, 100, 150]
        );
    }

    #[test]
    fn a_press_is_reported_once_at_its_end() {
        let mut rx = TelephoneEventReceiver::new(8000);
        let packets = press('5', 1000, 100);
        let mut reported = Vec::new();
        for p in &packets {
            let got = rx.on_packet(
                p.timestamp,
                p.marker,
                &p.payload(),
                T0 + u64::from(p.offset_ms),
            );
            reported.push(got.is_some());
        }
        assert_eq!(reported, [false, false, false, false, true, false, false]);
        let mut rx = TelephoneEventReceiver::new(8000);
        let events = feed(&mut rx, &packets);
        // The first packet, at T0, already covers the press's first 20 ms.
        let expected = DigitEvent {
            digit: '5',
            start: T0 - 20,
            duration_ms: 100,
            source: DigitSource::Rfc4733,
        };
        assert_eq!(events, [expected]);
        assert_eq!(rx.on_tick(T0 + 10_000), None, "nothing left to finish");
    }

    #[test]
    fn every_key_in_a_row() {
        let mut rx = TelephoneEventReceiver::new(8000);
        let mut got = String::new();
        for (i, key) in "0123456789*#ABCD".chars().enumerate() {
            let ts = 160 * 100 * i as u32;
            got.extend(feed(&mut rx, &press(key, ts, 80)).iter().map(|e| e.digit));
        }
        assert_eq!(got, "0123456789*#ABCD");
    }

    #[test]
    fn duplicates_and_retransmitted_starts_are_absorbed() {
        let mut rx = TelephoneEventReceiver::new(8000);
        let p = press('7', 500, 60);
        let doubled: Vec<EventPacket> = p.iter().flat_map(|p| [*p, *p]).collect();
        let mut with_restart = doubled.clone();
        with_restart.insert(3, p[0]); // the start again, mid-event
        with_restart.push(p[0]); // and after the end
        let events = feed(&mut rx, &with_restart);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].digit, events[0].duration_ms), ('7', 60));
    }

    #[test]
    fn lost_end_packets_are_finished_by_the_timeout() {
        let mut rx = TelephoneEventReceiver::new(8000).with_end_timeout(500);
        let p = press('9', 9000, 200);
        let updates: Vec<EventPacket> = p.iter().filter(|p| !p.event.end).copied().collect();
        assert!(feed(&mut rx, &updates).is_empty());
        let last_update = T0 + u64::from(updates.last().expect("updates").offset_ms);
        assert_eq!(rx.on_tick(last_update + 499), None);
        let event = rx.on_tick(last_update + 500).expect("timed out");
        assert_eq!(
            (event.digit, event.start, event.duration_ms),
            ('9', T0 - 20, 180)
        );
        // The end packets straggle in after all: absorbed.
        let ends: Vec<EventPacket> = p.iter().filter(|p| p.event.end).copied().collect();
        for end in ends {
            assert_eq!(
                rx.on_packet(end.timestamp, false, &end.payload(), last_update + 600),
                None
            );
        }
        assert_eq!(rx.on_tick(last_update + 5000), None);
    }

    #[test]
    fn lost_start_still_gives_the_press_time() {
        let mut rx = TelephoneEventReceiver::new(8000);
        let p = press('3', 77, 120);
        let events = feed(&mut rx, &p[2..]);
        assert_eq!(events.len(), 1);
        // First seen: offset 40 ms, already 60 ms long.
        assert_eq!((events[0].start, events[0].duration_ms), (T0 - 20, 120));
    }

    #[test]
    fn a_new_event_finishes_one_whose_end_was_lost() {
        let mut rx = TelephoneEventReceiver::new(8000);
        let first = press('1', 1000, 100);
        assert!(feed(&mut rx, &first[..3]).is_empty());
        let second = press('2', 3000, 100);
        let start = second[0];
        let early = rx.on_packet(start.timestamp, true, &start.payload(), T0 + 300);
        assert_eq!(early.map(|e| (e.digit, e.duration_ms)), Some(('1', 60)));
        let events = feed(&mut rx, &second[1..]);
        assert_eq!(events.iter().map(|e| e.digit).collect::<String>(), "2");
    }

    #[test]
    fn two_digits_ending_in_one_packet_come_out_one_by_one() {
        let mut rx = TelephoneEventReceiver::new(8000);
        assert!(feed(&mut rx, &press('4', 100, 100)[..2]).is_empty());
        // Only an end packet of the next press arrives.
        let end = packet(2000, false, 6, true, 800);
        let got = rx.on_packet(end.timestamp, false, &end.payload(), T0 + 400);
        assert_eq!(got.map(|e| e.digit), Some('4'));
        let next = rx.on_tick(T0 + 401).expect("queued");
        assert_eq!(
            (next.digit, next.duration_ms, next.start),
            ('6', 100, T0 + 300)
        );
        assert_eq!(rx.on_tick(T0 + 402), None);
    }

    #[test]
    fn the_same_key_twice_is_two_digits() {
        let mut rx = TelephoneEventReceiver::new(8000);
        let mut events = feed(&mut rx, &press('8', 0, 100));
        events.extend(feed(&mut rx, &press('8', 1600, 100)));
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn malformed_and_foreign_events_are_ignored() {
        let mut rx = TelephoneEventReceiver::new(8000);
        let p = press('0', 10, 60);
        assert!(feed(&mut rx, &p[..1]).is_empty());
        assert_eq!(rx.on_packet(10, false, &[0, 0x80], T0 + 5), None, "short");
        let flash = packet(10, false, 16, true, 400).payload();
        assert_eq!(rx.on_packet(10, false, &flash, T0 + 6), None, "flash");
        let other = packet(99, true, 200, true, 400).payload();
        assert_eq!(
            rx.on_packet(99, true, &other, T0 + 7),
            None,
            "unknown event"
        );
        // The press in progress is unaffected.
        let events = feed(&mut rx, &p[1..]);
        assert_eq!(
            events
                .iter()
                .map(|e| (e.digit, e.duration_ms))
                .collect::<Vec<_>>(),
            [('0', 60)]
        );
    }

    #[test]
    fn packets_of_older_events_are_ignored() {
        let mut rx = TelephoneEventReceiver::new(8000);
        assert!(feed(&mut rx, &press('1', 5000, 100)[..2]).is_empty());
        // A reordered update of an event that began earlier.
        let stale = packet(4000, false, 2, false, 160);
        assert_eq!(rx.on_packet(4000, false, &stale.payload(), T0 + 50), None);
        let events = feed(&mut rx, &press('1', 5000, 100)[2..]);
        assert_eq!(events.iter().map(|e| e.digit).collect::<String>(), "1");
    }

    #[test]
    fn timestamps_wrap() {
        let mut rx = TelephoneEventReceiver::new(8000);
        let mut events = feed(&mut rx, &press('1', u32::MAX - 100, 100));
        events.extend(feed(&mut rx, &press('2', 500, 100)));
        assert_eq!(events.iter().map(|e| e.digit).collect::<String>(), "12");
        assert!(is_older(u32::MAX - 100, 500));
        assert!(!is_older(500, u32::MAX - 100));
    }

    #[test]
    fn a_long_press_in_segments_is_one_digit() {
        let mut rx = TelephoneEventReceiver::new(8000);
        // First segment runs to the field's limit without an end packet.
        let first = [
            packet(0, true, 5, false, 160),
            packet(0, false, 5, false, u16::MAX),
        ];
        let second = [
            packet(65_535, false, 5, false, 8000),
            packet(65_535, false, 5, true, 16_000),
            packet(65_535, false, 5, true, 16_000),
        ];
        for (i, p) in first.iter().chain(&second).enumerate() {
            let got = rx.on_packet(p.timestamp, p.marker, &p.payload(), T0 + 1000 * i as u64);
            if i == 3 {
                let event = got.expect("ends here");
                assert_eq!((event.digit, event.duration_ms), ('5', 10_191));
            } else {
                assert_eq!(got, None, "packet {i}");
            }
        }
    }
}
