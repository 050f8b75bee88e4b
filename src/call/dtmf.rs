//! DTMF between the two legs of a call: how each leg signals keys, and
//! when denwa plays a key pressed on one leg to the other.
//!
//! Owns: the per-leg [`LegCodec`]s a finished offer/answer gives (the
//! offerer keeps the telephone-event payload type it offered, because the
//! answer denwa relays to it always carries one when the offer did; see
//! `media::dtmf::negotiation`), the rule for regenerating a key
//! ([`regenerate`]), and reading a key out of a SIP INFO.
//!
//! Must not: send anything or touch the media; the call actor does, through
//! its relay handle.

use std::time::Duration;

use rsip::headers::UntypedHeader;
use rsip::{Header, Request};

use crate::media::dtmf::{parse_info, DigitEvent, DigitSource};
use crate::media::g711::Codec;
use crate::media::relay::LegCodec;
use crate::media::sdp::MediaInfo;

/// Shortest press denwa regenerates: a shorter one is sent this long, so
/// that every receiver's detector takes it.
pub const MIN_REGENERATED_MS: u32 = 100;
/// A SIP INFO without a duration stands for a press this long.
pub const INFO_DEFAULT_MS: u32 = 160;

/// The G.711 codec and telephone-event payload type a peer's SDP puts
/// first.
pub fn leg_codec(m: &MediaInfo) -> LegCodec {
    let codec = m.codecs.iter().find_map(|c| Codec::from_payload_type(c.pt));
    LegCodec {
        codec,
        telephone_event: m.telephone_event_pt,
    }
}

/// What each side of a finished offer/answer speaks: `(offerer,
/// answerer)`. Both use the answer's codec; the answerer has the
/// telephone-event it answered with, the offerer the one it offered.
pub fn answered(offer: Option<&MediaInfo>, answer: &MediaInfo) -> (LegCodec, LegCodec) {
    let answerer = leg_codec(answer);
    let offerer = LegCodec {
        codec: answerer.codec,
        telephone_event: offer.and_then(|o| o.telephone_event_pt),
    };
    (offerer, answerer)
}

/// Whether a key pressed on one leg, that arrived by `source`, must be
/// played by denwa to the other leg, which negotiated `to`. An RFC 4733
/// event reaches a leg with telephone-events by itself (the relay passes
/// it on) and in-band tones reach a leg without them in the audio; every
/// other pairing, and every SIP INFO, is regenerated.
pub fn regenerate(source: DigitSource, to: LegCodec) -> bool {
    match source {
        DigitSource::Rfc4733 => to.telephone_event.is_none(),
        DigitSource::Inband => to.telephone_event.is_some(),
        DigitSource::Info => true,
    }
}

/// How long a regenerated key is held.
pub fn regenerated_duration(digit: &DigitEvent) -> Duration {
    Duration::from_millis(u64::from(digit.duration_ms.max(MIN_REGENERATED_MS)))
}

/// The key of an INFO carrying one (`application/dtmf-relay` or
/// `application/dtmf`), pressed at `now_ms`; `None` for any other INFO.
pub fn info_digit(req: &Request, now_ms: u64) -> Option<DigitEvent> {
    let content_type = req.headers.iter().find_map(|h| match h {
        Header::ContentType(c) => Some(c.value().to_owned()),
        _ => None,
    })?;
    let (digit, duration) = parse_info(&content_type, &req.body)?;
    Some(DigitEvent {
        digit,
        start: now_ms,
        duration_ms: duration.unwrap_or(INFO_DEFAULT_MS),
        source: DigitSource::Info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sdp::{parse, remote_media};

    fn media(formats: &str, extra: &str) -> MediaInfo {
        let body = format!(
            "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 6000 RTP/AVP {formats}\r\n{extra}"
        );
        remote_media(&parse(body.as_bytes()).unwrap()).unwrap()
    }

    const EVENTS: &str = "a=rtpmap:101 telephone-event/8000\r\n";

    #[test]
    fn each_side_keeps_its_own_telephone_event() {
        let offer = media("8 0 101", EVENTS);
        let answer = media("0", "");
        let (offerer, answerer) = answered(Some(&offer), &answer);
        assert_eq!(offerer.codec, Some(Codec::Pcmu), "the answer's codec");
        assert_eq!(offerer.telephone_event, Some(101));
        assert_eq!(answerer.codec, Some(Codec::Pcmu));
        assert_eq!(answerer.telephone_event, None);
        let (offerer, answerer) = answered(Some(&media("0", "")), &media("0 101", EVENTS));
        assert_eq!(offerer.telephone_event, None);
        assert_eq!(answerer.telephone_event, Some(101));
        assert_eq!(answered(None, &media("8", "")).0.codec, Some(Codec::Pcma));
        assert_eq!(leg_codec(&media("18 9", "")).codec, None);
    }

    #[test]
    fn keys_are_regenerated_only_where_they_would_not_arrive() {
        let events = LegCodec {
            codec: Some(Codec::Pcmu),
            telephone_event: Some(101),
        };
        let tones = LegCodec {
            telephone_event: None,
            ..events
        };
        assert!(!regenerate(DigitSource::Rfc4733, events), "passed through");
        assert!(regenerate(DigitSource::Rfc4733, tones));
        assert!(regenerate(DigitSource::Inband, events));
        assert!(!regenerate(DigitSource::Inband, tones), "in the audio");
        assert!(regenerate(DigitSource::Info, events));
        assert!(regenerate(DigitSource::Info, tones));
    }

    fn info(content_type: &str, body: &str) -> Request {
        let text = format!(
            "INFO sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 2 INFO\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Request::try_from(text.as_bytes()).unwrap()
    }

    #[test]
    fn info_bodies_give_keys_with_a_duration() {
        let d = info_digit(
            &info("application/dtmf-relay", "Signal=7\r\nDuration=250\r\n"),
            9,
        )
        .unwrap();
        assert_eq!((d.digit, d.duration_ms, d.start), ('7', 250, 9));
        assert_eq!(d.source, DigitSource::Info);
        let d = info_digit(&info("application/dtmf", "#"), 0).unwrap();
        assert_eq!((d.digit, d.duration_ms), ('#', INFO_DEFAULT_MS));
        assert_eq!(info_digit(&info("application/json", "{}"), 0), None);
        let short = DigitEvent {
            duration_ms: 40,
            ..d
        };
        assert_eq!(regenerated_duration(&short), Duration::from_millis(100));
        assert_eq!(regenerated_duration(&d), Duration::from_millis(160));
    }
}
