//! The C hello: `test/guests/c/hello.c` built with Debian's clang for `wasm32-wasi` against
//! wasi-libc (`make deps` installs clang, lld, wasi-libc and the wasm32 compiler-rt), into
//! `<target>/bench-c/hello.wasm`.

use std::process::Command;

use anyhow::{Context, Result, ensure};

/// What the C hello prints.
pub const OUTPUT: &str = "hello from c";

/// Builds the C hello and returns the module's bytes.
pub fn build() -> Result<Vec<u8>> {
    let source = warden_test::workspace_root().join("test/guests/c/hello.c");
    let dir = warden_test::target_dir().join("bench-c");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let module = dir.join("hello.wasm");
    let out = Command::new("clang")
        .args(["--target=wasm32-wasi", "-O2", "-o"])
        .arg(&module)
        .arg(&source)
        .output()
        .context("cannot run clang (make deps installs clang, lld and wasi-libc)")?;
    ensure!(
        out.status.success(),
        "clang --target=wasm32-wasi {} failed ({}): {}",
        source.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes =
        std::fs::read(&module).with_context(|| format!("cannot read {}", module.display()))?;
    ensure!(
        warden_test::guests::is_core_module(&bytes),
        "{} is not a core Wasm module",
        module.display()
    );
    Ok(bytes)
}
