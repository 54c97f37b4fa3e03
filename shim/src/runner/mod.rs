//! Ways of running a guest in the container process: one [`Runner`] implementation each.
//!
//! A runner gets everything a run needs already decided and built ([`RunEnv`]: the engine,
//! the WASI context from the grants, the name lookup, the store limits) and does only what is
//! particular to its kind of guest: link the imports it offers, instantiate, call the entry
//! point, and say what the guest's own exit code was. Limits, traps and the outcome are
//! handled around it in [`crate::run`], the same for every runner. A new way of running (an
//! HTTP proxy, WAGI, WASI 0.3) is a new implementation here, not a branch elsewhere.

mod http_proxy;
mod http_proxy3;
mod p1_command;
mod p2_command;
mod p3_command;
mod request;
mod service;
mod wagi;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use warden_policy::{HttpGrant, Limits};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use http_proxy::HttpProxy;
pub use http_proxy3::HttpProxy3;
pub use p1_command::P1Command;
pub use p2_command::P2Command;
pub use p3_command::P3Command;
pub use wagi::Wagi;

use crate::dns;
use crate::run::{LimitHit, LimitKind, MemoryLimiter, arm_limits};
use crate::wasi_ctx::{DenyHook, WasiMaker};

/// Called when a limit stopped one request of an HTTP service (the service goes on).
pub type LimitHook = Arc<dyn Fn(LimitKind, String) + Send + Sync>;

/// What serving HTTP needs besides the guest: where to listen, and how the host side
/// decided the rest.
#[derive(Clone)]
pub struct ServiceEnv {
    /// The address to listen on (`WARDEN_HTTP_ADDR`, default `0.0.0.0:8080`).
    pub addr: SocketAddr,
    /// Outgoing origins and WAGI.
    pub http: HttpGrant,
    /// The resolver configuration the host side read (for outgoing requests to names).
    pub resolver: dns::ResolverConfig,
    /// Where refused outgoing requests are reported (rule `http.outbound`).
    pub on_deny: DenyHook,
    /// Where limits that stopped a request are reported.
    pub on_limit: LimitHook,
}

impl ServiceEnv {
    /// The egress for outgoing `wasi:http` requests under this grant (see
    /// [`crate::http_egress`]).
    pub fn egress(&self) -> Arc<crate::http_egress::Egress> {
        crate::http_egress::Egress::new(
            self.http.clone(),
            self.resolver.clone(),
            self.on_deny.clone(),
        )
    }

    /// An environment that serves on `addr` with nothing granted and reports nowhere.
    #[cfg(test)]
    pub fn quiet(addr: SocketAddr) -> Self {
        ServiceEnv {
            addr,
            http: HttpGrant::default(),
            resolver: dns::ResolverConfig::default(),
            on_deny: Arc::new(|_, _| {}),
            on_limit: Arc::new(|_, _| {}),
        }
    }
}

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
    /// For runners that serve HTTP.
    pub service: &'a ServiceEnv,
}

impl RunEnv<'_> {
    /// A store for `wasi` with this run's limits armed: the memory limiter on every grow,
    /// fuel, and the epoch deadline.
    pub fn store<W: Send + 'static>(self, wasi: W) -> Store<GuestState<W>> {
        self.store_with(wasi, ())
    }

    /// [`RunEnv::store`] with `extra` in the state (see [`GuestState`]).
    pub fn store_with<W: Send + 'static, X: Send + 'static>(
        self,
        wasi: W,
        extra: X,
    ) -> Store<GuestState<W, X>> {
        let state = GuestState {
            wasi,
            table: ResourceTable::new(),
            limiter: self.limiter,
            dns: self.dns,
            extra,
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
    /// Runs the guest with WASI contexts from `wasi` (built from the grants) to its end;
    /// `Ok` carries the guest's own exit code (0 for a service that shut down cleanly).
    fn run(self: Box<Self>, wasi: Arc<WasiMaker>, env: RunEnv<'_>) -> Result<i32, RunError>;
}

/// The one store state every runner uses: the WASI context of its kind (`W`), the resource
/// table components keep their handles in, the limiter, the name lookup, and what else a
/// kind of runner needs (`X`: the `wasi:http` context of a proxy component).
pub struct GuestState<W, X = ()> {
    pub wasi: W,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    /// Name lookup for `wasi:sockets/ip-name-lookup` (see [`dns`]).
    pub dns: dns::NameLookup,
    pub extra: X,
}

/// A WASI context for `maker`'s next instance, or the setup error.
fn make_wasi(maker: &WasiMaker) -> Result<wasmtime_wasi::WasiCtxBuilder, RunError> {
    maker
        .make()
        .map_err(|e| RunError::Setup(wasmtime::Error::msg(format!("{e:#}"))))
}

impl<X: Send> WasiView for GuestState<WasiCtx, X> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl<X: Send> dns::DnsView for GuestState<WasiCtx, X> {
    fn dns(&mut self) -> dns::DnsCtxView<'_> {
        dns::DnsCtxView {
            lookup: &self.dns,
            table: &mut self.table,
        }
    }
}
