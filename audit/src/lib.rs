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
//! the last line is unchanged or that nothing was cut from the end. For that an auditor
//! pins the last line's hash (`Summary::last_hash`) and checks later with
//! [`verify_pinned`].
//!
//! A flood of records from one source is bounded with a [`Throttle`].

mod append;
mod record;
mod throttle;
mod verify;

pub use append::{AuditError, Chain, append, append_to_file, open};
pub use record::{DEFAULT_AUDIT_LOG, Record, ZERO_HASH, event, node_name, now_rfc3339, writer};
pub use throttle::{Admit, DEFAULT_MAX_PER_WINDOW, DEFAULT_WINDOW, Throttle};
pub use verify::{
    ChainBreak, Summary, VerifyError, VerifyErrorKind, verify, verify_file, verify_pinned,
};
