//! Integration-test harness for warden.
//!
//! Everything here drives real parts (see "Testing: real parts" in the design): a private
//! containerd per test ([`containerd::Containerd`]), runc, `ctr`, OCI image tars that
//! `ctr images import` accepts ([`image::ImageBuilder`]), the shim built from this workspace
//! ([`shim::shim_binary`]) and Wasm test programs built from `test/guests`
//! ([`guests::build_guests`]).
//!
//! Tests that need containerd call [`require_root`] (or just [`containerd::Containerd::start`],
//! which calls it): a missing prerequisite fails the test, it never skips it.

pub mod containerd;
pub mod containerd_versions;
pub mod examples;
pub mod guests;
pub mod http;
pub mod image;
pub mod node_namespace;
pub mod sandbox;
pub mod service;
pub mod shim;
mod util;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use util::Error;

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    util::process_alive(pid)
}

/// The mount points at or below `dir` (from /proc/self/mountinfo), deepest first.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    util::mounts_below(dir)
}

/// The ids of the processes whose command line contains `needle`.
pub fn pids_with_cmdline_containing(needle: &str) -> Vec<u32> {
    util::all_pids()
        .into_iter()
        .filter(|pid| util::cmdline(*pid).is_some_and(|line| line.contains(needle)))
        .collect()
}

/// Programs the harness runs; [`require_root`] checks that each is on `PATH`.
pub const REQUIRED_PROGRAMS: &[&str] = &["containerd", "ctr", "runc"];

/// Panics with a clear message unless the process runs as root and `containerd`, `ctr` and
/// `runc` are on `PATH`.
///
/// Never skips: CI must fail when the prerequisites of an integration test are missing.
pub fn require_root() {
    let mut problems = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        problems.push(format!(
            "these tests start containerd and must run as root (effective uid is {euid})"
        ));
    }
    for program in REQUIRED_PROGRAMS {
        if find_in_path(program).is_none() {
            problems.push(format!(
                "`{program}` is not on PATH (Debian: apt-get install containerd runc)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "integration-test prerequisites missing:\n  - {}",
        problems.join("\n  - ")
    );
}

/// The first executable file called `program` in the directories of `PATH`.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| util::is_executable(candidate))
}

/// The root of the Cargo workspace this crate belongs to (the repository root).
///
/// Taken from the `CARGO_MANIFEST_DIR` cargo sets when it runs a test or a binary (every
/// workspace member sits one level below the root), and only without it from the value
/// compiled in: a target dir shared between checkouts may hold a binary built from another
/// checkout, whose compiled-in path is gone.
pub fn workspace_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let member = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .filter(|dir| dir.join("Cargo.toml").is_file())
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        member
            .parent()
            .expect("a workspace member has a parent directory")
            .to_path_buf()
    })
}

/// The workspace's target directory, as cargo resolves it (so `CARGO_TARGET_DIR` and
/// `build.target-dir` are honoured).
pub fn target_dir() -> &'static Path {
    static TARGET_DIR: OnceLock<PathBuf> = OnceLock::new();
    TARGET_DIR.get_or_init(|| {
        let mut command = cargo_command();
        command.current_dir(workspace_root()).args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
        ]);
        let output = util::output(&mut command)
            .unwrap_or_else(|e| panic!("cannot ask cargo for the target directory: {e}"));
        assert!(
            output.status.success(),
            "`cargo metadata` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("`cargo metadata` printed no JSON: {e}"));
        let dir = metadata["target_directory"]
            .as_str()
            .unwrap_or_else(|| panic!("`cargo metadata` names no target_directory"));
        PathBuf::from(dir)
    })
}

/// A `cargo` command: the cargo running these tests (`$CARGO`) when there is one.
pub(crate) fn cargo_command() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    std::process::Command::new(cargo)
}
