//! Finding the distribution and its main containerd config.
//!
//! Overrides come first: `--config` names the file (its path tells the distribution, or
//! markers in it tell plain containerd, kind and EKS apart) and `--distribution` restricts
//! the search to that distribution's files; either must agree with what is found. Without
//! them, a Kubernetes distribution's own containerd wins over a stray
//! `/etc/containerd/config.toml` (Docker's, say), and two distributions at once are
//! refused rather than guessed.

use std::path::{Path, PathBuf};

use super::distribution::{self, Distribution, MICROK8S_RENDERED, PLAIN_CONFIG};
use super::error::ConfigError;
use super::source::{ConfigFile, exists, table_at};
use super::version::{CRI_PLUGIN_V2, CRI_PLUGIN_V3};

/// Finds the distribution and reads its main config.
pub fn locate(
    opts: &super::detect::DetectOptions,
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
