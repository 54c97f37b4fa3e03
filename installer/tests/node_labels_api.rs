//! The node's `warden.dev/ready` label through the real client (kube, pointed at a local
//! server by a kubeconfig, as `warden --kubeconfig` does) against recorded API exchanges
//! (`tests/k8s_exchanges/`): the Node as the API server returns it, and the merge patches
//! that set and remove the label. No API server runs on these machines; the server here
//! answers each request with the response recorded for it and keeps every request, so the
//! tests assert exactly what would reach a real one, and what never does.
//!
//! The daemon's decisions ([`Daemon`]) run here with the real client and a stand-in node
//! (its install passes or fails as the test says); `warden uninstall --node-name` runs as
//! the binary on an offline tree.

mod daemon_support;
mod install_support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use daemon_support::{RecordedApi, exchanges};
use warden_installer::daemon::{Daemon, Drift, NodeOps};
use warden_installer::install_audit::AuditLog;
use warden_installer::node_labels::{KubeNode, NodeLabels};

const NODE: &str = "worker-1";

fn client(api: &RecordedApi, dir: &std::path::Path) -> KubeNode {
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    KubeNode::connect(NODE, Some(&kubeconfig)).unwrap()
}

/// Each step the stand-in node ran, with the API requests received before it.
type Steps = Rc<RefCell<Vec<(String, Vec<String>)>>>;

/// A node whose install passes or fails, recording what ran alongside the API's requests.
struct StandInNode<'a> {
    api: &'a RecordedApi,
    install_ok: bool,
    /// What the API server had received when each step ran.
    seen: Steps,
}

impl NodeOps for StandInNode<'_> {
    fn install(&mut self) -> Result<Vec<String>> {
        self.seen
            .borrow_mut()
            .push(("install".into(), self.api.lines()));
        if self.install_ok {
            Ok(vec![
                "verify: containerd 1.6.20 answers; handler `warden` known".into(),
            ])
        } else {
            Err(anyhow!(
                "verification failed: containerd refused a pod with handler `warden`"
            ))
        }
    }
    fn drift(&mut self) -> Result<Drift> {
        Ok(Drift::default())
    }
    fn write_policy(&mut self) -> Result<Option<String>> {
        Ok(None)
    }
    fn uninstall(&mut self) -> Result<Vec<String>> {
        self.seen
            .borrow_mut()
            .push(("uninstall".into(), self.api.lines()));
        Ok(vec!["removed".into()])
    }
}

#[test]
fn the_node_facts_come_from_the_recorded_node() {
    let api = RecordedApi::start(exchanges(&["get-node"], NODE));
    let dir = tempfile::tempdir().unwrap();
    let mut node = client(&api, dir.path());
    let facts = node.facts().unwrap();
    assert_eq!(facts.ready, None);
    assert_eq!(
        facts.container_runtime_version.as_deref(),
        Some("containerd://1.6.20")
    );
    assert_eq!(
        warden_installer::install::args::containerd_major_from_node(
            facts.container_runtime_version.as_deref().unwrap()
        ),
        Ok(1)
    );
    assert_eq!(api.lines(), [format!("GET /api/v1/nodes/{NODE}")]);

    let labelled = RecordedApi::start(exchanges(&["get-node-labelled"], NODE));
    let mut node = client(&labelled, dir.path());
    assert_eq!(node.facts().unwrap().ready.as_deref(), Some("true"));
}

#[test]
fn the_label_is_patched_after_a_successful_verification() {
    let api = RecordedApi::start(exchanges(&["get-node", "patch-ready"], NODE));
    let dir = tempfile::tempdir().unwrap();
    let mut labels = client(&api, dir.path());
    let labelled = labels.facts().unwrap().ready.as_deref() == Some("true");
    let seen = Rc::default();
    let mut node = StandInNode {
        api: &api,
        install_ok: true,
        seen: Rc::clone(&seen),
    };
    let mut log = Vec::new();
    let mut sink = |line: String| log.push(line);
    let audit = AuditLog::new(dir.path().join("audit.jsonl"));
    let mut daemon = Daemon::new(&mut labels, &mut node, audit, Some(labelled), &mut sink);
    assert!(daemon.start());
    drop(daemon);
    let received = api.received();
    assert_eq!(
        received
            .iter()
            .map(|r| r.matched.as_deref().unwrap_or("UNRECORDED"))
            .collect::<Vec<_>>(),
        ["get-node", "patch-ready"],
        "{received:#?}"
    );
    let patch = &received[1];
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    // The install (and its verification) ran before the label was patched.
    assert_eq!(
        seen.borrow()[0],
        (
            "install".to_owned(),
            vec![format!("GET /api/v1/nodes/{NODE}")]
        )
    );
    assert!(
        log.iter()
            .any(|l| l.contains("set warden.dev/ready=true on node worker-1"))
    );
}

#[test]
fn a_failed_verification_never_labels() {
    let api = RecordedApi::start(exchanges(
        &["get-node", "patch-ready", "patch-unready"],
        NODE,
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut labels = client(&api, dir.path());
    let labelled = labels.facts().unwrap().ready.as_deref() == Some("true");
    let mut node = StandInNode {
        api: &api,
        install_ok: false,
        seen: Rc::default(),
    };
    let mut sink = |_: String| {};
    let audit = AuditLog::new(dir.path().join("audit.jsonl"));
    let mut daemon = Daemon::new(&mut labels, &mut node, audit, Some(labelled), &mut sink);
    assert!(!daemon.start());
    // A re-check finds nothing to repair but retries the failed install: still no label.
    assert!(!daemon.recheck());
    drop(daemon);
    // The node had no label: no PATCH at all, not even a removal.
    assert_eq!(api.lines(), [format!("GET /api/v1/nodes/{NODE}")]);
}

#[test]
fn a_failed_verification_removes_a_label_the_node_had() {
    let api = RecordedApi::start(exchanges(
        &["get-node-labelled", "patch-ready", "patch-unready"],
        NODE,
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut labels = client(&api, dir.path());
    let labelled = labels.facts().unwrap().ready.as_deref() == Some("true");
    assert!(labelled);
    let mut node = StandInNode {
        api: &api,
        install_ok: false,
        seen: Rc::default(),
    };
    let mut sink = |_: String| {};
    let audit = AuditLog::new(dir.path().join("audit.jsonl"));
    let mut daemon = Daemon::new(&mut labels, &mut node, audit, Some(labelled), &mut sink);
    assert!(!daemon.start());
    drop(daemon);
    let matched: Vec<_> = api
        .received()
        .iter()
        .map(|r| r.matched.clone().unwrap_or_default())
        .collect();
    assert_eq!(matched, ["get-node-labelled", "patch-unready"]);
}

#[test]
fn uninstall_mode_removes_the_label_before_uninstalling() {
    let api = RecordedApi::start(exchanges(&["get-node-labelled", "patch-unready"], NODE));
    let dir = tempfile::tempdir().unwrap();
    let mut labels = client(&api, dir.path());
    let seen = Rc::default();
    let mut node = StandInNode {
        api: &api,
        install_ok: true,
        seen: Rc::clone(&seen),
    };
    let mut sink = |_: String| {};
    let audit = AuditLog::new(dir.path().join("audit.jsonl"));
    let mut daemon = Daemon::new(&mut labels, &mut node, audit, Some(true), &mut sink);
    daemon.uninstall_step().unwrap();
    drop(daemon);
    let unlabel = format!("PATCH /api/v1/nodes/{NODE}?&fieldManager=warden-installer");
    assert_eq!(seen.borrow()[0], ("uninstall".to_owned(), vec![unlabel]));
    assert_eq!(api.received()[0].matched.as_deref(), Some("patch-unready"));
}

#[test]
fn uninstall_mode_does_not_uninstall_while_the_label_cannot_be_removed() {
    // The API server knows no PATCH: the removal fails (404), so nothing is uninstalled.
    let api = RecordedApi::start(exchanges(&["get-node-labelled"], NODE));
    let dir = tempfile::tempdir().unwrap();
    let mut labels = client(&api, dir.path());
    let seen = Rc::default();
    let mut node = StandInNode {
        api: &api,
        install_ok: true,
        seen: Rc::clone(&seen),
    };
    let mut sink = |_: String| {};
    let audit = AuditLog::new(dir.path().join("audit.jsonl"));
    let mut daemon = Daemon::new(&mut labels, &mut node, audit, Some(true), &mut sink);
    let err = daemon.uninstall_step().unwrap_err();
    assert!(err.contains("not uninstalling"), "{err}");
    drop(daemon);
    assert!(
        seen.borrow().is_empty(),
        "uninstall ran: {:?}",
        seen.borrow()
    );
}

/// `warden uninstall --node-name` (a Job): the label's PATCH reaches the API server before
/// anything on the node changes; an API server that refuses it leaves the node untouched.
#[test]
fn warden_uninstall_with_a_node_name_removes_the_label_first() {
    let tree = install_support::Tree::from_case("containerd-1.7-default");
    tree.run_ok("install", &["--no-verify"]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let before = install_support::snapshot(&tree.root);

    // Refused: no recorded PATCH.
    let refusing = RecordedApi::start(exchanges(&["get-node"], NODE));
    refusing.write_kubeconfig(&kubeconfig);
    let kube = [
        "--node-name",
        NODE,
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ];
    let out = tree.run("uninstall", &[&["--no-verify"][..], &kube].concat());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(install_support::snapshot(&tree.root), before);

    let api = RecordedApi::start(exchanges(&["patch-unready"], NODE));
    api.write_kubeconfig(&kubeconfig);
    let out = tree.run("uninstall", &[&["--no-verify"][..], &kube].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(api.wait_for("patch-unready", Duration::from_secs(1)));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("label: removed warden.dev/ready from node worker-1"),
        "{stdout}"
    );
    assert!(!tree.host(install_support::BINARY).exists());
}
