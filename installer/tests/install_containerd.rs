//! `warden install` and `uninstall` on the real containerd of the test harness, with CRI:
//! the shim built from this workspace goes into a temp install dir, the `warden` runtime
//! into the harness's config, containerd is restarted through `--restart-command`, and the
//! install's own verification runs a `RunPodSandbox` with handler `warden`. Then a Wasm pod
//! runs through CRI as the kubelet would run it; uninstall takes it all back: the handler
//! is gone and the config is byte-identical. A second test kills the install at every step
//! boundary and checks that the next run leaves containerd whole and answering.
//!
//! The restart command stops the harness's containerd (SIGTERM) and starts it again with
//! the same config, as `systemctl restart containerd` would on a node.
//!
//! containerd 1.6 (Debian's, which the harness runs) ignores a runtime's `runtime_path` when
//! it starts a pod sandbox's task and looks the shim up by name on its `PATH`. The installer
//! therefore registers the shim on 1.x by its absolute path in `runtime_type`; the install
//! dir is deliberately NOT on this containerd's `PATH`, so these tests prove that form works.

mod install_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use install_support::{killed, show};
use warden_cri::{Client, ContainerSpec, PodSpec};
use warden_installer::crash_hook::{ENV, INSTALL_POINTS};
use warden_test::containerd::{Containerd, Options};
use warden_test::containerd_versions::Version;
use warden_test::guests::{self, HELLO_WASM, Wasi};
use warden_test::image::ImageBuilder;

const PAUSE_IMAGE: &str = "localhost/warden-test/pause:1";

/// A harness containerd with CRI, a pause image, a Wasm image, and the files a `warden`
/// run needs around it.
struct Node {
    containerd: Containerd,
    temp: tempfile::TempDir,
    shim: PathBuf,
    shim_digest: String,
    wasm_image: String,
}

/// One harness containerd at a time: each test restarts its containerd and runs pods, and
/// the two must not compete for the shim's start-up.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the serial lock (held for the whole test), then starts a node and reads its
/// containerd config as it was before anything ran.
fn serial_node() -> (std::sync::MutexGuard<'static, ()>, Node, PathBuf, Vec<u8>) {
    serial_node_on(None, false)
}

/// [`serial_node`] on containerd `version`; with `conf_d`, its config imports
/// `<config dir>/conf.d/*.toml` as containerd 2.x's packaged config does.
fn serial_node_on(
    version: Option<Version>,
    conf_d: bool,
) -> (std::sync::MutexGuard<'static, ()>, Node, PathBuf, Vec<u8>) {
    let serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let node = Node::start(version, conf_d);
    let config = node.containerd.config_path();
    let original = fs::read(&config).unwrap();
    (serial, node, config, original)
}

impl Node {
    fn start(version: Option<Version>, conf_d: bool) -> Node {
        warden_test::require_root();
        let temp = tempfile::Builder::new()
            .prefix("warden-install-ctd-")
            .tempdir()
            .unwrap();
        // The drop-in dir is created empty, as a package creates it.
        let imports = if conf_d {
            let dir = temp.path().join("conf.d");
            fs::create_dir_all(&dir).unwrap();
            format!("imports = [\"{}/*.toml\"]\n", dir.display())
        } else {
            String::new()
        };
        let env = vec![
            (
                "WARDEN_AUDIT_LOG".to_owned(),
                temp.path().join("audit.jsonl").display().to_string(),
            ),
            (
                "WARDEN_POLICY".to_owned(),
                temp.path().join("policy.toml").display().to_string(),
            ),
            (
                "WARDEN_CACHE_DIR".to_owned(),
                temp.path().join("cache").display().to_string(),
            ),
        ];
        let install_dir = temp.path().join("bin");
        let containerd = Containerd::start(Options {
            cri: true,
            shim_dir: Some(install_dir.clone()),
            namespace: "k8s.io".into(),
            env: env.clone(),
            extra_config: format!(
                "{imports}[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"{PAUSE_IMAGE}\"\n"
            ),
            version,
            ..Options::default()
        });
        let guests = guests::build_guests();
        let pause = fs::read(guests.native_hello()).unwrap();
        containerd.import_image(
            &ImageBuilder::new(PAUSE_IMAGE)
                .file("/pause", pause, 0o755)
                .entrypoint(["/pause", "sleep", "3600"])
                .env(
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                ),
        );
        let wasm = containerd.import_image(&guests.image(Wasi::P1, "hello"));

        // A copy: the build may replace the original while the test runs.
        let shim = temp
            .path()
            .join("shipped")
            .join("containerd-shim-warden-v1");
        fs::create_dir_all(shim.parent().unwrap()).unwrap();
        fs::copy(warden_test::shim::shim_binary(), &shim).unwrap();
        let shim_digest = file_digest(&shim);
        let node = Node {
            containerd,
            temp,
            shim,
            shim_digest,
            wasm_image: wasm.name,
        };
        node.write_restart_script(&env);
        node
    }

    fn path(&self, name: &str) -> PathBuf {
        self.temp.path().join(name)
    }

    /// `restart.sh`: restarts the harness's containerd (see
    /// `Containerd::write_restart_script`), recording each call in `restarts.log`.
    fn write_restart_script(&self, env: &[(String, String)]) {
        self.containerd.write_restart_script(
            &self.path("restart.sh"),
            env,
            Some(&self.path("restarts.log")),
        );
    }

    fn restarts(&self) -> usize {
        fs::read_to_string(self.path("restarts.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    fn install_dir(&self) -> PathBuf {
        self.path("bin")
    }

    fn warden(&self, command: &str, env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
        c.arg(command)
            .arg("--config")
            .arg(self.containerd.config_path())
            .arg("--install-dir")
            .arg(self.install_dir())
            .arg("--state-dir")
            .arg(self.path("state"))
            .arg("--audit-log")
            .arg(self.path("audit.jsonl"))
            .arg("--policy")
            .arg(self.path("policy.toml"))
            .arg("--restart-command")
            .arg(self.path("restart.sh"))
            .arg("--verify-timeout")
            .arg("60");
        // The harness's containerd may not be the one on PATH: tell the installer which it is.
        let release = self.containerd.version();
        c.arg("--containerd-version").arg(format!(
            "{}.{}.{}",
            release.major, release.minor, release.patch
        ));
        if command == "install" || command == "plan" {
            c.arg("--shim")
                .arg(&self.shim)
                .arg("--shim-digest")
                .arg(&self.shim_digest);
        }
        c.env_remove(ENV);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    fn run_ok(&self, command: &str) -> Output {
        let out = self.warden(command, &[]).output().unwrap();
        assert!(
            out.status.success(),
            "warden {command}: {}\n--- containerd log (end)\n{}",
            show(&out),
            self.containerd.log_tail(40)
        );
        out
    }

    fn cri(&self) -> Client {
        Client::connect(self.containerd.socket(), Duration::from_secs(30)).unwrap()
    }

    fn handlers(&self) -> Vec<String> {
        self.cri().runtime_handlers().unwrap()
    }
}

#[test]
fn install_runs_a_wasm_pod_through_cri_and_uninstall_restores_the_config() {
    install_roundtrip_in_the_main_file(None);
}

/// containerd 1.7 (Debian trixie's), whose config is version 2 like 1.6's: the same
/// main-file edit, the same absolute `runtime_type`.
#[test]
fn install_on_containerd_1_7_edits_the_main_file_and_uninstall_restores_it() {
    install_roundtrip_in_the_main_file(Some(Version::V1_7));
}

/// Plan, install (one restart), re-run (no restart), verify, a Wasm pod through CRI, one
/// audit chain with the shim's records, uninstall restoring the main config byte for byte.
fn install_roundtrip_in_the_main_file(version: Option<Version>) {
    let (_serial, node, config, original) = serial_node_on(version, false);
    assert!(!node.handlers().contains(&"warden".to_owned()));

    let plan = node.run_ok("plan");
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(plan_text.contains("runtimes.warden]"), "{plan_text}");
    assert_eq!(
        fs::read(&config).unwrap(),
        original,
        "plan wrote the config"
    );

    let out = node.run_ok("install");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("restart: containerd.service via `sh -c "),
        "{text}"
    );
    assert!(
        text.contains("RunPodSandbox with handler `warden` accepted"),
        "{text}"
    );
    assert_eq!(node.restarts(), 1);
    let runtime_path = node.install_dir().join("containerd-shim-warden-v1");
    let handler = node
        .cri()
        .runtimes()
        .unwrap()
        .into_iter()
        .find(|h| h.name == "warden")
        .expect("containerd knows the warden handler");
    assert_eq!(
        handler.runtime_path.as_deref(),
        Some(runtime_path.to_str().unwrap())
    );
    // containerd 1.x: the absolute path, which its CRI uses to start the pod's task.
    assert_eq!(
        handler.runtime_type.as_deref(),
        Some(runtime_path.to_str().unwrap())
    );

    // A re-run changes nothing and does not restart.
    let again = node.run_ok("install");
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("unchanged: "));
    assert_eq!(node.restarts(), 1);
    node.run_ok("verify");

    // A Wasm pod, as the kubelet runs one with runtimeClassName: warden.
    run_wasm_pod(&node);

    // The installer's records and the shim's share one chain.
    let summary = warden_audit::verify_file(node.path("audit.jsonl"), None).unwrap();
    assert!(summary.writers.contains_key("installer"), "{summary:?}");
    assert!(summary.writers.contains_key("shim"), "{summary:?}");
    for event in ["install", "config-write", "restart", "verify"] {
        assert!(summary.events.contains_key(event), "{event}: {summary:?}");
    }

    let out = node.run_ok("uninstall");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("answers without the `warden` handler"),
        "{text}"
    );
    assert_eq!(node.restarts(), 2);
    assert_eq!(
        fs::read(&config).unwrap(),
        original,
        "config not restored byte for byte"
    );
    assert!(!node.handlers().contains(&"warden".to_owned()));
    assert!(!runtime_path.exists());
    assert!(!node.path("state/install.json").exists());
}

/// containerd 2.1 with a version-3 config that imports `conf.d/*.toml`, as its package
/// ships it: the runtime goes into a drop-in of its own, the main file is never written,
/// containerd restarts once, CRI knows the handler and runs a Wasm pod; uninstall removes the
/// drop-in and leaves the main file as it was, byte for byte.
#[test]
fn install_on_containerd_2_1_uses_a_conf_d_drop_in_and_uninstall_removes_it() {
    let (_serial, node, config, original) = serial_node_on(Some(Version::V2_1), true);
    assert_eq!(node.containerd.version().major, 2);
    let original_text = String::from_utf8_lossy(&original).into_owned();
    assert!(original_text.contains("version = 3"), "{original_text}");
    let drop_in = node.path("conf.d/warden.toml");
    assert!(!node.handlers().contains(&"warden".to_owned()));

    let plan = node.run_ok("plan");
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan_text.contains(drop_in.to_str().unwrap()),
        "the plan names the drop-in: {plan_text}"
    );
    assert!(!drop_in.exists(), "plan wrote the drop-in");

    let out = node.run_ok("install");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("RunPodSandbox with handler `warden` accepted"),
        "{text}"
    );
    assert_eq!(node.restarts(), 1);
    assert_eq!(
        fs::read(&config).unwrap(),
        original,
        "the main config was written; only the drop-in may be"
    );
    let written = fs::read_to_string(&drop_in).unwrap();
    assert!(
        written.contains("io.containerd.cri.v1.runtime"),
        "a version-3 drop-in: {written}"
    );
    let runtime_path = node.install_dir().join("containerd-shim-warden-v1");
    let handler = node
        .cri()
        .runtimes()
        .unwrap()
        .into_iter()
        .find(|h| h.name == "warden")
        .expect("containerd knows the warden handler");
    // containerd 2.x: the runtime type, and the binary by its absolute runtime_path.
    assert_eq!(
        handler.runtime_type.as_deref(),
        Some("io.containerd.warden.v1")
    );
    assert_eq!(
        handler.runtime_path.as_deref(),
        Some(runtime_path.to_str().unwrap())
    );
    let again = node.run_ok("install");
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("unchanged: "));
    assert_eq!(node.restarts(), 1);
    node.run_ok("verify");
    run_wasm_pod(&node);

    let out = node.run_ok("uninstall");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("answers without the `warden` handler"),
        "{text}"
    );
    assert_eq!(node.restarts(), 2);
    assert!(!drop_in.exists(), "the drop-in is left");
    assert_eq!(fs::read(&config).unwrap(), original);
    assert!(
        fs::read_dir(node.path("conf.d")).unwrap().next().is_none(),
        "files left in conf.d"
    );
    assert!(!node.handlers().contains(&"warden".to_owned()));
    assert!(!runtime_path.exists());
}

fn run_wasm_pod(node: &Node) {
    let mut cri = node.cri();
    let logs = node.path("pod-logs");
    fs::create_dir_all(&logs).unwrap();
    let pod = PodSpec::new("hello", "default")
        .handler("warden")
        .host_network(true)
        .log_dir(&logs);
    let pod_id = cri
        .run_pod(&pod)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", node.containerd.log_tail(40)));
    let container = cri
        .create_container(
            &pod_id,
            &pod,
            &ContainerSpec::new("hello", &node.wasm_image).log_path("hello.log"),
        )
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", node.containerd.log_tail(40)));
    cri.start_container(&container).unwrap();
    let status = cri
        .wait_exited(&container, Duration::from_secs(60))
        .unwrap();
    assert_eq!(status.exit_code, 0, "{status:?}");
    let log = fs::read_to_string(logs.join("hello.log")).unwrap_or_default();
    assert!(log.contains(HELLO_WASM), "container log: {log:?}");
    cri.stop_and_remove_pod(&pod_id).unwrap();
}

#[test]
fn install_killed_at_every_step_boundary_leaves_containerd_whole() {
    let (_serial, node, config, original) = serial_node();
    for point in INSTALL_POINTS {
        let out = node.warden("install", &[(ENV, point)]).output().unwrap();
        assert!(killed(&out), "install at {point}: {}", show(&out));
        let out = node.run_ok("install");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("RunPodSandbox with handler `warden` accepted"),
            "after a crash at {point}: {text}"
        );
        assert!(node.handlers().contains(&"warden".to_owned()), "{point}");
        node.run_ok("verify");
        node.run_ok("uninstall");
        assert_eq!(
            fs::read(&config).unwrap(),
            original,
            "after a crash at {point}"
        );
        assert!(!node.handlers().contains(&"warden".to_owned()), "{point}");
    }
    assert_no_temps(&node.install_dir());
}

/// `sha256:<hex>` of a file, by `sha256sum` (the debug shim is hundreds of MB).
fn file_digest(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.split_whitespace().next().unwrap();
    warden_common::Digest::from_hex(hex).unwrap().to_string()
}

fn assert_no_temps(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            assert!(
                !name.to_string_lossy().contains(".warden-tmp-"),
                "temp left: {}",
                entry.path().display()
            );
        }
    }
}
