//! The CRI pod lifecycle as the kubelet drives it: RunPodSandbox, CreateContainer,
//! StartContainer, the container's exit, then StopPodSandbox and RemovePodSandbox, for a
//! Wasm pod (handler `warden`: the pause sandbox native under warden, the p1 hello as Wasm)
//! against a runc pod (handler `runc`: the same pause image, the static native hello). Both
//! on one containerd with CRI, hostNetwork (no CNI), pods alternating.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use warden_cri::{Client, ContainerSpec, ContainerState, PodSpec};
use warden_test::containerd::{Containerd, Options};
use warden_test::image::ImageBuilder;
use warden_test::sandbox::{self, HANDLER, IMAGE_PATH};

use crate::machine::Machine;
use crate::report::{Section, Table};
use crate::stats::Samples;
use crate::{Bench, warden_options};

const RUNC: &str = "runc pod (native hello)";
const WARDEN: &str = "warden pod (p1 hello)";
const WASM_IMAGE: &str = "localhost/bench/cri-p1:1";
pub const NATIVE_IMAGE: &str = "localhost/bench/cri-native:1";
/// The p1 `sleep` guest, for sleeping pods.
pub const WASM_SLEEP_IMAGE: &str = "localhost/bench/cri-sleep:1";
/// How often the container's status is asked for while waiting for its exit.
pub const POLL: Duration = Duration::from_millis(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The phases of one pod's life, in order.
const PHASES: [&str; 4] = [
    "RunPodSandbox",
    "CreateContainer + StartContainer",
    "started to exited (status polled every 5 ms)",
    "StopPodSandbox + RemovePodSandbox",
];

/// A containerd with CRI, warden's runtime registered as the installer registers it, the
/// pause image and the two hello images imported, and a CRI client on its socket.
pub struct Node {
    pub c: Containerd,
    pub cri: Client,
    pub files: tempfile::TempDir,
}

impl Node {
    pub fn start(b: &Bench, machine: &mut Machine) -> Result<Node> {
        let files = tempfile::tempdir().context("temp dir")?;
        std::fs::copy(
            b.files.path().join("policy.toml"),
            files.path().join("policy.toml"),
        )
        .context("copying the policy")?;
        let c = Containerd::start(Options {
            extra_config: sandbox::cri_config(),
            cri: true,
            namespace: "k8s.io".into(),
            ..warden_options(files.path())
        });
        machine.containerd.push(c.version().to_string());
        c.import_image(&sandbox::pause_image());
        let mut cri = Client::connect(c.socket(), CALL_TIMEOUT)
            .map_err(|e| anyhow!("{e}\n{}", c.log_tail(40)))?;
        let node_images = [
            ImageBuilder::wasm_rootfs(WASM_IMAGE, "/app.wasm", b.guests.p1("hello")),
            ImageBuilder::wasm_rootfs(WASM_SLEEP_IMAGE, "/app.wasm", b.guests.p1("sleep")),
            ImageBuilder::new(NATIVE_IMAGE)
                .file(
                    "/hello",
                    std::fs::read(b.guests.native_hello()).context("the native hello")?,
                    0o755,
                )
                .entrypoint(["/hello"])
                .env("PATH", IMAGE_PATH),
        ];
        for image in &node_images {
            c.import_image(image);
            wait_for_image(&mut cri, image.name())?;
        }
        Ok(Node { c, cri, files })
    }

    /// A hostNetwork pod for `handler`, its logs under the node's files.
    pub fn pod(&self, name: &str, handler: &str) -> PodSpec {
        let pod = PodSpec::new(name, "default")
            .handler(handler)
            .host_network(true);
        let dir = self.files.path().join("pods").join(&pod.uid);
        pod.log_dir(dir)
    }
}

pub fn run(b: &Bench, machine: &mut Machine) -> Result<Section> {
    let Node { c, mut cri, files } = Node::start(b, machine)?;
    let logs = files.path().join("pods");
    let mut lifecycle = |handler: &str, image: &str| -> Result<[Duration; 4]> {
        let pod = PodSpec::new("bench", "default")
            .handler(handler)
            .host_network(true);
        let pod = pod.clone().log_dir(logs.join(&pod.uid));
        pod_lifecycle(&mut cri, &pod, image).map_err(|e| anyhow!("{e:#}\n{}", c.log_tail(40)))
    };
    for _ in 0..2 {
        lifecycle("runc", NATIVE_IMAGE)?;
        lifecycle(HANDLER, WASM_IMAGE)?;
    }
    let (mut runc, mut warden) = (Vec::new(), Vec::new());
    for _ in 0..b.runs {
        runc.push(lifecycle("runc", NATIVE_IMAGE)?);
        warden.push(lifecycle(HANDLER, WASM_IMAGE)?);
    }

    let total = |phases: &[[Duration; 4]]| {
        Samples(
            phases
                .iter()
                .map(|p| p.iter().sum::<Duration>().as_secs_f64() * 1000.0)
                .collect(),
        )
    };
    let phase = |phases: &[[Duration; 4]], i: usize| {
        Samples(phases.iter().map(|p| p[i].as_secs_f64() * 1000.0).collect())
    };
    let mut s = Section::new("cri", "CRI pod lifecycle");
    let mut whole = Table::new("RunPodSandbox to RemovePodSandbox", "ms", RUNC);
    whole.measured(RUNC, &total(&runc));
    whole.measured(WARDEN, &total(&warden));
    s.table(whole);
    let mut phases = Table::new("per phase", "ms", RUNC);
    for (i, name) in PHASES.iter().enumerate() {
        let base = format!("runc: {name}");
        phases.measured(&base, &phase(&runc, i));
        phases
            .measured(&format!("warden: {name}"), &phase(&warden, i))
            .against(&base);
    }
    s.table(phases);
    s.note(format!(
        "containerd {} with CRI; handler `runc` and handler `warden` ({}) with the same pause image; hostNetwork pods (no CNI); 2 unmeasured pods of each first, then the two alternate.",
        c.version(),
        "runtime_type io.containerd.warden.v1, as the installer registers it"
    ));
    Ok(s)
}

/// One pod from RunPodSandbox to RemovePodSandbox; the time of each of [`PHASES`].
fn pod_lifecycle(cri: &mut Client, pod: &PodSpec, image: &str) -> Result<[Duration; 4]> {
    let log_dir = pod.log_dir.as_ref().context("the pod has a log dir")?;
    std::fs::create_dir_all(log_dir.join("hello")).context("the pod's log dir")?;
    let t0 = Instant::now();
    let pod_id = cri.run_pod(pod).context("RunPodSandbox")?;
    let t1 = Instant::now();
    let spec = ContainerSpec::new("hello", image).log_path("hello/0.log");
    let started = cri
        .create_container(&pod_id, pod, &spec)
        .and_then(|id| cri.start_container(&id).map(|()| id));
    let id = match started {
        Ok(id) => id,
        Err(e) => {
            let _ = cri.stop_and_remove_pod(&pod_id);
            bail!("creating or starting the container: {e}");
        }
    };
    let t2 = Instant::now();
    let deadline = t2 + CALL_TIMEOUT;
    let status = loop {
        let status = cri.container_status(&id).context("ContainerStatus")?;
        if status.state == ContainerState::Exited || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(POLL);
    };
    let t3 = Instant::now();
    cri.stop_and_remove_pod(&pod_id)
        .context("StopPodSandbox + RemovePodSandbox")?;
    let t4 = Instant::now();
    if status.state != ContainerState::Exited || status.exit_code != 0 {
        bail!(
            "the container in pod {} did not exit 0: {status:?}",
            pod.handler
        );
    }
    Ok([t1 - t0, t2 - t1, t3 - t2, t4 - t3])
}

/// containerd 2.x fills CRI's image cache a few milliseconds after an import.
fn wait_for_image(cri: &mut Client, image: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while cri.image_status(image).context("ImageStatus")?.is_none() {
        if Instant::now() > deadline {
            bail!("CRI does not see the imported image {image}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
