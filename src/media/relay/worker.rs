//! One media worker: a thread running a mio readiness loop over the sockets
//! of every call it carries.
//!
//! Owns: the calls' endpoints, latches, taps and forwarding switches; the
//! receive buffer; the worker's share of the appliance-wide counters, added
//! to [`RelayMetrics`] once per loop turn.
//!
//! Must not: block (every socket is non-blocking and every channel is
//! `try_send`), allocate per packet on the plain relay path, or trust a
//! datagram: anything that is not RTP/RTCP or comes from an unlatched
//! source is dropped and counted.
//!
//! Tokens: a call lives in slot `s` of the worker's table; its four sockets
//! are tokens `4s + 2·leg + stream`. A slot is reused only after its call
//! was removed, and commands carry a generation so a late command for a
//! removed call is ignored.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use mio::{Events, Interest, Poll, Token, Waker};
use rtp_rs::RtpReader;
use tokio::sync::{mpsc, oneshot};

use super::{
    add, bump, copy_to_taps, looks_like_rtcp, rtcp_companion, Admit, Direction, Latch, Leg,
    MediaEndpoint, RelayMetrics, Shared, Stream,
};

/// The token of the worker's wake-up; call sockets use the others.
const WAKE: Token = Token(usize::MAX);
/// Receive buffer size; a datagram that fills it may have been truncated and
/// is dropped.
const MAX_DATAGRAM: usize = 8192;
/// Datagrams read from one socket before the worker looks at the others.
const BURST: usize = 64;
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 1024;

/// A call's identity on its worker: table slot and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CallId {
    slot: usize,
    generation: u64,
}

pub(super) enum Command {
    Add {
        id: CallId,
        legs: Box<[MediaEndpoint; 2]>,
        remotes: [Option<SocketAddr>; 2],
        shared: Arc<Shared>,
        metrics: RelayMetrics,
    },
    SetRemote(CallId, Leg, SocketAddr),
    Tap(CallId, Direction, mpsc::Sender<Bytes>),
    Forward(CallId, Direction, bool),
    /// Close the call's sockets, then tell the waiter (if any).
    Remove(CallId, Option<oneshot::Sender<()>>),
    Shutdown,
}

/// The sending side of a worker: commands plus the wake-up that makes the
/// worker read them.
#[derive(Debug, Clone)]
pub(super) struct WorkerLink {
    commands: std_mpsc::Sender<Command>,
    waker: Arc<Waker>,
    slots: Arc<SlotAllocator>,
}

impl WorkerLink {
    pub(super) fn send(&self, command: Command) {
        // A worker that has ended has nothing left to control.
        if self.commands.send(command).is_ok() {
            let _ = self.waker.wake();
        }
    }

    pub(super) fn new_call_id(&self) -> CallId {
        self.slots.allocate()
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Add { id, .. } => write!(f, "Add({id:?})"),
            Command::SetRemote(id, leg, addr) => write!(f, "SetRemote({id:?}, {leg:?}, {addr})"),
            Command::Tap(id, direction, _) => write!(f, "Tap({id:?}, {direction:?})"),
            Command::Forward(id, direction, on) => {
                write!(f, "Forward({id:?}, {direction:?}, {on})")
            }
            Command::Remove(id, _) => write!(f, "Remove({id:?})"),
            Command::Shutdown => write!(f, "Shutdown"),
        }
    }
}

/// Hands out table slots from the caller's thread, so a handle knows its
/// call's id before the worker has seen the call. Slots come back when the
/// worker removes the call.
#[derive(Debug, Default)]
pub(super) struct SlotAllocator {
    state: std::sync::Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    free: Vec<usize>,
    next: usize,
    generation: u64,
}

impl SlotAllocator {
    fn allocate(&self) -> CallId {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.generation += 1;
        let slot = match s.free.pop() {
            Some(slot) => slot,
            None => {
                s.next += 1;
                s.next - 1
            }
        };
        CallId {
            slot,
            generation: s.generation,
        }
    }

    fn release(&self, slot: usize) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .free
            .push(slot);
    }
}

/// Starts worker `index`.
pub(super) fn spawn(index: usize) -> io::Result<(WorkerLink, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let (commands, receiver) = std_mpsc::channel();
    let slots = Arc::new(SlotAllocator::default());
    let worker = Worker {
        poll,
        commands: receiver,
        calls: Vec::new(),
        slots: Arc::clone(&slots),
        buf: vec![0; MAX_DATAGRAM].into_boxed_slice(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("denwa-media-{index}"))
        .spawn(move || worker.run())?;
    Ok((
        WorkerLink {
            commands,
            waker,
            slots,
        },
        thread,
    ))
}

struct LegRuntime {
    endpoint: MediaEndpoint,
    rtp: Latch,
    rtcp: Latch,
}

impl LegRuntime {
    fn new(endpoint: MediaEndpoint, remote: Option<SocketAddr>) -> LegRuntime {
        LegRuntime {
            endpoint,
            rtp: Latch::expect(remote),
            rtcp: Latch::expect(remote.and_then(rtcp_companion)),
        }
    }

    fn latch_mut(&mut self, stream: Stream) -> &mut Latch {
        match stream {
            Stream::Rtp => &mut self.rtp,
            Stream::Rtcp => &mut self.rtcp,
        }
    }

    fn remote(&self, stream: Stream) -> Option<SocketAddr> {
        match stream {
            Stream::Rtp => self.rtp.remote,
            Stream::Rtcp => self.rtcp.remote,
        }
    }
}

/// One call on the worker.
struct CallMedia {
    generation: u64,
    legs: [LegRuntime; 2],
    taps: [Vec<mpsc::Sender<Bytes>>; 2],
    forwarding: [bool; 2],
    shared: Arc<Shared>,
    metrics: RelayMetrics,
    /// Counted here, added to `metrics` at the end of the loop turn.
    pending: Pending,
}

#[derive(Default)]
struct Pending {
    forwarded: [u64; 2],
    dropped: u64,
}

impl CallMedia {
    fn flush_metrics(&mut self) {
        let p = std::mem::take(&mut self.pending);
        let [a_to_b, b_to_a] = p.forwarded;
        if a_to_b + b_to_a > 0 {
            self.metrics.relayed.add(a_to_b + b_to_a);
            self.metrics.a_to_b.add(a_to_b);
            self.metrics.b_to_a.add(b_to_a);
        }
        if p.dropped > 0 {
            self.metrics.dropped.add(p.dropped);
        }
    }
}

struct Worker {
    poll: Poll,
    commands: std_mpsc::Receiver<Command>,
    calls: Vec<Option<CallMedia>>,
    slots: Arc<SlotAllocator>,
    /// The one receive buffer, reused for every datagram.
    buf: Box<[u8]>,
}

fn token(slot: usize, leg: Leg, stream: Stream) -> Token {
    let stream = match stream {
        Stream::Rtp => 0,
        Stream::Rtcp => 1,
    };
    Token(slot * 4 + leg.index() * 2 + stream)
}

fn from_token(token: Token) -> (usize, Leg, Stream) {
    let n = token.0;
    let leg = if n & 2 == 0 { Leg::A } else { Leg::B };
    let stream = if n & 1 == 0 {
        Stream::Rtp
    } else {
        Stream::Rtcp
    };
    (n / 4, leg, stream)
}

impl Worker {
    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        let mut touched: Vec<usize> = Vec::new();
        loop {
            if let Err(e) = self.poll.poll(&mut events, None::<Duration>) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "media worker cannot poll; its calls lose media");
                return;
            }
            // Commands sent before these datagrams arrived apply to them.
            if !self.apply_commands() {
                return;
            }
            for event in events.iter() {
                if event.token() == WAKE {
                    continue;
                }
                let (slot, leg, stream) = from_token(event.token());
                self.drain(slot, leg, stream);
                touched.push(slot);
            }
            for slot in touched.drain(..) {
                if let Some(Some(call)) = self.calls.get_mut(slot) {
                    call.flush_metrics();
                }
            }
        }
    }

    /// Applies every queued command; false once the engine shuts down.
    fn apply_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Shutdown) => return false,
                Ok(command) => self.apply(command),
                Err(std_mpsc::TryRecvError::Empty) => return true,
                Err(std_mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Add {
                id,
                legs,
                remotes,
                shared,
                metrics,
            } => self.add(id, *legs, remotes, shared, metrics),
            Command::SetRemote(id, leg, remote) => {
                if let Some(call) = self.call_mut(id) {
                    let runtime = &mut call.legs[leg.index()];
                    runtime.rtp = Latch::expect(Some(remote));
                    runtime.rtcp = Latch::expect(rtcp_companion(remote));
                    call.shared.publish_remote(leg, runtime.rtp);
                }
            }
            Command::Tap(id, direction, sender) => {
                if let Some(call) = self.call_mut(id) {
                    call.taps[direction.index()].push(sender);
                }
            }
            Command::Forward(id, direction, on) => {
                if let Some(call) = self.call_mut(id) {
                    call.forwarding[direction.index()] = on;
                }
            }
            Command::Remove(id, done) => {
                self.remove(id);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Command::Shutdown => {}
        }
    }

    fn call_mut(&mut self, id: CallId) -> Option<&mut CallMedia> {
        self.calls
            .get_mut(id.slot)?
            .as_mut()
            .filter(|call| call.generation == id.generation)
    }

    fn add(
        &mut self,
        id: CallId,
        endpoints: [MediaEndpoint; 2],
        remotes: [Option<SocketAddr>; 2],
        shared: Arc<Shared>,
        metrics: RelayMetrics,
    ) {
        let [a, b] = endpoints;
        let mut legs = [
            LegRuntime::new(a, remotes[0]),
            LegRuntime::new(b, remotes[1]),
        ];
        for leg in [Leg::A, Leg::B] {
            for stream in [Stream::Rtp, Stream::Rtcp] {
                let socket = legs[leg.index()].endpoint.socket_mut(stream);
                let registered = self.poll.registry().register(
                    socket,
                    token(id.slot, leg, stream),
                    Interest::READABLE,
                );
                if let Err(e) = registered {
                    tracing::warn!(error = %e, "media socket not registered; that stream is lost");
                }
            }
        }
        if self.calls.len() <= id.slot {
            self.calls.resize_with(id.slot + 1, || None);
        }
        self.calls[id.slot] = Some(CallMedia {
            generation: id.generation,
            legs,
            taps: [Vec::new(), Vec::new()],
            forwarding: [true, true],
            shared,
            metrics,
            pending: Pending::default(),
        });
    }

    fn remove(&mut self, id: CallId) {
        let Some(entry) = self.calls.get_mut(id.slot) else {
            return;
        };
        if entry.as_ref().map(|c| c.generation) != Some(id.generation) {
            // Removed before it was added: the Add is still queued behind
            // nothing, so this cannot happen with one ordered channel; a
            // stale id is simply ignored.
            return;
        }
        if let Some(mut call) = entry.take() {
            call.flush_metrics();
            for leg in call.legs.iter_mut() {
                for stream in [Stream::Rtp, Stream::Rtcp] {
                    let _ = self
                        .poll
                        .registry()
                        .deregister(leg.endpoint.socket_mut(stream));
                }
            }
            // Dropping the call closes its sockets and frees its ports.
        }
        self.slots.release(id.slot);
    }

    /// Reads what `leg`'s `stream` socket has queued, up to [`BURST`]
    /// datagrams (the readiness is edge-triggered: a socket left with data
    /// is read again at once).
    fn drain(&mut self, slot: usize, leg: Leg, stream: Stream) {
        let Some(Some(call)) = self.calls.get_mut(slot) else {
            return;
        };
        for _ in 0..BURST {
            let socket = call.legs[leg.index()].endpoint.socket(stream);
            match socket.recv_from(&mut self.buf) {
                Ok((len, source)) => on_datagram(call, &self.buf, leg, stream, len, source),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors surface on later receives; nothing to read.
                Err(_) => return,
            }
        }
        // Still data after a burst: edge-triggered readiness will not fire
        // again for it, so reschedule through a self-wake-up of this token.
        let socket = call.legs[leg.index()].endpoint.socket_mut(stream);
        let _ =
            self.poll
                .registry()
                .reregister(socket, token(slot, leg, stream), Interest::READABLE);
    }
}

fn on_datagram(
    call: &mut CallMedia,
    buf: &[u8],
    leg: Leg,
    stream: Stream,
    len: usize,
    source: SocketAddr,
) {
    let counters = &call.shared.legs[leg.index()];
    let packet = match buf.get(..len) {
        Some(packet) if len < buf.len() => packet,
        _ => {
            call.pending.dropped += 1;
            return bump(&counters.non_rtp_dropped);
        }
    };
    let valid = match stream {
        Stream::Rtp => RtpReader::new(packet).is_ok(),
        Stream::Rtcp => looks_like_rtcp(packet),
    };
    if !valid {
        call.pending.dropped += 1;
        return bump(&counters.non_rtp_dropped);
    }
    let runtime = &mut call.legs[leg.index()];
    match runtime.latch_mut(stream).admit(source) {
        Admit::Injected => {
            call.pending.dropped += 1;
            return bump(&counters.injected_dropped);
        }
        Admit::Accepted => {}
        Admit::Latched if stream == Stream::Rtp => {
            if !runtime.rtcp.latched {
                runtime.rtcp.remote = rtcp_companion(source);
            }
            tracing::debug!(?leg, %source, "RTP latched");
            call.shared.publish_remote(leg, runtime.rtp);
        }
        Admit::Latched => tracing::debug!(?leg, %source, "RTCP latched"),
    }
    let direction = Direction::from_source(leg);
    match stream {
        Stream::Rtp => {
            bump(&counters.packets_in);
            add(&counters.bytes_in, len);
            call.shared.touch(leg);
            let dropped = &call.shared.tap_dropped[direction.index()];
            copy_to_taps(&mut call.taps[direction.index()], dropped, packet);
        }
        Stream::Rtcp => bump(&counters.rtcp_packets_in),
    }
    let out = &call.legs[direction.destination().index()];
    let destination = out
        .remote(stream)
        .filter(|_| call.forwarding[direction.index()]);
    let Some(destination) = destination else {
        return bump(&counters.unforwarded);
    };
    let out_counters = &call.shared.legs[direction.destination().index()];
    match out.endpoint.socket(stream).send_to(packet, destination) {
        Ok(sent) if stream == Stream::Rtp => {
            call.pending.forwarded[direction.index()] += 1;
            bump(&out_counters.packets_out);
            add(&out_counters.bytes_out, sent);
        }
        Ok(_) => bump(&out_counters.rtcp_packets_out),
        Err(_) => bump(&out_counters.send_errors),
    }
}
