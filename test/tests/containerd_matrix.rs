//! What must hold on every containerd release warden supports, each checked on its own
//! containerd whatever `WARDEN_TEST_CONTAINERD` chooses for the other tests: 1.6 (the
//! system's, Debian bookworm), 1.7 (Debian trixie's) and 2.1 (Debian sid's), fetched once
//! into the target directory (see `warden_test::containerd_versions`).
//!
//! On each: a p1 module and a p2 component run deny-by-default through `ctr`; a module that
//! tries what it was not granted is stopped and the audit log says why; a profile the
//! namespace may not use is refused at create with its rule; a pod with handler `warden`
//! runs through CRI. On 1.7 and 2.1, which unpack OCI Wasm-layer images: a Wasm-layer p1
//! module and p2 component run through `ctr` and through CRI from the content store; a
//! component in the CNCF Wasm OCI artifact layout runs through CRI (`ctr run` itself refuses
//! its config type) (see [`common::layers`]). 1.6.20 refuses such images at import, before any shim.

mod common;

use std::time::{Duration, Instant};

use common::cri::{CriNode, cri_node_on, log_lines};
use common::layers::{
    assert_ctr_refuses_cncf_artifacts, assert_layer_images_run, assert_layer_pods_run,
    assert_not_importable, reads_wasm_layers,
};
use common::{Node, assert_denied, assert_refused, node_on};
use warden_cri::ContainerSpec;
use warden_test::containerd::RunOpts;
use warden_test::containerd_versions::Version;
use warden_test::guests::{self, HELLO_WASM, Wasi};

/// The release `version` must report as `(major, minor)`.
fn expected(version: &Version) -> (u32, u32) {
    match version {
        Version::V1_6 => (1, 6),
        Version::V1_7 => (1, 7),
        Version::V2_1 => (2, 1),
        Version::Path(_) => unreachable!("the matrix names releases"),
    }
}

/// Through `ctr`: p1 and p2 hello deny-by-default, a runtime denial audited with its rule,
/// a refusal at create with its rule.
fn ctr_checks(version: &Version) -> Node {
    let n = node_on(version.clone());
    let release = n.containerd.version();
    assert_eq!(
        (release.major, release.minor),
        expected(version),
        "the harness started {release} for {version}"
    );
    n.set_policy(
        "version = 1\n[profiles.payments-api]\nnamespaces = [\"payments\"]\nenv = [\"APP_*\"]\n",
    );
    for wasi in [Wasi::P1, Wasi::P2] {
        let image = n.guest(wasi, "hello");
        let r = n.run(&image, &[], RunOpts::warden());
        assert_eq!(r.code, Some(0), "{version} {wasi:?}: {r:?}");
        assert_eq!(r.stdout, format!("{HELLO_WASM}\n"), "{version} {wasi:?}");
    }
    let created = n.audit_events("create", None);
    assert!(
        created.iter().all(|r| r["profile"] == "strict"),
        "{version}: {created:?}"
    );

    // A module that connects where strict grants nothing is stopped, and the audit says
    // which rule and which address.
    let image = n.guest(Wasi::P2, "tcp-connect");
    let mut opts = RunOpts::warden();
    opts.net_host = true;
    let r = n.run(&image, &["127.0.0.1:9"], opts);
    assert_denied(Wasi::P2, &r);
    let denials = n.audit_events("deny", Some("network.connect"));
    assert!(
        denials.iter().any(|d| d["reason"]
            .as_str()
            .is_some_and(|x| x.contains("127.0.0.1:9"))),
        "{version}: no audited connect denial: {:?}",
        n.audit()
    );

    // A profile the namespace may not use: refused at create, with its rule.
    let image = n.guest(Wasi::P1, "hello");
    let r = n.run_as("payments-api", &image, &[], RunOpts::warden());
    assert_refused(&r, "rule profile.namespace");
    assert_eq!(
        n.audit_events("deny", Some("profile.namespace")).len(),
        1,
        "{version}: {:?}",
        n.audit()
    );
    n
}

/// Through CRI: a pod with handler `warden` runs a p1 hello, its sandbox natively.
fn cri_checks(version: &Version) -> CriNode {
    let mut n = cri_node_on(Some(version.clone()));
    n.set_policy("version = 1\n");
    let image = n.guest(Wasi::P1, "hello");
    let deadline = Instant::now() + Duration::from_secs(2);
    while n.cri.image_status(&image).expect("ImageStatus").is_none() {
        assert!(Instant::now() < deadline, "CRI does not see {image}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pod = n.pod("hello", "default");
    let pod_id = n.run_pod(&pod);
    let (status, log) = n.run_to_exit(&pod_id, &pod, ContainerSpec::new("hello", &image));
    assert_eq!(status.exit_code, 0, "{version}: {status:?}\n{log}");
    assert_eq!(log_lines(&log), [HELLO_WASM], "{version}: {log}");
    assert_eq!(n.audit_of(&pod_id, "create")[0]["grants"], "native");
    assert_eq!(n.audit_of(&status.id, "exit")[0]["exit_code"], 0);
    n.cri.stop_and_remove_pod(&pod_id).expect("remove pod");
    n.pods.retain(|p| p != &pod_id);
    n
}

#[test]
fn containerd_1_6() {
    let n = ctr_checks(&Version::V1_6);
    assert!(!reads_wasm_layers(&n));
    assert_not_importable(&n, guests::build_guests().p1("hello"));
    cri_checks(&Version::V1_6);
}

#[test]
fn containerd_1_7() {
    let n = ctr_checks(&Version::V1_7);
    assert_layer_images_run(&n);
    assert_ctr_refuses_cncf_artifacts(&n);
    let mut n = cri_checks(&Version::V1_7);
    assert_layer_pods_run(&mut n);
}

#[test]
fn containerd_2_1() {
    let n = ctr_checks(&Version::V2_1);
    assert_layer_images_run(&n);
    assert_ctr_refuses_cncf_artifacts(&n);
    let mut n = cri_checks(&Version::V2_1);
    assert_layer_pods_run(&mut n);
}
