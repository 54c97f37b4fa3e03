//! The Kubernetes path, on a real containerd with its CRI plugin: pods reach warden exactly as
//! the kubelet sends them (`RunPodSandbox` with handler `warden`, `CreateContainer`,
//! `StartContainer`), through [`warden_cri::Client`] on containerd's socket.
//!
//! containerd's config registers the runtime as warden's installer does
//! (`runtimes.warden`, `runtime_type = "io.containerd.warden.v1"`,
//! `pod_annotations = ["warden.dev/*"]`). There is no CNI: every pod uses the node's network
//! (`hostNetwork: true`). There is no registry either: the pod sandbox image is a static
//! pause program built here with `cc -static` and imported, and `sandbox_image` names it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use warden_cri::{Client, ContainerSpec, ContainerState, CriError, PodSpec};
use warden_test::containerd::{Containerd, Options};
use warden_test::guests::{self, Guests, HELLO_NATIVE, HELLO_WASM, Wasi};
use warden_test::image::ImageBuilder;

/// The containerd namespace of CRI.
const CRI_NAMESPACE: &str = "k8s.io";
/// The pod sandbox image: [`pause_binary`] at `/pause`.
const PAUSE_IMAGE: &str = "localhost/warden-test/pause:3.9";
/// The handler a RuntimeClass `warden` names.
const HANDLER: &str = "warden";
/// How long one CRI call may take (the first `RunPodSandbox` starts the shim).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a workload container may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The `PATH` of the native images, as `registry.k8s.io/pause` sets it. youki's executor
/// refuses to start a native process without a `PATH` in its environment (`PATH environment
/// variable is not set`), even for an absolute entrypoint; runc does not care.
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a pause does: nothing, until told to stop.
const PAUSE_C: &str = r#"#include <signal.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    for (;;) pause();
}
"#;

/// The pause program, a static native binary, built once per test process (and kept in the
/// target directory across runs while its source is unchanged).
fn pause_binary() -> &'static Path {
    static PAUSE: OnceLock<PathBuf> = OnceLock::new();
    PAUSE.get_or_init(|| {
        let dir = warden_test::target_dir().join("cri-pause");
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let source = dir.join("pause.c");
        let binary = dir.join("pause");
        let unchanged = std::fs::read_to_string(&source).is_ok_and(|s| s == PAUSE_C);
        if unchanged && binary.is_file() {
            return binary;
        }
        std::fs::write(&source, PAUSE_C)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", source.display()));
        // Built under a temporary name and renamed, so a parallel test binary never sees
        // half a file.
        let partial = dir.join(format!("pause.{}", std::process::id()));
        let output = Command::new("cc")
            .args(["-static", "-Os", "-s", "-o"])
            .arg(&partial)
            .arg(&source)
            .output()
            .unwrap_or_else(|e| panic!("cannot run cc (apt-get install gcc libc6-dev): {e}"));
        assert!(
            output.status.success(),
            "cc -static failed ({}); a static glibc (libc6-dev) is needed:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::rename(&partial, &binary)
            .unwrap_or_else(|e| panic!("cannot rename to {}: {e}", binary.display()));
        binary
    })
}

/// The CRI config warden's installer writes, plus this node's sandbox image.
fn cri_config() -> String {
    format!(
        r#"
[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "{PAUSE_IMAGE}"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.warden]
runtime_type = "io.containerd.warden.v1"
pod_annotations = ["warden.dev/*"]
"#
    )
}

/// A node: containerd with CRI and the shim, warden's files in a temp dir, a CRI client, the
/// pause image imported.
struct CriNode {
    cri: Client,
    containerd: Containerd,
    files: TempDir,
    pods: Vec<String>,
}

fn cri_node() -> CriNode {
    let files = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| files.path().join(name).display().to_string();
    let containerd = Containerd::start(Options {
        shim_dir: Some(warden_test::shim::shim_dir().to_path_buf()),
        env: vec![
            ("WARDEN_CACHE_DIR".into(), path("cache")),
            ("WARDEN_AUDIT_LOG".into(), path("audit.jsonl")),
            ("WARDEN_POLICY".into(), path("policy.toml")),
        ],
        extra_config: cri_config(),
        cri: true,
        namespace: CRI_NAMESPACE.into(),
        ..Options::default()
    });
    let pause = std::fs::read(pause_binary()).expect("pause binary");
    containerd.import_image(
        &ImageBuilder::new(PAUSE_IMAGE)
            .file("/pause", pause, 0o755)
            .entrypoint(["/pause"])
            .env("PATH", IMAGE_PATH),
    );
    let cri = Client::connect(containerd.socket(), CALL_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", containerd.log_tail(60)));
    CriNode {
        cri,
        containerd,
        files,
        pods: Vec::new(),
    }
}

impl CriNode {
    /// Imports guest `name` (module at `/<name>.wasm`, its entrypoint); returns the image.
    fn guest(&self, wasi: Wasi, name: &str) -> String {
        self.containerd
            .import_image(&guests::build_guests().image(wasi, name));
        Guests::image_name(wasi, name)
    }

    /// Imports an image whose entrypoint is the static native hello.
    fn native_image(&self) -> String {
        let name = "localhost/warden-test/native-hello:latest";
        let bytes = std::fs::read(guests::build_guests().native_hello()).expect("native hello");
        self.containerd.import_image(
            &ImageBuilder::new(name)
                .file("/native-hello", bytes, 0o755)
                .entrypoint(["/native-hello"])
                .env("PATH", IMAGE_PATH),
        );
        name.to_string()
    }

    fn set_policy(&self, text: &str) {
        std::fs::write(self.files.path().join("policy.toml"), text).expect("write policy");
    }

    fn audit(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.files.path().join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l}: {e}")))
            .collect()
    }

    /// The audit records about container `id` with `event`.
    fn audit_of(&self, id: &str, event: &str) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["container_id"] == id && r["event"] == event)
            .collect()
    }

    /// A host-network pod for handler `warden`, its logs in the node's temp dir.
    fn pod(&self, name: &str, namespace: &str) -> PodSpec {
        let pod = PodSpec::new(name, namespace)
            .handler(HANDLER)
            .host_network(true);
        let log_dir = self.files.path().join("pods").join(&pod.uid);
        pod.log_dir(log_dir)
    }

    /// Runs the pod sandbox and checks it is ready; the pod is removed at the end of the test.
    fn run_pod(&mut self, pod: &PodSpec) -> String {
        let id = self
            .cri
            .run_pod(pod)
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", self.log()));
        self.pods.push(id.clone());
        assert!(
            self.cri.pod_ready(&id).expect("pod status"),
            "pod not ready"
        );
        id
    }

    /// `CreateContainer` then `StartContainer` of `c` with its log at `<name>/0.log`, as the
    /// kubelet does (the kubelet creates the log's directory).
    fn create_and_start(
        &mut self,
        pod_id: &str,
        pod: &PodSpec,
        c: ContainerSpec,
    ) -> (Option<String>, Result<(), CriError>) {
        let log_dir = pod.log_dir.as_ref().expect("pod has a log dir");
        std::fs::create_dir_all(log_dir.join(&c.name)).expect("log dir");
        let c = ContainerSpec {
            log_path: Some(format!("{}/0.log", c.name)),
            ..c
        };
        match self.cri.create_container(pod_id, pod, &c) {
            Ok(id) => {
                let started = self.cri.start_container(&id);
                (Some(id), started)
            }
            Err(e) => (None, Err(e)),
        }
    }

    /// Runs `c` in `pod` to its exit; returns its status and its CRI log.
    fn run_to_exit(
        &mut self,
        pod_id: &str,
        pod: &PodSpec,
        c: ContainerSpec,
    ) -> (warden_cri::ContainerStatus, String) {
        let (id, started) = self.create_and_start(pod_id, pod, c);
        let id = id.expect("created");
        started.unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", self.log()));
        let status = self
            .cri
            .wait_exited(&id, EXIT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
        let log = self.container_log(&status.log_path);
        (status, log)
    }

    /// The container's CRI log (`<time> stdout F <line>` lines). containerd finishes copying
    /// the output around the time it reports the exit, so a short wait for a non-empty file.
    fn container_log(&self, path: &str) -> String {
        assert!(!path.is_empty(), "the container has no log path");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if !text.is_empty() || Instant::now() >= deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        format!(
            "--- containerd log (end) ---\n{}",
            self.containerd.log_tail(60)
        )
    }
}

impl Drop for CriNode {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.pods) {
            if let Err(e) = self.cri.stop_and_remove_pod(&id) {
                eprintln!("cri_pods: cannot remove pod {id}: {e}");
            }
        }
    }
}

/// The lines a CRI log file holds, without their `<time> <stream> <tag> ` prefix.
fn log_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|line| line.splitn(4, ' ').nth(3))
        .collect()
}

#[test]
fn a_wasm_pod_runs_through_cri() {
    let mut n = cri_node();
    let version = n.cri.version().expect("Version");
    assert_eq!(version.runtime_name, "containerd", "{version:?}");
    let handlers = n.cri.runtimes().expect("runtimes");
    let warden = handlers
        .iter()
        .find(|h| h.name == HANDLER)
        .unwrap_or_else(|| panic!("no handler {HANDLER}: {handlers:?}"));
    assert_eq!(
        warden.runtime_type.as_deref(),
        Some("io.containerd.warden.v1")
    );
    assert_eq!(warden.pod_annotations, ["warden.dev/*"]);

    n.set_policy("version = 1\n");
    let image = n.guest(Wasi::P1, "hello");
    // containerd 2.x fills CRI's image cache a few milliseconds after an import.
    let deadline = Instant::now() + Duration::from_secs(2);
    while n.cri.image_status(&image).expect("ImageStatus").is_none() {
        assert!(
            Instant::now() < deadline,
            "CRI does not see the imported image"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pod = n.pod("hello", "default");
    let pod_id = n.run_pod(&pod);
    let (status, log) = n.run_to_exit(&pod_id, &pod, ContainerSpec::new("hello", &image));
    assert_eq!(status.exit_code, 0, "{status:?}\n{log}");
    assert_eq!(log_lines(&log), [HELLO_WASM], "{log}");
    assert!(
        log.lines().all(|l| l.contains(" stdout F ")),
        "not a CRI log: {log}"
    );
    // The pod sandbox (the pause) ran natively under warden, as the sandbox: allowed with
    // nothing but native code, under the default profile.
    let sandbox = n.audit_of(&pod_id, "create");
    assert_eq!(sandbox.len(), 1, "{:?}", n.audit());
    assert_eq!(sandbox[0]["grants"], "native");
    assert_eq!(sandbox[0]["pod_name"], "hello");
    assert_eq!(sandbox[0]["pod_namespace"], "default");
    let workload = n.audit_of(&status.id, "exit");
    assert_eq!(workload.len(), 1, "{:?}", n.audit());
    assert_eq!(workload[0]["exit_code"], 0);
    n.cri.stop_and_remove_pod(&pod_id).expect("remove pod");
    assert!(
        n.cri.list_containers(&pod_id).expect("list").is_empty(),
        "containers left after the pod was removed"
    );
}

#[test]
fn a_profile_the_pods_namespace_may_not_use_is_refused_with_its_rule() {
    let mut n = cri_node();
    n.set_policy(
        r#"version = 1

[profiles.payments-api]
namespaces = ["payments"]
env = ["APP_*"]
"#,
    );
    let image = n.guest(Wasi::P1, "hello");
    let pod = n
        .pod("web-0", "marketing")
        .annotation("warden.dev/profile", "payments-api");
    let pod_id = n.run_pod(&pod);
    let (id, started) = n.create_and_start(&pod_id, &pod, ContainerSpec::new("web", &image));
    let error = started.expect_err("a container under a forbidden profile started");
    // What `kubectl describe pod` shows: the message of the failed call...
    let message = error.message();
    assert!(
        message.contains("warden refused to run the container"),
        "{error}"
    );
    assert!(
        message.contains("payments-api"),
        "names the profile: {error}"
    );
    assert!(
        message.contains("rule profile.namespace"),
        "names the rule: {error}"
    );
    // ...and the container's status.
    if let Some(id) = &id {
        let status = n.cri.container_status(id).expect("status");
        assert_ne!(status.state, ContainerState::Running, "{status:?}");
        assert!(
            status.message.contains("rule profile.namespace")
                && status.message.contains("payments-api"),
            "{status:?}"
        );
    }
    let denials: Vec<Value> = n
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "deny" && r["rule"] == "profile.namespace")
        .collect();
    assert_eq!(denials.len(), 1, "{:?}", n.audit());
    assert_eq!(denials[0]["pod_namespace"], "marketing");
    assert_eq!(denials[0]["pod_name"], "web-0");
    assert_eq!(denials[0]["profile"], "payments-api");
    if let Some(id) = &id {
        assert_eq!(denials[0]["container_id"], id.as_str());
    }
    // The sandbox of the same pod runs on.
    assert!(n.cri.pod_ready(&pod_id).expect("pod status"));
}

#[test]
fn the_pods_namespace_selects_its_default_profile() {
    let mut n = cri_node();
    n.set_policy(
        r#"version = 1

[namespaces.payments]
default = "payments-api"

[profiles.payments-api]
namespaces = ["payments"]
env = ["APP_*"]
"#,
    );
    let image = n.guest(Wasi::P1, "env");
    let pod = n.pod("api-0", "payments");
    let pod_id = n.run_pod(&pod);
    let c = ContainerSpec::new("api", &image)
        .env("APP_MODE", "blue")
        .env("SECRET_TOKEN", "hunter2");
    let (status, log) = n.run_to_exit(&pod_id, &pod, c);
    assert_eq!(status.exit_code, 0, "{status:?}\n{log}");
    let lines = log_lines(&log);
    assert!(lines.contains(&"APP_MODE=blue"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
    assert!(lines.contains(&"env-count=1"), "{log}");
    let created = n.audit_of(&status.id, "create");
    assert_eq!(created.len(), 1, "{:?}", n.audit());
    assert_eq!(created[0]["pod_name"], "api-0");
    assert_eq!(created[0]["pod_namespace"], "payments");
    assert_eq!(created[0]["profile"], "payments-api");
    assert_eq!(created[0]["decision"], "allow");

    // Another namespace, same image: the built-in strict profile, no env.
    let pod = n.pod("api-0", "staging");
    let pod_id = n.run_pod(&pod);
    let c = ContainerSpec::new("api", &image).env("APP_MODE", "blue");
    let (status, log) = n.run_to_exit(&pod_id, &pod, c);
    assert_eq!(status.exit_code, 0, "{status:?}\n{log}");
    assert_eq!(log_lines(&log), ["env-count=0"], "{log}");
    assert_eq!(n.audit_of(&status.id, "create")[0]["profile"], "strict");
}

#[test]
fn a_native_workload_in_a_pod_is_refused_under_strict() {
    let mut n = cri_node();
    n.set_policy("version = 1\n");
    let image = n.native_image();
    let pod = n.pod("native-0", "default");
    let pod_id = n.run_pod(&pod);
    let (id, started) = n.create_and_start(&pod_id, &pod, ContainerSpec::new("native", &image));
    let error = started.expect_err("a native workload started under strict");
    let message = error.message();
    assert!(message.contains("rule native"), "{error}");
    assert!(message.contains("profile \"strict\""), "{error}");
    assert!(message.contains("/native-hello"), "names the file: {error}");
    if let Some(id) = &id {
        let status = n.cri.container_status(id).expect("status");
        assert!(status.message.contains("rule native"), "{status:?}");
        let log = std::fs::read_to_string(&status.log_path).unwrap_or_default();
        assert!(!log.contains(HELLO_NATIVE), "the native code ran: {log}");
    }
    let denials: Vec<Value> = n
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "deny" && r["rule"] == "native")
        .collect();
    assert_eq!(denials.len(), 1, "{:?}", n.audit());
    assert_eq!(denials[0]["pod_name"], "native-0");
    assert_eq!(denials[0]["pod_namespace"], "default");
    // The pause container of the same pod is native too, and runs: it is the pod sandbox.
    assert!(
        n.cri.pod_ready(&pod_id).expect("pod status"),
        "the pod sandbox stopped"
    );
    let sandbox = n.audit_of(&pod_id, "create");
    assert_eq!(sandbox.len(), 1, "{:?}", n.audit());
    assert_eq!(sandbox[0]["grants"], "native");
    assert_eq!(sandbox[0]["profile"], "strict");
    assert_eq!(n.audit_of(&pod_id, "start").len(), 1, "{:?}", n.audit());
}

#[test]
fn a_pod_serving_http_answers_under_its_annotated_profile() {
    let mut n = cri_node();
    let upstream = warden_test::http::Upstream::start();
    n.set_policy(&format!(
        "version = 1\n[profiles.web]\nnamespaces = [\"*\"]\n[profiles.web.http]\noutbound = \
         [\"http://{}\"]\n",
        upstream.addr
    ));
    let image = "localhost/warden-test/http-service:latest";
    let bytes = std::fs::read(guests::build_guests().http_service()).expect("http-service");
    n.containerd.import_image(&ImageBuilder::wasm_rootfs(
        image,
        "/http-service.wasm",
        bytes,
    ));
    let pod = n
        .pod("web-0", "default")
        .annotation("warden.dev/profile", "web");
    let pod_id = n.run_pod(&pod);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], warden_test::http::free_port()).into();
    let c = ContainerSpec::new("web", image).env("WARDEN_HTTP_ADDR", &addr.to_string());
    let (id, started) = n.create_and_start(&pod_id, &pod, c);
    let id = id.expect("created");
    started.unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", n.log()));
    assert!(
        warden_test::http::wait_listening(addr, Duration::from_secs(30)),
        "the pod does not listen on {addr}\n{}",
        n.log()
    );
    let r = warden_test::http::get(addr, "/log?msg=hello-from-the-pod").expect("GET");
    assert_eq!(r.status, 200, "{r:?}");
    // The profile the pod's annotation chose lets it reach the upstream.
    let r = warden_test::http::get(
        addr,
        &format!("/fetch?url=http://{}/via-pod", upstream.addr),
    )
    .expect("fetch");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(upstream.seen().len(), 1);

    // The kubelet stops a container with SIGTERM: the service drains and exits 0.
    n.cri
        .stop_container(&id, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("StopContainer: {e}\n{}", n.log()));
    let status = n
        .cri
        .wait_exited(&id, EXIT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", n.log()));
    assert_eq!(status.exit_code, 0, "{status:?}");
    let log = n.container_log(&status.log_path);
    assert!(
        log.lines()
            .any(|l| l.contains(" stdout F ") && l.ends_with("hello-from-the-pod")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains(" stderr F ")
            && l.contains("warden-http access method=GET path=\"/log?msg=hello-from-the-pod\"")),
        "{log}"
    );
    let created = n.audit_of(&id, "create");
    assert_eq!(created[0]["profile"], "web", "{created:?}");
    assert_eq!(n.audit_of(&id, "start").len(), 1);
    assert_eq!(n.audit_of(&id, "exit").len(), 1);
}
