//! Checking containerd over CRI, as the kubelet sees it: it answers, it knows the `warden`
//! handler (with the `runtime_path` warden wrote), and it accepts a `RunPodSandbox` with
//! that handler. The pod uses the host network, so no CNI is involved, and is removed
//! right away.
//!
//! containerd may still be starting after a restart (and k0s reloads it on its own after a
//! drop-in changes), so each step is retried until a deadline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use warden_cri::{Client, CriError, PodSpec, RuntimeHandler};

use crate::containerd_config::RUNTIME_NAME;

/// How long to wait between tries.
const RETRY: Duration = Duration::from_millis(250);
/// The longest a single CRI call may take (a `RunPodSandbox` may pull the pause image).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The Kubernetes namespace the check's pod claims.
pub const POD_NAMESPACE: &str = "warden-system";

/// Why containerd does not serve the `warden` handler.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(
        "containerd does not answer on {} (waited {waited:?}): {last}",
        socket.display()
    )]
    NotAnswering {
        socket: PathBuf,
        waited: Duration,
        last: String,
    },
    #[error(
        "containerd does not know the `{RUNTIME_NAME}` handler after {waited:?} (it knows: {})",
        known.join(", ")
    )]
    HandlerMissing {
        known: Vec<String>,
        waited: Duration,
    },
    #[error(
        "containerd's `{RUNTIME_NAME}` handler runs {found}, not {expected}: containerd \
         did not load the new config"
    )]
    WrongPath { found: String, expected: String },
    #[error("containerd refused a pod with handler `{RUNTIME_NAME}`: {message}")]
    PodRefused { message: String },
    #[error("containerd still knows the `{RUNTIME_NAME}` handler after {waited:?}")]
    HandlerStillThere { waited: Duration },
    #[error("CRI call failed: {0}")]
    Cri(#[from] CriError),
}

/// What a passed check saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// `containerd 1.6.20~ds1`.
    pub runtime: String,
    /// The handler as containerd reports it (absent when the runtime reports no handler
    /// list, and only the pod proves it).
    pub runtime_path: Option<String>,
    /// The sandbox id of the pod that was run and removed.
    pub pod: Option<String>,
    /// How long the check took.
    pub millis: u64,
}

impl CheckReport {
    /// One line for humans and the audit log.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{} answers", self.runtime)];
        match &self.runtime_path {
            Some(path) => parts.push(format!("handler `{RUNTIME_NAME}` runs {path}")),
            None => parts.push(format!("handler `{RUNTIME_NAME}` known")),
        }
        if let Some(pod) = &self.pod {
            parts.push(format!(
                "RunPodSandbox with handler `{RUNTIME_NAME}` accepted (sandbox {}, removed)",
                pod.get(..12).unwrap_or(pod)
            ));
        }
        format!("{} in {} ms", parts.join("; "), self.millis)
    }
}

/// Checks that containerd on `socket` (a host path) serves the `warden` handler with
/// `runtime_path` and accepts a pod with it, within `timeout`.
pub fn check_installed(
    socket: &Path,
    runtime_path: &str,
    timeout: Duration,
) -> Result<CheckReport, CheckError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let (mut client, runtime) = answering(socket, deadline, start)?;
    let handler = loop {
        match client.runtimes() {
            Ok(list) => match list.iter().find(|h| h.name == RUNTIME_NAME) {
                Some(h) => break Some(h.clone()),
                None if Instant::now() >= deadline => {
                    return Err(CheckError::HandlerMissing {
                        known: names(&list),
                        waited: start.elapsed(),
                    });
                }
                None => {}
            },
            // A runtime that lists no handlers: only the pod can tell.
            Err(CriError::Protocol { .. }) => break None,
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => {}
        }
        std::thread::sleep(RETRY);
    };
    if let Some(found) = handler.as_ref().and_then(|h| h.runtime_path.clone())
        && found != runtime_path
    {
        return Err(CheckError::WrongPath {
            found,
            expected: runtime_path.to_owned(),
        });
    }
    let pod = PodSpec::new(
        &format!("warden-verify-{}", std::process::id()),
        POD_NAMESPACE,
    )
    .handler(RUNTIME_NAME)
    .host_network(true)
    .label("app.kubernetes.io/managed-by", "warden")
    .annotation("warden.dev/verify", "true");
    client.set_timeout(CALL_TIMEOUT);
    let id = match client.run_pod(&pod) {
        Ok(id) => id,
        Err(e) => {
            return Err(CheckError::PodRefused {
                message: e.message(),
            });
        }
    };
    client.stop_and_remove_pod(&id)?;
    Ok(CheckReport {
        runtime,
        runtime_path: handler.and_then(|h| h.runtime_path),
        pod: Some(id),
        millis: millis(start),
    })
}

/// Checks that containerd on `socket` answers and no longer knows the `warden` handler.
pub fn check_removed(socket: &Path, timeout: Duration) -> Result<CheckReport, CheckError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let (mut client, runtime) = answering(socket, deadline, start)?;
    loop {
        match client.runtimes() {
            Ok(list) if !list.iter().any(|h| h.name == RUNTIME_NAME) => break,
            Ok(_) if Instant::now() >= deadline => {
                return Err(CheckError::HandlerStillThere {
                    waited: start.elapsed(),
                });
            }
            Err(CriError::Protocol { .. }) => break,
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            _ => {}
        }
        std::thread::sleep(RETRY);
    }
    Ok(CheckReport {
        runtime,
        runtime_path: None,
        pod: None,
        millis: millis(start),
    })
}

/// Waits until containerd on `socket` answers; returns its name and version.
pub fn answers(socket: &Path, timeout: Duration) -> Result<String, CheckError> {
    let start = Instant::now();
    answering(socket, start + timeout, start).map(|(_, runtime)| runtime)
}

/// Connects and asks `Version` until containerd answers or `deadline` passes.
fn answering(
    socket: &Path,
    deadline: Instant,
    start: Instant,
) -> Result<(Client, String), CheckError> {
    loop {
        let call = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        let attempt = Client::connect(socket, call).and_then(|mut client| {
            let version = client.version()?;
            Ok((
                client,
                format!("{} {}", version.runtime_name, version.runtime_version),
            ))
        });
        match attempt {
            Ok(answer) => return Ok(answer),
            Err(e) if Instant::now() >= deadline => {
                return Err(CheckError::NotAnswering {
                    socket: socket.to_path_buf(),
                    waited: start.elapsed(),
                    last: e.to_string(),
                });
            }
            Err(_) => std::thread::sleep(RETRY),
        }
    }
}

fn names(list: &[RuntimeHandler]) -> Vec<String> {
    list.iter().map(|h| h.name.clone()).collect()
}

fn millis(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_is_not_answering() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_installed(
            &dir.path().join("c.sock"),
            "/opt/warden/bin/containerd-shim-warden-v1",
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, CheckError::NotAnswering { .. }), "{err}");
        assert!(err.to_string().contains("c.sock"), "{err}");
    }

    #[test]
    fn summary_names_the_pod() {
        let report = CheckReport {
            runtime: "containerd 1.6.20".into(),
            runtime_path: Some("/opt/warden/bin/containerd-shim-warden-v1".into()),
            pod: Some("0123456789abcdef".into()),
            millis: 42,
        };
        assert_eq!(
            report.summary(),
            "containerd 1.6.20 answers; handler `warden` runs \
             /opt/warden/bin/containerd-shim-warden-v1; RunPodSandbox with handler `warden` \
             accepted (sandbox 0123456789ab, removed) in 42 ms"
        );
    }
}
