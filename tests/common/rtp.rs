//! RTP and RTCP seen from the test's side: a pair of sockets standing in
//! for a phone's media ports, keeping everything denwa sends to them, and
//! readers for what they kept (telephone-events, G.711 audio, keys in that
//! audio). The sockets are read by a thread that stops when the sink is
//! dropped, or after [`MAX_LIFE`] in any case.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use denwa::media::dtmf::{InbandDetector, TelephoneEvent};
use denwa::media::g711::Codec;

/// The longest a sink reads its sockets.
pub const MAX_LIFE: Duration = Duration::from_secs(180);

/// One RTP packet as received.
#[derive(Debug, Clone)]
pub struct Packet {
    pub pt: u8,
    pub marker: bool,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
    pub from: SocketAddr,
    pub at: Instant,
}

impl Packet {
    fn parse(data: &[u8], from: SocketAddr, at: Instant) -> Option<Packet> {
        let rtp = rtp_rs::RtpReader::new(data).ok()?;
        Some(Packet {
            pt: rtp.payload_type(),
            marker: rtp.mark(),
            seq: u16::from(rtp.sequence_number()),
            ts: rtp.timestamp(),
            ssrc: rtp.ssrc(),
            payload: rtp.payload().to_vec(),
            from,
            at,
        })
    }
}

/// One RTCP datagram as received.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub data: Vec<u8>,
    pub from: SocketAddr,
    pub at: Instant,
}

#[derive(Default)]
struct Kept {
    rtp: Vec<Packet>,
    rtcp: Vec<Datagram>,
}

/// An RTP port (even) and its RTCP port (the next one) on 127.0.0.1.
pub struct RtpSink {
    pub port: u16,
    rtp: UdpSocket,
    kept: Arc<Mutex<Kept>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RtpSink {
    pub fn start() -> RtpSink {
        let (rtp, rtcp) = bind_pair();
        let port = rtp.local_addr().expect("bound").port();
        let kept = Arc::new(Mutex::new(Kept::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (rtp, kept, stop) = (rtp.try_clone().expect("clone"), kept.clone(), stop.clone());
            std::thread::spawn(move || read_loop(rtp, rtcp, kept, stop))
        };
        RtpSink {
            port,
            rtp,
            kept,
            stop,
            thread: Some(thread),
        }
    }

    /// Every RTP packet received so far, in arrival order.
    pub fn packets(&self) -> Vec<Packet> {
        self.kept.lock().expect("lock").rtp.clone()
    }

    /// Every RTCP datagram received so far, in arrival order.
    pub fn rtcp(&self) -> Vec<Datagram> {
        self.kept.lock().expect("lock").rtcp.clone()
    }

    /// Wait (bounded) until `cond` holds for what was received.
    pub fn wait(&self, limit: Duration, cond: impl Fn(&[Packet]) -> bool) -> bool {
        super::wait_until(limit, || cond(&self.packets()))
    }

    /// Sends `data` from the RTP socket (to make denwa latch, or to give it
    /// a stream to report on).
    pub fn send_rtp(&self, data: &[u8], to: SocketAddr) {
        self.rtp.send_to(data, to).expect("send RTP");
    }
}

impl Drop for RtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..200 {
        let Ok(first) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let port = first.local_addr().expect("bound").port();
        if port % 2 != 0 {
            continue;
        }
        if let Ok(second) = UdpSocket::bind(("127.0.0.1", port + 1)) {
            return (first, second);
        }
    }
    panic!("no free even/odd port pair on 127.0.0.1");
}

fn read_loop(rtp: UdpSocket, rtcp: UdpSocket, kept: Arc<Mutex<Kept>>, stop: Arc<AtomicBool>) {
    let started = Instant::now();
    for s in [&rtp, &rtcp] {
        s.set_read_timeout(Some(Duration::from_millis(10)))
            .expect("timeout");
    }
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFE {
        if let Ok((n, from)) = rtp.recv_from(&mut buf) {
            if let Some(p) = Packet::parse(&buf[..n], from, Instant::now()) {
                kept.lock().expect("lock").rtp.push(p);
            }
        }
        if let Ok((n, from)) = rtcp.recv_from(&mut buf) {
            let d = Datagram {
                data: buf[..n].to_vec(),
                from,
                at: Instant::now(),
            };
            kept.lock().expect("lock").rtcp.push(d);
        }
    }
}

/// One key press read from telephone-event packets (RFC 4733).
#[derive(Debug, Clone, PartialEq)]
pub struct Press {
    pub key: char,
    /// The largest duration field, in ms.
    pub duration_ms: u32,
    /// Packets of the press, and how many had the E bit.
    pub packets: usize,
    pub ends: usize,
    /// The first packet of the press had the marker bit.
    pub marked: bool,
}

/// The presses in the packets of payload type `pt`, one per RTP
/// timestamp, in order.
pub fn presses(packets: &[Packet], pt: u8) -> Vec<Press> {
    let mut out: Vec<(u32, Press)> = Vec::new();
    for p in packets.iter().filter(|p| p.pt == pt) {
        let Some(ev) = TelephoneEvent::parse(&p.payload) else {
            continue;
        };
        let key = b"0123456789*#ABCD"
            .get(usize::from(ev.event))
            .map_or('?', |&b| b as char);
        let ms = u32::from(ev.duration) / 8;
        match out.iter_mut().find(|(ts, _)| *ts == p.ts) {
            Some((_, press)) => {
                press.duration_ms = press.duration_ms.max(ms);
                press.packets += 1;
                press.ends += usize::from(ev.end);
            }
            None => out.push((
                p.ts,
                Press {
                    key,
                    duration_ms: ms,
                    packets: 1,
                    ends: usize::from(ev.end),
                    marked: p.marker,
                },
            )),
        }
    }
    out.into_iter().map(|(_, p)| p).collect()
}

/// The audio of the packets carrying `codec`, in arrival order.
pub fn audio(packets: &[Packet], codec: Codec) -> Vec<i16> {
    packets
        .iter()
        .filter(|p| p.pt == codec.payload_type())
        .flat_map(|p| codec.decode(&p.payload))
        .collect()
}

/// The keys denwa's own in-band detector hears in `samples`.
pub fn inband_keys(samples: &[i16]) -> String {
    let mut detector = InbandDetector::new();
    let mut keys = String::new();
    for (i, frame) in samples.chunks(160).enumerate() {
        let events = detector.push(frame, 20 * i as u64);
        keys.extend(events.iter().map(|e| e.digit));
    }
    keys.extend(detector.flush().map(|e| e.digit));
    keys
}
