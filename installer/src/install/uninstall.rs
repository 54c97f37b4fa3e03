//! `warden uninstall`: removes only what the state proves warden made, and puts back what
//! it changed byte for byte.
//!
//! For each config file warden wrote: while it still holds warden's bytes, the recorded
//! original is restored (or the file removed, if warden created it); if someone changed it
//! since, only the `warden` runtime is taken out of it, keeping their change. Then
//! containerd is restarted if a config changed, the shim is removed (or the file it
//! replaced put back), and the state is deleted. Each step is recorded before the next, so
//! a killed uninstall is finished by running it again.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::json;
use warden_audit::event;

use super::args::UninstallArgs;
use super::context::{self, Refusal};
use super::outcome::Outcome;
use crate::containerd_check;
use crate::containerd_config::source::host_path;
use crate::containerd_config::{ConfigError, ConfigFile, has_entry, remove_entry};
use crate::crash_hook;
use crate::digest;
use crate::install_audit::AuditLog;
use crate::paths;
use crate::restart::RestartMethod;
use crate::state::{FileRecord, Original, Phase, RestartRecord, State, StateStore};
use warden_common::Digest;
use warden_common::durable::{self, FileMode};
use warden_common::lock::HostLock;

/// `warden uninstall`.
pub fn uninstall(args: &UninstallArgs) -> Result<Outcome> {
    let node = &args.node;
    context::check_root(node)?;
    context::check_state_dir(node)?;
    let store = context::store(node);
    if store.read_raw().map_err(Refusal::from)?.is_none() {
        return Ok(nothing_recorded(args, &store));
    }
    let _lock = HostLock::exclusive(store.dir(), node.lock_timeout(), &mut context::tell_waiting)
        .map_err(Refusal::from)?;
    let Some(mut state) = store.load().map_err(Refusal::from)? else {
        return Ok(nothing_recorded(args, &store));
    };
    check_state(args, &store, &state)?;
    if state.phase != Phase::Uninstalling {
        // A pending restart of an install is about warden's config, which this run takes
        // back out: containerd is restarted below only if a file changes now.
        state.restart_pending = false;
    }
    let restart = RestartMethod::choose(
        node.restart_command.as_deref(),
        node.restart_via,
        node.daemon,
        &node.root,
    );
    let run = Removal {
        args,
        store,
        audit: context::audit_log(node),
        state,
        restart,
        lines: Vec::new(),
        restarted: false,
    };
    run.check_restart_possible()?;
    run.remove()
}

/// Before anything is touched: every path the state names is one this run manages (what
/// detection finds on the node, not what the state says), the unit it restarts is the
/// one detection finds, and every directory uninstall writes into is trusted.
fn check_state(args: &UninstallArgs, store: &StateStore, state: &State) -> Result<()> {
    let node = &args.node;
    let (layout, _, _) = context::detect_layout(node).map_err(|e| {
        anyhow::Error::new(Refusal::from(e)).context(
            "uninstall checks the state's paths against the containerd config it detects, \
             and detection failed (pass --config and --distribution as at install)",
        )
    })?;
    store
        .validate(state, &context::scope(node, &layout))
        .map_err(Refusal::from)?;
    if state.restart_unit.is_some() && state.restart_unit != layout.restart_unit {
        return Err(Refusal::from(crate::state::StateError::Outside {
            path: store.state_path(),
            field: "restart_unit".to_owned(),
            value: state.restart_unit.clone().unwrap_or_default(),
            reason: format!(
                "detection says containerd is restarted as {}",
                layout.restart_unit.as_deref().unwrap_or("nothing")
            ),
            scope: "the unit detection finds".to_owned(),
        })
        .into());
    }
    if state.binary.is_some() {
        warden_common::trusted_dir::check_dir(
            "install dir",
            &host_path(&node.root, &node.install_dir),
        )
        .map_err(Refusal::from)?;
    }
    for record in &state.files {
        context::check_config_dir(&node.root, &record.path)?;
    }
    context::check_audit_dir(node)?;
    Ok(())
}

/// No state: nothing is proven to be warden's, so nothing is touched.
fn nothing_recorded(args: &UninstallArgs, store: &StateStore) -> Outcome {
    let mut lines = vec![format!(
        "nothing to uninstall: no state in {} records anything warden made",
        store.dir().display()
    )];
    let node = &args.node;
    if let Ok((layout, _, _)) = context::detect_layout(node)
        && let Ok(file) = ConfigFile::read(&node.root, layout.target.path())
        && has_entry(&file).unwrap_or(false)
    {
        lines.push(format!(
            "note: {} registers a `warden` runtime that no state proves warden wrote: left \
             in place",
            layout.target.path().display()
        ));
    }
    Outcome {
        code: 0,
        json: json!({"ok": true, "result": "nothing-recorded", "actions": lines}),
        lines,
    }
}

struct Removal<'a> {
    args: &'a UninstallArgs,
    store: StateStore,
    audit: AuditLog,
    state: State,
    restart: RestartMethod,
    lines: Vec<String>,
    restarted: bool,
}

/// What restoring one file did.
enum Restored {
    /// The file was changed back.
    Changed(String),
    /// Nothing to do (already original, or gone).
    Unchanged(String),
}

impl Removal<'_> {
    fn root(&self) -> &Path {
        &self.args.node.root
    }

    /// Refuses before any change when a config file must change back but containerd
    /// cannot be restarted afterwards.
    fn check_restart_possible(&self) -> Result<(), Refusal> {
        let Some(unit) = &self.state.restart_unit else {
            return Ok(());
        };
        let RestartMethod::Unavailable { reason } = &self.restart else {
            return Ok(());
        };
        let must_change = self.state.restart_pending
            || self.state.files.iter().any(|f| {
                let host = paths::write_target(self.root(), &f.path);
                let current = digest::of_file(&host).ok().flatten();
                !f.original.is(current.as_deref()) && current.is_some()
            });
        if must_change {
            return Err(Refusal::NoRestart {
                unit: unit.clone(),
                reason: reason.clone(),
            });
        }
        Ok(())
    }

    fn remove(mut self) -> Result<Outcome> {
        let mut dirs = vec![
            self.store.dir().to_path_buf(),
            self.store.dir().join(crate::state::BACKUP_DIR),
        ];
        if let Some(binary) = &self.state.binary
            && let Some(dir) = binary.path.parent()
        {
            dirs.push(host_path(self.root(), dir));
        }
        for record in &self.state.files {
            let host = paths::write_target(self.root(), &record.path);
            if let Some(dir) = host.parent() {
                dirs.push(dir.to_path_buf());
            }
        }
        let cleaned = super::apply::sweep(self.root(), &dirs)?;
        self.lines.extend(cleaned);
        self.state.enter(Phase::Uninstalling);
        self.save()?;
        crash_hook::reached(crash_hook::UNINSTALLING);

        for record in self.state.files.clone().iter().rev() {
            match self.restore_file(record)? {
                Restored::Changed(line) => {
                    self.state.restart_pending = true;
                    self.lines.push(line);
                }
                Restored::Unchanged(line) => self.lines.push(line),
            }
            self.state.files.retain(|f| f.path != record.path);
            self.save()?;
        }
        crash_hook::reached(crash_hook::UNINSTALL_FILES_RESTORED);

        let mut problem = None;
        if self.state.restart_pending {
            self.restart_containerd()?;
            if !self.args.no_verify
                && let Some(socket) = self.state.containerd_socket.clone()
            {
                let socket = host_path(self.root(), &socket);
                match containerd_check::check_removed(&socket, self.args.node.verify_timeout()) {
                    Ok(report) => self.lines.push(format!(
                        "verify: {} answers without the `warden` handler",
                        report.runtime
                    )),
                    Err(e) => problem = Some(e.to_string()),
                }
            }
        } else {
            self.lines
                .push("restart: not needed (no config file changed)".to_owned());
        }
        crash_hook::reached(crash_hook::UNINSTALL_RESTARTED);

        self.remove_binary()?;
        for dir in self.state.dirs_created.clone().iter().rev() {
            if durable::remove_dir_if_empty(&host_path(self.root(), dir))? {
                self.lines
                    .push(format!("removed directory {}", dir.display()));
            }
        }
        self.store
            .remove()
            .context("cannot remove the state file")?;
        self.lines.push(format!(
            "uninstalled: removed {}",
            self.store.state_path().display()
        ));
        if let Some(problem) = problem {
            bail!(
                "warden's changes are undone ({}), but containerd did not come back: {problem}",
                self.lines.join("; ")
            );
        }
        Ok(Outcome {
            code: 0,
            json: json!({
                "ok": true,
                "result": "uninstalled",
                "restarted": self.restarted,
                "actions": self.lines,
            }),
            lines: self.lines,
        })
    }

    fn restore_file(&mut self, record: &FileRecord) -> Result<Restored> {
        let path = &record.path;
        let host = paths::write_target(self.root(), path);
        durable::remove_stale_temps(&host)?;
        let Some(bytes) = super::apply::read_optional(&host)? else {
            return Ok(Restored::Unchanged(format!(
                "{}: gone already, nothing to restore",
                path.display()
            )));
        };
        let current = Digest::of(&bytes).to_string();
        if record.original.is(Some(&current)) {
            return Ok(Restored::Unchanged(format!(
                "{}: already holds its original bytes",
                path.display()
            )));
        }
        let mode = FileMode::of(&host)?.unwrap_or(FileMode::new(0o644));
        let (after, line) = match (&record.original, current == record.digest_after) {
            (Original::Absent, true) => {
                durable::remove_durable(&host)?;
                (
                    None,
                    format!("removed {} (warden created it)", path.display()),
                )
            }
            (Original::Saved { digest, backup, .. }, true) => {
                let original = self.store.read_backup(digest, backup)?;
                let mode = record.original.restore_mode(Some(mode), 0o644);
                durable::write_atomic(&host, &original, mode, &|| {})?;
                (
                    Some(digest.clone()),
                    format!("restored {} byte for byte", path.display()),
                )
            }
            (original, _) => {
                let text = String::from_utf8(bytes).map_err(|_| ConfigError::Binary {
                    path: path.clone(),
                    reason: "not UTF-8".to_owned(),
                })?;
                let edited = remove_entry(path, &text)?;
                if edited == text {
                    return Ok(Restored::Unchanged(format!(
                        "{}: holds no `warden` runtime any more, left as it is",
                        path.display()
                    )));
                }
                if *original == Original::Absent && is_hollow(path, &edited)? {
                    durable::remove_durable(&host)?;
                    (
                        None,
                        format!(
                            "removed {} (warden created it; it held nothing else)",
                            path.display()
                        ),
                    )
                } else {
                    durable::write_atomic(&host, edited.as_bytes(), mode, &|| {})?;
                    (
                        Some(Digest::of(edited.as_bytes()).to_string()),
                        format!(
                            "removed the `warden` runtime from {} (changed by someone else since \
                             warden wrote it: the rest is kept)",
                            path.display()
                        ),
                    )
                }
            }
        };
        self.audit
            .file_change(
                event::UNINSTALL,
                path,
                Some(&current),
                after.as_deref(),
                "uninstall",
            )
            .context("cannot write the audit log")?;
        Ok(Restored::Changed(line))
    }

    fn restart_containerd(&mut self) -> Result<()> {
        let Some(unit) = self.state.restart_unit.clone() else {
            self.lines.push(format!(
                "restart: none ({} reloads containerd itself)",
                self.state.distribution
            ));
            self.state.restart_pending = false;
            return self.save();
        };
        let done = self.restart.restart(&unit, &self.state.config)?;
        self.restarted = true;
        self.audit
            .restart(&done, "uninstall changed containerd's config")
            .context("cannot write the audit log")?;
        self.state.last_restart = Some(RestartRecord {
            unit: Some(unit),
            method: done.clone(),
            at: warden_audit::now_rfc3339(),
        });
        self.state.restart_pending = false;
        self.lines.push(format!("restart: {done}"));
        self.save()
    }

    fn remove_binary(&mut self) -> Result<()> {
        let Some(record) = self.state.binary.clone() else {
            return Ok(());
        };
        let host = host_path(self.root(), &record.path);
        durable::remove_stale_temps(&host)?;
        let current =
            digest::of_file(&host).with_context(|| format!("cannot read {}", host.display()))?;
        let path = record.path.display();
        let line = if record.original.is(current.as_deref()) {
            None
        } else if current.as_deref() != Some(record.digest.as_str()) {
            self.lines.push(format!(
                "left {path}: changed by someone else since warden installed it"
            ));
            None
        } else {
            match &record.original {
                Original::Absent => {
                    durable::remove_durable(&host)?;
                    Some((None, format!("removed {path}")))
                }
                Original::Saved { digest, backup, .. } => {
                    let bytes = self.store.read_backup(digest, backup)?;
                    let mode = record.original.restore_mode(FileMode::of(&host)?, 0o755);
                    durable::write_atomic(&host, &bytes, mode, &|| {})?;
                    Some((
                        Some(digest.clone()),
                        format!("restored {path} (the file the shim had replaced)"),
                    ))
                }
                Original::Unknown => {
                    self.lines
                        .push(format!("left {path}: warden did not put it there"));
                    None
                }
            }
        };
        if let Some((after, line)) = line {
            self.audit
                .file_change(
                    event::UNINSTALL,
                    &record.path,
                    current.as_deref(),
                    after.as_deref(),
                    "uninstall",
                )
                .context("cannot write the audit log")?;
            self.lines.push(line);
        }
        self.state.binary = None;
        self.save()
    }

    fn save(&mut self) -> Result<()> {
        self.state.updated = warden_audit::now_rfc3339();
        self.store
            .save(&self.state)
            .context("cannot write the state file")
    }
}

/// Whether a drop-in holds nothing but its `version` and comments.
fn is_hollow(path: &Path, text: &str) -> Result<bool, ConfigError> {
    let file = match ConfigFile::parse(path, text.as_bytes()) {
        Ok(file) => file,
        Err(ConfigError::Empty { .. }) => return Ok(true),
        Err(e) => return Err(e),
    };
    fn hollow(table: &dyn toml_edit::TableLike, top: bool) -> bool {
        table.iter().all(|(key, item)| {
            (top && key == "version") || item.as_table_like().is_some_and(|t| hollow(t, false))
        })
    }
    Ok(hollow(file.doc.as_table(), true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hollow_drop_ins() {
        let p = Path::new("/etc/containerd/conf.d/warden.toml");
        assert!(is_hollow(p, "# managed\nversion = 3\n").unwrap());
        assert!(is_hollow(p, "version = 3\n[plugins.'x'.containerd.runtimes]\n").unwrap());
        assert!(!is_hollow(p, "version = 3\n[plugins.'x']\nsnapshotter = 'native'\n").unwrap());
    }
}
