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
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::signal::{LegCodec, LegSignal};
use super::worker::{CallId, Command, WorkerLink};
use super::{Leg, MediaEndpoint, Shared};
use crate::media::g711::FRAME_SAMPLES;
use crate::media::mixer::Frame;
use crate::media::rtcp::LineQuality;

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

    pub fn clear(&mut self) {
        self.samples.clear();
    }
}

/// The signal state of a phone in a mix (room member or supervisor).
pub(super) struct MixLeg {
    pub signal: LegSignal,
    pub queue: FrameQueue,
}

impl MixLeg {
    pub fn new(codec: LegCodec) -> MixLeg {
        let mut signal = LegSignal::new();
        signal.codec = codec;
        signal.ensure_out_stream();
        MixLeg {
            signal,
            queue: FrameQueue::default(),
        }
    }
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
