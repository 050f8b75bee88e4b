//! Registrar interop with SIPp: digest authentication for many users, wrong
//! credentials, lockout of a guessing source, restart keeps registrations.

mod common;

use common::{extensions, password, register_lines, register_users, Denwa, Sipp};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// SIPp's digest support is MD5 only; offer MD5 first for it.
const MD5: &str = "[auth]\nalgorithms = [\"MD5\"]\nlockout_threshold = 5\n\n";

#[test]
fn many_users_register_with_digest_credentials() {
    let d = Denwa::start(&format!("{MD5}{}", extensions(2000, 2099)));
    let (ok, report) = register_users(&d, "127.0.0.1", 2000..=2099, password, "register.xml");
    assert!(ok, "{report}");
    assert_eq!(d.wait_metric("denwa_registrations", 100.0), 100.0);
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_fresh_challenge() {
    let d = Denwa::start(&format!("{MD5}{}", extensions(2000, 2001)));
    // Known user, wrong password.
    let (ok, report) = register_users(
        &d,
        "127.0.0.3",
        2000..=2000,
        |_| "wrong-password".into(),
        "register_wrong.xml",
    );
    assert!(ok, "{report}");
    // Unknown user: the very same answer.
    let (ok, report) = register_users(
        &d,
        "127.0.0.4",
        7000..=7000,
        |_| "whatever-pw".into(),
        "register_wrong.xml",
    );
    assert!(ok, "{report}");
    assert_eq!(d.metric("denwa_registrations"), 0.0);
    assert!(d.metric("denwa_auth_failures_total") >= 2.0);
}

#[test]
fn a_guessing_source_is_locked_out_and_others_are_not() {
    let d = Denwa::start(&format!("{MD5}{}", extensions(2000, 2001)));
    // Four wrong guesses from 127.0.0.2: each still gets a fresh challenge.
    for _ in 0..4 {
        let (ok, report) = register_users(
            &d,
            "127.0.0.2",
            2000..=2000,
            |_| "guess".into(),
            "register_wrong.xml",
        );
        assert!(ok, "{report}");
    }
    // The fifth reaches the threshold: no answer any more.
    let (ok, _) = register_users(
        &d,
        "127.0.0.2",
        2000..=2000,
        |_| "guess".into(),
        "register_wrong.xml",
    );
    assert!(!ok, "the fifth wrong guess was still answered");
    // Now even the right password from that source gets no answer.
    let (ok, _) = Sipp::new("register.xml", &d.sip_addr(), "127.0.0.2")
        .users(&register_lines(2000..=2000, password))
        .key("contact_port", "5999")
        .arg("-m")
        .arg("1")
        .arg("-timeout")
        .arg("4s")
        .arg("-timeout_error")
        .run_report(LIMIT);
    assert!(!ok, "a locked-out source registered");
    assert!(d.metric("denwa_auth_lockouts_total") >= 1.0);
    // A client elsewhere is unaffected.
    let (ok, report) = register_users(&d, "127.0.0.1", 2001..=2001, password, "register.xml");
    assert!(ok, "{report}");
}

#[test]
fn registrations_survive_a_restart() {
    let mut d = Denwa::start(&format!("{MD5}{}", extensions(2000, 2009)));
    let (ok, report) = register_users(&d, "127.0.0.1", 2000..=2009, password, "register.xml");
    assert!(ok, "{report}");
    assert_eq!(d.wait_metric("denwa_registrations", 10.0), 10.0);
    assert!(d.stop().success());
    d.restart();
    assert_eq!(d.metric("denwa_registrations"), 10.0);
}

/// One registration of `user` through a copy of register.xml changed by
/// `edits` (pairs of text to replace).
fn register_edited(d: &Denwa, user: u32, edits: &[(&str, &str)]) -> (bool, String) {
    let mut sipp = Sipp::new("register.xml", &d.sip_addr(), "127.0.0.1")
        .users(&register_lines(user..=user, password));
    for (from, to) in edits {
        sipp = sipp.substitute(from, to);
    }
    sipp.key("contact_port", "5999")
        .arg("-m")
        .arg("1")
        .arg("-timeout")
        .arg("8s")
        .arg("-timeout_error")
        .run_report(LIMIT)
}

#[test]
fn expires_below_the_minimum_gets_423_and_unregister_removes_bindings() {
    let d = Denwa::start(&format!("{MD5}{}", extensions(2000, 2001)));
    // 10 s is below min_expires (60): 423 Interval Too Brief.
    let (ok, report) = register_edited(
        &d,
        2000,
        &[
            ("Expires: 600", "Expires: 10"),
            (
                "<recv response=\"200\" rtd=\"true\"/>",
                "<recv response=\"423\"/>",
            ),
        ],
    );
    assert!(ok, "{report}");
    assert_eq!(d.metric("denwa_registrations"), 0.0);

    // Register, then unregister with Expires: 0.
    let (ok, report) = register_edited(&d, 2000, &[]);
    assert!(ok, "{report}");
    assert_eq!(d.wait_metric("denwa_registrations", 1.0), 1.0);
    let (ok, report) = register_edited(&d, 2000, &[("Expires: 600", "Expires: 0")]);
    assert!(ok, "{report}");
    assert_eq!(d.wait_metric("denwa_registrations", 0.0), 0.0);

    // Two contacts, then `Contact: *` with Expires: 0 removes both.
    let (ok, report) = register_edited(&d, 2001, &[]);
    assert!(ok, "{report}");
    let (ok, report) = register_edited(&d, 2001, &[("[contact_port]", "5998")]);
    assert!(ok, "{report}");
    assert_eq!(d.wait_metric("denwa_registrations", 2.0), 2.0);
    let (ok, report) = register_edited(
        &d,
        2001,
        &[
            ("Expires: 600", "Expires: 0"),
            (
                "Contact: <sip:[field0]@[local_ip]:[contact_port]>",
                "Contact: *",
            ),
        ],
    );
    assert!(ok, "{report}");
    assert_eq!(d.wait_metric("denwa_registrations", 0.0), 0.0);
}
