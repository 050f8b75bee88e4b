//! Call notices: what happens to calls, for whoever listens (the console
//! and plugins, later). A broadcast channel: nobody listening costs
//! nothing, and a slow listener loses old notices rather than holding up
//! a call.

use tokio::sync::broadcast;

/// How many notices a slow listener may fall behind before losing some.
const BACKLOG: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallNotice {
    /// A call from outside is offered to an agent: open this URL (the
    /// number's screen-pop template with the caller's number filled in).
    ScreenPop {
        call_id: String,
        did: String,
        caller: String,
        extension: String,
        url: String,
    },
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Notices {
    tx: broadcast::Sender<CallNotice>,
}

impl Default for Notices {
    fn default() -> Self {
        Notices {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Notices {
    /// Tell every listener; nobody listening is fine.
    pub fn publish(&self, notice: CallNotice) {
        let _ = self.tx.send(notice);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CallNotice> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_get_what_is_published_after_they_subscribe() {
        let notices = Notices::default();
        let pop = CallNotice::ScreenPop {
            call_id: "c".into(),
            did: "0312345678".into(),
            caller: "09011112222".into(),
            extension: "1001".into(),
            url: "https://crm/?tel=09011112222".into(),
        };
        notices.publish(pop.clone());
        let mut rx = notices.subscribe();
        notices.publish(pop.clone());
        assert_eq!(rx.recv().await.unwrap(), pop);
        assert!(
            rx.try_recv().is_err(),
            "the earlier notice was before subscribing"
        );
    }
}
