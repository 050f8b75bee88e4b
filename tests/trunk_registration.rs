//! Register trunks with SIPp as the carrier: denwa registers with the
//! trunk's credentials (the carrier challenges with 401 and checks the
//! digest), refreshes before the granted interval ends, shows the state in
//! `/metrics`, and answers the carrier's 407 on an outside call; a call
//! from the carrier's host to a number is a trunk call. Wrong credentials
//! leave the trunk unregistered, logged and counted.

mod common;

use common::{caller_sipp, free_port, password, wait_until, Background, Denwa, Sipp, SippCallee};
use denwa::store::cdr::{Direction, Disposition};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);
const CARRIER_IP: &str = "127.0.0.23";
const AGENT: u32 = 6001;
const USERNAME: &str = "denwa-test";
const SECRET: &str = "trunk-secret-1";
const REGISTERED: &str = "denwa_trunk_registered{trunk=\"voip\"}";

/// The carrier (SIPp) on its own address, expecting `calls` calls and
/// checking digests against `SECRET`.
fn carrier(port: u16, calls: u32) -> (Background, Sipp) {
    let sipp = Sipp::uas("carrier_registrar.xml", CARRIER_IP, port)
        .substitute("[username]", USERNAME)
        .substitute("[password]", SECRET)
        .arg("-mp")
        .arg(&free_port().to_string())
        .arg("-m")
        .arg(&calls.to_string());
    (Background::new(sipp.spawn(LIMIT)), sipp)
}

fn denwa(port: u16, secret: &str) -> Denwa {
    Denwa::start(&format!(
        "[auth]\nalgorithms = [\"MD5\"]\n\n\
         [[trunks]]\nname = \"voip\"\nkind = \"register\"\nhost = \"{CARRIER_IP}\"\nport = {port}\n\
         username = \"{USERNAME}\"\npassword = \"{secret}\"\nregister_expires = 120\n\n\
         [[numbers]]\nnumber = \"0355550000\"\ntrunk = \"voip\"\nroute = \"extension:{AGENT}\"\noutbound_prefix = \"73\"\n\n\
         [[extensions]]\nnumber = \"{AGENT}\"\npassword = \"{}\"\n",
        password(AGENT)
    ))
}

#[test]
fn registers_refreshes_and_answers_the_carriers_challenge_on_a_call() {
    let port = free_port();
    let (mut sipp, scenario) = carrier(port, 2);
    let d = denwa(port, SECRET);
    assert_eq!(d.wait_metric(REGISTERED, 1.0), 1.0, "{}", d.log());
    // Granted 4 s: the refresh (challenged again) comes within them.
    assert!(
        wait_until(Duration::from_secs(10), || d.log_count("trunk registered")
            >= 2),
        "no refresh:\n{}",
        d.log()
    );
    assert_eq!(d.metric(REGISTERED), 1.0);

    let (ok, report) = caller_sipp(&d, "uac_call.xml", AGENT, "730312345678")
        .substitute("[pcap]", "/usr/share/sip-tester/g711a.pcap")
        .substitute("[hold_ms]", "500")
        .run_report(LIMIT);
    assert!(ok, "{report}");
    assert!(
        sipp.finish(LIMIT),
        "the carrier saw a wrong digest or a missing step: {}",
        scenario.errors()
    );
    assert_eq!(d.log_count("answering the trunk's challenge"), 1);
    let rec = d.call_records(1).remove(0);
    assert_eq!(
        (rec.direction, rec.disposition),
        (Direction::Outbound, Disposition::Answered)
    );
    assert_eq!(rec.trunk.as_deref(), Some("voip"));
    assert_eq!(
        d.metric("denwa_trunk_registration_failures_total{trunk=\"voip\"}"),
        0.0
    );
}

#[test]
fn wrong_credentials_leave_the_trunk_unregistered_and_counted() {
    let port = free_port();
    let (_sipp, _scenario) = carrier(port, 1);
    let d = denwa(port, "not-the-secret");
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log_count("trunk registration failed")
            >= 1),
        "{}",
        d.log()
    );
    assert_eq!(d.metric(REGISTERED), 0.0);
    assert_eq!(
        d.metric("denwa_trunk_registration_failures_total{trunk=\"voip\"}"),
        1.0
    );
    assert_eq!(d.log_count("retry_in_secs=30"), 1, "{}", d.log());
}

#[test]
fn a_call_from_the_carriers_host_is_a_trunk_call() {
    let port = free_port();
    let (_sipp, _scenario) = carrier(port, 1);
    let d = denwa(port, SECRET);
    let mut agent = SippCallee::start(&d, "uas.xml", AGENT, &[], LIMIT);
    let (ok, report) = Sipp::new("carrier_call.xml", &d.sip_addr(), CARRIER_IP)
        .arg("-s")
        .arg("+81355550000")
        .key("caller", "0312345678")
        .substitute("[hold_ms]", "500")
        .arg("-mp")
        .arg(&free_port().to_string())
        .arg("-m")
        .arg("1")
        .run_report(LIMIT);
    assert!(ok, "no credentials asked of the carrier: {report}");
    agent.finish(LIMIT);
    let rec = d.call_records(1).remove(0);
    assert_eq!(
        (rec.direction, rec.disposition),
        (Direction::Inbound, Disposition::Answered)
    );
    assert_eq!(
        (rec.did.as_deref(), rec.trunk.as_deref()),
        (Some("0355550000"), Some("voip"))
    );
}

#[test]
fn a_trunk_removed_by_a_reload_is_unregistered() {
    let port = free_port();
    let scenario = Sipp::uas("carrier_unregister.xml", CARRIER_IP, port)
        .substitute("[username]", USERNAME)
        .substitute("[password]", SECRET)
        .arg("-m")
        .arg("1");
    let mut sipp = Background::new(scenario.spawn(LIMIT));
    let d = denwa(port, SECRET);
    assert_eq!(d.wait_metric(REGISTERED, 1.0), 1.0, "{}", d.log());
    // The same configuration without the trunk and its number.
    let text = std::fs::read_to_string(&d.config).expect("config");
    let (head, rest) = text.split_once("[[trunks]]").expect("a trunk");
    let (_, extensions) = rest.split_once("[[extensions]]").expect("extensions");
    std::fs::write(&d.config, format!("{head}[[extensions]]{extensions}")).expect("config");
    d.signal("HUP");
    assert!(
        sipp.finish(LIMIT),
        "the carrier saw no authenticated un-REGISTER: {}",
        scenario.errors()
    );
    assert!(
        wait_until(Duration::from_secs(10), || d
            .log_count("trunk unregistered")
            == 1),
        "{}",
        d.log()
    );
    assert_eq!(d.metric(REGISTERED), 0.0);
}
