//! The kernel's OOM kills in a container's memory cgroup. When the pod's memory limit (the
//! cgroup the kubelet asks for, not the profile's `limits.memory`, which warden enforces
//! itself) ends a guest, the exit record says so instead of a bare "killed by signal 9".
//!
//! The counter is the cgroup's own: `oom_kill` in `memory.events` (cgroup v2) or in
//! `memory.oom_control` (v1). It is read when the container starts and after it exits; the
//! cgroup is removed only at delete, after both.

use std::path::{Component, Path, PathBuf};

/// Where the kernel counts the OOM kills of one container's memory cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomCounter {
    file: PathBuf,
}

impl OomCounter {
    /// The counter of the container whose spec names `cgroups_path`, on this host's cgroup
    /// layout; `None` for a path warden does not place (relative, or with `..`).
    pub fn for_cgroup(cgroups_path: &str) -> Option<OomCounter> {
        let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        Self::under(Path::new("/sys/fs/cgroup"), unified, cgroups_path)
    }

    fn under(root: &Path, unified: bool, cgroups_path: &str) -> Option<OomCounter> {
        let relative = relative_cgroup(cgroups_path)?;
        let file = if unified {
            root.join(relative).join("memory.events")
        } else {
            root.join("memory")
                .join(relative)
                .join("memory.oom_control")
        };
        Some(OomCounter { file })
    }

    /// The kills so far; `None` when the file cannot be read or holds no count (a kernel
    /// before 4.13 on cgroup v1).
    pub fn kills(&self) -> Option<u64> {
        parse_oom_kills(&std::fs::read_to_string(&self.file).ok()?)
    }
}

/// The cgroup directory an OCI `cgroupsPath` names, relative to a hierarchy's root. cgroupfs
/// driver: `/k8s.io/ID`. systemd driver: `SLICE:PREFIX:NAME`, a scope `PREFIX-NAME.scope`
/// under the slice, whose parents are its dash-separated prefixes
/// (`kubepods-besteffort-pod1.slice` is
/// `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice`).
pub fn relative_cgroup(cgroups_path: &str) -> Option<PathBuf> {
    let relative = match cgroups_path.split(':').collect::<Vec<_>>()[..] {
        [absolute] => Path::new(absolute.strip_prefix('/')?).to_path_buf(),
        [_, prefix, name] if prefix.contains('/') || name.contains('/') => return None,
        [slice, prefix, name] => {
            let slice = if slice.is_empty() {
                "system.slice"
            } else {
                slice
            };
            let scope = if prefix.is_empty() {
                format!("{name}.scope")
            } else {
                format!("{prefix}-{name}.scope")
            };
            expand_slice(slice)?.join(scope)
        }
        _ => return None,
    };
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (plain && relative.components().next().is_some()).then_some(relative)
}

/// `a-b-c.slice` -> `a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the root.
fn expand_slice(slice: &str) -> Option<PathBuf> {
    if slice == "-.slice" {
        return Some(PathBuf::new());
    }
    let name = slice.strip_suffix(".slice")?;
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        if part.is_empty() || part.contains('/') {
            return None;
        }
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Some(path)
}

/// The `oom_kill N` line of `memory.events` or `memory.oom_control`.
fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_and_systemd_paths_resolve_to_their_directories() {
        assert_eq!(
            relative_cgroup("/k8s.io/abc"),
            Some(PathBuf::from("k8s.io/abc"))
        );
        assert_eq!(
            relative_cgroup("kubepods-besteffort-pod1.slice:cri-containerd:abc"),
            Some(PathBuf::from(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/\
                 cri-containerd-abc.scope"
            ))
        );
        assert_eq!(
            relative_cgroup(":cri-containerd:abc"),
            Some(PathBuf::from("system.slice/cri-containerd-abc.scope"))
        );
        assert_eq!(
            relative_cgroup("-.slice::abc"),
            Some(PathBuf::from("abc.scope"))
        );
        for refused in [
            "",
            "/",
            "relative/x",
            "/a/../../etc",
            "a:b",
            "x.slice:p:../n",
            "bad-:p:n",
        ] {
            assert_eq!(relative_cgroup(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn the_counter_file_follows_the_hierarchy() {
        let root = Path::new("/sys/fs/cgroup");
        let v1 = OomCounter::under(root, false, "/k8s.io/abc").unwrap();
        assert_eq!(
            v1.file,
            PathBuf::from("/sys/fs/cgroup/memory/k8s.io/abc/memory.oom_control")
        );
        let v2 = OomCounter::under(root, true, "/k8s.io/abc").unwrap();
        assert_eq!(
            v2.file,
            PathBuf::from("/sys/fs/cgroup/k8s.io/abc/memory.events")
        );
    }

    #[test]
    fn the_kill_count_is_read_from_either_file() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_oom_kills(v1), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(v2), Some(1));
        assert_eq!(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\n"), None);
    }
}
