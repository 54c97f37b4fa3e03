//! A node with containerd's CRI plugin and warden's handler registered as the installer
//! registers it, driven through [`warden_cri::Client`] exactly as the kubelet drives it.
//!
//! There is no CNI: every pod uses the node's network (`hostNetwork: true`). There is no
//! registry either: the pod sandbox image is [`warden_test::sandbox`]'s static pause program,
//! and `sandbox_image` names it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use warden_cri::{Client, ContainerSpec, ContainerStatus, CriError, PodSpec};
use warden_test::containerd::{Containerd, Options};
use warden_test::containerd_versions::Version;
use warden_test::guests::{self, Guests, Wasi};
use warden_test::image::ImageBuilder;

/// The containerd namespace of CRI.
pub const CRI_NAMESPACE: &str = "k8s.io";
pub use warden_test::sandbox::{HANDLER, IMAGE_PATH};

/// How long one CRI call may take (the first `RunPodSandbox` starts the shim).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a workload container may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A node: containerd with CRI and the shim, warden's files in a temp dir, a CRI client, the
/// pause image imported.
pub struct CriNode {
    pub cri: Client,
    pub containerd: Containerd,
    pub files: TempDir,
    pub pods: Vec<String>,
}

pub fn cri_node() -> CriNode {
    cri_node_on(None)
}

/// [`cri_node`] on containerd `version` (`None`: the one `WARDEN_TEST_CONTAINERD` chooses).
pub fn cri_node_on(version: Option<Version>) -> CriNode {
    let files = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| files.path().join(name).display().to_string();
    let containerd = Containerd::start(Options {
        shim_dir: Some(warden_test::shim::shim_dir().to_path_buf()),
        env: vec![
            ("WARDEN_CACHE_DIR".into(), path("cache")),
            ("WARDEN_AUDIT_LOG".into(), path("audit.jsonl")),
            ("WARDEN_POLICY".into(), path("policy.toml")),
        ],
        extra_config: warden_test::sandbox::cri_config(),
        cri: true,
        namespace: CRI_NAMESPACE.into(),
        version,
        ..Options::default()
    });
    containerd.import_image(&warden_test::sandbox::pause_image());
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
    pub fn guest(&self, wasi: Wasi, name: &str) -> String {
        self.containerd
            .import_image(&guests::build_guests().image(wasi, name));
        Guests::image_name(wasi, name)
    }

    /// Imports an image whose entrypoint is the static native hello.
    pub fn native_image(&self) -> String {
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

    pub fn set_policy(&self, text: &str) {
        std::fs::write(self.files.path().join("policy.toml"), text).expect("write policy");
    }

    pub fn audit(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.files.path().join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l}: {e}")))
            .collect()
    }

    /// The audit records about container `id` with `event`.
    pub fn audit_of(&self, id: &str, event: &str) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["container_id"] == id && r["event"] == event)
            .collect()
    }

    /// A host-network pod for handler `warden`, its logs in the node's temp dir.
    pub fn pod(&self, name: &str, namespace: &str) -> PodSpec {
        let pod = PodSpec::new(name, namespace)
            .handler(HANDLER)
            .host_network(true);
        let log_dir = self.files.path().join("pods").join(&pod.uid);
        pod.log_dir(log_dir)
    }

    /// Runs the pod sandbox and checks it is ready; the pod is removed at the end of the test.
    pub fn run_pod(&mut self, pod: &PodSpec) -> String {
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
    pub fn create_and_start(
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
    pub fn run_to_exit(
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

    /// Creates and starts HTTP service `c` in `pod` on a free loopback port
    /// (`WARDEN_HTTP_ADDR`) and waits up to `listen_timeout` until it listens; returns the
    /// container id and the address.
    pub fn serve_http(
        &mut self,
        pod_id: &str,
        pod: &PodSpec,
        c: ContainerSpec,
        listen_timeout: Duration,
    ) -> (String, SocketAddr) {
        let addr: SocketAddr = ([127, 0, 0, 1], warden_test::http::free_port()).into();
        let c = c.env("WARDEN_HTTP_ADDR", &addr.to_string());
        let name = c.name.clone();
        let (id, started) = self.create_and_start(pod_id, pod, c);
        let id = id.expect("created");
        started.unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", self.log()));
        assert!(
            warden_test::http::wait_listening(addr, listen_timeout),
            "{name} does not listen on {addr}\n{}",
            self.log()
        );
        (id, addr)
    }

    /// Stops service container `id` as the kubelet does (`StopContainer`: SIGTERM, SIGKILL
    /// after `grace`); asserts that it drained and exited 0; returns its status and CRI log.
    pub fn stop_service(&mut self, id: &str, grace: Duration) -> (ContainerStatus, String) {
        self.cri
            .stop_container(id, grace)
            .unwrap_or_else(|e| panic!("StopContainer: {e}\n{}", self.log()));
        let status = self
            .cri
            .wait_exited(id, EXIT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
        let log = self.container_log(&status.log_path);
        assert_eq!(status.exit_code, 0, "{status:?}\n{log}\n{}", self.log());
        (status, log)
    }

    /// The container's CRI log (`<time> stdout F <line>` lines). containerd finishes copying
    /// the output around the time it reports the exit, so a short wait for a non-empty file.
    pub fn container_log(&self, path: &str) -> String {
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

    pub fn log(&self) -> String {
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
pub fn log_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|line| line.splitn(4, ' ').nth(3))
        .collect()
}
