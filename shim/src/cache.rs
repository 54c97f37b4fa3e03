//! The precompile cache: compiled artifacts of modules, keyed by the sha256 of the module's
//! bytes and the engine's compatibility key, written only by the shim.
//!
//! Upstream runwasi caches only OCI Wasm-layer images, which containerd 1.6 cannot unpack;
//! this cache covers rootfs-style images too, because the key is the bytes the shim read.
//! The directory must be owned by root and closed to others (0700): the shim deserializes
//! what it finds there as native code, so it refuses a cache anyone else could write and
//! compiles without caching instead.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use warden_common::{durable, trusted_dir};
use wasmtime::Engine;

use crate::entrypoint::WasmKind;

const SUFFIX: &str = ".cwasm";

/// Where an artifact came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Hit,
    Compiled,
    /// The cache could not be used or written; compiled into an unlinked file.
    Uncached,
}

pub struct Cache {
    dir: PathBuf,
    max_bytes: u64,
}

impl Cache {
    /// Opens (creating with mode 0700 if needed) the cache directory, and checks that only
    /// root can write to it.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating compile cache {}", dir.display()))?;
        // The node CLI's rule for the directories it writes into: owned by root (or the
        // shim's user), not group- or world-writable, under ancestors only root can change.
        trusted_dir::check_dir("compile cache", dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
        })
    }

    pub fn path_for(&self, digest_hex: &str, compat: &str) -> PathBuf {
        self.dir.join(name_for(digest_hex, compat))
    }

    /// The stored artifact for a module's digest and an engine's compatibility key, if there
    /// is one: a regular file (a symlink is not followed, a FIFO not waited on), marked as
    /// just used.
    pub fn hit(&self, digest_hex: &str, compat: &str) -> Option<File> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.path_for(digest_hex, compat))
            .ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        // Mark as recently used for eviction; failure to do so only affects eviction order.
        let _ = file.set_modified(SystemTime::now());
        Some(file)
    }

    /// Returns an open artifact for `bytes`, compiling and storing it on a miss.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        kind: WasmKind,
        bytes: &[u8],
        digest_hex: &str,
        compat: &str,
    ) -> Result<(File, Outcome)> {
        let path = self.path_for(digest_hex, compat);
        if let Some(file) = self.hit(digest_hex, compat) {
            return Ok((file, Outcome::Hit));
        }
        let artifact = compile(engine, kind, bytes)?;
        if artifact.len() as u64 > self.max_bytes {
            log::warn!(
                "compiled artifact of {} bytes is larger than the compile cache bound ({} \
                 bytes); not cached",
                artifact.len(),
                self.max_bytes
            );
            return Ok((anonymous_file(&artifact)?, Outcome::Uncached));
        }
        // Temp file, fsync, rename, directory fsync: after a crash the entry is whole or
        // absent. The file returned is the one written, whichever thread renamed last.
        let stored = durable::replace(&self.dir, &name_for(digest_hex, compat), &artifact, 0o600);
        let file = match stored {
            Ok(file) => file,
            Err(e) => {
                log::warn!(
                    "could not store compiled artifact in {}: {e}",
                    self.dir.display()
                );
                return Ok((anonymous_file(&artifact)?, Outcome::Uncached));
            }
        };
        if let Err(e) = self.evict(&path) {
            log::warn!("compile cache eviction failed: {e:#}");
        }
        Ok((file, Outcome::Compiled))
    }

    /// Removes the least recently used artifacts until the cache fits its bound; `keep` (the
    /// artifact just written) always stays.
    fn evict(&self, keep: &Path) -> Result<()> {
        let mut entries = Vec::new();
        let mut total = 0u64;
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            let meta = e.metadata()?;
            // `durable`'s temp names, and the `.<hex>.<pid>.<nanos>.tmp` of older shims.
            let temp = durable::is_temp_name(&e.file_name())
                || (name.starts_with('.') && name.ends_with(".tmp"));
            if temp {
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .unwrap_or_default();
                if age > STALE_TEMP {
                    fs::remove_file(e.path())?;
                    log::info!("compile cache: removed stale temp file {name}");
                }
                continue;
            }
            if !name.ends_with(SUFFIX) || !meta.is_file() {
                continue;
            }
            total += meta.len();
            entries.push((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
                e.path(),
            ));
        }
        if total <= self.max_bytes {
            return Ok(());
        }
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            fs::remove_file(&path)?;
            log::info!("compile cache: evicted {}", path.display());
            total -= len;
        }
        Ok(())
    }
}

/// The artifact's file name in the cache directory.
fn name_for(digest_hex: &str, compat: &str) -> String {
    format!("{digest_hex}-{compat}{SUFFIX}")
}

/// Compiles a module or component to wasmtime's artifact format. A failure here is the
/// module's: [`crate::compile::CompileError::Invalid`].
pub fn compile(engine: &Engine, kind: WasmKind, bytes: &[u8]) -> Result<Vec<u8>> {
    let compiled = match kind {
        WasmKind::Module => engine.precompile_module(bytes),
        WasmKind::Component => engine.precompile_component(bytes),
    };
    compiled.map_err(|e| crate::compile::CompileError::Invalid(format!("{e:#}")).into())
}

/// An unlinked file holding `bytes`, for when the cache cannot be written (full disk): the run
/// goes on, only the caching is lost.
pub fn anonymous_file(bytes: &[u8]) -> Result<File> {
    let fd = nix::sys::memfd::memfd_create(
        c"warden-artifact",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )?;
    let mut f = File::from(fd);
    f.write_all(bytes)?;
    Ok(f)
}

/// A sealed in-memory copy of `artifact`: what the container process gets instead of the
/// cache file. Sealed against writes, growing, shrinking and further sealing, it cannot be
/// changed by anyone, and it leads nowhere: the runner never holds a descriptor of the cache,
/// so it cannot reopen an entry for writing and poison what other containers load.
pub fn sealed_copy(artifact: &mut File) -> Result<File> {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MemFdCreateFlag, memfd_create};
    use std::io::{Seek, SeekFrom};
    let fd = memfd_create(
        c"warden-artifact",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )?;
    let mut copy = File::from(fd);
    artifact.seek(SeekFrom::Start(0))?;
    std::io::copy(artifact, &mut copy)?;
    copy.seek(SeekFrom::Start(0))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&copy),
        FcntlArg::F_ADD_SEALS(seals),
    )
    .context("sealing the artifact copy")?;
    Ok(copy)
}

/// Temp files older than this in the cache directory are left over from a compile that was
/// killed, and are removed by the next eviction.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine;

    fn module() -> Vec<u8> {
        wat::parse_str("(module (func (export \"_start\")))").unwrap()
    }

    #[test]
    fn second_lookup_is_a_hit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c"), 1 << 30).unwrap();
        let engine = engine::new_engine().unwrap();
        let compat = engine::compat_key(&engine);
        let m = module();
        let (_, first) = cache
            .get_or_compile(&engine, WasmKind::Module, &m, "ab", &compat)
            .unwrap();
        let (f, second) = cache
            .get_or_compile(&engine, WasmKind::Module, &m, "ab", &compat)
            .unwrap();
        assert_eq!((first, second), (Outcome::Compiled, Outcome::Hit));
        let names: Vec<_> = fs::read_dir(dir.path().join("c"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![format!("ab-{compat}.cwasm")], "no temp left");
        // The artifact deserializes in an engine with the same settings.
        let m = unsafe { wasmtime::Module::deserialize_open_file(&engine, f) };
        assert!(m.is_ok());
    }

    #[test]
    fn refuses_a_directory_others_can_write() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("c");
        fs::create_dir(&c).unwrap();
        fs::set_permissions(&c, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let err = Cache::open(&c, 1).err().unwrap();
        assert!(err.to_string().contains("writable by others"), "{err}");
    }

    #[test]
    fn evicts_least_recently_used_beyond_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine::new_engine().unwrap();
        let compat = engine::compat_key(&engine);
        let size = compile(&engine, WasmKind::Module, &module()).unwrap().len() as u64;
        let cache = Cache::open(dir.path(), size * 2).unwrap();
        for d in ["a", "b", "c"] {
            cache
                .get_or_compile(&engine, WasmKind::Module, &module(), d, &compat)
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!cache.path_for("a", &compat).exists());
        assert!(cache.path_for("b", &compat).exists());
        assert!(cache.path_for("c", &compat).exists());
    }

    #[test]
    fn the_runner_gets_a_sealed_copy() {
        let mut src = anonymous_file(b"artifact bytes").unwrap();
        let mut copy = sealed_copy(&mut src).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut copy, &mut s).unwrap();
        assert_eq!(s, "artifact bytes");
        assert!(
            copy.write_all(b"x").is_err(),
            "a sealed copy cannot be written"
        );
        assert!(copy.set_len(0).is_err(), "nor shrunk");
    }

    #[test]
    fn an_artifact_larger_than_the_bound_is_not_kept_and_stale_temps_go() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine::new_engine().unwrap();
        let compat = engine::compat_key(&engine);
        let cache = Cache::open(dir.path(), 10).unwrap();
        let (_, o) = cache
            .get_or_compile(&engine, WasmKind::Module, &module(), "big", &compat)
            .unwrap();
        assert_eq!(o, Outcome::Uncached);
        assert!(!cache.path_for("big", &compat).exists());
        // A temp file left by a killed compile, old enough to be stale, and a fresh one.
        let stale = dir.path().join(".old.1.2.tmp");
        let fresh = dir.path().join(".new.1.2.tmp");
        fs::write(&stale, b"x").unwrap();
        fs::write(&fresh, b"x").unwrap();
        // The same, named as `durable` names its temp files.
        let stale_durable = dir.path().join(".a-k.cwasm.warden-tmp-1-2");
        let fresh_durable = dir.path().join(".b-k.cwasm.warden-tmp-1-2");
        fs::write(&stale_durable, b"x").unwrap();
        fs::write(&fresh_durable, b"x").unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        for path in [&stale, &stale_durable] {
            File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let big = Cache::open(dir.path(), 1 << 30).unwrap();
        big.get_or_compile(&engine, WasmKind::Module, &module(), "ok", &compat)
            .unwrap();
        big.evict(&big.path_for("ok", &compat)).unwrap();
        assert!(!stale.exists());
        assert!(fresh.exists());
        assert!(!stale_durable.exists());
        assert!(fresh_durable.exists());
    }

    #[test]
    fn invalid_bytes_fail_to_compile() {
        let engine = engine::new_engine().unwrap();
        let mut m = module();
        m.truncate(m.len() - 3);
        assert!(compile(&engine, WasmKind::Module, &m).is_err());
    }
}
