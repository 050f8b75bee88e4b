//! Attack tools from Debian's sipvicious package against denwa: the
//! extension scanner finds nothing (unknown users and wrong passwords get the
//! same answer), and the password cracker is locked out before it reaches
//! the right password.

mod common;

use common::{extensions, free_port, password, run_bounded, Denwa};
use std::time::Duration;

fn env_home() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp home")
}

fn sipvicious(tool: &str, home: &tempfile::TempDir, args: &[String]) -> String {
    let mut full = vec![
        "HOME=".to_string() + &home.path().display().to_string(),
        tool.to_string(),
    ];
    full.extend(args.iter().cloned());
    let out = run_bounded("env", &full, Duration::from_secs(90));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn svwar_finds_no_extension() {
    let d = Denwa::start(&format!(
        "[auth]\nalgorithms = [\"MD5\"]\n\n{}",
        extensions(1000, 1010)
    ));
    let home = env_home();
    let args: Vec<String> = vec![
        "-e".into(),
        "990-1020".into(),
        "-m".into(),
        "REGISTER".into(),
        "-p".into(),
        d.sip_port.to_string(),
        "-P".into(),
        free_port().to_string(),
        "-b".into(),
        "127.0.0.6".into(),
        "--maximumtime".into(),
        "10".into(),
        "127.0.0.1".into(),
    ];
    let out = sipvicious("svwar", &home, &args);
    for n in 1000..=1010 {
        assert!(
            !out.contains(&format!("| {n} ")),
            "svwar found extension {n}:\n{out}"
        );
    }
    assert!(
        out.contains("found nothing") || !out.contains("reqauth"),
        "unexpected svwar output:\n{out}"
    );
}

#[test]
fn svcrack_is_locked_out_before_it_finds_the_password() {
    // MD5 only: the cracker cannot compute SHA-256 responses at all; the
    // point here is that lockout stops it even when it could.
    let d = Denwa::start(&format!(
        "[auth]\nalgorithms = [\"MD5\"]\nlockout_threshold = 5\nlockout_response = \"drop\"\n\n{}",
        extensions(1000, 1001)
    ));
    let home = env_home();
    let dict = home.path().join("dict.txt");
    let mut words: Vec<String> = (0..30).map(|i| format!("guess{i}")).collect();
    words.push(password(1000));
    std::fs::write(&dict, words.join("\n") + "\n").expect("dictionary");
    let args: Vec<String> = vec![
        "-u".into(),
        "1000".into(),
        "-d".into(),
        dict.display().to_string(),
        "-p".into(),
        d.sip_port.to_string(),
        "-P".into(),
        free_port().to_string(),
        "-b".into(),
        "127.0.0.7".into(),
        "-vv".into(),
        "127.0.0.1".into(),
    ];
    let out = sipvicious("svcrack", &home, &args);
    assert!(
        !out.contains(&password(1000)),
        "svcrack found the password:\n{out}"
    );
    assert!(
        d.metric("denwa_auth_lockouts_total") >= 1.0,
        "no lockout recorded:\n{out}"
    );
}
