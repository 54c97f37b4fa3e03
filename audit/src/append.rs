//! Appending to the log: locked, chained, one `write(2)` per record, fsync'd.
//!
//! The shim and the installer are separate processes that may write at the same moment,
//! and each record's `prev` depends on the line before it. So the whole read-last-line,
//! hash, write sequence runs under an exclusive `flock(2)` on the log file. The line is
//! built in memory and handed to the kernel in one `write` on an `O_APPEND` descriptor, so
//! a reader never sees two records interleaved, and a crash leaves at most one torn line at
//! the end, which the next append steps over (it starts on a fresh line) and `verify`
//! reports.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use warden_common::lock::Flock;

use crate::record::{Record, node_name, now_rfc3339};

/// Why a record could not be written. The shim refuses a workload it cannot audit, and
/// shows this message, so each variant says which log and what went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// No space left on the device (or quota exhausted).
    #[error("audit log {target}: cannot {op}: no space left on device")]
    Full { target: String, op: &'static str },
    /// The log lives on a read-only file system.
    #[error("audit log {target}: cannot {op}: read-only file system")]
    ReadOnly { target: String, op: &'static str },
    /// Not allowed to create, open or write it.
    #[error("audit log {target}: cannot {op}: permission denied")]
    PermissionDenied { target: String, op: &'static str },
    /// Any other I/O failure.
    #[error("audit log {target}: cannot {op}: {error}")]
    Io {
        target: String,
        op: &'static str,
        error: io::Error,
    },
    /// A descriptor handed to [`append_to_file`] that cannot append safely: it must be
    /// open read-write (to read the last line) and `O_APPEND` (so the write lands at the
    /// end even if another process appended since).
    #[error("audit log {target}: unusable descriptor: {reason}")]
    BadDescriptor {
        target: String,
        reason: &'static str,
    },
    /// The log path names something other than a regular file (a symlink, a FIFO, a
    /// device, a socket, a directory): never followed, opened or written.
    #[error("audit log {target} is {what}; refusing (the audit log must be a regular file)")]
    NotRegularFile { target: String, what: &'static str },
    /// The record could not be encoded as JSON (should not happen with plain strings).
    #[error("audit log {target}: cannot encode the record: {error}")]
    Encode {
        target: String,
        error: serde_json::Error,
    },
}

impl AuditError {
    fn io(target: &str, op: &'static str, error: io::Error) -> AuditError {
        let target = target.to_owned();
        match error.raw_os_error() {
            Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() => {
                AuditError::Full { target, op }
            }
            Some(code) if code == rustix::io::Errno::DQUOT.raw_os_error() => {
                AuditError::Full { target, op }
            }
            Some(code) if code == rustix::io::Errno::ROFS.raw_os_error() => {
                AuditError::ReadOnly { target, op }
            }
            Some(code)
                if code == rustix::io::Errno::ACCESS.raw_os_error()
                    || code == rustix::io::Errno::PERM.raw_os_error() =>
            {
                AuditError::PermissionDenied { target, op }
            }
            _ => AuditError::Io { target, op, error },
        }
    }
}

/// The running hash chain: what the next line's `prev` must be.
///
/// `append` uses it under the lock; tests and tools use it to build logs in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    prev: [u8; 32],
}

impl Chain {
    /// The chain of an empty log: the next line is the anchor, with `prev` all zeros.
    pub fn start() -> Chain {
        Chain { prev: [0; 32] }
    }

    /// The chain after a line (its bytes without the newline).
    pub fn after_line(line: &[u8]) -> Chain {
        Chain {
            prev: Sha256::digest(line).into(),
        }
    }

    /// Hex of the `prev` the next line will carry.
    pub fn prev_hex(&self) -> String {
        hex::encode(self.prev)
    }

    /// Sets `rec.prev`, serializes it, appends the line and its newline to `out`, and
    /// advances the chain past it.
    pub fn encode_into(
        &mut self,
        rec: &mut Record,
        out: &mut Vec<u8>,
    ) -> Result<(), serde_json::Error> {
        rec.prev = self.prev_hex();
        let start = out.len();
        serde_json::to_writer(&mut *out, rec)?;
        self.prev = Sha256::digest(&out[start..]).into();
        out.push(b'\n');
        Ok(())
    }
}

/// Appends `rec` to the log at `path`, creating the directory and the file (mode 0640)
/// if needed, and an anchor line first if the log is empty.
///
/// Sets `rec.prev` (and `rec.time` if it was empty). Returns after the line is on disk.
pub fn append(path: impl AsRef<Path>, rec: &mut Record) -> Result<(), AuditError> {
    let path = path.as_ref();
    let file = open(path)?;
    append_locked(&file, &path.display().to_string(), rec)
}

/// Opens the log at `path` read-write with `O_APPEND`, creating its directory (0750) and
/// the file (0640) if needed: the descriptor [`append_to_file`] expects. The shim opens the
/// log this way on the host and hands the descriptor to the container process.
///
/// Only a regular file is accepted: a symlink at `path` is not followed (`O_NOFOLLOW`), and
/// a FIFO, device, socket or directory is refused ([`AuditError::NotRegularFile`]) without
/// blocking on it (`O_NONBLOCK`, then `fstat`). A new log is created with `O_EXCL`, so a
/// file or symlink planted at `path` in the meantime is never taken for ours: it is opened
/// (and checked) as an existing log instead.
pub fn open(path: impl AsRef<Path>) -> Result<File, AuditError> {
    let path = path.as_ref();
    let target = path.display().to_string();
    // An existing log, else a new one. Two rounds: if another writer creates the log
    // between our two opens, the second round opens theirs.
    for _ in 0..2 {
        match open_existing(path) {
            Ok(f) => return checked(f, &target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(refused_or_io(path, &target, "open", e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|e| AuditError::io(&target, "create its directory", e))?;
        }
        match create_new(path) {
            Ok(f) => {
                // Make the new directory entry durable too, not just the file's content.
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                    && let Ok(d) = File::open(dir)
                {
                    let _ = d.sync_all();
                }
                return checked(f, &target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(refused_or_io(path, &target, "create", e)),
        }
    }
    Err(AuditError::io(
        &target,
        "create",
        io::Error::other("it kept appearing and disappearing while being opened"),
    ))
}

/// Opens the log at `path` for reading only (`audit verify`, `head`, `show`), with the same
/// guards as [`open`]: never through a symlink, never blocking (a FIFO or a device is refused
/// at once, not read forever), only a regular file.
pub fn open_for_reading(path: impl AsRef<Path>) -> Result<File, AuditError> {
    let path = path.as_ref();
    let target = path.display().to_string();
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(guard_flags())
        .open(path)
        .map_err(|e| refused_or_io(path, &target, "open", e))?;
    checked(file, &target)
}

/// `O_NOFOLLOW` (a symlink fails with `ELOOP`) and `O_NONBLOCK` (a FIFO or a device must
/// not block the open; the descriptor is checked and reset right after).
fn guard_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}

fn open_existing(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(guard_flags())
        .open(path)
}

fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(guard_flags())
        .open(path)
}

/// Refuses a descriptor that is not a regular file, and clears `O_NONBLOCK` on the one kept
/// (it is handed on to the container process as is).
fn checked(file: File, target: &str) -> Result<File, AuditError> {
    let meta = file
        .metadata()
        .map_err(|e| AuditError::io(target, "stat", e))?;
    if !meta.file_type().is_file() {
        return Err(AuditError::NotRegularFile {
            target: target.to_owned(),
            what: warden_common::file_kind::kind_of(meta.file_type()),
        });
    }
    let flags =
        rustix::fs::fcntl_getfl(&file).map_err(|e| AuditError::io(target, "inspect", e.into()))?;
    rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| AuditError::io(target, "set up", e.into()))?;
    Ok(file)
}

/// The error for a failed open: `ELOOP` under `O_NOFOLLOW` (a symlink), `ENXIO` (a socket,
/// or a FIFO or device with no other end) and `EISDIR` name what is there, from `lstat`.
fn refused_or_io(path: &Path, target: &str, op: &'static str, e: io::Error) -> AuditError {
    let telling = [
        rustix::io::Errno::LOOP,
        rustix::io::Errno::NXIO,
        rustix::io::Errno::ISDIR,
    ];
    if telling
        .iter()
        .any(|t| e.raw_os_error() == Some(t.raw_os_error()))
        && let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.file_type().is_file()
    {
        return AuditError::NotRegularFile {
            target: target.to_owned(),
            what: warden_common::file_kind::kind_of(meta.file_type()),
        };
    }
    AuditError::io(target, op, e)
}

/// Serializes appends through one shared descriptor: `flock` locks belong to the open
/// file description, so two threads writing through the same `File` would both "hold" it.
static SHARED_FD_LOCK: Mutex<()> = Mutex::new(());

/// Appends `rec` through a descriptor the caller already holds, opened read-write with
/// `O_APPEND` (the shim opens it on the host and writes from inside the container after
/// `pivot_root`, where the path is not reachable). Same locking and format as [`append`].
pub fn append_to_file(file: &File, rec: &mut Record) -> Result<(), AuditError> {
    let target = describe_fd(file);
    let flags =
        rustix::fs::fcntl_getfl(file).map_err(|e| AuditError::io(&target, "inspect", e.into()))?;
    if !flags.contains(rustix::fs::OFlags::APPEND) {
        return Err(AuditError::BadDescriptor {
            target,
            reason: "it was not opened with O_APPEND",
        });
    }
    if flags & rustix::fs::OFlags::RWMODE != rustix::fs::OFlags::RDWR {
        return Err(AuditError::BadDescriptor {
            target,
            reason: "it was not opened read-write (the last line must be read to chain the next)",
        });
    }
    let _guard = SHARED_FD_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    append_locked(file, &target, rec)
}

/// `fd 7 (/var/log/warden/audit.jsonl)`, or just `fd 7` where /proc does not say.
fn describe_fd(file: &File) -> String {
    let fd = file.as_raw_fd();
    match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Ok(p) => format!("fd {fd} ({})", p.display()),
        Err(_) => format!("fd {fd}"),
    }
}

fn append_locked(file: &File, target: &str, rec: &mut Record) -> Result<(), AuditError> {
    // Released when dropped, not only when the descriptor closes: `append_to_file`'s
    // caller keeps its descriptor open.
    let _lock = Flock::exclusive(file).map_err(|e| AuditError::io(target, "lock", e))?;
    let len = file
        .metadata()
        .map_err(|e| AuditError::io(target, "stat", e))?
        .len();
    if rec.time.is_empty() {
        rec.time = now_rfc3339();
    }
    if rec.node.is_empty() {
        rec.node = node_name();
    }
    let mut buf = Vec::with_capacity(1024);
    let encode = |e| AuditError::Encode {
        target: target.to_owned(),
        error: e,
    };
    let mut chain = if len == 0 {
        let mut chain = Chain::start();
        let mut anchor = Record::anchor(&rec.node, &rec.writer, &rec.time);
        if !target.starts_with("fd ") {
            anchor.file = Some(target.to_owned());
        }
        chain.encode_into(&mut anchor, &mut buf).map_err(encode)?;
        chain
    } else {
        let (last, complete) = read_last_line(file, len)
            .map_err(|e| AuditError::io(target, "read its last line", e))?;
        if !complete {
            // A torn write (crash mid-line, disk full): never glue onto it. The fragment
            // stays a line of its own, chained like any other, and verify names it.
            buf.push(b'\n');
        }
        Chain::after_line(&last)
    };
    chain.encode_into(rec, &mut buf).map_err(encode)?;
    write_line(file, &buf).map_err(|e| AuditError::io(target, "write", e))?;
    file.sync_data()
        .map_err(|e| AuditError::io(target, "fsync", e))?;
    Ok(())
}

/// One `write(2)` for the whole buffer. On a regular file a short write only happens when
/// the disk fills up or a signal arrives mid-way; then the rest is written (still under the
/// lock, still `O_APPEND`) so the line is completed if at all possible.
fn write_line(mut file: &File, buf: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.write(&buf[done..]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads the last line of a non-empty file of length `len`, from the end backwards, so
/// that appending costs the same on a 10 GB log as on a new one.
///
/// Returns the line without its newline, and whether it had one. Without one, the line
/// is the fragment after the last newline (a torn write).
fn read_last_line(file: &File, len: u64) -> io::Result<(Vec<u8>, bool)> {
    const CHUNK: u64 = 4096;
    let mut last_byte = [0u8; 1];
    file.read_exact_at(&mut last_byte, len - 1)?;
    let complete = last_byte[0] == b'\n';
    let end = if complete { len - 1 } else { len };
    // Bytes [pos, end) have been read into `tail` (in file order).
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = end;
    while pos > 0 {
        let start = pos.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (pos - start) as usize];
        file.read_exact_at(&mut chunk, start)?;
        if let Some(nl) = chunk.iter().rposition(|&b| b == b'\n') {
            chunk.drain(..=nl);
            chunk.extend_from_slice(&tail);
            return Ok((chunk, complete));
        }
        chunk.extend_from_slice(&tail);
        tail = chunk;
        pos = start;
    }
    Ok((tail, complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_line_is_found_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let long = "x".repeat(10_000);
        let cases: Vec<(String, &str, bool)> = vec![
            ("a\nb\n".into(), "b", true),
            ("b\n".into(), "b", true),
            ("a\nb".into(), "b", false),
            ("b".into(), "b", false),
            ("a\n\n".into(), "", true),
            (format!("a\n{long}\n"), long.as_str(), true),
            (format!("{long}\n{long}y"), "", false),
        ];
        for (content, want, want_complete) in cases {
            std::fs::write(&path, &content).unwrap();
            let f = File::open(&path).unwrap();
            let (line, complete) = read_last_line(&f, content.len() as u64).unwrap();
            let want = if want.is_empty() && !want_complete {
                format!("{long}y")
            } else {
                want.to_owned()
            };
            assert_eq!(String::from_utf8(line).unwrap(), want);
            assert_eq!(complete, want_complete);
        }
    }

    #[test]
    fn errors_are_classified() {
        let e = AuditError::io(
            "/x",
            "write",
            io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
        );
        assert!(matches!(e, AuditError::Full { .. }));
        assert_eq!(
            e.to_string(),
            "audit log /x: cannot write: no space left on device"
        );
        let e = AuditError::io(
            "/x",
            "open",
            io::Error::from_raw_os_error(rustix::io::Errno::ROFS.raw_os_error()),
        );
        assert!(matches!(e, AuditError::ReadOnly { .. }));
        let e = AuditError::io(
            "/x",
            "open",
            io::Error::from_raw_os_error(rustix::io::Errno::ACCESS.raw_os_error()),
        );
        assert!(matches!(e, AuditError::PermissionDenied { .. }));
        let e = AuditError::io(
            "/x",
            "open",
            io::Error::from_raw_os_error(rustix::io::Errno::IO.raw_os_error()),
        );
        assert!(matches!(e, AuditError::Io { .. }));
    }
}
