//! The flags of `install`, `uninstall`, `plan` and `verify`: the same on every one.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use warden_common::names::{
    DEFAULT_AUDIT_LOG, DEFAULT_INSTALL_DIR, DEFAULT_POLICY_PATH, DEFAULT_STATE_DIR,
};

use crate::containerd_config::{ContainerdVersion, Distribution};
use crate::restart::RestartVia;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines for people.
    Text,
    /// One JSON document on stdout, also for errors.
    Json,
}

/// What every node command takes. Paths marked "on the node" are read and written under
/// --root.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// containerd's config file on the node. Default: detected (/etc/containerd/config.toml,
    /// k3s/rke2's rendered config, /etc/k0s/containerd.toml, microk8s's template). It and
    /// its drop-ins must be regular files of at most 4 MiB; a symlink is followed and
    /// reported.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where the shim is installed, on the node; written into containerd's config as
    /// runtime_path, so it must be absolute. Like every dir warden writes into, it must be
    /// root-owned and not writable by group or others (its parents: not by others).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_INSTALL_DIR)]
    pub install_dir: PathBuf,

    /// Where warden keeps its state (install.json, at most 1 MiB), backups and host lock, on
    /// the node. Root-owned, not writable by group or others.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// The audit log every change is written to (the shim's log), on the node.
    #[arg(long, value_name = "FILE", env = "WARDEN_AUDIT_LOG", default_value = DEFAULT_AUDIT_LOG)]
    pub audit_log: PathBuf,

    /// The node policy, on the node: checked before installing (a policy that does not
    /// load makes the shim refuse every workload). A regular file of at most 4 MiB.
    #[arg(long, value_name = "FILE", env = "WARDEN_POLICY", default_value = DEFAULT_POLICY_PATH)]
    pub policy: PathBuf,

    /// Restart containerd by running CMD with `sh -c` (with WARDEN_RESTART_UNIT and
    /// WARDEN_CONTAINERD_CONFIG set), on hosts without systemd. Default, when systemd runs
    /// the node: `systemctl restart` of the distribution's unit (containerd, k3s or
    /// k3s-agent, rke2-server or rke2-agent, microk8s's; none for k0s).
    #[arg(long, value_name = "CMD")]
    pub restart_command: Option<String>,

    /// How systemd is asked to restart containerd when --restart-command is not given:
    /// `dbus` (systemd's D-Bus API: RestartUnit, then the job's JobRemoved signal, over the
    /// socket DBUS_SYSTEM_BUS_ADDRESS names, default the system bus; systemd's private
    /// socket /run/systemd/private is connected to peer to peer), `systemctl`, or `auto`:
    /// D-Bus with `install --daemon`, else `systemctl`.
    #[arg(long, value_name = "HOW", value_enum, default_value_t = RestartVia::Auto)]
    pub restart_via: RestartVia,

    /// The distribution (containerd, k3s, rke2, k0s, microk8s, kind, eks). Default:
    /// detected; when given and the files say otherwise, warden refuses.
    #[arg(long, value_name = "NAME", value_parser = parse_distribution)]
    pub distribution: Option<Distribution>,

    /// The shim to install. Default: containerd-shim-warden-v1 beside the warden binary.
    #[arg(long, value_name = "PATH")]
    pub shim: Option<PathBuf>,

    /// The shim's expected digest. Default: read from <shim>.sha256 (sha256sum format, a
    /// regular file of at most 4 KiB), which the build writes beside the shim.
    #[arg(long, value_name = "sha256:HEX", value_parser = parse_digest)]
    pub shim_digest: Option<String>,

    /// containerd's version (`2`, `2.1.4`, or `containerd --version` output). Default:
    /// `containerd --version` when containerd is on PATH and --root is /.
    #[arg(long, value_name = "VERSION", value_parser = parse_containerd_version)]
    pub containerd_version: Option<u32>,

    /// containerd's socket (CRI is served on it), on the node. Default: the config's
    /// grpc address, else the distribution's socket.
    #[arg(long, value_name = "SOCKET")]
    pub containerd_socket: Option<PathBuf>,

    /// The node's / (a test tree, or the host's / mounted into a container).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// How long to wait for containerd to answer and know the handler after a restart.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub verify_timeout: u64,

    /// How long to wait for another warden run holding the host lock.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub lock_timeout: u64,

    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    pub output: Format,

    /// Set by `install --daemon`: prefer systemd's D-Bus API for restarts.
    #[arg(skip)]
    pub daemon: bool,

    /// The policy file (a path on this machine) to check instead of --policy: set by
    /// `install --policy-source` when the source loads, since it replaces --policy.
    #[arg(skip)]
    pub policy_check: Option<PathBuf>,
}

impl NodeArgs {
    pub fn verify_timeout(&self) -> Duration {
        Duration::from_secs(self.verify_timeout)
    }

    pub fn lock_timeout(&self) -> Duration {
        Duration::from_secs(self.lock_timeout)
    }
}

/// Where the node's Kubernetes object is: for the `warden.dev/ready` label and, in daemon
/// mode, containerd's version from the Node's status.
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// The Kubernetes node this runs on (the DaemonSet sets NODE_NAME from the downward
    /// API). With it, `install --daemon` labels the node warden.dev/ready=true after a
    /// successful verification and `uninstall` removes the label first; without it, no
    /// label is touched (`install --daemon` requires it).
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// A kubeconfig to reach the API server with, instead of the pod's in-cluster config
    /// (its service account token and CA, KUBERNETES_SERVICE_HOST/PORT): for running outside
    /// a pod, and the tests. One file (not a list, as kubectl's KUBECONFIG may be).
    #[arg(long, value_name = "FILE", env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// `warden install`.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Do not check containerd over CRI after the change (offline trees and tests only: the
    /// state then says the verification was skipped).
    #[arg(long)]
    pub no_verify: bool,

    /// Stay running, as the DaemonSet runs it: install (as without --daemon), write the
    /// policy from --policy-source, label the node warden.dev/ready=true once verified,
    /// then every --recheck-interval check for drift (the shim removed or modified, the
    /// config without the `warden` runtime, a changed policy source) and repair it, each
    /// repair audited; a re-check that fails and cannot be repaired removes the label.
    /// containerd is restarted through systemd's D-Bus API (see --restart-via).
    /// containerd's version, unless --containerd-version, comes from the Node's
    /// status.nodeInfo.containerRuntimeVersion.
    ///
    /// SIGTERM or SIGINT ends it with status 0 WITHOUT uninstalling and WITHOUT removing
    /// the label: a rolling update or a node drain must not take the runtime away from the
    /// pods running on the node (a signal that arrives during an install or a repair takes
    /// effect when it is done). To take warden off the node, set WARDEN_UNINSTALL=true.
    #[arg(long, requires = "node_name")]
    pub daemon: bool,

    /// Uninstall mode of --daemon (env WARDEN_UNINSTALL=true in the DaemonSet): remove the
    /// node's warden.dev/ready label first (so no new warden pod is scheduled here), then
    /// uninstall as `warden uninstall` does, then idle until SIGTERM so the pod does not
    /// crash-loop. A step that fails is retried every --recheck-interval; the uninstall
    /// never runs while the label could not be removed.
    #[arg(long = "uninstall-mode", env = "WARDEN_UNINSTALL")]
    pub uninstall_mode: bool,

    /// The node policy as the cluster wants it (the DaemonSet's ConfigMap, mounted in the
    /// pod; a path on this machine, not under --root): after the install it is checked to
    /// load and written to --policy atomically, audited with the digests before and after,
    /// only when it differs. A source that does not load is refused and the node keeps its
    /// policy.
    #[arg(long, value_name = "FILE")]
    pub policy_source: Option<PathBuf>,

    /// With --daemon: seconds between re-checks for drift (after failures, doubled each
    /// time up to 32 times).
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub recheck_interval: u64,

    #[command(flatten)]
    pub kube: KubeArgs,
}

impl InstallArgs {
    pub fn recheck_interval(&self) -> Duration {
        Duration::from_secs(self.recheck_interval)
    }
}

/// `warden uninstall`.
#[derive(Debug, Clone, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Do not check that containerd answers without the handler afterwards (offline trees
    /// and tests only).
    #[arg(long)]
    pub no_verify: bool,

    #[command(flatten)]
    pub kube: KubeArgs,
}

/// `warden plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `warden verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Check the files against the state only, not containerd.
    #[arg(long)]
    pub disk_only: bool,
}

fn parse_distribution(s: &str) -> Result<Distribution, String> {
    s.parse::<Distribution>().map_err(|e| e.to_string())
}

fn parse_digest(s: &str) -> Result<String, String> {
    crate::digest::parse(s)
        .ok_or_else(|| format!("{s:?} is not a SHA-256 digest (sha256:<64 hex digits>)"))
}

/// containerd's major version from a Node's `status.nodeInfo.containerRuntimeVersion`
/// (`containerd://2.1.4`, `containerd://1.7.27-k3s1`); an error for another runtime
/// (`cri-o://1.30.0`) or an empty value.
pub fn containerd_major_from_node(runtime_version: &str) -> Result<u32, String> {
    let value = runtime_version.trim();
    let Some(version) = value.strip_prefix("containerd://") else {
        return Err(if value.is_empty() {
            "the Node's status.nodeInfo.containerRuntimeVersion is empty".to_owned()
        } else {
            format!("the Node's container runtime is {value:?}, not containerd")
        });
    };
    parse_containerd_version(version).map_err(|e| {
        format!("the Node's container runtime version {value:?} is not a containerd version: {e}")
    })
}

/// `2`, `2.1`, `v2.1.4`, or a whole `containerd --version` line: the major version.
pub fn parse_containerd_version(s: &str) -> Result<u32, String> {
    let trimmed = s.trim();
    if let Ok(major) = trimmed.trim_start_matches('v').parse::<u32>() {
        return Ok(major);
    }
    let line = if trimmed.starts_with("containerd") {
        trimmed.to_owned()
    } else {
        format!("containerd {trimmed}")
    };
    ContainerdVersion::parse(&line)
        .map(|v| v.major)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_version_forms() {
        assert_eq!(parse_containerd_version("2"), Ok(2));
        assert_eq!(parse_containerd_version("v1"), Ok(1));
        assert_eq!(parse_containerd_version("2.1.4"), Ok(2));
        assert_eq!(
            parse_containerd_version(
                "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1"
            ),
            Ok(1)
        );
        assert!(parse_containerd_version("banana").is_err());
    }

    #[test]
    fn containerd_version_from_the_node() {
        assert_eq!(containerd_major_from_node("containerd://2.1.4"), Ok(2));
        assert_eq!(
            containerd_major_from_node("containerd://1.7.27-k3s1"),
            Ok(1)
        );
        assert_eq!(containerd_major_from_node("containerd://v1.6.20"), Ok(1));
        assert_eq!(
            containerd_major_from_node(" containerd://2.0.0-rc.1 "),
            Ok(2)
        );
        let crio = containerd_major_from_node("cri-o://1.30.0").unwrap_err();
        assert!(crio.contains("not containerd"), "{crio}");
        assert!(
            containerd_major_from_node("")
                .unwrap_err()
                .contains("empty")
        );
        assert!(containerd_major_from_node("containerd://banana").is_err());
    }
}
