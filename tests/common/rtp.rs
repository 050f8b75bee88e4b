//! RTP and RTCP seen from the test's side: a pair of sockets standing in
//! for a phone's media ports, keeping everything denwa sends to them (and,
//! if asked, answering each RTP packet with one of their own, as a phone
//! sends its stream), and readers for what they kept (telephone-events,
//! G.711 audio, keys in that audio). Each socket is read by its own
//! thread, which stops when the sink is dropped, or after [`MAX_LIFE`] in
//! any case.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

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
    pub wall: SystemTime,
}

/// The SSRC of the stream an echoing sink sends.
pub const ECHO_SSRC: u32 = 0x5eed_0001;

#[derive(Default)]
struct Kept {
    rtp: Vec<Packet>,
    rtcp: Vec<Datagram>,
    /// Sequence numbers of the packets the sink sent, and when.
    sent: Vec<(u16, Instant)>,
}

/// An RTP port (even) and its RTCP port (the next one) on 127.0.0.1.
pub struct RtpSink {
    pub port: u16,
    rtp: UdpSocket,
    kept: Arc<Mutex<Kept>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl RtpSink {
    pub fn start() -> RtpSink {
        RtpSink::start_with(false)
    }

    /// A sink that answers each RTP packet from denwa with one of its own
    /// (SSRC [`ECHO_SSRC`], sequence numbers from 1, 160 timestamp units
    /// apart, µ-law silence), sent back to where the packet came from.
    pub fn echoing() -> RtpSink {
        RtpSink::start_with(true)
    }

    fn start_with(echo: bool) -> RtpSink {
        let (rtp, rtcp) = bind_pair();
        let port = rtp.local_addr().expect("bound").port();
        let kept = Arc::new(Mutex::new(Kept::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let rtp_thread = {
            let (rtp, kept, stop) = (rtp.try_clone().expect("clone"), kept.clone(), stop.clone());
            std::thread::spawn(move || read_rtp(rtp, kept, stop, echo))
        };
        let rtcp_thread = {
            let (kept, stop) = (kept.clone(), stop.clone());
            std::thread::spawn(move || read_rtcp(rtcp, kept, stop))
        };
        RtpSink {
            port,
            rtp,
            kept,
            stop,
            threads: vec![rtp_thread, rtcp_thread],
        }
    }

    /// The sequence numbers of the packets an echoing sink sent, and when.
    pub fn sent(&self) -> Vec<(u16, Instant)> {
        self.kept.lock().expect("lock").sent.clone()
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
        for t in self.threads.drain(..) {
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

fn read_rtp(socket: UdpSocket, kept: Arc<Mutex<Kept>>, stop: Arc<AtomicBool>, echo: bool) {
    let started = Instant::now();
    socket
        .set_read_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let mut seq = 0u16;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFE {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Some(p) = Packet::parse(&buf[..n], from, Instant::now()) else {
            continue;
        };
        kept.lock().expect("lock").rtp.push(p);
        if echo {
            seq = seq.wrapping_add(1);
            let mut own = vec![0x80, 0];
            own.extend_from_slice(&seq.to_be_bytes());
            own.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            own.extend_from_slice(&ECHO_SSRC.to_be_bytes());
            own.extend_from_slice(&[0xff; 160]);
            if socket.send_to(&own, from).is_ok() {
                kept.lock().expect("lock").sent.push((seq, Instant::now()));
            }
        }
    }
}

fn read_rtcp(socket: UdpSocket, kept: Arc<Mutex<Kept>>, stop: Arc<AtomicBool>) {
    let started = Instant::now();
    socket
        .set_read_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFE {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let d = Datagram {
                data: buf[..n].to_vec(),
                from,
                at: Instant::now(),
                wall: SystemTime::now(),
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
