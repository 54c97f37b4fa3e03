//! The one wasmtime configuration used by both the precompiler (host side) and the runtime
//! (container side). Artifacts are only valid for an engine with the same settings, so both
//! sides build their engine here, and the cache key includes the engine's compatibility hash.

use std::hash::{Hash, Hasher};

use anyhow::Result;
use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine};

/// How often the ticker advances the epoch when a run has a deadline or CPU bound.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// The two engine flavours. Fuel metering changes the generated code (and costs time on
/// every loop), so only profiles with `limits.fuel` get the metered engine; its artifacts
/// have their own compatibility hash, hence their own cache entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Flavor {
    Plain,
    Metered,
}

impl Flavor {
    pub fn for_limits(limits: &warden_policy::Limits) -> Self {
        if limits.fuel.is_some() {
            Flavor::Metered
        } else {
            Flavor::Plain
        }
    }
}

pub fn config(flavor: Flavor) -> Config {
    let mut config = Config::new();
    // Deadlines and CPU-time bounds interrupt guest code at epoch checks (driven by the
    // watchdog thread in `watchdog.rs`, which also stops a guest blocked in a host call).
    config.epoch_interruption(true);
    config.consume_fuel(flavor == Flavor::Metered);
    // No shared memories: wasmtime does not consult the store's `ResourceLimiter` when a
    // shared memory grows, so one would escape `limits.memory` (see `run::MemoryLimiter`).
    // Warden provides no wasi-threads, so nothing legitimate needs them; a module declaring
    // a shared memory or atomics-with-threads fails to compile, on the host side.
    config.wasm_threads(false);
    // WASI 0.3 components (`runner/p3_command.rs`) use the component model's async ABI.
    config.wasm_component_model_async(true);
    // Settings deliberately left at wasmtime's defaults:
    // - `memory_reservation` (4 GiB), `memory_guard_size` (32 MiB) and
    //   `memory_reservation_for_growth` (2 GiB) are address space, not memory: nothing is
    //   committed until the guest touches pages inside its accessible size, which the limiter
    //   bounds, and the store-wide count of memories (`run::MAX_MEMORIES`) bounds the total
    //   reservation. They also let Cranelift drop bounds checks for 32-bit memories.
    // - `max_wasm_stack` (512 KiB): deep recursion traps as a stack overflow well inside the
    //   runner thread's stack; raising it would only let a guest use more host stack.
    // - the on-demand allocator (not pooling): one store per process, nothing to pool.
    // - multi-memory, memory64, reference types, GC are on by default; all their memories,
    //   tables and the GC heap grow through the limiter, so `limits.memory` covers them.
    config
}

/// The plain engine (tests use it; the shim picks the flavour from the grants).
#[cfg(test)]
pub fn new_engine() -> Result<Engine> {
    engine_for(Flavor::Plain)
}

pub fn engine_for(flavor: Flavor) -> Result<Engine> {
    Ok(Engine::new(&config(flavor))?)
}

/// Guest instances a pooled engine has slots for: an HTTP service's requests in flight.
/// Bytes of a pooled memory or table reset in place rather than decommitted (see
/// [`pooled_engine_for`]).
const KEEP_RESIDENT: usize = 64 << 10;

pub const POOL_INSTANCES: u32 = crate::http_server::MAX_IN_FLIGHT as u32;

/// The engine for an HTTP service: [`config`] with wasmtime's pooling allocator, which
/// reuses memory, table and stack slots from request to request instead of mapping new ones
/// for every instance. Artifacts are the same as [`engine_for`]'s (the allocator is not
/// part of their compatibility). Slots: [`POOL_INSTANCES`] component instances, each with
/// up to 8 core instances, 2 memories and 4 tables; memories up to `max_memory` bytes (the
/// profile's `limits.memory`, else 4 GiB). Reserving them is address space, which a host
/// with a low `RLIMIT_AS` or strict overcommit can refuse: the caller then falls back to
/// [`engine_for`].
pub fn pooled_engine_for(flavor: Flavor, max_memory: Option<u64>) -> Result<Engine> {
    let n = POOL_INSTANCES;
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n * 8)
        .total_memories(n * 2)
        .total_tables(n * 4)
        .total_stacks(n)
        .max_memories_per_component(2)
        .max_tables_per_component(4)
        .max_core_instances_per_component(8)
        .max_memory_size(usize::try_from(max_memory.unwrap_or(4 << 30)).unwrap_or(usize::MAX));
    // A slot's memory and tables are reset in place when its instance ends, instead of
    // being decommitted with `madvise`: in a service process whose threads run on several
    // CPUs every `madvise` is a TLB shootdown (an interrupt to each of them), three per
    // request. PAGEMAP_SCAN (Linux 6.7+; without it wasmtime falls back to `memset`) finds the
    // pages the instance wrote, so only those are reset, up to the first 64 KiB; the rest is
    // decommitted as before. The next request's instance sees exactly what a fresh slot
    // holds either way. On 2 CPUs this took a hello component from 19.6k to 21k requests/s.
    // For the scan wasmtime keeps `/proc/self/pagemap` open: the service process's own page
    // table, which no guest can reach (guests hold no host descriptor).
    pool.linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = config(flavor);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// A stable hex digest of the engine's compatibility hash and the wasmtime version, so that a
/// cache entry written by one build is never deserialized by an incompatible one.
pub fn compat_key(engine: &Engine) -> String {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    concat!("wasmtime-", env!("CARGO_PKG_VERSION")).hash(&mut h);
    hex::encode(&h.0.finalize()[..8])
}

/// A `Hasher` that feeds sha256, so the result does not depend on std's hasher seeds.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_key_is_stable_for_the_same_config() {
        let a = new_engine().unwrap();
        let b = new_engine().unwrap();
        assert_eq!(compat_key(&a), compat_key(&b));
        assert_eq!(compat_key(&a).len(), 16);
    }

    #[test]
    fn compat_key_changes_with_the_config() {
        let a = new_engine().unwrap();
        let mut c = config(Flavor::Plain);
        c.epoch_interruption(false);
        let b = Engine::new(&c).unwrap();
        assert_ne!(compat_key(&a), compat_key(&b));
        let metered = engine_for(Flavor::Metered).unwrap();
        assert_ne!(compat_key(&a), compat_key(&metered));
    }

    #[test]
    fn a_shared_memory_is_refused() {
        // Wasmtime does not ask the store's limiter when a shared memory grows.
        let engine = new_engine().unwrap();
        assert!(wasmtime::Module::new(&engine, "(module (memory 1 2 shared))").is_err());
        assert!(wasmtime::Module::new(&engine, "(module (memory 1 2))").is_ok());
    }
}
