//! CSV export of statistics tables (RFC 4180: comma-separated, CRLF line
//! ends, a field quoted when it holds a comma, quote or line break).
//!
//! What this module must not do: compute statistics; a table row says
//! what its columns are through [`CsvRow`].

/// A row of a statistics table that can be written as CSV.
pub trait CsvRow {
    /// Column names, in order.
    const HEADER: &'static [&'static str];
    /// The row's fields, as many as [`CsvRow::HEADER`].
    fn fields(&self) -> Vec<String>;
}

/// The table as CSV text with a header line.
pub fn to_csv<R: CsvRow>(rows: &[R]) -> String {
    let mut out = String::new();
    write_line(&mut out, R::HEADER.iter().map(|h| h.to_string()));
    for row in rows {
        write_line(&mut out, row.fields().into_iter());
    }
    out
}

fn write_line(out: &mut String, fields: impl Iterator<Item = String>) {
    for (i, field) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&field);
        }
    }
    out.push_str("\r\n");
}

/// A rate or average as CSV text: one decimal, empty when undefined.
pub fn decimal(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.1}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row(&'static str, u32);

    impl CsvRow for Row {
        const HEADER: &'static [&'static str] = &["name", "calls"];
        fn fields(&self) -> Vec<String> {
            vec![self.0.to_string(), self.1.to_string()]
        }
    }

    #[test]
    fn quotes_only_what_needs_quoting() {
        let csv = to_csv(&[Row("sales", 3), Row("a \"b\", c", 4), Row("x\ny", 0)]);
        assert_eq!(
            csv,
            "name,calls\r\nsales,3\r\n\"a \"\"b\"\", c\",4\r\n\"x\ny\",0\r\n"
        );
        assert_eq!(decimal(Some(66.666)), "66.7");
        assert_eq!(decimal(None), "");
    }
}
