//! RTCP (RFC 3550 §6) for line quality: reading what a phone reports about
//! the media it receives from denwa, and writing the reports denwa sends
//! when it terminates RTCP on a leg.
//!
//! Owns: the RTCP packet model ([`RtcpPacket`], [`ReportBlock`],
//! [`SenderInfo`]), a parser for compound packets ([`parse_compound`]) and
//! builders for sender and receiver reports, CNAME descriptions and BYE.
//! The [`reception`] submodule keeps the receiver-side statistics of an RTP
//! stream (sequence tracking, loss, interarrival jitter) and the per-leg
//! [`LineQuality`] summary.
//!
//! Must not: touch sockets, read the clock (arrival times and NTP
//! timestamps are arguments) or schedule reports (RFC 3550 §6.2 timing is
//! the caller's). Packets come from the network: every length and count is
//! checked, a malformed compound packet is an [`RtcpError`], never a panic.
//! Packet types other than SR, RR, SDES, BYE and APP are skipped, and a
//! compound need not begin with a report (reduced-size RTCP, RFC 5506).

pub mod reception;

pub use reception::{LineQuality, LineQualityMeter, ReceptionStats};

use thiserror::Error;

/// Packet type of a sender report.
pub const PT_SR: u8 = 200;
/// Packet type of a receiver report.
pub const PT_RR: u8 = 201;
/// Packet type of a source description.
pub const PT_SDES: u8 = 202;
/// Packet type of a goodbye.
pub const PT_BYE: u8 = 203;
/// Packet type of an application-defined packet.
pub const PT_APP: u8 = 204;
/// SDES item type of the canonical name.
pub const SDES_CNAME: u8 = 1;
/// Most report blocks one SR or RR can carry (a 5-bit count).
pub const MAX_REPORT_BLOCKS: usize = 31;

const VERSION: u8 = 2;
const HEADER_LEN: usize = 4;
const REPORT_BLOCK_LEN: usize = 24;
const SENDER_INFO_LEN: usize = 20;
/// Seconds from the NTP era (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// Why a compound RTCP packet was refused as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpError {
    #[error("empty RTCP packet")]
    Empty,
    #[error("RTCP header at offset {offset} is cut short")]
    Truncated { offset: usize },
    #[error("RTCP version {version} at offset {offset}, expected 2")]
    BadVersion { offset: usize, version: u8 },
    #[error("RTCP length at offset {offset} runs past the compound packet")]
    BadLength { offset: usize },
    #[error("RTCP padding at offset {offset} is invalid or not on the last packet")]
    BadPadding { offset: usize },
    #[error("RTCP packet type {packet_type} at offset {offset} is malformed")]
    Malformed { offset: usize, packet_type: u8 },
}

/// One reception report (RFC 3550 §6.4.1): what the reporter received from
/// the source `ssrc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since reception began (24-bit signed: duplicates can
    /// make it negative).
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received, or 0.
    pub last_sr: u32,
    /// Time since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    pub fn loss_percent(&self) -> f32 {
        f32::from(self.fraction_lost) * 100.0 / 256.0
    }

    /// The jitter in milliseconds at a `clock_rate` in Hz (8000 for G.711).
    pub fn jitter_ms(&self, clock_rate: u32) -> f32 {
        (f64::from(self.jitter) * 1000.0 / f64::from(clock_rate.max(1))) as f32
    }
}

/// The sender information of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// 64-bit NTP timestamp (seconds since 1900 in the high half).
    pub ntp_timestamp: u64,
    /// The RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// One item of an SDES chunk (CNAME, NAME, TOOL, ...): its type and raw
/// value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItem {
    pub kind: u8,
    pub value: Vec<u8>,
}

/// The items describing one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    pub ssrc: u32,
    pub items: Vec<SdesItem>,
}

impl SdesChunk {
    pub fn cname(&self) -> Option<&[u8]> {
        self.items
            .iter()
            .find(|item| item.kind == SDES_CNAME)
            .map(|item| item.value.as_slice())
    }
}

/// One packet of a compound RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport {
        ssrc: u32,
        sender: SenderInfo,
        reports: Vec<ReportBlock>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReportBlock>,
    },
    SourceDescription(Vec<SdesChunk>),
    Bye {
        sources: Vec<u32>,
        reason: Option<Vec<u8>>,
    },
    App {
        subtype: u8,
        ssrc: u32,
        name: [u8; 4],
        data: Vec<u8>,
    },
}

impl RtcpPacket {
    /// The report blocks of an SR or RR, with the reporter's SSRC.
    pub fn reports(&self) -> Option<(u32, &[ReportBlock])> {
        match self {
            RtcpPacket::SenderReport { ssrc, reports, .. }
            | RtcpPacket::ReceiverReport { ssrc, reports } => Some((*ssrc, reports)),
            _ => None,
        }
    }
}

/// Every report block in `packets` about the source `ssrc`: what the
/// reporters say about the stream `ssrc` sends.
pub fn reports_about(packets: &[RtcpPacket], ssrc: u32) -> impl Iterator<Item = &ReportBlock> {
    packets
        .iter()
        .filter_map(RtcpPacket::reports)
        .flat_map(|(_, blocks)| blocks)
        .filter(move |block| block.ssrc == ssrc)
}

/// A bounds-checked reader over one packet's body.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u32(&mut self) -> Option<u32> {
        let bytes = self.take(4)?.first_chunk::<4>()?;
        Some(u32::from_be_bytes(*bytes))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from(self.u32()?) << 32 | u64::from(self.u32()?))
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Moves to the next multiple of four within the body.
    fn align(&mut self) -> Option<()> {
        let skip = (4 - self.pos % 4) % 4;
        self.take(skip).map(|_| ())
    }
}

/// Parses a compound RTCP packet (RFC 3550 §6.1). Unknown packet types are
/// skipped; anything malformed refuses the whole datagram.
pub fn parse_compound(data: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if data.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut packets = Vec::new();
    let mut offset = 0;
    while let Some(rest) = data.get(offset..).filter(|rest| !rest.is_empty()) {
        let header = rest
            .first_chunk::<HEADER_LEN>()
            .ok_or(RtcpError::Truncated { offset })?;
        let version = header[0] >> 6;
        if version != VERSION {
            return Err(RtcpError::BadVersion { offset, version });
        }
        let words = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let len = (words + 1) * 4;
        let packet = rest.get(..len).ok_or(RtcpError::BadLength { offset })?;
        let body = body_without_padding(packet, offset, len == rest.len())?;
        let count = header[0] & 0x1f;
        let packet_type = header[1];
        let malformed = RtcpError::Malformed {
            offset,
            packet_type,
        };
        let mut cursor = Cursor { buf: body, pos: 0 };
        // `None`: malformed; `Some(None)`: a type denwa skips.
        let parsed = match packet_type {
            PT_SR => parse_sender_report(&mut cursor, count),
            PT_RR => parse_receiver_report(&mut cursor, count),
            PT_SDES => parse_sdes(&mut cursor, count),
            PT_BYE => parse_bye(&mut cursor, count),
            PT_APP => parse_app(&mut cursor, count),
            _ => Some(None),
        };
        match parsed {
            Some(Some(parsed)) => packets.push(parsed),
            Some(None) => {}
            None => return Err(malformed),
        }
        offset += len;
    }
    Ok(packets)
}

/// The packet's body after its header, less padding. Only the last packet
/// of a compound may be padded (RFC 3550 §6.4.1).
fn body_without_padding(packet: &[u8], offset: usize, last: bool) -> Result<&[u8], RtcpError> {
    let body = packet.get(HEADER_LEN..).unwrap_or_default();
    let padded = packet.first().is_some_and(|b| b & 0x20 != 0);
    if !padded {
        return Ok(body);
    }
    let padding = usize::from(body.last().copied().unwrap_or(0));
    if !last || padding == 0 || padding > body.len() {
        return Err(RtcpError::BadPadding { offset });
    }
    Ok(body.get(..body.len() - padding).unwrap_or_default())
}

fn parse_report_blocks(cursor: &mut Cursor<'_>, count: u8) -> Option<Vec<ReportBlock>> {
    let count = usize::from(count);
    if cursor.remaining() < count * REPORT_BLOCK_LEN {
        return None;
    }
    (0..count).map(|_| parse_report_block(cursor)).collect()
}

fn parse_report_block(cursor: &mut Cursor<'_>) -> Option<ReportBlock> {
    let ssrc = cursor.u32()?;
    let loss = cursor.u32()?;
    // The low 24 bits are a signed count: shift the sign bit into place.
    let cumulative_lost = ((loss << 8) as i32) >> 8;
    Some(ReportBlock {
        ssrc,
        fraction_lost: (loss >> 24) as u8,
        cumulative_lost,
        extended_highest_seq: cursor.u32()?,
        jitter: cursor.u32()?,
        last_sr: cursor.u32()?,
        delay_since_last_sr: cursor.u32()?,
    })
}

fn parse_sender_report(cursor: &mut Cursor<'_>, count: u8) -> Option<Option<RtcpPacket>> {
    if cursor.remaining() < 4 + SENDER_INFO_LEN {
        return None;
    }
    let ssrc = cursor.u32()?;
    let sender = SenderInfo {
        ntp_timestamp: cursor.u64()?,
        rtp_timestamp: cursor.u32()?,
        packet_count: cursor.u32()?,
        octet_count: cursor.u32()?,
    };
    let reports = parse_report_blocks(cursor, count)?;
    Some(Some(RtcpPacket::SenderReport {
        ssrc,
        sender,
        reports,
    }))
}

fn parse_receiver_report(cursor: &mut Cursor<'_>, count: u8) -> Option<Option<RtcpPacket>> {
    let ssrc = cursor.u32()?;
    let reports = parse_report_blocks(cursor, count)?;
    Some(Some(RtcpPacket::ReceiverReport { ssrc, reports }))
}

fn parse_sdes(cursor: &mut Cursor<'_>, count: u8) -> Option<Option<RtcpPacket>> {
    let mut chunks = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let ssrc = cursor.u32()?;
        let mut items = Vec::new();
        loop {
            let kind = cursor.u8()?;
            if kind == 0 {
                cursor.align()?;
                break;
            }
            let len = usize::from(cursor.u8()?);
            let value = cursor.take(len)?.to_vec();
            items.push(SdesItem { kind, value });
        }
        chunks.push(SdesChunk { ssrc, items });
    }
    Some(Some(RtcpPacket::SourceDescription(chunks)))
}

fn parse_bye(cursor: &mut Cursor<'_>, count: u8) -> Option<Option<RtcpPacket>> {
    let sources = (0..count)
        .map(|_| cursor.u32())
        .collect::<Option<Vec<u32>>>()?;
    let reason = match cursor.u8() {
        Some(len) => Some(cursor.take(usize::from(len))?.to_vec()),
        None => None,
    };
    Some(Some(RtcpPacket::Bye { sources, reason }))
}

fn parse_app(cursor: &mut Cursor<'_>, subtype: u8) -> Option<Option<RtcpPacket>> {
    let ssrc = cursor.u32()?;
    let name = *cursor.take(4)?.first_chunk::<4>()?;
    let data = cursor.take(cursor.remaining())?.to_vec();
    Some(Some(RtcpPacket::App {
        subtype,
        ssrc,
        name,
        data,
    }))
}

/// Appends an RTCP header with its length still zero and returns where
/// the body starts; [`finish`] fills the length in.
fn begin(out: &mut Vec<u8>, count: u8, packet_type: u8) -> usize {
    out.push(VERSION << 6 | (count & 0x1f));
    out.push(packet_type);
    out.extend_from_slice(&[0, 0]);
    out.len()
}

/// Fills in the length of the packet whose header ends at `body_start`,
/// padding its body to a 32-bit boundary with zeros.
fn finish(out: &mut Vec<u8>, body_start: usize) {
    while (out.len() - body_start) % 4 != 0 {
        out.push(0);
    }
    let words = (out.len() - body_start) / 4;
    let words = u16::try_from(words).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(length) = out.get_mut(body_start - 2..body_start) {
        length.copy_from_slice(&words);
    }
}

fn put_report_blocks(out: &mut Vec<u8>, reports: &[ReportBlock]) {
    for block in reports.iter().take(MAX_REPORT_BLOCKS) {
        out.extend_from_slice(&block.ssrc.to_be_bytes());
        let lost = block.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0xff_ffff;
        out.extend_from_slice(&(u32::from(block.fraction_lost) << 24 | lost).to_be_bytes());
        out.extend_from_slice(&block.extended_highest_seq.to_be_bytes());
        out.extend_from_slice(&block.jitter.to_be_bytes());
        out.extend_from_slice(&block.last_sr.to_be_bytes());
        out.extend_from_slice(&block.delay_since_last_sr.to_be_bytes());
    }
}

fn report_count(reports: &[ReportBlock]) -> u8 {
    u8::try_from(reports.len().min(MAX_REPORT_BLOCKS)).unwrap_or(0)
}

/// Appends an SR from `ssrc`; report blocks past [`MAX_REPORT_BLOCKS`] are
/// left out.
pub fn write_sender_report(
    out: &mut Vec<u8>,
    ssrc: u32,
    sender: &SenderInfo,
    reports: &[ReportBlock],
) {
    let start = begin(out, report_count(reports), PT_SR);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&sender.ntp_timestamp.to_be_bytes());
    out.extend_from_slice(&sender.rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&sender.packet_count.to_be_bytes());
    out.extend_from_slice(&sender.octet_count.to_be_bytes());
    put_report_blocks(out, reports);
    finish(out, start);
}

/// Appends an RR from `ssrc`; report blocks past [`MAX_REPORT_BLOCKS`] are
/// left out.
pub fn write_receiver_report(out: &mut Vec<u8>, ssrc: u32, reports: &[ReportBlock]) {
    let start = begin(out, report_count(reports), PT_RR);
    out.extend_from_slice(&ssrc.to_be_bytes());
    put_report_blocks(out, reports);
    finish(out, start);
}

/// Appends an SDES with one chunk: `ssrc`'s CNAME (cut at 255 bytes).
pub fn write_sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let start = begin(out, 1, PT_SDES);
    out.extend_from_slice(&ssrc.to_be_bytes());
    let value = cname
        .as_bytes()
        .get(..cname.len().min(255))
        .unwrap_or_default();
    out.push(SDES_CNAME);
    out.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(value);
    // The item list ends with at least one null octet.
    out.push(0);
    finish(out, start);
}

/// Appends a BYE for `ssrc`, without a reason.
pub fn write_bye(out: &mut Vec<u8>, ssrc: u32) {
    let start = begin(out, 1, PT_BYE);
    out.extend_from_slice(&ssrc.to_be_bytes());
    finish(out, start);
}

/// The smallest valid compound packet denwa sends on a leg where it
/// terminates RTCP: an SR when it has sent media (`sender`), an RR
/// otherwise, then its CNAME.
pub fn build_report(
    ssrc: u32,
    sender: Option<&SenderInfo>,
    reports: &[ReportBlock],
    cname: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + REPORT_BLOCK_LEN * reports.len());
    match sender {
        Some(sender) => write_sender_report(&mut out, ssrc, sender, reports),
        None => write_receiver_report(&mut out, ssrc, reports),
    }
    write_sdes_cname(&mut out, ssrc, cname);
    out
}

/// The 64-bit NTP timestamp of a wall-clock time in milliseconds since the
/// Unix epoch.
pub fn ntp_from_unix_ms(unix_ms: u64) -> u64 {
    let seconds = (unix_ms / 1000).wrapping_add(NTP_UNIX_OFFSET_S);
    let fraction = ((unix_ms % 1000) << 32) / 1000;
    seconds << 32 | fraction
}

/// The middle 32 bits of an NTP timestamp, as LSR fields carry it.
pub fn ntp_middle(ntp_timestamp: u64) -> u32 {
    ((ntp_timestamp >> 16) & 0xffff_ffff) as u32
}

#[cfg(test)]
mod tests;
