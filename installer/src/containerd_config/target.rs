//! Choosing where warden's entry goes, or refusing.
//!
//! The main file when it already holds a `warden` runtime; a drop-in where containerd
//! merges one deeply (2.x) or k0s merges its own; else the main file when it may be edited
//! (on 1.x, the plan's `before` is the backup). Files that k3s and rke2 render are never
//! edited: without a usable drop-in directory the answer is a refusal that says what the
//! user can do. On 1.x, an imported file that carries the CRI plugin section would replace
//! the main file's, so that is refused too.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::cgroup::MergeMode;
use super::distribution::{Distribution, K0S_MANAGED_MARKER, rancher_containerd_dir};
use super::edit::has_entry;
use super::error::ConfigError;
use super::source::{ConfigFile, exists, table_at};
use super::version::{CRI_PLUGIN_V2, CRI_PLUGIN_V3};

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

/// What the choice of target depends on.
pub struct TargetFacts<'a> {
    pub root: &'a Path,
    pub main: &'a ConfigFile,
    pub distribution: Distribution,
    /// Neither rendered by k3s/rke2 nor rewritten by k0s.
    pub main_editable: bool,
    /// Where warden's drop-in would go, if the config imports a directory for it.
    pub drop_in: Option<PathBuf>,
    pub merge_deeply: Option<bool>,
    pub k0s_managed: bool,
}

/// Where the entry goes: the main file when it already holds one, a drop-in where it is
/// merged deeply, else the main file when it may be edited; otherwise a refusal.
pub fn choose_target(
    facts: TargetFacts<'_>,
    notes: &mut Vec<String>,
) -> Result<Target, ConfigError> {
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
pub fn check_not_shadowed(
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
