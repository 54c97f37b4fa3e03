//! What the `install_*` tests share: a node tree under a temp `--root` built from a corpus
//! case of `test/configs/`, a fake shim with its `.sha256`, a restart command that records
//! its calls, the `warden` binary, and snapshots to compare trees byte for byte.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use warden_common::Digest;

/// The state dir every test tree uses (outside the paths the corpus cases hold, so a tree
/// compares equal to its original without it).
pub const STATE_DIR: &str = "/warden-state";
/// The audit log every test tree uses.
pub const AUDIT_LOG: &str = "/warden-log/audit.jsonl";
/// The install dir.
pub const INSTALL_DIR: &str = "/opt/warden/bin";
/// The shim's node path.
pub const BINARY: &str = "/opt/warden/bin/containerd-shim-warden-v1";

/// The corpus.
pub fn corpus_dir() -> PathBuf {
    warden_test::workspace_root().join("test/configs")
}

/// Every case name of the corpus, sorted.
pub fn case_names() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `sha256:<hex>`, as the state and the audit log hold it.
pub fn digest(bytes: &[u8]) -> String {
    Digest::of(bytes).to_string()
}

/// A node tree with a shim to install and a recording restart command.
pub struct Tree {
    _temp: tempfile::TempDir,
    pub dir: PathBuf,
    pub root: PathBuf,
    pub shim: PathBuf,
    pub shim_bytes: Vec<u8>,
    pub restart_log: PathBuf,
    /// Flags from the case's `case.toml` (`--containerd-version`, `--distribution`, ...).
    pub case_flags: Vec<String>,
    pub name: String,
}

impl Tree {
    /// A tree holding corpus case `name`'s `root/`.
    pub fn from_case(name: &str) -> Tree {
        let tree = Tree::empty(name);
        let case = corpus_dir().join(name);
        copy_tree(&case.join("root"), &tree.root);
        let mut tree = tree;
        tree.case_flags = case_flags(&case);
        tree
    }

    /// A tree with an empty root.
    pub fn empty(name: &str) -> Tree {
        let temp = tempfile::Builder::new()
            .prefix("warden-install-")
            .tempdir()
            .unwrap();
        let dir = temp.path().to_path_buf();
        let root = dir.join("root");
        fs::create_dir_all(&root).unwrap();
        let shim_dir = dir.join("shipped");
        fs::create_dir_all(&shim_dir).unwrap();
        let shim = shim_dir.join("containerd-shim-warden-v1");
        let shim_bytes = format!("#!/bin/sh\n# fake shim for {name}\nexit 0\n").into_bytes();
        fs::write(&shim, &shim_bytes).unwrap();
        fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
        let hex = Digest::of(&shim_bytes).hex();
        fs::write(
            shim_dir.join("containerd-shim-warden-v1.sha256"),
            format!("{hex}  containerd-shim-warden-v1\n"),
        )
        .unwrap();
        let restart_log = dir.join("restarts.log");
        Tree {
            _temp: temp,
            dir,
            root,
            shim,
            shim_bytes,
            restart_log,
            case_flags: Vec::new(),
            name: name.to_owned(),
        }
    }

    /// The host path of a node path.
    pub fn host(&self, node_path: &str) -> PathBuf {
        self.root.join(node_path.trim_start_matches('/'))
    }

    /// The flags every run gets.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--root".to_owned(),
            self.root.display().to_string(),
            "--state-dir".to_owned(),
            STATE_DIR.to_owned(),
            "--audit-log".to_owned(),
            AUDIT_LOG.to_owned(),
            "--shim".to_owned(),
            self.shim.display().to_string(),
            "--restart-command".to_owned(),
            format!(
                "echo \"$WARDEN_RESTART_UNIT\" >> '{}'",
                self.restart_log.display()
            ),
        ];
        flags.extend(self.case_flags.iter().cloned());
        flags
    }

    /// `warden <command> <flags> <extra>`, with the environment `env` added.
    pub fn command(&self, command: &str, extra: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
        c.arg(command).args(self.flags()).args(extra);
        c.env_remove("WARDEN_AUDIT_LOG").env_remove("WARDEN_POLICY");
        c.env_remove(warden_installer::crash_hook::ENV);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// Runs `warden <command>` and returns its output.
    pub fn run(&self, command: &str, extra: &[&str]) -> Output {
        self.command(command, extra, &[]).output().unwrap()
    }

    /// Runs `warden <command>` and panics unless it exits 0.
    pub fn run_ok(&self, command: &str, extra: &[&str]) -> Output {
        let out = self.run(command, extra);
        assert!(
            out.status.success(),
            "{}: warden {command} {extra:?} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// How often the restart command ran.
    pub fn restarts(&self) -> usize {
        fs::read_to_string(&self.restart_log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// The files under the root, except the state dir and the audit log's dir.
    pub fn node_files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot(&self.root)
            .into_iter()
            .filter(|(p, _)| !p.starts_with("warden-state") && !p.starts_with("warden-log"))
            .collect()
    }

    /// The directories under the root, except the state and audit dirs.
    pub fn node_dirs(&self) -> Vec<PathBuf> {
        dirs(&self.root)
            .into_iter()
            .filter(|p| !p.starts_with("warden-state") && !p.starts_with("warden-log"))
            .collect()
    }

    /// The state file, parsed.
    pub fn state(&self) -> Option<serde_json::Value> {
        let text = fs::read_to_string(self.host(STATE_DIR).join("install.json")).ok()?;
        Some(serde_json::from_str(&text).unwrap())
    }

    /// Every temp file a killed run could leave, anywhere under the root.
    pub fn temp_files(&self) -> Vec<PathBuf> {
        snapshot(&self.root)
            .into_keys()
            .filter(|p| p.to_string_lossy().contains(".warden-tmp-"))
            .collect()
    }

    /// The audit log's records, parsed.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(self.host(AUDIT_LOG))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The install dir the case asks for (else the default).
    pub fn install_dir(&self) -> String {
        self.case_flags
            .iter()
            .position(|f| f == "--install-dir")
            .and_then(|i| self.case_flags.get(i + 1).cloned())
            .unwrap_or_else(|| INSTALL_DIR.to_owned())
    }

    /// The shim in the install dir, if any.
    pub fn installed_shim(&self) -> Option<Vec<u8>> {
        let path = format!("{}/containerd-shim-warden-v1", self.install_dir());
        fs::read(self.host(&path)).ok()
    }
}

/// The `--containerd-version`, `--distribution`, `--config` and `--install-dir` flags a
/// case's `case.toml` asks for.
fn case_flags(case: &Path) -> Vec<String> {
    let text = fs::read_to_string(case.join("case.toml")).unwrap();
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    let string = |key: &str| doc.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let mut flags = Vec::new();
    if let Some(major) = doc.get("containerd_major").and_then(|v| v.as_integer()) {
        flags.extend(["--containerd-version".to_owned(), major.to_string()]);
    } else if let Some(output) = string("containerd_version_output") {
        flags.extend(["--containerd-version".to_owned(), output]);
    }
    for (key, flag) in [
        ("distribution", "--distribution"),
        ("config", "--config"),
        ("install_dir", "--install-dir"),
    ] {
        if let Some(value) = string(key) {
            flags.extend([flag.to_owned(), value]);
        }
    }
    flags
}

/// Every file under `dir`, by path relative to it.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut |rel, path| {
        if path.is_file() {
            out.insert(rel.to_path_buf(), fs::read(path).unwrap());
        }
    });
    out
}

/// Every directory under `dir`, relative to it.
pub fn dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(dir, dir, &mut |rel, path| {
        if path.is_dir() && !path.is_symlink() {
            out.push(rel.to_path_buf());
        }
    });
    out.sort();
    out
}

fn walk(base: &Path, dir: &Path, visit: &mut dyn FnMut(&Path, &Path)) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        visit(path.strip_prefix(base).unwrap(), &path);
        if path.is_dir() && !path.is_symlink() {
            walk(base, &path, visit);
        }
    }
}

/// Copies the files of `from` into `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in snapshot(from) {
        let target = to.join(rel);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(target, bytes).unwrap();
    }
}

/// Text of a process's output, for messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether the process was killed by SIGKILL.
pub fn killed(out: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    out.status.signal() == Some(9)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
