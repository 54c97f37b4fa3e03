//! The flags of `install`, `uninstall`, `plan` and `verify`: the same on every one.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use warden_common::names::{
    DEFAULT_AUDIT_LOG, DEFAULT_INSTALL_DIR, DEFAULT_POLICY_PATH, DEFAULT_STATE_DIR,
};

use crate::containerd_config::{ContainerdVersion, Distribution};

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
}

impl NodeArgs {
    pub fn verify_timeout(&self) -> Duration {
        Duration::from_secs(self.verify_timeout)
    }

    pub fn lock_timeout(&self) -> Duration {
        Duration::from_secs(self.lock_timeout)
    }
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
}
