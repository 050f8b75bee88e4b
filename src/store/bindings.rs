//! Persisted registration bindings: the `registrations` table.
//!
//! The registrar keeps its location service in memory; this module lets it
//! survive a restart. Each binding is keyed by (address-of-record user,
//! Contact URI), as a registrar keys bindings (RFC 3261 §10.3). Writes are
//! queued through [`Store`]; [`Reader::load_bindings`] reads back the ones
//! still valid at startup.
//!
//! What this module must not do: decide expiry policy or read the clock
//! (`now_unix` is always a parameter), or interpret the stored addresses.

use rusqlite::{params, Connection, Row};

use super::{Reader, Store, StoreError, WriteOp};
use crate::sip::TransportKind;

/// One stored binding of a Contact to a user's address of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedBinding {
    pub user: String,
    pub contact_uri: String,
    /// Unix seconds after which the binding is gone.
    pub expires_at_unix: i64,
    pub transport: TransportKind,
    /// Where the REGISTER came from (`ip:port`).
    pub remote_addr: String,
    /// The local socket it arrived on (`ip:port`).
    pub local_addr: String,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: Option<String>,
}

/// The stored text of a transport.
fn transport_text(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Udp => "udp",
        TransportKind::Tcp => "tcp",
    }
}

fn parse_transport(value: String) -> Result<TransportKind, StoreError> {
    match value.as_str() {
        "udp" => Ok(TransportKind::Udp),
        "tcp" => Ok(TransportKind::Tcp),
        _ => Err(StoreError::InvalidValue {
            column: "transport",
            value,
        }),
    }
}

impl Store {
    /// Queue an insert-or-replace of the binding for (user, contact_uri).
    pub fn upsert_binding(&self, binding: PersistedBinding) -> Result<(), StoreError> {
        self.submit(WriteOp::UpsertBinding(binding))
    }

    /// Queue the removal of one binding.
    pub fn remove_binding(&self, user: &str, contact_uri: &str) -> Result<(), StoreError> {
        self.submit(WriteOp::RemoveBinding {
            user: user.to_string(),
            contact_uri: contact_uri.to_string(),
        })
    }

    /// Queue the removal of every binding of `user` (`Contact: *`).
    pub fn remove_all_bindings(&self, user: &str) -> Result<(), StoreError> {
        self.submit(WriteOp::RemoveAllBindings {
            user: user.to_string(),
        })
    }

    /// Queue the deletion of bindings expired at `now_unix`.
    pub fn purge_expired_bindings(&self, now_unix: i64) -> Result<(), StoreError> {
        self.submit(WriteOp::PurgeExpiredBindings { now_unix })
    }
}

impl Reader {
    /// Every binding still valid at `now_unix`, ordered by user then contact.
    pub fn load_bindings(&self, now_unix: i64) -> Result<Vec<PersistedBinding>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT user, contact_uri, expires_at_unix, transport, remote_addr,
                    local_addr, call_id, cseq, user_agent
             FROM registrations WHERE expires_at_unix > ?1
             ORDER BY user, contact_uri",
        )?;
        let mut rows = stmt.query([now_unix])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(binding_from_row(row)?);
        }
        Ok(out)
    }
}

fn binding_from_row(row: &Row<'_>) -> Result<PersistedBinding, StoreError> {
    Ok(PersistedBinding {
        user: row.get(0)?,
        contact_uri: row.get(1)?,
        expires_at_unix: row.get(2)?,
        transport: parse_transport(row.get(3)?)?,
        remote_addr: row.get(4)?,
        local_addr: row.get(5)?,
        call_id: row.get(6)?,
        cseq: row.get(7)?,
        user_agent: row.get(8)?,
    })
}

pub(super) fn upsert(conn: &Connection, b: &PersistedBinding) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO registrations (user, contact_uri, expires_at_unix, transport,
             remote_addr, local_addr, call_id, cseq, user_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (user, contact_uri) DO UPDATE SET
             expires_at_unix = excluded.expires_at_unix,
             transport = excluded.transport,
             remote_addr = excluded.remote_addr,
             local_addr = excluded.local_addr,
             call_id = excluded.call_id,
             cseq = excluded.cseq,
             user_agent = excluded.user_agent",
    )?;
    stmt.execute(params![
        b.user,
        b.contact_uri,
        b.expires_at_unix,
        transport_text(b.transport),
        b.remote_addr,
        b.local_addr,
        b.call_id,
        b.cseq,
        b.user_agent,
    ])?;
    Ok(())
}

pub(super) fn remove(conn: &Connection, user: &str, contact_uri: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM registrations WHERE user = ?1 AND contact_uri = ?2")?
        .execute(params![user, contact_uri])?;
    Ok(())
}

pub(super) fn remove_all(conn: &Connection, user: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM registrations WHERE user = ?1")?
        .execute([user])?;
    Ok(())
}

pub(super) fn purge_expired(conn: &Connection, now_unix: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM registrations WHERE expires_at_unix <= ?1")?
        .execute([now_unix])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn binding(user: &str, contact: &str, expires_at_unix: i64) -> PersistedBinding {
        PersistedBinding {
            user: user.into(),
            contact_uri: contact.into(),
            expires_at_unix,
            transport: TransportKind::Udp,
            remote_addr: "192.0.2.20:5060".into(),
            local_addr: "192.0.2.1:5060".into(),
            call_id: format!("{user}-reg"),
            cseq: 1,
            user_agent: Some("deskphone/1.0".into()),
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("denwa.db")).unwrap();
        (dir, store)
    }

    fn contacts(store: &Store, now: i64) -> Vec<(String, String)> {
        store.flush_blocking().unwrap();
        let reader = store.reader().unwrap();
        let loaded = reader.load_bindings(now).unwrap();
        loaded
            .into_iter()
            .map(|b| (b.user, b.contact_uri))
            .collect()
    }

    #[test]
    fn upsert_inserts_then_replaces() {
        let (_dir, store) = open();
        store
            .upsert_binding(binding("1001", "sip:1001@192.0.2.20", NOW + 60))
            .unwrap();
        let refreshed = PersistedBinding {
            expires_at_unix: NOW + 3600,
            transport: TransportKind::Tcp,
            remote_addr: "192.0.2.21:40000".into(),
            cseq: 2,
            user_agent: None,
            ..binding("1001", "sip:1001@192.0.2.20", 0)
        };
        store.upsert_binding(refreshed.clone()).unwrap();
        store.flush_blocking().unwrap();
        let loaded = store.reader().unwrap().load_bindings(NOW).unwrap();
        assert_eq!(loaded, [refreshed]);
        store.close().unwrap();
    }

    #[test]
    fn remove_one_and_remove_all() {
        let (_dir, store) = open();
        for (user, contact) in [
            ("1001", "sip:a@192.0.2.20"),
            ("1001", "sip:b@192.0.2.21"),
            ("1001", "sip:c@192.0.2.22"),
            ("1002", "sip:d@192.0.2.23"),
        ] {
            store
                .upsert_binding(binding(user, contact, NOW + 60))
                .unwrap();
        }
        store.remove_binding("1001", "sip:b@192.0.2.21").unwrap();
        assert_eq!(
            contacts(&store, NOW),
            [
                ("1001".into(), "sip:a@192.0.2.20".into()),
                ("1001".into(), "sip:c@192.0.2.22".into()),
                ("1002".into(), "sip:d@192.0.2.23".into()),
            ]
        );
        store.remove_all_bindings("1001").unwrap();
        assert_eq!(
            contacts(&store, NOW),
            [("1002".into(), "sip:d@192.0.2.23".into())]
        );
        // Removing what is not there is not an error.
        store.remove_binding("9999", "sip:none@192.0.2.1").unwrap();
        store.flush_blocking().unwrap();
        assert_eq!(store.failed_writes(), 0);
        store.close().unwrap();
    }

    #[test]
    fn expired_bindings_are_not_loaded_and_can_be_purged() {
        let (_dir, store) = open();
        store
            .upsert_binding(binding("1001", "sip:old@192.0.2.20", NOW - 1))
            .unwrap();
        store
            .upsert_binding(binding("1001", "sip:edge@192.0.2.20", NOW))
            .unwrap();
        store
            .upsert_binding(binding("1001", "sip:new@192.0.2.20", NOW + 1))
            .unwrap();
        assert_eq!(
            contacts(&store, NOW),
            [("1001".into(), "sip:new@192.0.2.20".into())]
        );
        // Still stored until purged: visible to an earlier clock.
        assert_eq!(contacts(&store, NOW - 10).len(), 3);
        store.purge_expired_bindings(NOW).unwrap();
        assert_eq!(contacts(&store, NOW - 10).len(), 1);
        store.close().unwrap();
    }

    #[test]
    fn bindings_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("denwa.db");
        let store = Store::open(&path).unwrap();
        let b = binding("1001", "sip:1001@192.0.2.20;transport=tcp", NOW + 300);
        store.upsert_binding(b.clone()).unwrap();
        store.close().unwrap();
        let reopened = Store::open(&path).unwrap();
        assert_eq!(reopened.reader().unwrap().load_bindings(NOW).unwrap(), [b]);
        reopened.close().unwrap();
    }

    #[test]
    fn unknown_transport_is_a_typed_error() {
        let err = parse_transport("sctp".into()).unwrap_err();
        assert!(matches!(
            err,
            StoreError::InvalidValue { column: "transport", ref value } if value == "sctp"
        ));
        assert_eq!(parse_transport("tcp".into()).unwrap(), TransportKind::Tcp);
    }
}
