//! The command line of the real binary: `--version`, `--help`, `denwa check`
//! on good and bad files (every error as `file:line: key: message`), and
//! `denwa run` refusing a bad configuration before it binds anything.

mod common;

use common::{free_port, run_bounded};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn denwa(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    run_bounded(env!("CARGO_BIN_EXE_denwa"), &args, LIMIT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Write `body` to `name` in `dir`; returns the path as a string.
fn write(dir: &Path, name: &str, body: &str) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, body).expect("write config");
    path.display().to_string()
}

/// A valid configuration on free loopback ports.
fn good_config(sip: u16, http: u16) -> String {
    format!(
        "[sip]\nudp = [\"127.0.0.1:{sip}\"]\ntcp = [\"127.0.0.1:{sip}\"]\ndomain = \"denwa.test\"\n\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\n\n\
         [storage]\ndata_dir = \"data\"\n\n\
         [[extensions]]\nnumber = \"1001\"\npassword = \"long-enough-1\"\n\n\
         [[extensions]]\nnumber = \"1002\"\npassword = \"long-enough-2\"\n"
    )
}

#[test]
fn version_and_help() {
    let out = denwa(&["--version"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout).trim(),
        format!("denwa {}", env!("CARGO_PKG_VERSION"))
    );

    let out = denwa(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = text(&out.stdout);
    let commands: Vec<&str> = help
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(commands.contains(&"run"), "{help}");
    assert!(commands.contains(&"check"), "{help}");

    // No command at all is a usage error, not a start.
    let out = denwa(&[]);
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn check_accepts_a_good_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "good.toml", &good_config(5060, 8080));
    let out = denwa(&["check", "--config", &path]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout).trim(),
        format!("{path}: ok (2 extensions)")
    );
    // Checking creates nothing: no data directory, no database.
    assert!(!dir.path().join("data").exists());
}

#[test]
fn check_reports_an_unknown_key_with_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body = "[sip]\ndomain = \"denwa.test\"\nbogus = 1\n";
    let path = write(dir.path(), "unknown.toml", body);
    let out = denwa(&["check", "--config", &path]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines: Vec<String> = text(&out.stderr).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        vec![
            format!(
                "{path}:3: sip.bogus: unknown field `bogus`, expected one of `udp`, `tcp`, `domain`, \
                 `advertise`, `user_agent`, `t1_ms`, `max_tcp_connections`"
            ),
            "1 error(s)".to_owned(),
        ]
    );
}

#[test]
fn check_reports_every_validation_error_as_file_line_key_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let body = "\
[sip]
udp = [\"127.0.0.1:5060\", \"nowhere:port\"]
domain = \"denwa.test\"

[[extensions]]
number = \"1001\"
password = \"short\"

[[extensions]]
number = \"1002\"
password = \"long-enough-2\"

[[extensions]]
number = \"1002\"
password = \"long-enough-3\"
";
    let path = write(dir.path(), "bad.toml", body);
    let out = denwa(&["check", "--config", &path]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines: Vec<String> = text(&out.stderr).lines().map(str::to_owned).collect();
    assert_eq!(
        lines,
        vec![
            format!(
                "{path}:2: sip.udp[1]: `nowhere:port` is not an address:port \
                 (use `[::1]:5060` for IPv6)"
            ),
            format!("{path}:7: extensions[0].password: must be at least 8 characters"),
            format!("{path}:14: extensions[2].number: extension 1002 is defined twice"),
            "3 error(s)".to_owned(),
        ]
    );
    assert!(text(&out.stdout).is_empty(), "{out:?}");
}

#[test]
fn check_reports_a_missing_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml").display().to_string();
    let out = denwa(&["check", "--config", &path]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.starts_with(&format!("{path}: cannot read: ")), "{err}");
}

#[test]
fn run_refuses_a_bad_configuration_without_starting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (sip, http) = (free_port(), free_port());
    let body = good_config(sip, http).replace("long-enough-2", "short");
    let path = write(dir.path(), "bad.toml", &body);
    let out = denwa(&["run", "--config", &path]);
    // EX_CONFIG, at once: run_bounded would have killed a started server
    // (status 124) after its time limit.
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{path}:18: extensions[1].password: must be at least 8 characters"
        )),
        "{err}"
    );
    assert!(!err.contains("ready"), "{err}");
    // Nothing was created or bound.
    assert!(!dir.path().join("data").exists());
    assert!(std::net::UdpSocket::bind(("127.0.0.1", sip)).is_ok());
    assert!(std::net::TcpListener::bind(("127.0.0.1", http)).is_ok());
}

#[test]
fn shipped_configuration_passes_check() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/denwa.toml");
    let path = path.display().to_string();
    let out = denwa(&["check", "--config", &path]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout).trim(),
        format!("{path}: ok (3 extensions)")
    );
    assert!(text(&out.stderr).is_empty(), "{out:?}");
}
