//! Where each granted path comes from, decided on the host side at create.
//!
//! A granted `path` is either inside one of the container's mounts (a volume, a ConfigMap, a
//! `ctr --mount`), or a directory of the image's rootfs. The two are resolved in different
//! places, each where it is trustworthy:
//!
//! - **Image** directories are opened here, on the host, in the bundle's rootfs, before the
//!   container exists: no symlink anywhere on the path, a directory and nothing else, and no
//!   pseudo file system. The container's own mounts (`/proc`, `/sys`, `/dev`, volumes) are
//!   not in the host's view of the rootfs, so an image grant (even `/`) shows the image's
//!   files only. The open directory travels to the container as a descriptor.
//! - **Mount** paths only exist inside the container's mount namespace, so the container
//!   process opens them itself after `pivot_root` (see [`crate::preopen`]), with the same
//!   rules. Here the host refuses what it can already see in the spec: a grant on or inside
//!   a pseudo file system (`/proc`, `/sys`, devpts, mqueue, cgroup, the `/dev` tmpfs of
//!   device nodes), or a grant that would contain one.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use serde::{Deserialize, Serialize};
use warden_policy::{Access, MountGrant};

use crate::safe_open::{self, OpenError};

/// A mount of the container, as its OCI spec lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecMount {
    pub destination: String,
    pub kind: String,
    /// The host path (or pseudo source name) mounted there.
    pub source: String,
}

/// Mount types that are never granted, nor contained in a grant.
const SPECIAL_TYPES: &[&str] = &[
    "proc",
    "sysfs",
    "devpts",
    "mqueue",
    "cgroup",
    "cgroup2",
    "devtmpfs",
    "debugfs",
    "tracefs",
    "securityfs",
    "bpf",
    "configfs",
    "efivarfs",
    "pstore",
    "binfmt_misc",
    "hugetlbfs",
    "fusectl",
];

/// Container paths that hold kernel interfaces or device nodes whatever the spec says.
const SPECIAL_PATHS: &[&str] = &["/proc", "/sys", "/dev"];

/// Where a grant resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// Inside the container mount at `destination`: opened by the container process.
    Mount { destination: String },
    /// A directory of the image: opened on the host.
    Image,
}

/// Why a grant is refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("granted path {path} is {why}, which warden never grants")]
    Special { path: String, why: String },
    #[error("granted path {0}")]
    Open(#[from] OpenError),
}

fn within(inner: &str, outer: &str) -> bool {
    outer == "/"
        || inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn normalise(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn is_special(m: &SpecMount) -> bool {
    SPECIAL_TYPES.contains(&m.kind.as_str())
        || SPECIAL_PATHS
            .iter()
            .any(|p| within(&normalise(&m.destination), p))
}

/// Decides where `path` (a normalised absolute container path) resolves, or refuses it.
/// Pure: table-tested below.
pub fn place(path: &str, mounts: &[SpecMount]) -> Result<Place, GrantError> {
    if let Some(p) = SPECIAL_PATHS.iter().find(|p| within(path, p)) {
        return Err(GrantError::Special {
            path: path.into(),
            why: format!("inside {p}"),
        });
    }
    let containing = mounts
        .iter()
        .filter(|m| within(path, &normalise(&m.destination)))
        .max_by_key(|m| normalise(&m.destination).len());
    match containing {
        Some(m) => {
            if is_special(m) {
                return Err(GrantError::Special {
                    path: path.into(),
                    why: format!("on a {} mount ({})", m.kind, m.destination),
                });
            }
            // Pseudo file systems mounted below the grant would be reachable through it.
            if let Some(inner) = mounts.iter().find(|i| {
                let d = normalise(&i.destination);
                d != path && within(&d, path) && is_special(i)
            }) {
                return Err(GrantError::Special {
                    path: path.into(),
                    why: format!(
                        "a mount holding {} ({}) below it",
                        inner.destination, inner.kind
                    ),
                });
            }
            Ok(Place::Mount {
                destination: normalise(&m.destination),
            })
        }
        None => Ok(Place::Image),
    }
}

/// A granted directory the container process preopens for the guest.
#[derive(Serialize, Deserialize)]
pub struct Preopen {
    /// The container path the policy granted.
    pub path: String,
    /// Where the guest sees it.
    pub guest: String,
    pub access: Access,
    pub source: PreopenSource,
}

#[derive(Serialize, Deserialize)]
pub enum PreopenSource {
    /// An image directory, opened on the host.
    Image(containerd_shimkit::zygote::WireFd<File>),
    /// A path inside a container mount, opened by the container process.
    Mount,
}

impl Preopen {
    /// `path->guest:access (image|mount)`, for logs and the create record.
    pub fn describe(&self) -> String {
        let grant = MountGrant {
            path: self.path.clone(),
            access: self.access,
            guest: Some(self.guest.clone()),
        };
        let from = match self.source {
            PreopenSource::Image(_) => "image",
            PreopenSource::Mount => "mount",
        };
        format!("{} ({from})", grant.describe())
    }
}

/// What became of each grant: the preopens to hand to the container, and the grants that
/// have nothing to preopen (not in the image, not a mount).
pub struct Resolved {
    pub preopens: Vec<Preopen>,
    pub absent: Vec<String>,
}

/// Resolves every granted path: refuses what must never be granted, opens image
/// directories in `rootfs`, and leaves mount paths to the container process.
pub fn resolve(
    grants: &[MountGrant],
    mounts: &[SpecMount],
    rootfs: &Path,
) -> Result<Resolved, GrantError> {
    let root = File::open(rootfs).map_err(|e| {
        GrantError::Open(OpenError::Io {
            path: rootfs.display().to_string(),
            source: e,
        })
    })?;
    let mut out = Resolved {
        preopens: Vec::new(),
        absent: Vec::new(),
    };
    for g in grants {
        let source = match place(&g.path, mounts)? {
            Place::Mount { .. } => PreopenSource::Mount,
            Place::Image => match safe_open::open_granted_dir(root.as_fd(), &g.path) {
                Ok(dir) => PreopenSource::Image(containerd_shimkit::zygote::WireFd::new(dir)),
                Err(OpenError::Missing { .. }) => {
                    out.absent.push(g.path.clone());
                    continue;
                }
                Err(e) => return Err(e.into()),
            },
        };
        out.preopens.push(Preopen {
            path: g.path.clone(),
            guest: g.guest_path().to_string(),
            access: g.access,
            source,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(dest: &str, kind: &str) -> SpecMount {
        SpecMount {
            destination: dest.into(),
            kind: kind.into(),
            source: String::new(),
        }
    }

    /// What `ctr run` puts in a spec, plus a volume at /data.
    fn ctr_mounts() -> Vec<SpecMount> {
        vec![
            m("/proc", "proc"),
            m("/dev", "tmpfs"),
            m("/dev/pts", "devpts"),
            m("/dev/shm", "tmpfs"),
            m("/dev/mqueue", "mqueue"),
            m("/sys", "sysfs"),
            m("/run", "tmpfs"),
            m("/data", "bind"),
        ]
    }

    #[test]
    fn places_grants_by_the_mount_that_holds_them() {
        let ms = ctr_mounts();
        let mount = |d: &str| Place::Mount {
            destination: d.into(),
        };
        assert_eq!(place("/data", &ms).unwrap(), mount("/data"));
        assert_eq!(place("/data/sub", &ms).unwrap(), mount("/data"));
        assert_eq!(place("/run", &ms).unwrap(), mount("/run"));
        assert_eq!(place("/config", &ms).unwrap(), Place::Image);
        assert_eq!(place("/", &ms).unwrap(), Place::Image);
        assert_eq!(place("/database", &ms).unwrap(), Place::Image);
    }

    #[test]
    fn pseudo_file_systems_are_never_granted() {
        let ms = ctr_mounts();
        for p in [
            "/proc",
            "/proc/self",
            "/sys/kernel",
            "/dev",
            "/dev/shm",
            "/dev/pts",
        ] {
            let err = place(p, &ms).unwrap_err();
            assert!(err.to_string().contains("never grants"), "{p}: {err}");
        }
        // A proc mount somewhere else, and one below a granted mount.
        let mut odd = ctr_mounts();
        odd.push(m("/srv/proc", "proc"));
        odd.push(m("/srv", "bind"));
        let err = place("/srv/proc/1", &odd).unwrap_err();
        assert!(err.to_string().contains("on a proc mount"), "{err}");
        let err = place("/srv", &odd).unwrap_err();
        assert!(err.to_string().contains("below it"), "{err}");
    }

    #[test]
    fn image_grants_open_real_directories_only() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("srv/site")).unwrap();
        std::os::unix::fs::symlink("/proc", d.path().join("config")).unwrap();
        let grants = vec![
            MountGrant {
                path: "/srv/site".into(),
                access: Access::Ro,
                guest: Some("/".into()),
            },
            MountGrant::new("/missing", Access::Ro),
            MountGrant::new("/data", Access::Rw),
        ];
        let r = resolve(&grants, &ctr_mounts(), d.path()).unwrap();
        assert_eq!(r.absent, vec!["/missing"]);
        let described: Vec<String> = r.preopens.iter().map(Preopen::describe).collect();
        assert_eq!(
            described,
            vec!["/srv/site->/:ro (image)", "/data:rw (mount)"]
        );
        let bad = vec![MountGrant::new("/config", Access::Rw)];
        let err = resolve(&bad, &ctr_mounts(), d.path()).err().unwrap();
        assert!(
            err.to_string().contains("/config is a symlink (-> /proc)"),
            "{err}"
        );
    }
}
