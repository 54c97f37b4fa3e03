//! Where the shim finds its policy, audit log and compile cache.
//!
//! Defaults are the node paths in the README's table; `WARDEN_POLICY`, `WARDEN_AUDIT_LOG` and
//! `WARDEN_CACHE_DIR` in containerd's environment (which its shims inherit) override them, so a
//! private containerd (tests, the demo) never touches the host's files.

use std::path::PathBuf;

use warden_common::names::{DEFAULT_AUDIT_LOG, DEFAULT_CACHE_DIR, DEFAULT_POLICY_PATH};
/// Default bound on the compile cache: 1 GiB of artifacts, oldest evicted first.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 1 << 30;

#[derive(Clone, Debug)]
pub struct Settings {
    pub policy: PathBuf,
    pub audit_log: PathBuf,
    pub cache_dir: PathBuf,
    pub cache_max_bytes: u64,
    /// Largest module the shim reads and compiles (`WARDEN_MAX_MODULE_BYTES`).
    pub max_module_bytes: u64,
    /// The containerd namespace whose containers come from CRI (see [`crate::facts`]).
    pub cri_namespace: String,
}

impl Settings {
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            policy: get("WARDEN_POLICY")
                .unwrap_or(DEFAULT_POLICY_PATH.into())
                .into(),
            audit_log: get("WARDEN_AUDIT_LOG")
                .unwrap_or(DEFAULT_AUDIT_LOG.into())
                .into(),
            cache_dir: get("WARDEN_CACHE_DIR")
                .unwrap_or(DEFAULT_CACHE_DIR.into())
                .into(),
            cache_max_bytes: get("WARDEN_CACHE_MAX_BYTES")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_CACHE_MAX_BYTES),
            max_module_bytes: get("WARDEN_MAX_MODULE_BYTES")
                .and_then(|v| v.parse().ok())
                .unwrap_or(crate::entrypoint::DEFAULT_MAX_MODULE_BYTES),
            cri_namespace: get("WARDEN_CRI_NAMESPACE")
                .unwrap_or(crate::facts::DEFAULT_CRI_NAMESPACE.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_node_paths() {
        let s = Settings::from_lookup(|_| None);
        assert_eq!(s.policy, PathBuf::from(DEFAULT_POLICY_PATH));
        assert_eq!(s.audit_log, PathBuf::from(DEFAULT_AUDIT_LOG));
        assert_eq!(s.cache_dir, PathBuf::from(DEFAULT_CACHE_DIR));
        assert_eq!(s.cache_max_bytes, DEFAULT_CACHE_MAX_BYTES);
    }

    #[test]
    fn env_overrides_each_path() {
        let s = Settings::from_lookup(|k| match k {
            "WARDEN_POLICY" => Some("/t/p.toml".into()),
            "WARDEN_AUDIT_LOG" => Some("/t/a.jsonl".into()),
            "WARDEN_CACHE_DIR" => Some("/t/c".into()),
            "WARDEN_CACHE_MAX_BYTES" => Some("1000".into()),
            _ => None,
        });
        assert_eq!(s.policy, PathBuf::from("/t/p.toml"));
        assert_eq!(s.audit_log, PathBuf::from("/t/a.jsonl"));
        assert_eq!(s.cache_dir, PathBuf::from("/t/c"));
        assert_eq!(s.cache_max_bytes, 1000);
    }
}
