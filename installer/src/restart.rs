//! Restarting containerd after its config changed: by `--restart-command` (run with
//! `sh -c`), or through systemd where systemd runs the node. Never by a signal: SIGHUP does
//! not make containerd reload, it stops it.
//!
//! systemd is reached one of two ways:
//!
//! - `systemctl restart <unit>.service`, which waits for the restart job to finish and talks
//!   to systemd over its private socket (`/run/systemd/private`). It needs `systemctl` and
//!   systemd's runtime dir at `/run/systemd`, so it is only used with `--root /`. The
//!   default when warden is run by hand on a systemd node.
//! - systemd's D-Bus API ([`crate::systemd_dbus`]): `RestartUnit` and the job's
//!   `JobRemoved` signal, over the socket `DBUS_SYSTEM_BUS_ADDRESS` names (default: the
//!   system bus). Needs only that socket: the default in `install --daemon` (the DaemonSet
//!   mounts the socket, nothing else of systemd), and by hand with `--restart-via dbus`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use serde::Serialize;

use crate::containerd_config::source::host_path;
use crate::systemd_dbus::{self, DbusError};

/// How long a restart may take.
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// How containerd is restarted on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RestartMethod {
    /// `sh -c <command>`, with `WARDEN_RESTART_UNIT` and `WARDEN_CONTAINERD_CONFIG` set.
    Command { command: String },
    /// `systemctl restart <unit>.service`.
    Systemd,
    /// systemd's `RestartUnit` over D-Bus at `address`, waiting for the job's end.
    Dbus { address: String },
    /// No way to restart: a plan that needs one is refused.
    Unavailable { reason: String },
}

/// Why a restart failed.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("cannot restart containerd: {reason}")]
    Unavailable { reason: String },
    #[error(
        "restarting containerd with {what} failed ({status}){}",
        output_suffix(output)
    )]
    Failed {
        what: String,
        status: String,
        output: String,
    },
    #[error("restarting containerd with {what} did not finish within {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("cannot run {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("restarting containerd through systemd's D-Bus API failed: {0}")]
    Dbus(#[from] DbusError),
}

/// `--restart-via`: how systemd is asked to restart containerd (`--restart-command` aside).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum RestartVia {
    /// `install --daemon`: D-Bus; otherwise `systemctl` where systemd runs the node.
    #[default]
    Auto,
    /// systemd's D-Bus API, at DBUS_SYSTEM_BUS_ADDRESS (default: the system bus).
    Dbus,
    /// `systemctl restart UNIT`.
    Systemctl,
}

fn output_suffix(output: &str) -> String {
    if output.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", output.trim())
    }
}

impl RestartMethod {
    /// `--restart-command` when given; else systemd's D-Bus API with `--restart-via dbus`
    /// or in `--daemon` mode (`daemon`); else `systemctl` when systemd runs the node seen at
    /// `root` (which must then be `/`); else nothing.
    pub fn choose(
        command: Option<&str>,
        via: RestartVia,
        daemon: bool,
        root: &Path,
    ) -> RestartMethod {
        if let Some(command) = command {
            return RestartMethod::Command {
                command: command.to_owned(),
            };
        }
        match via {
            RestartVia::Dbus => Self::dbus(root),
            RestartVia::Auto if daemon => Self::dbus(root),
            RestartVia::Auto | RestartVia::Systemctl => Self::systemctl(root),
        }
    }

    /// systemd's D-Bus API at `DBUS_SYSTEM_BUS_ADDRESS` (default: the system bus), when its
    /// socket is there.
    fn dbus(root: &Path) -> RestartMethod {
        let explicit = std::env::var(systemd_dbus::ADDRESS_ENV).is_ok_and(|a| !a.trim().is_empty());
        let address = systemd_dbus::address_from_env();
        if !explicit && root != Path::new("/") {
            return RestartMethod::Unavailable {
                reason: format!(
                    "the system bus {} is this machine's, not --root {}'s; set {} or pass \
                     --restart-command CMD",
                    systemd_dbus::DEFAULT_ADDRESS,
                    root.display(),
                    systemd_dbus::ADDRESS_ENV
                ),
            };
        }
        if let Some(path) = systemd_dbus::unix_path(&address)
            && std::fs::symlink_metadata(path).is_err()
        {
            return RestartMethod::Unavailable {
                reason: format!(
                    "there is no D-Bus socket at {path} ({}={address}): mount the host's \
                     system bus socket, or systemd's {} with {}=unix:path={}, or pass \
                     --restart-command CMD",
                    systemd_dbus::ADDRESS_ENV,
                    systemd_dbus::SYSTEMD_PRIVATE_SOCKET,
                    systemd_dbus::ADDRESS_ENV,
                    systemd_dbus::SYSTEMD_PRIVATE_SOCKET,
                ),
            };
        }
        RestartMethod::Dbus { address }
    }

    /// `systemctl`, when systemd runs the node seen at `root` and `root` is `/`.
    fn systemctl(root: &Path) -> RestartMethod {
        if !host_path(root, Path::new("/run/systemd/system")).is_dir() {
            return RestartMethod::Unavailable {
                reason: "systemd does not run this node (no /run/systemd/system); pass \
                         --restart-command CMD"
                    .to_owned(),
            };
        }
        if root != Path::new("/") {
            return RestartMethod::Unavailable {
                reason: format!(
                    "systemd is reached through /run/systemd of this machine, not of --root \
                     {}; pass --restart-command CMD",
                    root.display()
                ),
            };
        }
        if crate::paths::find_in_path("systemctl").is_none() {
            return RestartMethod::Unavailable {
                reason: "systemd runs this node but `systemctl` is not on PATH; pass \
                         --restart-command CMD"
                    .to_owned(),
            };
        }
        RestartMethod::Systemd
    }

    /// How a restart of `unit` would be done, in words.
    pub fn describe(&self, unit: &str) -> String {
        match self {
            RestartMethod::Command { command } => format!("`sh -c {command:?}`"),
            RestartMethod::Systemd => format!("`systemctl restart {}`", service(unit)),
            RestartMethod::Dbus { address } => format!(
                "systemd's D-Bus API (RestartUnit {} at {address})",
                service(unit)
            ),
            RestartMethod::Unavailable { reason } => format!("no way to restart ({reason})"),
        }
    }

    /// Restarts `unit` and waits for the method to finish; returns what was done (for the
    /// state and the audit log).
    pub fn restart(&self, unit: &str, config: &Path) -> Result<String, RestartError> {
        let mut command = match self {
            RestartMethod::Command { command } => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(command);
                c
            }
            RestartMethod::Systemd => {
                let mut c = Command::new("systemctl");
                c.arg("restart").arg(service(unit));
                c
            }
            RestartMethod::Dbus { address } => {
                let done = systemd_dbus::restart_unit(address, &service(unit), TIMEOUT)?;
                return Ok(format!(
                    "{} via systemd's D-Bus API ({} connection to {address}, job {} done in {} ms)",
                    service(unit),
                    done.connection,
                    done.job,
                    done.millis
                ));
            }
            RestartMethod::Unavailable { reason } => {
                return Err(RestartError::Unavailable {
                    reason: reason.clone(),
                });
            }
        };
        command
            .env("WARDEN_RESTART_UNIT", unit)
            .env("WARDEN_CONTAINERD_CONFIG", config);
        let what = self.describe(unit);
        run(command, &what, TIMEOUT)?;
        Ok(format!("{} via {what}", service(unit)))
    }
}

/// `unit.service` unless the unit already names its type.
fn service(unit: &str) -> String {
    let typed = [".service", ".target", ".socket", ".scope"]
        .iter()
        .any(|suffix| unit.ends_with(suffix));
    if typed {
        unit.to_owned()
    } else {
        format!("{unit}.service")
    }
}

/// Runs `command` with no stdin, output captured, killed after `timeout`.
fn run(mut command: Command, what: &str, timeout: Duration) -> Result<(), RestartError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| RestartError::Spawn {
        what: what.to_owned(),
        source,
    })?;
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        })
    })
    .collect();
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RestartError::Timeout {
                    what: what.to_owned(),
                    after: timeout,
                });
            }
            Err(source) => {
                return Err(RestartError::Spawn {
                    what: what.to_owned(),
                    source,
                });
            }
        }
    };
    let output: Vec<u8> = readers
        .into_iter()
        .filter_map(|r| r.join().ok())
        .flatten()
        .collect();
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output);
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    Err(RestartError::Failed {
        what: what.to_owned(),
        status: status.to_string(),
        output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_gets_the_unit_and_config() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("called");
        let method = RestartMethod::choose(
            Some(&format!(
                "echo \"$WARDEN_RESTART_UNIT $WARDEN_CONTAINERD_CONFIG\" >> {}",
                record.display()
            )),
            RestartVia::Auto,
            true,
            dir.path(),
        );
        let done = method
            .restart("containerd", Path::new("/etc/containerd/config.toml"))
            .unwrap();
        assert!(done.starts_with("containerd.service via `sh -c "), "{done}");
        assert_eq!(
            std::fs::read_to_string(&record).unwrap(),
            "containerd /etc/containerd/config.toml\n"
        );
    }

    #[test]
    fn failure_carries_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let method = RestartMethod::choose(
            Some("echo boom >&2; exit 3"),
            RestartVia::Auto,
            false,
            dir.path(),
        );
        let err = method.restart("k3s", Path::new("/x")).unwrap_err();
        assert!(
            err.to_string().contains("exit status: 3") && err.to_string().ends_with(": boom"),
            "{err}"
        );
    }

    #[test]
    fn timeout_kills_the_command() {
        let mut c = Command::new("sh");
        c.arg("-c").arg("sleep 5");
        let start = Instant::now();
        let err = run(c, "sleep", Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, RestartError::Timeout { .. }));
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn without_systemd_or_command_there_is_no_method() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            RestartMethod::choose(None, RestartVia::Auto, false, dir.path()),
            RestartMethod::Unavailable { .. }
        ));
        std::fs::create_dir_all(dir.path().join("run/systemd/system")).unwrap();
        let RestartMethod::Unavailable { reason } =
            RestartMethod::choose(None, RestartVia::Auto, false, dir.path())
        else {
            panic!("systemd under a --root other than / must not be used");
        };
        assert!(reason.contains("--root"), "{reason}");
        assert_eq!(service("k3s-agent"), "k3s-agent.service");
        assert_eq!(
            service("snap.microk8s.daemon-containerd"),
            "snap.microk8s.daemon-containerd.service"
        );
        assert_eq!(service("k3s.service"), "k3s.service");
    }

    #[test]
    fn dbus_in_daemon_mode_or_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        // Under a --root other than /, the default system bus is this machine's: refused.
        // (DBUS_SYSTEM_BUS_ADDRESS is not set in the unit tests' environment.)
        if std::env::var_os(systemd_dbus::ADDRESS_ENV).is_none() {
            let RestartMethod::Unavailable { reason } =
                RestartMethod::choose(None, RestartVia::Auto, true, dir.path())
            else {
                panic!("the default bus under another --root must not be used");
            };
            assert!(reason.contains("--root"), "{reason}");
        }
        // --restart-command wins over everything.
        assert!(matches!(
            RestartMethod::choose(Some("true"), RestartVia::Dbus, true, Path::new("/")),
            RestartMethod::Command { .. }
        ));
        // By hand, auto keeps systemctl (no systemd here: unavailable, naming systemd).
        let RestartMethod::Unavailable { reason } =
            RestartMethod::choose(None, RestartVia::Auto, false, dir.path())
        else {
            panic!("no systemd here");
        };
        assert!(reason.contains("systemd does not run"), "{reason}");
    }
}
