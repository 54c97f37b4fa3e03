//! The names users see: the annotation pods set, the runtime containerd is told about, and
//! the node paths warden uses unless told otherwise. Each is declared here once; the
//! README's tables document them.

/// The prefix of every annotation warden reads.
pub const ANNOTATION_PREFIX: &str = "warden.dev/";

/// The pod annotation that asks for a policy profile.
pub const PROFILE_ANNOTATION: &str = "warden.dev/profile";

/// The annotation that asks for a module to be served over HTTP as WAGI
/// (`warden.dev/http=wagi`).
pub const HTTP_ANNOTATION: &str = "warden.dev/http";

/// The container env var naming an HTTP service's listen address (`IP:PORT`, or `:PORT`).
pub const HTTP_ADDR_ENV: &str = "WARDEN_HTTP_ADDR";

/// Upstream runwasi's name for [`HTTP_ADDR_ENV`], accepted so that their images run as they
/// are; [`HTTP_ADDR_ENV`] wins when both are set.
pub const UPSTREAM_HTTP_ADDR_ENV: &str = "WASMTIME_HTTP_PROXY_SOCKET_ADDR";

/// Where an HTTP service listens when the container names no address.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";

/// The `pod_annotations` pattern the installer gives containerd's runtime entry, so that
/// the annotations under [`ANNOTATION_PREFIX`] (and only those) reach the shim.
pub const POD_ANNOTATIONS: &str = "warden.dev/*";

/// The shim's runtime type; containerd maps it to [`SHIM_BINARY`].
pub const RUNTIME_TYPE: &str = "io.containerd.warden.v1";

/// The shim's binary name.
pub const SHIM_BINARY: &str = "containerd-shim-warden-v1";

/// The node policy (`WARDEN_POLICY`, `warden ... --policy`).
pub const DEFAULT_POLICY_PATH: &str = "/etc/warden/policy.toml";

/// The audit log (`WARDEN_AUDIT_LOG`, `warden ... --audit-log`).
pub const DEFAULT_AUDIT_LOG: &str = "/var/log/warden/audit.jsonl";

/// The shim's compile cache (`WARDEN_CACHE_DIR`).
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/warden/cache";

/// Where the installer puts the shim (`warden install --install-dir`).
pub const DEFAULT_INSTALL_DIR: &str = "/opt/warden/bin";

/// The installer's state, backups and host lock (`warden install --state-dir`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/warden";

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn names_fit_together() {
        assert!(PROFILE_ANNOTATION.starts_with(ANNOTATION_PREFIX));
        assert_eq!(POD_ANNOTATIONS, format!("{ANNOTATION_PREFIX}*"));
        // containerd derives the binary from the runtime type:
        // io.containerd.<name>.<version> -> containerd-shim-<name>-<version>.
        let parts: Vec<_> = RUNTIME_TYPE.split('.').collect();
        assert_eq!(
            SHIM_BINARY,
            format!("containerd-shim-{}-{}", parts[2], parts[3])
        );
        for path in [
            DEFAULT_POLICY_PATH,
            DEFAULT_AUDIT_LOG,
            DEFAULT_CACHE_DIR,
            DEFAULT_INSTALL_DIR,
            DEFAULT_STATE_DIR,
        ] {
            assert!(Path::new(path).is_absolute(), "{path}");
        }
        assert!(Path::new(DEFAULT_CACHE_DIR).starts_with(DEFAULT_STATE_DIR));
    }

    #[test]
    fn design_md_names_what_is_declared_here() {
        let design = include_str!("../../DESIGN.md");
        for name in [
            PROFILE_ANNOTATION,
            HTTP_ANNOTATION,
            HTTP_ADDR_ENV,
            UPSTREAM_HTTP_ADDR_ENV,
            DEFAULT_HTTP_ADDR,
            RUNTIME_TYPE,
            SHIM_BINARY,
            DEFAULT_POLICY_PATH,
            DEFAULT_AUDIT_LOG,
            DEFAULT_CACHE_DIR,
            DEFAULT_INSTALL_DIR,
            DEFAULT_STATE_DIR,
        ] {
            assert!(
                design.contains(&format!("`{name}")),
                "DESIGN.md does not name {name}"
            );
        }
        assert!(design.contains(&format!("pod_annotations = [\"{POD_ANNOTATIONS}\"]")));
    }
}
