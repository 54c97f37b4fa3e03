//! File locks with `flock(2)`: the one loop every lock in warden goes through.
//!
//! - [`lock`], [`try_lock`] and [`Flock`]: a lock on a file the caller opened (the audit
//!   log, locked for each append by the shim and the node CLI, separate processes).
//! - [`HostLock`]: the host lock, `<state-dir>/lock`, held for a whole install or
//!   uninstall, so two runs (a DaemonSet pod and an admin, or a pod and its replacement)
//!   never interleave. The kernel drops the lock when the holder dies, killed or not, so a
//!   crashed run never blocks the next one. The holder writes its pid into the file for the
//!   message the waiting run prints. The lock file is opened without following a symlink
//!   and refused unless it is a regular file with one link, owned by root (or this user).
//!
//! `flock` locks belong to the open file description: two opens of the same file exclude
//! each other, two threads using one descriptor do not.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, OFlags, flock};

use crate::file_kind::kind_of;
use crate::trusted_dir::{euid, trusted_owner};

/// Which lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One holder, no shared holders.
    Exclusive,
    /// Any number of shared holders, no exclusive one.
    Shared,
}

/// Takes the lock on `file`, waiting as long as it takes (a signal does not end the wait).
pub fn lock(file: &File, kind: Kind) -> io::Result<()> {
    let op = match kind {
        Kind::Exclusive => FlockOperation::LockExclusive,
        Kind::Shared => FlockOperation::LockShared,
    };
    loop {
        match flock(file, op) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes the lock on `file` if no one holds a conflicting one: `Ok(false)` when it is busy
/// (or a signal came first; the caller tries again).
pub fn try_lock(file: &File, kind: Kind) -> io::Result<bool> {
    let op = match kind {
        Kind::Exclusive => FlockOperation::NonBlockingLockExclusive,
        Kind::Shared => FlockOperation::NonBlockingLockShared,
    };
    match flock(file, op) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Releases the lock on `file`.
pub fn unlock(file: &File) -> io::Result<()> {
    flock(file, FlockOperation::Unlock).map_err(Into::into)
}

/// An exclusive lock on a borrowed file, released when dropped (not only when the
/// descriptor closes: the audit log's descriptor may stay open for a container's life).
#[derive(Debug)]
pub struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    /// Waits for the exclusive lock on `file`.
    pub fn exclusive(file: &'a File) -> io::Result<Flock<'a>> {
        lock(file, Kind::Exclusive)?;
        Ok(Flock(file))
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        let _ = unlock(self.0);
    }
}

/// `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`, for `custom_flags`.
fn guard_flags() -> i32 {
    (OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC).bits() as i32
}

/// The lock file's name in the state dir.
pub const LOCK_FILE: &str = "lock";

/// How often a waiting run tries again.
const POLL: Duration = Duration::from_millis(100);

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another warden run holds {} ({holder}) and did not finish within {waited:?}; \
         try again when it is done",
        path.display()
    )]
    Busy {
        path: PathBuf,
        holder: String,
        waited: Duration,
    },
    #[error(
        "{}: {reason}; it is not warden's lock file and warden will neither follow nor \
         truncate it: inspect it, then remove it",
        path.display()
    )]
    Unsafe { path: PathBuf, reason: String },
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct HostLock {
    _file: File,
}

impl HostLock {
    /// Takes the exclusive lock in `state_dir` (which must exist), waiting up to `timeout`.
    /// `waiting` is called once if the lock is busy at first.
    pub fn exclusive(
        state_dir: &Path,
        timeout: Duration,
        waiting: &mut dyn FnMut(&str),
    ) -> Result<HostLock, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let io_err = |op| {
            let path = path.clone();
            move |source| LockError::Io { path, op, source }
        };
        // Never truncated on open, never followed: a symlink (or a hard link) planted here
        // is refused before a byte is written.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(guard_flags())
            .open(&path)
            .map_err(|source| open_error(&path, source))?;
        check_lock_file(&path, &file)?;
        let start = Instant::now();
        let mut told = false;
        loop {
            match try_lock(&file, Kind::Exclusive) {
                Ok(true) => break,
                Ok(false) => {
                    let holder = holder(&mut file);
                    if start.elapsed() >= timeout {
                        return Err(LockError::Busy {
                            path,
                            holder,
                            waited: timeout,
                        });
                    }
                    if !told {
                        waiting(&holder);
                        told = true;
                    }
                    std::thread::sleep(POLL);
                }
                Err(e) => return Err(io_err("lock")(e)),
            }
        }
        file.set_len(0).map_err(io_err("truncate"))?;
        file.rewind().map_err(io_err("rewind"))?;
        writeln!(file, "{}", std::process::id()).map_err(io_err("write"))?;
        Ok(HostLock { _file: file })
    }

    /// Takes a shared lock if the lock file exists (for looking without writing, which
    /// never creates it); `None` when there is no lock file. Waits up to `timeout`;
    /// `waiting` is called once if the lock is busy at first.
    pub fn shared_if_present(
        state_dir: &Path,
        timeout: Duration,
        waiting: &mut dyn FnMut(&str),
    ) -> Result<Option<HostLock>, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(guard_flags())
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(open_error(&path, source)),
        };
        check_lock_file(&path, &file)?;
        let start = Instant::now();
        let mut told = false;
        loop {
            match try_lock(&file, Kind::Shared) {
                Ok(true) => return Ok(Some(HostLock { _file: file })),
                Ok(false) => {
                    let mut file = file.try_clone().map_err(|source| LockError::Io {
                        path: path.clone(),
                        op: "read",
                        source,
                    })?;
                    let holder = holder(&mut file);
                    if start.elapsed() >= timeout {
                        return Err(LockError::Busy {
                            holder,
                            path,
                            waited: timeout,
                        });
                    }
                    if !told {
                        waiting(&holder);
                        told = true;
                    }
                    std::thread::sleep(POLL);
                }
                Err(source) => {
                    return Err(LockError::Io {
                        path,
                        op: "lock",
                        source,
                    });
                }
            }
        }
    }
}

/// An open error; a symlink (ELOOP under `O_NOFOLLOW`) is [`LockError::Unsafe`].
fn open_error(path: &Path, source: io::Error) -> LockError {
    if source.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        LockError::Unsafe {
            path: path.to_path_buf(),
            reason: "is a symlink".to_owned(),
        }
    } else {
        LockError::Io {
            path: path.to_path_buf(),
            op: "open",
            source,
        }
    }
}

/// The lock file must be a regular file with one link, owned by root (or this user).
fn check_lock_file(path: &Path, file: &File) -> Result<(), LockError> {
    let meta = file.metadata().map_err(|source| LockError::Io {
        path: path.to_path_buf(),
        op: "stat",
        source,
    })?;
    let reason = if !meta.is_file() {
        Some(format!("is {}", kind_of(meta.file_type())))
    } else if meta.nlink() != 1 {
        Some(format!("has {} hard links", meta.nlink()))
    } else if !trusted_owner(meta.uid(), euid()) {
        Some(format!("is owned by uid {}", meta.uid()))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LockError::Unsafe {
            path: path.to_path_buf(),
            reason,
        }),
        None => Ok(()),
    }
}

/// "pid N" from the lock file, or "pid unknown".
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let pid = file
        .rewind()
        .and_then(|()| file.read_to_string(&mut text))
        .ok()
        .and_then(|_| text.trim().parse::<u32>().ok());
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_exclusive_lock_waits_then_fails_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = HostLock::exclusive(dir.path(), Duration::ZERO, &mut |_| {}).unwrap();
        let mut told = None;
        let err = HostLock::exclusive(dir.path(), Duration::from_millis(150), &mut |h| {
            told = Some(h.to_owned())
        })
        .unwrap_err();
        let me = format!("pid {}", std::process::id());
        assert_eq!(told.as_deref(), Some(me.as_str()));
        assert!(err.to_string().contains(&me), "{err}");
        assert!(matches!(
            HostLock::shared_if_present(dir.path(), Duration::ZERO, &mut |_| {}).unwrap_err(),
            LockError::Busy { .. }
        ));
        drop(first);
        HostLock::exclusive(dir.path(), Duration::ZERO, &mut |_| {}).unwrap();
    }

    #[test]
    fn a_symlinked_or_linked_lock_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let lock = dir.path().join(LOCK_FILE);
        std::os::unix::fs::symlink(&victim, &lock).unwrap();
        let err = HostLock::exclusive(dir.path(), Duration::ZERO, &mut |_| {}).unwrap_err();
        assert!(matches!(err, LockError::Unsafe { .. }), "{err}");
        assert!(err.to_string().contains("is a symlink"), "{err}");
        let err = HostLock::shared_if_present(dir.path(), Duration::ZERO, &mut |_| {}).unwrap_err();
        assert!(matches!(err, LockError::Unsafe { .. }), "{err}");
        std::fs::remove_file(&lock).unwrap();
        std::fs::hard_link(&victim, &lock).unwrap();
        let err = HostLock::exclusive(dir.path(), Duration::ZERO, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("2 hard links"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }

    #[test]
    fn two_opens_of_one_file_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "").unwrap();
        let first = File::open(&path).unwrap();
        let second = File::open(&path).unwrap();
        let held = Flock::exclusive(&first).unwrap();
        assert!(!try_lock(&second, Kind::Exclusive).unwrap());
        assert!(!try_lock(&second, Kind::Shared).unwrap());
        drop(held);
        assert!(try_lock(&second, Kind::Shared).unwrap());
        let third = File::open(&path).unwrap();
        assert!(
            try_lock(&third, Kind::Shared).unwrap(),
            "shared locks share"
        );
        assert!(!try_lock(&first, Kind::Exclusive).unwrap());
        unlock(&second).unwrap();
        unlock(&third).unwrap();
        assert!(try_lock(&first, Kind::Exclusive).unwrap());
    }

    #[test]
    fn a_blocking_lock_waits_for_the_holder_in_another_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "").unwrap();
        let holder = File::open(&path).unwrap();
        lock(&holder, Kind::Exclusive).unwrap();
        let waiter_path = path.clone();
        let waiter = std::thread::spawn(move || {
            let file = File::open(&waiter_path).unwrap();
            let start = Instant::now();
            let _held = Flock::exclusive(&file).unwrap();
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(200));
        unlock(&holder).unwrap();
        let waited = waiter.join().unwrap();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
    }

    #[test]
    fn shared_lock_is_none_without_a_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            HostLock::shared_if_present(dir.path(), Duration::ZERO, &mut |_| {})
                .unwrap()
                .is_none()
        );
        assert!(!dir.path().join(LOCK_FILE).exists());
    }
}
