//! `warden install --daemon`: what the DaemonSet runs on every node.
//!
//! 1. Install, exactly as `warden install` (digest, shim, config, a restart only if the
//!    config changed, through systemd's D-Bus API, then the CRI verification).
//! 2. Write the policy from `--policy-source` ([`crate::policy_source`]).
//! 3. Label the node `warden.dev/ready=true`, only after the verification passed.
//! 4. Every `--recheck-interval`: look for drift (the shim removed or modified, the config
//!    without the runtime entry, an install that did not finish, a changed policy source)
//!    and repair it through the same install path; each repair is audited (`repair`) with
//!    what was found. A re-check that fails and cannot be repaired removes the label and
//!    says why. After failures the wait doubles (up to 32 times the interval), so a node
//!    whose containerd cannot take the runtime is not restarted every minute.
//! 5. SIGTERM or SIGINT: exit 0, leaving the runtime installed and the label in place.
//!
//! Uninstall mode (`WARDEN_UNINSTALL=true`): remove the label first, then uninstall, then
//! idle until SIGTERM.
//!
//! The decisions ([`Daemon`]) are separate from the node ([`NodeOps`]) and the API server
//! ([`NodeLabels`]), so the unit tests run them against fakes.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::binary::BinaryAction;
use crate::containerd_config::source::host_path;
use crate::install::args::{InstallArgs, UninstallArgs, containerd_major_from_node};
use crate::install::context::{self, Node, Refusal};
use crate::install::{self, Outcome};
use crate::install_audit::{self, AuditLog};
use crate::node_labels::{KubeNode, LabelError, NodeLabels, READY_LABEL, READY_VALUE};
use crate::policy_source::{self, PolicySourceError};
use crate::state::{Phase, State};
use warden_common::lock::HostLock;

/// The longest wait after failures, as a multiple of the interval.
const MAX_BACKOFF_FACTOR: u32 = 32;

/// What the daemon finds different from what it installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    /// Drift that the install path repairs (the shim, the config, the state).
    pub install: Vec<String>,
    /// The policy source differs from the node's policy.
    pub policy: Option<String>,
    /// Worth saying, nothing to repair (a policy source that does not load).
    pub notes: Vec<String>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.install.is_empty() && self.policy.is_none()
    }

    /// The drift in words, for the log and the `repair` record.
    pub fn describe(&self) -> String {
        self.install
            .iter()
            .chain(self.policy.iter())
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The node, as the daemon acts on it. [`RealNode`] is the real one.
pub trait NodeOps {
    /// Installs (or repairs) and verifies; returns what was done, in lines.
    fn install(&mut self) -> Result<Vec<String>>;
    /// What differs from the install; an error when the node cannot be checked (it would
    /// be refused), which no repair can fix.
    fn drift(&mut self) -> Result<Drift>;
    /// Writes the policy from its source when it differs; `None` without a source.
    fn write_policy(&mut self) -> Result<Option<String>>;
    /// Uninstalls; returns what was done, in lines.
    fn uninstall(&mut self) -> Result<Vec<String>>;
}

/// What to do with the label after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelAction {
    Set,
    Remove,
    Keep,
}

/// The label decision: set it after a verification that passed unless it is known to be
/// set; remove it after a failure unless it is known to be absent. `labelled` is what the
/// daemon knows (`None`: unknown).
pub fn label_action(labelled: Option<bool>, verified: bool) -> LabelAction {
    match (verified, labelled) {
        (true, Some(true)) | (false, Some(false)) => LabelAction::Keep,
        (true, _) => LabelAction::Set,
        (false, _) => LabelAction::Remove,
    }
}

/// How long to wait before the next re-check after `failures` failures in a row.
pub fn next_wait(interval: Duration, failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.min(5))
        .unwrap_or(MAX_BACKOFF_FACTOR)
        .min(MAX_BACKOFF_FACTOR);
    interval.saturating_mul(factor)
}

/// What drift detection saw on the node.
#[derive(Debug, Clone)]
pub struct DriftFacts<'a> {
    pub binary: &'a Path,
    pub binary_action: &'a BinaryAction,
    pub wanted: &'a str,
    /// Config files the install plan would write.
    pub config_changes: Vec<&'a Path>,
    pub prior: Option<&'a State>,
}

/// The drift in words: each way the node differs from a finished install.
pub fn describe_drift(facts: &DriftFacts<'_>) -> Vec<String> {
    let short = warden_common::digest::short;
    let mut drift = Vec::new();
    let Some(state) = facts.prior else {
        return vec!["warden is not installed (no state)".to_owned()];
    };
    match facts.binary_action {
        BinaryAction::Create => {
            drift.push(format!("the shim {} is missing", facts.binary.display()))
        }
        BinaryAction::Replace { current } => {
            let recorded = state.binary.as_ref().map(|b| b.digest.as_str());
            if recorded == Some(current.as_str()) {
                drift.push(format!(
                    "the shim {} is {}, this installer ships {} (an update)",
                    facts.binary.display(),
                    short(current),
                    short(facts.wanted)
                ));
            } else {
                drift.push(format!(
                    "the shim {} was modified (it is {}, warden installed {})",
                    facts.binary.display(),
                    short(current),
                    short(recorded.unwrap_or(facts.wanted))
                ));
            }
        }
        BinaryAction::Unchanged => {}
    }
    for path in &facts.config_changes {
        drift.push(format!(
            "{} does not register the `warden` runtime as installed",
            path.display()
        ));
    }
    if state.phase != Phase::Verified {
        drift.push(format!(
            "the last install did not finish (phase {})",
            state.phase
        ));
    } else if state.restart_pending {
        drift.push("containerd was not restarted after its config changed".to_owned());
    }
    if drift.is_empty()
        && state
            .binary
            .as_ref()
            .is_none_or(|b| b.path != facts.binary || b.digest != facts.wanted)
    {
        drift.push("the state does not record the shim this installer ships".to_owned());
    }
    drift
}

/// The daemon's decisions: when to install, repair, label and unlabel.
pub struct Daemon<'a> {
    labels: &'a mut dyn NodeLabels,
    ops: &'a mut dyn NodeOps,
    audit: AuditLog,
    log: &'a mut dyn FnMut(String),
    /// Whether the node carries the label, as far as the daemon knows.
    labelled: Option<bool>,
    /// Whether the last install or repair passed.
    healthy: bool,
    /// Failed checks in a row.
    failures: u32,
}

impl<'a> Daemon<'a> {
    pub fn new(
        labels: &'a mut dyn NodeLabels,
        ops: &'a mut dyn NodeOps,
        audit: AuditLog,
        labelled: Option<bool>,
        log: &'a mut dyn FnMut(String),
    ) -> Daemon<'a> {
        Daemon {
            labels,
            ops,
            audit,
            log,
            labelled,
            healthy: false,
            failures: 0,
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn labelled(&self) -> Option<bool> {
        self.labelled
    }

    /// The wait before the next re-check.
    pub fn next_wait(&self, interval: Duration) -> Duration {
        next_wait(interval, self.failures)
    }

    /// Install, write the policy, label. Returns whether the node is ready.
    pub fn start(&mut self) -> bool {
        match self.ops.install() {
            Ok(lines) => {
                self.say_all("install", lines);
                self.policy();
                self.passed("installed and verified");
                true
            }
            Err(e) => {
                let reason = format!("install failed: {e:#}");
                self.say(reason.clone());
                self.failed(&reason);
                false
            }
        }
    }

    /// One re-check: find drift, repair it, keep the label true to the result. Returns
    /// whether the node is ready.
    pub fn recheck(&mut self) -> bool {
        let drift = match self.ops.drift() {
            Ok(drift) => drift,
            Err(e) => {
                let reason = format!("re-check failed and cannot be repaired: {e:#}");
                self.say(reason.clone());
                self.failed(&reason);
                return false;
            }
        };
        for note in &drift.notes {
            self.say(note.clone());
        }
        if drift.is_empty() {
            if self.healthy && self.labelled != Some(true) {
                self.passed("installed and verified (the label was not set yet)");
            } else if !self.healthy {
                // Nothing to repair, yet the last attempt failed: try it again.
                return self.repair(&Drift {
                    install: vec!["the last install or repair failed".to_owned()],
                    ..Drift::default()
                });
            }
            return self.healthy;
        }
        self.repair(&drift)
    }

    fn repair(&mut self, drift: &Drift) -> bool {
        let what = drift.describe();
        self.say(format!("drift: {what}; repairing"));
        if !drift.install.is_empty() {
            match self.ops.install() {
                Ok(lines) => self.say_all("repair", lines),
                Err(e) => {
                    let reason = format!("could not repair ({what}): {e:#}");
                    self.record_repair(install_audit::FAIL, &reason);
                    self.say(reason.clone());
                    self.failed(&reason);
                    return false;
                }
            }
        }
        if drift.policy.is_some() || !drift.install.is_empty() {
            self.policy();
        }
        self.record_repair(install_audit::PASS, &format!("repaired: {what}"));
        self.passed(&format!("repaired ({what}) and verified"));
        true
    }

    /// Writes the policy from its source; a source that does not load is reported, and the
    /// node keeps its policy (the runtime still works: no effect on the label).
    fn policy(&mut self) {
        match self.ops.write_policy() {
            Ok(Some(line)) => self.say(line),
            Ok(None) => {}
            Err(e) => self.say(format!("policy not written: {e:#}")),
        }
    }

    fn passed(&mut self, why: &str) {
        self.healthy = true;
        self.failures = 0;
        if label_action(self.labelled, true) != LabelAction::Set {
            return;
        }
        match self.labels.set_ready() {
            Ok(()) => {
                self.labelled = Some(true);
                let reason = format!(
                    "set {READY_LABEL}={READY_VALUE} on node {}: {why}",
                    self.labels.node()
                );
                self.record_label("set", &reason);
                self.say(format!("label: {reason}"));
            }
            Err(e) => {
                self.labelled = None;
                self.say(format!(
                    "label: {e}; the node stays unlabelled, retried at the next re-check"
                ));
            }
        }
    }

    fn failed(&mut self, reason: &str) {
        self.healthy = false;
        self.failures = self.failures.saturating_add(1);
        if label_action(self.labelled, false) != LabelAction::Remove {
            return;
        }
        match self.labels.remove_ready() {
            Ok(()) => {
                self.labelled = Some(false);
                let why = format!(
                    "removed {READY_LABEL} from node {} because {reason}",
                    self.labels.node()
                );
                self.record_label("remove", &why);
                self.say(format!("label: {why}"));
            }
            Err(e) => {
                self.labelled = None;
                self.say(format!("label: {e}; retried at the next re-check"));
            }
        }
    }

    /// Uninstall mode, one attempt: the label first, and the uninstall only once it is
    /// gone. `Err` says why the attempt stopped (retried by the caller).
    pub fn uninstall_step(&mut self) -> std::result::Result<(), String> {
        if let Err(e) = self.labels.remove_ready() {
            let reason = format!(
                "{e}; not uninstalling while warden pods could still be scheduled on this node"
            );
            self.say(reason.clone());
            return Err(reason);
        }
        let why = format!(
            "removed {READY_LABEL} from node {} before uninstalling (WARDEN_UNINSTALL)",
            self.labels.node()
        );
        self.record_label("remove", &why);
        self.say(format!("label: {why}"));
        self.labelled = Some(false);
        match self.ops.uninstall() {
            Ok(lines) => {
                self.say_all("uninstall", lines);
                Ok(())
            }
            Err(e) => {
                let reason = format!("uninstall failed: {e:#}");
                self.say(reason.clone());
                self.failures = self.failures.saturating_add(1);
                Err(reason)
            }
        }
    }

    fn record_label(&mut self, decision: &str, reason: &str) {
        if let Err(e) = self.audit.label(decision, reason) {
            self.say(format!("cannot write the audit log: {e}"));
        }
    }

    fn record_repair(&mut self, decision: &str, reason: &str) {
        if let Err(e) = self.audit.repair(decision, reason) {
            self.say(format!("cannot write the audit log: {e}"));
        }
    }

    fn say(&mut self, line: String) {
        (self.log)(line);
    }

    fn say_all(&mut self, what: &str, lines: Vec<String>) {
        for line in lines {
            self.say(format!("{what}: {line}"));
        }
    }
}

/// The real node: the install, verify and uninstall paths of `warden install`/`uninstall`.
pub struct RealNode {
    args: InstallArgs,
    /// The digest of a policy source that does not load, once reported.
    reported_invalid: Option<String>,
}

impl RealNode {
    pub fn new(args: InstallArgs) -> RealNode {
        RealNode {
            args,
            reported_invalid: None,
        }
    }

    fn policy_host(&self) -> std::path::PathBuf {
        host_path(&self.args.node.root, &self.args.node.policy)
    }
}

impl NodeOps for RealNode {
    fn install(&mut self) -> Result<Vec<String>> {
        let mut args = self.args.clone();
        // The source replaces --policy right after: check the policy that will be in force.
        if let Some(source) = &args.policy_source
            && policy_source::read(source).is_ok()
        {
            args.node.policy_check = Some(source.clone());
        }
        let outcome = install::install(&args)?;
        Ok(outcome.lines)
    }

    fn drift(&mut self) -> Result<Drift> {
        let node_args = &self.args.node;
        context::check_root(node_args)?;
        context::check_state_dir(node_args)?;
        let store = context::store(node_args);
        let _shared = HostLock::shared_if_present(
            store.dir(),
            node_args.lock_timeout(),
            &mut context::tell_waiting,
        )
        .map_err(Refusal::from)?;
        let prior = store.load().map_err(Refusal::from)?;
        let mut checked = node_args.clone();
        if let Some(source) = &self.args.policy_source
            && policy_source::read(source).is_ok()
        {
            checked.policy_check = Some(source.clone());
        }
        let node = Node::inspect(&checked, prior.as_ref())?;
        let mut drift = Drift::default();
        if !node.is_noop(prior.as_ref()) {
            drift.install = describe_drift(&DriftFacts {
                binary: &node.binary,
                binary_action: &node.binary_action,
                wanted: &node.shim.digest,
                config_changes: node.plan.changes.iter().map(|c| c.path.as_path()).collect(),
                prior: prior.as_ref(),
            });
        }
        if let Some(source) = &self.args.policy_source {
            match policy_source::read(source) {
                Ok(read) => {
                    self.reported_invalid = None;
                    if policy_source::current_digest(&self.policy_host())?.as_deref()
                        != Some(read.digest.as_str())
                    {
                        drift.policy = Some(format!(
                            "the policy source {} differs from {}",
                            source.display(),
                            self.args.node.policy.display()
                        ));
                    }
                }
                Err(e @ PolicySourceError::Invalid { .. }) => {
                    let digest = std::fs::read(source)
                        .map(|b| warden_common::Digest::of(&b).to_string())
                        .unwrap_or_default();
                    if self.reported_invalid.as_deref() != Some(digest.as_str()) {
                        drift.notes.push(format!("policy not written: {e}"));
                        self.reported_invalid = Some(digest);
                    }
                }
                Err(e) => drift.notes.push(format!("policy not written: {e}")),
            }
        }
        Ok(drift)
    }

    fn write_policy(&mut self) -> Result<Option<String>> {
        let Some(source) = &self.args.policy_source else {
            return Ok(None);
        };
        let source = policy_source::read(source)?;
        let host = self.policy_host();
        let done = policy_source::apply(
            &source,
            &host,
            &self.args.node.policy,
            &context::audit_log(&self.args.node),
        )?;
        Ok(Some(done.describe(&self.args.node.policy)))
    }

    fn uninstall(&mut self) -> Result<Vec<String>> {
        let args = UninstallArgs {
            node: self.args.node.clone(),
            no_verify: self.args.no_verify,
            kube: self.args.kube.clone(),
        };
        Ok(install::uninstall(&args)?.lines)
    }
}

/// Why the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Signal(i32),
    Timer,
}

/// Waits `timeout` for a signal.
pub fn wait(signals: &Receiver<i32>, timeout: Duration) -> Wake {
    match signals.recv_timeout(timeout) {
        Ok(signal) => Wake::Signal(signal),
        Err(RecvTimeoutError::Timeout) => Wake::Timer,
        Err(RecvTimeoutError::Disconnected) => {
            std::thread::sleep(timeout);
            Wake::Timer
        }
    }
}

/// SIGTERM and SIGINT, delivered on a channel by a thread of their own. From here on they
/// no longer end the process: the daemon decides when to exit.
pub fn signals() -> Result<Receiver<i32>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("cannot install the SIGTERM/SIGINT handlers")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                if tx.send(signal).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(rx)
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// A log line on stdout (the pod's log), stamped.
fn log_line(line: String) {
    println!("{} warden: {line}", warden_audit::now_rfc3339());
}

/// `warden install --daemon`: runs until SIGTERM/SIGINT, then returns `Ok` (exit 0).
pub fn run(args: &InstallArgs) -> Result<()> {
    let signals = signals()?;
    let node_name = args
        .kube
        .node_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| anyhow!("--daemon needs the node's name: --node-name or NODE_NAME"))?;
    let mut labels = KubeNode::connect(&node_name, args.kube.kubeconfig.as_deref())?;
    let mut args = args.clone();
    args.node.daemon = true;
    let mut log = log_line;
    log(format!(
        "daemon on node {node_name}: re-check every {}s; SIGTERM leaves warden installed and \
         the node labelled",
        args.recheck_interval
    ));
    let labelled = match labels.facts() {
        Ok(facts) => {
            if args.node.containerd_version.is_none() {
                match facts
                    .container_runtime_version
                    .as_deref()
                    .map(containerd_major_from_node)
                {
                    Some(Ok(major)) => {
                        log(format!(
                            "containerd {major}.x (the Node's containerRuntimeVersion {})",
                            facts.container_runtime_version.as_deref().unwrap_or("")
                        ));
                        args.node.containerd_version = Some(major);
                    }
                    Some(Err(e)) => log(format!("containerd's version is unknown: {e}")),
                    None => log(
                        "containerd's version is unknown: the Node reports no container runtime \
                         version"
                            .to_owned(),
                    ),
                }
            }
            Some(facts.ready.as_deref() == Some(READY_VALUE))
        }
        Err(e) => {
            log(format!("{e}; the label is retried after the install"));
            None
        }
    };
    let audit = context::audit_log(&args.node);
    let interval = args.recheck_interval();
    let uninstall_mode = args.uninstall_mode;
    let mut ops = RealNode::new(args);
    let mut daemon = Daemon::new(&mut labels, &mut ops, audit, labelled, &mut log);
    if uninstall_mode {
        return run_uninstall(&mut daemon, &signals, interval);
    }
    daemon.start();
    loop {
        match wait(&signals, daemon.next_wait(interval)) {
            Wake::Signal(signal) => {
                log_line(format!(
                    "{}: exiting; warden stays installed and the node keeps its label \
                     (uninstall with WARDEN_UNINSTALL=true)",
                    signal_name(signal)
                ));
                return Ok(());
            }
            Wake::Timer => {
                daemon.recheck();
            }
        }
    }
}

fn run_uninstall(
    daemon: &mut Daemon<'_>,
    signals: &Receiver<i32>,
    interval: Duration,
) -> Result<()> {
    loop {
        if daemon.uninstall_step().is_ok() {
            break;
        }
        if let Wake::Signal(signal) = wait(signals, daemon.next_wait(interval)) {
            log_line(format!(
                "{}: exiting before the uninstall finished",
                signal_name(signal)
            ));
            return Ok(());
        }
    }
    log_line("uninstalled; idling until SIGTERM (delete the DaemonSet now)".to_owned());
    loop {
        if let Wake::Signal(signal) = wait(signals, Duration::from_secs(3600)) {
            log_line(format!("{}: exiting", signal_name(signal)));
            return Ok(());
        }
    }
}

/// `warden uninstall` with a node name (a Job, or by hand): the label first, then the
/// uninstall; nothing is uninstalled while the label could not be removed.
pub fn uninstall_with_label(args: &UninstallArgs) -> Result<Outcome> {
    let Some(node_name) = args
        .kube
        .node_name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
    else {
        return install::uninstall(args);
    };
    let mut labels = KubeNode::connect(node_name, args.kube.kubeconfig.as_deref())?;
    remove_label_first(&mut labels, &context::audit_log(&args.node))?;
    let mut outcome = install::uninstall(args)?;
    outcome.lines.insert(
        0,
        format!("label: removed {READY_LABEL} from node {node_name}"),
    );
    Ok(outcome)
}

/// Removes the label and audits it; an error means nothing else may be done.
pub fn remove_label_first(labels: &mut dyn NodeLabels, audit: &AuditLog) -> Result<()> {
    labels.remove_ready().map_err(|e: LabelError| {
        anyhow!(e).context(
            "the node's label must be removed before warden is uninstalled (so that no warden \
             pod is scheduled here); nothing was changed",
        )
    })?;
    audit
        .label(
            "remove",
            &format!(
                "removed {READY_LABEL} from node {} before uninstalling",
                labels.node()
            ),
        )
        .context("cannot write the audit log")?;
    Ok(())
}

#[cfg(test)]
mod tests;
