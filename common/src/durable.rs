//! Durable, atomic file changes: what every write of the installer and the shim's compile
//! cache goes through.
//!
//! A file is replaced by writing a temp file in the same directory, fsyncing it, renaming
//! it over the target and fsyncing the directory. A reader (containerd, the shim, a second
//! `warden`) sees the old bytes or the new ones, never a mix, and after a crash the file is
//! whole in one of the two states. The rename also replaces a running executable without
//! "text file busy": the running process keeps the old inode.
//!
//! Temp files are named `.<name>.warden-tmp-<pid>` ([`write_atomic`], [`copy_atomic`]: the
//! installer, one writer under the host lock) or `.<name>.warden-tmp-<pid>-<n>` ([`replace`]:
//! unique per call, for a process with several threads writing the same name, like the shim):
//! hidden, and not ending in `.toml`, so a drop-in directory's `*.toml` import never loads a
//! half-written one. A run killed midway leaves one behind; [`remove_stale_temps`] and
//! [`remove_stale_temps_in`] clear them.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, openat, renameat, unlinkat};

use crate::digest::Digest;
use crate::trusted_dir::{self, TrustError};

/// The marker in temp file names, between the target's name and the pid.
const TEMP_MARKER: &str = ".warden-tmp-";

/// Why a file operation failed. Callers branch on [`FsError::NoSpace`] and
/// [`FsError::ReadOnly`] to tell the user what to free or remount.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// ENOSPC or EDQUOT.
    #[error("{}: cannot {op}: no space left on device", path.display())]
    NoSpace { path: PathBuf, op: &'static str },
    /// EROFS.
    #[error("{}: cannot {op}: read-only file system", path.display())]
    ReadOnly { path: PathBuf, op: &'static str },
    /// The bytes written are not the bytes expected (the source changed while copied).
    #[error("{}: copied bytes have digest {actual}, expected {expected}", path.display())]
    Changed {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// What is at the path after the rename is not the file warden wrote: someone swapped
    /// it meanwhile.
    #[error(
        "{}: what is there after the rename is not the file warden wrote (replaced or made a \
         symlink meanwhile); not trusting it",
        path.display()
    )]
    Swapped { path: PathBuf },
    /// The directory may be written by someone else.
    #[error(transparent)]
    Untrusted(#[from] TrustError),
    /// Anything else.
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl FsError {
    /// Classifies an I/O error on `path`.
    pub fn new(path: &Path, op: &'static str, source: io::Error) -> FsError {
        let path = path.to_path_buf();
        match source.raw_os_error() {
            Some(code)
                if code == rustix::io::Errno::NOSPC.raw_os_error()
                    || code == rustix::io::Errno::DQUOT.raw_os_error() =>
            {
                FsError::NoSpace { path, op }
            }
            Some(code) if code == rustix::io::Errno::ROFS.raw_os_error() => {
                FsError::ReadOnly { path, op }
            }
            _ => FsError::Io { path, op, source },
        }
    }

    /// Whether the device is full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, FsError::NoSpace { .. })
    }
}

/// Permissions and owner for a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode {
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// Owner and group; `None` keeps the writing process's.
    pub owner: Option<(u32, u32)>,
}

impl FileMode {
    /// `mode`, owned by whoever writes it.
    pub fn new(mode: u32) -> FileMode {
        FileMode { mode, owner: None }
    }

    /// The mode and owner of an existing file, to keep them across a replacement.
    pub fn of(path: &Path) -> Result<Option<FileMode>, FsError> {
        use std::os::unix::fs::MetadataExt;
        match fs::metadata(path) {
            Ok(meta) => Ok(Some(FileMode {
                mode: meta.mode() & 0o7777,
                owner: Some((meta.uid(), meta.gid())),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FsError::new(path, "stat", e)),
        }
    }
}

/// Writes `bytes` to `path` atomically and durably, with `mode`. `before_rename` runs once
/// the temp file is complete and synced (the crash-test hook uses it).
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: FileMode,
    before_rename: &dyn Fn(),
) -> Result<(), FsError> {
    replace_with(
        path,
        &temp_name(file_name(path)?),
        mode,
        before_rename,
        Landed::Checked(None),
        |file, temp| {
            file.write_all(bytes)
                .map_err(|e| FsError::new(temp, "write", e))
        },
    )
    .map(drop)
}

/// Copies `source` to `path` atomically and durably, with `mode`, and checks that the bytes
/// written have digest `expected` (`sha256:<hex>`): what was verified is what lands.
pub fn copy_atomic(
    source: &Path,
    path: &Path,
    expected: &str,
    mode: FileMode,
    before_rename: &dyn Fn(),
) -> Result<(), FsError> {
    let temp_name = temp_name(file_name(path)?);
    replace_with(
        path,
        &temp_name,
        mode,
        before_rename,
        Landed::Checked(Some(expected)),
        |file, temp| {
            let input = File::open(source).map_err(|e| FsError::new(source, "open", e))?;
            // Hashes what is read as it is written, so the bytes are read once.
            let mut tee = Tee {
                input,
                output: file,
                write_error: None,
            };
            let actual = match Digest::of_reader(&mut tee) {
                Ok(digest) => digest.to_string(),
                Err(e) => {
                    return Err(match tee.write_error.take() {
                        Some(w) => FsError::new(temp, "write", w),
                        None => FsError::new(source, "read", e),
                    });
                }
            };
            if actual != expected {
                return Err(FsError::Changed {
                    path: source.to_path_buf(),
                    expected: expected.to_owned(),
                    actual,
                });
            }
            Ok(())
        },
    )
    .map(drop)
}

/// A reader that writes what it reads to `output`: a write error ends the read and is kept.
struct Tee<'a> {
    input: File,
    output: &'a mut File,
    write_error: Option<io::Error>,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read(buf)?;
        if let Err(e) = self.output.write_all(&buf[..n]) {
            let kind = e.kind();
            self.write_error = Some(e);
            return Err(io::Error::new(kind, "write failed"));
        }
        Ok(n)
    }
}

/// Replaces `name` in the directory `dir` with `bytes` (mode `mode`, owned by the writing
/// process), durably: a temp file unique to this call is created in `dir` (`O_EXCL`,
/// `O_NOFOLLOW`, relative to the directory's checked fd), written, fsynced, renamed over
/// `name`, checked to be what landed, and the directory is fsynced. Several threads may
/// replace the same name at once: the last rename wins and the name always holds whole bytes. On a
/// failure before the rename nothing is left behind. Returns the file this call wrote, open
/// read-only at its start (by the time it returns, the name may hold another writer's).
pub fn replace(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<File, FsError> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let path = dir.join(name);
    if path.parent() != Some(dir) || path.file_name() != Some(OsStr::new(name)) {
        return Err(FsError::Io {
            path,
            op: "replace",
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a plain file name"),
        });
    }
    let mut temp = temp_name(OsStr::new(name));
    temp.push(format!("-{}", SEQUENCE.fetch_add(1, Ordering::Relaxed)));
    replace_with(
        &path,
        &temp,
        FileMode::new(mode),
        &|| {},
        Landed::Written,
        |file, temp| {
            file.write_all(bytes)
                .map_err(|e| FsError::new(temp, "write", e))
        },
    )
}

/// What [`replace_with`] returns.
#[derive(Clone, Copy)]
enum Landed<'a> {
    /// The file now under the name, checked to be the temp file's inode (and, with a
    /// digest, to hold those bytes): the only writer is this one (the installer, under the
    /// host lock), so anything else there is a swap.
    Checked(Option<&'a str>),
    /// The file written, opened read-only before the rename: other threads of this process
    /// may replace the name at any moment, each with whole bytes.
    Written,
}

impl Landed<'_> {
    fn expected(&self) -> Option<&str> {
        match self {
            Landed::Checked(expected) => *expected,
            Landed::Written => None,
        }
    }
}

/// The temp file protocol: open the directory, create the temp file in it (`O_EXCL`,
/// `O_NOFOLLOW`, relative to the directory's fd), fill it, set mode and owner, fsync,
/// hook, rename, check that the name now holds the temp file's inode (and, for a copy,
/// the expected bytes), fsync the directory. The temp file is removed on any failure
/// before the rename. The write descriptor is closed before the rename (an executable
/// must not be open for writing when it is run).
fn replace_with(
    path: &Path,
    temp_name: &OsStr,
    mode: FileMode,
    before_rename: &dyn Fn(),
    landed: Landed<'_>,
    fill: impl FnOnce(&mut File, &Path) -> Result<(), FsError>,
) -> Result<File, FsError> {
    let dir_path = parent(path)?;
    let name = file_name(path)?;
    let dir = open_dir(&dir_path)?;
    let temp = dir_path.join(temp_name);
    // A temp file of a killed run with our pid (pids are reused) is ours to replace: no
    // live writer of this process uses the same temp name.
    let _ = unlinkat(&dir, temp_name, AtFlags::empty());
    let fd = openat(
        &dir,
        temp_name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| FsError::new(&temp, "create", e.into()))?;
    let mut file = File::from(fd);
    let mut renamed = false;
    let result = (|| {
        fill(&mut file, &temp)?;
        if let Some((uid, gid)) = mode.owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                .map_err(|e| FsError::new(&temp, "chown", e))?;
        }
        // After chown, which clears set-id bits.
        file.set_permissions(fs::Permissions::from_mode(mode.mode))
            .map_err(|e| FsError::new(&temp, "chmod", e))?;
        file.sync_all()
            .map_err(|e| FsError::new(&temp, "fsync", e))?;
        let written = file
            .metadata()
            .map_err(|e| FsError::new(&temp, "stat", e))?;
        drop(file);
        // For `Written`, the file this call wrote, taken before the name can change hands.
        let own = match landed {
            Landed::Checked(_) => None,
            Landed::Written => Some(check_landed(&dir, temp_name, &temp, &written, None)?),
        };
        before_rename();
        renameat(&dir, temp_name, &dir, name)
            .map_err(|e| FsError::new(path, "rename a temp file over", e.into()))?;
        renamed = true;
        match (own, landed) {
            (Some(own), _) => Ok(own),
            (None, landed) => check_landed(&dir, name, path, &written, landed.expected()),
        }
    })();
    let mut landed = match result {
        Ok(landed) => landed,
        Err(e) => {
            if !renamed {
                let _ = unlinkat(&dir, temp_name, AtFlags::empty());
            }
            return Err(e);
        }
    };
    dir.sync_all()
        .map_err(|e| FsError::new(&dir_path, "fsync", e))?;
    landed
        .rewind()
        .map_err(|e| FsError::new(path, "rewind", e))?;
    Ok(landed)
}

/// Opens a directory for `*at` calls, and checks on its fd that no one else may write it.
fn open_dir(dir: &Path) -> Result<File, FsError> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| FsError::new(dir, "open directory", e.into()))?;
    let dir_file = File::from(fd);
    let meta = dir_file
        .metadata()
        .map_err(|e| FsError::new(dir, "stat", e))?;
    trusted_dir::check_open_dir("directory", dir, &meta)?;
    Ok(dir_file)
}

/// Checks that `name` in `dir` is the file just renamed there (same device and inode, not a
/// symlink) and, with `expected`, that it holds those bytes: a swap after the rename is
/// caught here instead of being reported as installed. Returns that file, open for reading.
fn check_landed(
    dir: &File,
    name: &OsStr,
    path: &Path,
    written: &fs::Metadata,
    expected: Option<&str>,
) -> Result<File, FsError> {
    use std::os::unix::fs::MetadataExt;
    let swapped = || FsError::Swapped {
        path: path.to_path_buf(),
    };
    let fd = match openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOENT => {
            return Err(swapped());
        }
        Err(e) => return Err(FsError::new(path, "open what was renamed to", e.into())),
    };
    let mut landed = File::from(fd);
    let meta = landed
        .metadata()
        .map_err(|e| FsError::new(path, "stat", e))?;
    if meta.dev() != written.dev() || meta.ino() != written.ino() || !meta.is_file() {
        return Err(swapped());
    }
    if let Some(expected) = expected {
        let actual = Digest::of_reader(&mut landed)
            .map_err(|e| FsError::new(path, "read back", e))?
            .to_string();
        if actual != expected {
            return Err(FsError::Changed {
                path: path.to_path_buf(),
                expected: expected.to_owned(),
                actual,
            });
        }
    }
    Ok(landed)
}

/// Removes `path` (a missing file is fine) and makes the removal durable.
pub fn remove_durable(path: &Path) -> Result<bool, FsError> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(&parent(path)?)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FsError::new(path, "remove", e)),
    }
}

/// fsyncs a directory, so that entries created, renamed or removed in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FsError::new(dir, "fsync", e))
}

/// Creates `dir` and its missing parents (mode 0755), each made durable in its parent.
/// Returns the directories it created, outermost first.
pub fn create_dirs(dir: &Path) -> Result<Vec<PathBuf>, FsError> {
    let mut missing = Vec::new();
    let mut current = Some(dir);
    while let Some(d) = current {
        if d.as_os_str().is_empty() || d.symlink_metadata().is_ok() {
            break;
        }
        missing.push(d.to_path_buf());
        current = d.parent();
    }
    missing.reverse();
    for d in &missing {
        match fs::DirBuilder::new().mode(0o755).create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(FsError::new(d, "create directory", e)),
        }
        // 0755 whatever the umask: a group-writable directory is one warden refuses.
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))
            .map_err(|e| FsError::new(d, "chmod", e))?;
        sync_dir(&parent(d)?)?;
    }
    Ok(missing)
}

/// Removes `dir` if it is empty; `Ok(false)` when it is not empty or already gone.
pub fn remove_dir_if_empty(dir: &Path) -> Result<bool, FsError> {
    match fs::remove_dir(dir) {
        Ok(()) => {
            sync_dir(&parent(dir)?)?;
            Ok(true)
        }
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.kind() == io::ErrorKind::DirectoryNotEmpty =>
        {
            Ok(false)
        }
        Err(e) => Err(FsError::new(dir, "remove directory", e)),
    }
}

/// Removes the temp files a killed run left for `path` (`.<name>.warden-tmp-*`). Returns
/// the ones removed.
pub fn remove_stale_temps(path: &Path) -> Result<Vec<PathBuf>, FsError> {
    let dir = parent(path)?;
    let Some(prefix) = temp_prefix(path) else {
        return Ok(Vec::new());
    };
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::new(&dir, "list", e)),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_ours = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix.as_str()))
            .is_some_and(is_temp_suffix);
        if is_ours {
            let temp = entry.path();
            fs::remove_file(&temp).map_err(|e| FsError::new(&temp, "remove", e))?;
            removed.push(temp);
        }
    }
    if !removed.is_empty() {
        sync_dir(&dir)?;
    }
    Ok(removed)
}

/// Removes every temp file a killed run left in `dir` (`.<name>.warden-tmp-<pid>`, any
/// name): what the next run does in each directory it manages. Only files and symlinks are
/// removed (unlink never follows a symlink). Returns the ones removed.
pub fn remove_stale_temps_in(dir: &Path) -> Result<Vec<PathBuf>, FsError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::new(dir, "list", e)),
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !is_temp_name(&name) {
            continue;
        }
        let temp = entry.path();
        let is_dir = fs::symlink_metadata(&temp).is_ok_and(|m| m.is_dir());
        if is_dir {
            continue;
        }
        match fs::remove_file(&temp) {
            Ok(()) => removed.push(temp),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(FsError::new(&temp, "remove", e)),
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Whether `name` is `.<something>.warden-tmp-<digits>` or `.<something>.warden-tmp-<digits>-<digits>`.
pub fn is_temp_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    rest.rsplit_once(TEMP_MARKER)
        .is_some_and(|(target, suffix)| !target.is_empty() && is_temp_suffix(suffix))
}

/// `<pid>` or `<pid>-<n>`.
fn is_temp_suffix(suffix: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match suffix.split_once('-') {
        Some((pid, n)) => digits(pid) && digits(n),
        None => digits(suffix),
    }
}

fn parent(path: &Path) -> Result<PathBuf, FsError> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.to_path_buf()),
        _ => Err(FsError::Io {
            path: path.to_path_buf(),
            op: "find the directory of",
            source: io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"),
        }),
    }
}

fn temp_prefix(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    Some(format!(".{name}{TEMP_MARKER}"))
}

fn file_name(path: &Path) -> Result<&OsStr, FsError> {
    path.file_name().ok_or_else(|| FsError::Io {
        path: path.to_path_buf(),
        op: "name a temp file for",
        source: io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
    })
}

/// `.<name>.warden-tmp-<pid>`.
fn temp_name(name: &OsStr) -> OsString {
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!("{TEMP_MARKER}{}", std::process::id()));
    temp
}

#[cfg(test)]
fn temp_path(path: &Path) -> Result<PathBuf, FsError> {
    Ok(parent(path)?.join(temp_name(file_name(path)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_replaces_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let mode = FileMode::of(&path).unwrap().unwrap();
        assert_eq!(mode.mode, 0o640);
        write_atomic(&path, b"new", mode, &|| {}).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp left");
    }

    #[test]
    fn hook_sees_the_complete_temp_and_the_old_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        fs::write(&path, "old").unwrap();
        let seen = std::cell::RefCell::new(None);
        write_atomic(&path, b"new", FileMode::new(0o644), &|| {
            let temp = temp_path(&path).unwrap();
            *seen.borrow_mut() = Some((fs::read(&temp).unwrap(), fs::read(&path).unwrap()));
        })
        .unwrap();
        assert_eq!(seen.into_inner(), Some((b"new".to_vec(), b"old".to_vec())));
    }

    #[test]
    fn copy_checks_the_digest_and_leaves_nothing_on_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        fs::write(&source, b"shim bytes").unwrap();
        let target = dir.path().join("out").join("shim");
        fs::create_dir(target.parent().unwrap()).unwrap();
        let good = Digest::of(b"shim bytes").to_string();
        copy_atomic(&source, &target, &good, FileMode::new(0o755), &|| {}).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"shim bytes");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o755);

        let other = dir.path().join("out").join("other");
        let err =
            copy_atomic(&source, &other, "sha256:00", FileMode::new(0o755), &|| {}).unwrap_err();
        assert!(matches!(err, FsError::Changed { .. }), "{err}");
        assert!(!other.exists());
        assert_eq!(fs::read_dir(target.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temps_are_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.toml");
        fs::write(dir.path().join(".warden.toml.warden-tmp-123"), "x").unwrap();
        fs::write(dir.path().join(".warden.toml.warden-tmp-abc"), "x").unwrap();
        fs::write(dir.path().join("other.toml"), "x").unwrap();
        let removed = remove_stale_temps(&path).unwrap();
        assert_eq!(
            removed,
            vec![dir.path().join(".warden.toml.warden-tmp-123")]
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn every_stale_temp_in_a_dir_is_swept_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            ".install.json.warden-tmp-77",
            ".config.toml.warden-tmp-1",
            ".x.warden-tmp-",
            ".warden-tmp-5",
            ".cache.cwasm.warden-tmp-12-",
            ".cache.cwasm.warden-tmp-12-x",
            "install.json",
            ".hidden",
        ] {
            fs::write(dir.path().join(name), "x").unwrap();
        }
        fs::write(dir.path().join(".a.cwasm.warden-tmp-12-3"), "x").unwrap();
        fs::create_dir(dir.path().join(".d.warden-tmp-9")).unwrap();
        let mut removed = remove_stale_temps_in(dir.path()).unwrap();
        removed.sort();
        assert_eq!(
            removed,
            vec![
                dir.path().join(".a.cwasm.warden-tmp-12-3"),
                dir.path().join(".config.toml.warden-tmp-1"),
                dir.path().join(".install.json.warden-tmp-77"),
            ]
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 7);
    }

    #[test]
    fn temp_files_do_not_follow_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("state.json");
        // What a hostile user would plant under the temp name (another pid's: ours is
        // removed first, as a killed run's).
        let temp = temp_path(&path).unwrap();
        let before = || {
            let _ = fs::remove_file(&temp);
            std::os::unix::fs::symlink(&victim, &temp).unwrap();
        };
        // The planted link is removed before the exclusive create, so the write succeeds
        // and the victim is untouched.
        before();
        write_atomic(&path, b"new", FileMode::new(0o600), &|| {}).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(
            !fs::symlink_metadata(&victim)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_file_swapped_after_the_rename_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shim");
        fs::write(&path, "mine").unwrap();
        let written = fs::metadata(&path).unwrap();
        let handle = File::open(dir.path()).unwrap();
        let name = OsStr::new("shim");
        check_landed(
            &handle,
            name,
            &path,
            &written,
            Some(&Digest::of(b"mine").to_string()),
        )
        .unwrap();
        let err = check_landed(&handle, name, &path, &written, Some("sha256:00")).unwrap_err();
        assert!(matches!(err, FsError::Changed { .. }), "{err}");
        // Another inode under the name, or a symlink to the very file: both refused.
        // (Written beside it first: a freed inode number may be handed out again at once.)
        let other = dir.path().join("other");
        fs::write(&other, "mine").unwrap();
        fs::rename(&other, &path).unwrap();
        let err = check_landed(&handle, name, &path, &written, None).unwrap_err();
        assert!(matches!(err, FsError::Swapped { .. }), "{err}");
        let real = dir.path().join("real");
        fs::rename(&path, &real).unwrap();
        std::os::unix::fs::symlink(&real, &path).unwrap();
        let written = fs::metadata(&real).unwrap();
        let err = check_landed(&handle, name, &path, &written, None).unwrap_err();
        assert!(matches!(err, FsError::Swapped { .. }), "{err}");
    }

    #[test]
    fn an_untrusted_directory_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.path().join("x");
        let err = write_atomic(&path, b"new", FileMode::new(0o644), &|| {}).unwrap_err();
        assert!(matches!(err, FsError::Untrusted(_)), "{err}");
        assert!(!path.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn create_dirs_reports_what_it_made() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("opt/warden/bin");
        let made = create_dirs(&deep).unwrap();
        assert_eq!(
            made,
            vec![
                dir.path().join("opt"),
                dir.path().join("opt/warden"),
                dir.path().join("opt/warden/bin")
            ]
        );
        assert!(create_dirs(&deep).unwrap().is_empty());
        fs::write(deep.join("f"), "").unwrap();
        assert!(!remove_dir_if_empty(&deep).unwrap());
        fs::remove_file(deep.join("f")).unwrap();
        assert!(remove_dir_if_empty(&deep).unwrap());
    }

    #[test]
    fn replace_writes_durably_and_returns_what_landed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.cwasm"), "old").unwrap();
        let mut landed = replace(dir.path(), "a.cwasm", b"artifact", 0o600).unwrap();
        let mut text = String::new();
        landed.read_to_string(&mut text).unwrap();
        assert_eq!(text, "artifact");
        let path = dir.path().join("a.cwasm");
        assert_eq!(fs::read(&path).unwrap(), b"artifact");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(
            landed.metadata().unwrap().ino(),
            fs::metadata(&path).unwrap().ino()
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp left");
    }

    #[test]
    fn replace_leaves_nothing_behind_when_it_fails() {
        let dir = tempfile::tempdir().unwrap();
        // The rename fails: the name is a non-empty directory.
        fs::create_dir(dir.path().join("a.cwasm")).unwrap();
        fs::write(dir.path().join("a.cwasm/inside"), "x").unwrap();
        let err = replace(dir.path(), "a.cwasm", b"artifact", 0o600).unwrap_err();
        assert!(matches!(err, FsError::Io { .. }), "{err}");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("a.cwasm")], "no temp left");
        // Not a plain name; an untrusted directory.
        assert!(replace(dir.path(), "../x", b"", 0o600).is_err());
        assert!(replace(dir.path(), "", b"", 0o600).is_err());
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = replace(&open, "x", b"", 0o600).unwrap_err();
        assert!(matches!(err, FsError::Untrusted(_)), "{err}");
        assert_eq!(fs::read_dir(&open).unwrap().count(), 0);
    }

    #[test]
    fn replace_from_many_threads_lands_whole_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let writers: Vec<_> = (0..8u8)
            .map(|i| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let bytes = vec![i; 64 << 10];
                    for _ in 0..10 {
                        let mut landed = replace(&dir, "same", &bytes, 0o600).unwrap();
                        let mut back = Vec::new();
                        landed.read_to_end(&mut back).unwrap();
                        assert_eq!(back.len(), bytes.len());
                        assert!(back.iter().all(|&b| b == back[0]));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let last = fs::read(dir.path().join("same")).unwrap();
        assert_eq!(last.len(), 64 << 10);
        assert!(last.iter().all(|&b| b == last[0]));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp left");
    }

    #[test]
    fn errno_classification() {
        let p = Path::new("/x");
        let full = io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error());
        assert!(FsError::new(p, "write", full).is_no_space());
        let ro = io::Error::from_raw_os_error(rustix::io::Errno::ROFS.raw_os_error());
        assert!(matches!(
            FsError::new(p, "write", ro),
            FsError::ReadOnly { .. }
        ));
    }
}
