//! OCI Wasm-layer images (the module is a layer, not a file) under warden, on the containerd
//! the harness starts (`WARDEN_TEST_CONTAINERD`): on 1.7 and 2.x warden reads the module from
//! containerd's content store; containerd 1.6.20 refuses such images before any shim starts,
//! which `harness::wasm_layer_images_on_this_containerd` pins.

mod common;

use common::{Node, assert_refused, node};
use warden_test::containerd::RunOpts;
use warden_test::guests::{self, HELLO_WASM};
use warden_test::image::{self, ImageBuilder};

/// containerd's version, as `ctr version` reports the server's.
fn server_version(n: &Node) -> (u32, u32) {
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
fn reads_wasm_layers(n: &Node) -> bool {
    server_version(n) >= (1, 7)
}

/// Imports an OCI Wasm-layer image of `module` (media type `media_type`, platform `os/wasm`)
/// and returns its name and the layer's digest.
fn layer_image(
    n: &Node,
    name: &str,
    module: Vec<u8>,
    media_type: &str,
    os: &str,
) -> (String, String) {
    let name = format!("localhost/warden-test/{name}:latest");
    let image = ImageBuilder::new(&name)
        .wasm_layer(module, media_type)
        .platform(os, "wasm");
    let info = n.containerd.import_image(&image);
    let digest = info.layers[0].1.clone();
    (name, digest)
}

/// containerd 1.6.20 refuses an OCI Wasm-layer image at import, before any shim: what the
/// README tells users of that version.
fn assert_not_importable(n: &Node, module: Vec<u8>) {
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

#[test]
fn wasm_layer_images_run_from_the_content_store() {
    let n = node();
    let guests = guests::build_guests();
    if !reads_wasm_layers(&n) {
        assert_not_importable(&n, guests.p1("hello"));
        return;
    }
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
        let (image, layer_digest) = layer_image(&n, name, module, media_type, os);
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
        // Compiled once: the second run was a cache hit (the third was refused first).
        let log = n.containerd.log();
        let layer = format!("the Wasm layer {layer_digest}");
        assert_eq!(
            log.matches(&format!("compiled {layer}")).count(),
            1,
            "{name}: {log}"
        );
        assert_eq!(
            log.matches(&format!("compile cache hit for {layer}"))
                .count(),
            1,
            "{name}: {log}"
        );
    }
}

#[test]
fn a_precompiled_artifact_in_a_wasm_layer_is_refused() {
    let n = node();
    if !reads_wasm_layers(&n) {
        assert_not_importable(&n, guests::build_guests().p1("hello"));
        return;
    }
    let engine = wasmtime::Engine::default();
    let cwasm = engine
        .precompile_module(&guests::build_guests().p1("hello"))
        .expect("precompile");
    let (image, _) = layer_image(&n, "layer-cwasm", cwasm, image::MEDIA_TYPE_WASM, "wasip1");
    let r = n.containerd.run(
        &image,
        &n.containerd.unique_id("cwasm"),
        RunOpts::warden().args(["/app.wasm"]),
    );
    assert_refused(&r, "rule precompiled");
}
