//! The SQLite schema of the queue event log: one append-only table,
//! `acd_events`, one row per [`crate::acd::log::LogRecord`] in the order the
//! engine logged them (`id`). Columns a kind does not use are NULL.
//!
//! What this module must not do: hold anything but the schema text; the
//! store's migration list applies it (`store/migrations.rs`) and
//! `store/acd.rs` reads and writes the rows.

/// The `acd_events` table and its indexes.
pub const ACD_SCHEMA: &str = "
CREATE TABLE acd_events (
    id          INTEGER PRIMARY KEY,
    at_ms       INTEGER NOT NULL CHECK (at_ms >= 0),
    kind        TEXT    NOT NULL
        CHECK (kind IN ('enter', 'refused', 'offer', 'offer_end', 'answer', 'abandon',
                        'overflow', 'timeout', 'transfer', 'end', 'pause', 'unpause',
                        'wrap_up', 'status')),
    call_id     TEXT,
    group_id    TEXT,
    agent_id    TEXT,
    -- caller (enter, refused), destination (overflow, timeout), target (transfer)
    party       TEXT,
    -- offer outcome, refusal reason, pause reason, status reason
    reason      TEXT,
    status_from TEXT,
    status_to   TEXT,
    -- wait (answer, abandon, timeout), talk (end), after-call work timer (wrap_up)
    duration_ms INTEGER CHECK (duration_ms IS NULL OR duration_ms >= 0)
);
CREATE INDEX acd_events_at ON acd_events (at_ms);
CREATE INDEX acd_events_call ON acd_events (call_id);
CREATE INDEX acd_events_agent_status ON acd_events (agent_id, at_ms) WHERE kind = 'status';
";
