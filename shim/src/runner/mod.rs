//! Ways of running a guest in the container process: one [`Runner`] implementation each.
//!
//! A runner gets everything a run needs already decided and built ([`RunEnv`]: the engine,
//! the WASI context from the grants, the name lookup, the store limits) and does only what is
//! particular to its kind of guest: link the imports it offers, instantiate, call the entry
//! point, and say what the guest's own exit code was. Limits, traps and the outcome are
//! handled around it in [`crate::run`], the same for every runner. A new way of running (an
//! HTTP proxy, WAGI, WASI 0.3) is a new implementation here, not a branch elsewhere.

mod p1_command;
mod p2_command;

use std::time::Instant;

use warden_policy::Limits;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use p1_command::P1Command;
pub use p2_command::P2Command;

use crate::dns;
use crate::run::{LimitHit, MemoryLimiter, arm_limits};

/// Why a run ended without an exit code from the guest.
pub enum RunError {
    /// Linking or instantiation failed before guest code ran (or a limit refused an initial
    /// memory, which [`crate::run`] tells apart through the limit record).
    Setup(wasmtime::Error),
    /// The guest trapped or was stopped while it ran.
    Guest(wasmtime::Error),
}

/// What a runner is given besides the WASI context.
pub struct RunEnv<'a> {
    pub engine: &'a Engine,
    pub dns: dns::NameLookup,
    pub limiter: MemoryLimiter,
    pub limits: &'a Limits,
    pub hit: &'a LimitHit,
    pub started: Instant,
}

impl RunEnv<'_> {
    /// A store for `wasi` with this run's limits armed: the memory limiter on every grow,
    /// fuel, and the epoch deadline.
    pub fn store<W: Send + 'static>(self, wasi: W) -> Store<GuestState<W>> {
        let state = GuestState {
            wasi,
            table: ResourceTable::new(),
            limiter: self.limiter,
            dns: self.dns,
        };
        let mut store = Store::new(self.engine, state);
        store.limiter(|s| &mut s.limiter);
        arm_limits(&mut store, self.limits, self.hit, self.started);
        store
    }
}

/// One way of running a guest.
pub trait Runner {
    /// What the guest is, for messages: "WASI preview 1 command".
    fn describe(&self) -> &'static str;
    /// Runs the guest with the WASI context `wasi` (built from the grants) to its end; `Ok`
    /// carries the guest's own exit code.
    fn run(self: Box<Self>, wasi: WasiCtxBuilder, env: RunEnv<'_>) -> Result<i32, RunError>;
}

/// The one store state every runner uses: the WASI context of its kind (`W`), the resource
/// table components keep their handles in, the limiter, and the name lookup.
pub struct GuestState<W> {
    pub wasi: W,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    /// Name lookup for `wasi:sockets/ip-name-lookup` (see [`dns`]).
    pub dns: dns::NameLookup,
}

impl WasiView for GuestState<WasiCtx> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl dns::DnsView for GuestState<WasiCtx> {
    fn dns(&mut self) -> dns::DnsCtxView<'_> {
        dns::DnsCtxView {
            lookup: &self.dns,
            table: &mut self.table,
        }
    }
}
