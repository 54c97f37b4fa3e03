//! What the shim, the node CLI and the tests share, each in one place:
//!
//! - [`digest`]: the [`Digest`] type, `sha256:<64 lower-case hex>`;
//! - [`durable`]: durable, atomic file replacement (temp file, fsync, rename, directory
//!   fsync) and the sweeping of temp files a killed writer left;
//! - [`lock`]: `flock(2)` locks, and the installer's host lock;
//! - [`trusted_dir`]: which directories warden may write into;
//! - [`file_kind`]: a file type in words;
//! - [`input_file`]: reading an input file by type and size before trusting a byte of it;
//! - [`names`]: the annotation, runtime and default paths users see.
//!
//! It depends on no other crate of the workspace, so every one of them may depend on it.

pub mod digest;
pub mod durable;
pub mod file_kind;
pub mod input_file;
pub mod lock;
pub mod names;
pub mod trusted_dir;

pub use digest::{Digest, DigestError};
