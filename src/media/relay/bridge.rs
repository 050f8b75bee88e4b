//! Media that mixes: conference rooms, and a supervisor attached to a call
//! (monitor, whisper, barge). The handles here are what call actors hold;
//! the mixing runs on the media worker that owns the sockets.
//!
//! Owns: [`MemberHandle`] (one phone in a room), [`TapPoint`] (a running
//! call a supervisor may attach to), [`SupervisorHandle`] (the attached
//! supervisor's leg), and the worker-side state of rooms and supervisors.
//!
//! Must not: take call decisions (who may monitor whom is the call layer's
//! business), or block the worker. Audio is decoded into a short queue per
//! leg and mixed once per 20 ms frame by [`crate::media::mixer::Mixer`];
//! every phone gets denwa's own continuous RTP stream while it is mixed.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::oneshot;

use rtp_rs::RtpReader;

use super::rtcp_out::RtcpSender;
use super::signal::{LegCodec, LegSignal};
use super::worker::{CallId, Command, LegRuntime, WorkerLink};
use super::{
    add, bump, looks_like_rtcp, rtcp_companion, Admit, Leg, LegCounters, MediaEndpoint, Shared,
    Stream,
};
use crate::media::g711::FRAME_SAMPLES;
use crate::media::mixer::{Frame, Mixer, ParticipantId, Role, SILENCE};
use crate::media::rtcp::LineQuality;
use crate::media::rtp_stream::SourceId;

/// Decoded audio a leg may have queued for the mixer (80 ms); older audio
/// is dropped so a phone that sends too fast cannot build up delay.
pub(super) const MAX_QUEUED_SAMPLES: usize = 4 * FRAME_SAMPLES;

/// What a supervisor does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapMode {
    /// Hears both parties; nobody hears the supervisor.
    Monitor,
    /// Hears both parties; only the agent on this leg hears the supervisor.
    Whisper(Leg),
    /// Hears both parties and both hear the supervisor.
    Barge,
}

/// A running call, as a supervisor can find it. Cheap to clone; stale once
/// the call has ended (attaching then does nothing and the supervisor's
/// handle reports the call gone).
#[derive(Debug, Clone)]
pub struct TapPoint {
    pub(super) link: WorkerLink,
    pub(super) id: CallId,
}

impl TapPoint {
    /// Puts the supervisor's leg (`endpoint`, whose phone sends from / wants
    /// media at `remote`) into the call in `mode`.
    pub fn attach(
        &self,
        endpoint: MediaEndpoint,
        remote: Option<SocketAddr>,
        codec: LegCodec,
        mode: TapMode,
    ) -> SupervisorHandle {
        let local = endpoint.local_rtp_addr();
        let (gone_tx, gone) = oneshot::channel();
        self.link.send(Command::Attach {
            call: self.id,
            endpoint: Box::new(endpoint),
            remote,
            codec,
            mode,
            gone: gone_tx,
        });
        SupervisorHandle {
            link: self.link.clone(),
            call: self.id,
            local,
            gone,
            detached: false,
        }
    }
}

/// A supervisor's leg in somebody else's call. Dropping it detaches.
#[derive(Debug)]
pub struct SupervisorHandle {
    link: WorkerLink,
    call: CallId,
    local: SocketAddr,
    /// Fires when the call ends (or was gone already) and the supervisor's
    /// sockets are closed.
    gone: oneshot::Receiver<()>,
    detached: bool,
}

impl SupervisorHandle {
    /// denwa's RTP address for the supervisor's phone (for its SDP).
    pub fn local_rtp_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn set_remote(&self, rtp: SocketAddr) {
        self.link.send(Command::SupervisorRemote(self.call, rtp));
    }

    /// Changes what the supervisor does (monitor → whisper → barge).
    pub fn set_mode(&self, mode: TapMode) {
        self.link.send(Command::SupervisorMode(self.call, mode));
    }

    /// Resolves when the call the supervisor is in has ended.
    pub async fn call_ended(&mut self) {
        let _ = (&mut self.gone).await;
    }

    /// Leaves the call; the parties hear each other as before.
    pub fn detach(mut self) {
        self.detached = true;
        self.link.send(Command::Detach(self.call));
    }
}

impl Drop for SupervisorHandle {
    fn drop(&mut self) {
        if !self.detached {
            self.link.send(Command::Detach(self.call));
        }
    }
}

/// Identifies a member on its room's worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MemberId {
    pub slot: usize,
    pub generation: u64,
}

/// One phone in a conference room. Dropping it leaves the room.
#[derive(Debug)]
pub struct MemberHandle {
    pub(super) link: WorkerLink,
    pub(super) id: MemberId,
    pub(super) shared: Arc<Shared>,
    pub(super) local: SocketAddr,
    pub(super) left: bool,
}

impl MemberHandle {
    pub fn local_rtp_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn set_remote(&self, rtp: SocketAddr) {
        self.link.send(Command::MemberRemote(self.id, rtp));
    }

    /// Nobody hears a muted member; it still hears the room.
    pub fn mute(&self, muted: bool) {
        self.link.send(Command::MemberMute(self.id, muted));
    }

    /// A switch that mutes this member from outside its call actor.
    pub fn mute_switch(&self) -> MuteSwitch {
        MuteSwitch {
            link: self.link.clone(),
            id: self.id,
        }
    }

    /// Leaves the room (the others hear `leave_tone`) and returns what was
    /// received from the phone.
    pub async fn leave(mut self, leave_tone: Vec<Frame>) -> LineQuality {
        self.left = true;
        let (done, quality) = oneshot::channel();
        self.link
            .send(Command::Leave(self.id, leave_tone, Some(done)));
        quality.await.unwrap_or_default()
    }

    /// Packets received from and sent to the phone so far.
    pub fn stats(&self) -> super::LegStats {
        self.shared.snapshot().a
    }
}

/// Mutes one room member; cheap to clone. Stale once the member has left
/// (then it does nothing).
#[derive(Debug, Clone)]
pub struct MuteSwitch {
    link: WorkerLink,
    id: MemberId,
}

impl MuteSwitch {
    /// See [`MemberHandle::mute`].
    pub fn set(&self, muted: bool) {
        self.link.send(Command::MemberMute(self.id, muted));
    }
}

impl Drop for MemberHandle {
    fn drop(&mut self) {
        if !self.left {
            self.link.send(Command::Leave(self.id, Vec::new(), None));
        }
    }
}

/// Decoded audio waiting for the next frame of a mix.
#[derive(Debug, Default)]
pub(super) struct FrameQueue {
    samples: VecDeque<i16>,
}

impl FrameQueue {
    pub fn push(&mut self, samples: &[i16]) {
        self.samples.extend(samples.iter().copied());
        let excess = self.samples.len().saturating_sub(MAX_QUEUED_SAMPLES);
        self.samples.drain(..excess);
    }

    /// One frame, or `None` when less than a frame is queued (the leg is
    /// silent or late this time).
    pub fn pop(&mut self) -> Option<Frame> {
        if self.samples.len() < FRAME_SAMPLES {
            return None;
        }
        let mut frame = [0i16; FRAME_SAMPLES];
        for (out, sample) in frame.iter_mut().zip(self.samples.drain(..FRAME_SAMPLES)) {
            *out = sample;
        }
        Some(frame)
    }
}

/// The signal state of a phone in a mix (room member or supervisor).
pub(super) struct MixLeg {
    pub signal: LegSignal,
    pub queue: FrameQueue,
    /// denwa's RTCP to the phone, which only ever hears denwa's stream.
    pub rtcp: RtcpSender,
}

impl MixLeg {
    /// The mix of a phone reached on denwa's address `local`.
    pub fn new(codec: LegCodec, local: IpAddr) -> MixLeg {
        let mut signal = LegSignal::new();
        signal.codec = codec;
        signal.ensure_out_stream(0);
        MixLeg {
            signal,
            queue: FrameQueue::default(),
            rtcp: RtcpSender::new(format!("denwa@{local}"), rand::random()),
        }
    }
}

/// The mixer's names for the parties of a call and its supervisor.
const PARTY_A: ParticipantId = ParticipantId(0);
const PARTY_B: ParticipantId = ParticipantId(1);
const SUPERVISOR: ParticipantId = ParticipantId(2);
/// Stream source of mixed audio, for stream continuity.
const FROM_MIXER: SourceId = SourceId(200);

fn party(leg: Leg) -> ParticipantId {
    match leg {
        Leg::A => PARTY_A,
        Leg::B => PARTY_B,
    }
}

fn supervisor_role(mode: TapMode) -> Role {
    match mode {
        TapMode::Monitor => Role::Monitor {
            a: PARTY_A,
            b: PARTY_B,
        },
        TapMode::Whisper(leg) => Role::Whisper {
            to: party(leg),
            other: party(leg.other()),
        },
        TapMode::Barge => Role::Barge {
            a: PARTY_A,
            b: PARTY_B,
        },
    }
}

/// A supervisor attached to a call, on the call's worker.
pub(super) struct Supervisor {
    pub leg: LegRuntime,
    pub mix: MixLeg,
    pub mode: TapMode,
    mixer: Mixer,
    /// Decoded audio of the call's parties, for the mix.
    pub parties: [FrameQueue; 2],
    /// Dropped with the supervisor: tells its handle it is out.
    _gone: oneshot::Sender<()>,
}

impl Supervisor {
    pub fn new(
        leg: LegRuntime,
        codec: LegCodec,
        mode: TapMode,
        gone: oneshot::Sender<()>,
    ) -> Supervisor {
        let mut mixer = Mixer::new();
        // Three distinct participants always fit.
        let _ = mixer.join(PARTY_A, Role::Member);
        let _ = mixer.join(PARTY_B, Role::Member);
        let _ = mixer.join(SUPERVISOR, supervisor_role(mode));
        let local = leg.endpoint.local_rtp_addr().ip();
        Supervisor {
            leg,
            mix: MixLeg::new(codec, local),
            mode,
            mixer,
            parties: [FrameQueue::default(), FrameQueue::default()],
            _gone: gone,
        }
    }

    pub fn set_mode(&mut self, mode: TapMode) {
        self.mode = mode;
        let _ = self.mixer.set_role(SUPERVISOR, supervisor_role(mode));
    }

    /// Whether `leg` hears the mix (it hears the supervisor) rather than
    /// the plain relay.
    pub fn mixes(&self, leg: Leg) -> bool {
        match self.mode {
            TapMode::Monitor => false,
            TapMode::Whisper(to) => to == leg,
            TapMode::Barge => true,
        }
    }

    /// One frame of the mix: what the supervisor hears, and what each
    /// mixed party hears (`None` for a party on the plain relay).
    pub fn frame(&mut self) -> (Frame, [Option<Frame>; 2]) {
        let a = self.parties[0].pop();
        let b = self.parties[1].pop();
        let s = self.mix.queue.pop();
        let mut inputs: Vec<(ParticipantId, &Frame)> = Vec::with_capacity(3);
        if let Some(f) = a.as_ref() {
            inputs.push((PARTY_A, f));
        }
        if let Some(f) = b.as_ref() {
            inputs.push((PARTY_B, f));
        }
        if let Some(f) = s.as_ref() {
            inputs.push((SUPERVISOR, f));
        }
        let mixes = [self.mixes(Leg::A), self.mixes(Leg::B)];
        let mut out = (SILENCE, [None, None]);
        for (id, frame) in self.mixer.tick(&inputs) {
            match *id {
                SUPERVISOR => out.0 = *frame,
                PARTY_A if mixes[0] => out.1[0] = Some(*frame),
                PARTY_B if mixes[1] => out.1[1] = Some(*frame),
                _ => {}
            }
        }
        out
    }
}

/// A phone in a conference room, on the room's worker.
pub(super) struct Member {
    pub generation: u64,
    pub leg: LegRuntime,
    pub mix: MixLeg,
    pub shared: Arc<Shared>,
    pub room: String,
}

/// A conference room: its members (worker slots) and its mix.
pub(super) struct Room {
    pub mixer: Mixer,
    pub members: Vec<usize>,
    /// Tone frames everybody hears next (join and leave beeps).
    pub announce: VecDeque<Frame>,
}

impl Room {
    pub fn new() -> Room {
        Room {
            mixer: Mixer::new(),
            members: Vec::new(),
            announce: VecDeque::new(),
        }
    }

    /// One frame: every member's next frame in, each member's mix out, as
    /// (slot, frame).
    pub fn frame(&mut self, members: &mut [Option<Member>]) -> Vec<(usize, Frame)> {
        let mut frames: Vec<(ParticipantId, Frame)> = Vec::with_capacity(self.members.len());
        for &slot in &self.members {
            if let Some(Some(m)) = members.get_mut(slot) {
                if let Some(frame) = m.mix.queue.pop() {
                    frames.push((member_id(slot), frame));
                }
            }
        }
        if let Some(tone) = self.announce.pop_front() {
            self.mixer.announce(&tone);
        }
        let inputs: Vec<(ParticipantId, &Frame)> = frames.iter().map(|(id, f)| (*id, f)).collect();
        self.mixer
            .tick(&inputs)
            .iter()
            .filter_map(|(id, frame)| usize::try_from(id.0).ok().map(|slot| (slot, *frame)))
            .collect()
    }
}

pub(super) fn member_id(slot: usize) -> ParticipantId {
    ParticipantId(u64::try_from(slot).unwrap_or(u64::MAX))
}

/// Encodes `frame` for the phone behind `leg` and sends it in denwa's own
/// stream for that phone.
pub(super) fn send_frame(
    leg: &LegRuntime,
    signal: &mut LegSignal,
    counters: &LegCounters,
    frame: &Frame,
    now_ms: u64,
) {
    let (Some(codec), Some(remote)) = (signal.codec.codec, leg.rtp.remote) else {
        return;
    };
    signal.ensure_out_stream(now_ms);
    let Some(out) = signal.out.as_mut() else {
        return;
    };
    let mut payload = [0u8; FRAME_SAMPLES];
    codec.encode_into(frame, &mut payload);
    let packet = out.build(codec.payload_type(), &payload, false, FROM_MIXER, now_ms);
    counters.send_counted(
        leg.endpoint.socket(Stream::Rtp),
        &packet,
        remote,
        Stream::Rtp,
    );
}

/// [`send_frame`] to a mixed phone, and denwa's RTCP report to it when
/// one is due.
pub(super) fn send_mixed(
    leg: &LegRuntime,
    mix: &mut MixLeg,
    counters: &LegCounters,
    frame: &Frame,
    now_ms: u64,
) {
    send_frame(leg, &mut mix.signal, counters, frame, now_ms);
    let unix_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
    };
    if let (Some(report), Some(remote)) = (
        mix.rtcp.poll(&mut mix.signal, now_ms, unix_ms),
        leg.rtcp.remote,
    ) {
        let socket = leg.endpoint.socket(Stream::Rtcp);
        counters.send_counted(socket, &report, remote, Stream::Rtcp);
    }
}

/// Takes in one datagram from a mixed phone (supervisor or room member):
/// checks it, latches, counts, and queues its decoded audio. RTCP is
/// counted and ends here (denwa is the phone's only peer).
#[allow(clippy::too_many_arguments)]
pub(super) fn receive_mixed(
    leg: &mut LegRuntime,
    mix: &mut MixLeg,
    counters: &LegCounters,
    packet: &[u8],
    source: SocketAddr,
    stream: Stream,
    now_ms: u64,
) {
    let valid = match stream {
        Stream::Rtp => RtpReader::new(packet).is_ok(),
        Stream::Rtcp => looks_like_rtcp(packet),
    };
    if !valid {
        return bump(&counters.non_rtp_dropped);
    }
    match leg.latch_mut(stream).admit(source) {
        Admit::Injected => return bump(&counters.injected_dropped),
        Admit::Latched if stream == Stream::Rtp && !leg.rtcp.latched => {
            leg.rtcp.remote = rtcp_companion(source);
        }
        _ => {}
    }
    if stream == Stream::Rtcp {
        // Its reports about denwa's stream, and its SR for denwa's next
        // report block.
        mix.signal.hear_rtcp(packet, now_ms);
        return bump(&counters.rtcp_packets_in);
    }
    bump(&counters.packets_in);
    add(&counters.bytes_in, packet.len());
    mix.rtcp.heard(packet);
    let Ok(rtp) = RtpReader::new(packet) else {
        return;
    };
    mix.signal
        .quality
        .on_rtp(rtp.sequence_number().into(), rtp.timestamp(), now_ms);
    let Some(codec) = mix
        .signal
        .codec
        .codec
        .filter(|c| c.payload_type() == rtp.payload_type())
    else {
        return;
    };
    let mut samples = [0i16; 4 * FRAME_SAMPLES];
    let n = codec.decode_into(rtp.payload(), &mut samples);
    mix.queue.push(&samples[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_gives_whole_frames_and_caps_delay() {
        let mut q = FrameQueue::default();
        q.push(&[1; 100]);
        assert_eq!(q.pop(), None, "less than a frame");
        q.push(&[2; 100]);
        let frame = q.pop().unwrap();
        assert_eq!(frame[0], 1);
        assert_eq!(frame[99], 1);
        assert_eq!(frame[100], 2);
        assert_eq!(q.pop(), None, "40 samples left");
        q.push(&[3; 10 * FRAME_SAMPLES]);
        let mut frames = 0;
        while q.pop().is_some() {
            frames += 1;
        }
        assert_eq!(
            frames,
            MAX_QUEUED_SAMPLES / FRAME_SAMPLES,
            "older audio dropped"
        );
    }
}
