//! The examples through CRI, from their own manifests: each `pod.yaml` (the command-line
//! examples) or `deployment.yaml` (the HTTP services) of `examples/` is read and sent to
//! containerd's CRI plugin as the kubelet would send it (`RunPodSandbox` with the pod's
//! namespace, annotations and `runtimeClassName`, `CreateContainer` with the container's image,
//! command, args, env and volumes), with the example's own `policy.toml` as the node policy.
//! A command-line pod's output is asserted from its CRI log, a service is called over HTTP and
//! stopped as the kubelet stops it (`StopContainer`: SIGTERM, then it drains and exits 0), and
//! the profile and grants each ran with from the audit log; then the same pod without its
//! profile annotation runs under its namespace's default (`strict`) and is denied what the
//! profile granted.
//!
//! The translation refuses any manifest setting it does not know, so a manifest that grows a
//! setting this test would silently drop fails here. What it knowingly leaves out:
//! `imagePullPolicy` (the image is imported, never pulled), `restartPolicy` (each pod runs
//! once), `resources` (the profile's limits bound the guest; the cgroup limits the kubelet
//! would add are not what these examples show), `ports` and a Deployment's Service (the pod
//! uses the node's network, there is no CNI or kube-proxy here: a service listens on a free
//! loopback port given as `WARDEN_HTTP_ADDR`, which the shim reads before the pod's env).
//! A Deployment becomes its one pod (`replicas: 1`), named `<deployment>-0`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cri::{CriNode, HANDLER, cri_node, log_lines};
use serde_json::Value;
use tempfile::TempDir;
use warden_cri::{ContainerSpec, ContainerStatus, PodSpec};
use warden_test::examples::{self, Examples};
use warden_test::http::{self, Upstream};

/// An interpreter component compiles for a while under the debug shim, inside
/// `CreateContainer`.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// A service listens once its component is compiled and instantiated.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(120);
/// `StopContainer`'s grace period, and the wait for the exit after it.
const STOP_GRACE: Duration = Duration::from_secs(20);

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

    /// The pod with its container's env var `name` set to `value` instead of the manifest's:
    /// a test's loopback upstream stands in for the example's real origin.
    fn with_env(mut self, name: &str, value: &str) -> Pod {
        let env = &mut self.container.env;
        assert!(
            env.iter().any(|(k, _)| k == name),
            "the manifest sets no {name}"
        );
        env.retain(|(k, _)| k != name);
        self.container = self.container.env(name, value);
        self
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

/// Example `name`'s manifest file: `pod.yaml` or `deployment.yaml`.
fn manifest_file(name: &str) -> &'static str {
    let dir = examples::examples_dir().join(name);
    if dir.join("pod.yaml").is_file() {
        "pod.yaml"
    } else {
        assert!(
            dir.join("deployment.yaml").is_file(),
            "{name} has neither pod.yaml nor deployment.yaml"
        );
        "deployment.yaml"
    }
}

/// Reads example `name`'s manifest (its ConfigMaps and its Pod, or its Deployment and
/// Service) as the one pod it runs.
fn pod_manifest(name: &str) -> Pod {
    let file = manifest_file(name);
    let text = examples::example_file(name, file);
    let mut config_maps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    // The pod's namespace, its name, and its template (`metadata` and `spec`).
    let mut pod: Option<(String, String, Value)> = None;
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let doc: Value = serde::Deserialize::deserialize(doc).expect("a YAML document");
        let meta = &doc["metadata"];
        let namespace = || meta["namespace"].as_str().expect("namespace").to_string();
        let doc_name = || meta["name"].as_str().expect("name").to_string();
        match doc["kind"].as_str() {
            Some("ConfigMap") => {
                only_known(
                    &doc,
                    &["apiVersion", "kind", "metadata", "data"],
                    "ConfigMap",
                );
                config_maps.insert(doc_name(), string_map(&doc["data"]));
            }
            Some("Pod") => {
                only_known(&doc, &["apiVersion", "kind", "metadata", "spec"], "Pod");
                only_known(
                    meta,
                    &["name", "namespace", "annotations", "labels"],
                    "metadata",
                );
                pod = Some((namespace(), doc_name(), doc.clone()));
            }
            Some("Deployment") => {
                only_known(
                    &doc,
                    &["apiVersion", "kind", "metadata", "spec"],
                    "Deployment",
                );
                only_known(meta, &["name", "namespace"], "Deployment metadata");
                let spec = &doc["spec"];
                only_known(
                    spec,
                    &["replicas", "selector", "template"],
                    "Deployment spec",
                );
                assert_eq!(spec["replicas"], 1, "{name}: one replica");
                let template = &spec["template"];
                only_known(template, &["metadata", "spec"], "pod template");
                only_known(
                    &template["metadata"],
                    &["annotations", "labels"],
                    "pod template metadata",
                );
                // The selector must pick the template's pods, or the Deployment never runs.
                for (k, v) in string_map(&spec["selector"]["matchLabels"]) {
                    assert_eq!(
                        template["metadata"]["labels"][&k], v,
                        "{name}: the selector's {k} is not on the template"
                    );
                }
                pod = Some((namespace(), format!("{}-0", doc_name()), template.clone()));
            }
            // A Service routes to the pod's port: kube-proxy's job, not the runtime's.
            Some("Service") => {}
            other => panic!("{name}/{file}: a {other:?} is not translated by this test"),
        }
    }
    let (namespace, pod_name, pod) = pod.unwrap_or_else(|| panic!("{name}/{file} has no pod"));
    let meta = &pod["metadata"];
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
            "ports",
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
        namespace,
        name: pod_name,
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

/// Runs `pod`'s sandbox; with `with_profile` false, without its `warden.dev/profile`
/// annotation.
fn run_sandbox(n: &mut CriNode, pod: &Pod, with_profile: bool) -> (String, PodSpec) {
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
    (pod_id, spec)
}

fn ran(n: &CriNode, status: &ContainerStatus, log: &str) -> Ran {
    let records = n
        .audit()
        .into_iter()
        .filter(|r| r["container_id"] == status.id.as_str())
        .collect();
    Ran {
        exit_code: status.exit_code,
        lines: log_lines(log).into_iter().map(String::from).collect(),
        records,
    }
}

/// Runs `pod` through CRI to its exit; with `with_profile` false, without its
/// `warden.dev/profile` annotation.
fn run(n: &mut CriNode, pod: &Pod, with_profile: bool) -> Ran {
    let (pod_id, spec) = run_sandbox(n, pod, with_profile);
    let (status, log) = n.run_to_exit(&pod_id, &spec, pod.container.clone());
    ran(n, &status, &log)
}

/// A service pod, listening.
struct Serving {
    container_id: String,
    addr: SocketAddr,
}

/// Starts service `pod` (with or without its profile annotation) on a free loopback port and
/// waits until it listens.
fn serve(n: &mut CriNode, pod: &Pod, with_profile: bool) -> Serving {
    let (pod_id, spec) = run_sandbox(n, pod, with_profile);
    let (container_id, addr) = n.serve_http(&pod_id, &spec, pod.container.clone(), LISTEN_TIMEOUT);
    Serving { container_id, addr }
}

/// Stops the service as the kubelet does (`StopContainer`: SIGTERM, then SIGKILL after the
/// grace period); it drains and exits 0.
fn stop(n: &mut CriNode, svc: Serving) -> Ran {
    let (status, log) = n.stop_service(&svc.container_id, STOP_GRACE);
    ran(n, &status, &log)
}

/// The `http.outbound` denials among `ran`'s records, each checked to name `origin`.
fn outbound_denials(ran: &Ran, origin: &str) -> Vec<Value> {
    examples::outbound_denials(ran.records.iter().cloned(), origin)
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
fn rust_http_deployment_calls_its_one_origin_through_cri() {
    let upstream = Upstream::start();
    let origin = format!("http://{}", upstream.addr);
    let pod = pod_manifest("rust-http").with_env("UPSTREAM_URL", &format!("{origin}/quote"));
    let mut n = node_for("rust-http");
    n.set_policy(&examples::policy_with_outbound(
        "rust-http",
        "rust-http",
        Some(&origin),
    ));
    let svc = serve(&mut n, &pod, true);
    let r = http::get(svc.addr, "/").expect("GET /");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.text(),
        format!("rust-http: GET /upstream calls \"{origin}/quote\"\n")
    );
    let r = http::get(svc.addr, "/upstream").expect("GET /upstream");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "upstream 200: upstream ok\n");
    let ran = stop(&mut n, svc);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/quote");
    assert_ran_with(
        &ran,
        &pod,
        "rust-http",
        &format!("env=UPSTREAM_URL http={origin} memory=16777216 request_deadline=10000ms"),
    );
    assert!(
        outbound_denials(&ran, &origin).is_empty(),
        "{:?}",
        ran.records
    );

    // Without its annotation, under strict: the env var is not passed and nothing goes out.
    let svc = serve(&mut n, &pod, false);
    let r = http::get(svc.addr, "/upstream").expect("GET /upstream");
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(r.text(), "UPSTREAM_URL is not set (is it granted?)\n");
    let ran = stop(&mut n, svc);
    assert_eq!(upstream.seen().len(), 1, "{:?}", upstream.seen());
    assert_ran_with(&ran, &pod, "strict", "nothing");
}

#[test]
fn wagi_deployment_serves_its_site_through_cri() {
    let pod = pod_manifest("wagi");
    assert_eq!(pod.annotations["warden.dev/http"], "wagi");
    let mut n = node_for("wagi");
    let svc = serve(&mut n, &pod, true);
    let r = http::get(svc.addr, "/?lang=en").expect("GET /");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "Hello from WAGI: GET / query=\"lang=en\"\n");
    let r = http::get(svc.addr, "/files/index.html").expect("GET /files/index.html");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), examples::example_file("wagi", "site/index.html"));
    let ran = stop(&mut n, svc);
    assert!(
        ran.stdout().contains("wagi: GET /files/index.html"),
        "{:?}",
        ran.lines
    );
    assert_ran_with(
        &ran,
        &pod,
        "wagi",
        "mounts=/site:ro (image) memory=16777216 request_deadline=5000ms",
    );

    // Under strict it still serves (WAGI needs no grant), but /site is not there.
    let svc = serve(&mut n, &pod, false);
    let r = http::get(svc.addr, "/files/index.html").expect("GET /files/index.html");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.text().starts_with("/site/index.html: "), "{r:?}");
    let ran = stop(&mut n, svc);
    assert_ran_with(&ran, &pod, "strict", "nothing");
}

#[test]
fn js_http_deployment_fetches_only_its_origin_through_cri() {
    let allowed = Upstream::start();
    let other = Upstream::start();
    let origin = format!("http://{}", allowed.addr);
    let other_origin = format!("http://{}", other.addr);
    let pod = pod_manifest("js-http");
    let mut n = node_for("js-http");
    n.set_policy(&examples::policy_with_outbound(
        "js-http",
        "js-http",
        Some(&origin),
    ));
    let svc = serve(&mut n, &pod, true);
    let r = http::get(svc.addr, "/").expect("GET /");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "Hello from JavaScript in a wasi:http component\n");
    let r = http::get(svc.addr, &format!("/fetch?url={origin}/allowed")).expect("fetch");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "upstream 200: upstream ok\n");
    let r = http::get(svc.addr, &format!("/fetch?url={other_origin}/other")).expect("fetch");
    assert_eq!(r.status, 502, "{r:?}");
    let ran = stop(&mut n, svc);
    assert_eq!(allowed.seen().len(), 1, "{:?}", allowed.seen());
    assert!(other.seen().is_empty(), "{:?}", other.seen());
    assert_ran_with(
        &ran,
        &pod,
        "js-http",
        &format!("http={origin} memory=67108864 request_deadline=10000ms"),
    );
    assert_eq!(
        outbound_denials(&ran, &other_origin).len(),
        1,
        "{:?}",
        ran.records
    );

    // Under strict nothing goes out, and the attempt is in the audit log.
    let svc = serve(&mut n, &pod, false);
    let r = http::get(svc.addr, &format!("/fetch?url={origin}/strict")).expect("fetch");
    assert_eq!(r.status, 502, "{r:?}");
    let ran = stop(&mut n, svc);
    assert_eq!(allowed.seen().len(), 1, "{:?}", allowed.seen());
    let denials = outbound_denials(&ran, &origin);
    assert_eq!(denials.len(), 1, "{:?}", ran.records);
    assert_eq!(denials[0]["profile"], "strict");
    assert_ran_with(&ran, &pod, "strict", "nothing");
}

#[test]
fn every_examples_manifest_is_covered_here() {
    // Each example is one of the tests above, by the kind of its manifest.
    let mut pods = Vec::new();
    let mut deployments = Vec::new();
    for name in examples::EXAMPLES {
        match manifest_file(name) {
            "pod.yaml" => pods.push(*name),
            _ => deployments.push(*name),
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
    assert_eq!(deployments, ["rust-http", "wagi", "js-http"]);
}
