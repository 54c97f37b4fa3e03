//! OCI Wasm-layer images (the module is a layer, not a file) under warden, on the containerd
//! the harness starts (`WARDEN_TEST_CONTAINERD`): on 1.7 and 2.x warden reads the module from
//! containerd's content store; containerd 1.6.20 refuses such images before any shim starts,
//! which `harness::wasm_layer_images_on_this_containerd` pins.

mod common;

use common::layers::{
    assert_layer_images_run, assert_not_importable, layer_image, reads_wasm_layers,
};
use common::{assert_refused, node};
use warden_test::containerd::RunOpts;
use warden_test::guests;
use warden_test::image;

#[test]
fn wasm_layer_images_run_from_the_content_store() {
    let n = node();
    if !reads_wasm_layers(&n) {
        assert_not_importable(&n, guests::build_guests().p1("hello"));
        return;
    }
    assert_layer_images_run(&n);
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
    let (image, _) = layer_image(
        &n.containerd,
        "layer-cwasm",
        cwasm,
        image::MEDIA_TYPE_WASM,
        "wasip1",
    );
    let r = n.containerd.run(
        &image,
        &n.containerd.unique_id("cwasm"),
        RunOpts::warden().args(["/app.wasm"]),
    );
    assert_refused(&r, "rule precompiled");
}
