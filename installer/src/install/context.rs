//! Looking at the node before anything is written: detection, the plan, the shim and its
//! digest, the policy, whether the paths can be written, how containerd is restarted. Every
//! refusal happens here, so a refused run changes nothing on disk.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use warden_policy::{Policy, PolicyError};

use super::args::NodeArgs;
use crate::binary::{self, BinaryAction, Shim, ShimError};
use crate::containerd_config::source::host_path;
use crate::containerd_config::{
    ConfigError, ConfigFile, ContainerdVersion, DetectOptions, Distribution, NodeLayout, Plan,
    detect, plan_install,
};
use crate::host_checks::{self, HostError};
use crate::install_audit::AuditLog;
use crate::paths;
use crate::restart::RestartMethod;
use crate::state::{Phase, Scope, State, StateError, StateStore};
use warden_common::input_file::{InputError, Links, POLICY_CAP, read_capped};
use warden_common::lock::LockError;
use warden_common::names::SHIM_BINARY;
use warden_common::trusted_dir::{self, TrustError};

/// Tells the user a run waits for the host lock.
pub fn tell_waiting(holder: &str) {
    eprintln!("warden: waiting for another warden run ({holder}) to finish");
}

/// Room kept free beside the shim on its file system, in bytes.
const SPACE_MARGIN: u64 = 1 << 20;

/// Why warden will not touch this node. Nothing was changed on disk.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Shim(#[from] ShimError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(
        "{source}; the shim refuses every workload while its policy does not load: fix it \
         first (`warden policy check --policy FILE`)"
    )]
    Policy {
        #[source]
        source: PolicyError,
    },
    #[error("--root {}: not a directory", path.display())]
    Root { path: PathBuf },
    #[error("the config change needs containerd (unit `{unit}`) restarted, but {reason}")]
    NoRestart { unit: String, reason: String },
    #[error(
        "warden's shim is installed at {} (state in {}); uninstall first, or keep \
         --install-dir {}",
        installed.display(),
        state.display(),
        installed.parent().unwrap_or(Path::new("/")).display()
    )]
    InstallDirChanged { installed: PathBuf, state: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The node as found, and what installing would do to it.
#[derive(Debug)]
pub struct Node {
    pub root: PathBuf,
    pub layout: NodeLayout,
    pub plan: Plan,
    pub shim: Shim,
    /// The shim's path on the node.
    pub binary: PathBuf,
    pub binary_action: BinaryAction,
    pub restart: RestartMethod,
    /// containerd's socket on the node.
    pub socket: PathBuf,
    /// Where the containerd major version came from, if known.
    pub containerd: Option<String>,
    pub notes: Vec<String>,
    /// Config files that are symlinks, and where they really point (node paths).
    pub links: Vec<ConfigLink>,
}

/// A config file that is a symlink: warden reads and writes the file it points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigLink {
    pub path: PathBuf,
    pub target: PathBuf,
}

impl ConfigLink {
    pub fn describe(&self) -> String {
        format!(
            "symlink: {} points to {} (warden reads and writes {})",
            self.path.display(),
            self.target.display(),
            self.target.display()
        )
    }
}

/// The config files among `paths` that are symlinks, with the file each really points to.
pub fn config_links<'p>(root: &Path, paths: impl IntoIterator<Item = &'p Path>) -> Vec<ConfigLink> {
    let mut links: Vec<ConfigLink> = Vec::new();
    for path in paths {
        let host = host_path(root, path);
        let is_link = host
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        if !is_link || links.iter().any(|l| l.path == path) {
            continue;
        }
        let target = super::apply::to_node(root, &paths::write_target(root, path));
        links.push(ConfigLink {
            path: path.to_path_buf(),
            target,
        });
    }
    links
}

/// The paths a run with `args` manages on a node laid out as `layout`: what a state may
/// name.
pub fn scope(args: &NodeArgs, layout: &NodeLayout) -> Scope {
    let mut config_files = vec![layout.config_path.clone()];
    if layout.target.path() != layout.config_path {
        config_files.push(layout.target.path().to_path_buf());
    }
    Scope {
        install_dir: args.install_dir.clone(),
        binary: args.install_dir.join(SHIM_BINARY),
        config_files,
    }
}

/// Refuses a state dir (or a parent) that another user could write, before its state, lock
/// or backups are read.
pub fn check_state_dir(args: &NodeArgs) -> Result<(), Refusal> {
    trusted_dir::check_dir("state dir", &host_path(&args.root, &args.state_dir))?;
    Ok(())
}

/// Refuses an audit log dir (or a parent) that another user could write.
pub fn check_audit_dir(args: &NodeArgs) -> Result<(), Refusal> {
    let log = host_path(&args.root, &args.audit_log);
    trusted_dir::check_dir("audit log dir", log.parent().unwrap_or(Path::new("/")))?;
    Ok(())
}

/// Refuses to write a config file whose directory (where a symlink really leads) another
/// user could write.
pub fn check_config_dir(root: &Path, node_path: &Path) -> Result<(), Refusal> {
    let target = paths::write_target(root, node_path);
    trusted_dir::check_dir("config dir", target.parent().unwrap_or(Path::new("/")))?;
    Ok(())
}

/// The state dir and the audit log of a run, under `--root`.
pub fn store(args: &NodeArgs) -> StateStore {
    StateStore::new(host_path(&args.root, &args.state_dir))
}

/// The audit log of a run, under `--root`.
pub fn audit_log(args: &NodeArgs) -> AuditLog {
    AuditLog::new(host_path(&args.root, &args.audit_log))
}

/// Checks `--root`.
pub fn check_root(args: &NodeArgs) -> Result<(), Refusal> {
    if args.root.is_dir() {
        Ok(())
    } else {
        Err(Refusal::Root {
            path: args.root.clone(),
        })
    }
}

impl Node {
    /// Inspects the node for `install` and `plan`. `prior` is the state left by earlier
    /// runs (its pending restart counts as a change).
    pub fn inspect(args: &NodeArgs, prior: Option<&State>) -> Result<Node, Refusal> {
        check_root(args)?;
        let root = args.root.clone();
        host_checks::immutable_os(&root)?;
        let (layout, containerd, notes) = detect_layout(args)?;
        let plan = plan_install(&root, &layout, &args.install_dir)?;
        let shim_path = args.shim.clone().unwrap_or_else(binary::default_path);
        let shim = binary::resolve(&shim_path, args.shim_digest.as_deref())?;
        let binary = args.install_dir.join(SHIM_BINARY);
        let binary_host = host_path(&root, &binary);
        let binary_action =
            BinaryAction::decide(&binary_host, &shim).map_err(|source| Refusal::Io {
                path: binary.clone(),
                source,
            })?;
        check_policy(args)?;
        if let Some(state) = prior
            && let Some(installed) = &state.binary
            && installed.path != binary
            && state.phase != Phase::RolledBack
        {
            return Err(Refusal::InstallDirChanged {
                installed: installed.path.clone(),
                state: args.state_dir.clone(),
            });
        }
        if let Some(state) = prior {
            store(args).validate(state, &scope(args, &layout))?;
        }
        let links = config_links(
            &root,
            [layout.config_path.as_path(), layout.target.path()]
                .into_iter()
                .chain(plan.changes.iter().map(|c| c.path.as_path())),
        );
        let restart = RestartMethod::choose(
            args.restart_command.as_deref(),
            args.restart_via,
            args.daemon,
            &root,
        );
        let socket = socket(args, &root, &layout);
        let node = Node {
            root,
            layout,
            plan,
            shim,
            binary,
            binary_action,
            restart,
            socket,
            containerd,
            notes,
            links,
        };
        node.check_trusted(args)?;
        if !node.is_noop(prior) {
            node.check_writable(args)?;
            node.check_restart(prior)?;
        }
        Ok(node)
    }

    /// Whether installing changes nothing: the shim and the entry are in place, the state
    /// says verified, no restart is pending.
    pub fn is_noop(&self, prior: Option<&State>) -> bool {
        self.plan.is_noop()
            && self.binary_action == BinaryAction::Unchanged
            && prior.is_some_and(|s| {
                s.phase == Phase::Verified
                    && !s.restart_pending
                    && s.attempt.is_none()
                    && s.binary
                        .as_ref()
                        .is_some_and(|b| b.path == self.binary && b.digest == self.shim.digest)
            })
    }

    /// The unit to restart: the plan's, or the one a crashed run left pending.
    pub fn restart_unit(&self, prior: Option<&State>) -> Option<String> {
        match &self.plan.restart {
            Some(unit) => Some(unit.clone()),
            None if prior.is_some_and(|s| s.restart_pending) => self.layout.restart_unit.clone(),
            None => None,
        }
    }

    /// The shim's path on the node, as containerd's config names it.
    pub fn runtime_path(&self) -> String {
        self.binary.display().to_string()
    }

    pub fn host(&self, node_path: &Path) -> PathBuf {
        host_path(&self.root, node_path)
    }

    fn check_writable(&self, args: &NodeArgs) -> Result<(), Refusal> {
        if self.binary_action != BinaryAction::Unchanged {
            let dir = self.host(&args.install_dir);
            host_checks::writable_dir("install dir", &dir)?;
            host_checks::has_space(&dir, self.shim.size.saturating_add(SPACE_MARGIN))?;
        }
        for change in &self.plan.changes {
            let target = paths::write_target(&self.root, &change.path);
            let dir = target.parent().unwrap_or(Path::new("/"));
            host_checks::writable_dir("config dir", dir)?;
        }
        host_checks::writable_dir("state dir", &self.host(&args.state_dir))?;
        let log = self.host(&args.audit_log);
        host_checks::writable_dir("audit log dir", log.parent().unwrap_or(Path::new("/")))?;
        Ok(())
    }

    /// Refuses every directory this run would write into (and its parents) that another
    /// user could write: the install dir, each config file's (where a symlink leads), the
    /// state dir and the audit log's.
    fn check_trusted(&self, args: &NodeArgs) -> Result<(), Refusal> {
        trusted_dir::check_dir("install dir", &self.host(&args.install_dir))?;
        for change in &self.plan.changes {
            check_config_dir(&self.root, &change.path)?;
        }
        check_config_dir(&self.root, self.layout.target.path())?;
        check_state_dir(args)?;
        check_audit_dir(args)?;
        Ok(())
    }

    fn check_restart(&self, prior: Option<&State>) -> Result<(), Refusal> {
        if let (Some(unit), RestartMethod::Unavailable { reason }) =
            (self.restart_unit(prior), &self.restart)
        {
            return Err(Refusal::NoRestart {
                unit,
                reason: reason.clone(),
            });
        }
        Ok(())
    }
}

/// Detects the node's layout with the flags' overrides; also returns where containerd's
/// version came from and notes about it.
pub fn detect_layout(
    args: &NodeArgs,
) -> Result<(NodeLayout, Option<String>, Vec<String>), ConfigError> {
    let mut notes = Vec::new();
    let (containerd_major, containerd) = containerd_major(args, &mut notes);
    let mut opts = DetectOptions::new(&args.root);
    opts.distribution = args.distribution;
    opts.config = args.config.clone();
    opts.containerd_major = containerd_major;
    let layout = detect(&opts)?;
    Ok((layout, containerd, notes))
}

/// The node policy must load (an absent one is the built-in `strict`). It is read as a
/// regular file of at most [`POLICY_CAP`] bytes: a FIFO or a device is refused by type.
/// With `install --policy-source`, the source that will replace it is checked instead.
fn check_policy(args: &NodeArgs) -> Result<(), Refusal> {
    let path = args
        .policy_check
        .clone()
        .unwrap_or_else(|| host_path(&args.root, &args.policy));
    let Some(bytes) = read_capped("policy", &path, POLICY_CAP, Links::Follow)? else {
        return Ok(());
    };
    let file = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|_| Refusal::Policy {
        source: PolicyError::Read {
            file: file.clone(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
        },
    })?;
    Policy::parse(&text, file)
        .map(|_| ())
        .map_err(|source| Refusal::Policy { source })
}

/// containerd's major version: `--containerd-version`, else `containerd --version` when
/// containerd is on PATH and the root is this machine's.
fn containerd_major(args: &NodeArgs, notes: &mut Vec<String>) -> (Option<u32>, Option<String>) {
    if let Some(major) = args.containerd_version {
        return (
            Some(major),
            Some(format!("{major}.x (--containerd-version)")),
        );
    }
    if args.root != Path::new("/") {
        return (None, None);
    }
    let Some(program) = paths::find_in_path("containerd") else {
        return (None, None);
    };
    let output = match Command::new(&program).arg("--version").output() {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            notes.push(format!(
                "`{} --version` failed ({}): containerd's version is unknown",
                program.display(),
                output.status
            ));
            return (None, None);
        }
        Err(e) => {
            notes.push(format!("cannot run `{} --version`: {e}", program.display()));
            return (None, None);
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    match ContainerdVersion::parse(&text) {
        Ok(version) => (
            Some(version.major),
            Some(format!("{version} (`{} --version`)", program.display())),
        ),
        Err(e) => {
            notes.push(e.to_string());
            (None, None)
        }
    }
}

/// containerd's socket on the node: `--containerd-socket`, else the config's gRPC address,
/// else the distribution's default.
pub fn socket(args: &NodeArgs, root: &Path, layout: &NodeLayout) -> PathBuf {
    if let Some(socket) = &args.containerd_socket {
        return socket.clone();
    }
    if let Some(address) = grpc_address(root, &layout.config_path) {
        return address;
    }
    PathBuf::from(match layout.distribution {
        Distribution::K3s | Distribution::Rke2 => "/run/k3s/containerd/containerd.sock",
        Distribution::K0s => "/run/k0s/containerd.sock",
        Distribution::Microk8s => "/var/snap/microk8s/common/run/containerd.sock",
        Distribution::Containerd | Distribution::Kind | Distribution::Eks => {
            "/run/containerd/containerd.sock"
        }
    })
}

/// `[grpc] address` (versions 1 to 3) or the gRPC server plugin's `address` (version 4).
fn grpc_address(root: &Path, config: &Path) -> Option<PathBuf> {
    let file = ConfigFile::read(root, config).ok()?;
    let doc = file.doc.as_table();
    let address = doc
        .get("grpc")
        .and_then(|g| g.get("address"))
        .or_else(|| {
            doc.get("plugins")
                .and_then(|p| p.get("io.containerd.server.v1.grpc"))
                .and_then(|g| g.get("address"))
        })?
        .as_str()?
        .trim();
    let address = address.strip_prefix("unix://").unwrap_or(address);
    (!address.is_empty() && address.starts_with('/')).then(|| PathBuf::from(address))
}

/// Facts about the node for `plan` and `install` reports.
#[derive(Debug, Serialize)]
pub struct NodeFacts<'a> {
    pub layout: &'a NodeLayout,
    /// Config files that are symlinks, and where they point.
    pub symlinks: &'a [ConfigLink],
    pub containerd: Option<&'a str>,
    pub socket: &'a Path,
    pub shim: &'a Shim,
    pub binary: &'a Path,
    pub restart_method: &'a RestartMethod,
}

impl Node {
    pub fn facts(&self) -> NodeFacts<'_> {
        NodeFacts {
            layout: &self.layout,
            symlinks: &self.links,
            containerd: self.containerd.as_deref(),
            socket: &self.socket,
            shim: &self.shim,
            binary: &self.binary,
            restart_method: &self.restart,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_address_from_each_config_version() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("etc/containerd");
        std::fs::create_dir_all(&dir).unwrap();
        let path = Path::new("/etc/containerd/config.toml");
        std::fs::write(
            dir.join("config.toml"),
            "version = 2\n[grpc]\naddress = \"/run/x.sock\"\n",
        )
        .unwrap();
        assert_eq!(
            grpc_address(root.path(), path),
            Some(PathBuf::from("/run/x.sock"))
        );
        std::fs::write(
            dir.join("config.toml"),
            "version = 4\n[plugins.'io.containerd.server.v1.grpc']\naddress = 'unix:///run/y.sock'\n",
        )
        .unwrap();
        assert_eq!(
            grpc_address(root.path(), path),
            Some(PathBuf::from("/run/y.sock"))
        );
        std::fs::write(dir.join("config.toml"), "version = 2\n").unwrap();
        assert_eq!(grpc_address(root.path(), path), None);
    }
}
