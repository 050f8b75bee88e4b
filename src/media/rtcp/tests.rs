//! Tests of the RTCP packet parser and builders.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn put(out: &mut Vec<u8>, words: &[u32]) {
    for word in words {
        out.extend_from_slice(&word.to_be_bytes());
    }
}

/// SR (2 blocks), SDES (2 chunks), an XR denwa skips, BYE with a reason,
/// APP: written out field by field, independently of the builders.
fn hand_built() -> (Vec<u8>, [usize; 5]) {
    let mut p = Vec::new();
    put(&mut p, &[0x82c8_0012, 0x1111_1111]);
    put(&mut p, &[0xe5e5_e5e5, 0x8000_0000, 8000, 100, 16_000]);
    put(
        &mut p,
        &[
            0xd0d0_d0d0,
            0x4000_000a,
            0x0001_0005,
            80,
            0x1111_2222,
            0x8000,
        ],
    );
    put(&mut p, &[0x22, 0x00ff_fffe, 7, 0, 0, 0]);
    let sr_end = p.len();
    put(&mut p, &[0x82ca_0008, 0x1111_1111]);
    p.extend_from_slice(&[1, 9]);
    p.extend_from_slice(b"denwa@lab");
    p.extend_from_slice(&[2, 2, b'A', b'1', 0]);
    put(&mut p, &[0x22]);
    p.extend_from_slice(&[1, 2, b'x', b'y', 0, 0, 0, 0]);
    let sdes_end = p.len();
    put(&mut p, &[0x80cf_0001, 0xdead_beef]);
    let xr_end = p.len();
    put(&mut p, &[0x81cb_0002, 0x1111_1111]);
    p.extend_from_slice(&[3, b'b', b'y', b'e']);
    let bye_end = p.len();
    put(&mut p, &[0x85cc_0003, 0x1111_1111]);
    p.extend_from_slice(b"DNWA");
    put(&mut p, &[0x0102_0304]);
    let app_end = p.len();
    (p, [sr_end, sdes_end, xr_end, bye_end, app_end])
}

fn expected_packets() -> Vec<RtcpPacket> {
    vec![
        RtcpPacket::SenderReport {
            ssrc: 0x1111_1111,
            sender: SenderInfo {
                ntp_timestamp: 0xe5e5_e5e5_8000_0000,
                rtp_timestamp: 8000,
                packet_count: 100,
                octet_count: 16_000,
            },
            reports: vec![
                ReportBlock {
                    ssrc: 0xd0d0_d0d0,
                    fraction_lost: 64,
                    cumulative_lost: 10,
                    extended_highest_seq: 0x0001_0005,
                    jitter: 80,
                    last_sr: 0x1111_2222,
                    delay_since_last_sr: 0x8000,
                },
                ReportBlock {
                    ssrc: 0x22,
                    cumulative_lost: -2,
                    extended_highest_seq: 7,
                    ..ReportBlock::default()
                },
            ],
        },
        RtcpPacket::SourceDescription(vec![
            SdesChunk {
                ssrc: 0x1111_1111,
                items: vec![
                    SdesItem {
                        kind: SDES_CNAME,
                        value: b"denwa@lab".to_vec(),
                    },
                    SdesItem {
                        kind: 2,
                        value: b"A1".to_vec(),
                    },
                ],
            },
            SdesChunk {
                ssrc: 0x22,
                items: vec![SdesItem {
                    kind: SDES_CNAME,
                    value: b"xy".to_vec(),
                }],
            },
        ]),
        RtcpPacket::Bye {
            sources: vec![0x1111_1111],
            reason: Some(b"bye".to_vec()),
        },
        RtcpPacket::App {
            subtype: 5,
            ssrc: 0x1111_1111,
            name: *b"DNWA",
            data: vec![1, 2, 3, 4],
        },
    ]
}

#[test]
fn parses_a_hand_built_compound_packet() {
    let (bytes, _) = hand_built();
    let packets = parse_compound(&bytes).unwrap();
    assert_eq!(packets, expected_packets());
    let about_denwa: Vec<_> = reports_about(&packets, 0xd0d0_d0d0).collect();
    assert_eq!(about_denwa.len(), 1);
    assert_eq!(about_denwa[0].loss_percent(), 25.0);
    assert_eq!(about_denwa[0].jitter_ms(8000), 10.0);
    let RtcpPacket::SourceDescription(chunks) = &packets[1] else {
        panic!("SDES second");
    };
    assert_eq!(chunks[0].cname(), Some(&b"denwa@lab"[..]));
}

#[test]
fn every_prefix_parses_or_fails_cleanly() {
    let (bytes, ends) = hand_built();
    for len in 0..bytes.len() {
        match parse_compound(&bytes[..len]) {
            Ok(packets) => {
                let whole = ends.iter().position(|&end| end == len);
                let whole = whole.expect("only whole packets parse");
                // The XR (third) is skipped.
                assert_eq!(packets.len(), whole + 1 - usize::from(whole >= 2));
            }
            Err(e) => assert!(len == 0 || !ends.contains(&len), "{len}: {e}"),
        }
    }
}

#[test]
fn sender_report_round_trips_through_the_builder() {
    let sender = SenderInfo {
        ntp_timestamp: ntp_from_unix_ms(1_700_000_000_250),
        rtp_timestamp: 123_456,
        packet_count: 500,
        octet_count: 80_000,
    };
    let blocks = [
        ReportBlock {
            ssrc: 7,
            fraction_lost: 26,
            cumulative_lost: -5,
            extended_highest_seq: 70_000,
            jitter: 33,
            last_sr: 0xabcd_ef01,
            delay_since_last_sr: 99,
        },
        ReportBlock {
            cumulative_lost: 0x7f_ffff,
            ..ReportBlock::default()
        },
    ];
    let bytes = build_report(0xd0d0, Some(&sender), &blocks, "denwa");
    assert_eq!(bytes.len() % 4, 0);
    let packets = parse_compound(&bytes).unwrap();
    assert_eq!(
        packets,
        [
            RtcpPacket::SenderReport {
                ssrc: 0xd0d0,
                sender,
                reports: blocks.to_vec(),
            },
            RtcpPacket::SourceDescription(vec![SdesChunk {
                ssrc: 0xd0d0,
                items: vec![SdesItem {
                    kind: SDES_CNAME,
                    value: b"denwa".to_vec(),
                }],
            }]),
        ]
    );
}

#[test]
fn receiver_report_layout() {
    let block = ReportBlock {
        ssrc: 0x0a0b_0c0d,
        fraction_lost: 1,
        cumulative_lost: -1,
        ..ReportBlock::default()
    };
    let bytes = build_report(0x0102_0304, None, &[block], "d");
    let rr = &bytes[..32];
    assert_eq!(&rr[..8], &[0x81, 201, 0, 7, 1, 2, 3, 4]);
    assert_eq!(&rr[8..16], &[0x0a, 0x0b, 0x0c, 0x0d, 1, 0xff, 0xff, 0xff]);
    // SDES: header, SSRC, CNAME "d", null, padding to a word.
    assert_eq!(&bytes[32..], &[0x81, 202, 0, 2, 1, 2, 3, 4, 1, 1, b'd', 0]);
    let empty = build_report(5, None, &[], "");
    assert_eq!(parse_compound(&empty).unwrap().len(), 2);
}

#[test]
fn builder_limits_blocks_and_cname() {
    let blocks = vec![ReportBlock::default(); 40];
    let cname = "c".repeat(300);
    let bytes = build_report(1, None, &blocks, &cname);
    let packets = parse_compound(&bytes).unwrap();
    assert_eq!(packets[0].reports().unwrap().1.len(), MAX_REPORT_BLOCKS);
    let RtcpPacket::SourceDescription(chunks) = &packets[1] else {
        panic!("SDES second");
    };
    assert_eq!(chunks[0].cname().unwrap().len(), 255);
    let mut bye = Vec::new();
    write_bye(&mut bye, 42);
    let expected = RtcpPacket::Bye {
        sources: vec![42],
        reason: None,
    };
    assert_eq!(parse_compound(&bye).unwrap(), [expected]);
}

#[test]
fn padding_only_on_the_last_packet() {
    let mut rr = Vec::new();
    write_receiver_report(&mut rr, 9, &[]);
    let mut padded = rr.clone();
    padded[0] |= 0x20;
    padded[3] = 2;
    padded.extend_from_slice(&[0, 0, 0, 4]);
    let expected = RtcpPacket::ReceiverReport {
        ssrc: 9,
        reports: vec![],
    };
    assert_eq!(parse_compound(&padded).unwrap(), [expected]);
    let mut not_last = padded.clone();
    not_last.extend_from_slice(&rr);
    assert_eq!(
        parse_compound(&not_last),
        Err(RtcpError::BadPadding { offset: 0 })
    );
    let mut zero = padded.clone();
    *zero.last_mut().unwrap() = 0;
    assert_eq!(
        parse_compound(&zero),
        Err(RtcpError::BadPadding { offset: 0 })
    );
    let mut too_long = padded;
    *too_long.last_mut().unwrap() = 9;
    assert_eq!(
        parse_compound(&too_long),
        Err(RtcpError::BadPadding { offset: 0 })
    );
}

#[test]
fn malformed_packets_are_named() {
    assert_eq!(parse_compound(&[]), Err(RtcpError::Empty));
    assert_eq!(
        parse_compound(&[0x80, 201, 0]),
        Err(RtcpError::Truncated { offset: 0 })
    );
    let bad_version = [0x40, 201, 0, 1, 0, 0, 0, 1];
    let version = RtcpError::BadVersion {
        offset: 0,
        version: 1,
    };
    assert_eq!(parse_compound(&bad_version), Err(version));
    let mut rr = Vec::new();
    write_receiver_report(&mut rr, 9, &[]);
    let mut long = rr.clone();
    long[3] = 2;
    assert_eq!(
        parse_compound(&long),
        Err(RtcpError::BadLength { offset: 0 })
    );
    let mut overcounted = rr.clone();
    overcounted[0] = 0x81;
    let malformed = |offset, packet_type| RtcpError::Malformed {
        offset,
        packet_type,
    };
    assert_eq!(parse_compound(&overcounted), Err(malformed(0, PT_RR)));
    // SDES whose item runs past the packet, and one never terminated.
    let mut sdes = rr.clone();
    put(&mut sdes, &[0x81ca_0002, 5, 0x0109_6162]);
    assert_eq!(parse_compound(&sdes), Err(malformed(8, PT_SDES)));
    let mut sdes = rr.clone();
    put(&mut sdes, &[0x81ca_0002, 5, 0x0102_6162]);
    assert_eq!(parse_compound(&sdes), Err(malformed(8, PT_SDES)));
    let mut bye = rr.clone();
    put(&mut bye, &[0x81cb_0002, 5, 0x0761_6263]);
    assert_eq!(parse_compound(&bye), Err(malformed(8, PT_BYE)));
    let short_sr = [0x80, 200, 0, 1, 0, 0, 0, 1];
    assert_eq!(parse_compound(&short_sr), Err(malformed(0, PT_SR)));
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x4c7c9);
    let (valid, _) = hand_built();
    let mut parsed = 0;
    for round in 0..60_000 {
        let mut data: Vec<u8> = if round % 2 == 0 {
            let len = rng.gen_range(0..160);
            (0..len).map(|_| rng.gen()).collect()
        } else {
            let mut data = valid.clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..data.len());
                data[at] ^= 1 << rng.gen_range(0..8);
            }
            if rng.gen_bool(0.25) {
                data.truncate(rng.gen_range(0..=data.len()));
            }
            data
        };
        if rng.gen_bool(0.5) {
            if let Some(first) = data.first_mut() {
                *first = (*first & 0x3f) | 0x80;
            }
        }
        if let Ok(packets) = parse_compound(&data) {
            parsed += 1;
            let blocks: usize = packets
                .iter()
                .filter_map(|p| p.reports())
                .map(|(_, blocks)| blocks.len())
                .sum();
            assert!(blocks * REPORT_BLOCK_LEN <= data.len());
        }
    }
    assert!(parsed > 1000, "{parsed}");
}

#[test]
fn ntp_time_of_the_wall_clock() {
    assert_eq!(ntp_from_unix_ms(0), NTP_UNIX_OFFSET_S << 32);
    assert_eq!(
        ntp_from_unix_ms(1500),
        (NTP_UNIX_OFFSET_S + 1) << 32 | 0x8000_0000
    );
    assert_eq!(ntp_middle(0x0123_4567_89ab_cdef), 0x4567_89ab);
}
