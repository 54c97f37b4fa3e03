//! Node layout detection: which containerd config, whose, and where warden's entry goes.
//!
//! Everything is read under a root prefix, so tests point it at a fake tree. The decision
//! that matters most is the target:
//!
//! - containerd 2.x merges imported files deeply, so where the effective config imports a
//!   drop-in directory, warden writes its own small file there and never touches the main
//!   config;
//! - containerd 1.x replaces a whole plugin section with an imported file's, so a drop-in
//!   holding only a runtime would wipe the rest of the CRI config: the main file is edited
//!   instead (the plan's `before` text is the backup);
//! - k3s and rke2 render their config from a template at every start: the rendered file is
//!   never edited and never copied into a template. Their drop-in directory is used when
//!   the rendered config imports it, else warden refuses and says what to do.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::cgroup::{CgroupDriver, MergeMode, cgroup_driver};
use super::distribution::{
    self, Distribution, K0S_DROP_IN_DIR, K0S_MANAGED_MARKER, MICROK8S_RENDERED,
};
use super::error::ConfigError;
use super::glob::{DROP_IN_FILE_NAME, ImportGlob};
use super::locate::locate;
use super::source::{ConfigFile, read_bytes};
pub use super::target::Target;
use super::target::{TargetFacts, check_not_shadowed, choose_target};
use super::version::{CRI_PLUGIN_V2, CRI_PLUGIN_V3, implied_major};

/// What the caller knows or was told (`--distribution`, `--config`, `containerd --version`).
#[derive(Debug, Clone)]
pub struct DetectOptions {
    /// The node's `/` (a fake tree in tests).
    pub root: PathBuf,
    /// `--distribution`: look only at this distribution's files, refuse if they disagree.
    pub distribution: Option<Distribution>,
    /// `--config`: the config file, as a path on the node.
    pub config: Option<PathBuf>,
    /// containerd's major version, from `containerd --version` when it could be run.
    pub containerd_major: Option<u32>,
}

impl DetectOptions {
    /// Options for a node whose `/` is `root`, with nothing overridden.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DetectOptions {
            root: root.into(),
            distribution: None,
            config: None,
            containerd_major: None,
        }
    }
}

/// What was found on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeLayout {
    pub distribution: Distribution,
    /// The main config file (for microk8s, the template it renders from).
    pub config_path: PathBuf,
    /// The main config's `version` (1 when absent).
    pub config_version: u32,
    /// The main config's `imports`, as written.
    pub imports: Vec<String>,
    /// containerd's major version, given or implied by the config version.
    pub containerd_major: Option<u32>,
    /// Whether imports are merged deeply (containerd 2.x); `None` when unknown.
    pub imports_merge_deeply: Option<bool>,
    /// Where the entry goes.
    pub target: Target,
    /// The unit to restart after a config change; `None` when nothing must be restarted
    /// (k0s restarts containerd itself when its drop-ins change).
    pub restart_unit: Option<String>,
    /// The cgroup driver of the default runtime.
    pub cgroup: CgroupDriver,
    /// Facts worth telling the user.
    pub notes: Vec<String>,
}

impl NodeLayout {
    /// Whether containerd is known to be 2.x or later: given, or implied by a config version
    /// of 3 or more. Decides the form of the runtime entry (see `RuntimeEntry::runtime_type`).
    pub fn is_containerd_2(&self) -> bool {
        self.containerd_major.is_some_and(|m| m >= 2) || self.config_version >= 3
    }

    /// A short human summary, one fact per line.
    pub fn summary(&self) -> String {
        let imports = if self.imports.is_empty() {
            "none".to_owned()
        } else {
            self.imports.join(", ")
        };
        let containerd = match (self.containerd_major, self.imports_merge_deeply) {
            (Some(major), Some(true)) => format!("{major}.x (imports merge deeply)"),
            (Some(major), _) => format!("{major}.x (imports replace whole plugin sections)"),
            (None, _) => "unknown major version".to_owned(),
        };
        let target = match &self.target {
            Target::MainFile { path } => format!("main file {}", path.display()),
            Target::DropIn { path, version } => {
                format!("drop-in {} (version {version})", path.display())
            }
        };
        let driver = if self.cgroup.systemd {
            "systemd"
        } else {
            "cgroupfs"
        };
        let mut out = String::new();
        out.push_str(&format!("distribution: {}\n", self.distribution));
        out.push_str(&format!("config: {}\n", self.config_path.display()));
        out.push_str(&format!("config version: {}\n", self.config_version));
        out.push_str(&format!("imports: {imports}\n"));
        out.push_str(&format!("containerd: {containerd}\n"));
        out.push_str(&format!("target: {target}\n"));
        out.push_str(&format!(
            "cgroup driver: {driver} (runtime `{}`)\n",
            self.cgroup.runtime
        ));
        out.push_str(&format!(
            "restart unit: {}\n",
            self.restart_unit.as_deref().unwrap_or("none")
        ));
        out
    }
}

/// Detects the layout of the node under `opts.root`.
pub fn detect(opts: &DetectOptions) -> Result<NodeLayout, ConfigError> {
    let root = opts.root.as_path();
    let mut notes = Vec::new();
    let (distribution, main) = locate(opts, &mut notes)?;
    let config_path = main.path.clone();
    if let Some(plugin) = main
        .disabled_plugins()
        .into_iter()
        .find(|p| matches!(p.as_str(), "cri" | CRI_PLUGIN_V2 | CRI_PLUGIN_V3))
    {
        return Err(ConfigError::CriDisabled {
            path: config_path,
            plugin,
        });
    }
    let version = main.version;
    let imports = main.imports();
    let k0s_managed =
        distribution == Distribution::K0s && main.text.lines().next() == Some(K0S_MANAGED_MARKER);

    let containerd_major = match (opts.containerd_major, implied_major(version)) {
        (Some(major), Some(_)) if major < 2 => {
            return Err(ConfigError::ContainerdVersionConflict {
                path: config_path,
                config_version: version,
                major,
            });
        }
        (Some(major), _) => Some(major),
        (None, Some(implied)) => Some(implied),
        (None, None) => None,
    };
    let imports_merge_deeply = containerd_major.map(|major| major >= 2);

    let mut globs: Vec<ImportGlob> = imports
        .iter()
        .map(|import| ImportGlob::resolve(&config_path, import))
        .collect();
    if k0s_managed && !globs.iter().any(|g| g.dir == Path::new(K0S_DROP_IN_DIR)) {
        // Older k0s does not list containerd.d in `imports`: it merges the CRI sections
        // of those files itself into a file it imports.
        globs.push(ImportGlob::resolve(
            &config_path,
            &format!("{K0S_DROP_IN_DIR}/*.toml"),
        ));
    }
    let drop_in = if k0s_managed {
        Some(Path::new(K0S_DROP_IN_DIR).join(DROP_IN_FILE_NAME))
    } else {
        globs.iter().find_map(ImportGlob::drop_in_path)
    };

    let imported = read_imports(root, &globs)?;
    let merge_mode = if imports_merge_deeply == Some(false) && !k0s_managed {
        MergeMode::ReplacePluginSections
    } else {
        MergeMode::Deep
    };
    let mut loaded: Vec<&ConfigFile> = vec![&main];
    loaded.extend(imported.iter());
    let cgroup = cgroup_driver(&loaded, merge_mode)?;

    let main_editable = !distribution.renders_config() && !k0s_managed;
    let target = choose_target(
        TargetFacts {
            root,
            main: &main,
            distribution,
            main_editable,
            drop_in,
            merge_deeply: imports_merge_deeply,
            k0s_managed,
        },
        &mut notes,
    )?;

    if let Target::MainFile { path } = &target {
        check_not_shadowed(
            path,
            &imported,
            merge_mode,
            imports_merge_deeply,
            &mut notes,
        )?;
    }

    let restart_unit = match (distribution, &target) {
        (Distribution::K0s, Target::DropIn { .. }) => {
            notes.push(
                "k0s restarts containerd itself when a file in /etc/k0s/containerd.d changes"
                    .to_owned(),
            );
            None
        }
        (Distribution::K0s, Target::MainFile { .. }) => Some(distribution::k0s_unit(root)),
        (d, _) => distribution::restart_unit(root, d),
    };

    notes.push(match (&cgroup.source, cgroup.systemd) {
        (Some(source), true) => format!(
            "runtime `{}` uses systemd cgroups (SystemdCgroup = true in {}): warden's entry sets it too",
            cgroup.runtime,
            source.display()
        ),
        (Some(source), false) => format!(
            "runtime `{}` uses cgroupfs (SystemdCgroup = false in {})",
            cgroup.runtime,
            source.display()
        ),
        (None, _) => format!(
            "runtime `{}` uses cgroupfs (no SystemdCgroup set)",
            cgroup.runtime
        ),
    });
    distribution_notes(distribution, &mut notes);

    Ok(NodeLayout {
        distribution,
        config_path,
        config_version: version,
        imports,
        containerd_major,
        imports_merge_deeply,
        target,
        restart_unit,
        cgroup,
        notes,
    })
}

/// Reads every file the imports load today. Empty imported files are valid (containerd
/// loads them as nothing) and skipped; any other error is the user's to fix first, since
/// containerd would not start with it either.
fn read_imports(root: &Path, globs: &[ImportGlob]) -> Result<Vec<ConfigFile>, ConfigError> {
    let mut files = Vec::new();
    for glob in globs {
        for path in glob.files(root)? {
            let Some(bytes) = read_bytes(root, &path)? else {
                continue;
            };
            match ConfigFile::parse(&path, &bytes) {
                Ok(file) => files.push(file),
                Err(ConfigError::Empty { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(files)
}

fn distribution_notes(distribution: Distribution, notes: &mut Vec<String>) {
    match distribution {
        Distribution::Kind => notes.push(
            "kind node: containerd runs inside the node container; the change lasts as long as \
             that container"
                .to_owned(),
        ),
        Distribution::Microk8s => notes.push(format!(
            "microk8s renders {MICROK8S_RENDERED} from this template when containerd restarts"
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd_config::distribution::PLAIN_CONFIG;
    use crate::containerd_config::test_tree::tree;

    const V2_RUNC: &str = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n";

    #[test]
    fn plain_containerd_main_file() {
        let root = tree(&[(PLAIN_CONFIG, V2_RUNC)]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        assert_eq!(layout.distribution, Distribution::Containerd);
        assert_eq!(layout.config_version, 2);
        assert_eq!(layout.containerd_major, None);
        assert_eq!(
            layout.target,
            Target::MainFile {
                path: PLAIN_CONFIG.into()
            }
        );
        assert_eq!(layout.restart_unit.as_deref(), Some("containerd"));
        assert!(!layout.cgroup.systemd);
    }

    #[test]
    fn v3_with_conf_d_uses_drop_in() {
        let root = tree(&[(
            PLAIN_CONFIG,
            "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n",
        )]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        assert_eq!(layout.containerd_major, Some(2));
        assert_eq!(layout.imports_merge_deeply, Some(true));
        assert_eq!(
            layout.target,
            Target::DropIn {
                path: "/etc/containerd/conf.d/warden.toml".into(),
                version: 3
            }
        );
    }

    #[test]
    fn v2_with_imports_on_1x_edits_main() {
        let text = format!("imports = [\"/etc/containerd/config.d/*.toml\"]\n{V2_RUNC}");
        let root = tree(&[(PLAIN_CONFIG, &text)]);
        let mut opts = DetectOptions::new(root.path());
        opts.containerd_major = Some(1);
        let layout = detect(&opts).unwrap();
        assert_eq!(layout.distribution, Distribution::Eks);
        assert!(matches!(layout.target, Target::MainFile { .. }));
        opts.containerd_major = Some(2);
        let layout = detect(&opts).unwrap();
        assert!(matches!(layout.target, Target::DropIn { version: 2, .. }));
    }

    #[test]
    fn containerd_1_with_v3_config_conflicts() {
        let root = tree(&[(PLAIN_CONFIG, "version = 3\n")]);
        let mut opts = DetectOptions::new(root.path());
        opts.containerd_major = Some(1);
        assert!(matches!(
            detect(&opts).unwrap_err(),
            ConfigError::ContainerdVersionConflict { .. }
        ));
    }

    #[test]
    fn shadowing_import_on_1x_is_refused() {
        let text = format!("imports = [\"/etc/containerd/conf.d/*.toml\"]\n{V2_RUNC}");
        let root = tree(&[
            (PLAIN_CONFIG, &text),
            (
                "/etc/containerd/conf.d/10-mirror.toml",
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n",
            ),
        ]);
        let mut opts = DetectOptions::new(root.path());
        opts.containerd_major = Some(1);
        assert!(matches!(
            detect(&opts).unwrap_err(),
            ConfigError::ShadowedByImport { .. }
        ));
    }

    #[test]
    fn empty_drop_in_is_skipped_but_broken_one_refused() {
        let main = "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n";
        let root = tree(&[(PLAIN_CONFIG, main), ("/etc/containerd/conf.d/a.toml", "")]);
        assert!(detect(&DetectOptions::new(root.path())).is_ok());
        let root = tree(&[
            (PLAIN_CONFIG, main),
            ("/etc/containerd/conf.d/a.toml", "[plugins\n"),
        ]);
        assert!(matches!(
            detect(&DetectOptions::new(root.path())).unwrap_err(),
            ConfigError::Parse { .. }
        ));
    }

    #[test]
    fn nothing_found_is_unknown_layout() {
        let root = tree(&[]);
        let err = detect(&DetectOptions::new(root.path())).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownLayout { .. }), "{err}");
        assert!(err.to_string().contains("/etc/k0s/containerd.toml"));
    }

    #[test]
    fn two_distributions_are_ambiguous() {
        let root = tree(&[
            (
                "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
                V2_RUNC,
            ),
            (
                "/var/lib/rancher/rke2/agent/etc/containerd/config.toml",
                V2_RUNC,
            ),
        ]);
        let err = detect(&DetectOptions::new(root.path())).unwrap_err();
        assert!(matches!(err, ConfigError::Ambiguous { .. }), "{err}");
        let mut opts = DetectOptions::new(root.path());
        opts.distribution = Some(Distribution::Rke2);
        opts.containerd_major = Some(2);
        // Chosen, then refused for lack of a drop-in import (never edited in place).
        assert!(matches!(
            detect(&opts).unwrap_err(),
            ConfigError::Rendered { .. }
        ));
    }

    #[test]
    fn distribution_override_must_match() {
        let root = tree(&[(PLAIN_CONFIG, V2_RUNC)]);
        let mut opts = DetectOptions::new(root.path());
        opts.distribution = Some(Distribution::K3s);
        let err = detect(&opts).unwrap_err();
        assert!(
            matches!(err, ConfigError::DistributionMismatch { .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("containerd at /etc/containerd/config.toml")
        );
        opts.distribution = Some(Distribution::Kind);
        assert!(matches!(
            detect(&opts).unwrap_err(),
            ConfigError::DistributionMismatch { .. }
        ));
        opts.distribution = Some(Distribution::Containerd);
        assert!(detect(&opts).is_ok());
    }

    #[test]
    fn config_override_in_k3s_dir_contradicts_containerd() {
        let path = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml";
        let root = tree(&[(path, V2_RUNC)]);
        let mut opts = DetectOptions::new(root.path());
        opts.config = Some(path.into());
        opts.distribution = Some(Distribution::Containerd);
        assert!(matches!(
            detect(&opts).unwrap_err(),
            ConfigError::DistributionMismatch { .. }
        ));
    }

    #[test]
    fn config_override_must_exist_and_not_be_a_template() {
        let root = tree(&[]);
        let mut opts = DetectOptions::new(root.path());
        opts.config = Some("/srv/containerd.toml".into());
        assert!(matches!(
            detect(&opts).unwrap_err(),
            ConfigError::NotFound { .. }
        ));
        opts.config = Some("/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl".into());
        assert!(matches!(
            detect(&opts).unwrap_err(),
            ConfigError::Rendered { .. }
        ));
        opts.config = Some(MICROK8S_RENDERED.into());
        assert!(matches!(
            detect(&opts).unwrap_err(),
            ConfigError::Rendered { .. }
        ));
    }

    #[test]
    fn k3s_v2_import_needs_the_containerd_version() {
        let path = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml";
        let text = format!(
            "imports = [\"/var/lib/rancher/k3s/agent/etc/containerd/config.toml.d/*.toml\"]\n{V2_RUNC}"
        );
        let root = tree(&[(path, &text)]);
        let mut opts = DetectOptions::new(root.path());
        assert!(matches!(
            detect(&opts).unwrap_err(),
            ConfigError::ContainerdVersionNeeded { .. }
        ));
        opts.containerd_major = Some(1);
        assert!(matches!(
            detect(&opts).unwrap_err(),
            ConfigError::Rendered { .. }
        ));
        opts.containerd_major = Some(2);
        let layout = detect(&opts).unwrap();
        assert_eq!(
            layout.target.path(),
            Path::new("/var/lib/rancher/k3s/agent/etc/containerd/config.toml.d/warden.toml")
        );
        assert_eq!(layout.restart_unit.as_deref(), Some("k3s-agent"));
    }

    #[test]
    fn k0s_managed_uses_containerd_d_even_without_the_import() {
        // Older k0s: version 2, importing a file of its own; it merges containerd.d itself.
        let root = tree(&[(
            "/etc/k0s/containerd.toml",
            "# k0s_managed=true\nversion = 2\nimports = [\"/run/k0s/containerd-cri.toml\"]\n",
        )]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        assert_eq!(layout.distribution, Distribution::K0s);
        assert_eq!(
            layout.target,
            Target::DropIn {
                path: "/etc/k0s/containerd.d/warden.toml".into(),
                version: 2
            }
        );
        assert_eq!(layout.restart_unit, None);
    }

    #[test]
    fn k0s_unmanaged_config_is_edited_and_k0s_restarted() {
        let root = tree(&[
            ("/etc/k0s/containerd.toml", "# my own config\nversion = 3\n"),
            ("/etc/systemd/system/k0scontroller.service", ""),
        ]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        assert!(matches!(layout.target, Target::MainFile { .. }));
        assert_eq!(layout.restart_unit.as_deref(), Some("k0scontroller"));
        assert!(layout.notes.iter().any(|n| n.contains("not k0s-managed")));
    }

    #[test]
    fn k3s_config_v3_toml_is_a_candidate_too() {
        let root = tree(&[(
            "/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml",
            "version = 3\nimports = [\"/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.d/*.toml\"]\n",
        )]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        assert_eq!(layout.distribution, Distribution::K3s);
        assert_eq!(
            layout.target.path(),
            Path::new("/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.d/warden.toml")
        );
    }

    #[test]
    fn kind_is_told_by_its_config_alone() {
        let root = tree(&[(
            PLAIN_CONFIG,
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.test-handler]\nruntime_type = \"io.containerd.runc.v2\"\n",
        )]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        assert_eq!(layout.distribution, Distribution::Kind);
    }

    #[test]
    fn existing_entry_in_main_wins_over_the_drop_in() {
        let root = tree(&[(
            PLAIN_CONFIG,
            "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.warden]\nruntime_type = 'io.containerd.warden.v1'\n",
        )]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        assert!(matches!(layout.target, Target::MainFile { .. }));
    }

    #[test]
    fn disabled_cri_plugin_is_refused() {
        let root = tree(&[(PLAIN_CONFIG, "disabled_plugins = [\"cri\"]\n")]);
        let err = detect(&DetectOptions::new(root.path())).unwrap_err();
        assert!(matches!(err, ConfigError::CriDisabled { .. }), "{err}");
        let root = tree(&[(PLAIN_CONFIG, "version = 2\ndisabled_plugins = \"cri\"\n")]);
        let err = detect(&DetectOptions::new(root.path())).unwrap_err();
        assert!(matches!(err, ConfigError::WrongType { .. }), "{err}");
    }

    #[test]
    fn summary_lists_the_facts() {
        let root = tree(&[(PLAIN_CONFIG, V2_RUNC)]);
        let summary = detect(&DetectOptions::new(root.path())).unwrap().summary();
        assert!(summary.contains("distribution: containerd\n"));
        assert!(summary.contains("target: main file /etc/containerd/config.toml\n"));
        assert!(summary.contains("restart unit: containerd\n"));
    }
}
