//! Putting back what an install attempt wrote, when it cannot finish (a full disk, a failed
//! write or restart) or containerd does not accept the result.
//!
//! Each path the attempt wrote is restored to what it held when the attempt started (its
//! backup, or removed if the attempt created it), but only while it still holds what
//! warden wrote: a file someone changed since is left alone and reported. containerd is
//! restarted again if it may have loaded the attempt's config. The state then says
//! `rolled-back` with the reason, or is removed when the run started from nothing and
//! nothing is left, so a refused first install leaves no trace.

use anyhow::{Context, Result};
use warden_audit::event;

use super::apply::Run;
use crate::containerd_check;
use crate::digest;
use crate::paths;
use crate::state::{AttemptEntry, Original, Phase};
use warden_common::durable::{self, FileMode};

impl Run<'_> {
    /// Undoes the current attempt because of `reason`; returns what was done, in words.
    pub(super) fn rollback(&mut self, reason: &str) -> Result<Vec<String>> {
        let Some(attempt) = self.state.attempt.clone() else {
            return Ok(Vec::new());
        };
        self.state.last_error = Some(reason.to_owned());
        let mut done = Vec::new();
        let mut config_restored = false;
        for entry in attempt.entries.iter().rev() {
            if let Some(line) = self.restore(entry, reason)? {
                config_restored |= !entry.binary;
                done.push(line);
            }
        }
        for dir in attempt.dirs_created.iter().rev() {
            if durable::remove_dir_if_empty(&self.node.host(dir))? {
                self.state.dirs_created.retain(|d| d != dir);
            }
        }
        if config_restored && attempt.restart_started {
            done.push(self.restart_again(reason));
        }
        self.state.attempt = None;
        self.state.restart_pending = false;
        self.state.enter(Phase::RolledBack);
        if self.state.is_empty() && self.prior_raw.is_none() {
            self.store
                .remove()
                .context("cannot remove the state file")?;
        } else {
            self.save()?;
            self.store.prune_backups(Some(&self.state))?;
        }
        Ok(done)
    }

    /// Puts one path back; `None` when there was nothing to undo.
    fn restore(&mut self, entry: &AttemptEntry, reason: &str) -> Result<Option<String>> {
        let host = if entry.binary {
            self.node.host(&entry.path)
        } else {
            paths::write_target(&self.node.root, &entry.path)
        };
        durable::remove_stale_temps(&host)?;
        let current =
            digest::of_file(&host).with_context(|| format!("cannot read {}", host.display()))?;
        if entry.before.is(current.as_deref()) {
            self.forget(entry);
            return Ok(None);
        }
        if current.as_deref() != Some(entry.after.as_str()) {
            return Ok(Some(format!(
                "left {}: changed by someone else since warden wrote it",
                entry.path.display()
            )));
        }
        match &entry.before {
            Original::Absent => {
                durable::remove_durable(&host)?;
            }
            Original::Saved { digest, backup, .. } => {
                let bytes = self.store.read_backup(digest, backup)?;
                let mode = entry.before.restore_mode(FileMode::of(&host)?, 0o644);
                durable::write_atomic(&host, &bytes, mode, &|| {})?;
            }
            Original::Unknown => return Ok(None),
        }
        let what = if entry.binary {
            event::INSTALL
        } else {
            event::CONFIG_WRITE
        };
        self.audit
            .file_change(
                what,
                &entry.path,
                current.as_deref(),
                entry.before.digest(),
                &format!("rollback: {reason}"),
            )
            .context("cannot write the audit log")?;
        self.forget(entry);
        Ok(Some(match entry.before {
            Original::Absent => format!("removed {}", entry.path.display()),
            _ => format!("restored {}", entry.path.display()),
        }))
    }

    /// Updates the records once `entry`'s path holds its `before` again: a record the
    /// attempt created goes; an older one is back to what the earlier install wrote.
    fn forget(&mut self, entry: &AttemptEntry) {
        if entry.binary {
            if let Some(record) = &mut self.state.binary
                && record.path == entry.path
            {
                match entry.before.digest() {
                    _ if record.original == entry.before => self.state.binary = None,
                    Some(d) => record.digest = d.to_owned(),
                    None => self.state.binary = None,
                }
            }
            return;
        }
        if let Some(index) = self.state.files.iter().position(|f| f.path == entry.path) {
            let record = &mut self.state.files[index];
            match entry.before.digest() {
                _ if record.original == entry.before => {
                    self.state.files.remove(index);
                }
                Some(d) => record.digest_after = d.to_owned(),
                None => {
                    self.state.files.remove(index);
                }
            }
        }
    }

    /// Restarts containerd on the restored config and checks it answers.
    fn restart_again(&mut self, reason: &str) -> String {
        let Some(unit) = self
            .node
            .plan
            .restart
            .clone()
            .or_else(|| self.node.layout.restart_unit.clone())
        else {
            return "containerd reloads the restored config itself".to_owned();
        };
        let config = self.node.layout.config_path.clone();
        let done = match self.node.restart.restart(&unit, &config) {
            Ok(done) => done,
            Err(e) => return format!("restarting containerd on the restored config failed: {e}"),
        };
        let _ = self.audit.restart(&done, &format!("rollback: {reason}"));
        if self.args.no_verify {
            return format!("restarted {done}");
        }
        let socket = self.node.host(&self.node.socket);
        match containerd_check::answers(&socket, self.args.node.verify_timeout()) {
            Ok(runtime) => format!("restarted {done}; {runtime} answers"),
            Err(e) => format!("restarted {done}, but {e}"),
        }
    }
}
