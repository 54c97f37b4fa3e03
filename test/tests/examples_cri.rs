//! The examples' command-line pods through CRI, from their own manifests: each `pod.yaml` of
//! `examples/` is read and sent to containerd's CRI plugin as the kubelet would send it
//! (`RunPodSandbox` with the pod's namespace, annotations and `runtimeClassName`,
//! `CreateContainer` with the container's image, command, args, env and volumes), with the
//! example's own `policy.toml` as the node policy. Each one's output is asserted from its CRI
//! log and its profile and grants from the audit log; then the same pod without its profile
//! annotation runs under its namespace's default (`strict`) and is denied what the profile
//! granted.
//!
//! The translation refuses any manifest setting it does not know, so a manifest that grows a
//! setting this test would silently drop fails here. What it knowingly leaves out:
//! `imagePullPolicy` (the image is imported, never pulled), `restartPolicy` (each pod runs
//! once), `resources` (the profile's limits bound the guest; the cgroup limits the kubelet
//! would add are not what these examples show), `ports` (the pod uses the node's network:
//! there is no CNI here). The HTTP examples (Deployments) run under `ctr` in
//! `examples.rs`; the CRI path of an HTTP service is in `cri_pods.rs`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cri::{CriNode, HANDLER, cri_node, log_lines};
use serde_json::Value;
use tempfile::TempDir;
use warden_cri::ContainerSpec;
use warden_test::examples::{self, Examples};

/// An interpreter component compiles for a while under the debug shim, inside
/// `CreateContainer`.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

fn built() -> &'static Examples {
    examples::build_examples(Some(Path::new(env!("CARGO_BIN_EXE_oci-image"))))
}

/// A pod manifest as CRI gets it: the sandbox, its one container, the host directories its
/// volumes became (kept alive with it).
struct Pod {
    namespace: String,
    name: String,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    container: ContainerSpec,
    /// Volume name to (host directory, whether an emptyDir).
    volumes: BTreeMap<String, (TempDir, bool)>,
}

impl Pod {
    fn volume(&self, name: &str) -> &Path {
        self.volumes[name].0.path()
    }
}

/// Keys of `value` (a mapping) that are not in `known`: a translation that does not know a
/// setting fails instead of dropping it.
fn only_known(value: &Value, known: &[&str], what: &str) {
    let Some(map) = value.as_object() else {
        panic!("{what} is not a mapping: {value}");
    };
    for key in map.keys() {
        assert!(
            known.contains(&key.as_str()),
            "{what}: `{key}` is not translated to CRI by this test"
        );
    }
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("a string value").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads example `name`'s `pod.yaml` (its ConfigMaps and its Pod).
fn pod_manifest(name: &str) -> Pod {
    let text = examples::example_file(name, "pod.yaml");
    let mut config_maps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut pod = None;
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let doc: Value = serde::Deserialize::deserialize(doc).expect("a YAML document");
        match doc["kind"].as_str() {
            Some("ConfigMap") => {
                only_known(
                    &doc,
                    &["apiVersion", "kind", "metadata", "data"],
                    "ConfigMap",
                );
                let name = doc["metadata"]["name"].as_str().expect("name").to_string();
                config_maps.insert(name, string_map(&doc["data"]));
            }
            Some("Pod") => pod = Some(doc),
            other => panic!("{name}/pod.yaml: a {other:?} is not translated by this test"),
        }
    }
    let pod = pod.unwrap_or_else(|| panic!("{name}/pod.yaml has no Pod"));
    only_known(&pod, &["apiVersion", "kind", "metadata", "spec"], "Pod");
    let meta = &pod["metadata"];
    only_known(
        meta,
        &["name", "namespace", "annotations", "labels"],
        "metadata",
    );
    let spec = &pod["spec"];
    only_known(
        spec,
        &["runtimeClassName", "restartPolicy", "containers", "volumes"],
        "spec",
    );
    assert_eq!(
        spec["runtimeClassName"], HANDLER,
        "{name}: runtimeClassName"
    );

    // Volumes: an emptyDir is a fresh directory; a ConfigMap a directory of its keys, mounted
    // read-only (the kubelet's projection is).
    let mut volumes = BTreeMap::new();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let vname = v["name"].as_str().expect("volume name").to_string();
        let dir = tempfile::tempdir().expect("volume dir");
        let empty_dir = if let Some(e) = v.get("emptyDir") {
            only_known(v, &["name", "emptyDir"], "volume");
            assert!(
                e.as_object().is_none_or(|m| m.is_empty()),
                "{name}: emptyDir settings are not translated: {e}"
            );
            true
        } else if let Some(cm) = v.get("configMap") {
            only_known(v, &["name", "configMap"], "volume");
            only_known(cm, &["name"], "configMap volume");
            let cm_name = cm["name"].as_str().expect("configMap name");
            let data = config_maps
                .get(cm_name)
                .unwrap_or_else(|| panic!("{name}: no ConfigMap {cm_name} in pod.yaml"));
            for (file, content) in data {
                std::fs::write(dir.path().join(file), content).expect("configMap file");
            }
            false
        } else {
            panic!("{name}: volume kind not translated: {v}");
        };
        volumes.insert(vname, (dir, empty_dir));
    }

    let containers = spec["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{name}: one container");
    let c = &containers[0];
    only_known(
        c,
        &[
            "name",
            "image",
            "imagePullPolicy",
            "command",
            "args",
            "env",
            "volumeMounts",
            "resources",
        ],
        "container",
    );
    let mut container = ContainerSpec::new(
        c["name"].as_str().expect("container name"),
        c["image"].as_str().expect("image"),
    )
    .command(strings(&c["command"]))
    .args(strings(&c["args"]));
    for e in c["env"].as_array().into_iter().flatten() {
        only_known(e, &["name", "value"], "env");
        container = container.env(
            e["name"].as_str().expect("env name"),
            e["value"]
                .as_str()
                .expect("env value (valueFrom is not translated)"),
        );
    }
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        only_known(m, &["name", "mountPath", "readOnly"], "volumeMount");
        let vname = m["name"].as_str().expect("volumeMount name");
        let (dir, empty_dir) = volumes
            .get(vname)
            .unwrap_or_else(|| panic!("{name}: no volume {vname}"));
        let read_only = m["readOnly"].as_bool().unwrap_or(false) || !empty_dir;
        container = container.mount(
            PathBuf::from(dir.path()),
            m["mountPath"].as_str().expect("mountPath"),
            read_only,
        );
    }
    Pod {
        namespace: meta["namespace"].as_str().expect("namespace").to_string(),
        name: meta["name"].as_str().expect("name").to_string(),
        annotations: string_map(&meta["annotations"]),
        labels: string_map(&meta["labels"]),
        container,
        volumes,
    }
}

/// A CRI node holding example `name`'s image, with the example's policy as the node policy.
fn node_for(name: &str) -> CriNode {
    let n = cri_node();
    n.set_policy(&examples::example_file(name, "policy.toml"));
    n.containerd.import(&built().image_tar(name));
    n
}

/// What a run through CRI gave: exit code, the CRI log's lines, the audit records of its
/// container.
struct Ran {
    exit_code: i32,
    lines: Vec<String>,
    records: Vec<Value>,
}

impl Ran {
    fn stdout(&self) -> String {
        self.lines.join("\n")
    }

    fn record(&self, event: &str) -> &Value {
        self.records
            .iter()
            .find(|r| r["event"] == event)
            .unwrap_or_else(|| panic!("no {event} record: {:?}", self.records))
    }
}

/// Runs `pod` through CRI to its exit; with `with_profile` false, without its
/// `warden.dev/profile` annotation.
fn run(n: &mut CriNode, pod: &Pod, with_profile: bool) -> Ran {
    n.cri.set_timeout(CALL_TIMEOUT);
    let mut spec = n.pod(&pod.name, &pod.namespace);
    for (k, v) in &pod.labels {
        spec = spec.label(k, v);
    }
    for (k, v) in &pod.annotations {
        if with_profile || k != "warden.dev/profile" {
            spec = spec.annotation(k, v);
        }
    }
    let pod_id = n.run_pod(&spec);
    let (status, log) = n.run_to_exit(&pod_id, &spec, pod.container.clone());
    let records = n
        .audit()
        .into_iter()
        .filter(|r| r["container_id"] == status.id.as_str())
        .collect();
    Ran {
        exit_code: status.exit_code,
        lines: log_lines(&log).into_iter().map(String::from).collect(),
        records,
    }
}

/// The `create` record names the pod, the profile and the grants.
fn assert_ran_with(ran: &Ran, pod: &Pod, profile: &str, grants: &str) {
    let create = ran.record("create");
    assert_eq!(create["decision"], "allow", "{create}");
    assert_eq!(create["pod_namespace"], pod.namespace.as_str(), "{create}");
    assert_eq!(create["pod_name"], pod.name.as_str(), "{create}");
    assert_eq!(create["profile"], profile, "{create}");
    assert_eq!(create["grants"], grants, "{create}");
    assert_eq!(ran.record("exit")["exit_code"], ran.exit_code, "{create}");
}

/// Without its annotation, the pod runs under `strict` with nothing granted, and fails.
fn assert_denied_by_strict(ran: &Ran, pod: &Pod) {
    assert_eq!(ran.exit_code, 1, "{:?}", ran.lines);
    assert_ran_with(ran, pod, "strict", "nothing");
}

#[test]
fn hello_pod_says_hello_through_cri() {
    let pod = pod_manifest("hello");
    let mut n = node_for("hello");
    let ran = run(&mut n, &pod, true);
    assert_eq!(ran.exit_code, 0, "{:?}\n{}", ran.lines, n.log());
    assert_eq!(
        ran.lines,
        ["Hello from WebAssembly: warden-example-hello ran under the strict profile"]
    );
    assert_ran_with(&ran, &pod, "strict", "nothing");
}

#[test]
fn wat_pod_prints_its_line_through_cri() {
    let pod = pod_manifest("wat");
    let mut n = node_for("wat");
    let ran = run(&mut n, &pod, true);
    assert_eq!(ran.exit_code, 0, "{:?}\n{}", ran.lines, n.log());
    assert_eq!(ran.lines, ["Hello from a hand-written module"]);
    assert_ran_with(&ran, &pod, "strict", "nothing");
}

#[test]
fn rust_cli_pod_greets_into_its_empty_dir_and_never_sees_the_other_env_var() {
    let pod = pod_manifest("rust-cli");
    let mut n = node_for("rust-cli");
    let ran = run(&mut n, &pod, true);
    assert_eq!(ran.exit_code, 0, "{:?}\n{}", ran.lines, n.log());
    let out = ran.stdout();
    assert!(out.contains("Bonjour, Ada!\nBonjour, Grace!"), "{out}");
    assert!(!out.contains("never-seen-by-the-module"), "{out}");
    let written = std::fs::read_to_string(pod.volume("out").join("greetings.txt"))
        .expect("greetings in the emptyDir");
    assert_eq!(written, "Bonjour, Ada!\nBonjour, Grace!\n");
    // The manifest sets GREETING and SECRET_TOKEN; the profile grants GREETING only.
    assert_ran_with(
        &ran,
        &pod,
        "rust-cli",
        "mounts=/out:rw (mount) env=GREETING memory=16777216 deadline=10000ms",
    );

    let denied = run(&mut n, &pod, false);
    assert!(
        denied.stdout().contains("GREETING is not set"),
        "{:?}",
        denied.lines
    );
    assert_denied_by_strict(&denied, &pod);
    let unchanged = std::fs::read_to_string(pod.volume("out").join("greetings.txt"))
        .expect("greetings in the emptyDir");
    assert_eq!(unchanged, written, "strict wrote into the emptyDir");
}

#[test]
fn rust_component_pod_reads_its_config_map_read_only() {
    let pod = pod_manifest("rust-component");
    let mut n = node_for("rust-component");
    let ran = run(&mut n, &pod, true);
    assert_eq!(ran.exit_code, 0, "{:?}\n{}", ran.lines, n.log());
    let out = ran.stdout();
    for want in [
        "rust-component: 2 files in /config",
        "app.toml: 26 bytes: mode = \"from-a-configmap\"",
        "motd.txt: ",
        "rust-component: /config is read-only (",
    ] {
        assert!(out.contains(want), "no {want:?} in {out}");
    }
    assert!(
        !pod.volume("config").join(".rust-component-probe").exists(),
        "the module wrote into the ConfigMap"
    );
    assert_ran_with(
        &ran,
        &pod,
        "rust-component",
        "mounts=/config:ro (mount) memory=16777216 deadline=10000ms",
    );

    let denied = run(&mut n, &pod, false);
    assert!(
        denied
            .stdout()
            .contains("rust-component: cannot read /config"),
        "{:?}",
        denied.lines
    );
    assert_denied_by_strict(&denied, &pod);
}

#[test]
fn c_cli_pod_counts_its_granted_file_through_cri() {
    let pod = pod_manifest("c-cli");
    let mut n = node_for("c-cli");
    let ran = run(&mut n, &pod, true);
    assert_eq!(ran.exit_code, 0, "{:?}\n{}", ran.lines, n.log());
    assert_eq!(
        ran.lines,
        [
            "/data/input.txt: 4 lines, 41 words, 263 bytes",
            "most frequent word: \"the\" (3 times)"
        ]
    );
    assert_ran_with(
        &ran,
        &pod,
        "c-cli",
        "mounts=/data:ro (image) memory=16777216 deadline=10000ms",
    );
    let denied = run(&mut n, &pod, false);
    assert!(
        denied
            .stdout()
            .contains("c-cli: cannot open /data/input.txt: Capabilities insufficient"),
        "{:?}",
        denied.lines
    );
    assert_denied_by_strict(&denied, &pod);
}

#[test]
fn go_cli_pod_hashes_its_granted_directory_through_cri() {
    let pod = pod_manifest("go-cli");
    let mut n = node_for("go-cli");
    let ran = run(&mut n, &pod, true);
    assert_eq!(ran.exit_code, 0, "{:?}\n{}", ran.lines, n.log());
    assert!(
        ran.stdout().contains("go-cli: 2 files, 85 bytes in /data"),
        "{:?}",
        ran.lines
    );
    assert_ran_with(
        &ran,
        &pod,
        "go-cli",
        "mounts=/data:ro (image) memory=33554432 deadline=10000ms",
    );
    let denied = run(&mut n, &pod, false);
    assert!(
        denied.stdout().contains("go-cli: lstat /data: "),
        "{:?}",
        denied.lines
    );
    assert_denied_by_strict(&denied, &pod);
}

#[test]
fn python_pod_computes_its_stats_through_cri() {
    let pod = pod_manifest("python");
    let mut n = node_for("python");
    let ran = run(&mut n, &pod, true);
    assert_eq!(ran.exit_code, 0, "{:?}\n{}", ran.lines, n.log());
    let out = ran.stdout();
    assert!(out.starts_with("Hello from Python 3."), "{out}");
    assert!(
        out.contains("count=5 mean=10.4 median=9 stdev=6.768"),
        "{out}"
    );
    assert_ran_with(
        &ran,
        &pod,
        "python",
        "mounts=/data:ro (image) memory=67108864 deadline=30000ms",
    );
    let denied = run(&mut n, &pod, false);
    assert!(
        denied
            .stdout()
            .contains("stats: [Errno 44] No such file or directory: '/data/numbers.txt'"),
        "{:?}",
        denied.lines
    );
    assert_denied_by_strict(&denied, &pod);
}

#[test]
fn every_command_line_examples_manifest_is_covered_here() {
    // The Pods of examples/ are the ones above; the Deployments are the HTTP services.
    let mut pods = Vec::new();
    for name in examples::EXAMPLES {
        let dir = examples::examples_dir().join(name);
        if dir.join("pod.yaml").is_file() {
            pods.push(*name);
        } else {
            assert!(
                dir.join("deployment.yaml").is_file(),
                "{name} has neither pod.yaml nor deployment.yaml"
            );
        }
    }
    assert_eq!(
        pods,
        [
            "hello",
            "wat",
            "rust-cli",
            "rust-component",
            "c-cli",
            "go-cli",
            "python"
        ]
    );
}
