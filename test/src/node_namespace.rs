//! A node's file system for one test: a mount namespace in which node paths such as
//! `/etc/containerd`, `/opt/warden/bin` or `/run/dbus/system_bus_socket` are bind mounts of
//! dirs and files of the test's own, so that a containerd started in it (and the shims and
//! containers it starts, which inherit it) reads and writes "the node's" paths while this
//! machine's stay untouched.
//!
//! The namespace is held by a process (`sleep`) that `unshare --mount --propagation private`
//! starts after making the mounts; containerd is started in it with `nsenter --mount`, and
//! so is a restarted containerd ([`crate::containerd::Containerd::write_restart_script`]).
//!
//! A node path that does not exist on this machine needs a mount point: it is made inside an
//! overlay mounted, in the namespace only, on its nearest existing parent (whose upper layer
//! is in the test's dir), so nothing is created on this machine either. The parent may not
//! be `/`.

use std::io::{BufRead, BufReader};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{self, Error};

/// How long the namespace's mounts may take to be made.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A node path and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePath {
    /// The absolute path as the node's processes see it.
    pub node: PathBuf,
    /// What is mounted there: `None` for a new empty dir in the containerd instance's dir
    /// (`<dir>/node/<node path>`), or an existing file or dir of the test's.
    pub source: Option<PathBuf>,
}

impl NodePath {
    /// A new empty dir at `node`.
    pub fn fresh(node: impl Into<PathBuf>) -> NodePath {
        NodePath {
            node: node.into(),
            source: None,
        }
    }

    /// `source` (a file or dir that exists) at `node`.
    pub fn bind(node: impl Into<PathBuf>, source: impl Into<PathBuf>) -> NodePath {
        NodePath {
            node: node.into(),
            source: Some(source.into()),
        }
    }
}

/// The running namespace. Dropping it ends its holder (the namespace itself ends when the
/// last process in it has).
#[derive(Debug)]
pub struct NodeNamespace {
    holder: Option<Child>,
    /// (node path, host path), longest node path first.
    binds: Vec<(PathBuf, PathBuf)>,
}

/// One mount the holder makes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// An overlay on `dir` (lower: `dir` itself), upper and work dirs in the test's dir.
    Overlay {
        dir: PathBuf,
        upper: PathBuf,
        work: PathBuf,
    },
    /// Makes the mount point (a dir, or an empty file for a file source) inside an overlay.
    MountPoint { path: PathBuf, dir: bool },
    /// A bind mount of `source` on `target`.
    Bind { source: PathBuf, target: PathBuf },
}

/// The nearest existing ancestor of `path` (per `exists`).
fn existing_ancestor(path: &Path, exists: &dyn Fn(&Path) -> bool) -> PathBuf {
    let mut current = path.to_path_buf();
    while !exists(&current) {
        if !current.pop() {
            return PathBuf::from("/");
        }
    }
    current
}

/// The mounts that give `paths` (node path, host source, source is a dir) on a machine
/// where `exists` says which paths exist; overlays and upper dirs under `scratch`.
fn plan(
    paths: &[(PathBuf, PathBuf, bool)],
    scratch: &Path,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Vec<Step>, Error> {
    for (a, _, _) in paths {
        if let Some((b, _, _)) = paths.iter().find(|(b, _, _)| b != a && b.starts_with(a)) {
            return Err(Error::new(format!(
                "node paths may not be nested: {} is below {}",
                b.display(),
                a.display()
            )));
        }
    }
    let mut overlays: Vec<PathBuf> = Vec::new();
    let mut mount_points = Vec::new();
    for (node, _, is_dir) in paths {
        let clean = node.is_absolute()
            && node
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !clean || node == Path::new("/") {
            return Err(Error::new(format!(
                "node path {} must be absolute, below /, without `.` or `..`",
                node.display()
            )));
        }
        if exists(node) {
            continue;
        }
        let parent = existing_ancestor(node, exists);
        if parent == Path::new("/") {
            return Err(Error::new(format!(
                "node path {}: no parent of it exists on this machine but /, which cannot be \
                 overlaid",
                node.display()
            )));
        }
        if !overlays.iter().any(|o| parent.starts_with(o)) {
            overlays.retain(|o| !o.starts_with(&parent));
            overlays.push(parent);
        }
        mount_points.push(Step::MountPoint {
            path: node.clone(),
            dir: *is_dir,
        });
    }
    overlays.sort();
    let mut steps: Vec<Step> = overlays
        .into_iter()
        .enumerate()
        .map(|(i, dir)| Step::Overlay {
            dir,
            upper: scratch.join(format!("overlay-{i}/upper")),
            work: scratch.join(format!("overlay-{i}/work")),
        })
        .collect();
    steps.extend(mount_points);
    steps.extend(paths.iter().map(|(node, source, _)| Step::Bind {
        source: source.clone(),
        target: node.clone(),
    }));
    Ok(steps)
}

/// `text` quoted for `sh`.
fn quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

/// The holder's script: the mounts, then `ready` on stdout, then sleep until killed.
fn script(steps: &[Step]) -> String {
    let mut text = String::from("set -eu\n");
    for step in steps {
        let line = match step {
            Step::Overlay { dir, upper, work } => format!(
                "mkdir -p {u} {w}\nmount -t overlay warden-node -o lowerdir={d},upperdir={u},workdir={w} {d}\n",
                d = quote(dir),
                u = quote(upper),
                w = quote(work)
            ),
            Step::MountPoint { path, dir: true } => format!("mkdir -p {}\n", quote(path)),
            Step::MountPoint { path, dir: false } => {
                format!("mkdir -p \"$(dirname {p})\"\n: > {p}\n", p = quote(path))
            }
            Step::Bind { source, target } => {
                format!("mount --bind {} {}\n", quote(source), quote(target))
            }
        };
        text.push_str(&line);
    }
    text.push_str("echo ready\nexec sleep 2147483647\n");
    text
}

impl NodeNamespace {
    /// Makes the namespace: `paths` mounted, fresh dirs under `dir/node`, overlays' layers
    /// under `dir/node-overlays`.
    pub fn start(dir: &Path, paths: &[NodePath]) -> Result<NodeNamespace, Error> {
        let mut resolved = Vec::new();
        for path in paths {
            let source = match &path.source {
                Some(source) => source.clone(),
                None => {
                    let relative = path.node.strip_prefix("/").unwrap_or(&path.node);
                    let fresh = dir.join("node").join(relative);
                    std::fs::create_dir_all(&fresh).map_err(|e| {
                        Error::new(format!("cannot create {}: {e}", fresh.display()))
                    })?;
                    fresh
                }
            };
            let meta = std::fs::metadata(&source).map_err(|e| {
                Error::new(format!(
                    "the source of node path {} ({}): {e}",
                    path.node.display(),
                    source.display()
                ))
            })?;
            resolved.push((path.node.clone(), source, meta.is_dir()));
        }
        let steps = plan(&resolved, &dir.join("node-overlays"), &|p| {
            std::fs::symlink_metadata(p).is_ok()
        })?;
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(script(&steps))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::new(format!("cannot run unshare: {e}")))?;
        let (sender, receiver) = std::sync::mpsc::channel();
        if let Some(stdout) = holder.stdout.take() {
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = sender.send(line);
            });
        }
        let line = receiver.recv_timeout(READY_TIMEOUT).unwrap_or_default();
        let mut namespace = NodeNamespace {
            holder: Some(holder),
            binds: resolved
                .iter()
                .map(|(node, source, _)| (node.clone(), source.clone()))
                .collect(),
        };
        namespace
            .binds
            .sort_by_key(|(node, _)| std::cmp::Reverse(node.components().count()));
        if line != "ready\n" {
            let mut stderr = String::new();
            if let Some(holder) = namespace.holder.as_mut() {
                util::kill(holder.id(), libc::SIGKILL);
                let _ = holder.wait();
                if let Some(mut err) = holder.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
                }
            }
            namespace.holder = None;
            return Err(Error::new(format!(
                "the node's mount namespace was not made: {}\nscript:\n{}",
                stderr.trim(),
                script(&steps)
            )));
        }
        Ok(namespace)
    }

    /// The holder's pid, for `nsenter --target PID --mount`.
    pub fn pid(&self) -> u32 {
        self.holder.as_ref().map_or(0, Child::id)
    }

    /// `/proc/<holder>/ns/mnt`'s identity (`mnt:[inode]`), to tell the namespace's processes.
    pub fn id(&self) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{}/ns/mnt", self.pid())).ok()
    }

    /// Where node path `node` is on this machine, if it is below one of the node paths.
    pub fn host_path(&self, node: &Path) -> Option<PathBuf> {
        self.binds.iter().find_map(|(prefix, source)| {
            node.strip_prefix(prefix).ok().map(|rest| {
                if rest.as_os_str().is_empty() {
                    source.clone()
                } else {
                    source.join(rest)
                }
            })
        })
    }

    /// The command that runs `program` in the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg("--target")
            .arg(self.pid().to_string())
            .arg("--mount")
            .arg("--")
            .arg(program);
        command
    }
}

impl Drop for NodeNamespace {
    fn drop(&mut self) {
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exists(set: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |p: &Path| set.iter().any(|e| Path::new(e) == p)
    }

    #[test]
    fn missing_mount_points_are_made_in_one_overlay_per_existing_parent() {
        let on_machine = exists(&["/", "/etc", "/etc/containerd", "/run", "/var", "/var/lib"]);
        let paths = vec![
            (
                PathBuf::from("/etc/containerd"),
                PathBuf::from("/t/a"),
                true,
            ),
            (PathBuf::from("/etc/warden"), PathBuf::from("/t/b"), true),
            (
                PathBuf::from("/var/lib/warden"),
                PathBuf::from("/t/c"),
                true,
            ),
            (
                PathBuf::from("/run/dbus/system_bus_socket"),
                PathBuf::from("/t/bus"),
                false,
            ),
        ];
        let steps = plan(&paths, Path::new("/t/o"), &on_machine).unwrap();
        let overlays: Vec<&Path> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Overlay { dir, .. } => Some(dir.as_path()),
                _ => None,
            })
            .collect();
        assert_eq!(
            overlays,
            [Path::new("/etc"), Path::new("/run"), Path::new("/var/lib")]
        );
        // /etc/containerd exists: bound where it is, no mount point made.
        assert!(!steps.contains(&Step::MountPoint {
            path: "/etc/containerd".into(),
            dir: true
        }));
        assert!(steps.contains(&Step::MountPoint {
            path: "/run/dbus/system_bus_socket".into(),
            dir: false
        }));
        // Every mount point before every bind.
        let last_point = steps
            .iter()
            .rposition(|s| matches!(s, Step::MountPoint { .. }))
            .unwrap();
        let first_bind = steps
            .iter()
            .position(|s| matches!(s, Step::Bind { .. }))
            .unwrap();
        assert!(last_point < first_bind);
    }

    #[test]
    fn root_relative_and_dotted_paths_are_refused() {
        let on_machine = exists(&["/"]);
        for bad in ["relative/x", "/", "/etc/../x", "/nothing/here"] {
            let paths = vec![(PathBuf::from(bad), PathBuf::from("/t"), true)];
            assert!(
                plan(&paths, Path::new("/t/o"), &on_machine).is_err(),
                "{bad} was accepted"
            );
        }
        let nested = vec![
            (PathBuf::from("/run/dbus"), PathBuf::from("/t/d"), true),
            (
                PathBuf::from("/run/dbus/socket"),
                PathBuf::from("/t/s"),
                false,
            ),
        ];
        let on_machine = exists(&["/", "/run"]);
        assert!(plan(&nested, Path::new("/t/o"), &on_machine).is_err());
    }

    #[test]
    fn the_script_quotes_paths() {
        let text = script(&[Step::Bind {
            source: "/t/it's".into(),
            target: "/etc/x".into(),
        }]);
        assert!(
            text.contains(r"mount --bind '/t/it'\''s' '/etc/x'"),
            "{text}"
        );
        assert!(text.ends_with("echo ready\nexec sleep 2147483647\n"));
    }
}
