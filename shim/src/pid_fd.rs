//! Waiting for the container process to exit without blocking the shim.
//!
//! The shim's reaper (containerd-shim's SIGCHLD handler) may reap the process before we do;
//! then the exit status comes from the shim's exit-event monitor instead.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
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

    /// Sends `signal` to the process, through the pidfd (never to a reused pid).
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        // SAFETY: plain syscall on a pidfd we own.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// A second handle on the same process, for signalling it while another task waits.
    pub fn try_clone(&self) -> anyhow::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
            pid: self.pid,
            exits: monitor_subscribe(Topic::Pid)?,
        })
    }

    /// How the process ended.
    pub async fn wait(self) -> std::io::Result<Status> {
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
                Ok(WaitStatus::Exited(_, code)) => return Ok(Status::Exited(code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Status::Signaled(sig as i32)),
                Ok(_) => continue,
                Err(Errno::ECHILD) => return wait_monitor(self.pid, self.exits).await,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
    /// Only the shell-style code is known (the shim's reaper took the status first).
    Code(i32),
}

impl Status {
    /// The status as a shell would report it: the code, or 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            Status::Exited(c) | Status::Code(c) => c,
            Status::Signaled(s) => 128 + s,
        }
    }
}

async fn wait_monitor(pid: i32, exits: Subscription) -> std::io::Result<Status> {
    tokio::task::spawn_blocking(move || {
        while let Ok(ExitEvent { subject, exit_code }) =
            exits.rx.recv_timeout(Duration::from_secs(2))
        {
            if let Subject::Pid(p) = subject
                && p == pid
            {
                return Ok(Status::Code(exit_code));
            }
        }
        Err(std::io::Error::other(format!(
            "lost the exit status of pid {pid}"
        )))
    })
    .await
    .map_err(std::io::Error::other)?
}
