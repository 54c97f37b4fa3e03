//! The host lock: `<state-dir>/lock`, held with `flock(2)` for a whole install or
//! uninstall, so two runs (a DaemonSet pod and an admin, or a pod and its replacement)
//! never interleave. The kernel drops the lock when the holder dies, killed or not, so a
//! crashed run never blocks the next one. The holder writes its pid into the file for the
//! message the waiting run prints.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};

use crate::input_file::{O_CLOEXEC, O_NOFOLLOW, O_NONBLOCK, is_symlink_refusal, kind_of};
use crate::trusted_path::{euid, trusted_owner};

/// Tells the user a run waits for the lock.
pub fn tell_waiting(holder: &str) {
    eprintln!("warden: waiting for another warden run ({holder}) to finish");
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
            .custom_flags(O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            .open(&path)
            .map_err(|source| open_error(&path, source))?;
        check_lock_file(&path, &file)?;
        let start = Instant::now();
        let mut told = false;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
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
                Err(e) => return Err(io_err("lock")(e.into())),
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
            .custom_flags(O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
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
            match flock(&file, FlockOperation::NonBlockingLockShared) {
                Ok(()) => return Ok(Some(HostLock { _file: file })),
                Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
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
                Err(e) => {
                    return Err(LockError::Io {
                        path,
                        op: "lock",
                        source: e.into(),
                    });
                }
            }
        }
    }
}

/// An open error; a symlink (ELOOP under `O_NOFOLLOW`) is [`LockError::Unsafe`].
fn open_error(path: &Path, source: io::Error) -> LockError {
    if is_symlink_refusal(&source) {
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
