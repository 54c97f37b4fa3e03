//! The installer's records in the audit log: the same hash-chained file, lock and format
//! as the shim's (`warden_audit::append`), with `writer = "installer"`.
//!
//! | event | when | fields |
//! |---|---|---|
//! | `install` | the shim binary was written (or removed by a rollback) | `file`, `digest_before`, `digest_after`, `reason` |
//! | `config-write` | a containerd config file was written or restored | `file`, `digest_before`, `digest_after`, `reason` |
//! | `restart` | containerd was restarted | `restart`, `reason` |
//! | `verify` | containerd was checked after a restart | `decision` (`pass`, `fail`), `reason` |
//! | `uninstall` | a file warden made was removed or restored | `file`, `digest_before`, `digest_after`, `reason` |
//! | `policy-write` | the node policy was written from `--policy-source` | `file`, `digest_before`, `digest_after`, `reason` |
//! | `repair` | `install --daemon` found drift and repaired it (or could not) | `decision` (`pass`, `fail`), `reason` (the drift, and the error) |
//! | `label` | the node's `warden.dev/ready` label was set or removed | `decision` (`set`, `remove`), `reason` |

use std::path::{Path, PathBuf};

use warden_audit::{AuditError, Record, append, event, writer};

/// `decision` of a verification that passed.
pub const PASS: &str = "pass";
/// `decision` of a verification that failed.
pub const FAIL: &str = "fail";

/// The audit log, as a path on the installer's file system.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub fn new(path: impl Into<PathBuf>) -> AuditLog {
        AuditLog { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A change to `file` (a node path): `event` is `install`, `config-write` or
    /// `uninstall`; a `None` digest means the file did not (or no longer does) exist.
    pub fn file_change(
        &self,
        event: &str,
        file: &Path,
        before: Option<&str>,
        after: Option<&str>,
        reason: &str,
    ) -> Result<(), AuditError> {
        let mut record = Record::new(writer::INSTALLER, event);
        record.file = Some(file.display().to_string());
        record.digest_before = before.map(str::to_owned);
        record.digest_after = after.map(str::to_owned);
        record.reason = Some(reason.to_owned());
        append(&self.path, &mut record)
    }

    /// containerd was restarted (`done` says what and how).
    pub fn restart(&self, done: &str, reason: &str) -> Result<(), AuditError> {
        let mut record = Record::new(writer::INSTALLER, event::RESTART);
        record.restart = Some(done.to_owned());
        record.reason = Some(reason.to_owned());
        append(&self.path, &mut record)
    }

    /// Drift found by `install --daemon`, and whether it was repaired (`decision` is
    /// [`PASS`] or [`FAIL`]).
    pub fn repair(&self, decision: &str, reason: &str) -> Result<(), AuditError> {
        let mut record = Record::new(writer::INSTALLER, event::REPAIR);
        record.decision = Some(decision.to_owned());
        record.reason = Some(reason.to_owned());
        append(&self.path, &mut record)
    }

    /// The node's `warden.dev/ready` label was set (`decision` `set`) or removed (`remove`).
    pub fn label(&self, decision: &str, reason: &str) -> Result<(), AuditError> {
        let mut record = Record::new(writer::INSTALLER, event::LABEL);
        record.decision = Some(decision.to_owned());
        record.reason = Some(reason.to_owned());
        append(&self.path, &mut record)
    }

    /// The result of a verification against containerd.
    pub fn verify(&self, decision: &str, reason: &str) -> Result<(), AuditError> {
        let mut record = Record::new(writer::INSTALLER, event::VERIFY);
        record.decision = Some(decision.to_owned());
        record.reason = Some(reason.to_owned());
        append(&self.path, &mut record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_chain_with_installer_fields() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("log/audit.jsonl"));
        log.file_change(
            event::CONFIG_WRITE,
            Path::new("/etc/containerd/config.toml"),
            Some("sha256:aa"),
            Some("sha256:bb"),
            "adds the warden runtime",
        )
        .unwrap();
        log.restart("containerd.service via `sh -c x`", "config changed")
            .unwrap();
        log.verify(PASS, "handler known").unwrap();
        let summary = warden_audit::verify_file(log.path(), None).unwrap();
        assert_eq!(summary.records, 4, "anchor + 3");
        let text = std::fs::read_to_string(log.path()).unwrap();
        let second: Record = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second.writer, "installer");
        assert_eq!(second.event, "config-write");
        assert_eq!(second.digest_before.as_deref(), Some("sha256:aa"));
    }
}
