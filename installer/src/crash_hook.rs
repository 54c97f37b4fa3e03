//! The test-only crash hook: with `WARDEN_TEST_CRASH_AT=<point>` in its environment, the
//! installer kills itself with SIGKILL right after reaching that point, as a node reboot or
//! an evicted pod would stop it. The crash-safety tests run every point in turn and check
//! that the next run repairs the node.
//!
//! The points are the phase boundaries (after the state records the phase) and the
//! moments between them where a file is half done: a complete temp file not yet renamed,
//! a backup saved but the file not yet written.

use std::io::Write;

/// The environment variable naming the point.
pub const ENV: &str = "WARDEN_TEST_CRASH_AT";

/// `install`: the state says `planned`.
pub const PLANNED: &str = "planned";
/// `install`: the shim's temp file is complete and synced, not yet renamed.
pub const BINARY_TEMP_WRITTEN: &str = "binary-temp-written";
/// `install`: the state says `binary-installed`.
pub const BINARY_INSTALLED: &str = "binary-installed";
/// `install`: the config's backup and intended digest are recorded, the file untouched.
pub const BACKUP_SAVED: &str = "backup-saved";
/// `install`: the config's temp file is complete, not yet renamed.
pub const CONFIG_TEMP_WRITTEN: &str = "config-temp-written";
/// `install`: the state says `config-written`.
pub const CONFIG_WRITTEN: &str = "config-written";
/// `install`: containerd is about to be restarted (the state says so).
pub const RESTART_STARTED: &str = "restart-started";
/// `install`: the state says `restarted`.
pub const RESTARTED: &str = "restarted";
/// `install`: the state says `verified`.
pub const VERIFIED: &str = "verified";
/// `uninstall`: the state says `uninstalling`.
pub const UNINSTALLING: &str = "uninstalling";
/// `uninstall`: the config files are restored, containerd not yet restarted.
pub const UNINSTALL_FILES_RESTORED: &str = "uninstall-files-restored";
/// `uninstall`: containerd restarted, the shim not yet removed.
pub const UNINSTALL_RESTARTED: &str = "uninstall-restarted";

/// Every point of `install`, in the order a fresh install reaches them.
pub const INSTALL_POINTS: &[&str] = &[
    PLANNED,
    BINARY_TEMP_WRITTEN,
    BINARY_INSTALLED,
    BACKUP_SAVED,
    CONFIG_TEMP_WRITTEN,
    CONFIG_WRITTEN,
    RESTART_STARTED,
    RESTARTED,
    VERIFIED,
];

/// Every point of `uninstall`, in order.
pub const UNINSTALL_POINTS: &[&str] =
    &[UNINSTALLING, UNINSTALL_FILES_RESTORED, UNINSTALL_RESTARTED];

/// Kills the process with SIGKILL if `WARDEN_TEST_CRASH_AT` names `point`.
pub fn reached(point: &str) {
    let Some(wanted) = std::env::var_os(ENV) else {
        return;
    };
    if wanted != point {
        return;
    }
    eprintln!("warden: {ENV}={point}: killing myself with SIGKILL");
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    // SIGKILL cannot be caught; should delivery lag, stop here all the same.
    std::process::abort();
}
