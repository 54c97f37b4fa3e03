//! Which cgroup driver runc uses, read from the effective config.
//!
//! The warden shim must put pods in cgroups the same way runc does, or the kubelet and the
//! shim disagree about where a pod lives. containerd has no node-wide setting for it: each
//! runtime's `options.SystemdCgroup` decides, and an absent key means cgroupfs (k3s and rke2
//! always write the key; their absence would mean false too). The runtime that counts is
//! the CRI default runtime (`default_runtime_name`, `runc` unless set).

use std::path::PathBuf;

use serde::Serialize;
use toml_edit::Item;

use super::error::ConfigError;
use super::source::{ConfigFile, dotted, table_at, wrong_type};
use super::version::{CRI_PLUGIN_V2, CRI_PLUGIN_V3};

/// The cgroup driver found, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupDriver {
    /// `SystemdCgroup = true` on the default runtime.
    pub systemd: bool,
    /// The default runtime's name (`runc` unless `default_runtime_name` says otherwise).
    pub runtime: String,
    /// The file that set `SystemdCgroup`, if any did.
    pub source: Option<PathBuf>,
}

/// The placeholder microk8s's template uses for the default runtime.
const MICROK8S_RUNTIME_PLACEHOLDER: &str = "${RUNTIME}";

/// How a later file combines with earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeMode {
    /// containerd 2.x: keys of later files override, tables merge.
    Deep,
    /// containerd 1.x: a later file that has a plugin's table replaces it whole.
    ReplacePluginSections,
}

/// The CRI plugin holding runtimes in a file of `version` (1 is the pre-2 short name).
fn cri_plugin_of(version: u32) -> &'static str {
    match version {
        1 => "cri",
        2 => CRI_PLUGIN_V2,
        _ => CRI_PLUGIN_V3,
    }
}

/// Reads the driver from `files`, in the order containerd loads them (main file first).
pub fn cgroup_driver(files: &[&ConfigFile], mode: MergeMode) -> Result<CgroupDriver, ConfigError> {
    let mut default_runtime: Option<String> = None;
    let mut settings: Vec<(String, bool, PathBuf)> = Vec::new();
    for file in files {
        let plugin = cri_plugin_of(file.version);
        if table_at(&file.path, &file.doc, &["plugins", plugin])?.is_none() {
            continue;
        }
        if mode == MergeMode::ReplacePluginSections {
            default_runtime = None;
            settings.clear();
        }
        let containerd_path = ["plugins", plugin, "containerd"];
        if let Some(containerd) = table_at(&file.path, &file.doc, &containerd_path)?
            && let Some(item) = containerd.get("default_runtime_name")
        {
            match item.as_str() {
                Some(name) => default_runtime = Some(name.to_owned()),
                None => {
                    let key = format!("{}.default_runtime_name", dotted(&containerd_path));
                    return Err(wrong_type(&file.path, &key, "a string", item));
                }
            }
        }
        let runtimes_path = ["plugins", plugin, "containerd", "runtimes"];
        let Some(runtimes) = table_at(&file.path, &file.doc, &runtimes_path)? else {
            continue;
        };
        for (name, runtime) in runtimes.iter() {
            let runtime_key = format!("{}.{}", dotted(&runtimes_path), dotted(&[name]));
            let Some(runtime) = runtime.as_table_like() else {
                return Err(wrong_type(&file.path, &runtime_key, "a table", runtime));
            };
            let Some(options) = runtime.get("options") else {
                continue;
            };
            let options_key = format!("{runtime_key}.options");
            let Some(options) = options.as_table_like() else {
                return Err(wrong_type(&file.path, &options_key, "a table", options));
            };
            if let Some(item) = options.get("SystemdCgroup") {
                let value = systemd_value(&file.path, &options_key, item)?;
                settings.retain(|(n, _, _)| n != name);
                settings.push((name.to_owned(), value, file.path.clone()));
            }
        }
    }
    let runtime = match default_runtime {
        // microk8s's template says `${RUNTIME}`; the snap renders it as `runc`.
        Some(name) if name == MICROK8S_RUNTIME_PLACEHOLDER => "runc".to_owned(),
        Some(name) => name,
        None => "runc".to_owned(),
    };
    let found = settings.into_iter().find(|(n, _, _)| *n == runtime);
    Ok(CgroupDriver {
        systemd: found.as_ref().is_some_and(|(_, v, _)| *v),
        runtime,
        source: found.map(|(_, _, p)| p),
    })
}

fn systemd_value(
    path: &std::path::Path,
    options_key: &str,
    item: &Item,
) -> Result<bool, ConfigError> {
    item.as_bool().ok_or_else(|| {
        wrong_type(
            path,
            &format!("{options_key}.SystemdCgroup"),
            "a boolean",
            item,
        )
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn file(path: &str, text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new(path), text.as_bytes()).unwrap()
    }

    #[test]
    fn absent_means_cgroupfs() {
        let f = file(
            "/c.toml",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n",
        );
        let d = cgroup_driver(&[&f], MergeMode::Deep).unwrap();
        assert!(!d.systemd);
        assert_eq!(d.runtime, "runc");
        assert_eq!(d.source, None);
    }

    #[test]
    fn v3_systemd_true() {
        let f = file(
            "/c.toml",
            "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
        );
        let d = cgroup_driver(&[&f], MergeMode::Deep).unwrap();
        assert!(d.systemd);
        assert_eq!(d.source.as_deref(), Some(Path::new("/c.toml")));
    }

    #[test]
    fn default_runtime_name_is_followed() {
        let f = file(
            "/c.toml",
            r#"version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
default_runtime_name = "crun"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = false
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]
SystemdCgroup = true
"#,
        );
        let d = cgroup_driver(&[&f], MergeMode::Deep).unwrap();
        assert!(d.systemd);
        assert_eq!(d.runtime, "crun");
    }

    #[test]
    fn microk8s_runtime_placeholder_is_runc() {
        let f = file(
            "/t.toml",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"${RUNTIME}\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
        );
        let d = cgroup_driver(&[&f], MergeMode::Deep).unwrap();
        assert_eq!(d.runtime, "runc");
        assert!(d.systemd);
    }

    #[test]
    fn deep_merge_lets_a_drop_in_override() {
        let main = file(
            "/main.toml",
            "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\nSystemdCgroup = false\n",
        );
        let drop_in = file(
            "/d/90.toml",
            "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
        );
        let d = cgroup_driver(&[&main, &drop_in], MergeMode::Deep).unwrap();
        assert!(d.systemd);
        assert_eq!(d.source.as_deref(), Some(Path::new("/d/90.toml")));
    }

    #[test]
    fn containerd_1_replaces_the_whole_section() {
        let main = file(
            "/main.toml",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = true\n",
        );
        let drop_in = file(
            "/d/90.toml",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"pause\"\n",
        );
        let deep = cgroup_driver(&[&main, &drop_in], MergeMode::Deep).unwrap();
        assert!(deep.systemd);
        let replaced = cgroup_driver(&[&main, &drop_in], MergeMode::ReplacePluginSections).unwrap();
        assert!(!replaced.systemd);
    }

    #[test]
    fn wrong_types_are_errors() {
        let f = file(
            "/c.toml",
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\nSystemdCgroup = \"true\"\n",
        );
        let err = cgroup_driver(&[&f], MergeMode::Deep).unwrap_err();
        assert!(matches!(err, ConfigError::WrongType { .. }), "{err}");
        let f = file(
            "/c.toml",
            "version = 2\n[[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes]]\nruntime_type = \"x\"\n",
        );
        let err = cgroup_driver(&[&f], MergeMode::Deep).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::WrongType {
                    found: "an array of tables",
                    ..
                }
            ),
            "{err}"
        );
    }
}
