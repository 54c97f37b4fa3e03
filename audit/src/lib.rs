//! warden's audit log: JSON Lines, one event a line, each line carrying the SHA-256 of the
//! line before it, so that an edited, removed or reordered line is detected by
//! [`verify`].
//!
//! Both the shim and the node CLI append to the same file ([`append`]); an exclusive
//! `flock` keeps their records whole and the chain linear. The first line of a log is an
//! `anchor` record naming the node and when the log was created; its `prev` is all zeros.
//!
//! What the chain proves: every line but the last is exactly as written and in order,
//! and nothing was removed from the start or the middle. What it cannot prove alone: that
//! the last line is unchanged, that nothing was cut from the end, that lines appended
//! with a correct `prev` were written by warden, or that the whole log was not rewritten
//! from scratch (a new anchor and a new chain). Whoever can write the file (root on the
//! node) can do all of these. For that an auditor keeps hashes off the node ([`Pin`]s:
//! the anchor's and the last line's, `Summary::anchor_hash` and `Summary::last_hash`) and
//! checks later with [`verify_pins`]: every line up to the latest pinned one is then
//! proven; lines after it are not proven by anything.
//!
//! Text from a record reaches a terminal only through [`escape_for_terminal`] (or
//! [`escape_json_for_terminal`]); a flood of records from one source is bounded with a
//! [`Throttle`].

mod append;
mod display;
mod record;
mod throttle;
mod verify;

pub use append::{AuditError, Chain, append, append_to_file, open, open_for_reading};
pub use display::{escape_for_terminal, escape_json_for_terminal, is_unsafe_for_terminal};
pub use record::{Record, ZERO_HASH, event, node_name, now_rfc3339, writer};
pub use throttle::{Admit, DEFAULT_MAX_PER_WINDOW, DEFAULT_WINDOW, Throttle};
pub use verify::{
    ChainBreak, Pin, PinParseError, Summary, VerifyError, VerifyErrorKind, verify, verify_file,
    verify_file_pins, verify_pinned, verify_pins,
};
