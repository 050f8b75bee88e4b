//! The RTP relay: the data plane that moves a call's media between its two
//! legs, with a control handle for the call layer.
//!
//! Owns: the [`MediaEngine`], a small pool of worker threads (one per core
//! by default), each running one `epoll` loop (mio) over the sockets of
//! every call it was given. A call's two [`MediaEndpoint`]s (RTP and RTCP
//! socket per leg) live on one worker, which forwards every accepted
//! datagram byte-for-byte to the other leg (A's RTP socket → B's RTP socket
//! → B's peer, and back; RTCP the same on the odd ports), latches each leg's
//! remote address (symmetric RTP) and keeps per-leg counters
//! ([`RelayStats`]). The worker loop is in `worker.rs`.
//!
//! Must not: decode, transcode, buffer or reorder media on the plain relay
//! path; block on a slow consumer; parse SDP or take call decisions.
//! Datagrams come from anyone on the network: a packet that does not parse
//! is dropped and counted, never a reason to panic or log per packet.
//!
//! # Why a worker loop and not a task per call
//!
//! A tokio task per call paid for a task wake-up, a five-way `select!` and
//! an extra failed `recv` per packet. The B3 benchmark (bench/) decided for
//! a plain readiness loop per core: no scheduler between the socket and
//! the forwarding code, counters that only the worker writes, and
//! appliance-wide counters added every 50 ms.
//!
//! # Latching (symmetric RTP, RFC 4961)
//!
//! Until a leg has sent anything, media for it goes to the address its SDP
//! named. The first valid RTP packet received on the leg's RTP socket latches
//! the leg to the packet's real source (NAT may rewrite it) and RTCP follows
//! to source port + 1 until RTCP latches on its own. After that, datagrams
//! from any other source are dropped as injected. A new SDP from the peer
//! (re-INVITE) goes through [`RelayHandle::set_remote`], which re-arms the
//! latch.
//!
//! # Control plane and extension points
//!
//! The worker owns all mutable state; a [`RelayHandle`] talks to it over a
//! command channel plus a wake-up, so the hot path takes no lock. Commands
//! are applied before any datagram that arrives after they were sent. Per
//! direction the worker keeps:
//!
//! - a list of **taps**, usually empty (one branch per packet). A tap gets a
//!   copy of every accepted RTP packet of its direction through a bounded
//!   channel with `try_send`: a slow consumer loses packets (counted in
//!   [`RelayStats`]), it never slows the call. Dropping the receiver
//!   detaches the tap.
//! - a **forwarding** switch ([`RelayHandle::set_forwarding`]): a player or
//!   a conference turns the direction towards its listener off and sends
//!   its own media to that leg.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::ports::{PortAllocator, PortLease};
use crate::metrics::Counter;

mod batch;
mod bridge;
mod digits;
mod rtcp_out;
mod signal;
mod worker;

pub use bridge::{MemberHandle, MuteSwitch, SupervisorHandle, TapMode, TapPoint};
pub use digits::{Digit, INBAND_GAP_MS, MAX_DIGIT_MS, MAX_QUEUED, MIN_DIGIT_MS};
pub use signal::LegCodec;
use worker::{CallId, Command, WorkerLink};

use crate::media::dtmf::DigitEvent;
use crate::media::player::Player;
use crate::media::recording::{RecordingHandle, RecordingSummary};
use crate::media::rtcp::LineQuality;

/// Packets a tap may have queued before copies are dropped (about 5 s of
/// 20 ms packets).
pub const TAP_CAPACITY: usize = 256;

/// One side of the call: A is the caller's side, B the callee's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    A,
    B,
}

impl Leg {
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Leg::A => 0,
            Leg::B => 1,
        }
    }
}

/// Which way media flows: `AToB` is what A's peer sends, relayed to B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    AToB,
    BToA,
}

impl Direction {
    /// The direction of media received from `leg`'s peer.
    pub fn from_source(leg: Leg) -> Direction {
        match leg {
            Leg::A => Direction::AToB,
            Leg::B => Direction::BToA,
        }
    }

    pub fn source(self) -> Leg {
        match self {
            Direction::AToB => Leg::A,
            Direction::BToA => Leg::B,
        }
    }

    pub fn destination(self) -> Leg {
        self.source().other()
    }

    fn index(self) -> usize {
        self.source().index()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Rtp,
    Rtcp,
}

/// One leg's bound RTP (even port) and RTCP (RTP + 1) sockets on the media
/// address, non-blocking. The ports go back to the allocator when the
/// endpoint is dropped.
#[derive(Debug)]
pub struct MediaEndpoint {
    rtp: mio::net::UdpSocket,
    rtcp: mio::net::UdpSocket,
    rtp_addr: SocketAddr,
    rtcp_addr: SocketAddr,
    /// Declared last: the sockets close before the pair is handed out again.
    _lease: PortLease,
}

impl MediaEndpoint {
    /// Binds a pair from `ports` on `ip`, moving on to the next pair when a
    /// port is held by someone else (another program in the range), until
    /// every pair of the range has been tried once.
    pub async fn bind(ip: IpAddr, ports: &PortAllocator) -> io::Result<MediaEndpoint> {
        let attempts = ports.capacity().max(1);
        let mut last_error = None;
        for _ in 0..attempts {
            let lease = PortLease::acquire(ports).ok_or_else(exhausted)?;
            match Self::bind_pair(ip, lease) {
                Ok(endpoint) => return Ok(endpoint),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(exhausted))
    }

    fn bind_pair(ip: IpAddr, lease: PortLease) -> io::Result<MediaEndpoint> {
        let rtp = mio::net::UdpSocket::bind(SocketAddr::new(ip, lease.rtp_port()))?;
        let rtcp = mio::net::UdpSocket::bind(SocketAddr::new(ip, lease.rtcp_port()))?;
        Ok(MediaEndpoint {
            rtp_addr: rtp.local_addr()?,
            rtcp_addr: rtcp.local_addr()?,
            rtp,
            rtcp,
            _lease: lease,
        })
    }

    /// Where the peer must send RTP: what goes into the SDP for this leg.
    pub fn local_rtp_addr(&self) -> SocketAddr {
        self.rtp_addr
    }

    pub fn local_rtcp_addr(&self) -> SocketAddr {
        self.rtcp_addr
    }

    fn local_addr(&self, stream: Stream) -> SocketAddr {
        match stream {
            Stream::Rtp => self.rtp_addr,
            Stream::Rtcp => self.rtcp_addr,
        }
    }

    fn socket(&self, stream: Stream) -> &mio::net::UdpSocket {
        match stream {
            Stream::Rtp => &self.rtp,
            Stream::Rtcp => &self.rtcp,
        }
    }

    fn socket_mut(&mut self, stream: Stream) -> &mut mio::net::UdpSocket {
        match stream {
            Stream::Rtp => &mut self.rtp,
            Stream::Rtcp => &mut self.rtcp,
        }
    }
}

fn exhausted() -> io::Error {
    io::Error::new(io::ErrorKind::AddrInUse, "RTP port range exhausted")
}

/// Counters of one leg, as seen from denwa: "in" is what the leg's peer
/// sent and denwa accepted, "out" what denwa sent to the leg's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rtcp_packets_in: u64,
    pub rtcp_packets_out: u64,
    /// Datagrams that were neither valid RTP (RTP port) nor RTCP (RTCP port).
    pub non_rtp_dropped: u64,
    /// Datagrams from a source other than the latched one.
    pub injected_dropped: u64,
    /// Accepted datagrams that could not be forwarded because the other leg
    /// has no remote address yet, or forwarding is switched off.
    pub unforwarded: u64,
    /// Sends to this leg's peer that failed (socket buffer full, unreachable).
    pub send_errors: u64,
    /// When the last accepted RTP packet arrived.
    pub last_seen: Option<Instant>,
    /// Where this leg's RTP goes now (latched or from SDP).
    pub remote: Option<SocketAddr>,
    /// Whether `remote` is latched to a real source.
    pub latched: bool,
}

/// A snapshot of a relay's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayStats {
    pub a: LegStats,
    pub b: LegStats,
    /// Copies a tap of A → B media could not take (its queue was full).
    pub tap_dropped_a_to_b: u64,
    pub tap_dropped_b_to_a: u64,
}

impl RelayStats {
    pub fn leg(&self, leg: Leg) -> &LegStats {
        match leg {
            Leg::A => &self.a,
            Leg::B => &self.b,
        }
    }

    pub fn tap_dropped(&self, direction: Direction) -> u64 {
        match direction {
            Direction::AToB => self.tap_dropped_a_to_b,
            Direction::BToA => self.tap_dropped_b_to_a,
        }
    }
}

#[derive(Debug, Default)]
struct LegCounters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    rtcp_packets_in: AtomicU64,
    rtcp_packets_out: AtomicU64,
    non_rtp_dropped: AtomicU64,
    injected_dropped: AtomicU64,
    unforwarded: AtomicU64,
    send_errors: AtomicU64,
    /// Milliseconds since the relay started, plus one; 0 means never.
    last_seen_ms: AtomicU64,
}

impl LegCounters {
    /// Sends `packet` to `to`, counting it as sent *before* it leaves: a
    /// peer that has received a packet always finds it in the counters.
    /// A failed send is taken back and counted as a send error.
    fn send_counted(
        &self,
        socket: &mio::net::UdpSocket,
        packet: &[u8],
        to: SocketAddr,
        stream: Stream,
    ) -> bool {
        let (packets, bytes) = match stream {
            Stream::Rtp => (&self.packets_out, Some(&self.bytes_out)),
            Stream::Rtcp => (&self.rtcp_packets_out, None),
        };
        bump(packets);
        if let Some(bytes) = bytes {
            add(bytes, packet.len());
        }
        if socket.send_to(packet, to).is_err() {
            take_back(packets, 1);
            if let Some(bytes) = bytes {
                take_back(bytes, packet.len());
            }
            bump(&self.send_errors);
            return false;
        }
        true
    }
}

// The relay's counters have one writer, the worker thread that carries the
// call; other threads only read them. So a count is a plain load and store
// (no locked read-modify-write per packet): a reader may see it a packet
// late, never torn.

fn bump(counter: &AtomicU64) {
    add(counter, 1);
}

fn add(counter: &AtomicU64, n: usize) {
    let n = u64::try_from(n).unwrap_or(u64::MAX);
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

fn take_back(counter: &AtomicU64, n: usize) {
    let n = u64::try_from(n).unwrap_or(0);
    counter.store(
        counter.load(Ordering::Relaxed).saturating_sub(n),
        Ordering::Relaxed,
    );
}

/// What the task and the handle share: counters, and the remotes as the
/// task last published them (written on latch events only).
#[derive(Debug)]
struct Shared {
    started: Instant,
    legs: [LegCounters; 2],
    tap_dropped: [AtomicU64; 2],
    remotes: Mutex<[Latch; 2]>,
}

impl Shared {
    fn new(remotes: [Option<SocketAddr>; 2]) -> Shared {
        Shared {
            started: Instant::now(),
            legs: Default::default(),
            tap_dropped: Default::default(),
            remotes: Mutex::new(remotes.map(Latch::expect)),
        }
    }

    /// Where `leg`'s RTP goes now, for [`RelayHandle::stats`]; written on
    /// latch events only.
    fn publish_remote(&self, leg: Leg, latch: Latch) {
        let mut remotes = self.remotes.lock().unwrap_or_else(|e| e.into_inner());
        remotes[leg.index()] = latch;
    }

    /// `leg`'s peer sent RTP `since_start_ms` after the relay started
    /// (the worker's clock of the loop turn: no clock read per packet).
    fn touch(&self, leg: Leg, since_start_ms: u64) {
        self.legs[leg.index()]
            .last_seen_ms
            .store(since_start_ms.saturating_add(1), Ordering::Relaxed);
    }

    fn snapshot(&self) -> RelayStats {
        let remotes = *self.remotes.lock().unwrap_or_else(|e| e.into_inner());
        let leg = |i: usize| {
            let c = &self.legs[i];
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let seen = get(&c.last_seen_ms);
            LegStats {
                packets_in: get(&c.packets_in),
                bytes_in: get(&c.bytes_in),
                packets_out: get(&c.packets_out),
                bytes_out: get(&c.bytes_out),
                rtcp_packets_in: get(&c.rtcp_packets_in),
                rtcp_packets_out: get(&c.rtcp_packets_out),
                non_rtp_dropped: get(&c.non_rtp_dropped),
                injected_dropped: get(&c.injected_dropped),
                unforwarded: get(&c.unforwarded),
                send_errors: get(&c.send_errors),
                last_seen: (seen > 0)
                    .then(|| self.started + Duration::from_millis(seen.saturating_sub(1))),
                remote: remotes[i].remote,
                latched: remotes[i].latched,
            }
        };
        RelayStats {
            a: leg(0),
            b: leg(1),
            tap_dropped_a_to_b: self.tap_dropped[0].load(Ordering::Relaxed),
            tap_dropped_b_to_a: self.tap_dropped[1].load(Ordering::Relaxed),
        }
    }
}

/// Appliance-wide counters a relay keeps current while it runs, so
/// `/metrics` shows media as it flows rather than when calls end. Clones of
/// the same [`Counter`]s are shared by every relay.
#[derive(Debug, Clone, Default)]
pub struct RelayMetrics {
    /// RTP packets forwarded, both directions.
    pub relayed: Counter,
    /// RTP packets sent towards leg B (from the caller), and towards leg A.
    pub a_to_b: Counter,
    pub b_to_a: Counter,
    /// Datagrams dropped: not RTP/RTCP, or from a source other than the
    /// latched one.
    pub dropped: Counter,
}

/// Where one stream of a leg goes, and whether that was learnt from traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Latch {
    remote: Option<SocketAddr>,
    latched: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// First packet: the source is now the remote.
    Latched,
    Accepted,
    Injected,
}

impl Latch {
    fn expect(remote: Option<SocketAddr>) -> Latch {
        Latch {
            remote,
            latched: false,
        }
    }

    fn admit(&mut self, source: SocketAddr) -> Admit {
        if !self.latched {
            *self = Latch {
                remote: Some(source),
                latched: true,
            };
            Admit::Latched
        } else if self.remote == Some(source) {
            Admit::Accepted
        } else {
            Admit::Injected
        }
    }
}

/// The RTCP address implied by an RTP address (RFC 3550 §11).
fn rtcp_companion(rtp: SocketAddr) -> Option<SocketAddr> {
    Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?))
}

/// Version 2, at least a header, packet type in the RTCP range (RFC 5761 §4).
fn looks_like_rtcp(packet: &[u8]) -> bool {
    match packet {
        [first, packet_type, _, _, _, _, _, _, ..] => {
            first >> 6 == 2 && (192..=223).contains(packet_type)
        }
        _ => false,
    }
}

/// Gives each tap a copy of `packet` without waiting; allocates only when
/// the tap has room, forgets taps whose receiver is gone.
fn copy_to_taps(taps: &mut Vec<mpsc::Sender<Bytes>>, dropped: &AtomicU64, packet: &[u8]) {
    if taps.is_empty() {
        return;
    }
    taps.retain(|tap| match tap.try_reserve() {
        Ok(permit) => {
            permit.send(Bytes::copy_from_slice(packet));
            true
        }
        Err(mpsc::error::TrySendError::Full(())) => {
            bump(dropped);
            true
        }
        Err(mpsc::error::TrySendError::Closed(())) => false,
    });
}

/// The pool of media worker threads. Clones share the pool; the workers
/// stop when the last clone is dropped (after the calls they carry).
#[derive(Debug, Clone)]
pub struct MediaEngine {
    inner: Arc<EngineInner>,
}

#[derive(Debug)]
struct EngineInner {
    workers: Vec<WorkerLink>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next: AtomicUsize,
}

impl MediaEngine {
    /// Starts `workers` threads (at least one); 0 means one per core.
    pub fn start(workers: usize) -> io::Result<MediaEngine> {
        let count = match workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut links = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let (link, thread) = worker::spawn(index)?;
            links.push(link);
            threads.push(thread);
        }
        Ok(MediaEngine {
            inner: Arc::new(EngineInner {
                workers: links,
                threads: Mutex::new(threads),
                next: AtomicUsize::new(0),
            }),
        })
    }

    /// How many worker threads carry media.
    pub fn workers(&self) -> usize {
        self.inner.workers.len()
    }

    /// Hands a call's two legs to a worker (round robin) and returns the
    /// call layer's handle. `a_remote` and `b_remote` are the RTP addresses
    /// from each peer's SDP, if known.
    pub fn start_relay(
        &self,
        a: MediaEndpoint,
        b: MediaEndpoint,
        a_remote: Option<SocketAddr>,
        b_remote: Option<SocketAddr>,
        metrics: RelayMetrics,
    ) -> RelayHandle {
        let local = [a.local_rtp_addr(), b.local_rtp_addr()];
        let shared = Arc::new(Shared::new([a_remote, b_remote]));
        let pick = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.workers.len();
        let link = self.inner.workers[pick].clone();
        let id = link.new_call_id();
        link.send(Command::Add {
            id,
            legs: Box::new([a, b]),
            remotes: [a_remote, b_remote],
            shared: Arc::clone(&shared),
            metrics,
        });
        RelayHandle {
            link,
            id,
            shared,
            local,
            stopped: false,
        }
    }
}

impl MediaEngine {
    /// Puts a phone into conference room `room` (created on its first
    /// member, gone with its last). Every member of a room lives on the
    /// same worker, chosen by the room's name. The others hear `join_tone`.
    pub fn join_room(
        &self,
        room: &str,
        endpoint: MediaEndpoint,
        remote: Option<SocketAddr>,
        codec: LegCodec,
        join_tone: Vec<crate::media::mixer::Frame>,
    ) -> MemberHandle {
        let local = endpoint.local_rtp_addr();
        let pick = room_worker(room, self.inner.workers.len());
        let link = self.inner.workers[pick].clone();
        let call = link.new_call_id();
        let member = bridge::MemberId {
            slot: call.slot(),
            generation: call.generation(),
        };
        let shared = Arc::new(Shared::new([remote, None]));
        link.send(Command::JoinRoom {
            room: room.to_owned(),
            member,
            endpoint: Box::new(endpoint),
            remote,
            codec,
            shared: Arc::clone(&shared),
            join_tone,
        });
        MemberHandle {
            link,
            id: member,
            shared,
            local,
            left: false,
        }
    }
}

/// The worker of a room: the same for every member, spread by name.
fn room_worker(room: &str, workers: usize) -> usize {
    let hash = room.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    usize::try_from(hash % workers.max(1) as u64).unwrap_or(0)
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        for link in &self.workers {
            link.send(Command::Shutdown);
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// A key that is not one of the sixteen DTMF keys (`0`–`9`, `*`, `#`,
/// `A`–`D`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a DTMF key")]
pub struct UnknownKey(pub char);

/// What the media of a call tells its call actor.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A key pressed on `leg`'s phone (RFC 4733 or in-band), once per press.
    Digit { leg: Leg, digit: DigitEvent },
    /// What was playing to `leg` has ended.
    PlaybackFinished { leg: Leg },
}

/// Everything known about a relay when it stops.
#[derive(Debug, Clone)]
pub struct RelayReport {
    pub stats: RelayStats,
    /// Per leg (A, B): what denwa received from that leg's phone, and what
    /// the phone reported about denwa's stream.
    pub quality: [LineQuality; 2],
    /// The call's recording, closed, if it was recorded.
    pub recording: Option<RecordingSummary>,
}

/// The call layer's handle on a running relay. Dropping it stops the relay.
#[derive(Debug)]
pub struct RelayHandle {
    link: WorkerLink,
    id: CallId,
    shared: Arc<Shared>,
    local: [SocketAddr; 2],
    stopped: bool,
}

impl RelayHandle {
    /// denwa's RTP address for `leg`: what goes into the SDP sent to that
    /// leg's peer.
    pub fn local_rtp_addr(&self, leg: Leg) -> SocketAddr {
        self.local[leg.index()]
    }

    /// The peer of `leg` announced a new RTP address (re-INVITE): send there
    /// and latch again on the next packet.
    pub fn set_remote(&self, leg: Leg, rtp: SocketAddr) {
        self.link.send(Command::SetRemote(self.id, leg, rtp));
    }

    /// A copy of every accepted RTP packet flowing in `direction`, from now
    /// on, through a queue of [`TAP_CAPACITY`] packets. Several taps may be
    /// attached; dropping the receiver detaches one.
    pub fn tap(&self, direction: Direction) -> mpsc::Receiver<Bytes> {
        let (sender, receiver) = mpsc::channel(TAP_CAPACITY);
        self.link.send(Command::Tap(self.id, direction, sender));
        receiver
    }

    /// Stops (or resumes) relaying media in `direction`; taps still see it.
    pub fn set_forwarding(&self, direction: Direction, enabled: bool) {
        self.link
            .send(Command::Forward(self.id, direction, enabled));
    }

    /// Where a supervisor can attach to this call while it runs.
    pub fn tap_point(&self) -> TapPoint {
        TapPoint {
            link: self.link.clone(),
            id: self.id,
        }
    }

    /// The counters now.
    pub fn stats(&self) -> RelayStats {
        self.shared.snapshot()
    }

    /// The codec and telephone-event payload type `leg` negotiated: needed
    /// to decode (recording, in-band DTMF), to transcode when the legs
    /// differ, and to play to the leg.
    pub fn set_codec(&self, leg: Leg, codec: LegCodec) {
        self.link.send(Command::SetCodec(self.id, leg, codec));
    }

    /// The call's media events from now on (replaces an earlier receiver).
    pub fn events(&self) -> mpsc::UnboundedReceiver<MediaEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.link.send(Command::Subscribe(self.id, tx));
        rx
    }

    /// Plays to `leg` instead of what the other leg sends, until the
    /// player ends ([`MediaEvent::PlaybackFinished`]) or
    /// [`Self::stop_playing`]. The leg's phone sees one continuous RTP
    /// stream throughout.
    pub fn play(&self, leg: Leg, player: Player) {
        self.link
            .send(Command::Play(self.id, leg, Box::new(player)));
    }

    /// Back to hearing the other leg.
    pub fn stop_playing(&self, leg: Leg) {
        self.link.send(Command::StopPlay(self.id, leg));
    }

    /// Listens for DTMF tones in `leg`'s audio (when it has no RFC 4733).
    pub fn detect_inband(&self, leg: Leg, on: bool) {
        self.link.send(Command::Inband(self.id, leg, on));
    }

    /// Sends `key` to `leg`, held for `duration`, the way the leg
    /// negotiated: an RFC 4733 telephone-event when its codec has a
    /// telephone-event payload type ([`Self::set_codec`]), DTMF tones in
    /// its G.711 audio otherwise. Nothing else reaches the leg while the
    /// key is sent; relaying resumes after it. Keys sent in a row queue up.
    pub fn send_digit(&self, leg: Leg, key: char, duration: Duration) -> Result<(), UnknownKey> {
        self.send_digits(leg, &key.to_string(), duration)
    }

    /// [`Self::send_digit`] for every key of `keys`, in order; nothing is
    /// sent when one of them is not a DTMF key.
    pub fn send_digits(&self, leg: Leg, keys: &str, duration: Duration) -> Result<(), UnknownKey> {
        let ms = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
        let digits = keys
            .chars()
            .map(|key| Digit::new(key, ms).ok_or(UnknownKey(key)))
            .collect::<Result<Vec<Digit>, UnknownKey>>()?;
        if !digits.is_empty() {
            self.link.send(Command::SendDigits(self.id, leg, digits));
        }
        Ok(())
    }

    /// Records both legs into `recording` from now until the relay stops.
    pub fn record(&self, recording: RecordingHandle) {
        self.link
            .send(Command::Record(self.id, Box::new(recording)));
    }

    /// Stops the recording and closes its file; the relay goes on. A new
    /// [`Self::record`] starts another file.
    pub fn stop_recording(&self) {
        self.link.send(Command::StopRecording(self.id));
    }

    /// Pauses (silence in the file) or resumes the recording.
    pub fn pause_recording(&self, pause: bool) {
        self.link.send(Command::PauseRecording(self.id, pause));
    }

    /// Returns once the worker has finished the work it was doing when
    /// called and has applied every command sent before: counters and
    /// appliance-wide metrics then include every packet already relayed,
    /// and the next packet to arrive is handled under those commands.
    pub async fn settled(&self) {
        let (done, settled) = oneshot::channel();
        self.link.send(Command::Settled(done));
        // An error means the worker is gone: nothing is in flight.
        let _ = settled.await;
    }

    /// Takes the call off its worker, waits until its sockets are closed,
    /// its ports are back in the allocator and its recording is closed,
    /// and returns the final report.
    pub async fn stop(mut self) -> RelayReport {
        self.stopped = true;
        let (done, closed) = oneshot::channel();
        self.link.send(Command::Remove(self.id, Some(done)));
        match closed.await {
            Ok(report) => report,
            // The worker is gone, and the sockets with it.
            Err(_) => RelayReport {
                stats: self.shared.snapshot(),
                quality: Default::default(),
                recording: None,
            },
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if !self.stopped {
            self.link.send(Command::Remove(self.id, None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn latch_takes_first_source_then_rejects_others() {
        let mut latch = Latch::expect(Some(addr("192.0.2.1:4000")));
        assert_eq!(latch.admit(addr("198.51.100.7:30000")), Admit::Latched);
        assert_eq!(latch.remote, Some(addr("198.51.100.7:30000")));
        assert_eq!(latch.admit(addr("198.51.100.7:30000")), Admit::Accepted);
        assert_eq!(latch.admit(addr("198.51.100.7:30002")), Admit::Injected);
        assert_eq!(latch.admit(addr("192.0.2.1:4000")), Admit::Injected);
        assert_eq!(latch.remote, Some(addr("198.51.100.7:30000")));
    }

    #[test]
    fn rtcp_companion_is_next_port() {
        assert_eq!(
            rtcp_companion(addr("10.0.0.1:4000")),
            Some(addr("10.0.0.1:4001"))
        );
        assert_eq!(rtcp_companion(addr("[::1]:65535")), None);
    }

    #[test]
    fn rtcp_recognised_by_version_and_type() {
        let receiver_report = [0x80, 201, 0, 1, 0, 0, 0, 42];
        assert!(looks_like_rtcp(&receiver_report));
        assert!(!looks_like_rtcp(&receiver_report[..7]), "short");
        assert!(
            !looks_like_rtcp(&[0x40, 201, 0, 1, 0, 0, 0, 42]),
            "version 1"
        );
        assert!(!looks_like_rtcp(&[0x80, 0, 0, 1, 0, 0, 0, 42]), "RTP PCMU");
        assert!(!looks_like_rtcp(b""));
    }

    #[test]
    fn taps_drop_when_full_and_forget_closed_receivers() {
        let (full_tx, mut full_rx) = mpsc::channel(1);
        let (gone_tx, gone_rx) = mpsc::channel(4);
        drop(gone_rx);
        let mut taps = vec![full_tx, gone_tx];
        let dropped = AtomicU64::new(0);
        copy_to_taps(&mut taps, &dropped, b"one");
        copy_to_taps(&mut taps, &dropped, b"two");
        assert_eq!(taps.len(), 1, "closed tap forgotten");
        assert_eq!(
            dropped.load(Ordering::Relaxed),
            1,
            "second copy did not fit"
        );
        assert_eq!(full_rx.try_recv().unwrap(), Bytes::from_static(b"one"));
    }

    #[test]
    fn direction_legs() {
        assert_eq!(Direction::from_source(Leg::A), Direction::AToB);
        assert_eq!(Direction::AToB.destination(), Leg::B);
        assert_eq!(Direction::BToA.source(), Leg::B);
        assert_eq!(Leg::B.other(), Leg::A);
    }
}
