//! test/kind/: what can be checked without Docker or a cluster. shellcheck passes on
//! smoke.sh, actionlint on the workflow users copy, and `smoke.sh --dry-run` prints the
//! whole command sequence and exits 0 with docker, kind, kubectl and make all unusable.
//! Each lint also fails a deliberately broken copy, so a lint that checks nothing is caught.
//!
//! The real run needs Docker and kind: it is for users' CI (test/kind/kind-smoke.yml).

mod k8s_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_support::{output, parse_documents, repo_root, system_tool, text, tool};

fn smoke_sh() -> PathBuf {
    repo_root().join("test/kind/smoke.sh")
}

fn workflow() -> PathBuf {
    repo_root().join("test/kind/kind-smoke.yml")
}

fn shellcheck(file: &Path) -> Output {
    output(
        Command::new(system_tool("shellcheck"))
            .args(["--shell=bash", "--severity=style", "--external-sources"])
            .arg(file),
    )
}

fn actionlint(file: &Path) -> Output {
    output(
        Command::new(tool("actionlint"))
            .args(["-no-color", "-shellcheck", ""])
            .arg(file),
    )
}

#[test]
fn shellcheck_passes_on_smoke_sh_and_fails_a_broken_copy() {
    let out = shellcheck(&smoke_sh());
    assert!(
        out.status.success(),
        "shellcheck test/kind/smoke.sh:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("smoke.sh");
    let script = std::fs::read_to_string(smoke_sh()).unwrap();
    std::fs::write(
        &broken,
        script.replace(
            "run kubectl apply -k \"$REPO",
            "run kubectl apply -k $REPO\"",
        ),
    )
    .unwrap();
    let out = shellcheck(&broken);
    assert!(
        !out.status.success(),
        "shellcheck accepted an unquoted expansion"
    );
    assert!(
        text(&out.stdout).contains("SC2086"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn actionlint_passes_on_the_workflow_and_fails_a_broken_copy() {
    let out = actionlint(&workflow());
    assert!(
        out.status.success(),
        "actionlint test/kind/kind-smoke.yml:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("kind-smoke.yml");
    let yaml = std::fs::read_to_string(workflow()).unwrap();
    std::fs::write(
        &broken,
        yaml.replace("${{ github.ref }}", "${{ github.no_such_thing }}"),
    )
    .unwrap();
    let out = actionlint(&broken);
    assert!(
        !out.status.success(),
        "actionlint accepted an unknown context property"
    );
    assert!(
        text(&out.stdout).contains("no_such_thing"),
        "{}",
        text(&out.stdout)
    );
}

/// Every action is pinned to a commit (a tag can be moved), and the job runs the script.
#[test]
fn the_workflow_pins_its_actions_and_runs_the_script() {
    let yaml = std::fs::read_to_string(workflow()).unwrap();
    let mut uses = 0;
    for line in yaml.lines().map(str::trim) {
        let Some(action) = line
            .strip_prefix("uses: ")
            .or_else(|| line.strip_prefix("- uses: "))
        else {
            continue;
        };
        uses += 1;
        let (reference, comment) = action.split_once(" # ").unwrap_or((action, ""));
        let sha = reference.rsplit_once('@').map(|(_, s)| s).unwrap_or("");
        assert!(
            sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "{line}: not pinned to a commit SHA"
        );
        assert!(comment.starts_with('v'), "{line}: say which tag the SHA is");
    }
    assert!(uses >= 2, "no actions found in the workflow");
    let doc = parse_documents(&yaml).remove(0);
    let steps = doc["jobs"]["kind-smoke"]["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["run"] == "test/kind/smoke.sh"),
        "the workflow does not run test/kind/smoke.sh"
    );
    assert_eq!(doc["permissions"]["contents"], "read");
}

/// A PATH whose docker, kind, kubectl and make only record that they were called.
fn poisoned_path(dir: &Path) -> (String, PathBuf) {
    let marker = dir.join("called");
    for name in ["docker", "kind", "kubectl", "make"] {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit 97\n",
                marker.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, marker)
}

fn dry_run(args: &[&str]) -> (Output, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (path, marker) = poisoned_path(dir.path());
    let mut cmd = Command::new("bash");
    cmd.arg(smoke_sh()).args(args).env("PATH", path);
    for var in [
        "WARDEN_KIND_CLUSTER",
        "KIND_NODE_IMAGE",
        "WARDEN_IMAGES_DIR",
        "WARDEN_HELLO_EXPECT",
        "WARDEN_SMOKE_TIMEOUT",
    ] {
        cmd.env_remove(var);
    }
    let out = output(&mut cmd);
    let called = std::fs::read_to_string(marker).ok();
    (out, called)
}

#[test]
fn dry_run_prints_the_whole_sequence_and_runs_nothing() {
    let (out, called) = dry_run(&["--dry-run"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "smoke.sh --dry-run failed:\n{stdout}{}",
        text(&out.stderr)
    );
    assert_eq!(called, None, "--dry-run ran a tool:\n{stdout}");

    let repo = repo_root().canonicalize().unwrap();
    let repo = repo.display();
    let commands: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("+ "))
        .collect();
    for c in &commands {
        let program = c.split_whitespace().next().unwrap_or("");
        assert!(
            ["kind", "kubectl", "make"].contains(&program),
            "unexpected command: {c}"
        );
    }
    // In this order, each a substring of one command line.
    let expected: Vec<String> = vec![
        "kind create cluster --name warden-smoke".into(),
        format!("make -C {repo} image IMAGES_DIR={repo}/target/images"),
        format!("make -C {repo} examples IMAGES_DIR={repo}/target/images"),
        format!(
            "kind load image-archive {repo}/target/images/warden-installer.tar --name warden-smoke"
        ),
        format!(
            "kind load image-archive {repo}/target/images/warden-example-hello.tar --name warden-smoke"
        ),
        format!("kubectl apply -k {repo}/runtimeclass/overlays/kind"),
        "kubectl -n warden-system rollout status daemonset/warden-installer".into(),
        r"kubectl wait node --all --for=jsonpath=\{.metadata.labels.warden\\.dev/ready\}=true"
            .into(),
        r"kubectl get runtimeclass warden -o jsonpath=\{.handler\}".into(),
        format!("kubectl apply -f {repo}/test/kind/manifests/namespace.yaml"),
        format!("kubectl apply -f {repo}/test/kind/manifests/hello.yaml"),
        r"kubectl -n warden-smoke get pod warden-hello -o jsonpath=\{.spec.runtimeClassName\}"
            .into(),
        r"kubectl -n warden-smoke get pod warden-hello -o jsonpath=\{.spec.overhead.memory\}"
            .into(),
        r"kubectl -n warden-smoke wait pod/warden-hello --for=jsonpath=\{.status.phase\}=Succeeded"
            .into(),
        "kubectl -n warden-smoke logs warden-hello".into(),
        format!("kubectl apply -f {repo}/test/kind/manifests/denied.yaml"),
        "kubectl -n warden-smoke describe pod warden-denied".into(),
        "kind delete cluster --name warden-smoke".into(),
    ];
    let mut at = 0;
    for want in &expected {
        match commands[at..]
            .iter()
            .position(|c| c.contains(want.as_str()))
        {
            Some(i) => at += i + 1,
            None => panic!("`{want}` is missing or out of order in:\n{stdout}"),
        }
    }
    assert_eq!(
        commands.last().copied(),
        Some("kind delete cluster --name warden-smoke"),
        "the cluster is not deleted last:\n{stdout}"
    );
    assert!(stdout.contains("== passed"), "{stdout}");
}

#[test]
fn dry_run_with_keep_leaves_the_cluster_and_unknown_arguments_are_refused() {
    let (out, called) = dry_run(&["--dry-run", "--keep"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(called, None);
    assert!(!stdout.contains("+ kind delete cluster"), "{stdout}");
    assert!(stdout.contains("keeping cluster warden-smoke"), "{stdout}");

    let (out, called) = dry_run(&["--dry-run", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(called, None);
    assert!(text(&out.stderr).contains("unknown argument: --frobnicate"));

    let (out, _) = dry_run(&["--help"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("--dry-run"),
        "{}",
        text(&out.stdout)
    );
}
