//! The pod sandbox of a CRI node without a registry: a static native pause program built here
//! with `cc -static` and imported as [`PAUSE_IMAGE`], and the CRI config that names it and
//! registers warden's runtime as warden's installer does. The CRI tests and `make bench` use
//! it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::image::ImageBuilder;

/// The pod sandbox image: [`pause_binary`] at `/pause`.
pub const PAUSE_IMAGE: &str = "localhost/warden-test/pause:3.9";

/// The handler a RuntimeClass `warden` names.
pub const HANDLER: &str = "warden";

/// The `PATH` of the native images, as `registry.k8s.io/pause` sets it. youki's executor
/// refuses to start a native process without a `PATH` in its environment (`PATH environment
/// variable is not set`), even for an absolute entrypoint; runc does not care.
pub const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a pause does: nothing, until told to stop.
const PAUSE_C: &str = r#"#include <signal.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    for (;;) pause();
}
"#;

/// The pause program, a static native binary, built once per process (and kept in the
/// target directory across runs while its source is unchanged).
pub fn pause_binary() -> &'static Path {
    static PAUSE: OnceLock<PathBuf> = OnceLock::new();
    PAUSE.get_or_init(|| {
        let dir = crate::target_dir().join("cri-pause");
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let source = dir.join("pause.c");
        let binary = dir.join("pause");
        let unchanged = std::fs::read_to_string(&source).is_ok_and(|s| s == PAUSE_C);
        if unchanged && binary.is_file() {
            return binary;
        }
        std::fs::write(&source, PAUSE_C)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", source.display()));
        // Built under a temporary name and renamed, so a parallel test binary never sees
        // half a file.
        let partial = dir.join(format!("pause.{}", std::process::id()));
        let output = Command::new("cc")
            .args(["-static", "-Os", "-s", "-o"])
            .arg(&partial)
            .arg(&source)
            .output()
            .unwrap_or_else(|e| panic!("cannot run cc (apt-get install gcc libc6-dev): {e}"));
        assert!(
            output.status.success(),
            "cc -static failed ({}); a static glibc (libc6-dev) is needed:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::rename(&partial, &binary)
            .unwrap_or_else(|e| panic!("cannot rename to {}: {e}", binary.display()));
        binary
    })
}

/// The pause image, [`PAUSE_IMAGE`].
pub fn pause_image() -> ImageBuilder {
    let pause = std::fs::read(pause_binary()).expect("pause binary");
    ImageBuilder::new(PAUSE_IMAGE)
        .file("/pause", pause, 0o755)
        .entrypoint(["/pause"])
        .env("PATH", IMAGE_PATH)
}

/// The CRI config warden's installer writes, plus this node's sandbox image (for
/// [`crate::containerd::Options::extra_config`]).
pub fn cri_config() -> String {
    format!(
        r#"
[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "{PAUSE_IMAGE}"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}]
runtime_type = "io.containerd.warden.v1"
pod_annotations = ["warden.dev/*"]
"#
    )
}
