//! Keeps the running denwa's copy of the blocklist and the restriction
//! list current: loaded at start, then reloaded whole whenever the
//! database's list generation moves (`denwa list` from another process,
//! later the console). Reads run on the blocking pool; the SIP core only
//! ever looks at the copy in memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::{Gauge, Metrics};
use crate::routing::lists::Lists;
use crate::store::lists::ListKind;
use crate::store::{Store, StoreError};

/// How often the generation is looked at.
const POLL: Duration = Duration::from_secs(1);

/// Both lists and the generation they were read at (blocking).
pub fn load(store: &Store) -> Result<(i64, Lists), StoreError> {
    let reader = store.reader()?;
    let generation = reader.list_generation()?;
    let numbers = |kind| -> Result<Vec<String>, StoreError> {
        Ok(reader
            .list_entries(kind)?
            .into_iter()
            .map(|e| e.number)
            .collect())
    };
    let lists = Lists::new(numbers(ListKind::Blocked)?, numbers(ListKind::Restricted)?);
    Ok((generation, lists))
}

/// The gauges showing the list sizes.
struct Sizes {
    blocked: Gauge,
    restricted: Gauge,
}

impl Sizes {
    fn new(metrics: &Metrics) -> Sizes {
        let gauge = |name: &str, help: &str| metrics.register_gauge(name, help).unwrap_or_default();
        Sizes {
            blocked: gauge("blocklist_entries", "Numbers on the inbound blocklist."),
            restricted: gauge(
                "restriction_list_entries",
                "Numbers on the outbound restriction list.",
            ),
        }
    }

    fn show(&self, lists: &Lists) {
        self.blocked
            .set(i64::try_from(lists.blocked_len()).unwrap_or(i64::MAX));
        self.restricted
            .set(i64::try_from(lists.restricted_len()).unwrap_or(i64::MAX));
    }
}

/// Load the lists now and keep them current in the returned receiver.
pub async fn start(store: Store, metrics: &Metrics) -> anyhow::Result<watch::Receiver<Arc<Lists>>> {
    let loading = store.clone();
    let (mut generation, lists) = tokio::task::spawn_blocking(move || load(&loading)).await??;
    let sizes = Sizes::new(metrics);
    sizes.show(&lists);
    info!(
        blocked = lists.blocked_len(),
        restricted = lists.restricted_len(),
        "number lists loaded"
    );
    let (tx, rx) = watch::channel(Arc::new(lists));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        loop {
            tick.tick().await;
            if tx.is_closed() {
                break;
            }
            let reading = store.clone();
            let seen = generation;
            let result =
                tokio::task::spawn_blocking(move || -> Result<Option<(i64, Lists)>, StoreError> {
                    let now = reading.reader()?.list_generation()?;
                    if now == seen {
                        return Ok(None);
                    }
                    load(&reading).map(Some)
                })
                .await;
            match result {
                Ok(Ok(Some((g, lists)))) => {
                    generation = g;
                    sizes.show(&lists);
                    info!(
                        blocked = lists.blocked_len(),
                        restricted = lists.restricted_len(),
                        "number lists reloaded"
                    );
                    let _ = tx.send(Arc::new(lists));
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => warn!(error = %e, "number lists not reloaded"),
                Err(e) => warn!(error = %e, "number list reload failed"),
            }
        }
    });
    Ok(rx)
}
