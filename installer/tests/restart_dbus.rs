//! The installer's restart through systemd's D-Bus API, against a real dbus-daemon (started
//! here with a config and socket of its own) and a stand-in for systemd's Manager object
//! (see `daemon_support`): `RestartUnit` answers with a job, runs a command, and emits
//! `JobRemoved`. There is no systemd on these machines; the stand-in speaks the same
//! interface, on a bus and peer to peer (as systemd's private socket does).

mod daemon_support;

use std::path::Path;
use std::time::{Duration, Instant};

use daemon_support::{DbusDaemon, SystemdStandIn};
use warden_installer::restart::{RestartError, RestartMethod, RestartVia};
use warden_installer::systemd_dbus::{self, DbusError};

/// A command that records each call in `calls`.
fn recording_command(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let calls = dir.join("calls");
    let script = dir.join("restart.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$WARDEN_RESTART_UNIT\" >> '{}'\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, calls)
}

#[test]
fn restart_over_the_bus_waits_for_its_job() {
    let bus = DbusDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let (script, calls) = recording_command(dir.path());
    let systemd = SystemdStandIn::on_bus(&bus.address, Some(&script));
    let method = RestartMethod::Dbus {
        address: bus.address.clone(),
    };
    let done = method
        .restart("containerd", Path::new("/etc/containerd/config.toml"))
        .unwrap();
    assert!(
        done.starts_with("containerd.service via systemd's D-Bus API (bus connection to"),
        "{done}"
    );
    assert!(
        done.contains("job /org/freedesktop/systemd1/job/100 done"),
        "{done}"
    );
    // The command had run when the restart returned: the job's end was waited for.
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "containerd.service\n"
    );
    let recorded = systemd.calls();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].unit, "containerd.service");
    assert_eq!(recorded[0].mode, "replace");
    assert_eq!(systemd.subscribed(), 1, "Subscribe before RestartUnit");
}

#[test]
fn a_failed_job_is_a_failed_restart() {
    let bus = DbusDaemon::start();
    let systemd = SystemdStandIn::on_bus(&bus.address, None);
    let method = RestartMethod::Dbus {
        address: bus.address.clone(),
    };
    let err = method
        .restart("fail-containerd", Path::new("/etc/containerd/config.toml"))
        .unwrap_err();
    let RestartError::Dbus(DbusError::JobFailed { unit, result, .. }) = &err else {
        panic!("not a failed job: {err}");
    };
    assert_eq!(unit, "fail-containerd.service");
    assert_eq!(result, "failed");
    assert!(
        err.to_string()
            .contains("ended with result `failed`, not `done`"),
        "{err}"
    );
    assert_eq!(systemd.calls()[0].result, "failed");
}

#[test]
fn a_job_that_never_ends_times_out() {
    let bus = DbusDaemon::start();
    let _systemd = SystemdStandIn::on_bus(&bus.address, None);
    let start = Instant::now();
    let err = systemd_dbus::restart_unit(&bus.address, "hang.service", Duration::from_secs(2))
        .unwrap_err();
    assert!(matches!(err, DbusError::Timeout { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn restart_peer_to_peer_as_on_systemds_private_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (script, calls) = recording_command(dir.path());
    let systemd = SystemdStandIn::peer_to_peer(Some(&script));
    let method = RestartMethod::Dbus {
        address: systemd.address.clone(),
    };
    let done = method
        .restart(
            "k3s-agent",
            Path::new("/var/lib/rancher/k3s/agent/etc/containerd/config.toml"),
        )
        .unwrap();
    assert!(done.contains("(peer-to-peer connection to"), "{done}");
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "k3s-agent.service\n"
    );
    assert_eq!(systemd.calls()[0].result, "done");

    let err = method.restart("fail-k3s", Path::new("/x")).unwrap_err();
    assert!(
        matches!(err, RestartError::Dbus(DbusError::JobFailed { .. })),
        "{err}"
    );
}

#[test]
fn daemon_mode_chooses_dbus_and_a_missing_socket_is_refused() {
    let bus = DbusDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix:path={}", dir.path().join("none").display());
    let chosen = with_env(&bus.address, || {
        RestartMethod::choose(None, RestartVia::Auto, true, Path::new("/"))
    });
    assert_eq!(
        chosen,
        RestartMethod::Dbus {
            address: bus.address.clone()
        }
    );
    let by_hand = with_env(&bus.address, || {
        RestartMethod::choose(None, RestartVia::Dbus, false, Path::new("/"))
    });
    assert!(matches!(by_hand, RestartMethod::Dbus { .. }));
    let RestartMethod::Unavailable { reason } = with_env(&missing, || {
        RestartMethod::choose(None, RestartVia::Auto, true, Path::new("/"))
    }) else {
        panic!("a missing socket must not be chosen");
    };
    assert!(reason.contains("there is no D-Bus socket at"), "{reason}");
}

/// Runs `f` with DBUS_SYSTEM_BUS_ADDRESS set (one test at a time in this binary sets it).
fn with_env<T>(address: &str, f: impl FnOnce() -> T) -> T {
    static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ENV
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // SAFETY: only this function changes the environment in this test binary, under a lock,
    // and nothing else in it reads the variable concurrently.
    unsafe { std::env::set_var(systemd_dbus::ADDRESS_ENV, address) };
    let out = f();
    unsafe { std::env::remove_var(systemd_dbus::ADDRESS_ENV) };
    out
}
