//! Writing new keys the way the file around them is written.
//!
//! A new runtime entry copies the indentation of the runtime beside it (usually `runc`)
//! and its quoting ('literal' strings in files go-toml v2 wrote), so the diff a user
//! reviews in `warden plan` reads like a hand edit.

use toml_edit::{Array, Item, Table, TableLike, Value};

use super::edit::RUNTIME_NAME;
use warden_common::names::POD_ANNOTATIONS;

/// Indentation copied from a neighbouring runtime (usually `runc`).
#[derive(Debug, Default, Clone)]
pub struct Style {
    /// The neighbour writes strings 'literal' (go-toml v2 does, in version 3 files).
    pub literal_strings: bool,
    /// Before the entry's `[header]`.
    pub header_indent: String,
    /// Before each of the entry's keys.
    pub key_indent: String,
    /// Before the `[...options]` header.
    pub options_header_indent: String,
    /// Before each key of `options`.
    pub options_key_indent: String,
}

/// The whitespace after the last newline of a decor prefix: its indentation.
pub fn indent_of(prefix: Option<&toml_edit::RawString>) -> String {
    let raw = prefix.and_then(|p| p.as_str()).unwrap_or("");
    let last_line = raw.rsplit('\n').next().unwrap_or("");
    if last_line.chars().all(|c| c == ' ' || c == '\t') {
        last_line.to_owned()
    } else {
        String::new()
    }
}

pub fn first_key_indent(table: &Table) -> String {
    table
        .iter()
        .find(|(_, item)| item.is_value())
        .and_then(|(k, _)| table.key(k))
        .map(|k| indent_of(k.leaf_decor().prefix()))
        .unwrap_or_default()
}

pub fn sibling_style(runtimes: &dyn TableLike) -> Style {
    let sibling = runtimes.get("runc").and_then(Item::as_table).or_else(|| {
        runtimes
            .iter()
            .find_map(|(name, item)| (name != RUNTIME_NAME).then(|| item.as_table()).flatten())
    });
    let Some(sibling) = sibling else {
        return Style::default();
    };
    let options = sibling.get("options").and_then(Item::as_table);
    Style {
        literal_strings: is_literal(sibling.get("runtime_type")),
        header_indent: indent_of(sibling.decor().prefix()),
        key_indent: first_key_indent(sibling),
        options_header_indent: options
            .map(|o| indent_of(o.decor().prefix()))
            .unwrap_or_else(|| indent_of(sibling.decor().prefix())),
        options_key_indent: options
            .map(first_key_indent)
            .unwrap_or_else(|| first_key_indent(sibling)),
    }
}

/// Whether `item` is a string written 'literal'.
pub fn is_literal(item: Option<&Item>) -> bool {
    match item {
        Some(Item::Value(Value::String(s))) => s
            .as_repr()
            .and_then(|r| r.as_raw().as_str())
            .is_some_and(|raw| raw.starts_with('\'')),
        _ => false,
    }
}

/// A string value, 'literal' when the file's style is and `s` can be written so.
pub fn string(s: &str, literal: bool) -> Value {
    if literal
        && !s.contains(['\'', '\n', '\r'])
        && let Ok(mut value) = format!("'{s}'").parse::<Value>()
    {
        value.decor_mut().clear();
        return value;
    }
    s.into()
}

/// The pod annotations array, quoted in the file's style.
pub fn annotations(literal: bool) -> Value {
    let mut array = Array::new();
    array.push(string(POD_ANNOTATIONS, literal));
    Value::Array(array)
}
