//! Numbers, trunks and outbound routing with real peers: SIPp plays the
//! carriers (IP trunks on their own loopback addresses), baresip and SIPp
//! the extensions. Calls to a number (DID) reach its extension with the
//! number's display text and a screen pop; the channel limit refuses the
//! call over it; a blocked caller is rejected; an address that is no trunk
//! is challenged like a phone; the outbound prefix picks the trunk and the
//! caller ID; permission classes, emergency numbers and the restriction
//! list (with its announcement) hold; `denwa list` feeds the running denwa;
//! a number routed to a named forward goes back out presenting itself; a
//! number routed to a sound plays it before refusing; a phone's RFC 4733
//! key press reaches a trunk that takes DTMF as SIP INFO as an INFO; a
//! number routed to an ACD group queues its caller for the group's agent.

mod common;

use common::baresip::{json_str, Phone};
use common::{caller_sipp, free_port, password, run_bounded, Background, Denwa, Sipp};
use denwa::store::cdr::{CallRecord, Direction, Disposition};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);
const EAST_IP: &str = "127.0.0.21";
const WEST_IP: &str = "127.0.0.22";
/// Sends to denwa's numbers but is no trunk.
const STRANGER_IP: &str = "127.0.0.29";
const EAST_NUMBER: &str = "0311110000";
const WEST_NUMBER: &str = "0622220000";
/// Forwarded outside, presenting itself.
const NIGHT_NUMBER: &str = "0333330000";
/// Plays a sound (Debian's English prompts) and refuses.
const CLOSED_NUMBER: &str = "0344440000";
const CLOSED_SOUND: &str = "ss-noservice";
/// Extensions: the agent, a second one, and one that may not call out.
const AGENT: u32 = 5001;
const OTHER: u32 = 5002;
const FORBIDDEN: u32 = 5003;

struct Site {
    d: Denwa,
    east_port: u16,
    west_port: u16,
}

fn extension(n: u32, extra: &str) -> String {
    format!(
        "[[extensions]]\nnumber = \"{n}\"\nname = \"Ext {n}\"\npassword = \"{}\"\n{extra}\n\n",
        password(n)
    )
}

/// denwa with two IP trunks (east: national numbers, west: +81...), a
/// number on each, and three extensions.
fn site() -> Site {
    let (east_port, west_port) = (free_port(), free_port());
    let text = format!(
        "[auth]\nalgorithms = [\"MD5\"]\n\n[calls]\nno_answer_timeout_secs = 10\n\n\
         [outbound]\ndefault_number = \"{EAST_NUMBER}\"\n\n\
         [[trunks]]\nname = \"east\"\nkind = \"ip\"\nhost = \"{EAST_IP}\"\nport = {east_port}\naddresses = [\"{EAST_IP}\"]\n\n\
         [[trunks]]\nname = \"west\"\nkind = \"ip\"\nhost = \"{WEST_IP}\"\nport = {west_port}\naddresses = [\"{WEST_IP}\"]\ncaller_id_format = \"e164_plus\"\ncodecs = [\"PCMA\"]\ndtmf = \"info\"\n\n\
         [[numbers]]\nnumber = \"{EAST_NUMBER}\"\nname = \"Sales\"\ntrunk = \"east\"\nroute = \"extension:{AGENT}\"\nmax_channels = 1\n\
         incoming_display = \"Sales East\"\noutgoing_display = \"Example East\"\nscreen_pop_url = \"https://crm.test/?tel=@@@@\"\noutbound_prefix = \"71\"\n\n\
         [[numbers]]\nnumber = \"+81622220000\"\ntrunk = \"west\"\nroute = \"extension:{OTHER}\"\noutbound_prefix = \"72\"\n\n\
         [[numbers]]\nnumber = \"{NIGHT_NUMBER}\"\ntrunk = \"east\"\nroute = \"forward:night\"\n\n\
         [[numbers]]\nnumber = \"{CLOSED_NUMBER}\"\ntrunk = \"east\"\nroute = \"sound:{CLOSED_SOUND}\"\n\n\
         [[forwards]]\nname = \"night\"\ndestination = \"+819012345678\"\npresent = \"called\"\n\n\
         {}{}{}",
        extension(AGENT, ""),
        extension(OTHER, ""),
        extension(FORBIDDEN, "outbound = \"forbidden\""),
    );
    Site {
        d: Denwa::start(&text),
        east_port,
        west_port,
    }
}

/// A carrier's call from `ip` to `number`, presenting `caller`.
fn carrier(d: &Denwa, scenario: &str, ip: &str, number: &str, caller: &str) -> Sipp {
    Sipp::new(scenario, &d.sip_addr(), ip)
        .arg("-s")
        .arg(number)
        .key("caller", caller)
        .arg("-mp")
        .arg(&free_port().to_string())
        .arg("-m")
        .arg("1")
        .arg("-timeout")
        .arg("30s")
}

/// A carrier taking one outside call on `ip`:`port`; the INVITE must be
/// for `ruri` and present `from` (regular expressions).
fn carrier_uas(ip: &str, port: u16, ruri: &str, from: &str) -> (Background, Sipp) {
    carrier_uas_offer(ip, port, ruri, from, "m=audio")
}

/// [`carrier_uas`] whose INVITE's SDP must also match `sdp`.
fn carrier_uas_offer(ip: &str, port: u16, ruri: &str, from: &str, sdp: &str) -> (Background, Sipp) {
    let sipp = Sipp::uas("carrier_uas.xml", ip, port)
        .substitute("[ruri]", ruri)
        .substitute("[from]", from)
        .substitute("[sdp]", sdp)
        .arg("-mp")
        .arg(&free_port().to_string())
        .arg("-m")
        .arg("1");
    (Background::new(sipp.spawn(LIMIT)), sipp)
}

/// The newest record whose caller leg is not `skip`.
fn newest(d: &Denwa, n: usize) -> CallRecord {
    d.call_records(n).into_iter().next().expect("a record")
}

fn denwa_cli(d: &Denwa, args: &[&str]) -> (bool, String) {
    let mut full = vec![
        "list".to_owned(),
        "--config".to_owned(),
        d.config.display().to_string(),
    ];
    full.extend(args.iter().map(|a| a.to_string()));
    let out = run_bounded(env!("CARGO_BIN_EXE_denwa"), &full, Duration::from_secs(20));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_call_to_a_number_reaches_its_extension_with_display_and_screen_pop() {
    let s = site();
    let mut phone = Phone::start(&s.d, AGENT, 440.0, 0.3, "auto");
    phone.wait_registered();
    let (ok, report) = carrier(
        &s.d,
        "carrier_call.xml",
        EAST_IP,
        "81311110000",
        "+81312345678",
    )
    .substitute("[hold_ms]", "2000")
    .run_report(LIMIT);
    assert!(ok, "{report}");
    let incoming = phone.wait_event("CALL_ESTABLISHED");
    assert!(
        incoming.contains("sip:0312345678@"),
        "the agent sees the caller's number: {incoming}"
    );
    assert_eq!(
        json_str(&incoming, "peerdisplayname"),
        "Sales East",
        "{incoming}"
    );
    let rec = newest(&s.d, 1);
    assert_eq!(rec.direction, Direction::Inbound);
    assert_eq!(rec.disposition, Disposition::Answered);
    assert_eq!(
        (rec.caller.as_str(), rec.callee.as_str()),
        ("0312345678", "5001")
    );
    assert_eq!(rec.did.as_deref(), Some(EAST_NUMBER));
    assert_eq!(rec.trunk.as_deref(), Some("east"));
    assert_eq!(
        s.d.log_count("url=https://crm.test/?tel=0312345678"),
        1,
        "one screen pop with the caller filled in"
    );
}

#[test]
fn the_channel_limit_refuses_the_call_over_it() {
    let s = site();
    let mut phone = Phone::start(&s.d, AGENT, 440.0, 0.3, "auto");
    phone.wait_registered();
    let first = carrier(&s.d, "carrier_call.xml", EAST_IP, EAST_NUMBER, "0312345678")
        .substitute("[hold_ms]", "4000");
    let mut running = Background::new(first.spawn(LIMIT));
    phone.wait_event("CALL_ESTABLISHED");
    let (ok, report) = carrier(
        &s.d,
        "carrier_refused.xml",
        EAST_IP,
        EAST_NUMBER,
        "0398765432",
    )
    .substitute("[expect]", "486")
    .run_report(LIMIT);
    assert!(ok, "the second call is busy: {report}");
    assert_eq!(s.d.metric("denwa_channel_limit_refusals_total"), 1.0);
    assert!(
        running.finish(LIMIT),
        "the first call went on: {}",
        first.errors()
    );
    let recs = s.d.call_records(2);
    let refused = recs
        .iter()
        .find(|r| r.caller == "0398765432")
        .expect("refused call recorded");
    assert_eq!(refused.disposition, Disposition::ChannelLimit);
    assert_eq!(refused.sip_status, 486);
    assert_eq!(refused.did.as_deref(), Some(EAST_NUMBER));
    // The channel is free again once the first call is over.
    phone.wait_event("CALL_CLOSED");
    let (ok, report) = carrier(&s.d, "carrier_call.xml", EAST_IP, EAST_NUMBER, "0398765432")
        .substitute("[hold_ms]", "500")
        .run_report(LIMIT);
    assert!(ok, "a later call gets through: {report}");
}

#[test]
fn a_blocked_caller_is_rejected_and_recorded() {
    let s = site();
    let (ok, out) = denwa_cli(
        &s.d,
        &["blocked", "add", "03-9876-5432", "--remark", "nuisance"],
    );
    assert!(ok, "{out}");
    assert_eq!(s.d.wait_metric("denwa_blocklist_entries", 1.0), 1.0);
    let (ok, out) = denwa_cli(&s.d, &["blocked", "show"]);
    assert!(ok && out.contains("0398765432\tnuisance"), "{out}");
    let (ok, report) = carrier(
        &s.d,
        "carrier_refused.xml",
        EAST_IP,
        EAST_NUMBER,
        "+81398765432",
    )
    .substitute("[expect]", "603")
    .run_report(LIMIT);
    assert!(ok, "{report}");
    let rec = newest(&s.d, 1);
    assert_eq!(rec.disposition, Disposition::Blocked);
    assert_eq!(rec.direction, Direction::Inbound);
    assert_eq!(rec.did.as_deref(), Some(EAST_NUMBER));
    assert_eq!(s.d.log_count("offering the call"), 0, "nothing rang");
    // Removed from the list, the same caller gets through to the number.
    let (ok, out) = denwa_cli(&s.d, &["blocked", "remove", "0398765432"]);
    assert!(ok, "{out}");
    assert_eq!(s.d.wait_metric("denwa_blocklist_entries", 0.0), 0.0);
    let (ok, report) = carrier(
        &s.d,
        "carrier_refused.xml",
        EAST_IP,
        EAST_NUMBER,
        "+81398765432",
    )
    .substitute("[expect]", "480")
    .run_report(LIMIT);
    assert!(ok, "the agent is not registered: 480, not 603: {report}");
}

#[test]
fn an_unknown_address_is_challenged_not_taken_as_a_trunk() {
    let s = site();
    let (ok, report) = carrier(
        &s.d,
        "carrier_refused.xml",
        STRANGER_IP,
        EAST_NUMBER,
        "0312345678",
    )
    .substitute("[expect]", "407")
    .run_report(LIMIT);
    assert!(ok, "{report}");
    assert_eq!(s.d.log_count("screen pop"), 0);
    assert_eq!(s.d.log_count("call attempt"), 0, "no call was started");
}

#[test]
fn the_outbound_prefix_picks_the_trunk_and_caller_id() {
    let s = site();
    // 72 + a national number: west, written +81..., presenting west's
    // number, offered PCMA alone (no telephone-event: west takes DTMF as
    // SIP INFO).
    let (mut west, west_sipp) = carrier_uas_offer(
        WEST_IP,
        s.west_port,
        "\\+81312345678",
        "sip:\\+81622220000@",
        "m=audio [0-9]+ RTP/AVP 8[^ 0-9]",
    );
    let (ok, report) = caller_sipp(&s.d, "uac_call.xml", AGENT, "720312345678")
        .substitute("[pcap]", "/usr/share/sip-tester/g711a.pcap")
        .substitute("[hold_ms]", "1000")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    assert!(west.finish(LIMIT), "west carrier: {}", west_sipp.errors());
    let rec = newest(&s.d, 1);
    assert_eq!(rec.direction, Direction::Outbound);
    assert_eq!(
        (rec.trunk.as_deref(), rec.did.as_deref()),
        (Some("west"), Some(WEST_NUMBER))
    );
    assert_eq!(rec.callee, "0312345678");

    // No prefix: the default route, east, national form, with its display.
    let (mut east, east_sipp) = carrier_uas(
        EAST_IP,
        s.east_port,
        "0312345678",
        "Example East.*sip:0311110000@",
    );
    let (ok, report) = caller_sipp(&s.d, "uac_call.xml", AGENT, "0312345678")
        .substitute("[pcap]", "/usr/share/sip-tester/g711a.pcap")
        .substitute("[hold_ms]", "500")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    assert!(east.finish(LIMIT), "east carrier: {}", east_sipp.errors());

    // 71 + 184 + number: east, caller ID withheld.
    let (mut east, east_sipp) = carrier_uas(
        EAST_IP,
        s.east_port,
        "0312345678",
        "sip:anonymous@anonymous.invalid",
    );
    let (ok, report) = caller_sipp(&s.d, "uac_call.xml", AGENT, "711840312345678")
        .substitute("[pcap]", "/usr/share/sip-tester/g711a.pcap")
        .substitute("[hold_ms]", "500")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    assert!(
        east.finish(LIMIT),
        "east carrier (withheld): {}",
        east_sipp.errors()
    );
    assert_eq!(s.d.call_records(3).len(), 3);
}

#[test]
fn permission_classes_refuse_and_emergency_numbers_always_go_out() {
    let s = site();
    let (ok, report) = caller_sipp(&s.d, "uac_refused.xml", AGENT, "01012125550100")
        .substitute("[expect]", "403")
        .run_report(LIMIT);
    assert!(ok, "a national extension may not call abroad: {report}");
    let rec = newest(&s.d, 1);
    assert_eq!(
        (rec.disposition, rec.direction),
        (Disposition::Forbidden, Direction::Outbound)
    );

    let (ok, report) = caller_sipp(&s.d, "uac_refused.xml", FORBIDDEN, "0312345678")
        .substitute("[expect]", "403")
        .run_report(LIMIT);
    assert!(ok, "outbound forbidden: {report}");
    assert_eq!(s.d.call_records(2)[0].disposition, Disposition::Forbidden);

    let (mut east, east_sipp) = carrier_uas(EAST_IP, s.east_port, "119", "sip:0311110000@");
    let (ok, report) = caller_sipp(&s.d, "uac_call.xml", FORBIDDEN, "119")
        .substitute("[pcap]", "/usr/share/sip-tester/g711a.pcap")
        .substitute("[hold_ms]", "500")
        .run_report(LIMIT);
    assert!(ok, "emergency is always allowed: {report}");
    assert!(east.finish(LIMIT), "east carrier: {}", east_sipp.errors());
    assert_eq!(s.d.call_records(3)[0].disposition, Disposition::Answered);
}

#[test]
fn a_restricted_number_is_refused_with_an_announcement() {
    let s = site();
    let csv = s.d.dir.path().join("restricted.csv");
    std::fs::write(
        &csv,
        "name,number,remark\nPremium,0990-000-000,premium rate\nBroken,09x,typo\nShort\n",
    )
    .expect("csv");
    let csv = csv.display().to_string();
    let (ok, out) = denwa_cli(
        &s.d,
        &[
            "restricted",
            "import",
            &csv,
            "--header",
            "yes",
            "--columns",
            "3",
            "--column",
            "2",
            "--remark-column",
            "3",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("line 2: added 0990000000"), "{out}");
    assert!(
        out.contains("line 3: rejected: `09x` is not digits only"),
        "{out}"
    );
    assert!(
        out.contains("line 4: rejected: 1 columns, expected 3"),
        "{out}"
    );
    assert!(out.contains("1 added, 0 updated, 2 rejected"), "{out}");
    assert_eq!(s.d.wait_metric("denwa_restriction_list_entries", 1.0), 1.0);

    let (ok, report) = caller_sipp(&s.d, "uac_announced.xml", AGENT, "720990000000")
        .substitute("[expect]", "403")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    let rec = newest(&s.d, 1);
    assert_eq!(rec.disposition, Disposition::Restricted);
    assert_eq!(rec.trunk.as_deref(), Some("west"));
    assert_eq!(s.d.log_count("announcement playing"), 1);
}

#[test]
fn a_number_routed_to_a_forward_goes_out_presenting_the_called_number() {
    let s = site();
    let (mut east, east_sipp) = carrier_uas(EAST_IP, s.east_port, "09012345678", "sip:0333330000@");
    let (ok, report) = carrier(
        &s.d,
        "carrier_call.xml",
        EAST_IP,
        NIGHT_NUMBER,
        "0312345678",
    )
    .substitute("[hold_ms]", "1000")
    .run_report(LIMIT);
    assert!(ok, "{report}");
    assert!(
        east.finish(LIMIT),
        "the forward's leg: {}",
        east_sipp.errors()
    );
    let rec = newest(&s.d, 1);
    assert_eq!(
        (rec.direction, rec.disposition),
        (Direction::Inbound, Disposition::Answered)
    );
    assert_eq!(rec.did.as_deref(), Some(NIGHT_NUMBER));
    assert_eq!(
        (rec.caller.as_str(), rec.callee.as_str()),
        ("0312345678", "09012345678")
    );
}

#[test]
fn a_number_routed_to_a_sound_plays_it_as_early_media() {
    let s = site();
    let (ok, report) = carrier(
        &s.d,
        "carrier_refused.xml",
        EAST_IP,
        CLOSED_NUMBER,
        "0312345678",
    )
    .substitute(
        "<recv response=\"183\" optional=\"true\"/>",
        "<recv response=\"183\"/>",
    )
    .substitute("[expect]", "480")
    .run_report(LIMIT);
    assert!(ok, "183, then 480 once the sound has played: {report}");
    assert_eq!(s.d.log_count("announcement playing"), 1);
    let rec = newest(&s.d, 1);
    assert_eq!(rec.disposition, Disposition::Unavailable);
    assert_eq!(rec.did.as_deref(), Some(CLOSED_NUMBER));
    assert!(
        rec.ring_ms >= 1000,
        "the sound took its time: {} ms",
        rec.ring_ms
    );
}

#[test]
fn a_key_press_reaches_an_info_trunk_as_sip_info() {
    let s = site();
    let sipp = Sipp::uas("carrier_uas_info.xml", WEST_IP, s.west_port)
        .substitute("[ruri]", "\\+81312345678")
        .substitute("[from]", "sip:\\+81622220000@")
        .substitute("[sdp]", "m=audio [0-9]+ RTP/AVP 8[^ 0-9]")
        .substitute("[info]", "Signal=5")
        .arg("-mp")
        .arg(&free_port().to_string())
        .arg("-m")
        .arg("1");
    let mut west = Background::new(sipp.spawn(LIMIT));
    let press = "<nop><action><exec play_pcap_audio=\"/usr/share/sip-tester/dtmf_2833_5.pcap\"/></action></nop>\n  <pause milliseconds=\"600\"/>";
    let (ok, report) = caller_sipp(&s.d, "uac_dtmf_events.xml", AGENT, "720312345678")
        .substitute("<!-- [keys] -->", press)
        .run_report(LIMIT);
    assert!(ok, "the phone was offered telephone-event: {report}");
    assert!(west.finish(LIMIT), "no INFO for the key: {}", sipp.errors());
    assert_eq!(s.d.log_count("source=\"rfc4733\""), 1, "{}", s.d.log());
}

/// A number whose route is an ACD group: the carrier's caller queues and
/// the group's agent takes the call; the record keeps the number and trunk.
#[test]
fn a_number_routed_to_a_group_queues_the_caller_for_its_agent() {
    let port = free_port();
    let text = format!(
        "[auth]\nalgorithms = [\"MD5\"]\n\n\
         [[trunks]]\nname = \"east\"\nkind = \"ip\"\nhost = \"{EAST_IP}\"\nport = {port}\naddresses = [\"{EAST_IP}\"]\n\n\
         [[numbers]]\nnumber = \"{EAST_NUMBER}\"\nname = \"Support\"\ntrunk = \"east\"\nroute = \"group:support\"\n\
         screen_pop_url = \"https://crm.test/?tel=@@@@\"\n\n\
         {}\
         [acd]\n\n[[acd.agents]]\nid = \"a{AGENT}\"\nname = \"Agent\"\nextension = \"{AGENT}\"\n\n\
         [[acd.groups]]\nid = \"support\"\nstrategy = \"ring-all\"\nmembers = [{{ agent = \"a{AGENT}\" }}]\nring_secs = 10\n",
        extension(AGENT, ""),
    );
    let d = Denwa::start(&text);
    let mut phone = Phone::start(&d, AGENT, 440.0, 0.3, "auto");
    phone.wait_registered();
    let (ok, report) = carrier(
        &d,
        "carrier_call.xml",
        EAST_IP,
        "81311110000",
        "+81312345678",
    )
    .substitute("[hold_ms]", "2000")
    .run_report(LIMIT);
    assert!(ok, "{report}\n{}", d.log());
    let incoming = phone.wait_event("CALL_ESTABLISHED");
    assert!(
        incoming.contains("0312345678"),
        "the agent sees the caller's number: {incoming}"
    );
    let rec = newest(&d, 1);
    assert_eq!(rec.direction, Direction::Inbound);
    assert_eq!(rec.disposition, Disposition::Answered, "{rec:?}");
    assert_eq!(rec.did.as_deref(), Some(EAST_NUMBER));
    assert_eq!(rec.trunk.as_deref(), Some("east"));
    assert_eq!(
        d.log_count("group=support url=https://crm.test/?tel=0312345678"),
        1,
        "one screen pop naming the group"
    );
}
