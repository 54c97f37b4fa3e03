//! What every HTTP-serving runner shares: the runtime, the epoch ticker, the listener and
//! the serve loop around a [`Handler`].

use std::sync::Arc;
use std::time::Duration;

use warden_policy::Limits;

use super::request::{LimitRecords, request_deadline};
use super::{RunEnv, RunError, ServiceEnv};
use crate::dns;
use crate::engine::EPOCH_TICK;
use crate::http_server::{self, Handler};

/// What a runner's handler is built from.
pub struct Service {
    pub env: ServiceEnv,
    pub dns: dns::NameLookup,
    pub limits: Limits,
    pub records: Arc<LimitRecords>,
}

/// Extra time the drain gives past the request deadline, for responses being written.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// Builds the handler with `make` (inside the server's runtime), listens on the service's
/// address and serves until SIGTERM; the result is the exit status.
pub fn serve_with(
    env: RunEnv<'_>,
    make: impl FnOnce(Service) -> Result<Arc<dyn Handler>, RunError>,
) -> Result<i32, RunError> {
    let setup = |msg: String| RunError::Setup(wasmtime::Error::msg(msg));
    // Before the runtime's threads exist, so that they inherit the blocked signals.
    let signals = http_server::termination_signals().map_err(setup)?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("warden-http")
        .enable_all()
        .build()
        .map_err(|e| setup(format!("starting the HTTP server's runtime: {e}")))?;
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
    let drain = request_deadline(env.limits) + DRAIN_MARGIN;
    let result = runtime.block_on(async move {
        let handler = make(service)?;
        let listener = http_server::bind(addr).await.map_err(setup)?;
        let end = http_server::serve(listener, handler, drain, signals)
            .await
            .map_err(setup)?;
        Ok(end.exit_code())
    });
    // Tasks still running (a guest past its drain) are abandoned, not waited for.
    runtime.shutdown_background();
    result
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
