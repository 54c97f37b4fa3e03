//! Verifying the chain: every line's `prev` is the SHA-256 of the line before it.
//!
//! The verifier streams: it hashes each line's raw bytes and parses only the few fields
//! it needs (borrowed where the JSON has no escapes), so it runs at disk speed on logs
//! far larger than memory.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::display::escape_for_terminal;
use crate::record::{ZERO_HASH, event};

/// What an intact log holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Lines (records), the anchor included.
    pub records: u64,
    pub bytes: u64,
    /// Records per writer (`shim`, `installer`, ...).
    pub writers: BTreeMap<String, u64>,
    /// Records per event.
    pub events: BTreeMap<String, u64>,
    /// Node names seen.
    pub nodes: BTreeSet<String>,
    /// `time` of the first record (the anchor: when the log was created).
    pub first_time: Option<String>,
    /// `time` of the last record.
    pub last_time: Option<String>,
    /// Hex SHA-256 of the last line. An auditor who writes this down can later prove the
    /// log still holds that line unchanged (`verify_pins`): the chain cannot show an
    /// edit of the last line or the loss of lines at the end by itself.
    pub last_hash: String,
    /// Hex SHA-256 of the first line, the anchor. Pinned, it proves later that the log was
    /// not rewritten from scratch (a rewritten log has a new anchor).
    pub anchor_hash: String,
    /// The anchor's `node` (empty if it names none).
    pub anchor_node: String,
    /// The latest line proven by a pin, when verifying with pins: it and every line
    /// before it are exactly as they were when pinned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned_line: Option<u64>,
    /// The line each pin was found at, in the order the pins were given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pinned_lines: Vec<u64>,
}

impl Summary {
    /// Records proven by a pin (every line up to `pinned_line`), and records after it that
    /// no pin proves: `None` when no pin was given.
    pub fn proven(&self) -> Option<(u64, u64)> {
        self.pinned_line.map(|l| (l, self.records - l))
    }
}

/// A hash kept off the node, to check the log against later: `HASH` (the line with that
/// SHA-256, wherever it is) or `LINE:HASH` (line `LINE` must have it), as `warden audit
/// head` prints it.
///
/// A line's hash covers its `prev`, so a pinned line proves every line before it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    /// 1-based line number, when known.
    pub line: Option<u64>,
    pub hash: [u8; 32],
}

/// A `--pin` that is neither `HASH` nor `LINE:HASH`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a pin: expected HASH or LINE:HASH, with HASH 64 hex digits and LINE a line number from 1"
)]
pub struct PinParseError(pub String);

impl std::str::FromStr for Pin {
    type Err = PinParseError;

    fn from_str(s: &str) -> Result<Pin, PinParseError> {
        let bad = || PinParseError(s.to_owned());
        let (line, hash) = match s.split_once(':') {
            Some((l, h)) => {
                if !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                match l.parse::<u64>() {
                    Ok(l) if l > 0 => (Some(l), h),
                    _ => return Err(bad()),
                }
            }
            None => (None, s),
        };
        let mut bytes = [0u8; 32];
        if hash.len() != 64 || hex::decode_to_slice(hash, &mut bytes).is_err() {
            return Err(bad());
        }
        Ok(Pin { line, hash: bytes })
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{l}:{}", hex::encode(self.hash)),
            None => f.write_str(&hex::encode(self.hash)),
        }
    }
}

/// The first problem found, and on which 1-based line.
///
/// `line` is 0 when the log could not be opened at all.
#[derive(Debug)]
pub struct VerifyError {
    pub line: u64,
    pub kind: VerifyErrorKind,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "line {}: {}", self.line, self.kind)
        }
    }
}

impl std::error::Error for VerifyError {}

/// Kinds of problems `verify` reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum VerifyErrorKind {
    /// The log could not be read.
    Io(io::Error),
    /// The log has no lines at all.
    Empty,
    /// The line is not a JSON object.
    NotJson { detail: String },
    /// The line is the start of a record that was cut off (a torn write), and later lines
    /// follow it.
    Torn,
    /// The last line has no trailing newline: a write was cut off, or the log was cut.
    TruncatedLastLine,
    /// The record has no `prev`, or it is not 64 hex digits.
    MissingPrev,
    /// The first line is not an anchor record with `prev` all zeros.
    AnchorMissing { detail: String },
    /// The line's `prev` is not the hash of the line before it.
    ChainBroken(ChainBreak),
    /// No line has the pinned hash: the pinned line was changed or removed.
    PinNotFound { pin: String },
    /// The pinned line number holds a line with another hash (the error's line).
    PinMismatch { pin: String, found: String },
    /// The log ends before the pinned line number.
    PinBeyondEnd { pin: String, last: u64 },
}

/// The best explanation for a broken chain at line `n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainBreak {
    /// `prev` matches no other line: line `n-1` was changed after it was written, or lines
    /// between `n-1` and `n` were removed (or `n`'s own `prev` was changed).
    EditedOrRemoved { previous: u64 },
    /// `prev` is the hash of a later line `after`: lines were swapped or moved.
    Reordered { after: u64 },
    /// `prev` is the hash of an earlier line: lines `first..=last` do not belong between it
    /// and line `n` (inserted, or moved there from elsewhere).
    Inserted { first: u64, last: u64 },
}

impl fmt::Display for VerifyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyErrorKind::Io(e) => write!(f, "cannot read the log: {e}"),
            VerifyErrorKind::Empty => f.write_str("the log is empty (no anchor record)"),
            VerifyErrorKind::NotJson { detail } => write!(f, "not a JSON record: {detail}"),
            VerifyErrorKind::Torn => f.write_str(
                "truncated record (a torn write: the line was cut off and later records follow it)",
            ),
            VerifyErrorKind::TruncatedLastLine => f.write_str(
                "truncated last line (no trailing newline: a write was cut off or the log was cut)",
            ),
            VerifyErrorKind::MissingPrev => {
                f.write_str("missing or malformed 'prev' (expected 64 hex digits)")
            }
            VerifyErrorKind::AnchorMissing { detail } => write!(f, "anchor missing: {detail}"),
            VerifyErrorKind::ChainBroken(b) => write!(f, "chain broken: {b}"),
            VerifyErrorKind::PinNotFound { pin } => write!(
                f,
                "no line has the pinned hash {pin}: that line was changed or removed (or the log was cut before it, or rewritten from scratch)"
            ),
            VerifyErrorKind::PinMismatch { pin, found } => write!(
                f,
                "not the pinned line: its hash is {found}, the pin is {pin}: this line was changed, or the log was rewritten from scratch"
            ),
            VerifyErrorKind::PinBeyondEnd { pin, last } => write!(
                f,
                "the pinned line {pin} is gone: the log ends at line {last} (lines were cut from the end, or the log was rewritten from scratch)"
            ),
        }
    }
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainBreak::EditedOrRemoved { previous } => write!(
                f,
                "its prev is not the hash of line {previous}: line {previous} was changed after it was written, or lines after it were removed"
            ),
            ChainBreak::Reordered { after } => write!(
                f,
                "its prev is the hash of line {after}, which comes later: lines were reordered (this line belongs after line {after})"
            ),
            ChainBreak::Inserted { first, last } if first == last => write!(
                f,
                "its prev is the hash of line {}: line {first} does not belong here (inserted or moved)",
                first - 1
            ),
            ChainBreak::Inserted { first, last } => write!(
                f,
                "its prev is the hash of line {}: lines {first}-{last} do not belong here (inserted or moved)",
                first - 1
            ),
        }
    }
}

/// The fields verify needs; everything else in the line is skipped by the parser.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    prev: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    writer: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    node: Option<Cow<'a, str>>,
}

/// How many earlier line hashes to remember for explaining a break (inserted lines).
const WINDOW: usize = 4096;
/// How many later lines to read for explaining a break (reordered lines).
const LOOKAHEAD: u64 = 1_000_000;

/// Verifies a whole log read from `reader`.
pub fn verify<R: Read>(reader: R) -> Result<Summary, VerifyError> {
    verify_inner(reader, &[])
}

/// Like [`verify`], and also requires that some line hashes to `pin` (hex, or
/// `LINE:HASH`), as printed earlier in a summary's `last_hash`: proves that line is still
/// there, unchanged, and every line before it.
pub fn verify_pinned<R: Read>(reader: R, pin: &str) -> Result<Summary, VerifyError> {
    match pin.parse::<Pin>() {
        Ok(p) => verify_inner(reader, &[p]),
        Err(_) => Err(VerifyError {
            line: 0,
            kind: VerifyErrorKind::PinNotFound {
                pin: format!("{} (not 64 hex digits)", escape_for_terminal(pin)),
            },
        }),
    }
}

/// Like [`verify`], and also requires every pin to be found (see [`Pin`]). The summary's
/// `pinned_line` is the latest pinned line: it and all lines before it are proven; lines
/// after it are proven by no pin (whoever can write the file could have written them).
pub fn verify_pins<R: Read>(reader: R, pins: &[Pin]) -> Result<Summary, VerifyError> {
    verify_inner(reader, pins)
}

/// Opens and verifies the log at `path`.
pub fn verify_file(path: impl AsRef<Path>, pin: Option<&str>) -> Result<Summary, VerifyError> {
    let file = open_for_verify(path.as_ref())?;
    match pin {
        Some(p) => verify_pinned(file, p),
        None => verify(file),
    }
}

/// Opens the log at `path` and verifies it against `pins` (none: the chain only).
pub fn verify_file_pins(path: impl AsRef<Path>, pins: &[Pin]) -> Result<Summary, VerifyError> {
    verify_inner(open_for_verify(path.as_ref())?, pins)
}

fn open_for_verify(path: &Path) -> Result<std::fs::File, VerifyError> {
    let failed = |error| VerifyError {
        line: 0,
        kind: VerifyErrorKind::Io(error),
    };
    crate::append::open_for_reading(path).map_err(|e| match e {
        crate::AuditError::Io { error, .. } => failed(error),
        other => failed(io::Error::other(other.to_string())),
    })
}

fn verify_inner<R: Read>(reader: R, pins: &[Pin]) -> Result<Summary, VerifyError> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut sum = Summary::default();
    let mut line = Vec::with_capacity(4096);
    let mut prev_hash = [0u8; 32];
    let mut recent: VecDeque<[u8; 32]> = VecDeque::with_capacity(WINDOW);
    let mut n: u64 = 0;
    let mut found: Vec<Option<u64>> = vec![None; pins.len()];
    let err = |line: u64, kind| Err(VerifyError { line, kind });
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| VerifyError {
                line: n + 1,
                kind: VerifyErrorKind::Io(e),
            })?;
        if read == 0 {
            break;
        }
        n += 1;
        sum.bytes += read as u64;
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
        } else {
            return err(n, VerifyErrorKind::TruncatedLastLine);
        }
        let head: Head<'_> = match serde_json::from_slice(&line) {
            Ok(h) => h,
            Err(e) if e.is_eof() && line.first() == Some(&b'{') => {
                return err(n, VerifyErrorKind::Torn);
            }
            Err(e) => {
                return err(
                    n,
                    VerifyErrorKind::NotJson {
                        detail: e.to_string(),
                    },
                );
            }
        };
        let mut prev = [0u8; 32];
        match head.prev.as_deref() {
            Some(p) if hex::decode_to_slice(p, &mut prev).is_ok() => {}
            _ => return err(n, VerifyErrorKind::MissingPrev),
        }
        if n == 1 {
            let ev = head.event.as_deref().unwrap_or("");
            if ev != event::ANCHOR {
                return err(
                    n,
                    VerifyErrorKind::AnchorMissing {
                        detail: format!(
                            "the first line is a '{}' record, not an anchor: the start of the log was removed or replaced",
                            escape_for_terminal(ev)
                        ),
                    },
                );
            }
            if head.prev.as_deref() != Some(ZERO_HASH) {
                return err(
                    n,
                    VerifyErrorKind::AnchorMissing {
                        detail: "the anchor's prev is not all zeros: the start of the log was removed or replaced".into(),
                    },
                );
            }
        } else if prev != prev_hash {
            let explanation = explain(&prev, n, &recent, &mut reader);
            return err(n, VerifyErrorKind::ChainBroken(explanation));
        }
        prev_hash = Sha256::digest(&line).into();
        if n == 1 {
            sum.anchor_hash = hex::encode(prev_hash);
            sum.anchor_node = head.node.as_deref().unwrap_or("").to_owned();
        }
        for (pin, at) in pins.iter().zip(found.iter_mut()) {
            match pin.line {
                Some(l) if l == n && pin.hash != prev_hash => {
                    return err(
                        n,
                        VerifyErrorKind::PinMismatch {
                            pin: pin.to_string(),
                            found: hex::encode(prev_hash),
                        },
                    );
                }
                Some(l) if l != n => {}
                _ if at.is_none() && pin.hash == prev_hash => *at = Some(n),
                _ => {}
            }
        }
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back(prev_hash);
        count(&mut sum.writers, head.writer.as_deref().unwrap_or(""));
        count(&mut sum.events, head.event.as_deref().unwrap_or(""));
        if let Some(node) = head.node.as_deref()
            && !sum.nodes.contains(node)
        {
            sum.nodes.insert(node.to_owned());
        }
        if let Some(t) = head.time {
            if sum.first_time.is_none() {
                sum.first_time = Some(t.clone().into_owned());
            }
            // Keep the buffer allocated; most lines carry a time.
            let last = sum.last_time.get_or_insert_with(String::new);
            last.clear();
            last.push_str(&t);
        }
    }
    if n == 0 {
        return err(1, VerifyErrorKind::Empty);
    }
    sum.records = n;
    sum.last_hash = hex::encode(prev_hash);
    for (pin, at) in pins.iter().zip(&found) {
        match (at, pin.line) {
            (Some(l), _) => sum.pinned_lines.push(*l),
            (None, Some(l)) => {
                return err(
                    l,
                    VerifyErrorKind::PinBeyondEnd {
                        pin: pin.to_string(),
                        last: n,
                    },
                );
            }
            (None, None) => {
                return err(
                    n,
                    VerifyErrorKind::PinNotFound {
                        pin: pin.to_string(),
                    },
                );
            }
        }
    }
    sum.pinned_line = sum.pinned_lines.iter().copied().max();
    Ok(sum)
}

fn count(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(c) => *c += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// Line `n` carries `prev`, which is not the hash of line `n-1`. Look for the line it does
/// hash to: among recent earlier lines (lines were inserted before `n`), else among later
/// lines (line `n` was moved up: reordered), else it matches nothing we can see (an edit,
/// or removed lines).
fn explain<R: Read>(
    prev: &[u8; 32],
    n: u64,
    recent: &VecDeque<[u8; 32]>,
    reader: &mut BufReader<R>,
) -> ChainBreak {
    // recent[len-1] is line n-1, recent[len-1-k] is line n-1-k.
    if let Some(k) = recent.iter().rev().position(|h| h == prev) {
        let matched = n - 1 - k as u64;
        return ChainBreak::Inserted {
            first: matched + 1,
            last: n - 1,
        };
    }
    let mut line = Vec::new();
    let mut m = n;
    while m < n + LOOKAHEAD {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        m += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if Sha256::digest(&line).as_slice() == prev {
            return ChainBreak::Reordered { after: m };
        }
    }
    ChainBreak::EditedOrRemoved { previous: n - 1 }
}
