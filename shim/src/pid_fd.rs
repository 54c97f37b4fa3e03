//! Waiting for the container process to exit without blocking the shim.
//!
//! The shim's reaper (containerd-shim's SIGCHLD handler) may reap the process before we do;
//! then the exit status comes from the shim's exit-event monitor instead.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::Duration;

use containerd_shim::monitor::{ExitEvent, Subject, Subscription, Topic, monitor_subscribe};
use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use tokio::io::unix::AsyncFd;

pub struct PidFd {
    fd: OwnedFd,
    pid: i32,
    exits: Subscription,
}

impl PidFd {
    /// Must be created before the process can exit (before `start`), so no exit is missed.
    pub fn new(pid: i32) -> anyhow::Result<Self> {
        let exits = monitor_subscribe(Topic::Pid)?;
        // SAFETY: plain syscall; the returned fd, if any, is ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::PIDFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: a fresh fd from the kernel.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Self { fd, pid, exits })
    }

    /// The exit status as a shell would report it: the code, or 128 + signal.
    pub async fn wait(self) -> std::io::Result<i32> {
        // SAFETY: we own the pidfd and keep it registered only while this future lives; nothing
        // else closes or re-registers it.
        let fd = unsafe { AsyncFd::register(self.fd) }.map_err(|e| e.into_parts().1)?;
        loop {
            match waitid(
                Id::PIDFd(fd.as_fd()),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
            ) {
                Ok(WaitStatus::StillAlive) => {
                    let mut guard = fd.readable().await?;
                    guard.clear_ready();
                }
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) => continue,
                Err(Errno::ECHILD) => return wait_monitor(self.pid, self.exits).await,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

async fn wait_monitor(pid: i32, exits: Subscription) -> std::io::Result<i32> {
    tokio::task::spawn_blocking(move || {
        while let Ok(ExitEvent { subject, exit_code }) =
            exits.rx.recv_timeout(Duration::from_secs(2))
        {
            if let Subject::Pid(p) = subject
                && p == pid
            {
                return Ok(exit_code);
            }
        }
        Err(std::io::Error::other(format!(
            "lost the exit status of pid {pid}"
        )))
    })
    .await
    .map_err(std::io::Error::other)?
}
