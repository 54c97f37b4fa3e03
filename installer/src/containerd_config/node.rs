//! Walking and changing the tables of a parsed config, standard and inline alike.
//!
//! containerd configs write the same table as a `[header]`, as dotted keys or inline
//! (`runtimes = { runc = { ... } }`); `toml_edit` gives each its own type. `Node` puts the
//! two table types behind one interface so the editor does not care how the user wrote
//! them, and new children always match their parent (an inline table can only hold inline
//! tables).

use std::path::Path;

use toml_edit::{DocumentMut, InlineTable, Item, Table, TableLike, Value};

use super::error::ConfigError;
use super::source::dotted;

/// A table being edited: a standard (or dotted) table, or an inline one. New children
/// follow the kind of their parent: an inline table can only hold inline tables.
pub enum Node<'a> {
    Std(&'a mut Table),
    Inline(&'a mut InlineTable),
}

impl<'a> Node<'a> {
    /// The child table `key`, created when absent (implicit, so it gets no header of its
    /// own); `None` when `key` holds something else than a table.
    pub fn child_or_create(self, key: &str) -> Option<Node<'a>> {
        match self {
            Node::Std(t) => {
                if !t.contains_key(key) {
                    let mut child = Table::new();
                    child.set_implicit(true);
                    t.insert(key, Item::Table(child));
                }
                match t.get_mut(key)? {
                    Item::Table(c) => Some(Node::Std(c)),
                    Item::Value(Value::InlineTable(c)) => Some(Node::Inline(c)),
                    _ => None,
                }
            }
            Node::Inline(t) => {
                if !t.contains_key(key) {
                    t.insert(key, Value::InlineTable(InlineTable::new()));
                }
                match t.get_mut(key)? {
                    Value::InlineTable(c) => Some(Node::Inline(c)),
                    _ => None,
                }
            }
        }
    }

    /// The existing child table `key`, if it is one.
    pub fn child(&mut self, key: &str) -> Option<Node<'_>> {
        let reborrowed = match self {
            Node::Std(t) => Node::Std(t),
            Node::Inline(t) => Node::Inline(t),
        };
        reborrowed.into_child(key)
    }

    /// The existing child table `key`, consuming the parent borrow.
    pub fn into_child(self, key: &str) -> Option<Node<'a>> {
        match self {
            Node::Std(t) => match t.get_mut(key)? {
                Item::Table(c) => Some(Node::Std(c)),
                Item::Value(Value::InlineTable(c)) => Some(Node::Inline(c)),
                _ => None,
            },
            Node::Inline(t) => match t.get_mut(key)? {
                Value::InlineTable(c) => Some(Node::Inline(c)),
                _ => None,
            },
        }
    }

    /// Resets the spacing `key` carries when it is part of a dotted path.
    pub fn clear_key_spacing(&mut self, key: &str) {
        let key = match self {
            Node::Std(t) => t.key_mut(key),
            Node::Inline(t) => t.key_mut(key),
        };
        if let Some(mut key) = key {
            key.dotted_decor_mut().clear();
        }
    }

    pub fn get(&self, key: &str) -> Option<&Item> {
        match self {
            Node::Std(t) => t.get(key),
            Node::Inline(t) => TableLike::get(&**t, key),
        }
    }

    /// Sets `key` to `value`. An existing value keeps its decor (spacing, trailing
    /// comment); a new key takes `indent` before it.
    pub fn set(&mut self, key: &str, mut value: Value, indent: &str) {
        match self {
            Node::Std(t) => match t.get_mut(key) {
                Some(Item::Value(old)) => {
                    *value.decor_mut() = old.decor().clone();
                    *old = value;
                }
                _ => {
                    t.insert(key, Item::Value(value));
                    if let Some(mut k) = t.key_mut(key) {
                        k.leaf_decor_mut().set_prefix(indent);
                    }
                }
            },
            Node::Inline(t) => match t.get_mut(key) {
                Some(old) => {
                    *value.decor_mut() = old.decor().clone();
                    *old = value;
                }
                None => {
                    t.insert(key, value);
                }
            },
        }
    }

    pub fn remove(&mut self, key: &str) -> bool {
        match self {
            Node::Std(t) => t.remove(key).is_some(),
            Node::Inline(t) => {
                let was_last = t.iter().last().is_some_and(|(k, _)| k == key);
                let Some(removed) = t.remove(key) else {
                    return false;
                };
                // Give the space before `}` back to the value that is now last.
                if let (true, Some(suffix)) = (was_last, removed.decor().suffix())
                    && let Some((_, last)) = t.iter_mut().last()
                {
                    last.decor_mut().set_suffix(suffix.clone());
                }
                true
            }
        }
    }
}

/// Walks `segments` from the root, creating missing tables.
pub fn ensure_tables<'d>(
    path: &Path,
    doc: &'d mut DocumentMut,
    segments: &[&str],
) -> Result<Node<'d>, ConfigError> {
    let mut current = Node::Std(doc.as_table_mut());
    for (depth, segment) in segments.iter().enumerate() {
        current = current
            .child_or_create(segment)
            .ok_or_else(|| ConfigError::WrongType {
                path: path.to_path_buf(),
                key: dotted(&segments[..=depth]),
                expected: "a table",
                found: "not a table",
            })?;
    }
    Ok(current)
}

/// Resets the spacing around the keys on the path to `runtimes` (`[ a . b ]` becomes
/// `[a.b]`), so that the header of a new table is written plainly. Lines that already
/// exist keep their spelling through `preserve::carry_over`.
pub fn normalize_path_keys(doc: &mut DocumentMut, segments: &[&str]) {
    let mut current = Node::Std(doc.as_table_mut());
    for segment in segments {
        current.clear_key_spacing(segment);
        match current.into_child(segment) {
            Some(next) => current = next,
            None => return,
        }
    }
}
