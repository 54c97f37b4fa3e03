//! The container side of granted paths: after `pivot_root`, open the granted paths that live
//! in container mounts (the host already opened the image directories, see
//! [`crate::grant_paths`]), and hand every granted directory to wasmtime-wasi as a preopen.
//!
//! Mount paths are opened from `/` with the same rules as on the host: no symlink anywhere on
//! the path (a neighbour with write access to a shared volume cannot redirect this
//! container's grant), a directory, and no pseudo file system.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use warden_policy::Access;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::grant_paths::{Preopen, PreopenSource};
use crate::safe_open::{self, OpenError};

/// A granted directory, open, and where the guest sees it.
pub struct OpenDir {
    pub dir: File,
    pub guest: String,
    pub access: Access,
}

/// Why a granted path could not be preopened in the container: a refusal the audit log
/// records with rule `mounts`.
#[derive(Debug, thiserror::Error)]
#[error("granted path {0}")]
pub struct PreopenRefused(pub OpenError);

/// Opens every mount-side grant in the container's file tree (call after `pivot_root`); a
/// grant whose mount holds nothing at that path is left out, as on the host side.
pub fn open_all(preopens: &[Preopen]) -> Result<Vec<OpenDir>, PreopenRefused> {
    let root = File::open("/").map_err(|e| {
        PreopenRefused(OpenError::Io {
            path: "/".into(),
            source: e,
        })
    })?;
    let mut out = Vec::new();
    for p in preopens {
        let dir = match &p.source {
            PreopenSource::Image(fd) => match fd.try_clone() {
                Ok(f) => f,
                Err(e) => {
                    return Err(PreopenRefused(OpenError::Io {
                        path: p.path.clone(),
                        source: e,
                    }));
                }
            },
            PreopenSource::Mount => match safe_open::open_granted_dir(root.as_fd(), &p.path) {
                Ok(d) => d,
                Err(OpenError::Missing { .. }) => {
                    log::info!(
                        "granted path {} is not in the container; not preopened",
                        p.path
                    );
                    continue;
                }
                Err(e) => return Err(PreopenRefused(e)),
            },
        };
        out.push(OpenDir {
            dir,
            guest: p.guest.clone(),
            access: p.access,
        });
    }
    Ok(out)
}

/// Adds each open directory to the WASI context as a preopen at its guest path.
///
/// wasmtime-wasi opens a preopen by path; to give it exactly the directory that was checked
/// (and not whatever a path names a moment later), the process changes into the directory
/// through its descriptor and preopens `.`, then returns to `/`. The working directory is
/// the process's, so this is done under one lock: an HTTP service makes contexts for
/// concurrent requests.
pub fn add_to(b: &mut WasiCtxBuilder, dirs: &[OpenDir]) -> Result<()> {
    static CWD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if dirs.is_empty() {
        return Ok(());
    }
    let _cwd = CWD
        .lock()
        .map_err(|_| anyhow::anyhow!("the working-directory lock is poisoned"))?;
    for d in dirs {
        let perms = match d.access {
            Access::Ro => FsPerms::ReadOnly,
            Access::Rw => FsPerms::ReadWrite,
        };
        nix::unistd::fchdir(d.dir.as_raw_fd())
            .with_context(|| format!("entering granted directory for {}", d.guest))?;
        let r = b.preopened_dir(".", &d.guest, perms);
        nix::unistd::chdir("/").context("returning to /")?;
        r.map_err(anyhow::Error::from)
            .with_context(|| format!("preopening granted directory {}", d.guest))?;
    }
    Ok(())
}

/// The descriptors the runner must keep open while the guest runs besides stdio: the open
/// granted directories (wasmtime-wasi holds its own copies of those once added).
pub fn raw_fds(dirs: &[OpenDir]) -> Vec<i32> {
    dirs.iter().map(|d| d.dir.as_raw_fd()).collect()
}
