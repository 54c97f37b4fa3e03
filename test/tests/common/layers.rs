//! OCI Wasm-layer images (the module is a layer, not a file): building and importing them,
//! and what warden must do with them on a containerd that unpacks them (1.7, 2.x).

use super::{Node, assert_refused};
use std::time::{Duration, Instant};

use super::cri::{CriNode, log_lines};
use warden_cri::ContainerSpec;
use warden_test::containerd::{Containerd, RunOpts};
use warden_test::guests::{self, HELLO_WASM};
use warden_test::image::{self, ImageBuilder};

/// containerd's version, as `ctr version` reports the server's.
pub fn server_version(n: &Node) -> (u32, u32) {
    let text = n.containerd.ctr_ok(["version"]);
    let server = text.split("Server:").nth(1).unwrap_or_default();
    let version = server
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .unwrap_or_default()
        .trim()
        .trim_start_matches('v')
        .to_owned();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Whether this containerd unpacks images whose layers are not tars (1.6.25+, 1.7.7+, 2.x);
/// this harness's 1.6 is 1.6.20.
pub fn reads_wasm_layers(n: &Node) -> bool {
    server_version(n) >= (1, 7)
}

/// Imports an OCI Wasm-layer image of `module` (media type `media_type`, platform `os/wasm`)
/// and returns its name and the layer's digest.
pub fn layer_image(
    c: &Containerd,
    name: &str,
    module: Vec<u8>,
    media_type: &str,
    os: &str,
) -> (String, String) {
    let name = format!("localhost/warden-test/{name}:latest");
    let image = ImageBuilder::new(&name)
        .wasm_layer(module, media_type)
        .platform(os, "wasm");
    let info = c.import_image(&image);
    let digest = info.layers[0].1.clone();
    (name, digest)
}

/// A p2 component in the CNCF Wasm OCI artifact layout (config
/// `application/vnd.wasm.config.v0+json`, one `application/wasm` layer), as the Wasm
/// ecosystem's tools publish it; returns its name and the layer's digest.
pub fn cncf_artifact(c: &Containerd) -> (String, String) {
    let name = "localhost/warden-test/cncf-artifact:latest";
    let image = ImageBuilder::new(name)
        .wasm_layer(guests::build_guests().p2("hello"), image::MEDIA_TYPE_WASM)
        .platform("wasip2", "wasm")
        .cncf_wasm_config();
    let info = c.import_image(&image);
    (name.to_string(), info.layers[0].1.clone())
}

/// `ctr run` cannot start a CNCF Wasm artifact: ctr itself (containerd's client library)
/// refuses the image's config type before any shim runs, on 1.7 and 2.1 alike. The README
/// says so; CRI runs such images ([`assert_layer_pods_run`]).
pub fn assert_ctr_refuses_cncf_artifacts(n: &Node) {
    let (name, _) = cncf_artifact(&n.containerd);
    let r = n.containerd.run(
        &name,
        &n.containerd.unique_id("cncf"),
        RunOpts::warden().args(["/hello.wasm"]),
    );
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr
            .contains("unknown image config media type application/vnd.wasm.config.v0+json"),
        "{r:?}"
    );
}

/// containerd 1.6.20 refuses an OCI Wasm-layer image at import, before any shim: what the
/// README tells users of that version.
pub fn assert_not_importable(n: &Node, module: Vec<u8>) {
    let image = ImageBuilder::new("localhost/warden-test/layer-old:latest")
        .wasm_layer(module, image::MEDIA_TYPE_WASM)
        .platform("wasip1", "wasm");
    let (tar, _) = n.containerd.write_image_tar(&image);
    let imported = n.containerd.try_import(&tar);
    assert!(!imported.status.success(), "{imported:?}");
    assert!(
        String::from_utf8_lossy(&imported.stderr)
            .contains("mismatched image rootfs and manifest layers"),
        "{imported:?}"
    );
}

/// A p1 module and a p2 component, each as an OCI Wasm-layer image, run through `ctr` from
/// containerd's content store: the audit record's module digest is the layer's digest, a
/// `modules` allowlist naming it admits it and one naming another refuses it, and the second
/// run is a compile-cache hit. Needs a containerd that reads Wasm layers (1.7, 2.x).
pub fn assert_layer_images_run(n: &Node) {
    let guests = guests::build_guests();
    assert!(
        reads_wasm_layers(n),
        "containerd {:?} does not unpack Wasm layers",
        server_version(n)
    );
    let cases = [
        (
            "layer-p1",
            guests.p1("hello"),
            image::MEDIA_TYPE_WASM,
            "wasip1",
        ),
        (
            "layer-p2",
            guests.p2("hello"),
            image::MEDIA_TYPE_WASM_COMPONENT,
            "wasip2",
        ),
    ];
    for (name, module, media_type, os) in cases {
        let (image, layer_digest) = layer_image(&n.containerd, name, module, media_type, os);
        // The whole argv is given, as for any ctr run; the module is the layer whatever
        // argv[0] says.
        let r = n.containerd.run(
            &image,
            &n.containerd.unique_id(name),
            RunOpts::warden().args(["/hello.wasm"]),
        );
        assert_eq!(
            r.code,
            Some(0),
            "{name}: {r:?}\n{}",
            n.containerd.log_tail(30)
        );
        assert_eq!(r.stdout, format!("{HELLO_WASM}\n"), "{name}: {r:?}");
        // The digest admission, the audit record and the cache use is the layer's.
        let created = n.audit_events("create", None);
        let last = created.last().expect("a create record");
        assert_eq!(last["module_digest"], layer_digest.as_str(), "{last}");

        // The modules allowlist: the layer's digest admits it, another refuses it.
        n.set_policy(&format!(
            "version = 1\n[profiles.only]\nnamespaces = [\"*\"]\nmodules = [\"{layer_digest}\"]\n[profiles.other]\nnamespaces = [\"*\"]\nmodules = [\"sha256:{}\"]\n",
            "0".repeat(64)
        ));
        let r = n.run_as("only", &image, &[], RunOpts::warden());
        assert_eq!(r.code, Some(0), "{name}: {r:?}");
        let r = n.run_as("other", &image, &[], RunOpts::warden());
        assert_refused(&r, "rule modules");
        std::fs::remove_file(n.policy_path()).expect("remove policy");
        // Compiled once (here, or earlier as a rootfs module with the same bytes: the cache
        // is keyed by the module's digest); the layer's other run was a cache hit. Two runs
        // of the layer ran (the third was refused first).
        let log = n.containerd.log();
        let compiled = log
            .lines()
            .filter(|l| l.contains("msg=\"compiled ") && l.contains(&layer_digest))
            .count();
        assert_eq!(compiled, 1, "{name}: {log}");
        let layer = format!("the Wasm layer {layer_digest}");
        let layer_compiles = log.matches(&format!("compiled {layer}")).count();
        let layer_hits = log
            .matches(&format!("compile cache hit for {layer}"))
            .count();
        assert_eq!(layer_compiles + layer_hits, 2, "{name}: {log}");
        assert!(layer_hits >= 1, "{name}: {log}");
    }
}

/// A p1 module and a p2 component as OCI Wasm-layer images, and a p2 component in the CNCF
/// Wasm OCI artifact layout, run in a pod through CRI, with handler `warden`; the audit
/// record's module digest is the layer's.
pub fn assert_layer_pods_run(n: &mut CriNode) {
    let guests = guests::build_guests();
    n.set_policy("version = 1\n");
    let cases = [
        (
            "layer-pod-p1",
            guests.p1("hello"),
            image::MEDIA_TYPE_WASM,
            "wasip1",
        ),
        (
            "layer-pod-p2",
            guests.p2("hello"),
            image::MEDIA_TYPE_WASM_COMPONENT,
            "wasip2",
        ),
    ];
    let mut images: Vec<(&str, String, String)> = cases
        .into_iter()
        .map(|(name, module, media_type, os)| {
            let (image, digest) = layer_image(&n.containerd, name, module, media_type, os);
            (name, image, digest)
        })
        .collect();
    // And a component in the CNCF Wasm OCI artifact layout, which `ctr run` cannot start.
    let (image, digest) = cncf_artifact(&n.containerd);
    images.push(("cncf-artifact", image, digest));
    for (name, image, layer_digest) in images {
        // containerd 2.x fills CRI's image cache a few milliseconds after an import.
        let deadline = Instant::now() + Duration::from_secs(2);
        while n.cri.image_status(&image).expect("ImageStatus").is_none() {
            assert!(Instant::now() < deadline, "CRI does not see {image}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let pod = n.pod(name, "default");
        let pod_id = n.run_pod(&pod);
        // The image has no entrypoint: the pod names the module as a Pod's `command` would.
        let c = ContainerSpec::new("hello", &image).command(["/hello.wasm"]);
        let (status, log) = n.run_to_exit(&pod_id, &pod, c);
        assert_eq!(
            status.exit_code,
            0,
            "{name}: {status:?}\n{log}\n{}",
            n.log()
        );
        assert_eq!(log_lines(&log), [HELLO_WASM], "{name}: {log}");
        let created = n.audit_of(&status.id, "create");
        assert_eq!(created.len(), 1, "{name}: {:?}", n.audit());
        assert_eq!(created[0]["module_digest"], layer_digest.as_str(), "{name}");
        n.cri.stop_and_remove_pod(&pod_id).expect("remove pod");
        n.pods.retain(|p| p != &pod_id);
    }
}
