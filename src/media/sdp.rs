//! SDP (RFC 4566) model, parser, serialiser and the relay rewrite (RFC 3264
//! offer/answer as a B2BUA applies it).
//!
//! Owns: turning an SDP body into a [`SessionDescription`] and back (CRLF line
//! ends), reading the remote audio endpoint out of it ([`remote_media`]) and
//! building the description denwa sends to the other leg
//! ([`rewrite_for_relay`]) so that all RTP flows through denwa's relay.
//!
//! Must not: touch sockets, allocate ports or decide call policy. The body is
//! attacker-controlled: parsing never panics, every failure is an
//! [`SdpError`]. Unknown lines are kept on parse and written back unchanged;
//! the rewrite, on the other hand, is a whitelist: only what denwa relays
//! survives (no ICE candidates, no crypto, no `a=rtcp` pointing past denwa).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

/// Largest SDP body accepted, in bytes.
pub const MAX_SDP_LEN: usize = 65_536;
/// Static payload type of G.711 µ-law (RFC 3551).
pub const PT_PCMU: u8 = 0;
/// Static payload type of G.711 A-law (RFC 3551).
pub const PT_PCMA: u8 = 8;
/// Static payload type of comfort noise (RFC 3389).
pub const PT_CN: u8 = 13;

/// Why an SDP body was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    #[error("SDP body exceeds {max} bytes")]
    TooLarge { max: usize },
    #[error("SDP body is not valid UTF-8")]
    NotUtf8,
    #[error("SDP body is empty")]
    Empty,
    #[error("SDP must start with v=0")]
    BadVersion,
    #[error("SDP line {line}: not of the form <type>=<value>")]
    MalformedLine { line: usize },
    #[error("SDP line {line}: invalid o= field")]
    BadOrigin { line: usize },
    #[error("SDP has no o= line")]
    MissingOrigin,
    #[error("SDP line {line}: invalid c= field")]
    BadConnection { line: usize },
    #[error("SDP line {line}: invalid m= field")]
    BadMedia { line: usize },
    #[error("SDP offers no RTP/AVP audio stream")]
    NoAudio,
    #[error("SDP offers no codec denwa relays (PCMU or PCMA)")]
    NoSupportedCodec,
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// Values of the `t=` lines, in order.
    pub timing: Vec<String>,
    /// Session-level `a=` lines.
    pub attributes: Vec<Attribute>,
    /// Other session-level lines (`i= u= e= p= b= r= z= k=` and unknown).
    pub other: Vec<Field>,
    pub media: Vec<MediaDescription>,
}

/// The `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: String,
    pub session_version: String,
    pub net_type: String,
    pub addr_type: String,
    pub address: String,
}

/// A `c=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub net_type: String,
    pub addr_type: String,
    /// The connection address, possibly with a `/ttl` suffix.
    pub address: String,
}

/// One media section: the `m=` line and the lines that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub media: String,
    pub port: u16,
    /// The `/<number of ports>` suffix, if present.
    pub port_count: Option<u16>,
    pub proto: String,
    /// The `<fmt>` list: payload type numbers for RTP/AVP.
    pub formats: Vec<String>,
    pub connection: Option<Connection>,
    pub attributes: Vec<Attribute>,
    pub other: Vec<Field>,
}

/// An `a=name[:value]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

/// Any other `<type>=<value>` line, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub kind: char,
    pub value: String,
}

/// Media direction attribute (RFC 4566 §6, RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// A codec named by the offer, by `a=rtpmap` or by the static table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub pt: u8,
    pub name: String,
    pub rate: u32,
}

/// What denwa needs to know about the peer's audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// Where the peer wants RTP sent (connection address and `m=` port).
    pub addr: SocketAddr,
    /// Every payload type in the `m=` line, in the peer's order.
    pub payload_types: Vec<u8>,
    /// The payload types whose codec is known, in the peer's order.
    pub codecs: Vec<Codec>,
    /// The RFC 4733 `telephone-event/8000` payload type, if offered.
    pub telephone_event_pt: Option<u8>,
    /// Effective direction from the peer's point of view; an unspecified
    /// connection address (`c=IN IP4 0.0.0.0`, RFC 2543 hold) removes the
    /// receive half.
    pub direction: Direction,
}

impl MediaInfo {
    /// True when the peer does not want to receive media (it holds the call).
    pub fn is_hold(&self) -> bool {
        matches!(self.direction, Direction::SendOnly | Direction::Inactive)
    }
}

impl Direction {
    /// The direction named by an attribute, if it is one.
    pub fn from_attribute(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The same direction with the receive half taken away.
    pub fn without_receive(self) -> Direction {
        match self {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
        }
    }
}

impl Connection {
    /// `IN IP4 <ip>` or `IN IP6 <ip>`.
    pub fn for_ip(ip: IpAddr) -> Connection {
        Connection {
            net_type: "IN".to_string(),
            addr_type: addr_type_of(ip).to_string(),
            address: ip.to_string(),
        }
    }

    /// The address as an IP, without any `/ttl` suffix; `None` for host
    /// names or a network type other than `IN`.
    pub fn ip(&self) -> Option<IpAddr> {
        if !self.net_type.eq_ignore_ascii_case("IN") {
            return None;
        }
        let bare = self.address.split('/').next()?;
        if self.addr_type.eq_ignore_ascii_case("IP4") {
            bare.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        } else if self.addr_type.eq_ignore_ascii_case("IP6") {
            bare.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            None
        }
    }
}

impl Attribute {
    fn flag(name: &str) -> Attribute {
        Attribute {
            name: name.to_string(),
            value: None,
        }
    }
}

impl MediaDescription {
    /// The `<fmt>` entries that are RTP payload type numbers.
    pub fn payload_types(&self) -> Vec<u8> {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt <= 127)
            .collect()
    }

    /// The explicit direction attribute of this section, if any.
    pub fn direction(&self) -> Option<Direction> {
        explicit_direction(&self.attributes)
    }

    /// The codec of `pt`: its `a=rtpmap`, else the static table.
    pub fn codec(&self, pt: u8) -> Option<Codec> {
        self.rtpmap(pt).or_else(|| static_codec(pt))
    }

    fn rtpmap(&self, pt: u8) -> Option<Codec> {
        self.attributes
            .iter()
            .filter(|a| a.name == "rtpmap")
            .filter_map(|a| parse_rtpmap(a.value.as_deref()?))
            .find(|c| c.pt == pt)
    }

    /// The `telephone-event/8000` payload type offered in this section.
    pub fn telephone_event_pt(&self) -> Option<u8> {
        self.payload_types().into_iter().find(|pt| {
            self.rtpmap(*pt)
                .is_some_and(|c| c.name.eq_ignore_ascii_case("telephone-event") && c.rate == 8000)
        })
    }
}

impl SessionDescription {
    /// The body as sent on the wire (CRLF line ends).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

/// Parses an SDP body. Accepts CRLF or bare LF line ends and ignores blank
/// lines; everything else malformed is an error.
pub fn parse(bytes: &[u8]) -> Result<SessionDescription, SdpError> {
    if bytes.len() > MAX_SDP_LEN {
        return Err(SdpError::TooLarge { max: MAX_SDP_LEN });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| SdpError::NotUtf8)?;
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().ok_or(SdpError::Empty)?;
    if first.trim_end() != "v=0" {
        return Err(SdpError::BadVersion);
    }
    let mut builder = Builder::default();
    for (index, line) in lines {
        let number = index.saturating_add(1);
        let (kind, value) = split_line(line).ok_or(SdpError::MalformedLine { line: number })?;
        builder.push(kind, value, number)?;
    }
    builder.finish()
}

/// The audio stream denwa relays, as the peer described it. `None` when there
/// is no RTP/AVP audio section with a non-zero port and an IP connection
/// address.
pub fn remote_media(sdp: &SessionDescription) -> Option<MediaInfo> {
    let section = sdp.media.get(relay_section_index(sdp)?)?;
    let ip = effective_connection(sdp, section)?.ip()?;
    let payload_types = section.payload_types();
    let codecs = payload_types
        .iter()
        .filter_map(|pt| section.codec(*pt))
        .collect();
    let mut direction = effective_direction(sdp, section);
    if ip.is_unspecified() {
        direction = direction.without_receive();
    }
    Some(MediaInfo {
        addr: SocketAddr::new(ip, section.port),
        payload_types,
        codecs,
        telephone_event_pt: section.telephone_event_pt(),
        direction,
    })
}

/// Builds the description denwa sends to the other leg's peer: denwa's
/// address in `o=` and `c=`, denwa's port in the audio `m=`, only the
/// payload types denwa relays (PCMU, PCMA, telephone-event/8000, CN) in the
/// offerer's order, hold semantics preserved, every other media section
/// disabled (port 0, RFC 3264 §8.2). `session_id`/`version` belong to the
/// leg: the caller increments `version` for each new description.
///
/// Fails with [`SdpError::NoAudio`] or [`SdpError::NoSupportedCodec`] so the
/// call layer can answer 488.
pub fn rewrite_for_relay(
    sdp: &SessionDescription,
    local: SocketAddr,
    session_id: u64,
    version: u64,
) -> Result<SessionDescription, SdpError> {
    let index = relay_section_index(sdp).ok_or(SdpError::NoAudio)?;
    let source = sdp.media.get(index).ok_or(SdpError::NoAudio)?;
    let audio = relay_audio_section(sdp, source, local.port())?;
    let hold = effective_connection(sdp, source)
        .and_then(Connection::ip)
        .is_some_and(|ip| ip.is_unspecified());
    let connection_ip = if hold {
        unspecified_like(local.ip())
    } else {
        local.ip()
    };
    let media = sdp
        .media
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if i == index {
                audio.clone()
            } else {
                disabled_section(m)
            }
        })
        .collect();
    let timing = if sdp.timing.is_empty() {
        vec!["0 0".to_string()]
    } else {
        sdp.timing.clone()
    };
    Ok(SessionDescription {
        origin: Origin {
            username: "denwa".to_string(),
            session_id: session_id.to_string(),
            session_version: version.to_string(),
            net_type: "IN".to_string(),
            addr_type: addr_type_of(local.ip()).to_string(),
            address: local.ip().to_string(),
        },
        session_name: "-".to_string(),
        connection: Some(Connection::for_ip(connection_ip)),
        timing,
        attributes: Vec::new(),
        other: Vec::new(),
        media,
    })
}

/// The audio section rewritten to denwa's port with the relayed codecs only.
fn relay_audio_section(
    sdp: &SessionDescription,
    source: &MediaDescription,
    port: u16,
) -> Result<MediaDescription, SdpError> {
    let te = source.telephone_event_pt();
    let kept: Vec<u8> = source
        .payload_types()
        .into_iter()
        .filter(|pt| matches!(*pt, PT_PCMU | PT_PCMA | PT_CN) || Some(*pt) == te)
        .fold(Vec::new(), |mut acc, pt| {
            if !acc.contains(&pt) {
                acc.push(pt);
            }
            acc
        });
    if !kept.iter().any(|pt| matches!(*pt, PT_PCMU | PT_PCMA)) {
        return Err(SdpError::NoSupportedCodec);
    }
    let mut attributes: Vec<Attribute> = source
        .attributes
        .iter()
        .filter(|a| keep_attribute(a, &kept))
        .cloned()
        .collect();
    if let Some(direction) = source.direction().or(explicit_direction(&sdp.attributes)) {
        attributes.push(Attribute::flag(direction.as_str()));
    }
    Ok(MediaDescription {
        media: source.media.clone(),
        port,
        port_count: None,
        proto: source.proto.clone(),
        formats: kept.iter().map(u8::to_string).collect(),
        connection: None,
        attributes,
        other: Vec::new(),
    })
}

/// The whitelist of audio attributes that survive the rewrite (direction
/// attributes are re-added separately).
fn keep_attribute(attribute: &Attribute, kept: &[u8]) -> bool {
    match attribute.name.as_str() {
        "rtpmap" | "fmtp" => attribute
            .value
            .as_deref()
            .and_then(|v| v.split_whitespace().next())
            .and_then(|pt| pt.parse::<u8>().ok())
            .is_some_and(|pt| kept.contains(&pt)),
        "ptime" | "maxptime" => true,
        _ => false,
    }
}

/// A media section denwa does not relay, refused with port 0.
fn disabled_section(m: &MediaDescription) -> MediaDescription {
    MediaDescription {
        media: m.media.clone(),
        port: 0,
        port_count: None,
        proto: m.proto.clone(),
        formats: m.formats.clone(),
        connection: None,
        attributes: Vec::new(),
        other: Vec::new(),
    }
}

/// Index of the first RTP/AVP audio section with a non-zero port.
pub(crate) fn relay_section_index(sdp: &SessionDescription) -> Option<usize> {
    sdp.media.iter().position(|m| {
        m.media.eq_ignore_ascii_case("audio")
            && m.port != 0
            && m.proto.eq_ignore_ascii_case("RTP/AVP")
    })
}

fn effective_connection<'a>(
    sdp: &'a SessionDescription,
    m: &'a MediaDescription,
) -> Option<&'a Connection> {
    m.connection.as_ref().or(sdp.connection.as_ref())
}

fn effective_direction(sdp: &SessionDescription, m: &MediaDescription) -> Direction {
    m.direction()
        .or(explicit_direction(&sdp.attributes))
        .unwrap_or(Direction::SendRecv)
}

fn explicit_direction(attributes: &[Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .rev()
        .find_map(|a| Direction::from_attribute(&a.name))
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

fn addr_type_of(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// The RFC 3551 static payload types denwa can name without an rtpmap.
fn static_codec(pt: u8) -> Option<Codec> {
    let (name, rate) = match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        18 => ("G729", 8000),
        _ => return None,
    };
    Some(Codec {
        pt,
        name: name.to_string(),
        rate,
    })
}

/// `<pt> <encoding>/<rate>[/<channels>]`.
fn parse_rtpmap(value: &str) -> Option<Codec> {
    let (pt, encoding) = value.trim().split_once(char::is_whitespace)?;
    let pt = pt.parse::<u8>().ok().filter(|pt| *pt <= 127)?;
    let mut parts = encoding.trim().split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let rate = parts.next()?.trim().parse::<u32>().ok()?;
    Some(Codec {
        pt,
        name: name.to_string(),
        rate,
    })
}

/// `x=value` with `x` a lower-case ASCII letter.
fn split_line(line: &str) -> Option<(char, &str)> {
    let mut chars = line.chars();
    let kind = chars.next().filter(char::is_ascii_lowercase)?;
    let value = chars.as_str().strip_prefix('=')?;
    Some((kind, value))
}

/// Accumulates lines into a [`SessionDescription`].
#[derive(Default)]
struct Builder {
    origin: Option<Origin>,
    session_name: Option<String>,
    connection: Option<Connection>,
    timing: Vec<String>,
    attributes: Vec<Attribute>,
    other: Vec<Field>,
    media: Vec<MediaDescription>,
}

impl Builder {
    fn push(&mut self, kind: char, value: &str, line: usize) -> Result<(), SdpError> {
        let in_media = !self.media.is_empty();
        match kind {
            'v' => return Err(SdpError::MalformedLine { line }),
            'o' if !in_media && self.origin.is_none() => {
                self.origin = Some(parse_origin(value).ok_or(SdpError::BadOrigin { line })?);
            }
            's' if !in_media && self.session_name.is_none() => {
                self.session_name = Some(value.to_string());
            }
            't' if !in_media => self.timing.push(value.to_string()),
            'o' | 's' | 't' => return Err(SdpError::MalformedLine { line }),
            'm' => self
                .media
                .push(parse_media(value).ok_or(SdpError::BadMedia { line })?),
            'c' => {
                let c = parse_connection(value).ok_or(SdpError::BadConnection { line })?;
                match self.media.last_mut() {
                    Some(m) => m.connection = Some(c),
                    None => self.connection = Some(c),
                }
            }
            'a' => {
                let a = parse_attribute(value).ok_or(SdpError::MalformedLine { line })?;
                match self.media.last_mut() {
                    Some(m) => m.attributes.push(a),
                    None => self.attributes.push(a),
                }
            }
            _ => {
                let f = Field {
                    kind,
                    value: value.to_string(),
                };
                match self.media.last_mut() {
                    Some(m) => m.other.push(f),
                    None => self.other.push(f),
                }
            }
        }
        Ok(())
    }

    /// Optional lines are kept in RFC 4566 order so that serialising and
    /// parsing again gives the same value.
    fn finish(mut self) -> Result<SessionDescription, SdpError> {
        self.other.sort_by_key(|f| line_rank(f.kind));
        for m in &mut self.media {
            m.other.sort_by_key(|f| line_rank(f.kind));
        }
        Ok(SessionDescription {
            origin: self.origin.ok_or(SdpError::MissingOrigin)?,
            session_name: self.session_name.unwrap_or_else(|| "-".to_string()),
            connection: self.connection,
            timing: self.timing,
            attributes: self.attributes,
            other: self.other,
            media: self.media,
        })
    }
}

fn parse_origin(value: &str) -> Option<Origin> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [username, session_id, session_version, net_type, addr_type, address] = fields[..] else {
        return None;
    };
    Some(Origin {
        username: username.to_string(),
        session_id: session_id.to_string(),
        session_version: session_version.to_string(),
        net_type: net_type.to_string(),
        addr_type: addr_type.to_string(),
        address: address.to_string(),
    })
}

fn parse_connection(value: &str) -> Option<Connection> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [net_type, addr_type, address] = fields[..] else {
        return None;
    };
    Some(Connection {
        net_type: net_type.to_string(),
        addr_type: addr_type.to_string(),
        address: address.to_string(),
    })
}

fn parse_media(value: &str) -> Option<MediaDescription> {
    let mut fields = value.split_whitespace();
    let media = fields.next()?.to_string();
    let port_field = fields.next()?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((port, count)) => (port.parse().ok()?, Some(count.parse().ok()?)),
        None => (port_field.parse().ok()?, None),
    };
    let proto = fields.next()?.to_string();
    let formats: Vec<String> = fields.map(str::to_string).collect();
    if formats.is_empty() {
        return None;
    }
    Some(MediaDescription {
        media,
        port,
        port_count,
        proto,
        formats,
        connection: None,
        attributes: Vec::new(),
        other: Vec::new(),
    })
}

fn parse_attribute(value: &str) -> Option<Attribute> {
    let (name, value) = match value.split_once(':') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (value, None),
    };
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    Some(Attribute {
        name: name.to_string(),
        value,
    })
}

/// Order of the optional lines within a level (RFC 4566 §5).
fn line_rank(kind: char) -> u8 {
    match kind {
        'i' => 0,
        'u' => 1,
        'e' => 2,
        'p' => 3,
        'b' => 5,
        'r' => 7,
        'z' => 8,
        'k' => 9,
        _ => 10,
    }
}

fn write_fields(f: &mut fmt::Formatter<'_>, fields: &[Field], ranks: (u8, u8)) -> fmt::Result {
    for field in fields {
        let rank = line_rank(field.kind);
        if rank >= ranks.0 && rank <= ranks.1 {
            write!(f, "{}={}\r\n", field.kind, field.value)?;
        }
    }
    Ok(())
}

fn write_attributes(f: &mut fmt::Formatter<'_>, attributes: &[Attribute]) -> fmt::Result {
    for a in attributes {
        match &a.value {
            Some(value) => write!(f, "a={}:{}\r\n", a.name, value)?,
            None => write!(f, "a={}\r\n", a.name)?,
        }
    }
    Ok(())
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        f.write_str("v=0\r\n")?;
        write!(
            f,
            "o={} {} {} {} {} {}\r\n",
            o.username, o.session_id, o.session_version, o.net_type, o.addr_type, o.address
        )?;
        write!(f, "s={}\r\n", self.session_name)?;
        write_fields(f, &self.other, (0, 3))?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write_fields(f, &self.other, (5, 5))?;
        for t in &self.timing {
            write!(f, "t={t}\r\n")?;
        }
        write_fields(f, &self.other, (7, 10))?;
        write_attributes(f, &self.attributes)?;
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(count) = self.port_count {
            write!(f, "/{count}")?;
        }
        write!(f, " {}", self.proto)?;
        for format in &self.formats {
            write!(f, " {format}")?;
        }
        f.write_str("\r\n")?;
        write_fields(f, &self.other, (0, 3))?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write_fields(f, &self.other, (5, 10))?;
        write_attributes(f, &self.attributes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const SIPP_OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
        c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\n\
        a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

    /// A desktop softphone's offer: wideband codecs first, ICE, SRTP-less
    /// RTP/AVP, an explicit a=rtcp and a video section.
    const SOFTPHONE_OFFER: &str = "v=0\r\n\
        o=- 3912738512 3912738513 IN IP4 192.168.1.23\r\n\
        s=softphone 5.1\r\n\
        c=IN IP4 192.168.1.23\r\n\
        t=0 0\r\n\
        a=ice-lite\r\n\
        m=audio 50010 RTP/AVP 9 8 120 0 96 13 101\r\n\
        b=AS:84\r\n\
        a=rtcp:50011 IN IP4 192.168.1.23\r\n\
        a=candidate:1 1 UDP 2130706431 192.168.1.23 50010 typ host\r\n\
        a=rtpmap:120 opus/48000/2\r\n\
        a=fmtp:120 useinbandfec=1\r\n\
        a=rtpmap:96 telephone-event/48000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-16\r\n\
        a=ptime:20\r\n\
        a=sendrecv\r\n\
        m=video 50012 RTP/AVP 97\r\n\
        a=rtpmap:97 H264/90000\r\n";

    fn local() -> SocketAddr {
        "203.0.113.5:40000".parse().unwrap()
    }

    fn attr_names(m: &MediaDescription) -> Vec<String> {
        m.attributes
            .iter()
            .map(|a| match &a.value {
                Some(v) => format!("{}:{}", a.name, v),
                None => a.name.clone(),
            })
            .collect()
    }

    #[test]
    fn parses_sipp_offer() {
        let sdp = parse(SIPP_OFFER.as_bytes()).unwrap();
        assert_eq!(sdp.origin.username, "user1");
        assert_eq!(sdp.origin.session_id, "53655765");
        assert_eq!(sdp.media.len(), 1);
        assert_eq!(sdp.media[0].payload_types(), vec![0, 101]);
        let info = remote_media(&sdp).unwrap();
        assert_eq!(info.addr, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(info.telephone_event_pt, Some(101));
        assert_eq!(info.direction, Direction::SendRecv);
        assert_eq!(
            info.codecs,
            vec![
                Codec {
                    pt: 0,
                    name: "PCMU".into(),
                    rate: 8000
                },
                Codec {
                    pt: 101,
                    name: "telephone-event".into(),
                    rate: 8000
                },
            ]
        );
    }

    #[test]
    fn serialises_back_byte_identical() {
        for body in [SIPP_OFFER, SOFTPHONE_OFFER] {
            let sdp = parse(body.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(sdp.to_bytes()).unwrap(), body);
        }
    }

    #[test]
    fn accepts_bare_lf_and_trailing_blank_lines() {
        let body = SIPP_OFFER.replace("\r\n", "\n") + "\n\n";
        let sdp = parse(body.as_bytes()).unwrap();
        assert_eq!(sdp, parse(SIPP_OFFER.as_bytes()).unwrap());
    }

    #[test]
    fn rewrites_sipp_offer_for_relay() {
        let sdp = parse(SIPP_OFFER.as_bytes()).unwrap();
        let out = rewrite_for_relay(&sdp, local(), 77, 2).unwrap();
        let text = out.to_string();
        assert_eq!(
            text,
            "v=0\r\no=denwa 77 2 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\n\
             t=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
        );
        // What denwa sends must itself parse and point at denwa.
        let info = remote_media(&parse(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(info.addr, local());
    }

    #[test]
    fn rewrite_filters_softphone_offer() {
        let sdp = parse(SOFTPHONE_OFFER.as_bytes()).unwrap();
        let out = rewrite_for_relay(&sdp, local(), 1, 1).unwrap();
        let audio = &out.media[0];
        assert_eq!(audio.formats, vec!["8", "0", "13", "101"]);
        assert_eq!(audio.port, 40000);
        assert_eq!(
            attr_names(audio),
            vec![
                "rtpmap:101 telephone-event/8000",
                "fmtp:101 0-16",
                "ptime:20",
                "sendrecv"
            ]
        );
        assert!(audio.other.is_empty(), "b=AS dropped with the codecs");
        assert!(out.attributes.is_empty(), "session-level ice-lite dropped");
        let video = &out.media[1];
        assert_eq!((video.media.as_str(), video.port), ("video", 0));
        assert!(video.attributes.is_empty());
        let text = out.to_string();
        assert!(!text.contains("192.168.1.23"), "no topology leak: {text}");
        assert!(!text.contains("candidate") && !text.contains("a=rtcp"));
    }

    #[test]
    fn remote_media_reads_softphone_offer() {
        let info = remote_media(&parse(SOFTPHONE_OFFER.as_bytes()).unwrap()).unwrap();
        assert_eq!(info.addr, "192.168.1.23:50010".parse().unwrap());
        assert_eq!(info.payload_types, vec![9, 8, 120, 0, 96, 13, 101]);
        assert_eq!(info.telephone_event_pt, Some(101), "the /8000 one");
        let names: Vec<&str> = info.codecs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "G722",
                "PCMA",
                "opus",
                "PCMU",
                "telephone-event",
                "CN",
                "telephone-event"
            ]
        );
        assert_eq!(info.codecs[2].rate, 48000);
    }

    #[test]
    fn media_level_connection_wins() {
        let body = SIPP_OFFER.replace(
            "t=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\n",
            "t=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\nc=IN IP4 10.1.2.3\r\n",
        );
        let info = remote_media(&parse(body.as_bytes()).unwrap()).unwrap();
        assert_eq!(info.addr, "10.1.2.3:6000".parse().unwrap());
    }

    #[test]
    fn hold_with_sendonly_is_preserved() {
        let body = SIPP_OFFER.to_string() + "a=sendonly\r\n";
        let sdp = parse(body.as_bytes()).unwrap();
        let info = remote_media(&sdp).unwrap();
        assert_eq!(info.direction, Direction::SendOnly);
        assert!(info.is_hold());
        let out = rewrite_for_relay(&sdp, local(), 1, 2).unwrap();
        assert_eq!(out.media[0].direction(), Some(Direction::SendOnly));
        assert_eq!(out.connection, Some(Connection::for_ip(local().ip())));
    }

    #[test]
    fn session_level_inactive_moves_to_media_level() {
        let body = SIPP_OFFER.replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n");
        let sdp = parse(body.as_bytes()).unwrap();
        assert_eq!(remote_media(&sdp).unwrap().direction, Direction::Inactive);
        let out = rewrite_for_relay(&sdp, local(), 1, 2).unwrap();
        assert_eq!(out.media[0].direction(), Some(Direction::Inactive));
    }

    #[test]
    fn hold_with_zero_connection_is_preserved() {
        let body = SIPP_OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        let sdp = parse(body.as_bytes()).unwrap();
        let info = remote_media(&sdp).unwrap();
        assert!(info.addr.ip().is_unspecified());
        assert_eq!(info.direction, Direction::SendOnly);
        let out = rewrite_for_relay(&sdp, local(), 1, 2).unwrap();
        assert_eq!(out.connection.unwrap().address, "0.0.0.0");
        assert_eq!(out.origin.address, "203.0.113.5");
        assert_eq!(out.media[0].port, 40000);
        // Towards an IPv6 leg the unspecified address keeps its meaning.
        let v6: SocketAddr = "[2001:db8::5]:40002".parse().unwrap();
        let out6 = rewrite_for_relay(&sdp, v6, 1, 2).unwrap();
        assert_eq!(out6.connection.unwrap().to_string(), "IN IP6 ::");
    }

    #[test]
    fn ipv6_offer_and_rewrite() {
        let body = "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n\
                    m=audio 7078 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
        let sdp = parse(body.as_bytes()).unwrap();
        let info = remote_media(&sdp).unwrap();
        assert_eq!(info.addr, "[::1]:7078".parse().unwrap());
        let relay: SocketAddr = "[::1]:41000".parse().unwrap();
        let text = rewrite_for_relay(&sdp, relay, 9, 9).unwrap().to_string();
        assert!(text.contains("o=denwa 9 9 IN IP6 ::1\r\n"), "{text}");
        assert!(text.contains("c=IN IP6 ::1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 8\r\n"));
    }

    #[test]
    fn rejects_offer_without_supported_codec() {
        let body = SIPP_OFFER
            .replace("RTP/AVP 0 101", "RTP/AVP 18 101")
            .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000");
        let sdp = parse(body.as_bytes()).unwrap();
        assert_eq!(
            rewrite_for_relay(&sdp, local(), 1, 1),
            Err(SdpError::NoSupportedCodec)
        );
        // Telephone-event and CN alone are not a codec either.
        let body = SIPP_OFFER.replace("RTP/AVP 0 101", "RTP/AVP 13 101");
        let sdp = parse(body.as_bytes()).unwrap();
        assert_eq!(
            rewrite_for_relay(&sdp, local(), 1, 1),
            Err(SdpError::NoSupportedCodec)
        );
    }

    #[test]
    fn rejects_offer_without_usable_audio() {
        let rejected = SIPP_OFFER.replace("m=audio 6000", "m=audio 0");
        let srtp = SIPP_OFFER.replace("RTP/AVP", "RTP/SAVP");
        for body in [rejected, srtp] {
            let sdp = parse(body.as_bytes()).unwrap();
            assert_eq!(remote_media(&sdp), None);
            assert_eq!(
                rewrite_for_relay(&sdp, local(), 1, 1),
                Err(SdpError::NoAudio)
            );
        }
    }

    #[test]
    fn telephone_event_only_at_8000() {
        let body = SIPP_OFFER.replace("telephone-event/8000", "telephone-event/16000");
        let sdp = parse(body.as_bytes()).unwrap();
        assert_eq!(remote_media(&sdp).unwrap().telephone_event_pt, None);
        let out = rewrite_for_relay(&sdp, local(), 1, 1).unwrap();
        assert_eq!(out.media[0].formats, vec!["0"]);
    }

    #[test]
    fn typed_errors_for_garbage() {
        let cases: Vec<(&str, SdpError)> = vec![
            ("", SdpError::Empty),
            ("\r\n\r\n", SdpError::Empty),
            ("hello world", SdpError::BadVersion),
            ("v=1\r\n", SdpError::BadVersion),
            ("v=0\r\ns=-\r\n", SdpError::MissingOrigin),
            ("v=0\r\nnonsense\r\n", SdpError::MalformedLine { line: 2 }),
            ("v=0\r\nX=1\r\n", SdpError::MalformedLine { line: 2 }),
            ("v=0\r\no=a b c\r\n", SdpError::BadOrigin { line: 2 }),
            ("v=0\r\nc=IN IP4\r\n", SdpError::BadConnection { line: 2 }),
            (
                "v=0\r\nm=audio 99999 RTP/AVP 0\r\n",
                SdpError::BadMedia { line: 2 },
            ),
            (
                "v=0\r\nm=audio 6000 RTP/AVP\r\n",
                SdpError::BadMedia { line: 2 },
            ),
            (
                "v=0\r\nm=audio 6000/x RTP/AVP 0\r\n",
                SdpError::BadMedia { line: 2 },
            ),
            ("v=0\r\na=\r\n", SdpError::MalformedLine { line: 2 }),
            ("v=0\r\nv=0\r\n", SdpError::MalformedLine { line: 2 }),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input.as_bytes()), Err(expected), "{input:?}");
        }
        assert_eq!(parse(b"v=0\r\n\xff\xfe"), Err(SdpError::NotUtf8));
        let huge = vec![b'a'; MAX_SDP_LEN + 1];
        assert_eq!(parse(&huge), Err(SdpError::TooLarge { max: MAX_SDP_LEN }));
    }

    #[test]
    fn hostname_connection_gives_no_remote_media() {
        let body = SIPP_OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 pbx.example.com");
        let sdp = parse(body.as_bytes()).unwrap();
        assert_eq!(remote_media(&sdp), None);
    }

    #[test]
    fn multicast_ttl_suffix_is_stripped() {
        let c = Connection {
            net_type: "IN".into(),
            addr_type: "IP4".into(),
            address: "224.2.1.1/127".into(),
        };
        assert_eq!(c.ip(), Some("224.2.1.1".parse().unwrap()));
    }

    #[test]
    fn mutated_bodies_never_panic_and_round_trip() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5d9);
        let seed = SOFTPHONE_OFFER.as_bytes();
        let mut parsed = 0;
        for round in 0..3000 {
            let mut body = seed.to_vec();
            let cut = rng.gen_range(0..=body.len());
            if round % 3 == 0 {
                body.truncate(cut);
            }
            for _ in 0..rng.gen_range(1..6) {
                let i = rng.gen_range(0..body.len().max(1));
                if let Some(b) = body.get_mut(i) {
                    *b = rng.gen();
                }
            }
            if let Ok(sdp) = parse(&body) {
                parsed += 1;
                // Whatever parses serialises to something that parses the same.
                assert_eq!(parse(&sdp.to_bytes()).as_ref(), Ok(&sdp));
                let _ = remote_media(&sdp);
                if let Ok(out) = rewrite_for_relay(&sdp, local(), 1, 1) {
                    assert!(parse(&out.to_bytes()).is_ok());
                }
            }
        }
        assert!(
            parsed > 100,
            "mutations too destructive to test much: {parsed}"
        );
    }
}
