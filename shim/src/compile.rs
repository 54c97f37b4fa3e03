//! Finding a module's compiled artifact in the cache, or compiling it, in a short-lived child
//! process.
//!
//! The shim process lives as long as its container (a whole pod, under CRI). Compiling in it
//! would keep wasmtime's engine and the compiler's freed memory resident for that whole
//! time: measured, that was two thirds of the memory of a sleeping container. So the shim
//! hands the module's bytes (as a memfd) to a child forked from the zygote, which opens the
//! cache, compiles on a miss, returns the artifact as an fd, and exits. The shim process
//! never creates a wasmtime engine.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Instant;

use containerd_shimkit::zygote::{WireFd, Zygote};
use serde::{Deserialize, Serialize};

use crate::cache::{self, Cache, Outcome};
use crate::compat_memo;
use crate::engine::{self, Flavor};
use crate::entrypoint::WasmKind;
use warden_common::Digest;

#[derive(Serialize, Deserialize)]
pub struct Request {
    pub cache_dir: PathBuf,
    pub cache_max_bytes: u64,
    /// The module's bytes, exactly as the shim read and hashed them.
    pub module: WireFd<File>,
    pub kind: WasmKind,
    /// The engine flavour the runner will deserialize with (it must match).
    pub flavor: Flavor,
    /// The module's sha256: the cache key's first half.
    pub digest: Digest,
}

/// Why no artifact came back; callers branch on it: the module's fault is a refusal
/// (`module.invalid`), the node's is an error of the create.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CompileError {
    /// The bytes are not a valid module or component (wasmtime's reason).
    #[error("{0}")]
    Invalid(String),
    /// The compile went past its bounds (CPU time, memory) and was stopped.
    #[error("{0}")]
    Bounds(String),
    /// Reading, caching or handing over the artifact failed: a problem of the node.
    #[error("{0}")]
    Io(String),
}

impl CompileError {
    /// Sorts an error from the cache layer: the module's own failures carry a
    /// `CompileError::Invalid`; anything else is the node's.
    fn from_anyhow(e: anyhow::Error) -> Self {
        match e.downcast_ref::<CompileError>() {
            Some(c) => c.clone(),
            None => CompileError::Io(format!("{e:#}")),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct Compiled {
    pub artifact: WireFd<File>,
    pub outcome: Outcome,
    pub micros: u64,
}

/// The artifact from the cache, found in this process without an engine: when the cache
/// directory remembers this binary's compatibility key for `flavor` ([`compat_memo`]) and
/// holds an artifact for `digest` under it. `None` sends the caller to
/// [`compile_in_child`], which also writes the memo for the next time.
pub fn hit_here(
    cache_dir: &std::path::Path,
    cache_max_bytes: u64,
    flavor: Flavor,
    digest: &Digest,
) -> Option<Compiled> {
    let started = Instant::now();
    let compat = compat_memo::read(cache_dir, flavor)?;
    let cache = Cache::open(cache_dir, cache_max_bytes).ok()?;
    let mut file = cache.hit(&digest.hex(), &compat)?;
    // The container gets a sealed copy, never the cache file itself.
    let artifact = match cache::sealed_copy(&mut file) {
        Ok(a) => a,
        Err(e) => {
            log::warn!("cannot copy the cached artifact, compiling instead: {e:#}");
            return None;
        }
    };
    Some(Compiled {
        artifact: WireFd::new(artifact),
        outcome: Outcome::Hit,
        micros: started.elapsed().as_micros() as u64,
    })
}

/// Runs [`compile_here`] in a fresh child of the zygote, which exits afterwards.
pub fn compile_in_child(req: Request) -> Result<Compiled, CompileError> {
    let child = Zygote::global().spawn();
    let result = child
        .try_run(
            |req| {
                bound_compile();
                compile_here(req)
            },
            req,
        )
        .unwrap_or_else(|e| {
            Err(CompileError::Bounds(format!(
                "the compile did not finish ({e}); a compile may use {COMPILE_CPU_SECONDS}s \
                 of CPU and {} MiB of memory",
                COMPILE_MAX_DATA_BYTES >> 20
            )))
        });
    drop(child);
    result
}

/// CPU time a compile may take before the kernel stops the child (SIGXCPU, then SIGKILL).
pub const COMPILE_CPU_SECONDS: u64 = 120;
/// Memory (`RLIMIT_DATA`: heap and private mappings) a compile may use.
pub const COMPILE_MAX_DATA_BYTES: u64 = 4 << 30;
/// Compiler threads: a compile never takes more than this many cores from the node's pods.
pub const COMPILE_THREADS: usize = 2;

/// Bounds this process (the short-lived compile child) before it compiles anything a pod
/// author wrote: CPU time, data memory, and the number of compiler threads.
fn bound_compile() {
    let set = |res, soft: u64, hard: u64| {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads one rlimit struct.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            log::warn!(
                "cannot bound the compile ({res}): {}",
                std::io::Error::last_os_error()
            );
        }
    };
    set(
        libc::RLIMIT_CPU,
        COMPILE_CPU_SECONDS,
        COMPILE_CPU_SECONDS + 5,
    );
    set(
        libc::RLIMIT_DATA,
        COMPILE_MAX_DATA_BYTES,
        COMPILE_MAX_DATA_BYTES,
    );
    // wasmtime compiles functions in parallel on rayon's global pool, which sizes itself from
    // this variable when it is first used. The child is single-threaded until then.
    // SAFETY: no other thread reads the environment in this freshly forked child.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", COMPILE_THREADS.to_string()) };
}

/// Looks the module up in the cache, compiling and storing it on a miss.
pub fn compile_here(req: Request) -> Result<Compiled, CompileError> {
    let started = Instant::now();
    let io = |what: &str, e: &dyn std::fmt::Display| CompileError::Io(format!("{what}: {e:#}"));
    let mut module = req.module.into_inner();
    let mut bytes = Vec::new();
    module
        .seek(SeekFrom::Start(0))
        .and_then(|_| module.read_to_end(&mut bytes))
        .map_err(|e| io("reading the module", &e))?;
    let engine = engine::engine_for(req.flavor).map_err(|e| io("creating the engine", &e))?;
    let compat = engine::compat_key(&engine);
    let (mut artifact, outcome) = match Cache::open(&req.cache_dir, req.cache_max_bytes) {
        Ok(cache) => {
            // The next create finds its artifact without a child (see `compat_memo`).
            if let Err(e) = compat_memo::write(&req.cache_dir, req.flavor, &compat) {
                log::warn!("cannot remember the engine's compatibility key: {e:#}");
            }
            cache
                .get_or_compile(&engine, req.kind, &bytes, &req.digest.hex(), &compat)
                .map_err(CompileError::from_anyhow)?
        }
        Err(e) => {
            log::warn!("compile cache unusable, compiling without it: {e:#}");
            let artifact =
                cache::compile(&engine, req.kind, &bytes).map_err(CompileError::from_anyhow)?;
            let file = cache::anonymous_file(&artifact).map_err(|e| io("the artifact", &e))?;
            (file, Outcome::Uncached)
        }
    };
    // The container gets a sealed copy, never the cache file itself.
    let artifact = cache::sealed_copy(&mut artifact).map_err(|e| io("sealing the artifact", &e))?;
    Ok(Compiled {
        artifact: WireFd::new(artifact),
        outcome,
        micros: started.elapsed().as_micros() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_then_hits_without_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let module = wat::parse_str("(module (func (export \"_start\")))").unwrap();
        let req = || Request {
            cache_dir: dir.path().join("c"),
            cache_max_bytes: 1 << 30,
            module: WireFd::new(cache::anonymous_file(&module).unwrap()),
            kind: WasmKind::Module,
            flavor: Flavor::Plain,
            digest: Digest::of(&module),
        };
        assert_eq!(compile_here(req()).unwrap().outcome, Outcome::Compiled);
        assert_eq!(compile_here(req()).unwrap().outcome, Outcome::Hit);
        let mut bad = req();
        bad.digest = Digest::of(b"bad");
        bad.module = WireFd::new(cache::anonymous_file(b"\0asm\x01\0\0\0\x01").unwrap());
        assert!(matches!(compile_here(bad), Err(CompileError::Invalid(_))));
    }

    #[test]
    fn a_hit_needs_no_engine_once_the_key_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("c");
        let module = wat::parse_str("(module (func (export \"_start\")))").unwrap();
        let digest = Digest::of(&module);
        let req = |flavor| Request {
            cache_dir: cache_dir.clone(),
            cache_max_bytes: 1 << 30,
            module: WireFd::new(cache::anonymous_file(&module).unwrap()),
            kind: WasmKind::Module,
            flavor,
            digest,
        };
        // Nothing remembered, nothing cached: the child's way.
        assert!(hit_here(&cache_dir, 1 << 30, Flavor::Plain, &digest).is_none());
        compile_here(req(Flavor::Plain)).unwrap();
        // The compile remembered the key: the same module is found here, sealed.
        let hit = hit_here(&cache_dir, 1 << 30, Flavor::Plain, &digest).unwrap();
        assert_eq!(hit.outcome, Outcome::Hit);
        let artifact = hit.artifact.into_inner();
        let seals = nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&artifact),
            nix::fcntl::FcntlArg::F_GET_SEALS,
        )
        .unwrap();
        assert_ne!(
            seals & libc::F_SEAL_WRITE,
            0,
            "a sealed copy, not the cache file"
        );
        let engine = engine::engine_for(Flavor::Plain).unwrap();
        assert!(unsafe { wasmtime::Module::deserialize_open_file(&engine, artifact) }.is_ok());
        // Another module, or the other flavour (its own key, not remembered yet): no hit.
        assert!(hit_here(&cache_dir, 1 << 30, Flavor::Plain, &Digest::of(b"other")).is_none());
        assert!(hit_here(&cache_dir, 1 << 30, Flavor::Metered, &digest).is_none());
        compile_here(req(Flavor::Metered)).unwrap();
        assert!(hit_here(&cache_dir, 1 << 30, Flavor::Metered, &digest).is_some());
        // A memo with another key (another binary's) finds nothing, and a compile replaces it.
        let memo = cache_dir.join(compat_memo::file_name(Flavor::Plain));
        let text = std::fs::read_to_string(&memo).unwrap();
        let (id, _) = text.split_once(' ').unwrap();
        std::fs::write(&memo, format!("{id} ffffffffffffffff\n")).unwrap();
        assert!(hit_here(&cache_dir, 1 << 30, Flavor::Plain, &digest).is_none());
        assert_eq!(
            compile_here(req(Flavor::Plain)).unwrap().outcome,
            Outcome::Hit
        );
        assert!(hit_here(&cache_dir, 1 << 30, Flavor::Plain, &digest).is_some());
    }
}
