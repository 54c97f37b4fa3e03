//! The Kubernetes path, on a real containerd with its CRI plugin: pods reach warden exactly as
//! the kubelet sends them (`RunPodSandbox` with handler `warden`, `CreateContainer`,
//! `StartContainer`), through [`warden_cri::Client`] on containerd's socket.
//!
//! containerd's config registers the runtime as warden's installer does
//! (`runtimes.warden`, `runtime_type = "io.containerd.warden.v1"`,
//! `pod_annotations = ["warden.dev/*"]`); the node is [`common::cri`]'s.

mod common;

use std::time::{Duration, Instant};

use common::cri::{HANDLER, cri_node, log_lines};
use serde_json::Value;
use warden_cri::{ContainerSpec, ContainerState};
use warden_test::guests::{self, HELLO_NATIVE, HELLO_WASM, Wasi};
use warden_test::image::ImageBuilder;

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
    let (id, addr) = n.serve_http(
        &pod_id,
        &pod,
        ContainerSpec::new("web", image),
        Duration::from_secs(30),
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
    let (_, log) = n.stop_service(&id, Duration::from_secs(20));
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

#[test]
fn kubectl_exec_into_a_wasm_container_runs_nothing() {
    // The pod author's way to native code in a running Wasm pod: `kubectl exec`, which is
    // CRI's ExecSync, with a native binary the image carries beside its module.
    let mut n = cri_node();
    n.set_policy("version = 1\n");
    let image = "localhost/warden-test/http-service-with-native:latest";
    let g = guests::build_guests();
    let bytes = std::fs::read(g.http_service()).expect("http-service");
    let native = std::fs::read(g.native_hello()).expect("native hello");
    n.containerd.import_image(
        &ImageBuilder::wasm_rootfs(image, "/http-service.wasm", bytes).file(
            "/bin/native-hello",
            native,
            0o755,
        ),
    );
    let pod = n.pod("exec-0", "default");
    let pod_id = n.run_pod(&pod);
    let (id, addr) = n.serve_http(
        &pod_id,
        &pod,
        ContainerSpec::new("web", image),
        Duration::from_secs(30),
    );

    for cmd in [
        &["/bin/native-hello"][..],
        &["/http-service.wasm"],
        &["/bin/sh", "-c", "id"],
    ] {
        let result = n.cri.exec_sync(&id, cmd, Duration::from_secs(10));
        let error = result.expect_err("ExecSync ran in a Wasm container");
        eprintln!("ExecSync {cmd:?}: {error}");
        assert!(
            error.message().contains("not supported")
                || error.message().contains("not implemented"),
            "{cmd:?}: {error}"
        );
    }
    // The refusal changed nothing: the service still answers, and the log holds no output
    // of the native binary.
    let r = warden_test::http::get(addr, "/log?msg=after-exec").expect("GET");
    assert_eq!(r.status, 200, "{r:?}");
    let (_, log) = n.stop_service(&id, Duration::from_secs(20));
    assert!(!log.contains(HELLO_NATIVE), "the native binary ran: {log}");
    assert!(log.contains("after-exec"), "{log}");
    // One container ran, once: the audit log has one start and one exit for it.
    assert_eq!(n.audit_of(&id, "start").len(), 1, "{:?}", n.audit());
    assert_eq!(n.audit_of(&id, "exit").len(), 1, "{:?}", n.audit());
}

#[test]
fn the_pods_memory_limit_bounds_a_module_its_profile_leaves_unbounded() {
    // Under strict the profile sets no memory limit: the pod's `resources.limits.memory`
    // (the cgroup the kubelet asks for) is the bound. A module that touches more is killed,
    // and the audit log says how it ended; within the limit the same module runs to its end.
    let mut n = cri_node();
    n.set_policy("version = 1\n");
    let image = n.guest(Wasi::P1, "memory");
    let limit = 96u64 << 20;
    let run = |n: &mut common::cri::CriNode, name: &str, mib: &str| {
        let pod = n.pod(name, "default");
        let pod_id = n.run_pod(&pod);
        let c = ContainerSpec::new("memory", &image)
            .command(["/memory.wasm"])
            .args([mib])
            .memory_limit(limit);
        n.run_to_exit(&pod_id, &pod, c)
    };

    let (status, log) = run(&mut n, "within", "16");
    assert_eq!(status.exit_code, 0, "{status:?}\n{log}");
    assert!(log.contains("done 16 MiB"), "{log}");

    let (status, log) = run(&mut n, "beyond", "400");
    // The kernel's OOM killer in the container's memory cgroup ended it (SIGKILL), and the
    // exit record says so. CRI's reason says `Error`, not `OOMKilled`: the shim does not yet
    // publish containerd's TaskOOM event (see the README's Status).
    assert_eq!(status.exit_code, 137, "{status:?}\n{log}");
    assert!(!log.contains("done 400 MiB"), "{log}");
    assert!(
        log.contains("allocated 16 MiB"),
        "it ran until the limit: {log}"
    );
    let exit = n.audit_of(&status.id, "exit");
    assert_eq!(exit.len(), 1, "{:?}", n.audit());
    assert_eq!(exit[0]["exit_code"], 137, "{exit:?}");
    assert_eq!(exit[0]["ended"], "killed", "{exit:?}");
    let reason = exit[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("killed by the kernel's OOM killer"),
        "{exit:?}"
    );
    let create = n.audit_of(&status.id, "create");
    assert_eq!(create[0]["grants"], "nothing", "{create:?}");
}
