//! `install --policy-source`: the node policy as the cluster wants it (the DaemonSet's
//! ConfigMap, which the kubelet updates in place), written to `--policy` where the shim
//! reads it.
//!
//! The source must load with warden's own parser, or it is refused and the node keeps the
//! policy it has (a policy that does not load would make the shim refuse every workload).
//! It is written only when its bytes differ from the node's, atomically and durably (temp
//! file, fsync, rename, from `warden-common`), into a directory only root may write, and
//! audited (`policy-write`) with the digests before and after.

use std::path::{Path, PathBuf};

use warden_audit::event;
use warden_common::Digest;
use warden_common::durable::{self, FileMode};
use warden_common::input_file::{InputError, Links, POLICY_CAP, read_capped};
use warden_common::trusted_dir::{self, TrustError};
use warden_policy::{Policy, PolicyError};

use crate::install_audit::AuditLog;

/// Mode of a policy file warden creates.
const POLICY_MODE: u32 = 0o644;

/// Why the policy was not written. Callers branch on [`PolicySourceError::Invalid`]: the
/// source is wrong and the node keeps its policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicySourceError {
    #[error("policy source {}: missing", path.display())]
    Missing { path: PathBuf },
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("the policy source does not load, so the node keeps its policy: {source}")]
    Invalid {
        #[source]
        source: PolicyError,
    },
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error("cannot write the node policy {}: {detail}", path.display())]
    Write { path: PathBuf, detail: String },
    #[error("cannot write the audit log: {0}")]
    Audit(String),
}

/// The source, read and checked to load.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub digest: String,
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyWrite {
    /// The node's policy already has the source's bytes.
    Unchanged { digest: String },
    /// Written: digests before (`None`: there was none) and after.
    Written {
        before: Option<String>,
        after: String,
    },
}

impl PolicyWrite {
    /// One line for the report.
    pub fn describe(&self, node_path: &Path) -> String {
        match self {
            PolicyWrite::Unchanged { digest } => format!(
                "policy: {} is already the source's ({})",
                node_path.display(),
                warden_common::digest::short(digest)
            ),
            PolicyWrite::Written { before, after } => format!(
                "policy: wrote {} ({} -> {})",
                node_path.display(),
                before
                    .as_deref()
                    .map_or("absent", warden_common::digest::short),
                warden_common::digest::short(after)
            ),
        }
    }
}

/// Reads the source at `path` (on this machine; a ConfigMap's file is a symlink, followed)
/// and checks that it loads.
pub fn read(path: &Path) -> Result<Source, PolicySourceError> {
    let Some(bytes) = read_capped("policy source", path, POLICY_CAP, Links::Follow)? else {
        return Err(PolicySourceError::Missing {
            path: path.to_path_buf(),
        });
    };
    let file = path.display().to_string();
    let text = std::str::from_utf8(&bytes).map_err(|_| PolicySourceError::Invalid {
        source: PolicyError::Read {
            file: file.clone(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
        },
    })?;
    Policy::parse(text, file).map_err(|source| PolicySourceError::Invalid { source })?;
    let digest = Digest::of(&bytes).to_string();
    Ok(Source {
        path: path.to_path_buf(),
        bytes,
        digest,
    })
}

/// The digest of the node's policy at `host` (a path on this machine), `None` when absent.
pub fn current_digest(host: &Path) -> Result<Option<String>, PolicySourceError> {
    Ok(read_capped("policy", host, POLICY_CAP, Links::Follow)?
        .map(|bytes| Digest::of(&bytes).to_string()))
}

/// Whether the node's policy at `host` differs from the source at `source` (both read
/// again): the daemon's drift check. A source that does not load counts as no drift (it is
/// never written), and is reported by [`apply`].
pub fn differs(source: &Path, host: &Path) -> Result<bool, PolicySourceError> {
    let source = match read(source) {
        Ok(source) => source,
        Err(PolicySourceError::Invalid { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(current_digest(host)?.as_deref() != Some(source.digest.as_str()))
}

/// Writes `source` to the node policy at `host` (node path `node_path`, for the audit log)
/// when it differs, and audits the change.
pub fn apply(
    source: &Source,
    host: &Path,
    node_path: &Path,
    audit: &AuditLog,
) -> Result<PolicyWrite, PolicySourceError> {
    let before = current_digest(host)?;
    if before.as_deref() == Some(source.digest.as_str()) {
        return Ok(PolicyWrite::Unchanged {
            digest: source.digest.clone(),
        });
    }
    let dir = host.parent().unwrap_or(Path::new("/"));
    trusted_dir::check_dir("policy dir", dir)?;
    let write_error = |detail: String| PolicySourceError::Write {
        path: node_path.to_path_buf(),
        detail,
    };
    durable::create_dirs(dir).map_err(|e| write_error(e.to_string()))?;
    durable::remove_stale_temps(host).map_err(|e| write_error(e.to_string()))?;
    let mode = FileMode::of(host)
        .map_err(|e| write_error(e.to_string()))?
        .unwrap_or(FileMode::new(POLICY_MODE));
    durable::write_atomic(host, &source.bytes, mode, &|| {})
        .map_err(|e| write_error(e.to_string()))?;
    audit
        .file_change(
            event::POLICY_WRITE,
            node_path,
            before.as_deref(),
            Some(&source.digest),
            &format!("the node policy from {}", source.path.display()),
        )
        .map_err(|e| PolicySourceError::Audit(e.to_string()))?;
    Ok(PolicyWrite::Written {
        before,
        after: source.digest.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "version = 1\n[profiles.reader]\nnamespaces = [\"*\"]\n";

    #[test]
    fn written_once_audited_with_both_digests() {
        let dir = tempfile::tempdir().unwrap();
        let source_path = dir.path().join("source.toml");
        std::fs::write(&source_path, GOOD).unwrap();
        let host = dir.path().join("etc/warden/policy.toml");
        let audit = AuditLog::new(dir.path().join("audit.jsonl"));
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(&host, "version = 1\n").unwrap();
        let old = Digest::of(b"version = 1\n").to_string();

        assert!(differs(&source_path, &host).unwrap());
        let source = read(&source_path).unwrap();
        let node = Path::new("/etc/warden/policy.toml");
        let done = apply(&source, &host, node, &audit).unwrap();
        assert_eq!(
            done,
            PolicyWrite::Written {
                before: Some(old.clone()),
                after: source.digest.clone()
            }
        );
        assert_eq!(std::fs::read_to_string(&host).unwrap(), GOOD);
        assert!(!differs(&source_path, &host).unwrap());
        // Unchanged: no second record.
        assert!(matches!(
            apply(&source, &host, node, &audit).unwrap(),
            PolicyWrite::Unchanged { .. }
        ));
        let text = std::fs::read_to_string(audit.path()).unwrap();
        let records: Vec<warden_audit::Record> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let writes: Vec<_> = records
            .iter()
            .filter(|r| r.event == event::POLICY_WRITE)
            .collect();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].digest_before.as_deref(), Some(old.as_str()));
        assert_eq!(
            writes[0].digest_after.as_deref(),
            Some(source.digest.as_str())
        );
        assert_eq!(writes[0].file.as_deref(), Some("/etc/warden/policy.toml"));
    }

    #[test]
    fn a_source_that_does_not_load_is_refused_and_is_no_drift() {
        let dir = tempfile::tempdir().unwrap();
        let source_path = dir.path().join("source.toml");
        std::fs::write(&source_path, "version = 1\n[profiles.x]\nbogus = 1\n").unwrap();
        let err = read(&source_path).unwrap_err();
        assert!(matches!(err, PolicySourceError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("bogus"), "{err}");
        let host = dir.path().join("policy.toml");
        assert!(!differs(&source_path, &host).unwrap());
        assert!(matches!(
            read(&dir.path().join("none.toml")).unwrap_err(),
            PolicySourceError::Missing { .. }
        ));
    }
}
