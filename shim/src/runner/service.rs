//! What every HTTP-serving runner shares: the runtime, the epoch ticker, the listener and
//! the serve loop around a [`Handler`].

use std::sync::Arc;
use std::time::Duration;

use warden_policy::Limits;

use super::request::{LimitRecords, request_deadline};
use super::{RunEnv, RunError, ServiceEnv};
use crate::dns;
use crate::engine::EPOCH_TICK;
use crate::http_server::{self, Handler, ServeEnd, Shared};

/// What a runner's handler is built from.
pub struct Service {
    pub env: ServiceEnv,
    pub dns: dns::NameLookup,
    pub limits: Limits,
    pub records: Arc<LimitRecords>,
}

/// Builds the handler with `make` (inside the first shard's runtime), listens on the
/// service's address and serves until SIGTERM; the result is the exit status.
///
/// The server runs as shards, one per CPU the container may use (what
/// `available_parallelism` reports: the affinity mask and the cgroup's CPU quota), each a
/// thread with a single-threaded runtime and its own `SO_REUSEPORT` listener on the address:
/// a request is served start to end on one thread, so it never wakes another (on 2 CPUs, a
/// multi-threaded runtime served a hello component at about 60% of this rate, most of the
/// difference in cross-thread wake-ups and TLB shootdowns). A guest that computes for long
/// yields at every epoch tick, so the other connections of its shard go on.
pub fn serve_with(
    env: RunEnv<'_>,
    make: impl FnOnce(Service) -> Result<Arc<dyn Handler>, RunError>,
) -> Result<i32, RunError> {
    let setup = |msg: String| RunError::Setup(wasmtime::Error::msg(msg));
    // Before the server's threads exist, so that they inherit the blocked signals.
    let signals = http_server::termination_signals().map_err(setup)?;
    let shards = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = shard_runtime().map_err(setup)?;
    start_ticker(env.engine.clone()).map_err(|e| {
        setup(format!(
            "starting the epoch ticker (request deadlines): {e}"
        ))
    })?;
    let service_env = env.service.clone();
    let addr = service_env.addr;
    let on_limit = service_env.on_limit.clone();
    let service = Service {
        env: service_env,
        dns: env.dns,
        limits: env.limits.clone(),
        records: Arc::new(LimitRecords::new(on_limit)),
    };
    let shared = Shared::new(request_deadline(env.limits) + DRAIN_MARGIN, signals);
    let result = runtime.block_on(async move {
        let handler = make(service)?;
        let listener = http_server::bind(addr).map_err(setup)?;
        // The others bind what the first got (a port 0 is now a port).
        let bound = listener.local_addr().unwrap_or(addr);
        let others: Vec<_> = (1..shards)
            .map(|i| spawn_shard(i, bound, handler.clone(), shared.clone()))
            .collect::<Result<_, _>>()
            .map_err(setup)?;
        let first = http_server::serve(listener, handler, shared, true)
            .await
            .map_err(setup)?;
        let mut ends = vec![first];
        for shard in others {
            match shard.join() {
                Ok(Ok(end)) => ends.push(end),
                Ok(Err(e)) => eprintln!("warden-http: a server thread failed: {e}"),
                Err(_) => eprintln!("warden-http: a server thread panicked"),
            }
        }
        let end = http_server::combine(ends);
        if end == ServeEnd::Drained {
            eprintln!("warden-http: drained; exiting");
        }
        Ok(end.exit_code())
    });
    // Tasks still running (a guest past its drain) are abandoned, not waited for.
    runtime.shutdown_background();
    result
}

/// Extra time the drain gives past the request deadline, for responses being written.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// A shard's runtime: one thread, timers and I/O.
fn shard_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the HTTP server's runtime: {e}"))
}

/// Starts shard `index` on a thread of its own, listening on `addr` too.
fn spawn_shard(
    index: usize,
    addr: std::net::SocketAddr,
    handler: Arc<dyn Handler>,
    shared: Shared,
) -> Result<std::thread::JoinHandle<Result<ServeEnd, String>>, String> {
    std::thread::Builder::new()
        .name(format!("warden-http-{index}"))
        .spawn(move || {
            let runtime = shard_runtime()?;
            let end = runtime.block_on(async move {
                let listener = http_server::bind(addr)?;
                http_server::serve(listener, handler, shared, false).await
            });
            runtime.shutdown_background();
            end
        })
        .map_err(|e| format!("starting a server thread: {e}"))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] for the life of the process, so that
/// request deadlines are checked and long computations yield. Without it a spinning guest
/// would hold its worker for ever, so a service does not start without it.
fn start_ticker(engine: wasmtime::Engine) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("warden-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .map(drop)
}
