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
    self, Distribution, K0S_DROP_IN_DIR, K0S_MANAGED_MARKER, MICROK8S_RENDERED, PLAIN_CONFIG,
    rancher_containerd_dir,
};
use super::edit::has_entry;
use super::error::ConfigError;
use super::glob::{DROP_IN_FILE_NAME, ImportGlob};
use super::source::{ConfigFile, exists, read_bytes, table_at};
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

/// Where warden's runtime entry is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// The main config file itself.
    MainFile { path: PathBuf },
    /// A file of warden's own in a drop-in directory the config imports, written with the
    /// main config's `version`.
    DropIn { path: PathBuf, version: u32 },
}

impl Target {
    /// The file that is written.
    pub fn path(&self) -> &Path {
        match self {
            Target::MainFile { path } | Target::DropIn { path, .. } => path,
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

/// Finds the distribution and reads its main config.
fn locate(
    opts: &DetectOptions,
    notes: &mut Vec<String>,
) -> Result<(Distribution, ConfigFile), ConfigError> {
    let root = opts.root.as_path();
    if let Some(config) = &opts.config {
        refuse_rendered_path(config)?;
        if !config.is_absolute() {
            return Err(ConfigError::NotFound {
                path: config.clone(),
                hint: "--config must be an absolute path on the node".into(),
            });
        }
        let file = ConfigFile::read(root, config)?;
        let found = match Distribution::owning(config) {
            Some(d) => d,
            None => classify_plain(root, &file)?,
        };
        let distribution = reconcile(opts.distribution, found, config, notes)?;
        return Ok((distribution, file));
    }

    if let Some(asked) = opts.distribution {
        let candidates = asked.config_candidates();
        let Some(path) = candidates.iter().find(|p| exists(root, p)) else {
            let others = present_layouts(root)
                .into_iter()
                .map(|(d, p)| format!("{d} at {}", p.display()))
                .collect::<Vec<_>>();
            let found = if others.is_empty() {
                "no containerd config was found".to_owned()
            } else {
                format!("found {}", others.join(", "))
            };
            return Err(ConfigError::DistributionMismatch {
                asked: asked.to_string(),
                found: format!(
                    "there is no {} ({found})",
                    candidates
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            });
        };
        let file = ConfigFile::read(root, path)?;
        let found = if asked.is_plain_containerd() {
            classify_plain(root, &file)?
        } else {
            asked
        };
        let distribution = reconcile(Some(asked), found, path, notes)?;
        return Ok((distribution, file));
    }

    let found = present_layouts(root)
        .into_iter()
        .filter(|(d, _)| !d.is_plain_containerd())
        .collect::<Vec<_>>();
    match found.as_slice() {
        [] => {
            let plain = Path::new(PLAIN_CONFIG);
            if !exists(root, plain) {
                let mut looked_at = vec![plain.to_path_buf()];
                for d in [
                    Distribution::K3s,
                    Distribution::Rke2,
                    Distribution::K0s,
                    Distribution::Microk8s,
                ] {
                    looked_at.extend(d.config_candidates());
                }
                return Err(ConfigError::UnknownLayout {
                    root: root.to_path_buf(),
                    looked_at,
                });
            }
            let file = ConfigFile::read(root, plain)?;
            let distribution = classify_plain(root, &file)?;
            Ok((distribution, file))
        }
        [(distribution, path)] => {
            if exists(root, Path::new(PLAIN_CONFIG)) {
                notes.push(format!(
                    "{PLAIN_CONFIG} also exists but {distribution} runs its own containerd with {}",
                    path.display()
                ));
            }
            Ok((*distribution, ConfigFile::read(root, path)?))
        }
        several => Err(ConfigError::Ambiguous {
            root: root.to_path_buf(),
            found: several
                .iter()
                .map(|(d, p)| format!("{d} ({})", p.display()))
                .collect(),
        }),
    }
}

/// Every distribution whose config exists, with the file (plain containerd once).
fn present_layouts(root: &Path) -> Vec<(Distribution, PathBuf)> {
    [
        Distribution::K3s,
        Distribution::Rke2,
        Distribution::K0s,
        Distribution::Microk8s,
        Distribution::Containerd,
    ]
    .into_iter()
    .filter_map(|d| {
        d.config_candidates()
            .into_iter()
            .find(|p| exists(root, p))
            .map(|p| (d, p))
    })
    .collect()
}

/// Files that a distribution regenerates and warden must never be pointed at.
fn refuse_rendered_path(config: &Path) -> Result<(), ConfigError> {
    if config == Path::new(MICROK8S_RENDERED) {
        return Err(ConfigError::Rendered {
            path: config.to_path_buf(),
            distribution: "microk8s".into(),
            hint: format!(
                "microk8s renders it from {} at every containerd start; omit --config and \
                 warden edits the template",
                distribution::MICROK8S_TEMPLATE
            ),
        });
    }
    let is_template = config
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".tmpl"));
    if let Some(d) = Distribution::owning(config).filter(|d| d.renders_config())
        && is_template
    {
        return Err(ConfigError::Rendered {
            path: config.to_path_buf(),
            distribution: d.to_string(),
            hint: "this is a Go template, not TOML; warden uses the drop-in directory the \
                   rendered config imports (omit --config)"
                .into(),
        });
    }
    Ok(())
}

/// Tells plain containerd, kind and EKS apart by their markers.
fn classify_plain(root: &Path, file: &ConfigFile) -> Result<Distribution, ConfigError> {
    if is_kind(root, file)? {
        return Ok(Distribution::Kind);
    }
    let eks_import = file
        .imports()
        .iter()
        .any(|i| i == "/etc/containerd/config.d/*.toml");
    if eks_import || exists(root, Path::new("/etc/eks")) {
        return Ok(Distribution::Eks);
    }
    Ok(Distribution::Containerd)
}

/// kind's node image has `/kind` (version and product_uuid files), and its config has the
/// `test-handler` runtime and the `cri-base.json` base spec.
fn is_kind(root: &Path, file: &ConfigFile) -> Result<bool, ConfigError> {
    if exists(root, Path::new("/kind/version")) {
        return Ok(true);
    }
    for plugin in [CRI_PLUGIN_V2, CRI_PLUGIN_V3] {
        let Some(runtimes) = table_at(
            &file.path,
            &file.doc,
            &["plugins", plugin, "containerd", "runtimes"],
        )?
        else {
            continue;
        };
        if runtimes.contains_key("test-handler") {
            return Ok(true);
        }
        let kind_spec = runtimes.iter().any(|(_, runtime)| {
            runtime
                .as_table_like()
                .and_then(|r| r.get("base_runtime_spec"))
                .and_then(|v| v.as_str())
                == Some("/etc/containerd/cri-base.json")
        });
        if kind_spec {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Checks an explicit `--distribution` against what the files say.
fn reconcile(
    asked: Option<Distribution>,
    found: Distribution,
    path: &Path,
    notes: &mut Vec<String>,
) -> Result<Distribution, ConfigError> {
    match asked {
        None => Ok(found),
        Some(asked) if asked == found => Ok(found),
        Some(Distribution::Containerd) if found.is_plain_containerd() => {
            notes.push(format!(
                "asked for containerd: this is containerd as {found} configures it"
            ));
            Ok(found)
        }
        Some(asked) => Err(ConfigError::DistributionMismatch {
            asked: asked.to_string(),
            found: format!("{} is {found}'s config", path.display()),
        }),
    }
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

/// What the choice of target depends on.
struct TargetFacts<'a> {
    root: &'a Path,
    main: &'a ConfigFile,
    distribution: Distribution,
    /// Neither rendered by k3s/rke2 nor rewritten by k0s.
    main_editable: bool,
    /// Where warden's drop-in would go, if the config imports a directory for it.
    drop_in: Option<PathBuf>,
    merge_deeply: Option<bool>,
    k0s_managed: bool,
}

/// Where the entry goes: the main file when it already holds one, a drop-in where it is
/// merged deeply, else the main file when it may be edited; otherwise a refusal.
fn choose_target(facts: TargetFacts<'_>, notes: &mut Vec<String>) -> Result<Target, ConfigError> {
    let TargetFacts {
        root,
        main,
        distribution,
        main_editable,
        drop_in,
        merge_deeply,
        k0s_managed,
    } = facts;
    let version = main.version;
    if main_editable && has_entry(main)? {
        notes.push(format!(
            "{} already has a `warden` runtime: warden keeps it there",
            main.path.display()
        ));
        return Ok(Target::MainFile {
            path: main.path.clone(),
        });
    }
    if let Some(path) = drop_in.clone()
        && (k0s_managed || merge_deeply == Some(true))
    {
        return Ok(Target::DropIn { path, version });
    }
    if main_editable {
        match (drop_in.is_some(), merge_deeply) {
            (true, None) => notes.push(
                "containerd's version is unknown and config version 2 is read by 1.x and 2.x: \
                 editing the main file, which works with both (pass the containerd version to \
                 use the drop-in directory on 2.x)"
                    .to_owned(),
            ),
            (true, Some(false)) => notes.push(
                "containerd 1.x replaces whole plugin sections from imported files, so a \
                 drop-in would wipe the CRI config: editing the main file instead"
                    .to_owned(),
            ),
            _ => {}
        }
        if distribution == Distribution::K0s {
            notes.push(format!(
                "{} is not k0s-managed (no `{K0S_MANAGED_MARKER}` first line): it is edited \
                 like any containerd config",
                main.path.display()
            ));
        }
        return Ok(Target::MainFile {
            path: main.path.clone(),
        });
    }
    let dir = rancher_containerd_dir(distribution);
    let user_template = ["config-v3.toml.tmpl", "config.toml.tmpl"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| exists(root, path));
    Err(rendered_refusal(
        main,
        distribution,
        drop_in,
        merge_deeply,
        user_template,
    ))
}

/// The refusal for a k3s/rke2 rendered config without a usable drop-in directory.
fn rendered_refusal(
    main: &ConfigFile,
    distribution: Distribution,
    drop_in: Option<PathBuf>,
    merge_deeply: Option<bool>,
    user_template: Option<PathBuf>,
) -> ConfigError {
    let dir = rancher_containerd_dir(distribution);
    let template = dir.join(if main.version >= 3 {
        "config-v3.toml.tmpl"
    } else {
        "config.toml.tmpl"
    });
    match (drop_in, merge_deeply) {
        (Some(drop_in), None) => ConfigError::ContainerdVersionNeeded {
            path: main.path.clone(),
            reason: format!(
                "the rendered config imports {}, which only containerd 2.x merges deeply",
                drop_in.parent().unwrap_or(&dir).display()
            ),
        },
        (Some(drop_in), Some(_)) => ConfigError::Rendered {
            path: main.path.clone(),
            distribution: distribution.to_string(),
            hint: format!(
                "it imports {}, but containerd 1.x replaces the whole CRI section from a \
                 drop-in, so one holding only a runtime would break it; upgrade {distribution} \
                 to a release with containerd 2 (its rendered config imports \
                 config-v3.toml.d/*.toml), then run warden again",
                drop_in.parent().unwrap_or(&dir).display()
            ),
        },
        // A v3 base template imports the drop-in directory: the user's template dropped it.
        (None, _) if main.version >= 3 && user_template.is_some() => ConfigError::Rendered {
            path: main.path.clone(),
            distribution: distribution.to_string(),
            hint: format!(
                "it imports no drop-in directory because {} replaces {distribution}'s base \
                 template, whose rendering imports {}/config-v3.toml.d/*.toml; start that \
                 template with `{{{{ template \"base\" . }}}}` and keep only your additions below \
                 it, then run warden again (warden never edits or copies templates)",
                user_template.as_deref().unwrap_or(&template).display(),
                dir.display()
            ),
        },
        (None, _) => ConfigError::Rendered {
            path: main.path.clone(),
            distribution: distribution.to_string(),
            hint: format!(
                "it imports no drop-in directory and {distribution} rewrites it at every start; \
                 upgrade {distribution} to a release whose rendered config imports \
                 {}/config-v3.toml.d/*.toml (1.31 and later, with containerd 2) and run warden \
                 again, or add the warden runtime yourself in {} after a \
                 `{{{{ template \"base\" . }}}}` line (warden never copies the rendered config \
                 into a template)",
                dir.display(),
                template.display()
            ),
        },
    }
}

/// On containerd 1.x an imported file holding the CRI plugin table replaces the main
/// file's whole CRI section: an entry added to the main file would be silently ignored.
fn check_not_shadowed(
    main_path: &Path,
    imported: &[ConfigFile],
    mode: MergeMode,
    merge_deeply: Option<bool>,
    notes: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for file in imported {
        let plugin = match file.version {
            1 => "cri",
            2 => CRI_PLUGIN_V2,
            _ => CRI_PLUGIN_V3,
        };
        if table_at(&file.path, &file.doc, &["plugins", plugin])?.is_none() {
            continue;
        }
        if mode == MergeMode::ReplacePluginSections {
            return Err(ConfigError::ShadowedByImport {
                path: main_path.to_path_buf(),
                import: file.path.clone(),
                plugin: plugin.to_owned(),
            });
        }
        if merge_deeply.is_none() {
            notes.push(format!(
                "{} sets `{plugin}`: on containerd 1.x it would replace the main file's whole \
                 CRI section (pass the containerd version to check)",
                file.path.display()
            ));
        }
    }
    Ok(())
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

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let host = root.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(host.parent().unwrap()).unwrap();
            std::fs::write(host, text).unwrap();
        }
        root
    }

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
    fn summary_lists_the_facts() {
        let root = tree(&[(PLAIN_CONFIG, V2_RUNC)]);
        let summary = detect(&DetectOptions::new(root.path())).unwrap().summary();
        assert!(summary.contains("distribution: containerd\n"));
        assert!(summary.contains("target: main file /etc/containerd/config.toml\n"));
        assert!(summary.contains("restart unit: containerd\n"));
    }
}
