//! Maps byte offsets in the policy text back to lines and key paths.
//!
//! serde reports *where* something went wrong as a byte span; a node admin needs the line
//! and the key. The spanned document (`DeTable`) knows every key's and value's span, so the
//! deepest entry containing an offset is the key to name. Tables opened by a `[header]`
//! have their keys far from the header's span, so the search walks the whole tree rather
//! than descending only into containing spans.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::Seg;

pub(crate) struct Doc<'i> {
    text: &'i str,
    root: Spanned<DeTable<'i>>,
}

impl<'i> Doc<'i> {
    pub(crate) fn parse(text: &'i str) -> Result<Self, toml::de::Error> {
        Ok(Doc {
            text,
            root: DeTable::parse(text)?,
        })
    }

    /// 1-based line of a byte offset.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// The deepest key path whose key or value span contains the start of `span`.
    ///
    /// An empty span at offset 0 is what serde gives for the document itself (for example
    /// a missing top-level key): that is the top level, not the first table.
    pub(crate) fn path_at(&self, span: &Range<usize>) -> Vec<Seg> {
        if span.is_empty() && span.start == 0 {
            return Vec::new();
        }
        let mut best = Vec::new();
        let mut cur = Vec::new();
        walk_table(self.root.get_ref(), span.start, &mut cur, &mut best);
        best
    }

    /// The span of the key at `path` (for an array element, the element's span).
    pub(crate) fn span_of(&self, path: &[Seg]) -> Option<Range<usize>> {
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        let mut span = None;
        for seg in path {
            match seg {
                Seg::Key(k) => {
                    let table = match value {
                        None => self.root.get_ref(),
                        Some(v) => v.get_ref().as_table()?,
                    };
                    let (key, v) = table.get_key_value(k.as_str())?;
                    span = Some(key.span());
                    value = Some(v);
                }
                Seg::Index(i) => {
                    let v = value?.get_ref().as_array()?.get(*i)?;
                    span = Some(v.span());
                    value = Some(v);
                }
            }
        }
        span
    }
}

/// 1-based line of a byte offset in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && (offset < span.end || (span.is_empty() && offset == span.start))
}

fn walk_table(table: &DeTable<'_>, offset: usize, cur: &mut Vec<Seg>, best: &mut Vec<Seg>) {
    for (key, value) in table.iter() {
        cur.push(Seg::Key(key.get_ref().to_string()));
        if (contains(&key.span(), offset) || contains(&value.span(), offset))
            && cur.len() > best.len()
        {
            best.clone_from(cur);
        }
        walk_value(value, offset, cur, best);
        cur.pop();
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    offset: usize,
    cur: &mut Vec<Seg>,
    best: &mut Vec<Seg>,
) {
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, offset, cur, best),
        DeValue::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                cur.push(Seg::Index(i));
                if contains(&v.span(), offset) && cur.len() > best.len() {
                    best.clone_from(cur);
                }
                walk_value(v, offset, cur, best);
                cur.pop();
            }
        }
        _ => {}
    }
}
