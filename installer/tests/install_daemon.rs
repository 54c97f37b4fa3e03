//! `warden install --daemon` as the DaemonSet runs it, end to end on this machine: the test
//! harness's real containerd (CRI on), restarted through systemd's D-Bus API (a private
//! dbus-daemon and a stand-in for systemd's Manager whose `RestartUnit` runs the harness's
//! restart script), the node's label patched on an API server that replays recorded
//! exchanges, containerd's version read from the recorded Node.
//!
//! The daemon installs, restarts containerd once (over D-Bus), verifies through CRI, writes
//! the policy from its source, and labels the node. Then the installed shim is deleted: a
//! re-check restores it and audits the repair. Then SIGTERM: it exits 0, leaves the shim
//! installed and the label in place (no removal reaches the API server). Last, uninstall
//! mode (`WARDEN_UNINSTALL=true`): the label's removal reaches the API server before
//! anything is uninstalled, containerd is restarted over D-Bus, and the daemon idles until
//! SIGTERM.
//!
//! The pod sandbox's image is a static `pause` built here with rustc (the musl target that
//! `rust-toolchain.toml` installs), so this test builds none of the Wasm guests.

mod daemon_support;

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daemon_support::{
    DbusDaemon, RecordedApi, SystemdStandIn, build_pause, exchanges_with, records, wait_until,
};
use warden_common::Digest;
use warden_test::containerd::{Containerd, Options};
use warden_test::image::ImageBuilder;

const PAUSE_IMAGE: &str = "localhost/warden-test/pause:1";
const NODE: &str = "worker-1";
const POLICY: &str =
    "version = 1\n\n[profiles.reader]\nnamespaces = [\"*\"]\nenv = [\"LOG_LEVEL\"]\n";

struct Daemon {
    child: Option<Child>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn daemon_installs_over_dbus_labels_repairs_leaves_all_in_place_on_sigterm_and_uninstalls_on_request()
 {
    warden_test::require_root();
    let started = Instant::now();
    let temp = tempfile::Builder::new()
        .prefix("warden-daemon-")
        .tempdir()
        .unwrap();
    let dir = temp.path();
    let path = |name: &str| dir.join(name);
    let install_dir = path("bin");
    let env = vec![
        (
            "WARDEN_AUDIT_LOG".to_owned(),
            path("audit.jsonl").display().to_string(),
        ),
        (
            "WARDEN_POLICY".to_owned(),
            path("policy/policy.toml").display().to_string(),
        ),
        (
            "WARDEN_CACHE_DIR".to_owned(),
            path("cache").display().to_string(),
        ),
    ];
    let containerd = Containerd::start(Options {
        cri: true,
        shim_dir: Some(install_dir.clone()),
        namespace: "k8s.io".into(),
        env: env.clone(),
        extra_config: format!(
            "[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"{PAUSE_IMAGE}\"\n"
        ),
        ..Options::default()
    });
    containerd.import_image(
        &ImageBuilder::new(PAUSE_IMAGE)
            .file("/pause", build_pause(dir), 0o755)
            .entrypoint(["/pause"])
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
    );
    let config = containerd.config_path();
    let release = containerd.version();
    let runtime_version = format!(
        "containerd://{}.{}.{}",
        release.major, release.minor, release.patch
    );

    // The shim as the image ships it: a copy (the build may replace the original).
    let shim = path("shipped/containerd-shim-warden-v1");
    fs::create_dir_all(shim.parent().unwrap()).unwrap();
    fs::copy(warden_test::shim::shim_binary(), &shim).unwrap();
    let shim_digest = Digest::of(&fs::read(&shim).unwrap()).to_string();

    // systemd: its Manager on a private bus; RestartUnit runs the harness's restart script.
    containerd.write_restart_script(&path("restart.sh"), &env, Some(&path("restarts.log")));
    let bus = DbusDaemon::start();
    let systemd = SystemdStandIn::on_bus(&bus.address, Some(&path("restart.sh")));

    // The API server: the Node (with this containerd's version) and the label's patches.
    let api = RecordedApi::start(exchanges_with(
        &["get-node", "patch-ready", "patch-unready"],
        &[("{NODE}", NODE), ("containerd://1.6.20", &runtime_version)],
    ));
    api.write_kubeconfig(&path("kubeconfig"));

    // The ConfigMap's policy.
    fs::create_dir_all(path("config")).unwrap();
    fs::write(path("config/policy.toml"), POLICY).unwrap();

    let stdout = fs::File::create(path("daemon.out")).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_warden"));
    command
        .args([
            "install",
            "--daemon",
            "--recheck-interval",
            "1",
            "--verify-timeout",
            "60",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--install-dir")
        .arg(&install_dir)
        .arg("--state-dir")
        .arg(path("state"))
        .arg("--audit-log")
        .arg(path("audit.jsonl"))
        .arg("--policy")
        .arg(path("policy/policy.toml"))
        .arg("--policy-source")
        .arg(path("config/policy.toml"))
        .arg("--shim")
        .arg(&shim)
        .arg("--shim-digest")
        .arg(&shim_digest)
        .arg("--kubeconfig")
        .arg(path("kubeconfig"))
        .env("NODE_NAME", NODE)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env_remove("WARDEN_UNINSTALL")
        .env_remove("WARDEN_AUDIT_LOG")
        .env_remove("WARDEN_POLICY")
        .env_remove(warden_installer::crash_hook::ENV)
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stdout);
    let mut daemon = Daemon {
        child: Some(command.spawn().unwrap()),
    };
    let log = || {
        format!(
            "--- daemon output\n{}\n--- API requests\n{:#?}\n--- containerd log (end)\n{}",
            fs::read_to_string(path("daemon.out")).unwrap_or_default(),
            api.lines(),
            containerd.log_tail(30)
        )
    };

    // Installed, restarted over D-Bus, verified, policy written, labelled.
    wait_until(
        "the label patched",
        Duration::from_secs(90),
        || api.wait_for("patch-ready", Duration::from_millis(10)),
        &log,
    );
    let out = fs::read_to_string(path("daemon.out")).unwrap();
    assert!(
        out.contains(&format!(
            "containerd {}.x (the Node's containerRuntimeVersion {runtime_version})",
            release.major
        )),
        "{}",
        log()
    );
    assert!(
        out.contains("restart: containerd.service via systemd's D-Bus API (bus connection"),
        "{}",
        log()
    );
    let calls = systemd.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].unit, "containerd.service");
    assert_eq!(calls[0].result, "done");
    assert_eq!(
        fs::read_to_string(path("restarts.log"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    assert_eq!(
        fs::read_to_string(path("policy/policy.toml")).unwrap(),
        POLICY
    );
    let installed = install_dir.join("containerd-shim-warden-v1");
    assert!(installed.is_file());
    let audit = records(&path("audit.jsonl"));
    let events: Vec<&str> = audit.iter().map(|r| r.event.as_str()).collect();
    for event in [
        "install",
        "config-write",
        "restart",
        "verify",
        "policy-write",
        "label",
    ] {
        assert!(events.contains(&event), "{event} missing: {events:?}");
    }
    // The label came after the verification, which came after the restart.
    let at = |event: &str| events.iter().position(|e| *e == event).unwrap();
    assert!(
        at("restart") < at("verify") && at("verify") < at("label"),
        "{events:?}"
    );
    let policy_write = audit.iter().find(|r| r.event == "policy-write").unwrap();
    assert_eq!(policy_write.digest_before, None);
    assert_eq!(
        policy_write.digest_after.as_deref(),
        Some(Digest::of(POLICY.as_bytes()).to_string().as_str())
    );

    // Drift: the shim is deleted. A re-check restores it and audits the repair.
    fs::remove_file(&installed).unwrap();
    let repaired = Instant::now();
    wait_until(
        "the shim restored and the repair audited",
        Duration::from_secs(30),
        || {
            installed.is_file()
                && records(&path("audit.jsonl")).iter().any(|r| {
                    r.event == "repair"
                        && r.decision.as_deref() == Some("pass")
                        && r.reason.as_deref().is_some_and(|reason| {
                            reason.contains(&format!("the shim {} is missing", installed.display()))
                        })
                })
        },
        &log,
    );
    eprintln!("repaired in {:?}", repaired.elapsed());
    assert_eq!(
        Digest::of(&fs::read(&installed).unwrap()).to_string(),
        shim_digest
    );
    // A new binary alone restarts nothing.
    assert_eq!(systemd.calls().len(), 1);

    // The ConfigMap changes: the node's policy follows, audited with both digests.
    let updated = format!("{POLICY}\n[profiles.writer]\nnamespaces = [\"*\"]\n");
    fs::write(path("config/policy.toml"), &updated).unwrap();
    wait_until(
        "the new policy written",
        Duration::from_secs(30),
        || fs::read_to_string(path("policy/policy.toml")).unwrap_or_default() == updated,
        &log,
    );
    wait_until(
        "the policy write audited",
        Duration::from_secs(10),
        || {
            records(&path("audit.jsonl")).iter().any(|r| {
                r.event == "policy-write"
                    && r.digest_before.as_deref()
                        == Some(Digest::of(POLICY.as_bytes()).to_string().as_str())
            })
        },
        &log,
    );

    // SIGTERM: exit 0, nothing taken away.
    let mut child = daemon.child.take().unwrap();
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", log());
    assert!(installed.is_file(), "SIGTERM uninstalled the shim");
    let config_text = fs::read_to_string(&config).unwrap();
    assert!(config_text.contains("runtimes.warden"), "{config_text}");
    assert!(
        !api.received()
            .iter()
            .any(|r| r.matched.as_deref() == Some("patch-unready")),
        "the label was removed: {:#?}",
        api.lines()
    );
    assert!(
        fs::read_to_string(path("daemon.out"))
            .unwrap()
            .contains("SIGTERM: exiting; warden stays installed and the node keeps its label"),
        "{}",
        log()
    );

    // Uninstall mode (WARDEN_UNINSTALL=true): the label goes first, then the uninstall
    // (containerd restarted over D-Bus again), then it idles until SIGTERM.
    let restarts_before = systemd.calls().len();
    let stdout = fs::File::options()
        .append(true)
        .open(path("daemon.out"))
        .unwrap();
    command
        .env("WARDEN_UNINSTALL", "true")
        .stdout(stdout.try_clone().unwrap())
        .stderr(stdout);
    daemon.child = Some(command.spawn().unwrap());
    wait_until(
        "uninstalled",
        Duration::from_secs(60),
        || {
            fs::read_to_string(path("daemon.out"))
                .unwrap_or_default()
                .contains("uninstalled; idling until SIGTERM")
        },
        &log,
    );
    let unlabel = api
        .received()
        .iter()
        .position(|r| r.matched.as_deref() == Some("patch-unready"))
        .expect("the label was not removed");
    assert_eq!(unlabel, api.received().len() - 1, "{:#?}", api.lines());
    let audit = records(&path("audit.jsonl"));
    let label_removed = audit
        .iter()
        .position(|r| r.event == "label" && r.decision.as_deref() == Some("remove"))
        .expect("no label removal audited");
    let first_uninstall = audit
        .iter()
        .position(|r| r.event == "uninstall")
        .expect("no uninstall audited");
    assert!(label_removed < first_uninstall, "the label must go first");
    assert!(!installed.exists());
    assert!(
        !fs::read_to_string(&config)
            .unwrap()
            .contains("runtimes.warden")
    );
    assert_eq!(systemd.calls().len(), restarts_before + 1);
    // Idle, not exited (a DaemonSet pod must not crash-loop), until SIGTERM.
    let mut child = daemon.child.take().unwrap();
    assert!(child.try_wait().unwrap().is_none());
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", log());

    warden_audit::verify_file(path("audit.jsonl"), None).unwrap();
    eprintln!("whole test: {:?}", started.elapsed());
}
