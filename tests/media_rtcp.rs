//! denwa's own RTCP to a leg that hears denwa's stream.
//!
//! Once a party gets something denwa generates (here a DTMF key sent over
//! the call-control API), denwa sends that party's phone its own RTCP
//! compound: a sender report for the stream the phone receives and a report
//! block about the stream the phone sends, then an SDES CNAME, from the
//! leg's RTCP port, every 5 s or so (randomised 0.5–1.5×). At a socket
//! standing in for the callee every field is checked against what crossed
//! the wire; with baresip the phone's own statistics show it took the
//! reports (the packet count of the sender report, the round trip from the
//! report block) and the call goes on; phones in a conference room, which
//! only ever hear denwa's mix, get the same reports.

mod common;

use std::time::{Duration, Instant, UNIX_EPOCH};

use common::baresip::{strip_ansi, tone_share, Phone, RATE};
use common::rtp::{Datagram, Packet, RtpSink, ECHO_SSRC};
use common::{caller_sipp, extensions, Denwa, SippCallee};
use denwa::media::g711::Codec;
use serde_json::Value;

const SETUP: &str = "[auth]\nalgorithms = [\"MD5\"]\n\n";
const TOKEN: &str = "api-test-token-0123456789";
const LIMIT: Duration = Duration::from_secs(60);
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

fn start(first: u32, last: u32) -> Denwa {
    let http = format!("api_token = \"{TOKEN}\"");
    Denwa::start_with_http(&http, &format!("{SETUP}{}", extensions(first, last)))
}

/// The one live call's id, percent-encoded for a path.
fn call_id(d: &Denwa) -> String {
    let auth = format!("Bearer {TOKEN}");
    let (_, body) = d
        .http("GET", "/api/calls", &[("Authorization", &auth)], "")
        .expect("HTTP answer");
    let value: Value = serde_json::from_str(&body).expect("JSON");
    let id = value["calls"][0]["id"].as_str().expect("a live call");
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends key `1` to the callee over the API: from then on the callee's
/// leg hears denwa's own stream.
fn key_to_callee(d: &Denwa) -> Instant {
    let path = format!("/api/calls/{}/dtmf", call_id(d));
    let (status, body) = d
        .http_post(&path, TOKEN, r#"{"leg":"callee","digits":"1"}"#)
        .expect("HTTP answer");
    assert_eq!(status, 200, "{body}");
    Instant::now()
}

/// A report block, as RFC 3550 §6.4.1 lays it out.
#[derive(Debug, Clone, Copy)]
struct Block {
    ssrc: u32,
    fraction_lost: u8,
    cumulative_lost: u32,
    highest_seq: u32,
    last_sr: u32,
}

/// The parts of one compound packet this test looks at.
#[derive(Debug)]
struct Report {
    ssrc: u32,
    ntp: u64,
    rtp_ts: u32,
    packets: u32,
    octets: u32,
    blocks: Vec<Block>,
    cname: (u32, String),
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads an SR followed by an SDES with a CNAME, each packet's length
/// field matching the datagram; panics on anything else.
fn parse_report(data: &[u8]) -> Report {
    let mut at = 0;
    let mut packets = Vec::new();
    while at < data.len() {
        assert!(data.len() >= at + 4, "cut header: {data:02x?}");
        assert_eq!(data[at] >> 6, 2, "version 2");
        assert_eq!(data[at] & 0x20, 0, "no padding");
        let words = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
        let end = at + 4 + 4 * words;
        assert!(end <= data.len(), "length runs past the datagram");
        packets.push((data[at] & 0x1f, data[at + 1], &data[at..end]));
        at = end;
    }
    assert_eq!(packets.len(), 2, "SR and SDES");
    let (count, pt, sr) = packets[0];
    assert_eq!(pt, 200, "a sender report first");
    assert_eq!(sr.len(), 28 + 24 * usize::from(count));
    let blocks = (0..usize::from(count))
        .map(|i| {
            let b = &sr[28 + 24 * i..];
            Block {
                ssrc: be32(b, 0),
                fraction_lost: b[4],
                cumulative_lost: be32(b, 4) & 0x00ff_ffff,
                highest_seq: be32(b, 8),
                last_sr: be32(b, 16),
            }
        })
        .collect();
    let (chunks, pt, sdes) = packets[1];
    assert_eq!((chunks, pt), (1, 202), "one SDES chunk");
    assert_eq!(sdes[8], 1, "CNAME item");
    let len = usize::from(sdes[9]);
    let cname = String::from_utf8(sdes[10..10 + len].to_vec()).expect("UTF-8 CNAME");
    Report {
        ssrc: be32(sr, 4),
        ntp: (u64::from(be32(sr, 8)) << 32) | u64::from(be32(sr, 12)),
        rtp_ts: be32(sr, 16),
        packets: be32(sr, 20),
        octets: be32(sr, 24),
        blocks,
        cname: (be32(sdes, 4), cname),
    }
}

/// Milliseconds since the Unix epoch of an NTP timestamp.
fn ntp_to_unix_ms(ntp: u64) -> u64 {
    let seconds = (ntp >> 32) - NTP_UNIX_OFFSET_S;
    seconds * 1000 + (((ntp & 0xffff_ffff) * 1000) >> 32)
}

/// Checks one report against the RTP that crossed the wire before it.
fn check_report(d: &Datagram, report: &Report, rtp: &[Packet], sent: &[(u16, Instant)]) {
    let before: Vec<&Packet> = rtp.iter().filter(|p| p.at < d.at).collect();
    let stream = before.last().expect("RTP before the report").ssrc;
    assert_eq!(report.ssrc, stream, "the SSRC the callee hears");
    assert_eq!(report.cname.0, stream);
    assert_eq!(report.cname.1, "denwa@127.0.0.1");
    // Every packet of the stream so far, give or take the one in flight.
    let count = before.len() as i64;
    assert!(
        (i64::from(report.packets) - count).abs() <= 2,
        "SR counts {} packets, {count} arrived",
        report.packets
    );
    let mut by_seq: Vec<&Packet> = rtp.iter().filter(|p| p.ssrc == stream).collect();
    by_seq.sort_by_key(|p| p.seq.wrapping_sub(rtp[0].seq));
    let octets: usize = by_seq
        .iter()
        .take(report.packets as usize)
        .map(|p| p.payload.len())
        .sum();
    assert_eq!(
        report.octets as usize, octets,
        "payload octets of those packets"
    );
    // The NTP timestamp is the wall clock; the RTP one follows the stream.
    let wall = d
        .wall
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let ntp_ms = ntp_to_unix_ms(report.ntp);
    assert!(wall.abs_diff(ntp_ms) < 500, "NTP {ntp_ms} vs wall {wall}");
    let last = before.last().expect("a packet");
    let since = d.at.duration_since(last.at).as_millis() as u32;
    let expected = last.ts.wrapping_add(8 * since);
    let off = report.rtp_ts.wrapping_sub(expected) as i32;
    assert!(
        off.abs() <= 8 * 60,
        "RTP timestamp {off} units off the stream"
    );
    // One block, about the stream the callee sends.
    assert_eq!(report.blocks.len(), 1, "{report:?}");
    let block = report.blocks[0];
    assert_eq!(block.ssrc, ECHO_SSRC);
    let highest = sent
        .iter()
        .filter(|(_, at)| *at < d.at)
        .map(|(s, _)| *s)
        .max();
    let highest = u32::from(highest.expect("sent before the report"));
    assert!(
        block.highest_seq <= highest && block.highest_seq + 3 >= highest,
        "highest sequence {} reported, {highest} sent",
        block.highest_seq
    );
    assert_eq!((block.fraction_lost, block.cumulative_lost), (0, 0));
    assert_eq!(block.last_sr, 0, "the callee sent no SR");
}

#[test]
fn a_callee_hearing_denwa_gets_denwas_reports() {
    let d = start(7501, 7502);
    let sink = RtpSink::echoing();
    let port = sink.port.to_string();
    let subs = [
        ("SOCKET_PORT", port.as_str()),
        ("SOCKET_FORMATS", "0"),
        ("SOCKET_RTPMAPS", "a=rtpmap:0 PCMU/8000"),
    ];
    let mut callee = SippCallee::start_substituted(&d, "uas_socket.xml", 7502, &subs, LIMIT);
    // The caller streams 16 s of a quiet tone.
    let dir = tempfile::tempdir().expect("temp dir");
    let audio = dir.path().join("tone.ul");
    let tone: Vec<i16> = (0..16 * RATE)
        .map(|n| {
            (3000.0 * (2.0 * std::f64::consts::PI * 450.0 * f64::from(n) / 8000.0).sin()) as i16
        })
        .collect();
    std::fs::write(&audio, Codec::Pcmu.encode(&tone)).expect("audio file");
    let caller = caller_sipp(&d, "uac_stream.xml", 7501, "7502")
        .substitute("[audio]", &audio.display().to_string())
        .substitute("[hold_ms]", "16000");
    let mut caller_run = common::Background::new(caller.spawn(LIMIT));

    assert!(
        sink.wait(LIMIT, |p| p.len() >= 25),
        "no audio at the callee"
    );
    let before = sink.rtcp().len();
    let took_over = key_to_callee(&d);
    assert!(
        common::wait_until(Duration::from_secs(20), || sink.rtcp().len() >= before + 2),
        "fewer than two reports: {:?}",
        sink.rtcp()
    );
    let reports: Vec<Datagram> = sink.rtcp()[before..].to_vec();
    let rtp = sink.packets();
    let denwa_rtp = rtp.last().expect("RTP").from;
    for d in &reports {
        assert_eq!(
            d.from.port(),
            denwa_rtp.port() + 1,
            "from the leg's RTCP port"
        );
        check_report(d, &parse_report(&d.data), &rtp, &sink.sent());
    }
    let first = reports[0].at.duration_since(took_over);
    assert!(
        (1000..=3900).contains(&first.as_millis()),
        "first report {first:?} after the key"
    );
    let gap = reports[1].at.duration_since(reports[0].at);
    assert!((2400..=7600).contains(&gap.as_millis()), "interval {gap:?}");
    let (a, b) = (
        parse_report(&reports[0].data),
        parse_report(&reports[1].data),
    );
    let rtp_ms = b.rtp_ts.wrapping_sub(a.rtp_ts) / 8;
    let ntp_ms = ntp_to_unix_ms(b.ntp) - ntp_to_unix_ms(a.ntp);
    assert!(
        u64::from(rtp_ms).abs_diff(ntp_ms) <= 40,
        "RTP clock {rtp_ms} ms vs NTP {ntp_ms} ms between reports"
    );
    assert!(caller_run.finish(LIMIT), "caller: {}", caller.errors());
    callee.finish(LIMIT);
    let rtp = sink.packets();
    let ssrcs: std::collections::HashSet<u32> = rtp.iter().map(|p| p.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "one stream to the callee throughout");
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);
}

/// What baresip's RTCP session says about one member (a source it hears):
/// the sender report's packet count and the round trip time.
fn member(debug: &str, ssrc: &str) -> Option<(u64, f64)> {
    let text = strip_ansi(debug);
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if !line.starts_with(&format!("member {ssrc}:")) {
            continue;
        }
        let rtt = line.split("RTT=").nth(1)?.trim_end_matches("ms").trim();
        let next = lines.next()?;
        let psent = next.split("psent=").nth(1)?.split_whitespace().next()?;
        return Some((psent.parse().ok()?, rtt.parse().ok()?));
    }
    None
}

/// The SSRC baresip sends with (`Encode: seq=... ssrc=0x...`).
fn own_ssrc(debug: &str) -> String {
    let text = strip_ansi(debug);
    let at = text.find("Encode:").expect("RTP debug");
    let ssrc = text[at..].split("ssrc=").nth(1).expect("ssrc");
    ssrc.split_whitespace().next().expect("ssrc").to_owned()
}

#[test]
fn baresip_takes_denwas_reports_and_the_call_goes_on() {
    let d = start(7601, 7602);
    let mut caller = Phone::start(&d, 7601, 450.0, 0.2, "manual");
    let mut callee = Phone::start(&d, 7602, 700.0, 0.2, "auto");
    caller.wait_registered();
    callee.wait_registered();
    caller.dial(&d, "7602");
    caller.wait_event("CALL_ESTABLISHED");
    callee.wait_event("CALL_ESTABLISHED");
    callee.wait_received_secs(1);
    key_to_callee(&d);
    // Long enough for the callee's own SR (every 5 s or so) to be answered
    // by a report of denwa's that carries its timestamp.
    let from = callee.position();
    callee.wait_position(from + 13 * RATE as usize);
    let callee_view = callee.command("audio_debug", "");
    let caller_view = caller.command("audio_debug", "");
    caller.hang_up();
    assert_eq!(d.wait_metric("denwa_calls_active", 0.0), 0.0);

    // The callee hears denwa's continuation of the caller's stream: its
    // member entry has the SR's packet count and a round trip measured
    // from denwa's report block.
    let stream = own_ssrc(&caller_view);
    let (psent, rtt) = member(&callee_view, &stream)
        .unwrap_or_else(|| panic!("no member {stream}:\n{callee_view}"));
    assert!(psent > 250, "SR packet count {psent}:\n{callee_view}");
    assert!(
        rtt > 0.0,
        "no round trip from denwa's reports:\n{callee_view}"
    );
    // The caller, who only hears relayed media, gets no reports at all.
    let callee_stream = own_ssrc(&callee_view);
    let (psent, rtt) = member(&caller_view, &callee_stream).expect("member");
    assert_eq!((psent, rtt), (0, 0.0), "{caller_view}");
    // And the call went on: the callee heard the caller after the key.
    let heard = callee.received();
    let tail = &heard[(from + 2 * RATE as usize).min(heard.len())..];
    assert!(tail.len() > 8 * RATE as usize, "{} samples", tail.len());
    assert!(tone_share(tail, 450.0) > 0.8, "the caller is heard");
}

/// The one member baresip's RTCP session lists (the room's only source).
fn only_member(debug: &str) -> (u64, f64) {
    let text = strip_ansi(debug);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim().starts_with("member "))
        .collect();
    assert_eq!(lines.len(), 1, "one source, denwa's mix:\n{debug}");
    let ssrc = lines[0].trim()["member ".len()..]
        .split(':')
        .next()
        .expect("ssrc");
    member(&text, ssrc).expect("member figures")
}

#[test]
fn room_members_take_denwas_reports() {
    let d = start(7701, 7702);
    let mut phones: Vec<Phone> = (0..2)
        .map(|i| Phone::start(&d, 7701 + i, [450.0, 700.0][i as usize], 0.2, "manual"))
        .collect();
    for p in &mut phones {
        p.wait_registered();
    }
    for p in &mut phones {
        p.dial(&d, "9201");
        p.wait_event("CALL_ESTABLISHED");
    }
    let from = phones[1].position();
    phones[1].wait_position(from + 13 * RATE as usize);
    let views: Vec<String> = phones
        .iter_mut()
        .map(|p| p.command("audio_debug", ""))
        .collect();
    for p in &mut phones {
        p.hang_up();
    }
    for view in &views {
        let (psent, rtt) = only_member(view);
        assert!(psent > 250, "SR packet count {psent}:\n{view}");
        assert!(rtt > 0.0, "no round trip from denwa's reports:\n{view}");
    }
}
