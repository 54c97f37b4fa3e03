//! Durable, atomic file changes: what every write of the installer goes through.
//!
//! A file is replaced by writing a temp file in the same directory, fsyncing it, renaming
//! it over the target and fsyncing the directory. A reader (containerd, the shim, a second
//! `warden`) sees the old bytes or the new ones, never a mix, and after a crash the file is
//! whole in one of the two states. The rename also replaces a running executable without
//! "text file busy": the running process keeps the old inode.
//!
//! Temp files are named `.<name>.warden-tmp-<pid>`: hidden, and not ending in `.toml`, so a
//! drop-in directory's `*.toml` import never loads a half-written one. A run killed midway
//! leaves one behind; [`remove_stale_temps`] clears them under the host lock.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::digest::format_digest;

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
    replace_with(path, mode, before_rename, |file, temp| {
        file.write_all(bytes)
            .map_err(|e| FsError::new(temp, "write", e))
    })
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
    replace_with(path, mode, before_rename, |file, temp| {
        let mut input = File::open(source).map_err(|e| FsError::new(source, "open", e))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = input
                .read(&mut buffer)
                .map_err(|e| FsError::new(source, "read", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n])
                .map_err(|e| FsError::new(temp, "write", e))?;
        }
        let actual = format_digest(&hasher.finalize());
        if actual != expected {
            return Err(FsError::Changed {
                path: source.to_path_buf(),
                expected: expected.to_owned(),
                actual,
            });
        }
        Ok(())
    })
}

/// The temp file protocol: create, fill, set mode and owner, fsync, hook, rename, fsync the
/// directory. The temp file is removed on any failure before the rename.
fn replace_with(
    path: &Path,
    mode: FileMode,
    before_rename: &dyn Fn(),
    fill: impl FnOnce(&mut File, &Path) -> Result<(), FsError>,
) -> Result<(), FsError> {
    let dir = parent(path)?;
    let temp = temp_path(path)?;
    // A temp file of a killed run with our pid (pids are reused) is ours to replace.
    let _ = fs::remove_file(&temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| FsError::new(&temp, "create", e))?;
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
        drop(file);
        before_rename();
        fs::rename(&temp, path).map_err(|e| FsError::new(path, "rename a temp file over", e))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(&dir)
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
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
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

fn temp_path(path: &Path) -> Result<PathBuf, FsError> {
    let dir = parent(path)?;
    let name = path.file_name().ok_or_else(|| FsError::Io {
        path: path.to_path_buf(),
        op: "name a temp file for",
        source: io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"),
    })?;
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!("{TEMP_MARKER}{}", std::process::id()));
    Ok(dir.join(temp))
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
        let good = format_digest(&Sha256::digest(b"shim bytes"));
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
