//! Which way each leg of a call signals DTMF, as denwa negotiates it.
//!
//! Owns: the two edits denwa makes to the descriptions it relays so that
//! it can carry a key press between phones that signal keys differently.
//! An offer denwa passes on always offers RFC 4733 telephone-events
//! ([`offer_telephone_event`]): if the offerer had none, denwa takes the
//! answerer's events itself and plays them to the offerer as tones. An
//! answer denwa passes back keeps to the offer (RFC 3264 §6.1: no payload
//! type the offer did not list) and, when the offer had telephone-event
//! and the answer has not, gains it under the offer's payload type
//! ([`answer_to_offer`]): denwa takes the offerer's events and plays them
//! to the answerer as tones.
//!
//! Must not: decide when to regenerate a digit (the call actor does, from
//! each leg's [`crate::media::LegCodec`]) or touch the media.

use crate::media::sdp::{relay_section_index, Attribute, MediaInfo, SessionDescription};

/// The telephone-event payload type denwa offers when it is free.
pub const PREFERRED_EVENT_PT: u8 = 101;
/// The events denwa sends and understands: the sixteen keys.
pub const EVENTS_FMTP: &str = "0-15";

const DYNAMIC_PTS: std::ops::RangeInclusive<u8> = 96..=127;

/// Adds `telephone-event/8000` to the relayed audio section of `offer`
/// when it has none; returns the payload type the offer now carries for
/// it (`None` when there is no relayed audio section or no dynamic payload
/// type is free).
pub fn offer_telephone_event(offer: &mut SessionDescription) -> Option<u8> {
    let index = relay_section_index(offer)?;
    let section = offer.media.get_mut(index)?;
    if let Some(pt) = section.telephone_event_pt() {
        return Some(pt);
    }
    let used = section.payload_types();
    let pt = std::iter::once(PREFERRED_EVENT_PT)
        .chain(DYNAMIC_PTS)
        .find(|pt| !used.contains(pt))?;
    add_events(&mut section.formats, &mut section.attributes, pt);
    Some(pt)
}

/// Makes `answer` (already rewritten for the offerer) fit `offer`, the
/// offerer's own description: payload types the offer did not list are
/// removed with their `rtpmap`/`fmtp`, unless that would leave no audio
/// codec; telephone-event is added under the offer's payload type when the
/// offer had it and the answer has not.
pub fn answer_to_offer(answer: &mut SessionDescription, offer: &MediaInfo) {
    let Some(section) = relay_section_index(answer).and_then(|i| answer.media.get_mut(i)) else {
        return;
    };
    let offered = |pt: u8| offer.payload_types.contains(&pt);
    let kept: Vec<u8> = section
        .payload_types()
        .into_iter()
        .filter(|pt| offered(*pt))
        .collect();
    let has_audio = kept.iter().any(|pt| Some(*pt) != offer.telephone_event_pt);
    if has_audio {
        section
            .formats
            .retain(|f| f.parse::<u8>().is_ok_and(|pt| kept.contains(&pt)));
        section
            .attributes
            .retain(|a| attribute_pt(a).is_none_or(|pt| kept.contains(&pt)));
    }
    if let Some(pt) = offer.telephone_event_pt {
        if section.telephone_event_pt().is_none() && !section.payload_types().contains(&pt) {
            add_events(&mut section.formats, &mut section.attributes, pt);
        }
    }
}

/// Appends `pt` to the format list with its `rtpmap` and `fmtp`.
fn add_events(formats: &mut Vec<String>, attributes: &mut Vec<Attribute>, pt: u8) {
    formats.push(pt.to_string());
    // After the other rtpmap/fmtp lines, before direction and the rest.
    let at = attributes
        .iter()
        .rposition(|a| matches!(a.name.as_str(), "rtpmap" | "fmtp"))
        .map_or(0, |i| i + 1);
    let lines = [
        ("rtpmap", format!("{pt} telephone-event/8000")),
        ("fmtp", format!("{pt} {EVENTS_FMTP}")),
    ];
    for (offset, (name, value)) in lines.into_iter().enumerate() {
        attributes.insert(
            at + offset,
            Attribute {
                name: name.to_string(),
                value: Some(value),
            },
        );
    }
}

/// The payload type an `rtpmap` or `fmtp` attribute is about.
fn attribute_pt(attribute: &Attribute) -> Option<u8> {
    if !matches!(attribute.name.as_str(), "rtpmap" | "fmtp") {
        return None;
    }
    attribute
        .value
        .as_deref()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sdp::{parse, remote_media, rewrite_for_relay};

    fn sdp(formats: &str, extra: &str) -> SessionDescription {
        let body = format!(
            "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 6000 RTP/AVP {formats}\r\n{extra}a=sendrecv\r\n"
        );
        parse(body.as_bytes()).unwrap()
    }

    fn relayed(desc: &SessionDescription) -> SessionDescription {
        rewrite_for_relay(desc, "127.0.0.1:40000".parse().unwrap(), 7, 1).unwrap()
    }

    fn lines(desc: &SessionDescription) -> Vec<String> {
        desc.to_string()
            .lines()
            .filter(|l| l.starts_with("m=") || l.starts_with("a="))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn an_offer_without_events_gains_them_before_the_direction() {
        let mut offer = relayed(&sdp("0 8", ""));
        assert_eq!(offer_telephone_event(&mut offer), Some(101));
        assert_eq!(
            lines(&offer),
            [
                "m=audio 40000 RTP/AVP 0 8 101",
                "a=rtpmap:101 telephone-event/8000",
                "a=fmtp:101 0-15",
                "a=sendrecv"
            ]
        );
        let info = remote_media(&parse(&offer.to_bytes()).unwrap()).unwrap();
        assert_eq!(info.telephone_event_pt, Some(101));
    }

    #[test]
    fn an_offer_with_events_is_left_alone_and_a_taken_101_is_avoided() {
        let mut offer = relayed(&sdp("0 96", "a=rtpmap:96 telephone-event/8000\r\n"));
        let before = offer.clone();
        assert_eq!(offer_telephone_event(&mut offer), Some(96));
        assert_eq!(offer, before);
        // 101 is some other codec's, so the first free dynamic type.
        let mut offer = sdp(
            "0 101 96",
            "a=rtpmap:101 foo/8000\r\na=rtpmap:96 bar/8000\r\n",
        );
        assert_eq!(offer_telephone_event(&mut offer), Some(97));
        assert_eq!(offer.media[0].telephone_event_pt(), Some(97));
        let mut video_only = parse(
            b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 6000 RTP/AVP 97\r\n",
        )
        .unwrap();
        assert_eq!(offer_telephone_event(&mut video_only), None);
    }

    #[test]
    fn an_answer_loses_what_the_offer_did_not_list() {
        // The caller offered PCMU only; denwa offered the callee events,
        // which it accepted.
        let offer = remote_media(&sdp("0", "")).unwrap();
        let mut answer = relayed(&sdp(
            "0 101",
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n",
        ));
        answer_to_offer(&mut answer, &offer);
        assert_eq!(lines(&answer), ["m=audio 40000 RTP/AVP 0", "a=sendrecv"]);
    }

    #[test]
    fn an_answer_gains_the_events_the_offer_had() {
        let offer = remote_media(&sdp("0 8 100", "a=rtpmap:100 telephone-event/8000\r\n")).unwrap();
        let mut answer = relayed(&sdp("0", "a=rtpmap:0 PCMU/8000\r\n"));
        answer_to_offer(&mut answer, &offer);
        assert_eq!(
            lines(&answer),
            [
                "m=audio 40000 RTP/AVP 0 100",
                "a=rtpmap:0 PCMU/8000",
                "a=rtpmap:100 telephone-event/8000",
                "a=fmtp:100 0-15",
                "a=sendrecv"
            ]
        );
        // Answered with events already: unchanged.
        let mut both = relayed(&sdp("8 100", "a=rtpmap:100 telephone-event/8000\r\n"));
        let before = both.clone();
        answer_to_offer(&mut both, &offer);
        assert_eq!(both, before);
    }

    #[test]
    fn an_answer_with_no_offered_codec_keeps_its_codecs() {
        // A broken answerer: denwa does not make it worse by emptying it.
        let offer = remote_media(&sdp("8", "")).unwrap();
        let mut answer = relayed(&sdp("0", ""));
        answer_to_offer(&mut answer, &offer);
        assert_eq!(lines(&answer), ["m=audio 40000 RTP/AVP 0", "a=sendrecv"]);
    }
}
