//! Finds the line of a key in the TOML source so that validation errors can
//! say `file:line: key: message`.

use toml_edit::{ImDocument, Item, Table, TableLike};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(&'static str),
    Index(usize),
}

/// Line numbers (1-based) of keys in one TOML text.
pub struct Locator {
    doc: Option<ImDocument<String>>,
}

enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
}

impl<'a> Node<'a> {
    fn table_like(&self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(i) => i.as_table_like(),
            Node::Table(t) => Some(*t),
        }
    }
}

impl Locator {
    pub fn new(text: &str) -> Self {
        Locator {
            doc: ImDocument::parse(text.to_owned()).ok(),
        }
    }

    /// The line of the deepest part of `path` that exists in the document.
    pub fn line(&self, path: &[Seg]) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut node = Node::Item(doc.as_item());
        let mut best = None;
        for seg in path {
            node = match seg {
                Seg::Key(k) => {
                    let Some((key, item)) = node.table_like().and_then(|t| t.get_key_value(k))
                    else {
                        break;
                    };
                    best = key.span().map(|s| s.start).or(best);
                    Node::Item(item)
                }
                Seg::Index(i) => match node {
                    Node::Item(Item::ArrayOfTables(a)) => match a.get(*i) {
                        Some(t) => {
                            best = t.span().map(|s| s.start).or(best);
                            Node::Table(t)
                        }
                        None => break,
                    },
                    _ => break,
                },
            };
        }
        best.map(|offset| line_of(doc.raw(), offset))
    }
}

impl Locator {
    /// The dotted path of the key that starts at byte `offset`, if any
    /// (used to name the key of a serde error, which only has a span).
    pub fn key_at(&self, offset: usize) -> Option<String> {
        let doc = self.doc.as_ref()?;
        let mut path = Vec::new();
        find_key(doc.as_table(), offset, &mut path).then(|| path.join("."))
    }
}

fn find_key(table: &dyn TableLike, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, item) in table.iter() {
        path.push(key.to_owned());
        let starts_here = table
            .key(key)
            .and_then(|k| k.span())
            .is_some_and(|span| span.start == offset);
        if starts_here {
            return true;
        }
        let found = match item {
            Item::Table(t) => find_key(t, offset, path),
            Item::Value(toml_edit::Value::InlineTable(t)) => find_key(t, offset, path),
            Item::ArrayOfTables(a) => a.iter().enumerate().any(|(i, t)| {
                if let Some(last) = path.last_mut() {
                    *last = format!("{key}[{i}]");
                }
                find_key(t, offset, path)
            }),
            _ => false,
        };
        if found {
            return true;
        }
        path.pop();
    }
    false
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()
        .iter()
        .take(end)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}
