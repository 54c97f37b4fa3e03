//! What the shim's integration tests share: a private containerd with the shim on its PATH
//! and warden's policy, audit log and cache in a temp dir.

#![allow(dead_code)] // each test binary uses its own part

pub mod cri;
pub mod layers;

use std::path::PathBuf;

use serde_json::Value;
use tempfile::TempDir;
use warden_test::containerd::{Containerd, Options, RunOpts, RunResult};
use warden_test::containerd_versions::Version;
use warden_test::guests::{self, DENIED_EXIT_CODE, Wasi};
use warden_test::image::ImageBuilder;

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n";

pub struct Node {
    pub containerd: Containerd,
    pub files: TempDir,
}

pub fn node() -> Node {
    node_with_env(&[])
}

/// A node whose containerd (and so the shim) also has `extra` in its environment.
pub fn node_with_env(extra: &[(&str, &str)]) -> Node {
    node_with(None, extra)
}

/// [`node`] on containerd `version`, whatever `WARDEN_TEST_CONTAINERD` chooses.
pub fn node_on(version: Version) -> Node {
    node_with(Some(version), &[])
}

fn node_with(version: Option<Version>, extra: &[(&str, &str)]) -> Node {
    let files = tempfile::tempdir().expect("temp dir");
    let mut env = vec![
        ("WARDEN_CACHE_DIR".into(), path(&files, "cache")),
        ("WARDEN_AUDIT_LOG".into(), path(&files, "audit.jsonl")),
        ("WARDEN_POLICY".into(), path(&files, "policy.toml")),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let containerd = Containerd::start(Options {
        shim_dir: Some(warden_test::shim::shim_dir().to_path_buf()),
        env,
        version,
        ..Options::default()
    });
    Node { containerd, files }
}

fn path(dir: &TempDir, name: &str) -> String {
    dir.path().join(name).display().to_string()
}

impl Node {
    /// Imports an image holding `module` at `/app.wasm`, plus an `/etc/passwd` the module
    /// must not be able to read, and `/config/app.conf`; returns its name.
    pub fn image(&self, name: &str, module: Vec<u8>) -> String {
        let image = format!("localhost/warden-test/{name}:latest");
        self.containerd.import_image(
            &ImageBuilder::wasm_rootfs(&image, "/app.wasm", module)
                .file("/etc/passwd", PASSWD, 0o644)
                .file("/config/app.conf", "mode=test\n", 0o644)
                .dir("/data")
                .dir("/tmp"),
        );
        image
    }

    pub fn guest(&self, wasi: Wasi, name: &str) -> String {
        let bytes = guests::build_guests().bytes(wasi, name);
        self.image(&format!("{name}-{}", wasi.target()), bytes)
    }

    pub fn run(&self, image: &str, args: &[&str], opts: RunOpts) -> RunResult {
        let id = self.containerd.unique_id("t");
        let mut argv = vec!["/app.wasm".to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        self.containerd.run(image, &id, opts.args(argv))
    }

    /// Runs under the profile `profile` (the `warden.dev/profile` annotation).
    pub fn run_as(&self, profile: &str, image: &str, args: &[&str], opts: RunOpts) -> RunResult {
        self.run(image, args, opts.annotation("warden.dev/profile", profile))
    }

    pub fn policy_path(&self) -> PathBuf {
        self.files.path().join("policy.toml")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.files.path().join("audit.jsonl")
    }

    /// Writes the node policy; the shim reads it at every container create.
    pub fn set_policy(&self, text: &str) {
        std::fs::write(self.policy_path(), text).expect("write policy");
    }

    /// The audit log's records.
    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.audit_path()).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l}: {e}")))
            .collect()
    }

    /// Records with `event` (and, if given, `rule`).
    pub fn audit_events(&self, event: &str, rule: Option<&str>) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["event"] == event && rule.is_none_or(|x| r["rule"] == x))
            .collect()
    }
}

/// The exit status a guest's `exit(code)` gives: exact for preview 1; for a WASI 0.2 command
/// component, whose stable `wasi:cli/exit` carries only ok/err, 0 or 1.
pub fn exit_status(wasi: Wasi, code: i32) -> i32 {
    match wasi {
        Wasi::P1 => code,
        _ => i32::from(code != 0),
    }
}

/// The guest tried something, was refused, and said so.
pub fn assert_denied(wasi: Wasi, r: &RunResult) {
    assert_eq!(
        r.code,
        Some(exit_status(wasi, DENIED_EXIT_CODE)),
        "{wasi:?}: {r:?}"
    );
    assert!(r.stderr.contains("denied: "), "{wasi:?}: {r:?}");
}

/// The container was refused at create, with warden's message saying `what`.
pub fn assert_refused(r: &RunResult, what: &str) {
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr.contains("warden refused to run the container"),
        "no refusal in ctr's error: {r:?}"
    );
    assert!(
        r.stderr.contains(what),
        "refusal does not say {what:?}: {r:?}"
    );
}
