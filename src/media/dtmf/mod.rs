//! DTMF digits, whichever way they arrive.
//!
//! Owns: the one [`DigitEvent`] the call layer sees, and the three ways of
//! getting it: RFC 4733 telephone-events in RTP ([`rfc4733`]), SIP INFO
//! bodies ([`info`]) and tones in the audio itself ([`inband`]). It also
//! builds the RFC 4733 packets denwa sends.
//!
//! Must not: read the clock or touch sockets. Every entry point takes the
//! caller's time in milliseconds; the relay and the call actor own the
//! packets and the timers.

pub mod inband;
pub mod info;
pub mod negotiation;
pub mod rfc4733;

pub use inband::InbandDetector;
pub use info::parse_info;
pub use rfc4733::{EventPacket, TelephoneEvent, TelephoneEventReceiver, TelephoneEventSender};

/// Where a digit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigitSource {
    /// RTP telephone-event (RFC 4733).
    Rfc4733,
    /// SIP INFO (`application/dtmf-relay` or `application/dtmf`).
    Info,
    /// Detected in the audio.
    Inband,
}

/// One key press, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigitEvent {
    /// `0`–`9`, `*`, `#`, `A`–`D`.
    pub digit: char,
    /// When the key went down, in the caller's milliseconds.
    pub start: u64,
    pub duration_ms: u32,
    pub source: DigitSource,
}

/// RFC 4733 §3.2 event codes 0–15 for the sixteen keys.
const EVENT_DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// The key of an RFC 4733 event code; `None` for flash (16) and every other
/// event.
pub fn event_to_digit(event: u8) -> Option<char> {
    EVENT_DIGITS.get(usize::from(event)).copied()
}

/// The RFC 4733 event code of a key (letters in either case).
pub fn digit_to_event(digit: char) -> Option<u8> {
    let digit = digit.to_ascii_uppercase();
    let code = EVENT_DIGITS.iter().position(|&d| d == digit)?;
    u8::try_from(code).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_codes_follow_rfc_4733() {
        for (code, digit) in (0u8..=9).zip('0'..='9') {
            assert_eq!(event_to_digit(code), Some(digit));
            assert_eq!(digit_to_event(digit), Some(code));
        }
        let rest = [
            (10, '*'),
            (11, '#'),
            (12, 'A'),
            (13, 'B'),
            (14, 'C'),
            (15, 'D'),
        ];
        for (code, digit) in rest {
            assert_eq!(event_to_digit(code), Some(digit));
            assert_eq!(digit_to_event(digit), Some(code));
        }
        assert_eq!(digit_to_event('d'), Some(15));
        assert_eq!(event_to_digit(16), None, "flash");
        assert_eq!(event_to_digit(255), None);
        assert_eq!(digit_to_event('E'), None);
    }
}
