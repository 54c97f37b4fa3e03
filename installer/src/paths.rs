//! Paths on the node and on the installer's own file system.
//!
//! Every path in a plan, the state and the audit log is a node path (`/etc/containerd/...`);
//! it is read and written under `--root` (`/` on a node, a fake tree in tests).

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::containerd_config::source::host_path;

/// How many symlinks are followed before giving up (as the kernel's ELOOP).
const MAX_LINKS: usize = 40;

/// The first executable file called `program` in `PATH`.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The host path of the file `node_path` names under `root`, following symlinks of its
/// last component the way the node would (an absolute link target is taken under `root`),
/// so that a file replaced by rename stays where the link points and the link stays a link.
pub fn write_target(root: &Path, node_path: &Path) -> PathBuf {
    let mut node = node_path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let host = host_path(root, &node);
        let Ok(target) = std::fs::read_link(&host) else {
            return host;
        };
        node = if target.is_absolute() {
            normalize(&target)
        } else {
            normalize(&node.parent().unwrap_or(Path::new("/")).join(target))
        };
    }
    host_path(root, &node)
}

/// Removes `.` and resolves `..` lexically (never above `/`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinked_config_is_written_where_it_points() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc/containerd");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(root.path().join("srv")).unwrap();
        std::fs::write(root.path().join("srv/real.toml"), "").unwrap();
        std::os::unix::fs::symlink("/srv/real.toml", etc.join("config.toml")).unwrap();
        assert_eq!(
            write_target(root.path(), Path::new("/etc/containerd/config.toml")),
            root.path().join("srv/real.toml")
        );
        std::os::unix::fs::symlink("../../srv/real.toml", etc.join("rel.toml")).unwrap();
        assert_eq!(
            write_target(root.path(), Path::new("/etc/containerd/rel.toml")),
            root.path().join("srv/real.toml")
        );
        assert_eq!(
            write_target(root.path(), Path::new("/etc/containerd/absent.toml")),
            etc.join("absent.toml")
        );
    }

    #[test]
    fn sh_is_on_path() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("surely-not-a-program-here").is_none());
    }
}
