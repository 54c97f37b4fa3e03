//! Warm `ctr run --rm` of the p1 hello against runc's native hello on each containerd release
//! warden supports (1.6, 1.7, 2.1, each its own private containerd), and on releases that
//! unpack one (1.7.7 and later) the same module as an OCI Wasm-layer image read from the
//! content store.

use anyhow::Result;
use warden_test::containerd::{Containerd, Options, RunOpts};
use warden_test::containerd_versions::{Release, Version};
use warden_test::image::ImageBuilder;

use crate::machine::Machine;
use crate::report::{Section, Table};
use crate::stats::Samples;
use crate::{Bench, NATIVE_IMAGE, import_native_hello, warden_options};

pub fn run(b: &Bench, machine: &mut Machine) -> Result<Section> {
    let mut table = Table::new(
        "warm start per containerd release, ctr run --rm",
        "ms",
        "runc + static native hello on the same release",
    );
    for version in [Version::V1_6, Version::V1_7, Version::V2_1] {
        let files = tempfile::tempdir()?;
        std::fs::copy(
            b.files.path().join("policy.toml"),
            files.path().join("policy.toml"),
        )?;
        let c = Containerd::start(Options {
            version: Some(version.clone()),
            ..warden_options(files.path())
        });
        let release = c.version();
        machine.containerd.push(release.to_string());
        import_native_hello(&c, b.guests)?;
        let rootfs = "localhost/bench/p1:1";
        c.import_image(&ImageBuilder::wasm_rootfs(
            rootfs,
            "/app.wasm",
            b.guests.p1("hello"),
        ));
        let layer = "localhost/bench/p1-layer:1";
        let layers = release
            >= Release {
                major: 1,
                minor: 7,
                patch: 7,
            };
        if layers {
            c.import_image(
                &ImageBuilder::new(layer)
                    .wasm_layer(b.guests.p1("hello"), warden_test::image::MEDIA_TYPE_WASM)
                    .platform("wasip1", "wasm"),
            );
        }
        let measure = |image: &str, opts: &dyn Fn() -> RunOpts| -> Result<Samples> {
            let mut samples = Samples::default();
            for i in 0..b.runs + 2 {
                let id = c.unique_id("v");
                let r = c.run(image, &id, opts());
                anyhow::ensure!(r.success(), "{release} {image}: {r:?}\n{}", c.log_tail(20));
                if i >= 2 {
                    samples.push(r.duration.as_secs_f64() * 1000.0);
                }
            }
            Ok(samples)
        };
        let base = format!("{release}: runc + static native hello");
        table
            .measured(
                &base,
                &measure(NATIVE_IMAGE, &|| RunOpts::default().args(["/hello"]))?,
            )
            .against(&base);
        table
            .measured(
                &format!("{release}: warden p1 hello, rootfs"),
                &measure(rootfs, &|| RunOpts::warden().args(["/app.wasm"]))?,
            )
            .against(&base);
        let layer_case = format!("{release}: warden p1 hello, Wasm layer");
        if layers {
            table
                .measured(
                    &layer_case,
                    &measure(layer, &|| RunOpts::warden().args(["/app.wasm"]))?,
                )
                .against(&base);
        } else {
            table.not_run(&layer_case, &format!("refused at import by {release}"));
        }
    }
    let mut s = Section::new("versions", "Warm start per containerd release");
    s.table(table);
    s.note("Each release is its own private containerd, started in turn; 2 unmeasured runs per case first. A Wasm-layer image costs the shim a few content-store calls (container, image, manifest, layer) before the cache lookup.");
    Ok(s)
}
