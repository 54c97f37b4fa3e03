//! The plan: every file warden would touch, with its exact text before and after.
//!
//! `warden plan` prints it and stops; `warden install` applies it (and keeps each `before`
//! as the backup it restores byte for byte on uninstall). A plan with no changes needs no
//! restart: containerd is restarted only when the effective config changes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use similar::TextDiff;

use super::detect::{NodeLayout, Target};
use super::edit::{EditOutcome, RuntimeEntry, remove_entry, render_drop_in, upsert_entry};
use super::error::ConfigError;
use super::source::{ConfigFile, read_bytes};

/// What happens to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Create,
    Modify,
    Delete,
}

/// One file's change. `before` is `None` for a file that does not exist yet, `after` for a
/// file that is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// The path on the node.
    pub path: PathBuf,
    pub kind: ChangeKind,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// All changes, the restart they need, and what the user should know.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    pub changes: Vec<FileChange>,
    /// The unit to restart, only when a change alters the effective config and the
    /// distribution needs one.
    pub restart: Option<String>,
    pub notes: Vec<String>,
}

impl Plan {
    /// Whether applying the plan changes nothing.
    pub fn is_noop(&self) -> bool {
        self.changes.is_empty()
    }

    /// A unified diff of every change, then the restart and the notes.
    pub fn render_diff(&self) -> String {
        let mut out = String::new();
        if self.changes.is_empty() {
            out.push_str("no changes\n");
        }
        for change in &self.changes {
            let path = change.path.display().to_string();
            let (old_name, new_name) = match change.kind {
                ChangeKind::Create => ("/dev/null".to_owned(), path.clone()),
                ChangeKind::Modify => (path.clone(), path.clone()),
                ChangeKind::Delete => (path.clone(), "/dev/null".to_owned()),
            };
            let before = change.before.as_deref().unwrap_or("");
            let after = change.after.as_deref().unwrap_or("");
            let diff = TextDiff::from_lines(before, after);
            let _ = write!(
                out,
                "{}",
                diff.unified_diff()
                    .context_radius(3)
                    .header(&old_name, &new_name)
            );
        }
        let _ = writeln!(
            out,
            "restart: {}",
            self.restart.as_deref().unwrap_or("none")
        );
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    /// The plan as pretty JSON (the `--output json` form).
    pub fn to_json(&self) -> String {
        // Serializing plain strings, paths and enums cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// What installing the shim from `install_dir` changes on the node described by `layout`
/// (whose files are under `root`).
pub fn plan_install(
    root: &Path,
    layout: &NodeLayout,
    install_dir: &Path,
) -> Result<Plan, ConfigError> {
    let entry = RuntimeEntry::new(install_dir, layout.cgroup.systemd, layout.is_containerd_2())?;
    let mut notes = layout.notes.clone();
    let mut changes = Vec::new();
    match &layout.target {
        Target::MainFile { path } => {
            let file = ConfigFile::read(root, path)?;
            let edited = upsert_entry(&file, &entry)?;
            describe(&edited.outcome, path, &mut notes);
            warn_extra_annotations(&file, &mut notes);
            if edited.outcome != EditOutcome::Unchanged {
                notes.push(format!(
                    "{} is edited in place: its current text (`before`) is the backup that \
                     uninstall restores",
                    path.display()
                ));
                changes.push(FileChange {
                    path: path.clone(),
                    kind: ChangeKind::Modify,
                    before: Some(file.text),
                    after: Some(edited.text),
                });
            }
        }
        Target::DropIn { path, version } => match read_bytes(root, path)? {
            None => {
                notes.push(format!(
                    "creates {} holding only the `warden` runtime",
                    path.display()
                ));
                changes.push(FileChange {
                    path: path.clone(),
                    kind: ChangeKind::Create,
                    before: None,
                    after: Some(render_drop_in(path, *version, &entry)?),
                });
            }
            Some(bytes) => {
                let existing = ConfigFile::parse(path, &bytes);
                let (before, after, outcome) = match existing {
                    // warden's own file name, emptied: write it whole again.
                    Err(ConfigError::Empty { .. }) => (
                        String::from_utf8_lossy(&bytes).into_owned(),
                        render_drop_in(path, *version, &entry)?,
                        EditOutcome::Added,
                    ),
                    Err(e) => return Err(e),
                    Ok(file) => {
                        warn_extra_annotations(&file, &mut notes);
                        let edited = upsert_entry(&file, &entry)?;
                        (file.text, edited.text, edited.outcome)
                    }
                };
                describe(&outcome, path, &mut notes);
                if outcome != EditOutcome::Unchanged {
                    changes.push(FileChange {
                        path: path.clone(),
                        kind: ChangeKind::Modify,
                        before: Some(before),
                        after: Some(after),
                    });
                }
            }
        },
    }
    Ok(finish(layout, changes, notes))
}

/// What removing only warden's entry changes: the entry leaves the main file, or warden's
/// drop-in is deleted (or loses the entry, if someone added other settings to it). For an
/// uninstall with recorded backups, restoring those bytes is preferred.
pub fn plan_remove(root: &Path, layout: &NodeLayout) -> Result<Plan, ConfigError> {
    let mut notes = Vec::new();
    let mut changes = Vec::new();
    let path = layout.target.path();
    if let Some(bytes) = read_bytes(root, path)? {
        let file = match ConfigFile::parse(path, &bytes) {
            Err(ConfigError::Empty { .. }) if matches!(layout.target, Target::DropIn { .. }) => {
                None
            }
            other => Some(other?),
        };
        match (file, &layout.target) {
            (None, _) => changes.push(FileChange {
                path: path.to_path_buf(),
                kind: ChangeKind::Delete,
                before: Some(String::from_utf8_lossy(&bytes).into_owned()),
                after: None,
            }),
            (Some(file), target) => {
                let after = remove_entry(path, &file.text)?;
                let hollow = matches!(target, Target::DropIn { .. }) && is_hollow(path, &after)?;
                if hollow {
                    changes.push(FileChange {
                        path: path.to_path_buf(),
                        kind: ChangeKind::Delete,
                        before: Some(file.text),
                        after: None,
                    });
                } else if after != file.text {
                    changes.push(FileChange {
                        path: path.to_path_buf(),
                        kind: ChangeKind::Modify,
                        before: Some(file.text),
                        after: Some(after),
                    });
                } else {
                    notes.push(format!(
                        "{} holds no `warden` runtime: nothing to remove",
                        path.display()
                    ));
                }
            }
        }
    } else {
        notes.push(format!(
            "{} does not exist: nothing to remove",
            path.display()
        ));
    }
    Ok(finish(layout, changes, notes))
}

fn finish(layout: &NodeLayout, changes: Vec<FileChange>, notes: Vec<String>) -> Plan {
    let restart = if changes.is_empty() {
        None
    } else {
        layout.restart_unit.clone()
    };
    Plan {
        changes,
        restart,
        notes,
    }
}

/// Warns about `pod_annotations` patterns an operator added to the `warden` entry: pod
/// annotations matching them reach the shim. The shim believes only `warden.dev/profile` of
/// what a pod sets, but nothing else should pass.
fn warn_extra_annotations(file: &ConfigFile, notes: &mut Vec<String>) {
    for pattern in super::edit::extra_pod_annotations(file) {
        notes.push(format!(
            "warning: {}: the warden runtime's pod_annotations also passes {pattern:?}; pod \
             annotations matching it reach the shim, which needs only \"warden.dev/*\" \
             (warden leaves the entry as it is: remove the pattern unless you need it)",
            file.path.display()
        ));
    }
}

fn describe(outcome: &EditOutcome, path: &Path, notes: &mut Vec<String>) {
    notes.push(match outcome {
        EditOutcome::Unchanged => format!(
            "{} already registers the `warden` runtime as wanted: nothing to do",
            path.display()
        ),
        EditOutcome::Added => format!("adds the `warden` runtime to {}", path.display()),
        EditOutcome::Updated { keys } => format!(
            "{} had a `warden` runtime with other values: sets {} and keeps everything else",
            path.display(),
            keys.join(", ")
        ),
    });
}

/// Whether a drop-in holds nothing but its `version` (and comments) once the entry is gone.
fn is_hollow(path: &Path, text: &str) -> Result<bool, ConfigError> {
    let file = match ConfigFile::parse(path, text.as_bytes()) {
        Ok(file) => file,
        Err(ConfigError::Empty { .. }) => return Ok(true),
        Err(e) => return Err(e),
    };
    fn hollow(table: &dyn toml_edit::TableLike, skip_version: bool) -> bool {
        table.iter().all(|(key, item)| {
            (skip_version && key == "version")
                || item.as_table_like().is_some_and(|t| hollow(t, false))
        })
    }
    Ok(hollow(file.doc.as_table(), true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd_config::detect::{DetectOptions, detect};
    use crate::containerd_config::test_tree::tree;

    fn apply(root: &Path, plan: &Plan) {
        for change in &plan.changes {
            let host = root.join(change.path.strip_prefix("/").unwrap());
            match &change.after {
                Some(text) => {
                    std::fs::create_dir_all(host.parent().unwrap()).unwrap();
                    std::fs::write(host, text).unwrap();
                }
                None => std::fs::remove_file(host).unwrap(),
            }
        }
    }

    #[test]
    fn drop_in_install_then_remove() {
        let root = tree(&[(
            "/etc/containerd/config.toml",
            "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n",
        )]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        let plan = plan_install(root.path(), &layout, Path::new("/opt/warden/bin")).unwrap();
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].kind, ChangeKind::Create);
        assert_eq!(plan.restart.as_deref(), Some("containerd"));
        apply(root.path(), &plan);

        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        let again = plan_install(root.path(), &layout, Path::new("/opt/warden/bin")).unwrap();
        assert!(again.is_noop());
        assert_eq!(again.restart, None);
        assert!(
            again
                .render_diff()
                .starts_with("no changes\nrestart: none\n")
        );

        let removal = plan_remove(root.path(), &layout).unwrap();
        assert_eq!(removal.changes[0].kind, ChangeKind::Delete);
        apply(root.path(), &removal);
        assert!(
            !root
                .path()
                .join("etc/containerd/conf.d/warden.toml")
                .exists()
        );
    }

    #[test]
    fn drop_in_with_other_settings_only_loses_the_entry() {
        let root = tree(&[
            (
                "/etc/containerd/config.toml",
                "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n",
            ),
            (
                "/etc/containerd/conf.d/warden.toml",
                "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.warden]\nruntime_type = 'io.containerd.warden.v1'\n[plugins.'io.containerd.cri.v1.images']\nsnapshotter = 'native'\n",
            ),
        ]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        let removal = plan_remove(root.path(), &layout).unwrap();
        assert_eq!(removal.changes[0].kind, ChangeKind::Modify);
        assert_eq!(
            removal.changes[0].after.as_deref(),
            Some("version = 3\n[plugins.'io.containerd.cri.v1.images']\nsnapshotter = 'native'\n")
        );
    }

    #[test]
    fn removing_nothing_is_a_no_op() {
        let root = tree(&[("/etc/containerd/config.toml", "version = 2\n")]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        let removal = plan_remove(root.path(), &layout).unwrap();
        assert!(removal.is_noop());
        assert_eq!(removal.restart, None);
    }

    #[test]
    fn main_file_diff_and_json() {
        let root = tree(&[(
            "/etc/containerd/config.toml",
            "version = 2\n# keep me\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n",
        )]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        let plan = plan_install(root.path(), &layout, Path::new("/opt/warden/bin")).unwrap();
        let diff = plan.render_diff();
        assert!(
            diff.contains("--- /etc/containerd/config.toml\n+++ /etc/containerd/config.toml\n")
        );
        assert!(
            diff.contains("+[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.warden]\n")
        );
        assert!(diff.contains("restart: containerd\n"));
        let back: Plan = serde_json::from_str(&plan.to_json()).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn relative_install_dir_is_refused() {
        let root = tree(&[("/etc/containerd/config.toml", "version = 2\n")]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        assert!(matches!(
            plan_install(root.path(), &layout, Path::new("opt/warden")).unwrap_err(),
            ConfigError::InstallDir { .. }
        ));
        assert!(matches!(
            plan_install(root.path(), &layout, Path::new("/opt/../warden")).unwrap_err(),
            ConfigError::InstallDir { .. }
        ));
    }

    #[test]
    fn version_one_main_file_is_refused_at_plan() {
        let root = tree(&[(
            "/etc/containerd/config.toml",
            "[plugins.cri.containerd]\nsnapshotter = \"overlayfs\"\n",
        )]);
        let layout = detect(&DetectOptions::new(root.path())).unwrap();
        assert_eq!(layout.config_version, 1);
        let err = plan_install(root.path(), &layout, Path::new("/opt/warden/bin")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/containerd/config.toml: config version 1 is not supported: migrate with \
             `containerd config migrate`"
        );
    }
}
