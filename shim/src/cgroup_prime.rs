//! Overlaps the wait every container's first cgroup join pays with the shim's own work.
//!
//! Moving a process into a cgroup (a write of its pid to `cgroup.procs`, which libcontainer
//! does for the container's intermediate process) takes the kernel's global
//! `cgroup_threadgroup_rwsem` for writing. When no such write happened in the last RCU grace
//! period, taking it waits for one full grace period (`rcu_sync_enter`): 5-30 ms measured on
//! the bench machine, the largest single wait of a warm start, and runc pays it too. Once one
//! writer has passed, the next writers within about one more grace period do not wait.
//!
//! So the shim starts that wait itself, on a thread of its own, as the daemon starts (for its
//! first container) or as a create request arrives (for the next containers of a pod): it
//! writes its own pid to the `cgroup.procs` of the cgroup it is already in (a move to where it
//! is, which changes nothing). The grace period then runs while containerd sends the create
//! and the shim mounts the rootfs, reads the spec, checks the policy, hashes the module and
//! forks the container's processes. The thread repeats the write every few milliseconds until
//! the container is created, so the lock is still ready when the container's own join comes,
//! however long that takes.
//!
//! Nothing depends on it: when no file can be written (no cgroup filesystem, a cgroup v2
//! layout that refuses the write) the container's join waits as it did before. Unless the
//! kernel is told to favour dynamic cgroup changes (the `favordynmods` mount option), which
//! removes the wait for every writer.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// How often the prime's thread repeats its write while the container is being created.
const EVERY: Duration = Duration::from_millis(3);
/// The most it keeps at it, should its holder never let go.
const AT_MOST: Duration = Duration::from_secs(2);

/// The prime's thread, writing until this is dropped.
pub struct Prime {
    _stop: Option<mpsc::Sender<()>>,
}

/// The prime the daemon started for its first container, until that container's create
/// takes it.
static FOR_FIRST_CONTAINER: Mutex<Option<Prime>> = Mutex::new(None);

/// Starts the prime as the daemon starts, before containerd's first create request arrives:
/// about 5 ms earlier than the create could. Call only after the daemon's zygote was forked
/// (the prime's file must not reach it). [`for_this_create`] takes it over.
pub fn start_for_first_container() {
    let prime = start();
    if let Ok(mut slot) = FOR_FIRST_CONTAINER.lock() {
        *slot = Some(prime);
    }
}

/// The prime for a create: the daemon's, for its first container, or a new one.
pub fn for_this_create() -> Prime {
    FOR_FIRST_CONTAINER
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .unwrap_or_else(start)
}

/// Starts the wait on a thread of its own and returns at once. The thread repeats its write
/// every few milliseconds until the returned [`Prime`] is dropped: each repeat after the first
/// passes at once and keeps the lock ready, however long the container's processes take to
/// reach their own join.
fn start() -> Prime {
    let (stop, stopped) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("cgroup-prime".into())
        .spawn(move || {
            let pid = std::process::id().to_string();
            let Some(mut file) = first_written(&pid) else {
                return;
            };
            let until = Instant::now() + AT_MOST;
            loop {
                match stopped.recv_timeout(EVERY) {
                    Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < until => {}
                    _ => return,
                }
                if let Err(e) = file.write_all(pid.as_bytes()) {
                    log::debug!("cannot prime the cgroup lock: {e}");
                    return;
                }
            }
        });
    match spawned {
        Ok(_) => Prime { _stop: Some(stop) },
        Err(e) => {
            log::debug!("cannot start the cgroup prime: {e}");
            Prime { _stop: None }
        }
    }
}

/// The first `cgroup.procs` of this process's own cgroups that takes its pid (the first
/// write, which waits for the grace period), open for the repeats.
fn first_written(pid: &str) -> Option<File> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for path in candidates(Path::new("/sys/fs/cgroup"), &text) {
        let written = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .and_then(|mut f| f.write_all(pid.as_bytes()).map(|()| f));
        match written {
            Ok(f) => {
                log::debug!("primed the cgroup lock through {}", path.display());
                return Some(f);
            }
            Err(e) => log::debug!("cannot prime through {}: {e}", path.display()),
        }
    }
    None
}

/// The `cgroup.procs` files of the cgroups this process is in, from `/proc/self/cgroup`
/// (`ID:CONTROLLERS:PATH` per hierarchy), under `root`: named v1 hierarchies first, then the
/// unified one. A path that is not absolute or holds `..` gives no candidate.
fn candidates(root: &Path, proc_self_cgroup: &str) -> Vec<PathBuf> {
    let mut v1 = Vec::new();
    let mut unified = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(relative) = relative(path) else {
            continue;
        };
        if controllers.is_empty() {
            unified.push(root.join(&relative).join("cgroup.procs"));
            unified.push(root.join("unified").join(&relative).join("cgroup.procs"));
        } else {
            let dir = controllers.strip_prefix("name=").unwrap_or(controllers);
            v1.push(root.join(dir).join(&relative).join("cgroup.procs"));
        }
    }
    v1.extend(unified);
    v1
}

fn relative(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_hierarchies_come_before_the_unified_one() {
        let text = "9:name=systemd:/system.slice/containerd.service\n\
                    4:cpu,cpuacct:/system.slice/containerd.service\n\
                    0::/system.slice/containerd.service\n";
        let got = candidates(Path::new("/sys/fs/cgroup"), text);
        let c = "system.slice/containerd.service/cgroup.procs";
        assert_eq!(
            got,
            vec![
                PathBuf::from("/sys/fs/cgroup/systemd").join(c),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct").join(c),
                PathBuf::from("/sys/fs/cgroup").join(c),
                PathBuf::from("/sys/fs/cgroup/unified").join(c),
            ]
        );
    }

    #[test]
    fn a_cgroup_v2_only_host_has_its_one_file() {
        let got = candidates(Path::new("/sys/fs/cgroup"), "0::/\n");
        assert_eq!(
            got,
            vec![
                PathBuf::from("/sys/fs/cgroup/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/unified/cgroup.procs"),
            ]
        );
    }

    #[test]
    fn paths_that_leave_the_hierarchy_or_lines_that_do_not_parse_give_nothing() {
        let text = "3:memory:/../../etc\n2:pids:relative\nnot a line\n1:cpu:/a/./b\n";
        let got = candidates(Path::new("/sys/fs/cgroup"), text);
        assert_eq!(
            got,
            vec![PathBuf::from("/sys/fs/cgroup/cpu/a/b/cgroup.procs")]
        );
    }
}
