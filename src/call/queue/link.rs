//! The link between queue call actors (and the SIP core) and the ACD task:
//! what goes in ([`AcdInput`], through a cloneable [`AcdHandle`]) and what
//! comes back to an actor (the engine's [`Action`]s for its call).
//!
//! What this module must not do: decide anything. It carries messages;
//! sends never wait (unbounded channels, one message per call event).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::acd::{Action, CallId, Event, GroupId};
use crate::media::sound::SoundLibrary;

/// What a queue call actor hears from the ACD task: the engine's actions
/// for its call, in order.
pub type CommandSender = mpsc::UnboundedSender<Action>;
pub type CommandReceiver = mpsc::UnboundedReceiver<Action>;

/// An input of the ACD task.
#[derive(Debug)]
pub enum AcdInput {
    /// A call for `group`; the actor hears the engine's actions on `actor`.
    Arrived {
        call: CallId,
        group: GroupId,
        caller: String,
        actor: CommandSender,
    },
    /// Anything else for the engine (hang-ups, agent legs, phones).
    Event(Event),
    /// The actor of `call` has finished: forget where it listened.
    Gone { call: CallId },
}

/// The way into the ACD task, shared by the SIP core and every call actor;
/// cheap to clone. It also carries the sound library queue prompts come
/// from, loaded once for every call.
#[derive(Debug, Clone)]
pub struct AcdHandle {
    tx: mpsc::UnboundedSender<AcdInput>,
    sounds: Arc<SoundLibrary>,
}

impl AcdHandle {
    /// A handle and the receiving end the ACD task reads.
    pub fn channel(sounds: SoundLibrary) -> (AcdHandle, mpsc::UnboundedReceiver<AcdInput>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = AcdHandle {
            tx,
            sounds: Arc::new(sounds),
        };
        (handle, rx)
    }

    /// Send one input; false when the ACD task is gone.
    pub fn send(&self, input: AcdInput) -> bool {
        self.tx.send(input).is_ok()
    }

    /// Tell the engine something; false when the ACD task is gone.
    pub fn event(&self, event: Event) -> bool {
        self.send(AcdInput::Event(event))
    }

    /// The phone of `extension` has registered (`up`) or lost its last
    /// registration.
    pub fn phone(&self, extension: &str, up: bool) {
        let extension = extension.to_owned();
        let _ = self.event(if up {
            Event::PhoneRegistered { extension }
        } else {
            Event::PhoneUnregistered { extension }
        });
    }

    /// The sounds queue prompts are looked up in.
    pub fn sounds(&self) -> &SoundLibrary {
        &self.sounds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_become_engine_events_and_a_gone_task_is_reported() {
        let (handle, mut rx) = AcdHandle::channel(SoundLibrary::new(Vec::new()));
        handle.phone("1001", true);
        handle.phone("1001", false);
        let up = rx.try_recv().expect("first");
        assert!(matches!(
            up,
            AcdInput::Event(Event::PhoneRegistered { ref extension }) if extension == "1001"
        ));
        let down = rx.try_recv().expect("second");
        assert!(matches!(
            down,
            AcdInput::Event(Event::PhoneUnregistered { ref extension }) if extension == "1001"
        ));
        drop(rx);
        let call = CallId::from("c1");
        assert!(!handle.event(Event::CallerHungUp { call }));
    }
}
