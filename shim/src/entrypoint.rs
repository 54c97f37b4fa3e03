//! Finding and classifying a container's entrypoint, on the host side.
//!
//! The entrypoint is `process.args[0]` of the OCI spec, resolved inside the container's rootfs.
//! Resolution uses `openat2(RESOLVE_IN_ROOT)`, so a symlink in the image can never make the
//! shim read a host file. Classification decides what may run: a Wasm module or component is
//! compiled by the shim; native code (ELF, `#!` scripts, and wasmtime's own precompiled
//! artifacts, which are ELF objects) is refused unless the policy allows it.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use warden_common::Digest;

use crate::safe_open::{self, OpenError, Symlinks};

/// Modules larger than this are refused rather than read into memory and compiled, unless
/// `WARDEN_MAX_MODULE_BYTES` says otherwise: 128 MiB holds a component with a whole Python
/// interpreter (about 40 MB) three times over.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 128 << 20;

/// What the entrypoint's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A core Wasm module (WASI preview 1, `_start`).
    Module,
    /// A Wasm component (WASI preview 2 or later, `wasi:cli/run`).
    Component,
    /// A wasmtime precompiled artifact (`.cwasm`): native code the shim did not compile.
    Precompiled,
    /// An ELF executable.
    Elf,
    /// A `#!` script.
    Script,
    /// Anything else.
    Unknown,
}

/// What a Wasm entrypoint is, once it is known to be Wasm: the type that travels from the
/// classification through the compile to the runner, so no side re-derives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WasmKind {
    /// A core module (WASI preview 1, `_start`).
    Module,
    /// A component (WASI preview 2 or later).
    Component,
}

impl WasmKind {
    /// "Wasm module" or "Wasm component".
    pub fn noun(self) -> &'static str {
        match self {
            WasmKind::Module => "Wasm module",
            WasmKind::Component => "Wasm component",
        }
    }
}

impl Kind {
    /// The Wasm kind, for a module or a component.
    pub fn wasm(self) -> Option<WasmKind> {
        match self {
            Kind::Module => Some(WasmKind::Module),
            Kind::Component => Some(WasmKind::Component),
            _ => None,
        }
    }

    pub fn is_native(self) -> bool {
        matches!(self, Kind::Elf | Kind::Script)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::Module => "a Wasm module",
            Kind::Component => "a Wasm component",
            Kind::Precompiled => "a wasmtime precompiled artifact (native code)",
            Kind::Elf => "a native ELF executable",
            Kind::Script => "a #! script",
            Kind::Unknown => "neither Wasm nor a native executable",
        }
    }
}

/// Classifies the first bytes of an entrypoint. Precompiled artifacts are checked before ELF
/// because a `.cwasm` is an ELF object.
pub fn classify(bytes: &[u8]) -> Kind {
    if wasmtime::Engine::detect_precompiled(bytes).is_some() {
        return Kind::Precompiled;
    }
    match bytes {
        // The binary format's preamble: magic, then a version/layer word. Core modules are
        // version 1 (layer 0); components carry layer 1.
        [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ..] => Kind::Module,
        [0x00, 0x61, 0x73, 0x6d, _, _, 0x01, 0x00, ..] => Kind::Component,
        [0x7f, b'E', b'L', b'F', ..] => Kind::Elf,
        [b'#', b'!', ..] => Kind::Script,
        _ => Kind::Unknown,
    }
}

/// The entrypoint as a module source read it.
pub struct Entrypoint {
    /// Where it came from, for messages: its path inside the container.
    pub path: String,
    pub bytes: Vec<u8>,
    pub kind: Kind,
    /// `sha256:<hex>` of a Wasm entrypoint's bytes: what the policy's `modules` list, the
    /// cache key and the audit records name.
    pub digest: Option<Digest>,
}

impl Entrypoint {
    /// What admission needs to know of it (no bytes).
    pub fn facts(&self) -> crate::admission::EntryFacts {
        crate::admission::EntryFacts {
            path: self.path.clone(),
            kind: self.kind,
            digest: self.digest,
        }
    }
}

/// Where a module's bytes come from: the file at `args[0]` in the image's rootfs
/// ([`RootfsFile`]), else the Wasm layer of an OCI Wasm image in containerd's content store
/// ([`ContentLayer`]). What a source yields is the same typed [`Entrypoint`] either way, so
/// nothing after it knows which it was.
pub trait ModuleSource {
    fn read(&self) -> Result<Entrypoint>;
}

/// The file `args[0]` names in the container's rootfs (see [`read`]).
pub struct RootfsFile<'a> {
    pub rootfs: &'a Path,
    pub arg0: &'a str,
    pub cwd: &'a str,
    pub env: &'a [String],
    pub max_bytes: u64,
}

impl ModuleSource for RootfsFile<'_> {
    fn read(&self) -> Result<Entrypoint> {
        read(self.rootfs, self.arg0, self.cwd, self.env, self.max_bytes)
    }
}

/// Resolves `arg0` like the container's init would (absolute, relative to `cwd`, or searched in
/// the spec's `PATH`) and reads it from `rootfs`. Symlinks are followed inside the rootfs
/// only; a FIFO, device or socket is refused by its type without being opened, so it cannot
/// hang the create. Native files are only read far enough to classify them.
pub fn read(
    rootfs: &Path,
    arg0: &str,
    cwd: &str,
    env: &[String],
    max_bytes: u64,
) -> Result<Entrypoint> {
    if arg0.is_empty() {
        bail!("the container has no entrypoint (process.args is empty)");
    }
    let root =
        File::open(rootfs).with_context(|| format!("opening rootfs {}", rootfs.display()))?;
    let candidates = candidates(arg0, cwd, env);
    let mut last_err = None;
    for path in &candidates {
        match safe_open::open_regular_file(root.as_fd(), path, Symlinks::InRoot) {
            Ok(file) => return read_entry(file, path, max_bytes),
            Err(e @ OpenError::Missing { .. }) => last_err = Some(e),
            Err(e @ OpenError::WrongType { .. }) => {
                bail!("entrypoint {e}; warden runs only a regular file")
            }
            Err(e) => bail!("entrypoint {e}"),
        }
    }
    Err(NotInRootfs {
        arg0: arg0.to_owned(),
        looked_at: candidates.join(", "),
        last: last_err.map(|e| e.to_string()).unwrap_or_default(),
    }
    .into())
}

/// The entrypoint is not a file of the rootfs: the image may be an OCI Wasm-layer one (see
/// [`crate::content_store`]), whose module is a layer, not a file.
#[derive(Debug, thiserror::Error)]
#[error(
    "entrypoint {arg0:?} not found in the image (looked at {looked_at}): {last}; warden runs \
     the module found as a file in the image's rootfs, or the Wasm layer of an OCI Wasm image; \
     with ctr, the first argument after the container id is the module's path"
)]
pub struct NotInRootfs {
    pub arg0: String,
    pub looked_at: String,
    pub last: String,
}

/// The Wasm layer of an OCI Wasm-layer image (see [`crate::content_store`]), as an
/// entrypoint: classified by its bytes like a file (a precompiled artifact is refused the
/// same way), its digest the layer's. Bytes that are not Wasm are never native code here:
/// a layer is not something warden would execute natively.
pub struct ContentLayer<'a> {
    pub handle: &'a tokio::runtime::Handle,
    pub address: &'a str,
    pub namespace: &'a str,
    pub id: &'a str,
    pub max_bytes: u64,
}

impl ContentLayer<'_> {
    /// The image's Wasm layer, or `None` when it has none.
    pub fn read_layer(&self) -> Result<Option<Entrypoint>> {
        let layer = crate::content_store::wasm_layer(
            self.handle,
            self.address,
            self.namespace,
            self.id,
            self.max_bytes,
        )?;
        Ok(layer.map(|layer| {
            let kind = match classify(&layer.bytes) {
                k @ (Kind::Module | Kind::Component | Kind::Precompiled) => k,
                _ => Kind::Unknown,
            };
            Entrypoint {
                path: format!(
                    "the Wasm layer {} ({}) of {}",
                    layer.digest, layer.media_type, layer.image
                ),
                digest: kind.wasm().map(|_| layer.digest),
                bytes: layer.bytes,
                kind,
            }
        }))
    }
}

fn read_entry(file: File, path: &str, max_bytes: u64) -> Result<Entrypoint> {
    let meta = file.metadata()?;
    if meta.len() > max_bytes {
        bail!(
            "entrypoint {path} is {} bytes, more than the {max_bytes} bytes a module may have \
             on this node (WARDEN_MAX_MODULE_BYTES)",
            meta.len(),
        );
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading entrypoint {path}"))?;
    let kind = classify(&bytes);
    if kind.is_native() {
        bytes.clear();
    }
    let digest = kind.wasm().map(|_| Digest::of(&bytes));
    Ok(Entrypoint {
        path: path.to_string(),
        bytes,
        kind,
        digest,
    })
}

/// Paths inside the container to try for `arg0`, in order.
pub fn candidates(arg0: &str, cwd: &str, env: &[String]) -> Vec<String> {
    if arg0.starts_with('/') {
        return vec![arg0.to_string()];
    }
    if arg0.contains('/') {
        let base = if cwd.is_empty() { "/" } else { cwd };
        return vec![format!("{}/{}", base.trim_end_matches('/'), arg0)];
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut out: Vec<String> = path
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| format!("{}/{}", d.trim_end_matches('/'), arg0))
        .collect();
    // Wasm images commonly put the module at the root or in the working directory.
    out.push(format!("/{arg0}"));
    out
}

/// The rootfs directory of a bundle, from the spec's `root.path`.
pub fn rootfs_of(bundle: &Path, root_path: &Path) -> PathBuf {
    if root_path.is_absolute() {
        root_path.to_path_buf()
    } else {
        bundle.join(root_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_preamble() {
        let module = wat::parse_str("(module)").unwrap();
        assert_eq!(classify(&module), Kind::Module);
        let component = wat::parse_str("(component)").unwrap();
        assert_eq!(classify(&component), Kind::Component);
        assert_eq!(classify(b"\x7fELF\x02\x01\x01"), Kind::Elf);
        assert_eq!(classify(b"#!/bin/sh\n"), Kind::Script);
        assert_eq!(classify(b"hello"), Kind::Unknown);
        assert_eq!(classify(b""), Kind::Unknown);
        assert_eq!(classify(b"\0asm"), Kind::Unknown);
    }

    #[test]
    fn precompiled_artifacts_are_recognised_before_elf() {
        let engine = crate::engine::new_engine().unwrap();
        let module = wat::parse_str("(module)").unwrap();
        let cwasm = engine.precompile_module(&module).unwrap();
        assert_eq!(&cwasm[..4], b"\x7fELF");
        assert_eq!(classify(&cwasm), Kind::Precompiled);
    }

    #[test]
    fn candidates_follow_path_rules() {
        assert_eq!(candidates("/app.wasm", "/", &[]), vec!["/app.wasm"]);
        assert_eq!(candidates("./a.wasm", "/srv", &[]), vec!["/srv/./a.wasm"]);
        let env = vec!["PATH=/bin:relative:/opt/x/".to_string()];
        assert_eq!(
            candidates("hello.wasm", "/", &env),
            vec!["/bin/hello.wasm", "/opt/x/hello.wasm", "/hello.wasm"]
        );
    }

    #[test]
    fn symlinks_cannot_leave_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"\0asm\x01\0\0\0").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../../secret", root.path().join("rel")).unwrap();
        std::fs::write(root.path().join("secret"), b"#!/bin/sh\n").unwrap();
        // Both links resolve inside the root: the absolute one to a path that does not exist
        // there, the relative one to the root's own `secret`.
        assert!(read(root.path(), "/abs", "/", &[], DEFAULT_MAX_MODULE_BYTES).is_err());
        let e = read(root.path(), "/rel", "/", &[], DEFAULT_MAX_MODULE_BYTES).unwrap();
        assert_eq!(e.kind, Kind::Script);
    }

    #[test]
    fn reads_a_module_and_reports_a_missing_one() {
        let root = tempfile::tempdir().unwrap();
        let module = wat::parse_str("(module)").unwrap();
        std::fs::write(root.path().join("m.wasm"), &module).unwrap();
        let e = read(root.path(), "/m.wasm", "/", &[], DEFAULT_MAX_MODULE_BYTES).unwrap();
        assert_eq!((e.kind, e.bytes), (Kind::Module, module));
        let err = read(
            root.path(),
            "/nope.wasm",
            "/",
            &[],
            DEFAULT_MAX_MODULE_BYTES,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("not found in the image"), "{err}");
        assert!(read(root.path(), "", "/", &[], DEFAULT_MAX_MODULE_BYTES).is_err());
        std::fs::create_dir(root.path().join("d")).unwrap();
        assert!(read(root.path(), "/d", "/", &[], DEFAULT_MAX_MODULE_BYTES).is_err());
    }

    #[test]
    fn a_fifo_entrypoint_is_refused_at_once() {
        let root = tempfile::tempdir().unwrap();
        let fifo = root.path().join("app.wasm");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let err = read(root.path(), "/app.wasm", "/", &[], DEFAULT_MAX_MODULE_BYTES)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("entrypoint /app.wasm is a FIFO, not a regular file"),
            "{err}"
        );
    }
}
