//! One media worker: a thread running a mio readiness loop over the sockets
//! of every call it carries.
//!
//! Owns: the calls' endpoints, latches, taps and forwarding switches; the
//! receive buffer; the worker's share of the appliance-wide counters, added
//! to [`RelayMetrics`] every [`METRICS_INTERVAL_MS`] (and before a
//! `Settled` is answered).
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
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Events, Interest, Poll, Token, Waker};
use rtp_rs::RtpReader;
use tokio::sync::{mpsc, oneshot};

use super::batch::{self, BatchReceiver, Received, BATCH};
use super::bridge::{self, Member, MemberId, Room, Supervisor, TapMode};
use super::digits::{self, Digit, DigitOut};
use super::rtcp_out::RtcpSender;
use super::signal::{self, relayed_from, CallRecording, LegCodec, LegSignal};
use super::{
    add, bump, copy_to_taps, looks_like_rtcp, rtcp_companion, Admit, Direction, Latch, Leg,
    MediaEndpoint, MediaEvent, RelayMetrics, RelayReport, Shared, Stream,
};
use crate::media::g711::Codec;
use crate::media::mixer::{Frame, Role};
use crate::media::player::Player;
use crate::media::recording::RecordingHandle;
use crate::media::rtcp::LineQuality;
use crate::media::rtp_stream::payload_range;

/// The token of the worker's wake-up; call sockets use the others.
const WAKE: Token = Token(usize::MAX);
/// Datagrams read from one socket before the worker looks at the others.
const BURST: usize = 64;
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 1024;
/// One audio frame: players, recordings and DTMF time-outs advance on it.
const FRAME: Duration = Duration::from_millis(20);
/// Frames a late worker catches up on before it skips ahead.
const MAX_CATCH_UP: u32 = 5;
/// A call that needs the clock only for its recording (which advances on
/// its own audio and needs the clock only over silence) and for DTMF
/// time-outs gets every this many frames (100 ms); a worker with only such
/// calls wakes up that much less often.
const TICK_FRAMES: u64 = 5;
/// How often a worker adds its calls' counts to the appliance-wide
/// [`RelayMetrics`]. Those counters are shared by every worker: adding per
/// loop turn made each packet pay for atomic adds on cache lines the
/// other workers write too.
const METRICS_INTERVAL_MS: u64 = 50;

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
    SetCodec(CallId, Leg, LegCodec),
    Subscribe(CallId, mpsc::UnboundedSender<MediaEvent>),
    Play(CallId, Leg, Box<Player>),
    StopPlay(CallId, Leg),
    Inband(CallId, Leg, bool),
    Record(CallId, Box<RecordingHandle>),
    PauseRecording(CallId, bool),
    /// Close the recording file; the call goes on.
    StopRecording(CallId),
    /// Send these keys to the leg (see `digits.rs`).
    SendDigits(CallId, Leg, Vec<Digit>),
    /// Close the call's sockets and its recording, then tell the waiter
    /// (if any) the final report.
    Remove(CallId, Option<oneshot::Sender<RelayReport>>),
    /// A supervisor joins a call (see `bridge.rs`).
    Attach {
        call: CallId,
        endpoint: Box<MediaEndpoint>,
        remote: Option<SocketAddr>,
        codec: LegCodec,
        mode: TapMode,
        gone: oneshot::Sender<()>,
    },
    SupervisorRemote(CallId, SocketAddr),
    SupervisorMode(CallId, TapMode),
    Detach(CallId),
    /// A phone joins conference room `room` (created on first join).
    JoinRoom {
        room: String,
        member: MemberId,
        endpoint: Box<MediaEndpoint>,
        remote: Option<SocketAddr>,
        codec: LegCodec,
        shared: Arc<Shared>,
        join_tone: Vec<Frame>,
    },
    MemberRemote(MemberId, SocketAddr),
    MemberMute(MemberId, bool),
    Leave(MemberId, Vec<Frame>, Option<oneshot::Sender<LineQuality>>),
    /// Answered at the start of a loop turn: every turn before it has
    /// finished, its metrics flushed.
    Settled(oneshot::Sender<()>),
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

impl CallId {
    pub(super) fn slot(&self) -> usize {
        self.slot
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }
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
            Command::SetCodec(id, leg, codec) => write!(f, "SetCodec({id:?}, {leg:?}, {codec:?})"),
            Command::Subscribe(id, _) => write!(f, "Subscribe({id:?})"),
            Command::Play(id, leg, _) => write!(f, "Play({id:?}, {leg:?})"),
            Command::StopPlay(id, leg) => write!(f, "StopPlay({id:?}, {leg:?})"),
            Command::Inband(id, leg, on) => write!(f, "Inband({id:?}, {leg:?}, {on})"),
            Command::Record(id, _) => write!(f, "Record({id:?})"),
            Command::PauseRecording(id, on) => write!(f, "PauseRecording({id:?}, {on})"),
            Command::StopRecording(id) => write!(f, "StopRecording({id:?})"),
            Command::SendDigits(id, leg, keys) => {
                write!(f, "SendDigits({id:?}, {leg:?}, {keys:?})")
            }
            Command::Settled(_) => write!(f, "Settled"),
            Command::Shutdown => write!(f, "Shutdown"),
            Command::Attach { call, mode, .. } => write!(f, "Attach({call:?}, {mode:?})"),
            Command::SupervisorRemote(call, addr) => {
                write!(f, "SupervisorRemote({call:?}, {addr})")
            }
            Command::SupervisorMode(call, mode) => write!(f, "SupervisorMode({call:?}, {mode:?})"),
            Command::Detach(call) => write!(f, "Detach({call:?})"),
            Command::JoinRoom { room, member, .. } => write!(f, "JoinRoom({room}, {member:?})"),
            Command::MemberRemote(m, addr) => write!(f, "MemberRemote({m:?}, {addr})"),
            Command::MemberMute(m, on) => write!(f, "MemberMute({m:?}, {on})"),
            Command::Leave(m, _, _) => write!(f, "Leave({m:?})"),
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
        epoch: Instant::now(),
        next_frame: None,
        frame_index: 0,
        commands: receiver,
        calls: Vec::new(),
        members: Vec::new(),
        rooms: std::collections::HashMap::new(),
        slots: Arc::clone(&slots),
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

pub(super) struct LegRuntime {
    pub endpoint: MediaEndpoint,
    pub rtp: Latch,
    pub rtcp: Latch,
}

impl LegRuntime {
    pub fn new(endpoint: MediaEndpoint, remote: Option<SocketAddr>) -> LegRuntime {
        LegRuntime {
            endpoint,
            rtp: Latch::expect(remote),
            rtcp: Latch::expect(remote.and_then(rtcp_companion)),
        }
    }

    pub fn latch_mut(&mut self, stream: Stream) -> &mut Latch {
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
    /// When the relay started (`shared.started`), in the worker's clock.
    started_ms: u64,
    legs: [LegRuntime; 2],
    taps: [Vec<mpsc::Sender<Bytes>>; 2],
    forwarding: [bool; 2],
    shared: Arc<Shared>,
    metrics: RelayMetrics,
    /// Counted here, added to `metrics` at the end of the loop turn.
    pending: Pending,
    signal: [LegSignal; 2],
    recording: Option<CallRecording>,
    events: Option<mpsc::UnboundedSender<MediaEvent>>,
    supervisor: Option<Supervisor>,
    /// Keys being sent to each leg.
    digits: [DigitOut; 2],
    /// denwa's own RTCP to each leg while it hears denwa's stream.
    rtcp: [RtcpSender; 2],
}

#[derive(Default)]
struct Pending {
    forwarded: [u64; 2],
    dropped: u64,
}

impl CallMedia {
    /// Whether the call needs every frame of the worker's clock (it sends
    /// audio of denwa's own).
    fn needs_frames(&self) -> bool {
        self.supervisor.is_some()
            || self.signal.iter().any(|s| s.player.is_some())
            || self.digits.iter().any(DigitOut::is_busy)
    }

    /// Whether the call needs the clock now and then ([`TICK_FRAMES`]).
    fn needs_ticks(&self) -> bool {
        self.recording.is_some()
            // denwa's own RTCP to a leg that hears its stream (every 5 s).
            || self.signal.iter().any(|s| s.out.is_some())
    }

    /// One frame of a supervised call's mix: to the supervisor, and to the
    /// parties that hear the supervisor.
    fn supervisor_frame(&mut self, clock: Clock) {
        let Some(sup) = self.supervisor.as_mut() else {
            return;
        };
        let (to_supervisor, to_parties) = sup.frame();
        let counters = &self.shared.legs[0];
        bridge::send_mixed(&sup.leg, &mut sup.mix, counters, &to_supervisor, clock.ms);
        for leg in [Leg::A, Leg::B] {
            if let Some(frame) = &to_parties[leg.index()] {
                let i = leg.index();
                if self.signal[i].player.is_none() && !self.digits[i].is_busy() {
                    let counters = &self.shared.legs[i];
                    bridge::send_frame(
                        &self.legs[i],
                        &mut self.signal[i],
                        counters,
                        frame,
                        clock.ms,
                    );
                }
            }
        }
    }

    /// One frame of time passed: players send, lost DTMF ends time out,
    /// the recording advances over silence.
    fn on_frame(&mut self, clock: Clock) {
        for leg in [Leg::A, Leg::B] {
            let i = leg.index();
            if let Some(digit) = self.signal[i].tick(clock.ms) {
                signal::emit(&mut self.events, MediaEvent::Digit { leg, digit });
            }
            match self.digits[i].next_frame(&mut self.signal[i], clock.ms) {
                digits::Frame::Send(packet) => {
                    self.send_own(leg, &packet);
                    continue;
                }
                digits::Frame::Quiet => continue,
                digits::Frame::Idle => {}
            }
            if self.signal[i].player.is_none() {
                continue;
            }
            match self.signal[i].next_player_packet(clock.ms) {
                Some(packet) => self.send_own(leg, packet.as_slice()),
                None => {
                    self.signal[i].player = None;
                    signal::emit(&mut self.events, MediaEvent::PlaybackFinished { leg });
                }
            }
        }
        if let Some(rec) = self.recording.as_mut() {
            let position = rec.position(clock.us);
            rec.handle.tick(position);
        }
        self.supervisor_frame(clock);
        for leg in [Leg::A, Leg::B] {
            let i = leg.index();
            let unix_ms = || u64::try_from(clock.unix_ms()).unwrap_or(0);
            if let Some(report) = self.rtcp[i].poll(&mut self.signal[i], clock.ms, unix_ms) {
                self.send_own_rtcp(leg, &report);
            }
        }
    }

    /// Sends an RTCP compound denwa built to `leg`'s peer.
    fn send_own_rtcp(&self, leg: Leg, packet: &[u8]) {
        let runtime = &self.legs[leg.index()];
        let Some(remote) = runtime.rtcp.remote else {
            return;
        };
        let counters = &self.shared.legs[leg.index()];
        let socket = runtime.endpoint.socket(Stream::Rtcp);
        counters.send_counted(socket, packet, remote, Stream::Rtcp);
    }

    /// Sends a packet denwa generated to `leg`'s peer.
    fn send_own(&mut self, leg: Leg, packet: &[u8]) {
        let runtime = &self.legs[leg.index()];
        let counters = &self.shared.legs[leg.index()];
        let Some(remote) = runtime.rtp.remote else {
            return;
        };
        counters.send_counted(
            runtime.endpoint.socket(Stream::Rtp),
            packet,
            remote,
            Stream::Rtp,
        );
    }

    fn report(&mut self, clock: Clock) -> RelayReport {
        let recording = self.recording.take().map(|rec| {
            let position = rec.position(clock.us);
            rec.handle.stop(position, clock.unix_ms())
        });
        RelayReport {
            stats: self.shared.snapshot(),
            quality: [self.signal[0].line_quality(), self.signal[1].line_quality()],
            recording,
        }
    }

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

/// The worker's time, read once per loop turn.
#[derive(Debug, Clone, Copy)]
struct Clock {
    now: Instant,
    /// Milliseconds since the worker started.
    ms: u64,
    /// Microseconds since the worker started (recording positions).
    us: u64,
}

impl Clock {
    fn at(now: Instant, epoch: Instant) -> Clock {
        let since = now.saturating_duration_since(epoch);
        Clock {
            now,
            ms: u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
            us: u64::try_from(since.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

impl Clock {
    fn unix_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

struct Worker {
    poll: Poll,
    epoch: Instant,
    /// When the next frame is due, while any call needs frames.
    next_frame: Option<Instant>,
    /// Frames since the worker started, counting the ones slept through.
    frame_index: u64,
    commands: std_mpsc::Receiver<Command>,
    calls: Vec<Option<CallMedia>>,
    /// Conference room members by slot, and the rooms by name.
    members: Vec<Option<Member>>,
    rooms: std::collections::HashMap<String, Room>,
    slots: Arc<SlotAllocator>,
}

/// Whose socket a token is: a call's leg, the supervisor attached to the
/// call in that slot, or the room member in that slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    Leg(Leg),
    Supervisor,
    Member,
}

pub(super) fn token(slot: usize, owner: Owner, stream: Stream) -> Token {
    let stream = match stream {
        Stream::Rtp => 0,
        Stream::Rtcp => 1,
    };
    let owner = match owner {
        Owner::Leg(Leg::A) => 0,
        Owner::Leg(Leg::B) => 1,
        Owner::Supervisor => 2,
        Owner::Member => 3,
    };
    Token(slot * 8 + owner * 2 + stream)
}

fn from_token(token: Token) -> (usize, Owner, Stream) {
    let n = token.0;
    let owner = match (n >> 1) & 3 {
        0 => Owner::Leg(Leg::A),
        1 => Owner::Leg(Leg::B),
        2 => Owner::Supervisor,
        _ => Owner::Member,
    };
    let stream = if n & 1 == 0 {
        Stream::Rtp
    } else {
        Stream::Rtcp
    };
    (n / 8, owner, stream)
}

impl Worker {
    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        // The receive buffers, reused for every datagram of this thread.
        let mut batch = BatchReceiver::new();
        let mut metrics_due_ms = 0;
        // Whether calls have counts not yet in the metrics: then the loop
        // wakes up for the flush even when no datagram comes.
        let mut unflushed = false;
        // The clock of the last turn: good enough to time the flush, so
        // that a turn of plain relaying reads the clock only once.
        let mut last = self.clock();
        loop {
            let mut timeout = self
                .next_frame
                .map(|due| due.saturating_duration_since(Instant::now()));
            if unflushed {
                let flush = self.epoch + Duration::from_millis(metrics_due_ms);
                let until_flush = flush.saturating_duration_since(last.now);
                timeout = Some(timeout.map_or(until_flush, |t| t.min(until_flush)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "media worker cannot poll; its calls lose media");
                return;
            }
            let clock = self.clock();
            last = clock;
            // Commands sent before these datagrams arrived apply to them.
            if !self.apply_commands(clock) {
                return;
            }
            for event in events.iter() {
                if event.token() == WAKE {
                    continue;
                }
                unflushed = true;
                let (slot, owner, stream) = from_token(event.token());
                match owner {
                    Owner::Leg(leg) => self.drain(slot, leg, stream, clock, &mut batch),
                    Owner::Supervisor => self.drain_supervisor(slot, stream, clock, &mut batch),
                    Owner::Member => self.drain_member(slot, stream, clock, &mut batch),
                }
            }
            self.frames(clock);
            if clock.ms >= metrics_due_ms {
                self.flush_metrics();
                unflushed = false;
                metrics_due_ms = clock.ms.saturating_add(METRICS_INTERVAL_MS);
            }
        }
    }

    /// Adds every call's counts since the last flush to the appliance-wide
    /// metrics.
    fn flush_metrics(&mut self) {
        for call in self.calls.iter_mut().flatten() {
            call.flush_metrics();
        }
    }

    fn clock(&self) -> Clock {
        Clock::at(Instant::now(), self.epoch)
    }

    /// Runs the frames that are due, for the calls that need them, and
    /// schedules the next one.
    fn frames(&mut self, clock: Clock) {
        let mut due = match self.next_frame {
            Some(due) if due <= clock.now => due,
            Some(_) => return,
            None => {
                if self.busy() {
                    self.next_frame = Some(clock.now + FRAME);
                }
                return;
            }
        };
        let mut ran = 0;
        while due <= clock.now && ran < MAX_CATCH_UP {
            // Each frame at its own time, so a late worker still gives
            // every frame its own timestamp.
            let frame_clock = Clock::at(due, self.epoch);
            let tick = self.frame_index % TICK_FRAMES == 0;
            for call in self.calls.iter_mut().flatten() {
                if call.needs_frames() || (tick && call.needs_ticks()) {
                    call.on_frame(frame_clock);
                }
            }
            self.room_frames(frame_clock);
            self.frame_index += 1;
            due += FRAME;
            ran += 1;
        }
        if due <= clock.now {
            due = clock.now + FRAME;
        }
        self.next_frame = if self.needs_every_frame() {
            Some(due)
        } else if self.calls.iter().flatten().any(CallMedia::needs_ticks) {
            // Sleep through the frames nobody needs, to the next tick.
            let skip = (TICK_FRAMES - self.frame_index % TICK_FRAMES) % TICK_FRAMES;
            self.frame_index += skip;
            Some(due + FRAME * u32::try_from(skip).unwrap_or(0))
        } else {
            None
        };
    }

    /// Whether anything needs the frame clock.
    fn busy(&self) -> bool {
        self.needs_every_frame() || self.calls.iter().flatten().any(CallMedia::needs_ticks)
    }

    /// Whether anything needs every frame.
    fn needs_every_frame(&self) -> bool {
        !self.rooms.is_empty() || self.calls.iter().flatten().any(CallMedia::needs_frames)
    }

    /// Something that needs every frame started: the next frame comes in
    /// one frame even if the clock was asleep until a later tick.
    fn want_frames(&mut self, clock: Clock) {
        let soon = clock.now + FRAME;
        if self.next_frame.is_some_and(|due| due > soon) {
            self.next_frame = Some(soon);
        }
        self.frames(clock);
    }

    fn room_frames(&mut self, clock: Clock) {
        for room in self.rooms.values_mut() {
            for (slot, frame) in room.frame(&mut self.members) {
                if let Some(Some(m)) = self.members.get_mut(slot) {
                    let counters = &m.shared.legs[0];
                    bridge::send_mixed(&m.leg, &mut m.mix, counters, &frame, clock.ms);
                }
            }
        }
    }

    /// Applies every queued command; false once the engine shuts down.
    fn apply_commands(&mut self, clock: Clock) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Shutdown) => return false,
                Ok(command) => self.apply(command, clock),
                Err(std_mpsc::TryRecvError::Empty) => return true,
                Err(std_mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn apply(&mut self, command: Command, clock: Clock) {
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
            Command::Settled(done) => {
                self.flush_metrics();
                let _ = done.send(());
            }
            Command::Remove(id, done) => {
                if let Some(report) = self.remove(id, clock) {
                    if let Some(done) = done {
                        let _ = done.send(report);
                    }
                }
            }
            Command::SetCodec(id, leg, codec) => {
                if let Some(call) = self.call_mut(id) {
                    call.signal[leg.index()].codec = codec;
                }
            }
            Command::Subscribe(id, events) => {
                if let Some(call) = self.call_mut(id) {
                    call.events = Some(events);
                }
            }
            Command::Play(id, leg, player) => {
                if let Some(call) = self.call_mut(id) {
                    call.signal[leg.index()].start_player(*player, clock.ms);
                }
                self.want_frames(clock);
            }
            Command::StopPlay(id, leg) => {
                if let Some(call) = self.call_mut(id) {
                    call.signal[leg.index()].player = None;
                }
            }
            Command::Inband(id, leg, on) => {
                if let Some(call) = self.call_mut(id) {
                    call.signal[leg.index()].set_inband(on);
                }
            }
            Command::Record(id, handle) => {
                if let Some(call) = self.call_mut(id) {
                    call.recording = Some(CallRecording::new(*handle, clock.us));
                }
                self.frames(clock);
            }
            Command::PauseRecording(id, pause) => {
                if let Some(rec) = self.call_mut(id).and_then(|c| c.recording.as_mut()) {
                    let position = rec.position(clock.us);
                    if pause {
                        rec.handle.pause(position);
                    } else {
                        rec.handle.resume(position);
                    }
                }
            }
            Command::StopRecording(id) => {
                if let Some(rec) = self.call_mut(id).and_then(|c| c.recording.take()) {
                    let position = rec.position(clock.us);
                    let summary = rec.handle.stop(position, clock.unix_ms());
                    tracing::debug!(recording = %summary.id, "recording stopped");
                }
            }
            Command::SendDigits(id, leg, keys) => {
                if let Some(call) = self.call_mut(id) {
                    let queue = &mut call.digits[leg.index()];
                    if !keys.into_iter().all(|key| queue.push(key)) {
                        tracing::warn!(?leg, "too many keys queued; the rest are not sent");
                    }
                }
                self.want_frames(clock);
            }
            Command::Shutdown => {}
            Command::Attach {
                call,
                endpoint,
                remote,
                codec,
                mode,
                gone,
            } => {
                self.attach(call, *endpoint, remote, codec, mode, gone);
                self.want_frames(clock);
            }
            Command::SupervisorRemote(call, remote) => {
                if let Some(sup) = self.call_mut(call).and_then(|c| c.supervisor.as_mut()) {
                    sup.leg.rtp = Latch::expect(Some(remote));
                    sup.leg.rtcp = Latch::expect(rtcp_companion(remote));
                }
            }
            Command::SupervisorMode(call, mode) => {
                if let Some(sup) = self.call_mut(call).and_then(|c| c.supervisor.as_mut()) {
                    sup.set_mode(mode);
                }
            }
            Command::Detach(call) => self.detach(call),
            Command::JoinRoom {
                room,
                member,
                endpoint,
                remote,
                codec,
                shared,
                join_tone,
            } => {
                self.join_room(room, member, *endpoint, remote, codec, shared, join_tone);
                self.want_frames(clock);
            }
            Command::MemberRemote(member, remote) => {
                if let Some(m) = self.member_mut(member) {
                    m.leg.rtp = Latch::expect(Some(remote));
                    m.leg.rtcp = Latch::expect(rtcp_companion(remote));
                }
            }
            Command::MemberMute(member, muted) => {
                if let Some(m) = self.member_mut(member) {
                    let room = m.room.clone();
                    let role = if muted { Role::Muted } else { Role::Member };
                    if let Some(r) = self.rooms.get_mut(&room) {
                        let _ = r.mixer.set_role(bridge::member_id(member.slot), role);
                    }
                }
            }
            Command::Leave(member, tone, done) => {
                let quality = self.leave(member, tone);
                if let (Some(done), Some(q)) = (done, quality) {
                    let _ = done.send(q);
                }
            }
        }
    }

    fn member_mut(&mut self, id: MemberId) -> Option<&mut Member> {
        self.members
            .get_mut(id.slot)?
            .as_mut()
            .filter(|m| m.generation == id.generation)
    }

    fn register(&self, endpoint: &mut MediaEndpoint, slot: usize, owner: Owner) {
        for stream in [Stream::Rtp, Stream::Rtcp] {
            let socket = endpoint.socket_mut(stream);
            let registered = self.poll.registry().register(
                socket,
                token(slot, owner, stream),
                Interest::READABLE,
            );
            if let Err(e) = registered {
                tracing::warn!(error = %e, "media socket not registered; that stream is lost");
            }
        }
    }

    fn deregister(&self, endpoint: &mut MediaEndpoint) {
        for stream in [Stream::Rtp, Stream::Rtcp] {
            let _ = self.poll.registry().deregister(endpoint.socket_mut(stream));
        }
    }

    fn attach(
        &mut self,
        call: CallId,
        mut endpoint: MediaEndpoint,
        remote: Option<SocketAddr>,
        codec: LegCodec,
        mode: TapMode,
        gone: oneshot::Sender<()>,
    ) {
        if self.call_mut(call).is_none_or(|c| c.supervisor.is_some()) {
            // The call is over, or has a supervisor already: dropping
            // `gone` tells the handle.
            return;
        }
        self.register(&mut endpoint, call.slot, Owner::Supervisor);
        let leg = LegRuntime::new(endpoint, remote);
        if let Some(c) = self.call_mut(call) {
            tracing::debug!(?mode, "supervisor attached");
            c.supervisor = Some(Supervisor::new(leg, codec, mode, gone));
        }
    }

    fn detach(&mut self, call: CallId) {
        let Some(mut sup) = self.call_mut(call).and_then(|c| c.supervisor.take()) else {
            return;
        };
        self.deregister(&mut sup.leg.endpoint);
        tracing::debug!("supervisor detached");
    }

    #[allow(clippy::too_many_arguments)]
    fn join_room(
        &mut self,
        room: String,
        id: MemberId,
        mut endpoint: MediaEndpoint,
        remote: Option<SocketAddr>,
        codec: LegCodec,
        shared: Arc<Shared>,
        join_tone: Vec<Frame>,
    ) {
        let r = self.rooms.entry(room.clone()).or_insert_with(Room::new);
        if r.mixer
            .join(bridge::member_id(id.slot), Role::Member)
            .is_err()
        {
            tracing::warn!(room = %room, "conference room full");
            self.slots.release(id.slot);
            return;
        }
        r.members.push(id.slot);
        r.announce.extend(join_tone);
        self.register(&mut endpoint, id.slot, Owner::Member);
        if self.members.len() <= id.slot {
            self.members.resize_with(id.slot + 1, || None);
        }
        let local = endpoint.local_rtp_addr().ip();
        self.members[id.slot] = Some(Member {
            generation: id.generation,
            leg: LegRuntime::new(endpoint, remote),
            mix: bridge::MixLeg::new(codec, local),
            shared,
            room,
        });
    }

    fn leave(&mut self, id: MemberId, tone: Vec<Frame>) -> Option<LineQuality> {
        self.member_mut(id)?;
        let mut m = self.members.get_mut(id.slot)?.take()?;
        self.deregister(&mut m.leg.endpoint);
        if let Some(r) = self.rooms.get_mut(&m.room) {
            r.mixer.leave(bridge::member_id(id.slot));
            r.members.retain(|&slot| slot != id.slot);
            r.announce.extend(tone);
            if r.members.is_empty() {
                self.rooms.remove(&m.room);
            }
        }
        self.slots.release(id.slot);
        Some(m.mix.signal.line_quality())
    }

    /// Reads a supervisor's socket (the supervisor of the call in `slot`).
    fn drain_supervisor(
        &mut self,
        slot: usize,
        stream: Stream,
        clock: Clock,
        batch: &mut BatchReceiver,
    ) {
        let Some(Some(call)) = self.calls.get_mut(slot) else {
            return;
        };
        let Some(sup) = call.supervisor.as_mut() else {
            return;
        };
        let token = token(slot, Owner::Supervisor, stream);
        let counters = &call.shared.legs[0];
        let (leg, mix) = (&mut sup.leg, &mut sup.mix);
        drain_mixed(&self.poll, batch, leg, mix, counters, token, stream, clock);
    }

    /// Reads a room member's socket.
    fn drain_member(
        &mut self,
        slot: usize,
        stream: Stream,
        clock: Clock,
        batch: &mut BatchReceiver,
    ) {
        let Some(Some(m)) = self.members.get_mut(slot) else {
            return;
        };
        let token = token(slot, Owner::Member, stream);
        let counters = &m.shared.legs[0];
        drain_mixed(
            &self.poll, batch, &mut m.leg, &mut m.mix, counters, token, stream, clock,
        );
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
        let local = [a.local_rtp_addr(), b.local_rtp_addr()];
        let mut legs = [
            LegRuntime::new(a, remotes[0]),
            LegRuntime::new(b, remotes[1]),
        ];
        for leg in [Leg::A, Leg::B] {
            for stream in [Stream::Rtp, Stream::Rtcp] {
                let socket = legs[leg.index()].endpoint.socket_mut(stream);
                let registered = self.poll.registry().register(
                    socket,
                    token(id.slot, Owner::Leg(leg), stream),
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
        let started = shared.started.saturating_duration_since(self.epoch);
        self.calls[id.slot] = Some(CallMedia {
            generation: id.generation,
            started_ms: u64::try_from(started.as_millis()).unwrap_or(u64::MAX),
            legs,
            taps: [Vec::new(), Vec::new()],
            forwarding: [true, true],
            shared,
            metrics,
            pending: Pending::default(),
            signal: [LegSignal::new(), LegSignal::new()],
            recording: None,
            events: None,
            supervisor: None,
            digits: Default::default(),
            rtcp: [Leg::A, Leg::B].map(|leg| {
                let ip = local[leg.index()].ip();
                RtcpSender::new(format!("denwa@{ip}"), rand::random())
            }),
        });
    }

    fn remove(&mut self, id: CallId, clock: Clock) -> Option<RelayReport> {
        let entry = self.calls.get_mut(id.slot)?;
        if entry.as_ref().map(|c| c.generation) != Some(id.generation) {
            // A stale id (the call is gone already) is ignored.
            return None;
        }
        let mut report = None;
        if let Some(mut call) = entry.take() {
            call.flush_metrics();
            report = Some(call.report(clock));
            if let Some(mut sup) = call.supervisor.take() {
                let _ = self
                    .poll
                    .registry()
                    .deregister(sup.leg.endpoint.socket_mut(Stream::Rtp));
                let _ = self
                    .poll
                    .registry()
                    .deregister(sup.leg.endpoint.socket_mut(Stream::Rtcp));
            }
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
        report
    }

    /// Reads what `leg`'s `stream` socket has queued, up to [`BURST`]
    /// datagrams, [`BATCH`] per system call (the readiness is
    /// edge-triggered: a socket left with data is read again at once; a
    /// batch that came back short has emptied it).
    fn drain(
        &mut self,
        slot: usize,
        leg: Leg,
        stream: Stream,
        clock: Clock,
        batch: &mut BatchReceiver,
    ) {
        let Some(Some(call)) = self.calls.get_mut(slot) else {
            return;
        };
        let mut read = 0;
        while read < BURST {
            let endpoint = &call.legs[leg.index()].endpoint;
            let received = batch.receive(endpoint.socket(stream), endpoint.local_addr(stream));
            match received {
                Ok(count) => {
                    for index in 0..count {
                        if let Some((packet, received)) = batch.datagram(index) {
                            on_datagram(call, packet, received, leg, stream, clock);
                        }
                    }
                    if count < BATCH {
                        return;
                    }
                    read += count;
                }
                Err(e) if batch::is_would_block(&e) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors surface on later receives; nothing to read.
                Err(_) => return,
            }
        }
        // Still data after a burst: edge-triggered readiness will not fire
        // again for it, so reschedule through a self-wake-up of this token.
        let socket = call.legs[leg.index()].endpoint.socket_mut(stream);
        let _ = self.poll.registry().reregister(
            socket,
            token(slot, Owner::Leg(leg), stream),
            Interest::READABLE,
        );
    }
}

fn on_datagram(
    call: &mut CallMedia,
    packet: &mut [u8],
    received: Received,
    leg: Leg,
    stream: Stream,
    clock: Clock,
) {
    let counters = &call.shared.legs[leg.index()];
    let (len, source) = match received.source {
        Some(source) if !received.truncated => (packet.len(), source),
        _ => {
            call.pending.dropped += 1;
            return bump(&counters.non_rtp_dropped);
        }
    };
    // Parsed once: the reader serves every look at the header below.
    let rtp = match stream {
        Stream::Rtp => RtpReader::new(packet).ok(),
        Stream::Rtcp => None,
    };
    let valid = match stream {
        Stream::Rtp => rtp.is_some(),
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
    let to = direction.destination().index();
    match (stream, rtp) {
        (Stream::Rtp, Some(rtp)) => {
            bump(&counters.packets_in);
            add(&counters.bytes_in, len);
            call.shared
                .touch(leg, clock.ms.saturating_sub(call.started_ms));
            call.rtcp[leg.index()].heard(packet);
            let dropped = &call.shared.tap_dropped[direction.index()];
            copy_to_taps(&mut call.taps[direction.index()], dropped, packet);
            let heard = signal::hear(
                &mut call.signal[leg.index()],
                call.recording.as_mut(),
                leg,
                &rtp,
                clock.us,
                clock.ms,
            );
            for digit in heard.digits {
                signal::emit(&mut call.events, MediaEvent::Digit { leg, digit });
            }
            if let Some(sup) = call.supervisor.as_mut() {
                feed_supervisor(sup, &call.signal[leg.index()], leg, &rtp);
                if sup.mixes(direction.destination()) {
                    // The other leg hears the supervisor's mix instead.
                    return bump(&counters.unforwarded);
                }
            }
            if call.signal[to].player.is_some() || call.digits[to].is_busy() {
                // The other leg hears a player or keys, not this leg.
                return bump(&counters.unforwarded);
            }
            if !prepare_for(&mut call.signal, leg, packet, clock) {
                return bump(&counters.unforwarded);
            }
        }
        (Stream::Rtp, None) => return,
        (Stream::Rtcp, _) => {
            bump(&counters.rtcp_packets_in);
            call.signal[leg.index()].hear_rtcp(packet, clock.ms);
            // A leg that gets denwa's own stream gets no foreign RTCP: the
            // reports would name a source it never heard.
            if call.signal.iter().any(|s| s.out.is_some()) {
                return bump(&counters.unforwarded);
            }
        }
    }
    let out = &call.legs[to];
    let destination = out
        .remote(stream)
        .filter(|_| call.forwarding[direction.index()]);
    let Some(destination) = destination else {
        return bump(&counters.unforwarded);
    };
    let out_counters = &call.shared.legs[to];
    let sent = out_counters.send_counted(out.endpoint.socket(stream), packet, destination, stream);
    if sent && stream == Stream::Rtp {
        call.pending.forwarded[direction.index()] += 1;
    }
}

/// Reads a mixed phone's socket (supervisor or room member), up to
/// [`BURST`] datagrams, rescheduling itself when more are left.
#[allow(clippy::too_many_arguments)]
fn drain_mixed(
    poll: &Poll,
    batch: &mut BatchReceiver,
    leg: &mut LegRuntime,
    mix: &mut bridge::MixLeg,
    counters: &super::LegCounters,
    token: Token,
    stream: Stream,
    clock: Clock,
) {
    let mut read = 0;
    while read < BURST {
        let local = leg.endpoint.local_addr(stream);
        match batch.receive(leg.endpoint.socket(stream), local) {
            Ok(count) => {
                for index in 0..count {
                    let Some((packet, received)) = batch.datagram(index) else {
                        continue;
                    };
                    match received.source {
                        Some(source) if !received.truncated => bridge::receive_mixed(
                            leg, mix, counters, packet, source, stream, clock.ms,
                        ),
                        _ => bump(&counters.non_rtp_dropped),
                    }
                }
                if count < BATCH {
                    return;
                }
                read += count;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
    let socket = leg.endpoint.socket_mut(stream);
    let _ = poll
        .registry()
        .reregister(socket, token, Interest::READABLE);
}

/// Gives a supervisor's mix the decoded audio of a party.
fn feed_supervisor(sup: &mut Supervisor, signal: &LegSignal, leg: Leg, rtp: &RtpReader<'_>) {
    let Some(codec) = signal
        .codec
        .codec
        .filter(|c| c.payload_type() == rtp.payload_type())
    else {
        return;
    };
    let mut samples = [0i16; 4 * crate::media::g711::FRAME_SAMPLES];
    let n = codec.decode_into(rtp.payload(), &mut samples);
    sup.parties[leg.index()].push(&samples[..n]);
}

/// Makes an RTP packet from `leg` fit the other leg: G.711 transcoded when
/// the legs negotiated different laws, renumbered into the other leg's
/// stream once denwa has sent that leg media of its own. False when the
/// packet cannot be sent on (it predates a source switch).
fn prepare_for(signal: &mut [LegSignal; 2], leg: Leg, packet: &mut [u8], clock: Clock) -> bool {
    let [a, b] = signal;
    let (from, to) = match leg {
        Leg::A => (&*a, b),
        Leg::B => (&*b, a),
    };
    if let (Some(src), Some(dst)) = (from.codec.codec, to.codec.codec) {
        if src != dst {
            transcode(packet, src, dst);
        }
    }
    if !digits::cross(from, to.codec, packet) {
        return false;
    }
    match to.out.as_mut() {
        Some(out) => out.rewrite(packet, relayed_from(leg), clock.ms).is_ok(),
        None => {
            to.note_relayed(packet, clock.ms);
            true
        }
    }
}

/// Rewrites a PCMU packet as PCMA or back, in place (same length).
fn transcode(packet: &mut [u8], from: Codec, to: Codec) {
    let Some(pt_byte) = packet.get(1).copied() else {
        return;
    };
    if pt_byte & 0x7f != from.payload_type() {
        return;
    }
    let Ok(range) = payload_range(packet) else {
        return;
    };
    if let Some(payload) = packet.get_mut(range) {
        for code in payload.iter_mut() {
            *code = match from {
                Codec::Pcmu => crate::media::g711::ulaw_to_alaw(*code),
                Codec::Pcma => crate::media::g711::alaw_to_ulaw(*code),
            };
        }
    }
    if let Some(pt) = packet.get_mut(1) {
        *pt = (pt_byte & 0x80) | to.payload_type();
    }
}
