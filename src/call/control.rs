//! Commands the rest of the appliance (the HTTP API, scripts, later the
//! supervisor console) gives an answered two-party call: recording start,
//! stop, pause and resume; a sound or a sequence of sounds, spoken digits
//! or a spoken number played to one party; DTMF keys sent to one party.
//!
//! Owns: the command set ([`Control`]), the cloneable [`CallControl`]
//! handle that sends a command into the call actor's queue and waits for
//! its answer, and the recording state machine the actor runs recording
//! commands through ([`RecordingControl`]).
//!
//! Must not: touch a call's state from outside its actor (every command
//! goes through the actor's bounded queue, and a full queue is an error,
//! not a wait), or block the actor: prompts are loaded from disk on a
//! blocking thread by the handle, before the command is sent.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::media::player::{Player, Playlist};
use crate::media::recording::{RecordingError, RecordingHandle};
use crate::media::relay::{Digit, Leg, RelayHandle, UnknownKey, MAX_QUEUED};
use crate::media::sound::{self, SoundError, SoundLibrary};

/// Commands a call's queue holds at most; more are refused as busy.
pub const QUEUE: usize = 16;
/// How long the handle waits for the actor's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Sounds one play command may name.
pub const MAX_SOUNDS: usize = 32;
/// Keys one say or DTMF command may carry.
pub const MAX_KEYS: usize = MAX_QUEUED;
/// How long each key of a DTMF command is held unless told.
pub const DEFAULT_KEY_MS: u32 = 100;

/// What to do with a call's recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingAction {
    /// A new file (each start is its own file, indexed with the call).
    Start,
    Stop,
    /// Silence in the file until resumed.
    Pause,
    Resume,
}

/// Whether a call is being recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingState {
    Off,
    Recording,
    Paused,
}

impl RecordingState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Off => "off",
            RecordingState::Recording => "recording",
            RecordingState::Paused => "paused",
        }
    }
}

/// Why a command was not carried out.
#[derive(Debug, Error)]
pub enum ControlError {
    #[error("the call has ended")]
    Ended,
    #[error("the call has too many commands waiting; try again")]
    Busy,
    #[error("the call is not being recorded")]
    NotRecording,
    #[error("the call is being recorded already")]
    AlreadyRecording,
    #[error("the recording could not start: {0}")]
    Recorder(#[from] RecordingError),
    #[error("prompt: {0}")]
    Sound(#[from] SoundError),
    #[error(transparent)]
    Key(#[from] UnknownKey),
    #[error("nothing to play or send")]
    Empty,
    #[error("at most {max} {what} per command")]
    TooMany { what: &'static str, max: usize },
}

/// Where the answer to a command goes.
pub type Reply<T> = oneshot::Sender<Result<T, ControlError>>;

/// One command in a call actor's queue, with where its answer goes.
#[derive(Debug)]
pub enum Control {
    Recording(RecordingAction, Reply<RecordingState>),
    Play(Leg, Playlist, Reply<()>),
    Dtmf(Leg, String, Duration, Reply<()>),
}

/// A call's control handle; cheap to clone. Stale once the call has
/// ended: every command then fails with [`ControlError::Ended`].
#[derive(Debug, Clone)]
pub struct CallControl {
    tx: mpsc::Sender<Control>,
    prompts: Arc<SoundLibrary>,
}

/// A handle and the queue its call actor reads.
pub fn channel(prompts: Arc<SoundLibrary>) -> (CallControl, mpsc::Receiver<Control>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (CallControl { tx, prompts }, rx)
}

impl CallControl {
    /// Starts, stops, pauses or resumes the call's recording; the state
    /// after it.
    pub async fn recording(&self, action: RecordingAction) -> Result<RecordingState, ControlError> {
        self.ask(|reply| Control::Recording(action, reply)).await
    }

    /// Plays the sounds called `names` (from the prompt library) to the
    /// party on `leg`, instead of the other party, until they end.
    pub async fn play(&self, leg: Leg, names: &[String]) -> Result<(), ControlError> {
        if names.is_empty() {
            return Err(ControlError::Empty);
        }
        if names.len() > MAX_SOUNDS {
            return Err(ControlError::TooMany {
                what: "sounds",
                max: MAX_SOUNDS,
            });
        }
        let (library, names) = (Arc::clone(&self.prompts), names.to_vec());
        let loaded =
            tokio::task::spawn_blocking(move || Playlist::from_names(&library, &names)).await;
        let playlist = loaded.map_err(|_| ControlError::Ended)??;
        self.ask(|reply| Control::Play(leg, playlist, reply)).await
    }

    /// Reads `digits` out to the party on `leg`, one prompt per key.
    pub async fn say_digits(&self, leg: Leg, digits: &str) -> Result<(), ControlError> {
        if digits.chars().count() > MAX_KEYS {
            return Err(ControlError::TooMany {
                what: "digits",
                max: MAX_KEYS,
            });
        }
        if let Some(bad) = digits.chars().find(|c| Digit::new(*c, 0).is_none()) {
            return Err(UnknownKey(bad).into());
        }
        self.play(leg, &sound::say_digits(digits)).await
    }

    /// Says the number `n` to the party on `leg` (English prompts).
    pub async fn say_number(&self, leg: Leg, n: u64) -> Result<(), ControlError> {
        self.play(leg, &sound::say_number(n)).await
    }

    /// Sends the DTMF `keys` to the party on `leg`, each held `duration`,
    /// the way that leg negotiated (RFC 4733 or tones).
    pub async fn send_dtmf(
        &self,
        leg: Leg,
        keys: &str,
        duration: Duration,
    ) -> Result<(), ControlError> {
        if keys.is_empty() {
            return Err(ControlError::Empty);
        }
        if keys.chars().count() > MAX_KEYS {
            return Err(ControlError::TooMany {
                what: "keys",
                max: MAX_KEYS,
            });
        }
        if let Some(bad) = keys.chars().find(|c| Digit::new(*c, 0).is_none()) {
            return Err(UnknownKey(bad).into());
        }
        let keys = keys.to_owned();
        self.ask(|reply| Control::Dtmf(leg, keys, duration, reply))
            .await
    }

    /// Queues a command and waits (bounded) for the actor's answer.
    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Control) -> Result<T, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(command(reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ControlError::Busy,
            mpsc::error::TrySendError::Closed(_) => ControlError::Ended,
        })?;
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ControlError::Ended),
            Err(_) => Err(ControlError::Busy),
        }
    }
}

/// What a recording command acts on: a call's relay.
pub(super) trait Recordable {
    type Recording;
    fn record(&self, recording: Self::Recording);
    fn stop_recording(&self);
    fn pause_recording(&self, pause: bool);
}

impl Recordable for RelayHandle {
    type Recording = RecordingHandle;

    fn record(&self, recording: RecordingHandle) {
        RelayHandle::record(self, recording);
    }

    fn stop_recording(&self) {
        RelayHandle::stop_recording(self);
    }

    fn pause_recording(&self, pause: bool) {
        RelayHandle::pause_recording(self, pause);
    }
}

/// The recording of one call as its actor sees it.
#[derive(Debug)]
pub(super) struct RecordingControl {
    state: RecordingState,
}

impl RecordingControl {
    pub fn new(state: RecordingState) -> RecordingControl {
        RecordingControl { state }
    }

    pub fn state(&self) -> RecordingState {
        self.state
    }

    /// Carries out `action` on `relay`; `start` opens a new recording.
    pub fn apply<R: Recordable>(
        &mut self,
        action: RecordingAction,
        relay: &R,
        start: impl FnOnce() -> Result<R::Recording, RecordingError>,
    ) -> Result<RecordingState, ControlError> {
        use RecordingAction as A;
        use RecordingState as S;
        self.state = match (action, self.state) {
            (A::Start, S::Off) => {
                relay.record(start()?);
                S::Recording
            }
            (A::Start, _) => return Err(ControlError::AlreadyRecording),
            (_, S::Off) => return Err(ControlError::NotRecording),
            (A::Stop, _) => {
                relay.stop_recording();
                S::Off
            }
            (A::Pause, S::Recording) => {
                relay.pause_recording(true);
                S::Paused
            }
            (A::Resume, S::Paused) => {
                relay.pause_recording(false);
                S::Recording
            }
            // Pausing a paused recording, resuming a running one: done.
            (A::Pause | A::Resume, state) => state,
        };
        Ok(self.state)
    }
}

/// Carries out `command` for an answered call whose media is `relay`
/// (`None` once the call is ending); returns the recording state when the
/// command was a recording one that succeeded.
pub(super) fn execute(
    command: Control,
    relay: Option<&RelayHandle>,
    recording: &mut RecordingControl,
    start: impl FnOnce() -> Result<RecordingHandle, RecordingError>,
    publish: impl FnOnce(RecordingState),
) {
    let Some(relay) = relay else {
        match command {
            Control::Recording(_, reply) => drop(reply.send(Err(ControlError::Ended))),
            Control::Play(_, _, reply) | Control::Dtmf(_, _, _, reply) => {
                drop(reply.send(Err(ControlError::Ended)))
            }
        }
        return;
    };
    match command {
        Control::Recording(action, reply) => {
            let result = recording.apply(action, relay, start);
            // Published before the answer: whoever asked then finds the
            // new state in the directory.
            if let Ok(state) = result {
                publish(state);
            }
            let _ = reply.send(result);
        }
        Control::Play(leg, playlist, reply) => {
            relay.play(leg, Player::new(playlist));
            let _ = reply.send(Ok(()));
        }
        Control::Dtmf(leg, keys, duration, reply) => {
            let sent = relay.send_digits(leg, &keys, duration);
            let _ = reply.send(sent.map_err(ControlError::from));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> (CallControl, mpsc::Receiver<Control>) {
        channel(Arc::new(SoundLibrary::new(Vec::new())))
    }

    #[tokio::test]
    async fn bad_keys_and_empty_commands_never_reach_the_call() {
        let (c, mut rx) = control();
        let err = c
            .send_dtmf(Leg::A, "12x", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "'x' is not a DTMF key");
        assert!(matches!(
            c.send_dtmf(Leg::A, "", Duration::ZERO).await,
            Err(ControlError::Empty)
        ));
        let long = "1".repeat(MAX_KEYS + 1);
        assert!(matches!(
            c.say_digits(Leg::B, &long).await,
            Err(ControlError::TooMany { .. })
        ));
        assert!(matches!(
            c.play(Leg::B, &[]).await,
            Err(ControlError::Empty)
        ));
        // A prompt that is not there is found out before the call hears of it.
        assert!(matches!(
            c.say_number(Leg::B, 42).await,
            Err(ControlError::Sound(SoundError::NotFound { .. }))
        ));
        assert!(rx.try_recv().is_err(), "nothing was queued");
    }

    #[tokio::test]
    async fn a_command_is_answered_by_the_actor_or_fails_when_the_call_is_gone() {
        let (c, mut rx) = control();
        let actor = tokio::spawn(async move {
            let Some(Control::Dtmf(leg, keys, duration, reply)) = rx.recv().await else {
                panic!("a DTMF command");
            };
            assert_eq!((leg, keys.as_str()), (Leg::B, "1#"));
            assert_eq!(duration, Duration::from_millis(120));
            reply.send(Ok(())).unwrap();
            // The call ends: its queue goes.
        });
        c.send_dtmf(Leg::B, "1#", Duration::from_millis(120))
            .await
            .expect("answered");
        actor.await.unwrap();
        assert!(matches!(
            c.recording(RecordingAction::Stop).await,
            Err(ControlError::Ended)
        ));
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_not_a_wait() {
        let (c, _rx) = control();
        for _ in 0..QUEUE {
            let (reply, _) = oneshot::channel();
            c.tx.try_send(Control::Recording(RecordingAction::Start, reply))
                .unwrap();
        }
        assert!(matches!(
            c.recording(RecordingAction::Start).await,
            Err(ControlError::Busy)
        ));
    }

    /// A relay that writes down what it was told.
    #[derive(Default)]
    struct Relay(std::cell::RefCell<Vec<String>>);

    impl Recordable for Relay {
        type Recording = u32;
        fn record(&self, recording: u32) {
            self.0.borrow_mut().push(format!("record {recording}"));
        }
        fn stop_recording(&self) {
            self.0.borrow_mut().push("stop".into());
        }
        fn pause_recording(&self, pause: bool) {
            self.0.borrow_mut().push(format!("pause {pause}"));
        }
    }

    #[test]
    fn recording_goes_through_its_states_and_refuses_the_rest() {
        use RecordingAction as A;
        use RecordingState as S;
        let relay = Relay::default();
        let mut rec = RecordingControl::new(S::Off);
        let mut files = 0;
        let mut step = |rec: &mut RecordingControl, action| {
            rec.apply(action, &relay, || {
                files += 1;
                Ok(files)
            })
        };
        assert!(matches!(
            step(&mut rec, A::Pause),
            Err(ControlError::NotRecording)
        ));
        assert!(matches!(
            step(&mut rec, A::Stop),
            Err(ControlError::NotRecording)
        ));
        assert_eq!(step(&mut rec, A::Start).unwrap(), S::Recording);
        assert!(matches!(
            step(&mut rec, A::Start),
            Err(ControlError::AlreadyRecording)
        ));
        assert_eq!(step(&mut rec, A::Pause).unwrap(), S::Paused);
        assert_eq!(step(&mut rec, A::Pause).unwrap(), S::Paused, "idempotent");
        assert!(matches!(
            step(&mut rec, A::Start),
            Err(ControlError::AlreadyRecording)
        ));
        assert_eq!(step(&mut rec, A::Resume).unwrap(), S::Recording);
        assert_eq!(step(&mut rec, A::Stop).unwrap(), S::Off);
        assert_eq!(
            step(&mut rec, A::Start).unwrap(),
            S::Recording,
            "a second file"
        );
        assert_eq!(rec.state().as_str(), "recording");
        assert_eq!(
            *relay.0.borrow(),
            ["record 1", "pause true", "resume", "stop", "record 2"]
                .map(|s| s.replace("resume", "pause false"))
        );
        let failing = rec_failing();
        assert_eq!(failing.state(), S::Off, "a recorder error leaves it off");
    }

    fn rec_failing() -> RecordingControl {
        let mut rec = RecordingControl::new(RecordingState::Off);
        let relay = Relay::default();
        let result = rec.apply(RecordingAction::Start, &relay, || {
            Err(RecordingError::Closed)
        });
        assert!(matches!(result, Err(ControlError::Recorder(_))));
        assert!(relay.0.borrow().is_empty());
        rec
    }
}
