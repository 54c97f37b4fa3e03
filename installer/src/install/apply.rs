//! `warden install`: the shim into the install dir, the `warden` runtime into containerd's
//! config, a restart when the config changed, then a check through CRI.
//!
//! A run first looks without writing ([`Node::inspect`]): a refusal changes nothing. Then
//! it takes the host lock and moves the state through its phases, writing the state ahead
//! of each change (backup and intended digest first, then the file), so that a run killed
//! anywhere is finished by the next: every step compares the disk with what it wants and
//! does only what is missing. A failure before the restart puts back what the run wrote; a
//! failed verification also restarts containerd on the restored config
//! ([`super::rollback`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;
use warden_audit::event;

use super::args::InstallArgs;
use super::context::{self, Node, Refusal};
use super::outcome::Outcome;
use crate::containerd_check;
use crate::containerd_config::ChangeKind;
use crate::crash_hook;
use crate::digest;
use crate::install_audit::{self, AuditLog};
use crate::paths;
use crate::state::{
    Attempt, BinaryRecord, FileMeta, FileRecord, Original, Phase, RestartRecord, State, StateStore,
    Verification,
};
use warden_common::Digest;
use warden_common::durable::{self, FileMode};
use warden_common::lock::HostLock;

/// Mode of a drop-in warden creates.
const CONFIG_MODE: u32 = 0o644;
/// Mode of the installed shim.
const BINARY_MODE: u32 = 0o755;

/// The install failed after it had changed the node; what was undone says how the node was
/// left.
#[derive(Debug, thiserror::Error)]
#[error("{cause}; {undone}")]
pub struct Failed {
    pub cause: String,
    pub undone: String,
}

/// `warden install`.
pub fn install(args: &InstallArgs) -> Result<Outcome> {
    let node_args = &args.node;
    context::check_root(node_args)?;
    context::check_state_dir(node_args)?;
    let store = context::store(node_args);
    let audit = context::audit_log(node_args);

    // Look first, writing nothing: a refusal leaves no trace, not even the state dir.
    let shared = HostLock::shared_if_present(
        store.dir(),
        node_args.lock_timeout(),
        &mut context::tell_waiting,
    )
    .map_err(Refusal::from)?;
    let prior = store.load().map_err(Refusal::from)?;
    let node = Node::inspect(node_args, prior.as_ref())?;
    if node.is_noop(prior.as_ref()) {
        return already_installed(args, &node, prior.as_ref(), &audit);
    }
    drop(shared);

    store
        .create_dir()
        .with_context(|| format!("cannot create the state dir {}", store.dir().display()))?;
    let _lock = HostLock::exclusive(
        store.dir(),
        node_args.lock_timeout(),
        &mut context::tell_waiting,
    )
    .map_err(Refusal::from)?;
    // Under the lock: what another run may have done meanwhile counts.
    let prior_raw = store.read_raw().map_err(Refusal::from)?;
    let prior = store.load().map_err(Refusal::from)?;
    let node = Node::inspect(node_args, prior.as_ref())?;
    if node.is_noop(prior.as_ref()) {
        return already_installed(args, &node, prior.as_ref(), &audit);
    }
    Run::start(args, node, store, audit, prior, prior_raw).apply()
}

/// The re-run of an installed node: nothing to write, containerd checked again.
fn already_installed(
    args: &InstallArgs,
    node: &Node,
    prior: Option<&State>,
    audit: &AuditLog,
) -> Result<Outcome> {
    let target = node.layout.target.path();
    let mut lines: Vec<String> = node.links.iter().map(|l| l.describe()).collect();
    lines.extend([
        format!(
            "unchanged: {} is {} and {} registers the `warden` runtime",
            node.binary.display(),
            warden_common::digest::short(&node.shim.digest),
            target.display()
        ),
        "restart: none (nothing changed)".to_owned(),
    ]);
    let verification = if args.no_verify {
        lines.push("verify: skipped (--no-verify)".to_owned());
        json!({"result": "skipped"})
    } else {
        let socket = node.host(&node.socket);
        match containerd_check::check_installed(
            &socket,
            &node.runtime_path(),
            args.node.verify_timeout(),
        ) {
            Ok(report) => {
                audit
                    .verify(install_audit::PASS, &report.summary())
                    .context("cannot write the audit log")?;
                lines.push(format!("verify: {}", report.summary()));
                json!({"result": "passed", "report": report})
            }
            Err(e) => {
                let _ = audit.verify(install_audit::FAIL, &e.to_string());
                bail!(
                    "warden is installed, but {e}; nothing was changed (check containerd, then \
                     run `warden verify`)"
                );
            }
        }
    };
    Ok(Outcome {
        code: 0,
        lines,
        json: json!({
            "ok": true,
            "result": "unchanged",
            "restarted": false,
            "node": node.facts(),
            "verification": verification,
            "state": prior,
        }),
    })
}

/// One install run under the host lock.
pub(super) struct Run<'a> {
    pub(super) args: &'a InstallArgs,
    pub(super) node: Node,
    pub(super) store: StateStore,
    pub(super) audit: AuditLog,
    pub(super) state: State,
    /// The state file as this run found it (`None`: there was none).
    pub(super) prior_raw: Option<Vec<u8>>,
    /// What was done, in words.
    pub(super) lines: Vec<String>,
    restarted: bool,
}

impl<'a> Run<'a> {
    fn start(
        args: &'a InstallArgs,
        node: Node,
        store: StateStore,
        audit: AuditLog,
        prior: Option<State>,
        prior_raw: Option<Vec<u8>>,
    ) -> Run<'a> {
        let layout = &node.layout;
        let mut state = prior.unwrap_or_else(|| {
            State::new(
                layout.distribution.name(),
                &layout.config_path,
                layout.target.path(),
                &args.node.install_dir,
                layout.restart_unit.clone(),
            )
        });
        state.distribution = layout.distribution.name().to_owned();
        state.config = layout.config_path.clone();
        state.target = layout.target.path().to_path_buf();
        state.install_dir = args.node.install_dir.clone();
        state.restart_unit = layout.restart_unit.clone();
        state.containerd_socket = Some(node.socket.clone());
        if state.attempt.is_none() {
            state.attempt = Some(Attempt::new());
        }
        Run {
            args,
            node,
            store,
            audit,
            state,
            prior_raw,
            lines: Vec::new(),
            restarted: false,
        }
    }

    fn apply(mut self) -> Result<Outcome> {
        if self.state.phase == Phase::RolledBack || self.state.phase == Phase::Uninstalling {
            self.lines.push(format!(
                "resuming from phase {} of an earlier run",
                self.state.phase
            ));
        } else if self.prior_raw.is_some() && self.state.phase != Phase::Verified {
            self.lines.push(format!(
                "resuming an install that stopped at phase {}",
                self.state.phase
            ));
        }
        self.lines
            .extend(self.node.links.iter().map(|l| l.describe()));
        self.sweep_temps()?;
        self.state.last_error = None;
        self.state.enter(Phase::Planned);
        self.save()?;
        crash_hook::reached(crash_hook::PLANNED);

        if let Err(e) = self.write_changes() {
            return Err(self.fail(e));
        }
        if let Err(e) = self.restart_if_pending() {
            return Err(self.fail(e));
        }
        self.verify()?;
        self.finish()
    }

    /// Removes the temp files a killed run left in the directories this run manages: the
    /// state dir and its backups, the install dir, the config files' directories.
    fn sweep_temps(&mut self) -> Result<()> {
        let mut dirs = vec![
            self.store.dir().to_path_buf(),
            self.store.dir().join(crate::state::BACKUP_DIR),
            self.node.host(&self.args.node.install_dir),
        ];
        let configs = self
            .node
            .plan
            .changes
            .iter()
            .map(|c| c.path.clone())
            .chain([self.node.layout.target.path().to_path_buf()]);
        for path in configs {
            let host = paths::write_target(&self.node.root, &path);
            if let Some(dir) = host.parent() {
                dirs.push(dir.to_path_buf());
            }
        }
        dirs.dedup();
        self.lines.extend(sweep(&self.node.root, &dirs)?);
        Ok(())
    }

    /// The shim, then the config.
    fn write_changes(&mut self) -> Result<()> {
        self.install_binary()?;
        self.state.enter(Phase::BinaryInstalled);
        self.save()?;
        crash_hook::reached(crash_hook::BINARY_INSTALLED);

        self.write_config()?;
        self.state.enter(Phase::ConfigWritten);
        self.save()?;
        crash_hook::reached(crash_hook::CONFIG_WRITTEN);
        Ok(())
    }

    fn install_binary(&mut self) -> Result<()> {
        let path = self.node.binary.clone();
        let host = self.node.host(&path);
        durable::remove_stale_temps(&host)?;
        let current = digest::of_file(&host)
            .with_context(|| format!("cannot read the installed shim {}", host.display()))?;
        let wanted = self.node.shim.digest.clone();
        if current.as_deref() == Some(wanted.as_str()) {
            if self.state.binary.as_ref().is_none_or(|b| b.path != path) {
                // Put there by someone else: recorded, but not warden's to remove.
                self.state.binary = Some(BinaryRecord {
                    path: path.clone(),
                    digest: wanted.clone(),
                    original: Original::Unknown,
                    installed_at: warden_audit::now_rfc3339(),
                });
            }
            self.lines.push(format!(
                "binary: {} is already {}",
                path.display(),
                warden_common::digest::short(&wanted)
            ));
            return Ok(());
        }
        self.create_dirs(host.parent().unwrap_or(Path::new("/")))?;
        let before = match &current {
            None => Original::Absent,
            Some(d) => self
                .store
                .save_backup_file(&host, d)?
                .with_meta(FileMeta::of(&host)?),
        };
        let original = match &self.state.binary {
            Some(r) if r.path == path => r.original.carried(&r.digest, current.as_deref()),
            _ => before.clone(),
        };
        self.attempt().wrote(&path, before, &wanted, true);
        self.state.binary = Some(BinaryRecord {
            path: path.clone(),
            digest: wanted.clone(),
            original,
            installed_at: warden_audit::now_rfc3339(),
        });
        self.save()?;
        durable::copy_atomic(
            &self.node.shim.path,
            &host,
            &wanted,
            FileMode::new(BINARY_MODE),
            &|| crash_hook::reached(crash_hook::BINARY_TEMP_WRITTEN),
        )?;
        let reason = match &current {
            None => "installed the shim".to_owned(),
            Some(_) => "replaced the shim (running shims keep the old file)".to_owned(),
        };
        self.audit
            .file_change(
                event::INSTALL,
                &path,
                current.as_deref(),
                Some(&wanted),
                &reason,
            )
            .context("cannot write the audit log")?;
        self.lines.push(format!(
            "binary: {} {} ({} -> {})",
            if current.is_some() {
                "replaced"
            } else {
                "installed"
            },
            path.display(),
            current
                .as_deref()
                .map_or("absent", warden_common::digest::short),
            warden_common::digest::short(&wanted)
        ));
        Ok(())
    }

    fn write_config(&mut self) -> Result<()> {
        let changes = self.node.plan.changes.clone();
        if changes.is_empty() {
            self.lines.push(format!(
                "config: {} already registers the `warden` runtime",
                self.node.layout.target.path().display()
            ));
        }
        for (index, change) in changes.iter().enumerate() {
            let Some(after) = change.after.as_deref() else {
                bail!("the install plan deletes {}", change.path.display());
            };
            let host = paths::write_target(&self.node.root, &change.path);
            durable::remove_stale_temps(&host)?;
            let current_bytes = read_optional(&host)?;
            // The plan was made from these bytes a moment ago, under the lock.
            if current_bytes.as_deref() != change.before.as_deref().map(str::as_bytes) {
                bail!(
                    "{} changed while warden was planning; nothing was written to it, run \
                     again",
                    change.path.display()
                );
            }
            let current = current_bytes.as_deref().map(|b| Digest::of(b).to_string());
            let after_digest = Digest::of(after.as_bytes()).to_string();
            let before = match &current_bytes {
                None => Original::Absent,
                Some(bytes) => self
                    .store
                    .save_backup(bytes)?
                    .with_meta(FileMeta::of(&host)?),
            };
            match self.state.files.iter_mut().find(|f| f.path == change.path) {
                Some(record) => {
                    record.original = record
                        .original
                        .carried(&record.digest_after, current.as_deref());
                    record.digest_after = after_digest.clone();
                    record.written_at = warden_audit::now_rfc3339();
                }
                None => self.state.files.push(FileRecord {
                    path: change.path.clone(),
                    original: before.clone(),
                    digest_after: after_digest.clone(),
                    written_at: warden_audit::now_rfc3339(),
                }),
            }
            self.attempt()
                .wrote(&change.path, before, &after_digest, false);
            self.create_dirs(host.parent().unwrap_or(Path::new("/")))?;
            if self.node.plan.restart.is_some() {
                self.state.restart_pending = true;
            }
            self.save()?;
            if index == 0 {
                crash_hook::reached(crash_hook::BACKUP_SAVED);
            }
            let mode = FileMode::of(&host)?.unwrap_or(FileMode::new(CONFIG_MODE));
            durable::write_atomic(&host, after.as_bytes(), mode, &|| {
                crash_hook::reached(crash_hook::CONFIG_TEMP_WRITTEN)
            })?;
            let (verb, reason) = match change.kind {
                ChangeKind::Create => (
                    "created",
                    "created warden's drop-in with the `warden` runtime",
                ),
                _ => ("edited", "registered the `warden` runtime"),
            };
            self.audit
                .file_change(
                    event::CONFIG_WRITE,
                    &change.path,
                    current.as_deref(),
                    Some(&after_digest),
                    reason,
                )
                .context("cannot write the audit log")?;
            self.lines.push(format!(
                "config: {verb} {} ({} -> {})",
                change.path.display(),
                current
                    .as_deref()
                    .map_or("absent", warden_common::digest::short),
                warden_common::digest::short(&after_digest)
            ));
        }
        Ok(())
    }

    fn restart_if_pending(&mut self) -> Result<()> {
        if self.state.restart_pending {
            let unit = self
                .node
                .plan
                .restart
                .clone()
                .or_else(|| self.node.layout.restart_unit.clone());
            match unit {
                Some(unit) => {
                    self.attempt().restart_started = true;
                    self.save()?;
                    crash_hook::reached(crash_hook::RESTART_STARTED);
                    let done = self
                        .node
                        .restart
                        .restart(&unit, &self.node.layout.config_path)?;
                    self.restarted = true;
                    self.audit
                        .restart(&done, "containerd's config changed")
                        .context("cannot write the audit log")?;
                    self.state.last_restart = Some(RestartRecord {
                        unit: Some(unit),
                        method: done.clone(),
                        at: warden_audit::now_rfc3339(),
                    });
                    self.lines.push(format!("restart: {done}"));
                }
                None => self.lines.push(format!(
                    "restart: none ({} reloads containerd itself)",
                    self.node.layout.distribution
                )),
            }
            self.state.restart_pending = false;
        } else {
            self.lines
                .push("restart: not needed (containerd's config did not change)".to_owned());
        }
        self.state.enter(Phase::Restarted);
        self.save()?;
        crash_hook::reached(crash_hook::RESTARTED);
        Ok(())
    }

    fn verify(&mut self) -> Result<()> {
        let now = warden_audit::now_rfc3339();
        if self.args.no_verify {
            self.state.verification = Some(Verification {
                at: now,
                result: "skipped".to_owned(),
                detail: "--no-verify".to_owned(),
            });
            self.lines.push("verify: skipped (--no-verify)".to_owned());
            return Ok(());
        }
        let socket = self.node.host(&self.node.socket);
        match containerd_check::check_installed(
            &socket,
            &self.node.runtime_path(),
            self.args.node.verify_timeout(),
        ) {
            Ok(report) => {
                let summary = report.summary();
                self.audit
                    .verify(install_audit::PASS, &summary)
                    .context("cannot write the audit log")?;
                self.lines.push(format!("verify: {summary}"));
                self.state.verification = Some(Verification {
                    at: now,
                    result: "passed".to_owned(),
                    detail: summary,
                });
                Ok(())
            }
            Err(e) => {
                let cause = format!("verification failed: {e}");
                let _ = self.audit.verify(install_audit::FAIL, &cause);
                Err(self.fail(anyhow::anyhow!(cause)))
            }
        }
    }

    fn finish(mut self) -> Result<Outcome> {
        self.state.attempt = None;
        self.state.last_error = None;
        self.state.enter(Phase::Verified);
        self.save()?;
        self.store.prune_backups(Some(&self.state))?;
        crash_hook::reached(crash_hook::VERIFIED);
        self.lines.push(format!(
            "installed: state {} says {}",
            self.store.state_path().display(),
            self.state.phase
        ));
        Ok(Outcome {
            code: 0,
            json: json!({
                "ok": true,
                "result": "installed",
                "restarted": self.restarted,
                "actions": self.lines,
                "node": self.node.facts(),
                "plan": self.node.plan,
                "state": self.state,
            }),
            lines: self.lines,
        })
    }

    /// Undoes the attempt after `cause` and returns the error to report.
    fn fail(&mut self, cause: anyhow::Error) -> anyhow::Error {
        let cause = format!("{cause:#}");
        match self.rollback(&cause) {
            Ok(undone) if undone.is_empty() => Failed {
                cause,
                undone: "nothing had been changed".to_owned(),
            }
            .into(),
            Ok(undone) => Failed {
                cause,
                undone: format!("rolled back: {}", undone.join("; ")),
            }
            .into(),
            Err(e) => Failed {
                cause,
                undone: format!(
                    "the rollback failed too ({e:#}): run `warden install` again to finish, \
                     or `warden uninstall` to remove what the state records"
                ),
            }
            .into(),
        }
    }

    pub(super) fn attempt(&mut self) -> &mut Attempt {
        self.state.attempt.get_or_insert_with(Attempt::new)
    }

    pub(super) fn save(&mut self) -> Result<()> {
        self.state.updated = warden_audit::now_rfc3339();
        self.store
            .save(&self.state)
            .context("cannot write the state file")
    }

    /// Creates `dir` (a host path) and records the directories made.
    fn create_dirs(&mut self, dir: &Path) -> Result<()> {
        let made = durable::create_dirs(dir)?;
        for host in made {
            let node = to_node(&self.node.root, &host);
            if !self.state.dirs_created.contains(&node) {
                self.state.dirs_created.push(node.clone());
            }
            self.attempt().dirs_created.push(node);
        }
        Ok(())
    }
}

/// Removes the temp files a killed run left in `dirs` (host paths); returns a line for each.
pub(super) fn sweep(root: &Path, dirs: &[PathBuf]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for dir in dirs {
        for temp in durable::remove_stale_temps_in(dir)? {
            lines.push(format!(
                "cleaned: removed {} (a temp file of a run that was killed)",
                to_node(root, &temp).display()
            ));
        }
    }
    Ok(lines)
}

/// The node path of a host path under `root`.
pub(super) fn to_node(root: &Path, host: &Path) -> PathBuf {
    match host.strip_prefix(root) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => host.to_path_buf(),
    }
}

/// A file's bytes; `None` when it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}
