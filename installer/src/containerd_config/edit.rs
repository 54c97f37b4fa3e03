//! The structured edit: register (or remove) the `warden` runtime in a containerd config.
//!
//! The edit goes through `toml_edit`, so everything warden does not own keeps its bytes:
//! comments, key order, quoting, indentation. Text is never appended and keys are never
//! found by substring: the CRI runtime table is looked up by its parsed path, chosen from
//! the file's own `version`. A new entry copies the indentation of the runtime beside it so
//! the diff reads like a hand edit.

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml_edit::{DocumentMut, InlineTable, Item, Table, Value};

use super::error::ConfigError;
use super::node::{Node, ensure_tables, normalize_path_keys};
use super::preserve::carry_over;
use super::source::{ConfigFile, dotted, table_at, type_name, wrong_type};
use super::style::{
    Style, annotations, first_key_indent, indent_of, is_literal, sibling_style, string,
};
use super::version::{CRI_PLUGIN_V2, CRI_PLUGIN_V3, runtimes_path};
use warden_common::names::{ANNOTATION_PREFIX, POD_ANNOTATIONS, RUNTIME_TYPE, SHIM_BINARY};

/// The CRI runtime handler name (the RuntimeClass `handler`).
pub const RUNTIME_NAME: &str = "warden";

/// The first lines of a drop-in warden writes: whoever opens the file learns who owns it.
const DROP_IN_HEADER: &str = "# Managed by warden (`warden install`): registers the `warden` runtime with \
containerd's CRI plugin.\n# warden rewrites this file on install and deletes it on uninstall; \
changes made here are lost.\n";

/// What warden's runtime entry must say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeEntry {
    /// `io.containerd.warden.v1` for containerd 2.x; the shim's absolute path for 1.x.
    ///
    /// containerd 1.6's CRI ignores `runtime_path` when it starts a pod's task and looks the
    /// shim up by name on its own `PATH` (measured with Debian's 1.6.20:
    /// `runtime "io.containerd.warden.v1" binary not installed`), while an absolute path in
    /// `runtime_type` works on every version.
    pub runtime_type: String,
    /// Absolute path of the installed shim.
    pub runtime_path: String,
    /// Whether `options.SystemdCgroup = true` is needed (runc uses systemd cgroups).
    pub systemd_cgroup: bool,
}

impl RuntimeEntry {
    /// The entry for a shim installed in `install_dir`, which must be absolute: containerd
    /// uses `runtime_path` as given, and a relative path would resolve against its cwd.
    ///
    /// `containerd_2` says whether the node's containerd is known to be 2.x (which honours
    /// `runtime_path`); when it is not, the entry uses the form that works everywhere.
    pub fn new(
        install_dir: &Path,
        systemd_cgroup: bool,
        containerd_2: bool,
    ) -> Result<Self, ConfigError> {
        let bad = || ConfigError::InstallDir {
            path: install_dir.to_path_buf(),
        };
        if !install_dir.is_absolute()
            || install_dir
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(bad());
        }
        let runtime_path = install_dir.join(SHIM_BINARY);
        let runtime_path = runtime_path.to_str().ok_or_else(bad)?.to_owned();
        let runtime_type = if containerd_2 {
            RUNTIME_TYPE.to_owned()
        } else {
            runtime_path.clone()
        };
        Ok(RuntimeEntry {
            runtime_type,
            runtime_path,
            systemd_cgroup,
        })
    }
}

/// What an edit did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EditOutcome {
    /// An identical entry was already there; the text is returned byte for byte.
    Unchanged,
    /// The entry was added.
    Added,
    /// A `warden` entry existed with other values: these keys were set, all else kept.
    Updated { keys: Vec<String> },
}

/// The edited text and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub text: String,
    pub outcome: EditOutcome,
}

/// Adds or updates the `warden` runtime in `file`, in the CRI table of the file's version.
pub fn upsert_entry(file: &ConfigFile, entry: &RuntimeEntry) -> Result<Edited, ConfigError> {
    let segments = runtimes_path(file.version).ok_or_else(|| ConfigError::VersionOne {
        path: file.path.clone(),
    })?;
    // Type errors along the way are reported before anything is built.
    let style = table_at(&file.path, &file.doc, &segments)?
        .map(sibling_style)
        .unwrap_or_default();

    let mut doc = file.doc.clone();
    normalize_path_keys(&mut doc, &segments);
    let rendered_before = doc.to_string();
    let mut runtimes = ensure_tables(&file.path, &mut doc, &segments)?;
    let key = format!("{}.{RUNTIME_NAME}", dotted(&segments));
    let outcome = match runtimes.get(RUNTIME_NAME).map(type_name) {
        None => {
            insert_new(runtimes, entry, &style);
            EditOutcome::Added
        }
        Some(found) => {
            let Some(node) = runtimes.child(RUNTIME_NAME) else {
                return Err(ConfigError::WrongType {
                    path: file.path.clone(),
                    key,
                    expected: "a table",
                    found,
                });
            };
            let keys = update_existing(&file.path, &key, node, entry)?;
            if keys.is_empty() {
                EditOutcome::Unchanged
            } else {
                EditOutcome::Updated { keys }
            }
        }
    };
    let text = match outcome {
        EditOutcome::Unchanged => file.text.clone(),
        _ => keep_untouched(&file.text, &rendered_before, &doc.to_string()),
    };
    Ok(Edited { text, outcome })
}

/// A whole drop-in file holding only the warden runtime. `version` must be the main
/// config's: containerd refuses a drop-in with a higher version than the file importing it,
/// and the CRI table name follows the version.
pub fn render_drop_in(
    path: &Path,
    version: u32,
    entry: &RuntimeEntry,
) -> Result<String, ConfigError> {
    let segments = runtimes_path(version).ok_or_else(|| ConfigError::VersionOne {
        path: path.to_path_buf(),
    })?;
    let mut doc = DocumentMut::new();
    doc.insert("version", toml_edit::value(i64::from(version)));
    if let Some(mut key) = doc.key_mut("version") {
        key.leaf_decor_mut().set_prefix(DROP_IN_HEADER);
    }
    let runtimes = ensure_tables(path, &mut doc, &segments)?;
    insert_new(runtimes, entry, &Style::default());
    Ok(doc.to_string())
}

/// Whether `file` holds a `warden` runtime (in any CRI table name, whatever its version).
pub fn has_entry(file: &ConfigFile) -> Result<bool, ConfigError> {
    for plugin in [CRI_PLUGIN_V2, CRI_PLUGIN_V3] {
        let segments = ["plugins", plugin, "containerd", "runtimes"];
        if let Some(runtimes) = table_at(&file.path, &file.doc, &segments)?
            && runtimes.contains_key(RUNTIME_NAME)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes the `warden` runtime from `text` (read from `path`), keeping everything else.
/// Text without the entry is returned unchanged. For an uninstall that can restore the
/// original bytes recorded at install time, restoring them is better: this is for when
/// only the entry must go (it gives back the pre-install text byte for byte, except a
/// final newline the install had to add to a file that lacked one).
pub fn remove_entry(path: &Path, text: &str) -> Result<String, ConfigError> {
    let file = ConfigFile::parse(path, text.as_bytes())?;
    let mut doc = file.doc.clone();
    let mut found = Vec::new();
    for plugin in [CRI_PLUGIN_V2, CRI_PLUGIN_V3] {
        let segments = ["plugins", plugin, "containerd", "runtimes"];
        if let Some(runtimes) = table_at(&file.path, &file.doc, &segments)?
            && runtimes.contains_key(RUNTIME_NAME)
        {
            normalize_path_keys(&mut doc, &segments);
            found.push(segments);
        }
    }
    if found.is_empty() {
        return Ok(text.to_owned());
    }
    let rendered_before = doc.to_string();
    for segments in found {
        // Every segment exists (checked above), so nothing is created here.
        ensure_tables(path, &mut doc, &segments)?.remove(RUNTIME_NAME);
    }
    Ok(keep_untouched(text, &rendered_before, &doc.to_string()))
}

/// The edited text with every untouched line as it was in `original` (see
/// [`super::preserve`]); if the renderings do not line up, the rendering itself.
fn keep_untouched(original: &str, rendered_before: &str, rendered_after: &str) -> String {
    carry_over(original, rendered_before, rendered_after)
        .unwrap_or_else(|| rendered_after.to_owned())
}

/// Adds a complete `warden` entry to `runtimes`.
fn insert_new(runtimes: Node<'_>, entry: &RuntimeEntry, style: &Style) {
    match runtimes {
        Node::Std(runtimes) => {
            let mut table = Table::new();
            table
                .decor_mut()
                .set_prefix(format!("\n{}", style.header_indent));
            let literal = style.literal_strings;
            let mut node = Node::Std(&mut table);
            node.set(
                "runtime_type",
                string(&entry.runtime_type, literal),
                &style.key_indent,
            );
            node.set(
                "runtime_path",
                string(&entry.runtime_path, literal),
                &style.key_indent,
            );
            node.set("pod_annotations", annotations(literal), &style.key_indent);
            if entry.systemd_cgroup {
                let mut options = Table::new();
                options
                    .decor_mut()
                    .set_prefix(format!("\n{}", style.options_header_indent));
                Node::Std(&mut options).set(
                    "SystemdCgroup",
                    true.into(),
                    &style.options_key_indent,
                );
                table.insert("options", Item::Table(options));
            }
            runtimes.insert(RUNTIME_NAME, Item::Table(table));
        }
        Node::Inline(runtimes) => {
            let mut table = InlineTable::new();
            table.insert("runtime_type", entry.runtime_type.as_str().into());
            table.insert("runtime_path", entry.runtime_path.as_str().into());
            table.insert("pod_annotations", annotations(false));
            if entry.systemd_cgroup {
                let mut options = InlineTable::new();
                options.insert("SystemdCgroup", true.into());
                table.insert("options", Value::InlineTable(options));
            }
            // The space before `}` belongs to the last value: hand it on to the new one.
            let trailing = runtimes.iter_mut().last().and_then(|(_, last)| {
                let suffix = last.decor().suffix().cloned();
                if suffix.is_some() {
                    last.decor_mut().set_suffix("");
                }
                suffix
            });
            let mut value = Value::InlineTable(table);
            if let Some(suffix) = trailing {
                value.decor_mut().set_suffix(suffix);
            }
            runtimes.insert(RUNTIME_NAME, value);
        }
    }
}

/// The `pod_annotations` patterns of the `warden` runtime in `file` besides warden's own
/// (`warden.dev/*` and names under `warden.dev/`): each lets pod authors' annotations that
/// match it reach the shim, which needs none of them. The plan warns about each.
pub fn extra_pod_annotations(file: &ConfigFile) -> Vec<String> {
    let Some(segments) = runtimes_path(file.version) else {
        return Vec::new();
    };
    let Ok(Some(runtimes)) = table_at(&file.path, &file.doc, &segments) else {
        return Vec::new();
    };
    let Some(list) = runtimes
        .get(RUNTIME_NAME)
        .and_then(Item::as_table_like)
        .and_then(|t| t.get("pod_annotations"))
        .and_then(Item::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|v| v.as_str())
        .filter(|p| *p != POD_ANNOTATIONS && !p.starts_with(ANNOTATION_PREFIX))
        .map(str::to_owned)
        .collect()
}

/// Brings an existing `warden` entry to what `entry` says, touching only the keys warden
/// owns: `runtime_type`, `runtime_path`, that `pod_annotations` holds warden's pattern,
/// and `options.SystemdCgroup`. Returns the keys it set.
fn update_existing(
    path: &Path,
    key: &str,
    mut node: Node<'_>,
    entry: &RuntimeEntry,
) -> Result<Vec<String>, ConfigError> {
    let indent = match &node {
        Node::Std(t) => first_key_indent(t),
        Node::Inline(_) => String::new(),
    };
    let mut changed = Vec::new();
    let literal = is_literal(node.get("runtime_type")) || is_literal(node.get("runtime_path"));
    if node.get("runtime_type").and_then(Item::as_str) != Some(entry.runtime_type.as_str()) {
        node.set(
            "runtime_type",
            string(&entry.runtime_type, literal),
            &indent,
        );
        changed.push("runtime_type".to_owned());
    }
    if node.get("runtime_path").and_then(Item::as_str) != Some(entry.runtime_path.as_str()) {
        node.set(
            "runtime_path",
            string(&entry.runtime_path, literal),
            &indent,
        );
        changed.push("runtime_path".to_owned());
    }
    match node.get("pod_annotations") {
        None => {
            node.set("pod_annotations", annotations(literal), &indent);
            changed.push("pod_annotations".to_owned());
        }
        Some(item) => {
            let Some(array) = item.as_array() else {
                let key = format!("{key}.pod_annotations");
                return Err(wrong_type(path, &key, "an array of strings", item));
            };
            if !array.iter().any(|v| v.as_str() == Some(POD_ANNOTATIONS)) {
                let mut array = array.clone();
                array.push(string(POD_ANNOTATIONS, literal));
                node.set("pod_annotations", Value::Array(array), &indent);
                changed.push("pod_annotations".to_owned());
            }
        }
    }
    let options_indent = indent.clone();
    let has_options = node.get("options").is_some();
    if has_options && node.child("options").is_none() {
        let key = format!("{key}.options");
        let item = node.get("options").unwrap_or(&Item::None);
        return Err(wrong_type(path, &key, "a table", item));
    }
    // warden owns this key: a value of another type is simply replaced.
    let systemd_now = node
        .get("options")
        .and_then(Item::as_table_like)
        .and_then(|o| o.get("SystemdCgroup"))
        .map(Item::as_bool);
    match (entry.systemd_cgroup, systemd_now) {
        (true, Some(Some(true))) | (false, None) | (false, Some(Some(false))) => {}
        (want, _) => {
            if !has_options {
                insert_options(&mut node);
            }
            if let Some(mut options) = node.child("options") {
                let options_key_indent = match &options {
                    Node::Std(t) if !t.is_empty() => first_key_indent(t),
                    _ => options_indent.clone(),
                };
                options.set("SystemdCgroup", want.into(), &options_key_indent);
            }
            changed.push("options.SystemdCgroup".to_owned());
        }
    }
    Ok(changed)
}

/// Adds an empty `options` table to a warden entry that has none.
fn insert_options(node: &mut Node<'_>) {
    match node {
        Node::Std(t) => {
            let mut options = Table::new();
            let header_indent = indent_of(t.decor().prefix());
            options.decor_mut().set_prefix(format!("\n{header_indent}"));
            t.insert("options", Item::Table(options));
        }
        Node::Inline(t) => {
            t.insert("options", Value::InlineTable(InlineTable::new()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/containerd/config.toml";

    fn file(text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new(PATH), text.as_bytes()).unwrap()
    }

    fn entry(systemd: bool) -> RuntimeEntry {
        RuntimeEntry::new(Path::new("/opt/warden/bin"), systemd, true).unwrap()
    }

    fn upsert(text: &str, systemd: bool) -> Edited {
        upsert_entry(&file(text), &entry(systemd)).unwrap()
    }

    #[test]
    fn pod_annotations_beyond_wardens_are_named() {
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.warden]\npod_annotations = [\"warden.dev/*\", \"*\", \"io.kubernetes.cri.*\"]\n";
        let file = ConfigFile::parse(Path::new("/c.toml"), text.as_bytes()).unwrap();
        assert_eq!(
            extra_pod_annotations(&file),
            vec!["*".to_string(), "io.kubernetes.cri.*".into()]
        );
        let ours = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.warden]\npod_annotations = [\"warden.dev/*\"]\n";
        let file = ConfigFile::parse(Path::new("/c.toml"), ours.as_bytes()).unwrap();
        assert!(extra_pod_annotations(&file).is_empty());
    }

    #[test]
    fn adds_beside_runc_with_its_indentation() {
        let text = r#"version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2" # the default
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true

  # registry settings
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
"#;
        let edited = upsert(text, true);
        assert_eq!(edited.outcome, EditOutcome::Added);
        assert_eq!(
            edited.text,
            r#"version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2" # the default
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = true

  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.warden]
    runtime_type = "io.containerd.warden.v1"
    runtime_path = "/opt/warden/bin/containerd-shim-warden-v1"
    pod_annotations = ["warden.dev/*"]

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.warden.options]
      SystemdCgroup = true

  # registry settings
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
"#
        );
        // Idempotent, byte for byte.
        let again = upsert(&edited.text, true);
        assert_eq!(again.outcome, EditOutcome::Unchanged);
        assert_eq!(again.text, edited.text);
        // And removable back to the original bytes.
        assert_eq!(remove_entry(Path::new(PATH), &edited.text).unwrap(), text);
    }

    #[test]
    fn v3_and_v4_use_the_cri_runtime_plugin() {
        for version in [3, 4] {
            let edited = upsert(&format!("version = {version}\n"), false);
            assert_eq!(
                edited.text,
                format!(
                    "version = {version}\n\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.warden]\nruntime_type = \"io.containerd.warden.v1\"\nruntime_path = \"/opt/warden/bin/containerd-shim-warden-v1\"\npod_annotations = [\"warden.dev/*\"]\n"
                )
            );
        }
    }

    #[test]
    fn version_one_is_refused() {
        let err = upsert_entry(&file("oom_score = 0\n"), &entry(false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/containerd/config.toml: config version 1 is not supported: migrate with `containerd config migrate`"
        );
    }

    #[test]
    fn wrong_types_on_the_way_are_refused() {
        for (text, key) in [
            (
                "version = 2\n[[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes]]\nx = 1\n",
                "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes",
            ),
            (
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\ncontainerd = \"yes\"\n",
                "plugins.\"io.containerd.grpc.v1.cri\".containerd",
            ),
            (
                "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]\nwarden = \"x\"\n",
                "plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.warden",
            ),
            (
                "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.warden]\npod_annotations = \"warden.dev/*\"\n",
                "plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.warden.pod_annotations",
            ),
        ] {
            match upsert_entry(&file(text), &entry(false)) {
                Err(ConfigError::WrongType { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{text}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn inline_runtimes_get_an_inline_entry() {
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\nruntimes = { runc = { runtime_type = \"io.containerd.runc.v2\" } }\n";
        let edited = upsert(text, true);
        assert_eq!(edited.outcome, EditOutcome::Added);
        assert!(
            edited.text.contains("warden = { runtime_type = \"io.containerd.warden.v1\", runtime_path = \"/opt/warden/bin/containerd-shim-warden-v1\", pod_annotations = [\"warden.dev/*\"], options = { SystemdCgroup = true } }"),
            "{}",
            edited.text
        );
        assert_eq!(upsert(&edited.text, true).outcome, EditOutcome::Unchanged);
        let reparsed = file(&edited.text);
        assert!(has_entry(&reparsed).unwrap());
    }

    #[test]
    fn dotted_keys_are_extended() {
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\ncontainerd.runtimes.runc.runtime_type = \"io.containerd.runc.v2\"\n";
        let edited = upsert(text, false);
        let reparsed = file(&edited.text);
        assert!(has_entry(&reparsed).unwrap(), "{}", edited.text);
        assert!(edited.text.starts_with(text), "{}", edited.text);
        assert_eq!(upsert(&edited.text, false).outcome, EditOutcome::Unchanged);
    }

    #[test]
    fn existing_entry_is_updated_key_by_key() {
        let text = r#"version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.warden]
  # set by hand
  runtime_type = "io.containerd.warden.v1"
  runtime_path = "/usr/local/bin/containerd-shim-warden-v1" # old place
  pod_annotations = ["example.com/debug"]
  privileged_without_host_devices = true
"#;
        let edited = upsert(text, true);
        assert_eq!(
            edited.outcome,
            EditOutcome::Updated {
                keys: vec![
                    "runtime_path".into(),
                    "pod_annotations".into(),
                    "options.SystemdCgroup".into()
                ]
            }
        );
        assert_eq!(
            edited.text,
            r#"version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.warden]
  # set by hand
  runtime_type = "io.containerd.warden.v1"
  runtime_path = "/opt/warden/bin/containerd-shim-warden-v1" # old place
  pod_annotations = ["example.com/debug", "warden.dev/*"]
  privileged_without_host_devices = true

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.warden.options]
  SystemdCgroup = true
"#
        );
        assert_eq!(upsert(&edited.text, true).outcome, EditOutcome::Unchanged);
    }

    #[test]
    fn systemd_cgroup_is_turned_off_when_runc_uses_cgroupfs() {
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.warden]\nruntime_type = \"io.containerd.warden.v1\"\nruntime_path = \"/opt/warden/bin/containerd-shim-warden-v1\"\npod_annotations = [\"warden.dev/*\"]\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.warden.options]\nSystemdCgroup = true\n";
        let edited = upsert(text, false);
        assert_eq!(
            edited.outcome,
            EditOutcome::Updated {
                keys: vec!["options.SystemdCgroup".into()]
            }
        );
        assert!(edited.text.ends_with("SystemdCgroup = false\n"));
        // Identical entry: nothing at all.
        assert_eq!(upsert(text, true).outcome, EditOutcome::Unchanged);
    }

    #[test]
    fn drop_in_is_a_whole_small_file() {
        let text = render_drop_in(
            Path::new("/etc/containerd/conf.d/warden.toml"),
            3,
            &entry(true),
        )
        .unwrap();
        assert_eq!(
            text,
            format!(
                "{DROP_IN_HEADER}version = 3\n\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.warden]\nruntime_type = \"io.containerd.warden.v1\"\nruntime_path = \"/opt/warden/bin/containerd-shim-warden-v1\"\npod_annotations = [\"warden.dev/*\"]\n\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.warden.options]\nSystemdCgroup = true\n"
            )
        );
        let parsed = file(&text);
        assert_eq!(parsed.version, 3);
        assert_eq!(upsert(&text, true).outcome, EditOutcome::Unchanged);
        assert!(render_drop_in(Path::new("/x.toml"), 1, &entry(true)).is_err());
    }

    #[test]
    fn file_without_final_newline() {
        let text = "version = 2 # no newline at the end";
        let edited = upsert(text, false);
        let reparsed = file(&edited.text);
        assert!(has_entry(&reparsed).unwrap(), "{}", edited.text);
        assert!(edited.text.starts_with(text), "{}", edited.text);
        assert_eq!(
            edited.text,
            format!(
                "{text}\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.warden]\nruntime_type = \"io.containerd.warden.v1\"\nruntime_path = \"/opt/warden/bin/containerd-shim-warden-v1\"\npod_annotations = [\"warden.dev/*\"]\n"
            )
        );
        assert_eq!(upsert(&edited.text, false).outcome, EditOutcome::Unchanged);
        // The newline the edit needed stays: byte-exact undo restores the recorded bytes.
        assert_eq!(
            remove_entry(Path::new(PATH), &edited.text).unwrap(),
            format!("{text}\n")
        );
    }

    #[test]
    fn remove_without_entry_is_identity() {
        let text = "version = 2 # odd\n\n[grpc]\n  address = \"/run/containerd/containerd.sock\"\n";
        assert_eq!(remove_entry(Path::new(PATH), text).unwrap(), text);
    }
}
