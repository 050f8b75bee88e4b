//! The RTP relay end to end on 127.0.0.1: two UDP sockets play phone A and
//! phone B and talk through a relay. Every test takes its own slice of the
//! 41000-41999 range so tests can run in parallel, and every wait is bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use denwa::media::rtcp::{build_report, ReportBlock};
use denwa::media::{
    Direction, Leg, MediaEndpoint, MediaEngine, PortAllocator, RelayHandle, RelayMetrics,
};
use rtp_rs::{RtpPacketBuilder, Seq};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(5);

fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
    RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(0x1234_5678)
        .sequence(Seq::from(seq))
        .timestamp(u32::from(seq) * 160)
        .payload(payload)
        .build()
        .unwrap()
}

/// An RTCP receiver report with no report blocks.
fn rtcp(ssrc: u8) -> Vec<u8> {
    vec![0x80, 201, 0, 1, 0, 0, 0, ssrc]
}

async fn phone() -> UdpSocket {
    UdpSocket::bind((LOOPBACK, 0)).await.unwrap()
}

async fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (len, from) = timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("no datagram within the time limit")
        .unwrap();
    (buf[..len].to_vec(), from)
}

struct Call {
    ports: PortAllocator,
    _engine: MediaEngine,
    relay: RelayHandle,
    metrics: RelayMetrics,
    a: SocketAddr,
    b: SocketAddr,
}

/// A relay on `ports` whose SDP-announced remotes are `a_sdp` / `b_sdp`.
async fn call(ports: PortAllocator, a_sdp: SocketAddr, b_sdp: SocketAddr) -> Call {
    let ea = MediaEndpoint::bind(LOOPBACK, &ports).await.unwrap();
    let eb = MediaEndpoint::bind(LOOPBACK, &ports).await.unwrap();
    let metrics = RelayMetrics::default();
    let engine = MediaEngine::start(1).unwrap();
    let relay = engine.start_relay(ea, eb, Some(a_sdp), Some(b_sdp), metrics.clone());
    let (a, b) = (relay.local_rtp_addr(Leg::A), relay.local_rtp_addr(Leg::B));
    Call {
        ports,
        _engine: engine,
        relay,
        metrics,
        a,
        b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_rtp_byte_identical_both_ways() {
    let (phone_a, phone_b) = (phone().await, phone().await);
    let ports = PortAllocator::new(41000, 41099);
    let c = call(
        ports,
        phone_a.local_addr().unwrap(),
        phone_b.local_addr().unwrap(),
    )
    .await;
    for port in [c.a.port(), c.b.port()] {
        assert!(port % 2 == 0 && (41000..41099).contains(&port), "{port}");
    }

    for seq in 0..5u16 {
        let packet = rtp(seq, &[seq as u8; 160]);
        phone_a.send_to(&packet, c.a).await.unwrap();
        let (got, from) = recv(&phone_b).await;
        assert_eq!(got, packet);
        assert_eq!(from, c.b, "B hears denwa's B-side address, never A");

        let reply = rtp(1000 + seq, b"from B");
        phone_b.send_to(&reply, c.b).await.unwrap();
        let (got, from) = recv(&phone_a).await;
        assert_eq!(got, reply);
        assert_eq!(from, c.a);
    }
    // The worker flushes the appliance-wide counters at the end of its turn.
    c.relay.settled().await;
    let stats = c.relay.stats();
    assert_eq!((stats.a.packets_in, stats.b.packets_out), (5, 5));
    assert_eq!((stats.b.packets_in, stats.a.packets_out), (5, 5));
    assert_eq!(stats.a.bytes_in, 5 * (12 + 160));
    assert_eq!(stats.b.bytes_out, stats.a.bytes_in);
    assert!(stats.a.last_seen.is_some() && stats.b.last_seen.is_some());
    assert!(stats.a.latched && stats.b.latched);
    assert_eq!(stats.a.remote, Some(phone_a.local_addr().unwrap()));
    // The appliance-wide counters are current while the call runs.
    assert_eq!((c.metrics.a_to_b.get(), c.metrics.b_to_a.get()), (5, 5));
    assert_eq!(c.metrics.relayed.get(), 10);
    assert_eq!(c.metrics.dropped.get(), 0);
}

#[tokio::test]
async fn latches_to_the_real_source_not_the_sdp_address() {
    let (phone_a, phone_b) = (phone().await, phone().await);
    // A's SDP names an address behind its NAT that nobody listens on.
    let announced: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let ports = PortAllocator::new(41100, 41199);
    let c = call(ports, announced, phone_b.local_addr().unwrap()).await;
    let before = c.relay.stats();
    assert_eq!(
        (before.a.remote, before.a.latched),
        (Some(announced), false)
    );

    let hello = rtp(1, b"hello");
    phone_a.send_to(&hello, c.a).await.unwrap();
    assert_eq!(recv(&phone_b).await.0, hello);

    let answer = rtp(2, b"answer");
    phone_b.send_to(&answer, c.b).await.unwrap();
    assert_eq!(
        recv(&phone_a).await.0,
        answer,
        "B's media follows A's real source"
    );
    let stats = c.relay.stats();
    assert_eq!(stats.a.remote, Some(phone_a.local_addr().unwrap()));
    assert!(stats.a.latched);
}

#[tokio::test]
async fn injected_and_non_rtp_packets_are_dropped_and_counted() {
    let (phone_a, phone_b, intruder) = (phone().await, phone().await, phone().await);
    let ports = PortAllocator::new(41200, 41299);
    let c = call(
        ports,
        phone_a.local_addr().unwrap(),
        phone_b.local_addr().unwrap(),
    )
    .await;

    phone_a.send_to(&rtp(1, b"first"), c.a).await.unwrap();
    assert_eq!(recv(&phone_b).await.0, rtp(1, b"first"));

    // Valid RTP from a third party after A latched, then junk from A itself.
    intruder.send_to(&rtp(7, b"evil"), c.a).await.unwrap();
    phone_a.send_to(b"not rtp at all", c.a).await.unwrap();
    phone_a.send_to(&[0x80, 0x00], c.a).await.unwrap();
    phone_a.send_to(&rtp(2, b"second"), c.a).await.unwrap();
    // Datagrams are handled in arrival order: when "second" is out, the
    // others have been judged.
    assert_eq!(recv(&phone_b).await.0, rtp(2, b"second"));

    c.relay.settled().await;
    let stats = c.relay.stats();
    assert_eq!(stats.a.injected_dropped, 1);
    assert_eq!(stats.a.non_rtp_dropped, 2);
    assert_eq!(stats.a.packets_in, 2);
    assert_eq!(stats.b.packets_out, 2);
    assert_eq!(stats.a.remote, Some(phone_a.local_addr().unwrap()));
    assert_eq!(c.metrics.dropped.get(), 3, "injected and junk count alike");
}

#[tokio::test]
async fn set_remote_rearms_latching() {
    let (old_a, new_a, phone_b) = (phone().await, phone().await, phone().await);
    let ports = PortAllocator::new(41300, 41399);
    let c = call(
        ports,
        old_a.local_addr().unwrap(),
        phone_b.local_addr().unwrap(),
    )
    .await;
    old_a.send_to(&rtp(1, b"old"), c.a).await.unwrap();
    assert_eq!(recv(&phone_b).await.0, rtp(1, b"old"));

    // A re-INVITE moves A's media elsewhere.
    c.relay.set_remote(Leg::A, new_a.local_addr().unwrap());
    phone_b.send_to(&rtp(2, b"to new"), c.b).await.unwrap();
    assert_eq!(
        recv(&new_a).await.0,
        rtp(2, b"to new"),
        "sent to the new SDP address"
    );

    new_a.send_to(&rtp(3, b"new"), c.a).await.unwrap();
    assert_eq!(recv(&phone_b).await.0, rtp(3, b"new"));
    old_a.send_to(&rtp(4, b"stale"), c.a).await.unwrap();
    new_a.send_to(&rtp(5, b"new again"), c.a).await.unwrap();
    assert_eq!(recv(&phone_b).await.0, rtp(5, b"new again"));
    assert_eq!(
        c.relay.stats().a.injected_dropped,
        1,
        "the old address is now foreign"
    );
}

#[tokio::test]
async fn relays_rtcp_on_the_odd_ports() {
    let (rtcp_a, rtcp_b) = (phone().await, phone().await);
    // Each SDP names an RTP port one below the phone's RTCP socket, so the
    // implied RTCP address (RTP + 1) is that socket.
    let rtp_below = |s: &UdpSocket| {
        let rtcp = s.local_addr().unwrap();
        SocketAddr::new(rtcp.ip(), rtcp.port() - 1)
    };
    let ports = PortAllocator::new(41400, 41499);
    let c = call(ports, rtp_below(&rtcp_a), rtp_below(&rtcp_b)).await;
    let (relay_rtcp_a, relay_rtcp_b) = (
        SocketAddr::new(LOOPBACK, c.a.port() + 1),
        SocketAddr::new(LOOPBACK, c.b.port() + 1),
    );

    rtcp_b.send_to(&rtcp(2), relay_rtcp_b).await.unwrap();
    let (got, from) = recv(&rtcp_a).await;
    assert_eq!((got, from), (rtcp(2), relay_rtcp_a));
    rtcp_a.send_to(&rtcp(1), relay_rtcp_a).await.unwrap();
    let (got, from) = recv(&rtcp_b).await;
    assert_eq!((got, from), (rtcp(1), relay_rtcp_b));
    rtcp_b.send_to(&rtcp(3), relay_rtcp_b).await.unwrap();
    assert_eq!(recv(&rtcp_a).await.0, rtcp(3));
    // RTP on the RTCP port is not RTCP.
    rtcp_a.send_to(&rtp(1, b"x"), relay_rtcp_a).await.unwrap();
    rtcp_a.send_to(&rtcp(4), relay_rtcp_a).await.unwrap();
    assert_eq!(recv(&rtcp_b).await.0, rtcp(4));

    let stats = c.relay.stats();
    assert_eq!((stats.a.rtcp_packets_in, stats.b.rtcp_packets_out), (2, 2));
    assert_eq!((stats.b.rtcp_packets_in, stats.a.rtcp_packets_out), (2, 2));
    assert_eq!(stats.a.non_rtp_dropped, 1);
    assert_eq!(stats.a.packets_in, 0, "RTCP is not counted as RTP");
}

#[tokio::test]
async fn a_phones_reports_about_what_it_hears_reach_the_call_report() {
    let (phone_a, phone_b) = (phone().await, phone().await);
    let ports = PortAllocator::new(41950, 41999);
    let c = call(
        ports,
        phone_a.local_addr().unwrap(),
        phone_b.local_addr().unwrap(),
    )
    .await;
    // B talks to A (SSRC 0x12345678), then A reports on that stream:
    // 64/256 lost, jitter 160 timestamp units (20 ms).
    phone_b.send_to(&rtp(1, b"hello"), c.b).await.unwrap();
    recv(&phone_a).await;
    let block = ReportBlock {
        ssrc: 0x1234_5678,
        fraction_lost: 64,
        cumulative_lost: 3,
        extended_highest_seq: 1,
        jitter: 160,
        last_sr: 0,
        delay_since_last_sr: 0,
    };
    let report = build_report(0x0a0a_0a0a, None, &[block], "phone-a");
    let relay_rtcp_a = SocketAddr::new(LOOPBACK, c.a.port() + 1);
    phone_a.send_to(&report, relay_rtcp_a).await.unwrap();
    // A's RTCP goes to B's implied RTCP address; wait until it was taken.
    let deadline = std::time::Instant::now() + WAIT;
    while c.relay.stats().a.rtcp_packets_in == 0 && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    let report = c.relay.stop().await;
    let a = &report.quality[0];
    assert_eq!(a.remote_reported_loss_percent, Some(25.0));
    assert_eq!(a.remote_reported_jitter_ms, Some(20.0));
    assert_eq!(
        report.quality[1].packets_received, 0,
        "B's first packet is on probation"
    );
}

#[tokio::test]
async fn tap_receives_copies_and_forwarding_can_be_paused() {
    let (phone_a, phone_b) = (phone().await, phone().await);
    let ports = PortAllocator::new(41500, 41599);
    let c = call(
        ports,
        phone_a.local_addr().unwrap(),
        phone_b.local_addr().unwrap(),
    )
    .await;
    let mut tap = c.relay.tap(Direction::AToB);

    let first = rtp(1, b"tapped");
    phone_a.send_to(&first, c.a).await.unwrap();
    assert_eq!(recv(&phone_b).await.0, first);
    let copy = timeout(WAIT, tap.recv()).await.unwrap().unwrap();
    assert_eq!(&copy[..], &first[..]);

    // B → A is another direction: not copied.
    phone_b.send_to(&rtp(9, b"other way"), c.b).await.unwrap();
    recv(&phone_a).await;

    // Commands are asynchronous: wait until the worker has taken each one
    // before sending the packet it must apply to.
    c.relay.set_forwarding(Direction::AToB, false);
    c.relay.settled().await;
    let muted = rtp(2, b"muted");
    phone_a.send_to(&muted, c.a).await.unwrap();
    assert_eq!(
        &timeout(WAIT, tap.recv()).await.unwrap().unwrap()[..],
        &muted[..]
    );
    c.relay.set_forwarding(Direction::AToB, true);
    c.relay.settled().await;
    let resumed = rtp(3, b"resumed");
    phone_a.send_to(&resumed, c.a).await.unwrap();
    assert_eq!(
        recv(&phone_b).await.0,
        resumed,
        "the muted packet never reached B"
    );
    assert_eq!(
        &timeout(WAIT, tap.recv()).await.unwrap().unwrap()[..],
        &resumed[..]
    );
    assert!(tap.try_recv().is_err(), "only A → B packets were copied");

    let stats = c.relay.stats();
    assert_eq!(stats.a.unforwarded, 1);
    assert_eq!(stats.tap_dropped(Direction::AToB), 0);
}

#[tokio::test]
async fn full_tap_drops_and_counts_without_stalling_the_call() {
    let (phone_a, phone_b) = (phone().await, phone().await);
    let ports = PortAllocator::new(41600, 41699);
    let c = call(
        ports,
        phone_a.local_addr().unwrap(),
        phone_b.local_addr().unwrap(),
    )
    .await;
    let tap = c.relay.tap(Direction::AToB);
    let total = denwa::media::TAP_CAPACITY + 10;
    for seq in 0..total {
        let packet = rtp(seq as u16, b"x");
        phone_a.send_to(&packet, c.a).await.unwrap();
        assert_eq!(recv(&phone_b).await.0, packet);
    }
    assert_eq!(c.relay.stats().tap_dropped(Direction::AToB), 10);
    assert_eq!(tap.len(), denwa::media::TAP_CAPACITY);
}

#[tokio::test]
async fn stop_frees_the_ports() {
    let ports = PortAllocator::new(41700, 41749);
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let c = call(ports, peer, peer).await;
    assert_eq!(c.ports.in_use(), 2);
    let (a, b) = (c.a, c.b);
    let report = c.relay.stop().await;
    assert_eq!(report.stats.a.packets_in, 0);
    assert!(report.recording.is_none());
    assert_eq!(c.ports.in_use(), 0);
    for port in [a.port(), a.port() + 1, b.port(), b.port() + 1] {
        std::net::UdpSocket::bind((LOOPBACK, port)).expect("port is free again");
    }
}

#[tokio::test]
async fn dropping_the_handle_frees_the_ports() {
    let ports = PortAllocator::new(41750, 41799);
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let c = call(ports, peer, peer).await;
    assert_eq!(c.ports.in_use(), 2);
    drop(c.relay);
    // The aborted task lets go of its endpoints the next time the runtime
    // gets to it; yield until then, within the time limit.
    timeout(WAIT, async {
        while c.ports.in_use() != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("ports still held after the handle was dropped");
}

#[tokio::test]
async fn bind_skips_ports_held_by_someone_else() {
    let ports = PortAllocator::new(41800, 41809);
    let _rtp_taken = std::net::UdpSocket::bind((LOOPBACK, 41800)).unwrap();
    let _rtcp_taken = std::net::UdpSocket::bind((LOOPBACK, 41803)).unwrap();
    let endpoint = MediaEndpoint::bind(LOOPBACK, &ports).await.unwrap();
    assert_eq!(endpoint.local_rtp_addr().port(), 41804);
    assert_eq!(endpoint.local_rtcp_addr().port(), 41805);
    assert_eq!(ports.in_use(), 1, "the failed pairs went back to the pool");
    assert!(ports.is_allocated(41804));
    drop(endpoint);
    assert_eq!(ports.in_use(), 0);
}

#[tokio::test]
async fn bind_gives_up_when_the_range_is_exhausted() {
    let ports = PortAllocator::new(41900, 41903);
    let _one = MediaEndpoint::bind(LOOPBACK, &ports).await.unwrap();
    let _two = MediaEndpoint::bind(LOOPBACK, &ports).await.unwrap();
    let err = MediaEndpoint::bind(LOOPBACK, &ports).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(ports.in_use(), 2);
}
