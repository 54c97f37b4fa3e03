//! The shim under test: `containerd-shim-warden-v1`, built from this workspace.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use warden_common::names::SHIM_BINARY;

use crate::util;

/// Environment variable naming a prebuilt shim; when set, [`shim_binary`] builds nothing.
pub const SHIM_BIN_ENV: &str = "WARDEN_SHIM_BIN";

/// The cargo profile the shim is built with: `release` when this test binary is a release
/// build (no `debug_assertions`), else `debug`.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Path of the shim binary, built once per process.
///
/// With `WARDEN_SHIM_BIN` set, that file is used as it is. Otherwise runs
/// `cargo build -p containerd-shim-warden-v1` (with `--release` when this test binary is a
/// release build) in the workspace root; cargo's own environment (`CARGO_TARGET_DIR`,
/// `RUSTFLAGS`, ...) applies, and the path is the executable cargo reports. Cargo's progress
/// and diagnostics go to this process's stderr; a failed build panics.
pub fn shim_binary() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        if let Some(path) = std::env::var_os(SHIM_BIN_ENV) {
            let path = PathBuf::from(path);
            assert!(
                util::is_executable(&path),
                "{SHIM_BIN_ENV}={} is not an executable file",
                path.display()
            );
            return std::path::absolute(&path).unwrap_or(path);
        }
        build_shim()
    })
}

/// The directory holding the shim, to put on containerd's `PATH`
/// ([`crate::containerd::Options::shim_dir`]).
///
/// Panics when the shim file is not named [`SHIM_BINARY`] (a `WARDEN_SHIM_BIN` under another
/// name), since containerd looks it up by that name.
pub fn shim_dir() -> &'static Path {
    let binary = shim_binary();
    assert!(
        binary.file_name().is_some_and(|name| name == SHIM_BINARY),
        "containerd finds the shim by its name, {SHIM_BINARY}; {} is named otherwise",
        binary.display()
    );
    binary.parent().expect("an absolute file path has a parent")
}

fn build_shim() -> PathBuf {
    let mut command = crate::cargo_command();
    command
        .current_dir(crate::workspace_root())
        .args([
            "build",
            "-p",
            SHIM_BINARY,
            "--bin",
            SHIM_BINARY,
            "--message-format",
            "json-render-diagnostics",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if profile() == "release" {
        command.arg("--release");
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", util::describe(&command)));
    assert!(
        output.status.success(),
        "building the shim failed: `{}` ({}); cargo's diagnostics are on stderr above",
        util::describe(&command),
        output.status
    );
    executable_from_messages(&String::from_utf8_lossy(&output.stdout), SHIM_BINARY).unwrap_or_else(
        || {
            panic!(
                "`{}` succeeded but reported no executable named {SHIM_BINARY}",
                util::describe(&command)
            )
        },
    )
}

/// The `executable` of the last `compiler-artifact` message for binary target `name` in
/// cargo's JSON messages.
fn executable_from_messages(messages: &str, name: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| {
            message["reason"] == "compiler-artifact"
                && message["target"]["name"] == name
                && message["target"]["kind"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"))
        })
        .filter_map(|message| message["executable"].as_str().map(PathBuf::from))
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_is_read_from_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"warden-policy","kind":["lib"]},"executable":null}
not json
{"reason":"compiler-artifact","target":{"name":"containerd-shim-warden-v1","kind":["bin"]},"executable":"/t/debug/containerd-shim-warden-v1"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_from_messages(messages, SHIM_BINARY),
            Some(PathBuf::from("/t/debug/containerd-shim-warden-v1"))
        );
        assert_eq!(executable_from_messages(messages, "other"), None);
    }

    #[test]
    fn profile_matches_debug_assertions() {
        assert_eq!(profile() == "debug", cfg!(debug_assertions));
    }
}
