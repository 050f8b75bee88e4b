//! Fuzz-style robustness of denwa's SIP wire format boundary: no input, however
//! hostile, may panic `normalise`, `parse` or `bad_request_for`, and whatever
//! they return must keep its promises. Deterministic: every random case comes
//! from a seeded `StdRng`.

use denwa::sip::message::{bad_request_for, normalise, parse, ParseError, MAX_MESSAGE_SIZE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rsip::prelude::*;

const INVITE: &[u8] = include_bytes!("fixtures/sip/invite_sdp.sip");
const REGISTER: &[u8] = include_bytes!("fixtures/sip/register_auth.sip");
const OK_200: &[u8] = include_bytes!("fixtures/sip/ok_200_invite.sip");
const FIXTURES: [&[u8]; 3] = [INVITE, REGISTER, OK_200];

/// Run every entry point on `raw` and check the invariants that hold for any
/// input; returns the parse result for further checks.
fn exercise(raw: &[u8]) -> Result<rsip::SipMessage, ParseError> {
    let normalised = normalise(raw);
    let parsed = parse(raw);
    if let Err(err) = &normalised {
        assert_eq!(
            parsed.as_ref().err(),
            Some(err),
            "parse fails as normalise did"
        );
    }
    if let Ok(text) = &normalised {
        check_same_as_rsip(text, &parsed);
    }
    match &parsed {
        Ok(msg) => check_accepted(msg),
        Err(err) => check_answer(raw, err),
    }
    parsed
}

/// `parse` builds the rsip message itself: it must be the one rsip's own
/// parser makes of the normalised text, and be refused when rsip refuses it.
fn check_same_as_rsip(normalised: &[u8], parsed: &Result<rsip::SipMessage, ParseError>) {
    let theirs = std::panic::catch_unwind(|| rsip::SipMessage::try_from(normalised));
    match (theirs, parsed) {
        (Ok(Ok(theirs)), Ok(ours)) => assert_eq!(ours, &theirs),
        (Ok(Ok(_)), Err(err)) => assert!(
            matches!(
                err,
                ParseError::MissingHeader(_)
                    | ParseError::DuplicateHeader(_)
                    | ParseError::InvalidHeader(_)
                    | ParseError::CSeqMethodMismatch
            ),
            "refused what rsip parses: {err}"
        ),
        (_, Ok(ours)) => panic!("accepted what rsip refuses: {ours}"),
        (_, Err(_)) => {}
    }
}

/// An accepted message has every mandatory header, and serialising it gives
/// bytes that parse to the same message.
fn check_accepted(msg: &rsip::SipMessage) {
    assert!(msg.via_header().is_ok());
    assert!(msg.from_header().is_ok());
    assert!(msg.to_header().is_ok());
    assert!(msg.call_id_header().is_ok());
    assert!(msg.cseq_header().is_ok());
    let again = parse(&denwa::sip::message::to_bytes(msg));
    assert_eq!(
        again.as_ref(),
        Ok(msg),
        "re-serialised message parses the same"
    );
}

/// The answer to a refused input, if any, is a well-formed final response.
fn check_answer(raw: &[u8], err: &ParseError) {
    let Some(answer) = bad_request_for(raw, err, "denwa-fuzz") else {
        return;
    };
    let status = format!("SIP/2.0 {} ", err.status_code());
    assert!(answer.starts_with(status.as_bytes()));
    assert!(answer.ends_with(b"\r\nServer: denwa-fuzz\r\nContent-Length: 0\r\n\r\n"));
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n");
    assert_eq!(
        head_end.map(|i| i + 4),
        Some(answer.len()),
        "one head, no body"
    );
    let lines = answer.split(|b| *b == b'\n').skip(1);
    let has_via = lines.clone().any(|l| {
        let name = l.split(|b| *b == b':').next().unwrap_or_default();
        let name = std::str::from_utf8(name).unwrap_or_default().trim();
        name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v")
    });
    assert!(has_via, "an answer always carries the request's Via");
    let no_bare_cr = answer.windows(2).all(|w| w[0] != b'\r' || w[1] == b'\n');
    assert!(
        no_bare_cr && !answer.contains(&0),
        "no control characters copied"
    );
}

#[test]
fn fixtures_are_accepted_and_round_trip() {
    for fixture in FIXTURES {
        assert!(exercise(fixture).is_ok());
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xD3A1);
    let mut accepted = 0;
    for _ in 0..5000 {
        let len = rng.gen_range(0..600);
        let raw: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        accepted += usize::from(exercise(&raw).is_ok());
    }
    assert_eq!(accepted, 0, "random bytes are not SIP");
}

/// Pieces that, strung together at random, reach deep into the parser.
const SIP_PIECES: [&str; 40] = [
    "INVITE",
    "ACK",
    "OPTIONS",
    "BYE",
    "FOO",
    "SIP/2.0",
    "sip/2.0",
    "SIP/2.0 200 OK",
    " ",
    "  ",
    "\t",
    "\r\n",
    "\n",
    "\r",
    "\r\n\r\n",
    "\r\n ",
    ":",
    ",",
    ";",
    "=",
    "\"",
    "<",
    ">",
    "@",
    "sip:1001@192.0.2.1",
    "[2001:db8::1]:5060",
    "Via: SIP/2.0/UDP h",
    "v: SIP/2.0/TCP h;branch=z9hG4bK",
    "f: <sip:a@b>;tag=",
    "To:",
    "i: ",
    "Call-ID:",
    "CSeq: 1 INVITE",
    "CSeq: 4294967296 ACK",
    "l: ",
    "Content-Length: ",
    "0",
    "7",
    "99999999999999999999",
    "\u{fe}\u{ff}",
];

/// Start lines for the SIP-like text; the empty one leaves it all to chance.
const START_LINES: [&str; 5] = [
    "",
    "INVITE sip:2001@pbx.example.com SIP/2.0\r\n",
    "OPTIONS sip:pbx.example.com SIP/2.0\n",
    "SIP/2.0 180 Ringing\r\n",
    "BYE sip:1001@192.0.2.10 SIP/2.0\r\n",
];

#[test]
fn random_sip_like_text_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x51D);
    for _ in 0..5000 {
        let count = rng.gen_range(0..60);
        let start = START_LINES[rng.gen_range(0..START_LINES.len())];
        let raw: String = std::iter::once(start)
            .chain((0..count).map(|_| SIP_PIECES[rng.gen_range(0..SIP_PIECES.len())]))
            .collect();
        let _ = exercise(raw.as_bytes());
    }
}

#[test]
fn random_header_sets_on_a_valid_request_line_never_panic() {
    let mut rng = StdRng::seed_from_u64(0xBEEF);
    let fields: Vec<&str> = std::str::from_utf8(INVITE)
        .unwrap()
        .split("\r\n")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    let mut accepted = 0;
    for _ in 0..3000 {
        let mut raw = String::from("INVITE sip:2001@pbx.example.com SIP/2.0\r\n");
        for _ in 0..rng.gen_range(0..12) {
            let field = fields[rng.gen_range(0..fields.len())];
            raw.push_str(
                field
                    .replace("Content-Length: 237", "Content-Length: 0")
                    .as_str(),
            );
            raw.push_str(if rng.gen_bool(0.2) { "\n" } else { "\r\n" });
        }
        raw.push_str("\r\n");
        accepted += usize::from(exercise(raw.as_bytes()).is_ok());
    }
    assert!(accepted > 0, "some random header sets are complete");
}

#[test]
fn every_truncation_of_a_fixture_is_refused_without_panic() {
    for fixture in FIXTURES {
        for cut in 0..fixture.len() {
            let result = exercise(&fixture[..cut]);
            assert!(result.is_err(), "truncated at {cut} of {}", fixture.len());
        }
    }
}

#[test]
fn truncated_invites_that_look_like_requests_get_an_answer() {
    let via_end = INVITE.windows(6).position(|w| w == b"rport\r").unwrap() + 7;
    for cut in via_end..INVITE.len() {
        let err = parse(&INVITE[..cut]).unwrap_err();
        let answer = bad_request_for(&INVITE[..cut], &err, "d");
        assert!(answer.is_some(), "no answer at cut {cut}: {err}");
    }
}

#[test]
fn every_single_byte_flip_never_panics() {
    for fixture in FIXTURES {
        for offset in 0..fixture.len() {
            for mask in [0x01, 0x20, 0x80, 0xff] {
                let mut raw = fixture.to_vec();
                raw[offset] ^= mask;
                let _ = exercise(&raw);
            }
        }
    }
}

#[test]
fn special_bytes_at_every_offset_never_panic() {
    for offset in 0..=INVITE.len() {
        for inserted in [
            &b"\r"[..],
            b"\n",
            b"\0",
            b",",
            b" ",
            b":",
            b"\r\n ",
            b"\xc3",
        ] {
            let raw = [&INVITE[..offset], inserted, &INVITE[offset..]].concat();
            let _ = exercise(&raw);
        }
    }
}

#[test]
fn random_multi_byte_mutations_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x600D);
    for _ in 0..4000 {
        let mut raw = FIXTURES[rng.gen_range(0..FIXTURES.len())].to_vec();
        for _ in 0..rng.gen_range(1..8) {
            let at = rng.gen_range(0..=raw.len());
            match rng.gen_range(0..4) {
                0 if at < raw.len() => raw[at] = rng.gen(),
                1 if at < raw.len() => {
                    raw.remove(at);
                }
                2 => raw.insert(at, rng.gen()),
                _ => {
                    let from = rng.gen_range(0..raw.len());
                    let len = rng.gen_range(0..40).min(raw.len() - from);
                    let copy = raw[from..from + len].to_vec();
                    raw.splice(at..at, copy);
                }
            }
        }
        let _ = exercise(&raw);
    }
}

#[test]
fn huge_and_pathological_inputs_are_refused_quickly() {
    let many_folds = [
        &b"OPTIONS sip:a@b SIP/2.0\r\nSubject: x"[..],
        &b"\r\n y".repeat(15_000),
        b"\r\n\r\n",
    ]
    .concat();
    assert!(exercise(&many_folds).is_err());
    let many_vias = format!(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: {}\r\n\r\n",
        "SIP/2.0/UDP h,".repeat(4000)
    );
    assert!(matches!(
        exercise(many_vias.as_bytes()),
        Err(ParseError::MissingHeader(_))
    ));
    let only_line_ends = vec![b'\n'; MAX_MESSAGE_SIZE];
    assert_eq!(exercise(&only_line_ends), Err(ParseError::Empty));
    let oversize = vec![b'A'; MAX_MESSAGE_SIZE + 1];
    assert!(matches!(
        exercise(&oversize),
        Err(ParseError::TooLarge { .. })
    ));
}
