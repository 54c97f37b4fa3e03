//! Golden tests over the corpus of real containerd configs in `test/configs/`.
//!
//! Each case is a directory: `case.toml` (the inputs: containerd version, overrides), a
//! `root/` tree standing for the node's `/`, and the goldens: `expected.plan` and
//! `expected.json` for a plan, or `expected.error` for a refusal. For every case:
//!
//! - the plan (or the error) is exactly the golden one (`UPDATE_GOLDEN=1` rewrites them);
//! - a refusal leaves every file byte-identical;
//! - applying the plan, then planning again, gives no change and no restart;
//! - comments of an edited file survive the edit;
//! - restoring the recorded `before` texts gives back the original tree byte for byte, and
//!   so does removing only the entry when the install added it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use warden_installer::containerd_config::edit::has_entry;
use warden_installer::containerd_config::{
    ConfigError, ConfigFile, ContainerdVersion, DetectOptions, Distribution, EditOutcome,
    FileChange, NodeLayout, Plan, RuntimeEntry, detect, plan_install, plan_remove, remove_entry,
    upsert_entry,
};

const DEFAULT_INSTALL_DIR: &str = "/opt/warden/bin";

fn corpus_dir() -> PathBuf {
    warden_test::workspace_root().join("test/configs")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// The inputs of one case, from its `case.toml`.
struct Case {
    name: String,
    dir: PathBuf,
    distribution: Option<Distribution>,
    config: Option<PathBuf>,
    containerd_major: Option<u32>,
    install_dir: PathBuf,
}

fn load_case(dir: &Path) -> Case {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let text = fs::read_to_string(dir.join("case.toml")).unwrap();
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    let string = |key: &str| doc.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    assert!(
        string("description").is_some(),
        "{name}: case.toml needs a description"
    );
    let containerd_major = match (
        doc.get("containerd_major").and_then(|v| v.as_integer()),
        string("containerd_version_output"),
    ) {
        (Some(major), _) => Some(major as u32),
        (None, Some(output)) => Some(ContainerdVersion::parse(&output).unwrap().major),
        (None, None) => None,
    };
    Case {
        distribution: string("distribution").map(|d| d.parse().unwrap()),
        config: string("config").map(PathBuf::from),
        containerd_major,
        install_dir: PathBuf::from(
            string("install_dir").unwrap_or_else(|| DEFAULT_INSTALL_DIR.into()),
        ),
        name,
        dir: dir.to_path_buf(),
    }
}

fn cases() -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.toml").is_file())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| load_case(d)).collect()
}

/// Every file under `dir`, by path relative to it.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in snapshot(from) {
        let target = to.join(rel);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(target, bytes).unwrap();
    }
}

fn host(root: &Path, node_path: &Path) -> PathBuf {
    root.join(node_path.strip_prefix("/").unwrap())
}

/// Writes each change's `after` (or deletes the file), as `warden install` will.
fn apply(root: &Path, plan: &Plan) {
    for change in &plan.changes {
        let path = host(root, &change.path);
        match &change.after {
            Some(text) => {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, text).unwrap();
            }
            None => fs::remove_file(path).unwrap(),
        }
    }
}

/// Puts back each change's `before` (or deletes a created file), as uninstall does from
/// the recorded state.
fn restore(root: &Path, plan: &Plan) {
    for change in &plan.changes {
        let path = host(root, &change.path);
        match &change.before {
            Some(text) => fs::write(path, text).unwrap(),
            None => fs::remove_file(path).unwrap(),
        }
    }
}

fn options(case: &Case, root: &Path) -> DetectOptions {
    let mut opts = DetectOptions::new(root);
    opts.distribution = case.distribution;
    opts.config = case.config.clone();
    opts.containerd_major = case.containerd_major;
    opts
}

fn run(case: &Case, root: &Path) -> Result<(NodeLayout, Plan), ConfigError> {
    let layout = detect(&options(case, root))?;
    let plan = plan_install(root, &layout, &case.install_dir)?;
    Ok((layout, plan))
}

fn check_golden(case: &Case, file: &str, actual: &str, failures: &mut Vec<String>) {
    let path = case.dir.join(file);
    if updating() {
        fs::write(&path, actual).unwrap();
        return;
    }
    match fs::read_to_string(&path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{}: {file} differs from the golden file\n--- expected\n{expected}\n--- actual\n{actual}",
            case.name
        )),
        Err(_) => failures.push(format!(
            "{}: {file} is missing (run with UPDATE_GOLDEN=1 to write it)",
            case.name
        )),
    }
}

/// Comment lines (`# ...`, trimmed) of a TOML text, in order.
fn comments(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.find('#').map(|i| l[i..].trim().to_owned()))
        .collect()
}

fn plan_golden(layout: &NodeLayout, plan: &Plan) -> String {
    format!("{}\n{}", layout.summary(), plan.render_diff())
}

fn json_golden(layout: &NodeLayout, plan: &Plan) -> String {
    let value = serde_json::json!({ "layout": layout, "plan": plan });
    format!("{}\n", serde_json::to_string_pretty(&value).unwrap())
}

/// Everything checked for a case whose install plan succeeds.
fn check_install(case: &Case, root: &Path, layout: &NodeLayout, plan: &Plan) -> Vec<String> {
    let mut failures = Vec::new();
    let original = snapshot(root);
    let fail =
        |failures: &mut Vec<String>, msg: String| failures.push(format!("{}: {msg}", case.name));

    if plan.is_noop() != plan.restart.is_none() && layout.restart_unit.is_some() {
        fail(
            &mut failures,
            "a restart must come with a change, and a change with a restart".into(),
        );
    }

    for change in &plan.changes {
        let after = change.after.as_deref().unwrap_or_default();
        let edited = ConfigFile::parse(&change.path, after.as_bytes())
            .unwrap_or_else(|e| panic!("{}: edited text does not parse: {e}", case.name));
        if !has_entry(&edited).unwrap() {
            fail(
                &mut failures,
                format!("{} has no warden entry", change.path.display()),
            );
        }
        if let Some(before) = &change.before {
            let before_comments = comments(before);
            let after_comments = comments(after);
            for comment in &before_comments {
                if !after_comments.contains(comment) {
                    fail(&mut failures, format!("comment lost: {comment}"));
                }
            }
            let before_file = ConfigFile::parse(&change.path, before.as_bytes()).unwrap();
            if before_file.version != edited.version {
                fail(&mut failures, "the edit changed the config version".into());
            }
            // An entry the install added can be removed back to the original bytes.
            if was_added(case, layout, change)
                && remove_entry(&change.path, after).unwrap() != *before
            {
                fail(
                    &mut failures,
                    format!(
                        "removing the entry does not restore {}",
                        change.path.display()
                    ),
                );
            }
        }
    }

    // Install, then install again: nothing more to do.
    apply(root, plan);
    match run(case, root) {
        Ok((_, again)) => {
            if !again.is_noop() || again.restart.is_some() {
                fail(
                    &mut failures,
                    format!("second install is not a no-op:\n{}", again.render_diff()),
                );
            }
        }
        Err(e) => fail(&mut failures, format!("second install failed: {e}")),
    }

    // Uninstall by restoring the recorded bytes.
    restore(root, plan);
    if snapshot(root) != original {
        fail(
            &mut failures,
            "restoring `before` did not give back the original tree".into(),
        );
    }

    // Uninstall by removing only the entry, where the install added it.
    if !plan.changes.is_empty() && plan.changes.iter().all(|c| was_added(case, layout, c)) {
        apply(root, plan);
        let layout = detect(&options(case, root)).unwrap();
        let removal = plan_remove(root, &layout).unwrap();
        apply(root, &removal);
        if snapshot(root) != original {
            fail(
                &mut failures,
                format!(
                    "removing the entry did not give back the original tree:\n{}",
                    removal.render_diff()
                ),
            );
        }
        if removal.restart != layout.restart_unit {
            fail(&mut failures, "removal must restart like install".into());
        }
    }
    failures
}

/// Whether the install created the file or added the entry (rather than updating one).
fn was_added(case: &Case, layout: &NodeLayout, change: &FileChange) -> bool {
    let Some(before) = &change.before else {
        return true;
    };
    let entry = RuntimeEntry::new(
        &case.install_dir,
        layout.cgroup.systemd,
        layout.is_containerd_2(),
    )
    .unwrap();
    let file = ConfigFile::parse(&change.path, before.as_bytes()).unwrap();
    upsert_entry(&file, &entry).unwrap().outcome == EditOutcome::Added
}

#[test]
fn corpus_plans_match_goldens_and_round_trip() {
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("root");
        fs::create_dir_all(&root).unwrap();
        copy_tree(&case.dir.join("root"), &root);
        let before = snapshot(&root);

        match run(case, &root) {
            Ok((layout, plan)) => {
                if case.dir.join("expected.error").exists() && !updating() {
                    failures.push(format!("{}: expected an error, got a plan", case.name));
                    continue;
                }
                check_golden(
                    case,
                    "expected.plan",
                    &plan_golden(&layout, &plan),
                    &mut failures,
                );
                check_golden(
                    case,
                    "expected.json",
                    &json_golden(&layout, &plan),
                    &mut failures,
                );
                failures.extend(check_install(case, &root, &layout, &plan));
            }
            Err(e) => {
                let message = format!(
                    "{}\n",
                    e.to_string().replace(&root.display().to_string(), "<root>")
                );
                check_golden(case, "expected.error", &message, &mut failures);
                if case.dir.join("expected.plan").exists() && !updating() {
                    failures.push(format!("{}: expected a plan, got: {message}", case.name));
                }
                if snapshot(&root) != before {
                    failures.push(format!("{}: a refusal changed files", case.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn corpus_has_every_required_case() {
    let names: Vec<String> = cases().into_iter().map(|c| c.name).collect();
    for required in [
        "containerd-1.6-default",
        "containerd-1.7-default",
        "containerd-2.0-default",
        "containerd-2.1-default",
        "containerd-2.2-default",
        "containerd-2.3-default",
        "k3s-v2-no-import",
        "k3s-v2-import",
        "k3s-v3-no-import",
        "k3s-v3-import",
        "rke2-v3",
        "k0s",
        "microk8s",
        "kind",
        "eks-containerd-1.7",
        "eks-containerd-2",
        "odd-formatting",
        "existing-warden-entry",
        "malformed-bad-toml",
        "malformed-runtimes-array",
        "malformed-duplicate-table",
        "malformed-binary",
        "malformed-empty",
        "malformed-version-1",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "missing corpus case {required}"
        );
    }
}

#[test]
fn malformed_inputs_are_refused_with_the_file_named() {
    for case in cases().iter().filter(|c| c.name.starts_with("malformed-")) {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("root");
        copy_tree(&case.dir.join("root"), &root);
        let before = snapshot(&root);
        let err = match run(case, &root) {
            Ok(_) => panic!("{}: malformed input accepted", case.name),
            Err(e) => e,
        };
        assert!(
            err.to_string().starts_with("/etc/containerd/config.toml: "),
            "{}: {err}",
            case.name
        );
        assert_eq!(snapshot(&root), before, "{}: files changed", case.name);
    }
}
