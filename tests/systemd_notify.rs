//! denwa speaks systemd's notify protocol (`Type=notify`): READY once the
//! listeners are up, RELOADING/READY around a SIGHUP, STOPPING on SIGTERM.
//! The test plays systemd's part with a datagram socket in NOTIFY_SOCKET.

mod common;

use common::{extensions, Denwa};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn next_state(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn notifies_ready_reloading_and_stopping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let socket = path.display().to_string();
    let mut d = Denwa::start_with_env(&extensions(1000, 1001), &[("NOTIFY_SOCKET", &socket)]);

    // Ready only once listeners are bound: the SIP port answers by now.
    assert!(next_state(&sock).contains("READY=1"));
    assert!(d.http_get("/healthz").is_some_and(|(code, _)| code == 200));

    d.signal("HUP");
    assert!(next_state(&sock).contains("RELOADING=1"));
    assert!(next_state(&sock).contains("READY=1"));

    let pid = d.pid();
    let status = d.stop();
    assert!(status.success(), "exit status {status}");
    let stopping = next_state(&sock);
    assert!(stopping.contains("STOPPING=1"), "{stopping} (pid {pid})");
}
