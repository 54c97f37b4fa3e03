//! What each Kubernetes distribution does with containerd's config: where the file is,
//! who writes it, and which unit restarts containerd.
//!
//! These are the facts detection relies on; they change with the distributions, so they are
//! kept here, in one place, rather than spread through the decision code.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;
use super::source::exists;

/// A way containerd is installed and configured on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// containerd from a package, `/etc/containerd/config.toml`, unit `containerd`.
    Containerd,
    /// k3s's embedded containerd; config rendered from a template on every k3s start.
    K3s,
    /// rke2's containerd; the same rendering scheme as k3s (rke2 embeds k3s's agent).
    Rke2,
    /// k0s: `/etc/k0s/containerd.toml`, k0s imports and watches `containerd.d`.
    K0s,
    /// microk8s: the snap renders `args/containerd.toml` from `containerd-template.toml`.
    Microk8s,
    /// A kind node: plain containerd inside the node container, kind's own config.
    Kind,
    /// An EKS-style node (the AL2 AMI): plain containerd importing `config.d/*.toml`.
    Eks,
}

/// Every distribution, in the order detection reports them.
pub const ALL: [Distribution; 7] = [
    Distribution::Containerd,
    Distribution::K3s,
    Distribution::Rke2,
    Distribution::K0s,
    Distribution::Microk8s,
    Distribution::Kind,
    Distribution::Eks,
];

impl Distribution {
    /// The name used on the command line and in plans.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Containerd => "containerd",
            Distribution::K3s => "k3s",
            Distribution::Rke2 => "rke2",
            Distribution::K0s => "k0s",
            Distribution::Microk8s => "microk8s",
            Distribution::Kind => "kind",
            Distribution::Eks => "eks",
        }
    }

    /// Whether this is containerd's own `/etc/containerd/config.toml` (plain, kind, EKS):
    /// the same file and rules, told apart only by markers in the file.
    pub fn is_plain_containerd(self) -> bool {
        matches!(
            self,
            Distribution::Containerd | Distribution::Kind | Distribution::Eks
        )
    }

    /// Whether the distribution renders its containerd config from a template at every
    /// start (k3s, rke2): the rendered file must never be edited.
    pub fn renders_config(self) -> bool {
        matches!(self, Distribution::K3s | Distribution::Rke2)
    }

    /// The config files this distribution's containerd may be started with, preferred
    /// first.
    pub fn config_candidates(self) -> Vec<PathBuf> {
        match self {
            Distribution::Containerd | Distribution::Kind | Distribution::Eks => {
                vec![PathBuf::from(PLAIN_CONFIG)]
            }
            Distribution::K3s | Distribution::Rke2 => {
                let dir = rancher_containerd_dir(self);
                // k3s renders `config.toml` whatever the template generation; some builds
                // wrote the v3 rendering to `config-v3.toml`.
                vec![dir.join("config.toml"), dir.join("config-v3.toml")]
            }
            Distribution::K0s => vec![PathBuf::from(K0S_CONFIG)],
            Distribution::Microk8s => vec![PathBuf::from(MICROK8S_TEMPLATE)],
        }
    }

    /// The distribution a config path belongs to, from the path alone (`None` for a path
    /// no distribution owns, which is then plain containerd).
    pub fn owning(path: &Path) -> Option<Distribution> {
        for d in [Distribution::K3s, Distribution::Rke2] {
            if path.starts_with(rancher_containerd_dir(d)) {
                return Some(d);
            }
        }
        if path.starts_with("/etc/k0s") {
            return Some(Distribution::K0s);
        }
        if path.starts_with("/var/snap/microk8s") {
            return Some(Distribution::Microk8s);
        }
        None
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Distribution {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        ALL.into_iter()
            .find(|d| d.name() == wanted)
            .ok_or_else(|| ConfigError::UnknownDistribution { name: s.to_owned() })
    }
}

/// containerd's default config path.
pub const PLAIN_CONFIG: &str = "/etc/containerd/config.toml";
/// k0s's containerd config (k0s writes it while its first line is `# k0s_managed=true`).
pub const K0S_CONFIG: &str = "/etc/k0s/containerd.toml";
/// The directory k0s imports and watches for drop-ins.
pub const K0S_DROP_IN_DIR: &str = "/etc/k0s/containerd.d";
/// The first line that marks `/etc/k0s/containerd.toml` as k0s's own.
pub const K0S_MANAGED_MARKER: &str = "# k0s_managed=true";
/// The microk8s template the user edits (the snap renders `args/containerd.toml` from it).
pub const MICROK8S_TEMPLATE: &str = "/var/snap/microk8s/current/args/containerd-template.toml";
/// The file microk8s renders from its template at every containerd start.
pub const MICROK8S_RENDERED: &str = "/var/snap/microk8s/current/args/containerd.toml";

/// `/var/lib/rancher/<k3s|rke2>/agent/etc/containerd`.
pub fn rancher_containerd_dir(d: Distribution) -> PathBuf {
    PathBuf::from(format!(
        "/var/lib/rancher/{}/agent/etc/containerd",
        d.name()
    ))
}

/// The systemd unit that restarts containerd, when there is one to restart.
///
/// k3s and rke2 run containerd as a child of their server or agent unit; which one runs is
/// read from the installed unit files, then from the presence of the server data dir. k0s
/// restarts containerd itself when a drop-in in `containerd.d` changes, so it has none.
pub fn restart_unit(root: &Path, d: Distribution) -> Option<String> {
    match d {
        Distribution::Containerd | Distribution::Kind | Distribution::Eks => {
            Some("containerd".into())
        }
        Distribution::K3s => Some(server_or_agent(root, d, "k3s", "k3s-agent")),
        Distribution::Rke2 => Some(server_or_agent(root, d, "rke2-server", "rke2-agent")),
        Distribution::Microk8s => Some("snap.microk8s.daemon-containerd".into()),
        Distribution::K0s => None,
    }
}

/// k0s's own unit, for the rare node whose `containerd.toml` is not k0s-managed (then
/// only a restart of k0s restarts containerd with the new main file).
pub fn k0s_unit(root: &Path) -> String {
    if unit_installed(root, "k0scontroller") {
        "k0scontroller".into()
    } else {
        "k0sworker".into()
    }
}

const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

fn unit_installed(root: &Path, unit: &str) -> bool {
    UNIT_DIRS
        .iter()
        .any(|dir| exists(root, &Path::new(dir).join(format!("{unit}.service"))))
}

fn server_or_agent(root: &Path, d: Distribution, server: &str, agent: &str) -> String {
    let has_server = unit_installed(root, server);
    let has_agent = unit_installed(root, agent);
    let chosen = match (has_server, has_agent) {
        (true, false) => server,
        (false, true) => agent,
        _ => {
            let server_dir = PathBuf::from(format!("/var/lib/rancher/{}/server", d.name()));
            if exists(root, &server_dir) {
                server
            } else {
                agent
            }
        }
    };
    chosen.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in ALL {
            assert_eq!(d.name().parse::<Distribution>().unwrap(), d);
        }
        assert_eq!("K3S".parse::<Distribution>().unwrap(), Distribution::K3s);
        assert!(matches!(
            "openshift".parse::<Distribution>(),
            Err(ConfigError::UnknownDistribution { .. })
        ));
    }

    #[test]
    fn owning_paths() {
        assert_eq!(
            Distribution::owning(Path::new(
                "/var/lib/rancher/rke2/agent/etc/containerd/config.toml"
            )),
            Some(Distribution::Rke2)
        );
        assert_eq!(
            Distribution::owning(Path::new(MICROK8S_TEMPLATE)),
            Some(Distribution::Microk8s)
        );
        assert_eq!(Distribution::owning(Path::new(PLAIN_CONFIG)), None);
    }

    #[test]
    fn k3s_unit_from_unit_files_then_server_dir() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            restart_unit(root.path(), Distribution::K3s).unwrap(),
            "k3s-agent"
        );
        std::fs::create_dir_all(root.path().join("var/lib/rancher/k3s/server")).unwrap();
        assert_eq!(restart_unit(root.path(), Distribution::K3s).unwrap(), "k3s");
        let units = root.path().join("etc/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        std::fs::write(units.join("k3s-agent.service"), "").unwrap();
        assert_eq!(
            restart_unit(root.path(), Distribution::K3s).unwrap(),
            "k3s-agent"
        );
    }

    #[test]
    fn rke2_and_others() {
        let root = tempfile::tempdir().unwrap();
        let units = root.path().join("usr/local/lib/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        std::fs::write(units.join("rke2-server.service"), "").unwrap();
        assert_eq!(
            restart_unit(root.path(), Distribution::Rke2).unwrap(),
            "rke2-server"
        );
        assert_eq!(restart_unit(root.path(), Distribution::K0s), None);
        assert_eq!(
            restart_unit(root.path(), Distribution::Microk8s).unwrap(),
            "snap.microk8s.daemon-containerd"
        );
        assert_eq!(k0s_unit(root.path()), "k0sworker");
    }
}
