//! Reading the files warden takes as input (containerd's config and drop-ins, the policy,
//! the `.sha256` beside the shim, the installer's state; the node's or the pod's resolver
//! files for the shim's name lookup) without trusting what is at the path.
//!
//! The file is opened with `O_NONBLOCK` (a FIFO then opens at once instead of waiting for a
//! writer) and, where a symlink has no business, `O_NOFOLLOW`; its type and size are then
//! checked on the open file descriptor before a byte is read, and at most the cap is read
//! (a file that grows meanwhile is refused too). A FIFO, a device, a socket, a directory or
//! a file over its cap is refused with the path named.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::file_kind::kind_of;

/// The most a containerd config or drop-in may hold.
pub const CONFIG_CAP: u64 = 4 << 20;
/// The most the node policy may hold.
pub const POLICY_CAP: u64 = 4 << 20;
/// The most the `.sha256` file beside the shim may hold.
pub const DIGEST_FILE_CAP: u64 = 4 << 10;
/// The most the state file (`install.json`) may hold.
pub const STATE_CAP: u64 = 1 << 20;

/// Whether the last component may be a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Followed (distributions symlink containerd's config).
    Follow,
    /// Refused (`O_NOFOLLOW`): warden's own files are never symlinks.
    Refuse,
}

/// Why an input file was refused.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(
        "{what} {}: is {kind}, not a regular file; warden reads only regular files here",
        path.display()
    )]
    NotRegular {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error(
        "{what} {}: is a symlink; warden does not follow symlinks here (something replaced \
         its file: inspect it, then remove the link)",
        path.display()
    )]
    Symlink { what: &'static str, path: PathBuf },
    #[error(
        "{what} {}: {size} bytes is more than the {cap} bytes warden reads for it; refusing",
        path.display()
    )]
    TooLarge {
        what: &'static str,
        path: PathBuf,
        size: u64,
        cap: u64,
    },
    #[error("{what} {}: cannot read: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl InputError {
    /// The same error naming `path` instead (a node path for a file read under `--root`).
    pub fn with_path(self, path: &Path) -> InputError {
        let path = path.to_path_buf();
        match self {
            InputError::NotRegular { what, kind, .. } => {
                InputError::NotRegular { what, path, kind }
            }
            InputError::Symlink { what, .. } => InputError::Symlink { what, path },
            InputError::TooLarge {
                what, size, cap, ..
            } => InputError::TooLarge {
                what,
                path,
                size,
                cap,
            },
            InputError::Io { what, source, .. } => InputError::Io { what, path, source },
        }
    }
}

/// Opens `path` for reading without blocking or (with [`Links::Refuse`]) following a
/// symlink, and checks that it is a regular file; `Ok(None)` when it does not exist.
pub fn open_regular(
    what: &'static str,
    path: &Path,
    links: Links,
) -> Result<Option<File>, InputError> {
    let mut flags = libc_flags::NONBLOCK | libc_flags::CLOEXEC;
    if links == Links::Refuse {
        flags |= libc_flags::NOFOLLOW;
    }
    let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if links == Links::Refuse && e.raw_os_error() == Some(libc_flags::ELOOP) => {
            return Err(InputError::Symlink {
                what,
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(InputError::Io {
                what,
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let meta = file.metadata().map_err(|source| InputError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(InputError::NotRegular {
            what,
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok(Some(file))
}

/// Reads the regular file at `path`, at most `cap` bytes; `Ok(None)` when it does not
/// exist. The type and size are checked before anything is read.
pub fn read_capped(
    what: &'static str,
    path: &Path,
    cap: u64,
    links: Links,
) -> Result<Option<Vec<u8>>, InputError> {
    let Some(file) = open_regular(what, path, links)? else {
        return Ok(None);
    };
    let io_err = |source| InputError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let size = file.metadata().map_err(io_err)?.len();
    if size > cap {
        return Err(InputError::TooLarge {
            what,
            path: path.to_path_buf(),
            size,
            cap,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(cap + 1).read_to_end(&mut bytes).map_err(io_err)?;
    let read = bytes.len() as u64;
    if read > cap {
        return Err(InputError::TooLarge {
            what,
            path: path.to_path_buf(),
            size: read,
            cap,
        });
    }
    Ok(Some(bytes))
}

/// The open(2) flags and errno used here, from rustix (no libc dependency).
mod libc_flags {
    pub const NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;
    pub const CLOEXEC: i32 = rustix::fs::OFlags::CLOEXEC.bits() as i32;
    pub const NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
    pub const ELOOP: i32 = rustix::io::Errno::LOOP.raw_os_error();
}

pub use libc_flags::{CLOEXEC as O_CLOEXEC, NOFOLLOW as O_NOFOLLOW, NONBLOCK as O_NONBLOCK};

/// Whether an I/O error is ELOOP (what `O_NOFOLLOW` gives on a symlink).
pub fn is_symlink_refusal(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc_flags::ELOOP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn regular_files_are_read_and_missing_ones_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(
            read_capped("config", &path, 10, Links::Follow)
                .unwrap()
                .is_none()
        );
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(
            read_capped("config", &path, 10, Links::Refuse)
                .unwrap()
                .unwrap(),
            b"0123456789"
        );
        let err = read_capped("config", &path, 9, Links::Follow).unwrap_err();
        assert!(
            matches!(
                err,
                InputError::TooLarge {
                    size: 10,
                    cap: 9,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let start = Instant::now();
        let err = read_capped("policy", &fifo, 10, Links::Follow).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(
            err.to_string().contains("is a FIFO, not a regular file"),
            "{err}"
        );
    }

    #[test]
    fn devices_and_directories_are_refused_by_type() {
        let err = read_capped("policy", Path::new("/dev/zero"), 10, Links::Follow).unwrap_err();
        assert!(err.to_string().contains("a character device"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = read_capped("policy", dir.path(), 10, Links::Follow).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
    }

    #[test]
    fn a_sparse_file_is_refused_by_size_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(100 << 20).unwrap();
        let err = read_capped("policy", &path, POLICY_CAP, Links::Follow).unwrap_err();
        assert!(
            matches!(err, InputError::TooLarge { size, .. } if size == 100 << 20),
            "{err}"
        );
    }

    #[test]
    fn symlinks_are_followed_or_refused_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            read_capped("config", &link, 10, Links::Follow)
                .unwrap()
                .unwrap(),
            b"x"
        );
        let err = read_capped("state", &link, 10, Links::Refuse).unwrap_err();
        assert!(matches!(err, InputError::Symlink { .. }), "{err}");
    }
}
