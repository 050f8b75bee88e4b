//! The SDP answer (RFC 3264) denwa gives when it is the far end of a call
//! itself (a conference room, a supervisor's leg): one G.711 law, the first
//! of PCMU and PCMA in the offerer's order, RFC 4733 telephone-event when
//! offered, 20 ms packets, denwa's media address.
//!
//! Pure: no sockets. [`negotiate`] decides before any port is bound (so an
//! offer without G.711 gets 488 at no cost); [`Negotiated::answer`] writes
//! the description once the port is known.

use std::net::SocketAddr;

use thiserror::Error;

use crate::media::g711::Codec;
use crate::media::relay::LegCodec;
use crate::media::sdp::{
    self, Attribute, Connection, Direction, MediaDescription, Origin, SessionDescription, PT_PCMA,
    PT_PCMU,
};

/// Why an offer cannot be answered (the phone gets 488).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnswerError {
    #[error("the offer has no RTP/AVP audio stream")]
    NoAudio,
    #[error("the offer has neither PCMU nor PCMA")]
    NoG711,
    #[error("the offer no longer has {0:?}, the codec in use")]
    CodecDropped(Codec),
}

/// One `m=` line of the answer, in the offer's order (RFC 3264 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Section {
    /// The audio stream denwa takes.
    Audio,
    /// Refused with port 0, as offered.
    Refused {
        media: String,
        proto: String,
        formats: Vec<String>,
    },
}

/// What denwa accepts of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// telephone-event payload type and its `a=fmtp` events, if offered.
    pub telephone_event: Option<(u8, Option<String>)>,
    /// Where the phone wants RTP; `None` when it named no usable address
    /// (`c=0.0.0.0`): the relay then learns it from the first packet.
    pub remote: Option<SocketAddr>,
    /// Our direction: the offer's, seen from the other end.
    pub direction: Direction,
    sections: Vec<Section>,
}

impl Negotiated {
    /// What the media engine needs to decode and send to this phone.
    pub fn leg_codec(&self) -> LegCodec {
        LegCodec {
            codec: Some(self.codec),
            telephone_event: self.telephone_event.as_ref().map(|(pt, _)| *pt),
        }
    }

    /// The answer with denwa's RTP address `local`; `version` goes up each
    /// time the description changes within the dialog.
    pub fn answer(&self, local: SocketAddr, session_id: u64, version: u64) -> SessionDescription {
        let media = self
            .sections
            .iter()
            .map(|s| match s {
                Section::Audio => self.audio(local.port()),
                Section::Refused {
                    media,
                    proto,
                    formats,
                } => MediaDescription {
                    media: media.clone(),
                    port: 0,
                    port_count: None,
                    proto: proto.clone(),
                    formats: formats.clone(),
                    connection: None,
                    attributes: Vec::new(),
                    other: Vec::new(),
                },
            })
            .collect();
        let connection = Connection::for_ip(local.ip());
        SessionDescription {
            origin: Origin {
                username: "denwa".to_owned(),
                session_id: session_id.to_string(),
                session_version: version.to_string(),
                net_type: connection.net_type.clone(),
                addr_type: connection.addr_type.clone(),
                address: connection.address.clone(),
            },
            session_name: "-".to_owned(),
            connection: Some(connection),
            timing: vec!["0 0".to_owned()],
            attributes: Vec::new(),
            other: Vec::new(),
            media,
        }
    }

    fn audio(&self, port: u16) -> MediaDescription {
        let (pt, name) = match self.codec {
            Codec::Pcmu => (PT_PCMU, "PCMU"),
            Codec::Pcma => (PT_PCMA, "PCMA"),
        };
        let attribute = |name: &str, value: String| Attribute {
            name: name.to_owned(),
            value: Some(value),
        };
        let mut formats = vec![pt.to_string()];
        let mut attributes = vec![attribute("rtpmap", format!("{pt} {name}/8000"))];
        if let Some((te, events)) = &self.telephone_event {
            formats.push(te.to_string());
            attributes.push(attribute("rtpmap", format!("{te} telephone-event/8000")));
            let events = events.clone().unwrap_or_else(|| "0-15".to_owned());
            attributes.push(attribute("fmtp", format!("{te} {events}")));
        }
        attributes.push(attribute("ptime", "20".to_owned()));
        attributes.push(Attribute {
            name: self.direction.as_str().to_owned(),
            value: None,
        });
        MediaDescription {
            media: "audio".to_owned(),
            port,
            port_count: None,
            proto: "RTP/AVP".to_owned(),
            formats,
            connection: None,
            attributes,
            other: Vec::new(),
        }
    }
}

/// Decides what to accept of `offer`. `keep` is the codec already in use
/// (a re-INVITE may not switch laws under a running mix).
pub fn negotiate(
    offer: &SessionDescription,
    keep: Option<Codec>,
) -> Result<Negotiated, AnswerError> {
    let info = sdp::remote_media(offer).ok_or(AnswerError::NoAudio)?;
    let offered = |c: Codec| info.payload_types.contains(&payload_type(c));
    let codec = match keep {
        Some(c) if offered(c) => c,
        Some(c) => return Err(AnswerError::CodecDropped(c)),
        None => info
            .payload_types
            .iter()
            .find_map(|pt| match *pt {
                PT_PCMU => Some(Codec::Pcmu),
                PT_PCMA => Some(Codec::Pcma),
                _ => None,
            })
            .ok_or(AnswerError::NoG711)?,
    };
    let mut audio_taken = false;
    let mut sections = Vec::with_capacity(offer.media.len());
    for m in &offer.media {
        let is_audio = !audio_taken
            && m.media.eq_ignore_ascii_case("audio")
            && m.port != 0
            && m.proto.eq_ignore_ascii_case("RTP/AVP");
        if is_audio {
            audio_taken = true;
            sections.push(Section::Audio);
        } else {
            sections.push(Section::Refused {
                media: m.media.clone(),
                proto: m.proto.clone(),
                formats: m.formats.clone(),
            });
        }
    }
    let telephone_event = offer
        .media
        .iter()
        .zip(&sections)
        .find(|(_, s)| **s == Section::Audio)
        .and_then(|(m, _)| {
            let te = info.telephone_event_pt?;
            Some((te, fmtp_of(m, te)))
        });
    Ok(Negotiated {
        codec,
        telephone_event,
        remote: (!info.addr.ip().is_unspecified() && info.addr.port() != 0).then_some(info.addr),
        direction: reverse(info.direction),
        sections,
    })
}

fn payload_type(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => PT_PCMU,
        Codec::Pcma => PT_PCMA,
    }
}

/// The events of `a=fmtp:<pt> <events>`, when the offer names them.
fn fmtp_of(m: &MediaDescription, pt: u8) -> Option<String> {
    m.attributes
        .iter()
        .filter(|a| a.name == "fmtp")
        .filter_map(|a| a.value.as_deref())
        .find_map(|v| {
            let (p, events) = v.trim().split_once(char::is_whitespace)?;
            let events = events.trim();
            let plain = events
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b',');
            (p.parse::<u8>().ok() == Some(pt) && plain && !events.is_empty())
                .then(|| events.to_owned())
        })
}

/// RFC 3264 §6.1: the answerer receives what the offerer sends.
fn reverse(offered: Direction) -> Direction {
    match offered {
        Direction::SendRecv => Direction::SendRecv,
        Direction::SendOnly => Direction::RecvOnly,
        Direction::RecvOnly => Direction::SendOnly,
        Direction::Inactive => Direction::Inactive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(text: &str) -> SessionDescription {
        sdp::parse(text.replace('\n', "\r\n").as_bytes()).expect("valid offer")
    }

    fn local() -> SocketAddr {
        "192.0.2.9:20000".parse().unwrap()
    }

    const BARESIP: &str = "v=0\no=- 1 2 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n\
        m=audio 50000 RTP/AVP 9 8 0 101\na=rtpmap:101 telephone-event/8000\n\
        a=fmtp:101 0-15\na=ptime:20\na=sendrecv\nm=video 50002 RTP/AVP 96\n\
        a=rtpmap:96 H264/90000\n";

    #[test]
    fn answer_takes_the_first_g711_law_and_telephone_events() {
        let n = negotiate(&offer(BARESIP), None).expect("acceptable");
        assert_eq!(n.codec, Codec::Pcma, "PCMA comes before PCMU in the offer");
        assert_eq!(n.leg_codec().telephone_event, Some(101));
        assert_eq!(n.remote, Some("127.0.0.1:50000".parse().unwrap()));
        let text = n.answer(local(), 42, 1).to_string();
        assert_eq!(
            text,
            "v=0\r\no=denwa 42 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
             m=audio 20000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n\
             a=sendrecv\r\nm=video 0 RTP/AVP 96\r\n"
        );
        let back = sdp::parse(text.as_bytes()).expect("the answer parses");
        assert_eq!(back.media.len(), 2, "one m= line per offered stream");
    }

    #[test]
    fn answer_without_telephone_event_and_over_ipv6() {
        let o =
            offer("v=0\no=- 1 1 IN IP6 ::1\ns=-\nc=IN IP6 ::1\nt=0 0\nm=audio 4000 RTP/AVP 0\n");
        let n = negotiate(&o, None).expect("acceptable");
        let text = n.answer("[::1]:30000".parse().unwrap(), 7, 3).to_string();
        assert!(text.contains("c=IN IP6 ::1\r\n"), "{text}");
        assert!(text.contains("m=audio 30000 RTP/AVP 0\r\n"), "{text}");
        assert!(!text.contains("telephone-event"), "{text}");
        assert!(text.contains("a=ptime:20\r\n"), "{text}");
    }

    #[test]
    fn offers_without_g711_or_audio_are_refused() {
        let o = offer("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 9 18\n");
        assert_eq!(negotiate(&o, None), Err(AnswerError::NoG711));
        let o = offer("v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=video 4000 RTP/AVP 96\n");
        assert_eq!(negotiate(&o, None), Err(AnswerError::NoAudio));
    }

    #[test]
    fn a_reoffer_keeps_the_codec_in_use_and_mirrors_hold() {
        let o = offer("v=0\no=- 1 2 IN IP4 0.0.0.0\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 4000 RTP/AVP 0 8\na=sendonly\n");
        let n = negotiate(&o, Some(Codec::Pcma)).expect("PCMA still offered");
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.remote, None, "no address to send to while held");
        assert_eq!(n.direction, Direction::RecvOnly);
        let o = offer(
            "v=0\no=- 1 3 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n",
        );
        assert_eq!(
            negotiate(&o, Some(Codec::Pcma)),
            Err(AnswerError::CodecDropped(Codec::Pcma))
        );
    }

    #[test]
    fn odd_telephone_event_parameters_fall_back_to_the_default_events() {
        let o = offer(
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n\
            m=audio 4000 RTP/AVP 0 96\na=rtpmap:96 telephone-event/8000\na=fmtp:96 0-15;x=<b>\n",
        );
        let n = negotiate(&o, None).expect("acceptable");
        let text = n.answer(local(), 1, 1).to_string();
        assert!(text.contains("a=fmtp:96 0-15\r\n"), "{text}");
    }
}
