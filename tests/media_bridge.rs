//! Conference rooms and supervisor taps on the media workers, end to end
//! on 127.0.0.1: UDP sockets play the phones, each sending a tone of its
//! own as G.711 µ-law RTP every 20 ms, and each checks which tones it gets
//! back. Every test takes its own slice of the 42000-42999 port range and
//! every wait is bounded.

use std::f64::consts::PI;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use denwa::media::g711::{self, Codec};
use denwa::media::goertzel::Goertzel;
use denwa::media::{
    Leg, LegCodec, MediaEndpoint, MediaEngine, PortAllocator, RelayHandle, RelayMetrics, TapMode,
};
use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};
use tokio::net::UdpSocket;
use tokio::time::{interval, timeout, Instant};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PCMU: LegCodec = LegCodec {
    codec: Some(Codec::Pcmu),
    telephone_event: None,
};

/// A phone: its socket, the tone it speaks, and its RTP numbering.
struct Phone {
    socket: UdpSocket,
    hz: f64,
    seq: u16,
    ssrc: u32,
    heard: Vec<i16>,
    ssrcs: Vec<u32>,
}

impl Phone {
    async fn new(hz: f64, ssrc: u32) -> Phone {
        Phone {
            socket: UdpSocket::bind((LOOPBACK, 0)).await.unwrap(),
            hz,
            seq: 0,
            ssrc,
            heard: Vec::new(),
            ssrcs: Vec::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// One 20 ms frame of this phone's tone (silence when `hz` is 0).
    async fn speak(&mut self, to: SocketAddr) {
        let start = u64::from(self.seq) * 160;
        let payload: Vec<u8> = (0..160u64)
            .map(|i| {
                let t = (start + i) as f64 / 8000.0;
                let v = (8000.0 * (2.0 * PI * self.hz * t).sin()) as i16;
                g711::ulaw_encode(v)
            })
            .collect();
        let packet = RtpPacketBuilder::new()
            .payload_type(0)
            .ssrc(self.ssrc)
            .sequence(Seq::from(self.seq))
            .timestamp(u32::from(self.seq) * 160)
            .payload(&payload)
            .build()
            .unwrap();
        self.seq = self.seq.wrapping_add(1);
        self.socket.send_to(&packet, to).await.unwrap();
    }

    /// Takes in whatever arrived, without waiting.
    fn listen(&mut self) {
        let mut buf = [0u8; 2048];
        while let Ok((len, _)) = self.socket.try_recv_from(&mut buf) {
            if let Ok(rtp) = RtpReader::new(&buf[..len]) {
                self.ssrcs.push(rtp.ssrc());
                self.heard
                    .extend(rtp.payload().iter().map(|&c| g711::ulaw_decode(c)));
            }
        }
    }

    /// How strongly `hz` is in the last second heard, relative to the
    /// signal's power (about 1 for a pure tone of that frequency).
    fn share(&self, hz: f64) -> f64 {
        let tail = &self.heard[self.heard.len().saturating_sub(8000)..];
        if tail.is_empty() {
            return 0.0;
        }
        let power: f64 = tail.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
        if power == 0.0 {
            return 0.0;
        }
        let g = Goertzel::new(hz, 8000.0);
        let p = g.power(tail.iter().map(|&s| f64::from(s)));
        2.0 * p / (power * tail.len() as f64)
    }
}

/// Runs `seconds` of speaking: every phone sends one frame every 20 ms to
/// its denwa address and listens.
async fn talk(phones: &mut [(&mut Phone, SocketAddr)], seconds: u64) {
    let mut tick = interval(Duration::from_millis(20));
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        tick.tick().await;
        for (phone, to) in phones.iter_mut() {
            if phone.hz > 0.0 {
                phone.speak(*to).await;
            }
            phone.listen();
        }
    }
}

/// Two seconds of a caller, an agent and a supervisor talking.
async fn talk_three(phones: [&mut Phone; 3], to: [SocketAddr; 3]) {
    let mut pairs: Vec<(&mut Phone, SocketAddr)> = phones.into_iter().zip(to).collect();
    timeout(Duration::from_secs(10), talk(&mut pairs, 2))
        .await
        .unwrap();
}

async fn endpoint(ports: &PortAllocator) -> MediaEndpoint {
    MediaEndpoint::bind(LOOPBACK, ports).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_each_hear_the_other_two_and_not_themselves() {
    let engine = MediaEngine::start(2).unwrap();
    let ports = PortAllocator::new(42000, 42099);
    let tones = [500.0, 1000.0, 1500.0];
    let mut phones = Vec::new();
    for (i, hz) in tones.iter().enumerate() {
        phones.push(Phone::new(*hz, 100 + i as u32).await);
    }
    let mut members = Vec::new();
    for phone in &phones {
        let ep = endpoint(&ports).await;
        members.push(engine.join_room("9201", ep, Some(phone.addr()), PCMU, Vec::new()));
    }
    let addrs: Vec<SocketAddr> = members.iter().map(|m| m.local_rtp_addr()).collect();
    {
        let mut pairs: Vec<(&mut Phone, SocketAddr)> = phones.iter_mut().zip(addrs).collect();
        timeout(Duration::from_secs(10), talk(&mut pairs, 2))
            .await
            .unwrap();
    }
    for (i, phone) in phones.iter().enumerate() {
        assert!(
            phone.heard.len() > 8000,
            "phone {i} heard {} samples",
            phone.heard.len()
        );
        for (j, hz) in tones.iter().enumerate() {
            let share = phone.share(*hz);
            if i == j {
                assert!(share < 0.02, "phone {i} hears itself: {share}");
            } else {
                assert!(share > 0.2, "phone {i} misses phone {j}: {share}");
            }
        }
        // One stream from denwa, whatever it mixes.
        let first = phone.ssrcs[0];
        assert!(phone.ssrcs.iter().all(|&s| s == first));
    }
    for m in members {
        let q = m.leave(Vec::new()).await;
        assert!(q.packets_received > 50, "{q:?}");
    }
    assert_eq!(ports.in_use(), 0, "every member's ports are back");
}

/// A call between A and B through a relay, with both legs on PCMU.
async fn call(engine: &MediaEngine, ports: &PortAllocator, a: &Phone, b: &Phone) -> RelayHandle {
    let (ea, eb) = (endpoint(ports).await, endpoint(ports).await);
    let relay = engine.start_relay(
        ea,
        eb,
        Some(a.addr()),
        Some(b.addr()),
        RelayMetrics::default(),
    );
    relay.set_codec(Leg::A, PCMU);
    relay.set_codec(Leg::B, PCMU);
    relay
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_hears_both_and_whisper_reaches_only_the_agent() {
    let engine = MediaEngine::start(2).unwrap();
    let ports = PortAllocator::new(42100, 42199);
    let mut caller = Phone::new(500.0, 1).await;
    let mut agent = Phone::new(1000.0, 2).await;
    let mut supervisor = Phone::new(1500.0, 3).await;
    let relay = call(&engine, &ports, &caller, &agent).await;
    let (to_a, to_b) = (relay.local_rtp_addr(Leg::A), relay.local_rtp_addr(Leg::B));

    let sup = relay.tap_point().attach(
        endpoint(&ports).await,
        Some(supervisor.addr()),
        PCMU,
        TapMode::Monitor,
    );
    let to_s = sup.local_rtp_addr();
    talk_three(
        [&mut caller, &mut agent, &mut supervisor],
        [to_a, to_b, to_s],
    )
    .await;
    assert!(supervisor.share(500.0) > 0.2, "monitor hears the caller");
    assert!(supervisor.share(1000.0) > 0.2, "monitor hears the agent");
    assert!(
        caller.share(1500.0) < 0.02,
        "caller does not hear the monitor"
    );
    assert!(
        agent.share(1500.0) < 0.02,
        "agent does not hear the monitor"
    );
    assert!(caller.share(1000.0) > 0.5, "caller still hears the agent");

    sup.set_mode(TapMode::Whisper(Leg::B));
    talk_three(
        [&mut caller, &mut agent, &mut supervisor],
        [to_a, to_b, to_s],
    )
    .await;
    assert!(agent.share(1500.0) > 0.2, "the agent hears the whisper");
    assert!(agent.share(500.0) > 0.2, "and still the caller");
    assert!(caller.share(1500.0) < 0.02, "the caller never hears it");
    assert!(
        caller.share(1000.0) > 0.5,
        "the caller still hears the agent"
    );

    sup.set_mode(TapMode::Barge);
    talk_three(
        [&mut caller, &mut agent, &mut supervisor],
        [to_a, to_b, to_s],
    )
    .await;
    assert!(
        caller.share(1500.0) > 0.2,
        "barge: the caller hears the supervisor"
    );
    assert!(
        agent.share(1500.0) > 0.2,
        "barge: the agent hears the supervisor"
    );

    // The agent's stream from denwa stayed one stream across the switches.
    let ssrc = *agent.ssrcs.last().unwrap();
    let switched = agent.ssrcs.iter().rev().take_while(|&&s| s == ssrc).count();
    assert!(
        switched > 50,
        "one SSRC since denwa began sending its own stream"
    );

    sup.detach();
    let report = relay.stop().await;
    assert!(report.stats.a.packets_in > 100);
    assert_eq!(ports.in_use(), 0);
}

#[tokio::test]
async fn a_supervisor_learns_when_the_call_ends() {
    let engine = MediaEngine::start(1).unwrap();
    let ports = PortAllocator::new(42200, 42299);
    let (caller, agent) = (Phone::new(500.0, 1).await, Phone::new(1000.0, 2).await);
    let relay = call(&engine, &ports, &caller, &agent).await;
    let point = relay.tap_point();
    let mut sup = point.attach(endpoint(&ports).await, None, PCMU, TapMode::Monitor);
    relay.stop().await;
    timeout(Duration::from_secs(5), sup.call_ended())
        .await
        .expect("the supervisor is told the call is over");
    // Attaching to a call that is gone leaves nothing behind.
    let mut late = point.attach(endpoint(&ports).await, None, PCMU, TapMode::Monitor);
    timeout(Duration::from_secs(5), late.call_ended())
        .await
        .expect("a late supervisor is told at once");
    drop((sup, late));
    let free = timeout(Duration::from_secs(5), async {
        while ports.in_use() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(free.await.is_ok(), "ports back: {}", ports.in_use());
}
