//! The youki container, living in a zygote process forked from the shim before it went
//! multi-threaded. The shim talks to it only through these calls.

use std::cell::RefCell;
use std::path::PathBuf;

use anyhow::Context;
use containerd_shimkit::set_logger_kv;
use containerd_shimkit::zygote::Zygote;
use libcontainer::container::Container as YoukiContainer;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::executor::WardenExecutor;
use crate::launch::Launch;

thread_local! {
    // Lives in the zygote process; one container per zygote.
    static CONTAINER: RefCell<Option<YoukiContainer>> = const { RefCell::new(None) };
}

pub struct Container(Zygote);

/// What went wrong with the container, as it crosses back from the zygote.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
pub enum ContainerError {
    /// Asked about a container the zygote does not hold.
    #[error("the container was not created")]
    NotCreated,
    /// youki has no pid for it (not started, or gone).
    #[error("the container has no process")]
    NoProcess,
    #[error("{signal} is not a signal")]
    BadSignal { signal: u32 },
    /// youki refused an operation.
    #[error("{op}: {message}")]
    Youki { op: String, message: String },
    /// The zygote did not answer (it died, or the request could not be sent).
    #[error("the container's zygote: {0}")]
    Zygote(String),
}

impl From<ContainerError> for containerd_shimkit::sandbox::Error {
    fn from(e: ContainerError) -> Self {
        use containerd_shimkit::sandbox::Error as E;
        match e {
            ContainerError::NotCreated | ContainerError::NoProcess => E::NotFound(e.to_string()),
            ContainerError::BadSignal { .. } => E::InvalidArgument(e.to_string()),
            ContainerError::Youki { .. } | ContainerError::Zygote(_) => E::Others(e.to_string()),
        }
    }
}

fn youki(op: &str, e: impl std::fmt::Display) -> ContainerError {
    ContainerError::Youki {
        op: op.into(),
        message: format!("{e:#}"),
    }
}

impl Container {
    /// Spawns a zygote and creates the (not yet started) container in it.
    pub fn build(launch: Launch) -> Result<Self, ContainerError> {
        let zygote = Zygote::global().spawn();
        zygote
            .try_run(build_in_zygote, launch)
            .map_err(|e| ContainerError::Zygote(e.to_string()))??;
        Ok(Container(zygote))
    }

    pub fn pid(&self) -> Result<i32, ContainerError> {
        self.with(
            |c, _| c.pid().map(|p| p.as_raw()).ok_or(ContainerError::NoProcess),
            (),
        )
    }

    pub fn start(&self) -> Result<(), ContainerError> {
        self.with(|c, _| c.start().map_err(|e| youki("starting", e)), ())
    }

    pub fn kill(&self, signal: u32) -> Result<(), ContainerError> {
        self.with(
            |c, signal| {
                let s = Signal::try_from(signal as i32)
                    .map_err(|_| ContainerError::BadSignal { signal })?;
                c.kill(s, true).map_err(|e| youki("killing", e))
            },
            signal,
        )
    }

    pub fn delete(&self) -> Result<(), ContainerError> {
        self.with(|c, _| c.delete(true).map_err(|e| youki("deleting", e)), ())
    }

    fn with<A, T>(
        &self,
        f: fn(&mut YoukiContainer, A) -> Result<T, ContainerError>,
        arg: A,
    ) -> Result<T, ContainerError>
    where
        A: serde::Serialize + serde::de::DeserializeOwned + 'static,
        T: serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        // The function pointer is valid in the zygote: it is a fork of this same binary.
        self.0
            .try_run(
                |(f, arg): (usize, A)| -> Result<T, ContainerError> {
                    // SAFETY: `f` was cast from a `fn(&mut YoukiContainer, A) -> Result<T,
                    // ContainerError>` in the parent, and the zygote runs the same executable
                    // image.
                    let f: fn(&mut YoukiContainer, A) -> Result<T, ContainerError> =
                        unsafe { std::mem::transmute(f) };
                    CONTAINER.with_borrow_mut(|c| match c.as_mut() {
                        Some(c) => f(c, arg),
                        None => Err(ContainerError::NotCreated),
                    })
                },
                (f as usize, arg),
            )
            .map_err(|e| ContainerError::Zygote(e.to_string()))?
    }
}

fn build_in_zygote(launch: Launch) -> Result<(), ContainerError> {
    set_logger_kv([("instance", launch.id.as_str())]);
    let c = create(launch).map_err(|e| youki("creating", e))?;
    CONTAINER.with_borrow_mut(|slot| *slot = Some(c));
    Ok(())
}

fn create(launch: Launch) -> anyhow::Result<YoukiContainer> {
    let Launch { id, cfg, workload } = launch;
    let root = state_root(&cfg.containerd_address, &cfg.namespace);
    let mut builder = ContainerBuilder::new(id, SyscallType::Linux)
        .with_executor(WardenExecutor::new(workload))
        .with_root_path(root)?;
    if let Ok(f) = cfg.open_stdin() {
        builder = builder.with_stdin(f);
    }
    if let Ok(f) = cfg.open_stdout() {
        builder = builder.with_stdout(f);
    }
    if let Ok(f) = cfg.open_stderr() {
        builder = builder.with_stderr(f);
    }
    builder
        .as_init(&cfg.bundle)
        .as_sibling(true)
        // Not detached: libcontainer 0.7 then accepts a spec with `process.terminal` and no
        // console socket, as 0.6 did (the shim never passes a console socket: stdio is
        // containerd's FIFOs, and containerd-shimkit refuses a task that asks for a
        // terminal, so only a spec at odds with its task request gets here). Detached, 0.7's
        // default, refuses such a spec; 0.7 reads the flag for nothing else.
        .with_detach(false)
        .with_systemd(cfg.config.systemd_cgroup)
        .build()
        .context("creating the container")
}

/// youki's state directory. The node's containerd gets `/run/containerd/warden/<ns>`; any
/// other containerd (a private one for tests, a second one on the node) gets its own root, so
/// two containerds never share container state.
pub fn state_root(containerd_address: &str, namespace: &str) -> PathBuf {
    let addr = containerd_address.trim_start_matches("unix://");
    if addr.is_empty() || addr == "/run/containerd/containerd.sock" {
        return PathBuf::from("/run/containerd/warden").join(namespace);
    }
    let h = Sha256::digest(addr.as_bytes());
    PathBuf::from("/run/warden")
        .join(hex::encode(&h[..6]))
        .join(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_roots_differ_per_containerd() {
        assert_eq!(
            state_root("/run/containerd/containerd.sock", "k8s.io"),
            PathBuf::from("/run/containerd/warden/k8s.io")
        );
        let a = state_root("/tmp/a/containerd.sock", "ns");
        let b = state_root("/tmp/b/containerd.sock", "ns");
        assert_ne!(a, b);
        assert!(a.starts_with("/run/warden") && a.ends_with("ns"));
    }
}
