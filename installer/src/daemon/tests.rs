//! The daemon's decisions against a fake node and a fake API server: when the label is set
//! and removed, in which order, what is repaired and audited.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use super::*;
use crate::node_labels::NodeFacts;
use crate::state::{BinaryRecord, Original};

type Calls = Rc<RefCell<Vec<String>>>;

struct FakeLabels {
    calls: Calls,
    fail_set: u32,
    fail_remove: u32,
}

impl NodeLabels for FakeLabels {
    fn node(&self) -> &str {
        "node-1"
    }
    fn facts(&mut self) -> Result<NodeFacts, LabelError> {
        self.calls.borrow_mut().push("get".into());
        Ok(NodeFacts::default())
    }
    fn set_ready(&mut self) -> Result<(), LabelError> {
        self.calls.borrow_mut().push("label:set".into());
        if self.fail_set > 0 {
            self.fail_set -= 1;
            return Err(LabelError::Api {
                what: "cannot label",
                node: "node-1".into(),
                detail: "503 Service Unavailable".into(),
            });
        }
        Ok(())
    }
    fn remove_ready(&mut self) -> Result<(), LabelError> {
        self.calls.borrow_mut().push("label:remove".into());
        if self.fail_remove > 0 {
            self.fail_remove -= 1;
            return Err(LabelError::Api {
                what: "cannot remove the label from",
                node: "node-1".into(),
                detail: "connection refused".into(),
            });
        }
        Ok(())
    }
}

#[derive(Default)]
struct FakeNode {
    calls: Calls,
    installs: VecDeque<Result<Vec<String>>>,
    drifts: VecDeque<Result<Drift>>,
    uninstalls: VecDeque<Result<Vec<String>>>,
}

impl NodeOps for FakeNode {
    fn install(&mut self) -> Result<Vec<String>> {
        self.calls.borrow_mut().push("install".into());
        self.installs
            .pop_front()
            .unwrap_or_else(|| Ok(vec!["ok".into()]))
    }
    fn drift(&mut self) -> Result<Drift> {
        self.calls.borrow_mut().push("drift".into());
        self.drifts
            .pop_front()
            .unwrap_or_else(|| Ok(Drift::default()))
    }
    fn write_policy(&mut self) -> Result<Option<String>> {
        self.calls.borrow_mut().push("policy".into());
        Ok(Some("policy: unchanged".into()))
    }
    fn uninstall(&mut self) -> Result<Vec<String>> {
        self.calls.borrow_mut().push("uninstall".into());
        self.uninstalls
            .pop_front()
            .unwrap_or_else(|| Ok(vec!["removed".into()]))
    }
}

struct World {
    calls: Calls,
    labels: FakeLabels,
    node: FakeNode,
    _dir: tempfile::TempDir,
    audit: PathBuf,
    log: Vec<String>,
}

impl World {
    fn new() -> World {
        let calls: Calls = Rc::default();
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit.jsonl");
        World {
            labels: FakeLabels {
                calls: calls.clone(),
                fail_set: 0,
                fail_remove: 0,
            },
            node: FakeNode {
                calls: calls.clone(),
                ..FakeNode::default()
            },
            calls,
            _dir: dir,
            audit,
            log: Vec::new(),
        }
    }

    fn taken(&self) -> Vec<String> {
        self.calls.borrow_mut().drain(..).collect()
    }

    fn records(&self) -> Vec<warden_audit::Record> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|r: &warden_audit::Record| r.event != "anchor")
            .collect()
    }
}

/// Runs `f` with a daemon over the world's fakes (label state `labelled` at the start).
fn with_daemon<T>(
    w: &mut World,
    labelled: Option<bool>,
    f: impl FnOnce(&mut Daemon<'_>) -> T,
) -> T {
    let audit = AuditLog::new(&w.audit);
    let log = &mut w.log;
    let mut sink = |line: String| log.push(line);
    let mut daemon = Daemon::new(&mut w.labels, &mut w.node, audit, labelled, &mut sink);
    f(&mut daemon)
}

#[test]
fn label_decisions() {
    assert_eq!(label_action(None, true), LabelAction::Set);
    assert_eq!(label_action(Some(false), true), LabelAction::Set);
    assert_eq!(label_action(Some(true), true), LabelAction::Keep);
    assert_eq!(label_action(None, false), LabelAction::Remove);
    assert_eq!(label_action(Some(true), false), LabelAction::Remove);
    assert_eq!(label_action(Some(false), false), LabelAction::Keep);
}

#[test]
fn waits_double_after_failures_up_to_32_times() {
    let i = Duration::from_secs(60);
    assert_eq!(next_wait(i, 0), i);
    assert_eq!(next_wait(i, 1), i * 2);
    assert_eq!(next_wait(i, 3), i * 8);
    assert_eq!(next_wait(i, 5), i * 32);
    assert_eq!(next_wait(i, 40), i * 32);
}

#[test]
fn the_label_is_set_only_after_the_install_verified() {
    let mut w = World::new();
    let ready = with_daemon(&mut w, Some(false), |d| d.start());
    assert!(ready);
    assert_eq!(w.taken(), ["install", "policy", "label:set"]);
    let records = w.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event, "label");
    assert_eq!(records[0].decision.as_deref(), Some("set"));
    // Already labelled: no second patch.
    let ready = with_daemon(&mut w, Some(true), |d| d.start());
    assert!(ready);
    assert_eq!(w.taken(), ["install", "policy"]);
}

#[test]
fn a_failed_install_never_labels_and_removes_a_stale_label() {
    let mut w = World::new();
    w.node.installs.push_back(Err(anyhow!(
        "verification failed: containerd refused a pod"
    )));
    let ready = with_daemon(&mut w, Some(true), |d| {
        let ready = d.start();
        assert_eq!(d.failures(), 1);
        assert_eq!(d.labelled(), Some(false));
        ready
    });
    assert!(!ready);
    let calls = w.taken();
    assert_eq!(calls, ["install", "label:remove"]);
    assert!(!calls.contains(&"label:set".to_owned()));
    let records = w.records();
    assert_eq!(records[0].decision.as_deref(), Some("remove"));
    assert!(
        records[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("containerd refused a pod"),
        "{records:?}"
    );
    // Known unlabelled: a failure patches nothing.
    w.node.installs.push_back(Err(anyhow!("boom")));
    with_daemon(&mut w, Some(false), |d| d.start());
    assert_eq!(w.taken(), ["install"]);
}

#[test]
fn drift_is_repaired_and_audited_and_the_label_kept() {
    let mut w = World::new();
    w.node.drifts.push_back(Ok(Drift {
        install: vec!["the shim /opt/warden/bin/containerd-shim-warden-v1 is missing".into()],
        ..Drift::default()
    }));
    with_daemon(&mut w, Some(false), |d| {
        assert!(d.start());
        assert!(d.recheck());
        // No drift: nothing done.
        assert!(d.recheck());
    });
    assert_eq!(
        w.taken(),
        [
            "install",
            "policy",
            "label:set",
            "drift",
            "install",
            "policy",
            "drift"
        ]
    );
    let repair = w
        .records()
        .into_iter()
        .find(|r| r.event == "repair")
        .unwrap();
    assert_eq!(repair.decision.as_deref(), Some("pass"));
    assert!(
        repair.reason.as_deref().unwrap().contains("is missing"),
        "{repair:?}"
    );
    assert!(
        w.log.iter().any(|l| l.starts_with("drift: the shim")),
        "{:?}",
        w.log
    );
}

#[test]
fn a_policy_change_alone_writes_the_policy_without_reinstalling() {
    let mut w = World::new();
    w.node.drifts.push_back(Ok(Drift {
        policy: Some("the policy source /config/policy.toml differs".into()),
        ..Drift::default()
    }));
    with_daemon(&mut w, Some(true), |d| {
        d.start();
        d.recheck();
    });
    assert_eq!(w.taken(), ["install", "policy", "drift", "policy"]);
}

#[test]
fn an_unrepairable_recheck_removes_the_label_and_says_why() {
    let mut w = World::new();
    w.node.drifts.push_back(Err(anyhow!(
        "/etc/containerd/config.toml: line 3: invalid TOML"
    )));
    with_daemon(&mut w, Some(false), |d| {
        d.start();
        assert!(!d.recheck());
        assert_eq!(
            d.next_wait(Duration::from_secs(10)),
            Duration::from_secs(20)
        );
    });
    assert_eq!(
        w.taken(),
        ["install", "policy", "label:set", "drift", "label:remove"]
    );
    assert!(
        w.log
            .iter()
            .any(|l| l.contains("cannot be repaired") && l.contains("invalid TOML")),
        "{:?}",
        w.log
    );
    let removal = w.records().into_iter().last().unwrap();
    assert_eq!(removal.event, "label");
    assert!(removal.reason.unwrap().contains("invalid TOML"));
}

#[test]
fn a_failed_repair_removes_the_label_then_a_later_one_sets_it_again() {
    let mut w = World::new();
    w.node.installs.push_back(Ok(vec![]));
    w.node.installs.push_back(Err(anyhow!("restart failed")));
    let drift = || {
        Ok(Drift {
            install: vec!["/etc/containerd/config.toml does not register the runtime".into()],
            ..Drift::default()
        })
    };
    w.node.drifts.push_back(drift());
    w.node.drifts.push_back(drift());
    with_daemon(&mut w, Some(false), |d| {
        d.start();
        assert!(!d.recheck());
        assert!(d.recheck());
    });
    assert_eq!(
        w.taken(),
        [
            "install",
            "policy",
            "label:set", // start
            "drift",
            "install",
            "label:remove", // repair failed
            "drift",
            "install",
            "policy",
            "label:set", // repaired
        ]
    );
    let decisions: Vec<_> = w
        .records()
        .into_iter()
        .filter(|r| r.event == "repair")
        .map(|r| r.decision.unwrap())
        .collect();
    assert_eq!(decisions, ["fail", "pass"]);
}

#[test]
fn a_label_patch_that_failed_is_retried_at_the_next_recheck() {
    let mut w = World::new();
    w.labels.fail_set = 1;
    with_daemon(&mut w, Some(false), |d| {
        assert!(d.start());
        assert_eq!(d.labelled(), None);
        d.recheck();
        assert_eq!(d.labelled(), Some(true));
    });
    assert_eq!(
        w.taken(),
        ["install", "policy", "label:set", "drift", "label:set"]
    );
}

#[test]
fn uninstall_mode_removes_the_label_first_and_never_uninstalls_without() {
    let mut w = World::new();
    w.labels.fail_remove = 1;
    with_daemon(&mut w, Some(true), |d| {
        let err = d.uninstall_step().unwrap_err();
        assert!(err.contains("not uninstalling"), "{err}");
        d.uninstall_step().unwrap();
    });
    assert_eq!(w.taken(), ["label:remove", "label:remove", "uninstall"]);
    let records = w.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].decision.as_deref(), Some("remove"));
}

fn state_with_shim(digest: &str) -> State {
    let mut state = State::new(
        "containerd",
        Path::new("/etc/containerd/config.toml"),
        Path::new("/etc/containerd/config.toml"),
        Path::new("/opt/warden/bin"),
        Some("containerd".into()),
    );
    state.enter(Phase::Verified);
    state.binary = Some(BinaryRecord {
        path: PathBuf::from("/opt/warden/bin/containerd-shim-warden-v1"),
        digest: digest.into(),
        original: Original::Absent,
        installed_at: String::new(),
    });
    state
}

#[test]
fn drift_in_words() {
    let wanted = format!("sha256:{}", "a".repeat(64));
    let other = format!("sha256:{}", "b".repeat(64));
    let binary = Path::new("/opt/warden/bin/containerd-shim-warden-v1");
    let state = state_with_shim(&wanted);
    let facts = |action, changes: Vec<&'static Path>, prior| DriftFacts {
        binary,
        binary_action: action,
        wanted: &wanted,
        config_changes: changes,
        prior,
    };
    assert_eq!(
        describe_drift(&facts(&BinaryAction::Unchanged, vec![], None)),
        ["warden is not installed (no state)"]
    );
    assert_eq!(
        describe_drift(&facts(&BinaryAction::Create, vec![], Some(&state))),
        ["the shim /opt/warden/bin/containerd-shim-warden-v1 is missing"]
    );
    let modified = BinaryAction::Replace {
        current: other.clone(),
    };
    let words = describe_drift(&facts(&modified, vec![], Some(&state)));
    assert_eq!(words.len(), 1);
    assert!(
        words[0].contains("was modified (it is bbbbbbbbbbbb, warden installed aaaaaaaaaaaa)"),
        "{words:?}"
    );
    // The installed shim is the recorded one, the image ships another: an update.
    let old_state = state_with_shim(&other);
    let words = describe_drift(&facts(&modified, vec![], Some(&old_state)));
    assert!(words[0].contains("(an update)"), "{words:?}");
    let words = describe_drift(&facts(
        &BinaryAction::Unchanged,
        vec![Path::new("/etc/containerd/config.toml")],
        Some(&state),
    ));
    assert_eq!(
        words,
        ["/etc/containerd/config.toml does not register the `warden` runtime as installed"]
    );
    let mut rolled_back = state_with_shim(&wanted);
    rolled_back.enter(Phase::RolledBack);
    let words = describe_drift(&facts(&BinaryAction::Unchanged, vec![], Some(&rolled_back)));
    assert_eq!(
        words,
        ["the last install did not finish (phase rolled-back)"]
    );
}
