//! What the Kubernetes manifest tests share: the pinned tools from `make deps` (a venv at
//! `WARDEN_TOOLS_DIR`, default `/var/tmp/warden-tools`), rendering a kustomization, schema
//! validation, and reading the rendered YAML.
//!
//! A missing tool fails the test with the command that installs it; nothing here skips.

#![allow(dead_code)]

use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::Value;

/// Where `make deps` (`make tools`) puts the manifest tools.
pub const DEFAULT_TOOLS_DIR: &str = "/var/tmp/warden-tools";

/// The repository's root.
pub fn repo_root() -> PathBuf {
    warden_test::workspace_root().to_path_buf()
}

/// The tools venv: `WARDEN_TOOLS_DIR`, else the default.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("WARDEN_TOOLS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TOOLS_DIR))
}

/// A tool of the venv (`kubectl`, `kubernetes-validate`, `actionlint`); panics, saying how
/// to install it, when it is not there.
pub fn tool(name: &str) -> PathBuf {
    let dir = tools_dir();
    let path = dir.join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: the manifest tests need the pinned tools in {} (WARDEN_TOOLS_DIR). \
         Run `make deps` as root (or `make tools TOOLS_DIR={}` for the venv alone), then \
         re-run the tests.",
        path.display(),
        dir.display(),
        dir.display(),
    );
    path
}

/// A program from the system's PATH (shellcheck, from apt); panics like [`tool`].
pub fn system_tool(name: &str) -> PathBuf {
    find_in_path(name).unwrap_or_else(|| {
        panic!(
            "{name} is not on PATH: run `make deps` as root (it installs {name} with apt-get), \
             then re-run the tests."
        )
    })
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs a command and returns its output; panics if it cannot be started.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `kubectl kustomize DIR`: the rendered YAML, or the error text.
pub fn try_render(dir: &Path) -> Result<String, String> {
    let out = output(Command::new(tool("kubectl")).arg("kustomize").arg(dir));
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!(
            "kubectl kustomize {} failed ({}): {}",
            dir.display(),
            out.status,
            text(&out.stderr)
        ))
    }
}

/// `kubectl kustomize DIR`, which must succeed.
pub fn render(dir: &Path) -> String {
    try_render(dir).unwrap_or_else(|e| panic!("{e}"))
}

/// Every document of a multi-document YAML stream, as JSON values (empty ones left out).
pub fn parse_documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

/// `kind/name` of a document, as kubernetes-validate names resources (lower-case kind).
pub fn resource_name(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["kind"].as_str().unwrap_or("?").to_ascii_lowercase(),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// What `kubernetes-validate --strict` said about a file.
#[derive(Debug, Default)]
pub struct Validation {
    /// `kind/name` of every resource that passed.
    pub passed: Vec<String>,
    /// ERROR lines: schema violations, unknown fields.
    pub errors: Vec<String>,
    /// WARN lines: above all, kinds the version has no schema for (not checked at all).
    pub warnings: Vec<String>,
    /// Whatever else it printed, and its exit status when that says failure.
    pub other: Vec<String>,
}

/// The newest Kubernetes version kubernetes-validate ships schemas for: its default, which
/// `--help` states ("Defaults to 1.37.0").
pub fn newest_kubernetes_version() -> String {
    let out = output(Command::new(tool("kubernetes-validate")).arg("--help"));
    let help = text(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let after = help
        .split("Defaults to ")
        .nth(1)
        .unwrap_or_else(|| panic!("kubernetes-validate --help names no default version: {help}"));
    let version: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let version = version.trim_end_matches('.').to_owned();
    assert!(
        version.split('.').count() == 3,
        "cannot read the default version from kubernetes-validate --help: {help}"
    );
    version
}

/// `kubernetes-validate --strict -k VERSION FILE` on rendered YAML.
pub fn validate(yaml: &str, version: &str) -> Validation {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = output(
        Command::new(tool("kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", version])
            .arg(&file),
    );
    let mut v = Validation::default();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    for line in stdout.lines().chain(stderr.lines()) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("INFO ") {
            match rest
                .split(" passed for resource ")
                .nth(1)
                .and_then(|r| r.split(" against version ").next())
            {
                Some(resource) => v.passed.push(resource.to_owned()),
                None => v.other.push(line.to_owned()),
            }
        } else if line.starts_with("ERROR ") {
            v.errors.push(line.to_owned());
        } else if line.starts_with("WARN ") {
            v.warnings.push(line.to_owned());
        } else {
            v.other.push(line.to_owned());
        }
    }
    if !out.status.success() && v.errors.is_empty() {
        v.other
            .push(format!("kubernetes-validate exited with {}", out.status));
    }
    v
}

/// The path from directory `from` to `to` (both absolute): kustomize takes only relative
/// paths to other kustomizations.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for c in &from[common..] {
        if matches!(c, Component::Normal(_)) {
            out.push("..");
        }
    }
    for c in &to[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// A kustomization of its own in a temp dir: `resources` and `components` are paths
/// relative to the repository's root; `extra` is appended as is (patches, say).
pub fn temp_kustomization(
    resources: &[&str],
    components: &[&str],
    extra: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let repo = repo_root().canonicalize().unwrap();
    let rel = |p: &str| relative_path(&base, &repo.join(p)).display().to_string();
    let mut text =
        String::from("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n");
    text.push_str("resources:\n");
    for r in resources {
        text.push_str(&format!("  - {}\n", rel(r)));
    }
    if !components.is_empty() {
        text.push_str("components:\n");
        for c in components {
            text.push_str(&format!("  - {}\n", rel(c)));
        }
    }
    text.push_str(extra);
    std::fs::write(dir.path().join("kustomization.yaml"), text).unwrap();
    dir
}

/// Evaluates a ValidatingAdmissionPolicy's `spec` on admission requests (each an object
/// with `request`, `object`, `oldObject`) with cel-python from the tools venv; one result
/// per request: `{"result": "not-matched" | "allowed" | "denied" | "error", ...}`.
pub fn eval_admission_policy(spec: &Value, requests: &[Value]) -> Vec<Value> {
    use std::io::Write;
    let script = repo_root().join("installer/tests/k8s_support/eval_vap.py");
    let mut child = Command::new(tool("python3"))
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let input = serde_json::json!({"spec": spec, "requests": requests});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} failed (is cel-python in the tools venv? run `make deps`): {}",
        script.display(),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
