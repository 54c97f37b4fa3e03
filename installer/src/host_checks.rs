//! Can this node be changed at all? Checks made before anything is written: an immutable
//! OS, a read-only file system under a path warden writes, a directory warden may not
//! write, a device too full for the shim.

use std::path::{Path, PathBuf};

use rustix::fs::{Access, StatVfsMountFlags, access, statvfs};

use warden_common::trusted_dir::nearest_existing;

use crate::containerd_config::source::host_path;

/// Why a node or a path cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error(
        "immutable OS ({reason}): its system files are read-only and replaced on update, so \
         warden will not install here; use the OS's own extension mechanism"
    )]
    Immutable { reason: String },
    #[error(
        "{} is on a read-only file system ({what} {}); remount it read-write or choose \
         another with the matching flag",
        mount.display(),
        path.display()
    )]
    ReadOnly {
        what: &'static str,
        path: PathBuf,
        mount: PathBuf,
    },
    #[error("{what} {}: not writable ({reason})", path.display())]
    NotWritable {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "no space left for the shim in {}: it needs {needed} bytes, {free} are free",
        path.display()
    )]
    NoSpace {
        path: PathBuf,
        needed: u64,
        free: u64,
    },
}

/// The immutable-OS markers, checked under `root`. In a container whose `/` is not the
/// host's (`root` is `/` and container markers are present), the OS files describe the
/// container, so only the paths warden writes are checked ([`writable_dir`]).
pub fn immutable_os(root: &Path) -> Result<(), HostError> {
    if root == Path::new("/") && in_container() {
        return Ok(());
    }
    if host_path(root, Path::new("/run/ostree-booted")).exists() {
        return Err(HostError::Immutable {
            reason: "/run/ostree-booted exists: an rpm-ostree system (Fedora CoreOS, RHCOS, \
                     Silverblue)"
                .to_owned(),
        });
    }
    if let Some(id) = os_release_id(root)
        && matches!(id.as_str(), "talos" | "bottlerocket")
    {
        return Err(HostError::Immutable {
            reason: format!("/etc/os-release says ID={id}"),
        });
    }
    let usr = host_path(root, Path::new("/usr"));
    if usr.is_dir() && is_read_only(&usr) {
        return Err(HostError::Immutable {
            reason: "/usr is on a read-only file system".to_owned(),
        });
    }
    Ok(())
}

/// Checks that `dir` (a host path; it may not exist yet) can be written: the nearest
/// existing ancestor is on a read-write file system and writable by this process.
pub fn writable_dir(what: &'static str, dir: &Path) -> Result<(), HostError> {
    let existing = nearest_existing(dir);
    if is_read_only(&existing) {
        return Err(HostError::ReadOnly {
            what,
            path: dir.to_path_buf(),
            mount: existing,
        });
    }
    match access(&existing, Access::WRITE_OK | Access::EXEC_OK) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::ROFS => Err(HostError::ReadOnly {
            what,
            path: dir.to_path_buf(),
            mount: existing,
        }),
        Err(e) => Err(HostError::NotWritable {
            what,
            path: dir.to_path_buf(),
            reason: format!("{}: {e}", existing.display()),
        }),
    }
}

/// Checks that the file system of `dir` (or its nearest existing ancestor) has `needed`
/// bytes free for an unprivileged writer.
pub fn has_space(dir: &Path, needed: u64) -> Result<(), HostError> {
    let existing = nearest_existing(dir);
    let Ok(stat) = statvfs(&existing) else {
        return Ok(());
    };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < needed {
        return Err(HostError::NoSpace {
            path: dir.to_path_buf(),
            needed,
            free,
        });
    }
    Ok(())
}

/// Whether the file system holding `path` is mounted read-only.
pub fn is_read_only(path: &Path) -> bool {
    statvfs(path).is_ok_and(|s| s.f_flag.contains(StatVfsMountFlags::RDONLY))
}

/// Whether this process runs in a container: a pod (the kubelet sets
/// KUBERNETES_SERVICE_HOST), Docker's or Podman's marker files, the `container` variable
/// (systemd-nspawn, Podman), or process id 1 (the image's entrypoint in a PID namespace of
/// its own, as `ctr run` starts it: on a host, pid 1 is init, never warden).
fn in_container() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::var_os("container").is_some()
        || Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || std::process::id() == 1
}

fn os_release_id(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(host_path(root, Path::new("/etc/os-release"))).ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix("ID=")
            .map(|v| v.trim().trim_matches('"').to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ostree_and_os_release_markers() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(immutable_os(root.path()), Ok(()));
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/os-release"), "NAME=Talos\nID=talos\n").unwrap();
        assert!(matches!(
            immutable_os(root.path()),
            Err(HostError::Immutable { .. })
        ));
        std::fs::write(root.path().join("etc/os-release"), "ID=\"debian\"\n").unwrap();
        assert_eq!(immutable_os(root.path()), Ok(()));
        std::fs::create_dir_all(root.path().join("run")).unwrap();
        std::fs::write(root.path().join("run/ostree-booted"), "").unwrap();
        let err = immutable_os(root.path()).unwrap_err();
        assert!(err.to_string().contains("ostree"), "{err}");
    }

    #[test]
    fn missing_dirs_are_judged_by_their_ancestor() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("opt/warden/bin");
        assert_eq!(nearest_existing(&deep), root.path());
        assert_eq!(writable_dir("install dir", &deep), Ok(()));
        assert_eq!(has_space(&deep, 1), Ok(()));
        assert!(matches!(
            has_space(&deep, u64::MAX),
            Err(HostError::NoSpace { .. })
        ));
    }
}
