//! Opening paths that a hostile image or a neighbouring container may have shaped.
//!
//! Every path the shim opens inside a container's file tree goes through here: `openat2`
//! with the file tree's root as `dirfd` and `RESOLVE_IN_ROOT` (so `..` and absolute symlinks
//! stay inside it), never through a magic link, and never blocking on what it opens: a FIFO
//! or a device is looked at with `O_PATH` (which opens nothing) and refused by its type
//! before anything reads it.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use warden_common::file_kind::kind_of;

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// How symlinks on the way are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symlinks {
    /// Followed, but only inside the root (an entrypoint may be `/usr/bin/app -> app.wasm`).
    InRoot,
    /// Refused anywhere on the path: a granted directory must be where the policy says.
    Refuse,
}

fn openat2(root: BorrowedFd<'_>, path: &str, flags: i32, symlinks: Symlinks) -> io::Result<File> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let c_path = CString::new(rel)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    if symlinks == Symlinks::Refuse {
        resolve |= RESOLVE_NO_SYMLINKS;
    }
    // openat2 refuses flags that mean nothing with O_PATH (O_NOCTTY among them).
    let extra = if flags & libc::O_PATH != 0 {
        libc::O_CLOEXEC
    } else {
        libc::O_CLOEXEC | libc::O_NOCTTY
    };
    let how = OpenHow {
        flags: (flags | extra) as u64,
        mode: 0,
        resolve,
    };
    loop {
        // SAFETY: openat2 reads `how` (its size is given) and the NUL-terminated path; both
        // outlive the call. On success it returns a new fd that we own.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c_path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh descriptor from the kernel.
            return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) }));
        }
        let err = io::Error::last_os_error();
        // openat2 may ask to retry when a rename raced the lookup.
        if err.raw_os_error() != Some(libc::EAGAIN) {
            return Err(err);
        }
    }
}

/// Why a path could not be opened as asked.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path} does not exist")]
    Missing { path: String },
    #[error("{path} is a symlink{}; warden does not follow symlinks here", target_note(.target))]
    Symlink {
        path: String,
        target: Option<String>,
    },
    #[error("{path} is {what}, not {wanted}")]
    WrongType {
        path: String,
        what: &'static str,
        wanted: &'static str,
    },
    #[error("{path} is on a {fs} file system, which warden never grants")]
    SpecialFs { path: String, fs: &'static str },
    #[error("opening {path}: {source}")]
    Io { path: String, source: io::Error },
}

fn target_note(target: &Option<String>) -> String {
    match target {
        Some(t) => format!(" (-> {})", warden_audit::escape_for_terminal(t)),
        None => String::new(),
    }
}

fn meta_of(f: &File, path: &str) -> Result<std::fs::Metadata, OpenError> {
    f.metadata().map_err(|e| OpenError::Io {
        path: path.into(),
        source: e,
    })
}

/// Looks `path` up under `root` without opening what it names (`O_PATH`): a FIFO, a device
/// or a socket is never opened, so it cannot block or act.
fn look_up(root: BorrowedFd<'_>, path: &str, symlinks: Symlinks) -> Result<File, OpenError> {
    // O_NOFOLLOW with O_PATH returns a trailing symlink itself instead of refusing, so that
    // it can be named in the error.
    let flags = libc::O_PATH | libc::O_NOFOLLOW;
    openat2(root, path, flags, symlinks).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => OpenError::Missing { path: path.into() },
        // A symlink on the way (not the last component) under RESOLVE_NO_SYMLINKS.
        Some(libc::ELOOP) => OpenError::Symlink {
            path: path.into(),
            target: None,
        },
        _ => OpenError::Io {
            path: path.into(),
            source: e,
        },
    })
}

/// Opens the regular file at `path` under `root` for reading. Anything else (a FIFO, a
/// device, a socket, a directory) is refused by its type before it is opened.
pub fn open_regular_file(
    root: BorrowedFd<'_>,
    path: &str,
    symlinks: Symlinks,
) -> Result<File, OpenError> {
    let handle = look_up(root, path, symlinks)?;
    let meta = meta_of(&handle, path)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        // The trailing component is a symlink: under `InRoot` follow it (inside the root)
        // by looking the path up again with the link followed.
        if symlinks == Symlinks::Refuse {
            return Err(OpenError::Symlink {
                path: path.into(),
                target: read_link(&handle),
            });
        }
        let followed = openat2(root, path, libc::O_PATH, symlinks).map_err(|e| OpenError::Io {
            path: path.into(),
            source: e,
        })?;
        return reopen_regular(followed, path);
    }
    reopen_regular(handle, path)
}

fn reopen_regular(handle: File, path: &str) -> Result<File, OpenError> {
    let meta = meta_of(&handle, path)?;
    if !meta.is_file() {
        return Err(OpenError::WrongType {
            path: path.into(),
            what: kind_of(meta.file_type()),
            wanted: "a regular file",
        });
    }
    // Reopening through the O_PATH handle opens exactly the file that was checked.
    reopen(&handle, libc::O_RDONLY | libc::O_NONBLOCK).map_err(|e| OpenError::Io {
        path: path.into(),
        source: e,
    })
}

/// Opens the directory at `path` under `root`, refusing symlinks anywhere on the path, a
/// trailing component that is not a directory, and pseudo file systems (procfs, sysfs,
/// devpts...).
pub fn open_granted_dir(root: BorrowedFd<'_>, path: &str) -> Result<File, OpenError> {
    let handle = look_up(root, path, Symlinks::Refuse)?;
    let meta = meta_of(&handle, path)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Err(OpenError::Symlink {
            path: path.into(),
            target: read_link(&handle),
        });
    }
    if !ft.is_dir() {
        return Err(OpenError::WrongType {
            path: path.into(),
            what: kind_of(ft),
            wanted: "a directory",
        });
    }
    let dir = reopen(&handle, libc::O_RDONLY | libc::O_DIRECTORY).map_err(|e| OpenError::Io {
        path: path.into(),
        source: e,
    })?;
    if let Some(fs) = special_fs(&dir) {
        return Err(OpenError::SpecialFs {
            path: path.into(),
            fs,
        });
    }
    Ok(dir)
}

/// Opens the object an `O_PATH` handle refers to (`openat(handle, "", AT_EMPTY_PATH)` is
/// not allowed for opening, but `/proc`-free reopening works with `"."` for directories and
/// through the handle's own `openat2` with an empty path for files).
fn reopen(handle: &File, flags: i32) -> io::Result<File> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC | libc::O_NOCTTY) as u64,
        mode: 0,
        // "." under the handle: for a directory handle, the directory itself.
        resolve: RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    if flags & libc::O_DIRECTORY != 0 {
        // SAFETY: as in `openat2`.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                handle.as_raw_fd(),
                c".".as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor from the kernel.
        return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd as i32) }));
    }
    // A file handle: reopen through its /proc/self/fd magic link, which names exactly this
    // inode. This is the host side (the shim), whose /proc is the host's.
    let link = format!("/proc/self/fd/{}", handle.as_raw_fd());
    let c_link = CString::new(link).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain open(2) of a NUL-terminated path.
    let fd = unsafe { libc::open(c_link.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from the kernel.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // The link must have led to the same inode (a different /proc cannot swap it).
    let (a, b) = (handle.metadata()?, file.metadata()?);
    use std::os::unix::fs::MetadataExt;
    if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
        return Err(io::Error::other("the file changed while it was opened"));
    }
    Ok(file)
}

fn read_link(handle: &File) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: readlinkat with an O_PATH symlink fd and an empty path reads that link into
    // `buf`, at most `buf.len()` bytes.
    let n = unsafe {
        libc::readlinkat(
            handle.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The name of the pseudo file system `f` is on, if it is one warden never grants: they
/// expose the runner process (procfs: `/proc/self/mem`), the kernel (sysfs, debugfs,
/// tracefs, bpffs, securityfs, configfs, efivarfs, pstore) or devices (devpts), or other
/// namespaces (nsfs, cgroupfs, mqueue).
pub fn special_fs(f: &impl AsFd) -> Option<&'static str> {
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs fills one statfs struct for a valid fd.
    if unsafe { libc::fstatfs(f.as_fd().as_raw_fd(), &mut st) } != 0 {
        return Some("unknown (fstatfs failed)");
    }
    fs_name(st.f_type as i64)
}

/// Pseudo file systems by their `statfs` magic.
pub fn fs_name(magic: i64) -> Option<&'static str> {
    Some(match magic {
        0x9fa0 => "proc",
        0x6265_6572 => "sysfs",
        0x1cd1 => "devpts",
        0x6462_6720 => "debugfs",
        0x7472_6163 => "tracefs",
        0xcafe_4a11 => "bpf",
        0x7363_6673 => "securityfs",
        0x6265_6570 => "configfs",
        0xde5e_81e4 => "efivarfs",
        0x6165_676c => "pstore",
        0x6e73_6673 => "nsfs",
        0x0027_e0eb => "cgroup",
        0x6367_7270 => "cgroup2",
        0x1980_0202 => "mqueue",
        0x4249_4e4d => "binfmt_misc",
        0x6573_5546 => "fusectl",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn root(dir: &tempfile::TempDir) -> File {
        File::open(dir.path()).unwrap()
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("app.wasm");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let r = root(&d);
        let err = open_regular_file(r.as_fd(), "/app.wasm", Symlinks::InRoot).unwrap_err();
        assert!(err.to_string().contains("is a FIFO"), "{err}");
        let err = open_granted_dir(r.as_fd(), "/app.wasm").unwrap_err();
        assert!(err.to_string().contains("a FIFO, not a directory"), "{err}");
    }

    #[test]
    fn a_device_is_refused() {
        let r = File::open("/").unwrap();
        let err = open_regular_file(r.as_fd(), "/dev/null", Symlinks::InRoot).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
    }

    #[test]
    fn granted_dirs_refuse_symlinks_anywhere_on_the_path() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("real/inner")).unwrap();
        symlink("/proc", d.path().join("data")).unwrap();
        symlink("real", d.path().join("rel")).unwrap();
        let r = root(&d);
        let err = open_granted_dir(r.as_fd(), "/data").unwrap_err();
        assert!(
            matches!(&err, OpenError::Symlink { target: Some(t), .. } if t == "/proc"),
            "{err}"
        );
        assert!(err.to_string().contains("-> /proc"), "{err}");
        let err = open_granted_dir(r.as_fd(), "/rel/inner").unwrap_err();
        assert!(matches!(err, OpenError::Symlink { .. }), "{err}");
        assert!(open_granted_dir(r.as_fd(), "/real/inner").is_ok());
        assert!(open_granted_dir(r.as_fd(), "/").is_ok());
        assert!(matches!(
            open_granted_dir(r.as_fd(), "/nope"),
            Err(OpenError::Missing { .. })
        ));
    }

    #[test]
    fn pseudo_file_systems_are_refused() {
        let r = File::open("/").unwrap();
        let err = open_granted_dir(r.as_fd(), "/proc").unwrap_err();
        assert!(
            matches!(err, OpenError::SpecialFs { fs: "proc", .. }),
            "{err}"
        );
        let err = open_granted_dir(r.as_fd(), "/sys").unwrap_err();
        assert!(
            matches!(err, OpenError::SpecialFs { fs: "sysfs", .. }),
            "{err}"
        );
    }

    #[test]
    fn entrypoint_symlinks_are_followed_inside_the_root_only() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"host").unwrap();
        std::fs::write(d.path().join("secret"), b"image").unwrap();
        symlink(outside.path().join("secret"), d.path().join("abs")).unwrap();
        symlink("../../../../secret", d.path().join("rel")).unwrap();
        let r = root(&d);
        assert!(open_regular_file(r.as_fd(), "/abs", Symlinks::InRoot).is_err());
        let mut s = String::new();
        use std::io::Read;
        open_regular_file(r.as_fd(), "/rel", Symlinks::InRoot)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "image");
        assert!(open_regular_file(r.as_fd(), "/rel", Symlinks::Refuse).is_err());
    }
}
