//! `denwa list`: the inbound blocklist and the outbound restriction list
//! from the command line: add, remove, show, and bulk CSV import with a
//! report line per row. Writes the database of the configuration's data
//! directory directly; a running denwa picks the change up within a
//! second.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Subcommand, ValueEnum};

use crate::store::lists::{CsvLayout, ListAdmin, ListKind, RowOutcome};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ListName {
    /// Callers rejected before anything rings.
    Blocked,
    /// Numbers extensions may never dial.
    Restricted,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum YesNo {
    Yes,
    No,
}

#[derive(Debug, Subcommand)]
pub enum ListAction {
    /// Add a number (digits; spaces, '-' and a leading '+' are dropped),
    /// or change its remark.
    Add {
        number: String,
        #[arg(long, default_value = "")]
        remark: String,
    },
    /// Remove a number.
    Remove { number: String },
    /// Print every number with its remark.
    Show,
    /// Import numbers from a CSV file; prints what happened to each row.
    Import {
        file: PathBuf,
        /// Whether the first row is a header (skipped).
        #[arg(long, value_enum)]
        header: YesNo,
        /// How many columns every row has.
        #[arg(long)]
        columns: usize,
        /// Which column (1-based) holds the number.
        #[arg(long)]
        column: usize,
        /// Which column (1-based) holds the remark, if any.
        #[arg(long)]
        remark_column: Option<usize>,
    },
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Run one `denwa list` command against the database at `database`.
pub fn run(database: PathBuf, list: ListName, action: ListAction) -> ExitCode {
    let kind = match list {
        ListName::Blocked => ListKind::Blocked,
        ListName::Restricted => ListKind::Restricted,
    };
    if let Some(dir) = database.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("denwa: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    let mut admin = match ListAdmin::open(&database) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("denwa: {}: {e}", database.display());
            return ExitCode::FAILURE;
        }
    };
    match execute(&mut admin, kind, action) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("denwa: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(admin: &mut ListAdmin, kind: ListKind, action: ListAction) -> Result<ExitCode, String> {
    let name = kind.as_str();
    match action {
        ListAction::Add { number, remark } => {
            let added = admin
                .add(kind, &number, &remark, now_ms())
                .map_err(|e| format!("{number}: {e}"))?;
            let what = if added { "added to" } else { "updated in" };
            println!("{number}: {what} the {name}");
        }
        ListAction::Remove { number } => {
            let digits = crate::store::lists::list_number(&number)?;
            if !admin.remove(kind, &digits).map_err(|e| e.to_string())? {
                eprintln!("{number}: not on the {name}");
                return Ok(ExitCode::FAILURE);
            }
            println!("{number}: removed from the {name}");
        }
        ListAction::Show => {
            for e in admin.entries(kind).map_err(|e| e.to_string())? {
                println!("{}\t{}", e.number, e.remark);
            }
        }
        ListAction::Import {
            file,
            header,
            columns,
            column,
            remark_column,
        } => {
            let bad = |c: usize| c == 0 || c > columns;
            if columns == 0 || bad(column) || remark_column.is_some_and(bad) {
                return Err("--column and --remark-column must lie between 1 and --columns".into());
            }
            let input =
                std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let layout = CsvLayout {
                header: matches!(header, YesNo::Yes),
                columns,
                number_column: column,
                remark_column,
            };
            let report = admin
                .import_csv(kind, input, layout, now_ms())
                .map_err(|e| e.to_string())?;
            let (mut added, mut updated, mut rejected) = (0, 0, 0);
            for row in &report {
                match &row.outcome {
                    RowOutcome::Added(n) => {
                        added += 1;
                        println!("line {}: added {n}", row.line);
                    }
                    RowOutcome::Updated(n) => {
                        updated += 1;
                        println!("line {}: already listed, remark updated: {n}", row.line);
                    }
                    RowOutcome::Rejected(why) => {
                        rejected += 1;
                        println!("line {}: rejected: {why}", row.line);
                    }
                }
            }
            println!("{added} added, {updated} updated, {rejected} rejected");
        }
    }
    Ok(ExitCode::SUCCESS)
}
