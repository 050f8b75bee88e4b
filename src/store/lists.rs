//! The inbound blocklist (`blocked_numbers`) and the outbound restriction
//! list (`restricted_numbers`): numbers, digits only, each with a remark.
//!
//! Owns the SQL of both tables, the administration connection the CLI
//! writes through ([`ListAdmin`], which may run beside a running denwa:
//! WAL and the busy timeout let both write), the bulk CSV import with its
//! per-row report, and the generation counter a running denwa polls to
//! notice changes.
//!
//! Must not: decide what a listed number means for a call (the router
//! does), or be used on a signalling path (reads block).

use std::io::Read;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Reader, StoreError};

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Inbound callers rejected before ringing.
    Blocked,
    /// Destinations an extension may never dial.
    Restricted,
}

impl ListKind {
    fn table(self) -> &'static str {
        match self {
            ListKind::Blocked => "blocked_numbers",
            ListKind::Restricted => "restricted_numbers",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Blocked => "blocklist",
            ListKind::Restricted => "restriction list",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub number: String,
    pub remark: String,
    pub added_at_ms: i64,
}

/// Longest number a list keeps.
const MAX_DIGITS: usize = 32;

/// A number as the lists keep it: separators people write (spaces, `-`,
/// `(`, `)`, a leading `+`) dropped; then digits only. `Err` says why not.
pub fn list_number(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let body = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let digits: String = body
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    if digits.is_empty() {
        return Err("empty number".into());
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{trimmed}` is not digits only"));
    }
    if digits.len() > MAX_DIGITS {
        return Err(format!("`{trimmed}` is longer than {MAX_DIGITS} digits"));
    }
    Ok(digits)
}

/// How a CSV file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvLayout {
    /// The first row names the columns and is skipped.
    pub header: bool,
    /// Every row must have this many columns.
    pub columns: usize,
    /// The column holding the number, 1-based.
    pub number_column: usize,
    /// The column holding the remark, 1-based, if any.
    pub remark_column: Option<usize>,
}

/// What happened to one row of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    Added(String),
    /// Already listed; the remark was updated.
    Updated(String),
    Rejected(String),
}

/// One row of the report; `line` is 1-based in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowReport {
    pub line: u64,
    pub outcome: RowOutcome,
}

/// The write connection of `denwa list`.
pub struct ListAdmin {
    conn: Connection,
}

impl ListAdmin {
    /// Open (creating and migrating when needed) the database at `path`.
    pub fn open(path: &Path) -> Result<ListAdmin, StoreError> {
        let mut conn = super::open_connection(path, true)?;
        super::migrations::ensure_supported(&conn)?;
        super::enable_wal(&conn)?;
        super::migrations::migrate(&mut conn)?;
        Ok(ListAdmin { conn })
    }

    /// Add `number` (or update its remark); true when it was new.
    pub fn add(
        &self,
        kind: ListKind,
        number: &str,
        remark: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        upsert(&self.conn, kind, number, remark, now_ms)
    }

    /// Remove `number`; true when it was listed.
    pub fn remove(&self, kind: ListKind, number: &str) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM {} WHERE number = ?1", kind.table());
        Ok(self.conn.execute(&sql, [number])? > 0)
    }

    pub fn entries(&self, kind: ListKind) -> Result<Vec<ListEntry>, StoreError> {
        entries(&self.conn, kind)
    }

    /// Import a CSV file into `kind` in one transaction; every row gets a
    /// line in the report. A file that cannot be read at all is an error.
    pub fn import_csv(
        &mut self,
        kind: ListKind,
        input: impl Read,
        layout: CsvLayout,
        now_ms: i64,
    ) -> Result<Vec<RowReport>, StoreError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let tx = self.conn.transaction()?;
        let mut report = Vec::new();
        for (index, row) in reader.records().enumerate() {
            let line = row
                .as_ref()
                .ok()
                .and_then(|r| r.position().map(|p| p.line()))
                .unwrap_or(u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1));
            if index == 0 && layout.header {
                continue;
            }
            let outcome = match row {
                Err(e) => RowOutcome::Rejected(format!("unreadable row: {e}")),
                Ok(record) => match row_values(&record, layout) {
                    Err(reason) => RowOutcome::Rejected(reason),
                    Ok((number, remark)) => match upsert(&tx, kind, &number, &remark, now_ms) {
                        Ok(true) => RowOutcome::Added(number),
                        Ok(false) => RowOutcome::Updated(number),
                        Err(e) => RowOutcome::Rejected(e.to_string()),
                    },
                },
            };
            report.push(RowReport { line, outcome });
        }
        tx.commit()?;
        Ok(report)
    }
}

/// The number and remark of one CSV row, or why the row is refused.
fn row_values(record: &csv::StringRecord, layout: CsvLayout) -> Result<(String, String), String> {
    if record.len() != layout.columns {
        return Err(format!(
            "{} columns, expected {}",
            record.len(),
            layout.columns
        ));
    }
    let column = |c: usize| record.get(c.wrapping_sub(1)).unwrap_or_default();
    let number = list_number(column(layout.number_column))?;
    let remark = layout.remark_column.map(column).unwrap_or_default();
    Ok((number, remark.trim().to_owned()))
}

fn upsert(
    conn: &Connection,
    kind: ListKind,
    number: &str,
    remark: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let number = list_number(number).map_err(|value| StoreError::InvalidValue {
        column: "number",
        value,
    })?;
    let table = kind.table();
    let exists: Option<i64> = conn
        .query_row(
            &format!("SELECT 1 FROM {table} WHERE number = ?1"),
            [&number],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_some() {
        conn.execute(
            &format!("UPDATE {table} SET remark = ?2 WHERE number = ?1"),
            params![number, remark],
        )?;
        return Ok(false);
    }
    conn.execute(
        &format!("INSERT INTO {table} (number, remark, added_at_ms) VALUES (?1, ?2, ?3)"),
        params![number, remark, now_ms],
    )?;
    Ok(true)
}

fn entries(conn: &Connection, kind: ListKind) -> Result<Vec<ListEntry>, StoreError> {
    let sql = format!(
        "SELECT number, remark, added_at_ms FROM {} ORDER BY number",
        kind.table()
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| {
        Ok(ListEntry {
            number: r.get(0)?,
            remark: r.get(1)?,
            added_at_ms: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Reader {
    /// Every entry of a list, by number.
    pub fn list_entries(&self, kind: ListKind) -> Result<Vec<ListEntry>, StoreError> {
        entries(&self.conn, kind)
    }

    /// Goes up with every change to either list.
    pub fn list_generation(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT generation FROM list_generation", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> (tempfile::TempDir, ListAdmin) {
        let dir = tempfile::tempdir().unwrap();
        let admin = ListAdmin::open(&dir.path().join("denwa.sqlite")).unwrap();
        (dir, admin)
    }

    #[test]
    fn numbers_keep_digits_only() {
        assert_eq!(list_number(" 03-1234-5678 ").unwrap(), "0312345678");
        assert_eq!(list_number("+81 (3) 1234").unwrap(), "8131234");
        assert!(list_number("").unwrap_err().contains("empty"));
        assert!(list_number("03x1").unwrap_err().contains("not digits only"));
        assert!(list_number(&"1".repeat(33)).unwrap_err().contains("longer"));
    }

    #[test]
    fn add_update_remove_and_the_generation() {
        let (dir, admin) = admin();
        let reader = Reader::open(&dir.path().join("denwa.sqlite")).unwrap();
        let g0 = reader.list_generation().unwrap();
        assert!(admin
            .add(ListKind::Blocked, "0312345678", "spam", 5)
            .unwrap());
        assert!(!admin
            .add(ListKind::Blocked, "03-1234-5678", "spam again", 6)
            .unwrap());
        assert!(admin
            .add(ListKind::Restricted, "0990000000", "", 7)
            .unwrap());
        assert!(reader.list_generation().unwrap() >= g0 + 3);
        let blocked = reader.list_entries(ListKind::Blocked).unwrap();
        assert_eq!(
            blocked,
            [ListEntry {
                number: "0312345678".into(),
                remark: "spam again".into(),
                added_at_ms: 5,
            }]
        );
        assert!(admin.remove(ListKind::Blocked, "0312345678").unwrap());
        assert!(!admin.remove(ListKind::Blocked, "0312345678").unwrap());
        assert!(reader.list_entries(ListKind::Blocked).unwrap().is_empty());
        assert_eq!(reader.list_entries(ListKind::Restricted).unwrap().len(), 1);
        assert!(admin.add(ListKind::Blocked, "abc", "", 1).is_err());
    }

    #[test]
    fn csv_import_reports_every_row() {
        let (_dir, mut admin) = admin();
        let csv = "name,number,remark\n\
                   a,0312345678,premium\n\
                   b,03-9999-0000,\n\
                   c,not a number,x\n\
                   d,0312345678,twice\n\
                   e,0120\n\
                   f,\"09011112222\",\"quoted, with comma\"\n";
        let layout = CsvLayout {
            header: true,
            columns: 3,
            number_column: 2,
            remark_column: Some(3),
        };
        let report = admin
            .import_csv(ListKind::Restricted, csv.as_bytes(), layout, 9)
            .unwrap();
        let got: Vec<(u64, RowOutcome)> = report.into_iter().map(|r| (r.line, r.outcome)).collect();
        assert_eq!(
            got,
            [
                (2, RowOutcome::Added("0312345678".into())),
                (3, RowOutcome::Added("0399990000".into())),
                (
                    4,
                    RowOutcome::Rejected("`not a number` is not digits only".into())
                ),
                (5, RowOutcome::Updated("0312345678".into())),
                (6, RowOutcome::Rejected("2 columns, expected 3".into())),
                (7, RowOutcome::Added("09011112222".into())),
            ]
        );
        let entries = admin.entries(ListKind::Restricted).unwrap();
        let remarks: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| (e.number.as_str(), e.remark.as_str()))
            .collect();
        assert_eq!(
            remarks,
            [
                ("0312345678", "twice"),
                ("0399990000", ""),
                ("09011112222", "quoted, with comma"),
            ]
        );
    }

    #[test]
    fn csv_without_header_and_a_single_column() {
        let (_dir, mut admin) = admin();
        let layout = CsvLayout {
            header: false,
            columns: 1,
            number_column: 1,
            remark_column: None,
        };
        let report = admin
            .import_csv(
                ListKind::Blocked,
                "0311112222\n0322223333\n".as_bytes(),
                layout,
                1,
            )
            .unwrap();
        assert_eq!(report.len(), 2);
        assert!(report
            .iter()
            .all(|r| matches!(r.outcome, RowOutcome::Added(_))));
        assert_eq!(admin.entries(ListKind::Blocked).unwrap().len(), 2);
    }
}
