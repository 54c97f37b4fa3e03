//! Running a guest inside the container process, and what its end means.
//!
//! The module or component arrives already compiled (by the shim, on the host side); this
//! code instantiates it in a store with the grants' WASI context and limits, runs it, and
//! turns the result into an [`Outcome`]: the guest's own exit code, a trap (named, with the
//! function it happened in), a limit that stopped it, or a setup failure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warden_policy::Limits;
use wasmtime::component::Component;
use wasmtime::{Engine, Module, ResourceLimiter, Store, Trap, UpdateDeadline, WasmBacktrace};
use wasmtime_wasi::I32Exit;
#[cfg(test)]
use wasmtime_wasi::WasiCtxBuilder;

use crate::runner::{
    HttpProxy, HttpProxy3, P1Command, P2Command, P3Command, RunEnv, RunError, Runner, ServiceEnv,
    Wagi,
};
use crate::wasi_ctx::WasiMaker;
pub use crate::watchdog::OnForcedStop;
use crate::watchdog::{self, ForcedStop, Watch};
use crate::{dns, exit_code};

/// Which limit stopped a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Memory,
    Deadline,
    CpuTime,
    Fuel,
    /// One request of an HTTP service ran past `limits.request_deadline`.
    RequestDeadline,
}

impl LimitKind {
    pub fn rule(self) -> &'static str {
        match self {
            LimitKind::Memory => "limits.memory",
            LimitKind::Deadline => "limits.deadline",
            LimitKind::CpuTime => "limits.cpu_time",
            LimitKind::Fuel => "limits.fuel",
            LimitKind::RequestDeadline => "limits.request_deadline",
        }
    }
}

/// How a guest run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Trap(String),
    Limit(LimitKind, String),
    SetupFailed(String),
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Exited(c) => *c,
            Outcome::Trap(_) => exit_code::TRAP,
            Outcome::Limit(LimitKind::Memory, _) => exit_code::MEMORY_LIMIT,
            Outcome::Limit(LimitKind::Deadline | LimitKind::RequestDeadline, _) => {
                exit_code::DEADLINE
            }
            Outcome::Limit(LimitKind::CpuTime, _) => exit_code::CPU_TIME,
            Outcome::Limit(LimitKind::Fuel, _) => exit_code::FUEL,
            Outcome::SetupFailed(_) => exit_code::SETUP_FAILED,
        }
    }

    /// A message for the container's stderr and the shim log, or `None` for a normal exit.
    pub fn message(&self) -> Option<String> {
        match self {
            Outcome::Exited(_) => None,
            Outcome::Trap(m) => Some(format!("wasm trap: {m}")),
            Outcome::Limit(k, m) => Some(format!("stopped by {}: {m}", k.rule())),
            Outcome::SetupFailed(m) => Some(format!("could not start the module: {m}")),
        }
    }
}

/// The compiled code to run.
pub enum Program {
    Module(Module),
    Component(Component),
}

/// How the container asked a module to be run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Serve {
    /// As a command (or, for a component, as what it exports).
    #[default]
    Command,
    /// A WASI preview 1 module served over HTTP as CGI (`warden.dev/http=wagi`).
    Wagi,
}

/// What a component exports that warden can run.
pub const CLI_RUN: &str = "wasi:cli/run@0.2";
/// See [`CLI_RUN`].
pub const CLI_RUN_P3: &str = "wasi:cli/run@0.3";
/// See [`CLI_RUN`].
pub const HTTP_HANDLER: &str = "wasi:http/incoming-handler@0.2";
/// See [`CLI_RUN`].
pub const HTTP_HANDLER_P3: &str = "wasi:http/handler@0.3";

impl Program {
    /// Whether running it means serving HTTP (WAGI, or a component that is a proxy and not
    /// a command).
    pub fn serves_http(&self, serve: Serve, engine: &Engine) -> bool {
        match (self, serve) {
            (_, Serve::Wagi) => true,
            (Program::Module(_), Serve::Command) => false,
            (Program::Component(c), Serve::Command) => {
                let names = exports(c, engine);
                !names
                    .iter()
                    .any(|n| n.starts_with(CLI_RUN) || n.starts_with(CLI_RUN_P3))
                    && names
                        .iter()
                        .any(|n| n.starts_with(HTTP_HANDLER) || n.starts_with(HTTP_HANDLER_P3))
            }
        }
    }

    /// The way of running it (see [`crate::runner`]): a module as a command or as WAGI; a
    /// component by what it exports: `wasi:cli/run@0.3` (a WASI 0.3 command), else
    /// `wasi:cli/run@0.2` (a preview 2 command), else `wasi:http/incoming-handler@0.2` (a
    /// proxy served over HTTP).
    pub fn into_runner(self, engine: &Engine, serve: Serve) -> Result<Box<dyn Runner>, String> {
        match (self, serve) {
            (Program::Module(m), Serve::Command) => Ok(Box::new(P1Command(m))),
            (Program::Module(m), Serve::Wagi) => Ok(Box::new(Wagi(m))),
            (Program::Component(c), Serve::Command) => {
                let exports = exports(&c, engine);
                let has = |prefix: &str| exports.iter().any(|e| e.starts_with(prefix));
                // 0.3 first: toolchains that build 0.3 commands leave a `wasi:cli/run@0.2`
                // export beside it (the C startup object's), which is not the program.
                if has(CLI_RUN_P3) {
                    Ok(Box::new(P3Command(c)))
                } else if has(CLI_RUN) {
                    Ok(Box::new(P2Command(c)))
                } else if has(HTTP_HANDLER) {
                    Ok(Box::new(HttpProxy(c)))
                } else if has(HTTP_HANDLER_P3) {
                    Ok(Box::new(HttpProxy3(c)))
                } else {
                    Err(format!(
                        "the component exports none of {CLI_RUN_P3}.x, {CLI_RUN}.x (a \
                         command), {HTTP_HANDLER}.x or {HTTP_HANDLER_P3}.x (an HTTP service); \
                         it exports: {}",
                        if exports.is_empty() {
                            "nothing".to_owned()
                        } else {
                            exports.join(", ")
                        }
                    ))
                }
            }
            (Program::Component(_), Serve::Wagi) => Err(
                "WAGI (warden.dev/http=wagi) serves WASI preview 1 modules; this is a \
                 component (a wasi:http component is served without the annotation)"
                    .into(),
            ),
        }
    }
}

/// The names a component exports.
fn exports(c: &Component, engine: &Engine) -> Vec<String> {
    let ty = c.component_type();
    ty.exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Records the first limit that stopped the guest, shared by the limiter and the epoch hook.
#[derive(Clone, Default)]
pub struct LimitHit(Arc<Mutex<Option<(LimitKind, String)>>>);

impl LimitHit {
    pub fn set(&self, kind: LimitKind, msg: String) {
        if let Ok(mut g) = self.0.lock()
            && g.is_none()
        {
            *g = Some((kind, msg));
        }
    }

    pub fn get(&self) -> Option<(LimitKind, String)> {
        self.0.lock().ok().and_then(|g| g.clone())
    }
}

/// What one table element is charged against `limits.memory`, in bytes. Wasmtime stores a
/// table element as a pointer-sized value (its `ResourceLimiter::table_growing` docs: "each
/// table element requires a pointer's worth of space"; funcref tables hold
/// `Option<NonNull<VMFuncRef>>`, GC-reference tables a 4-byte `VMGcRef`), and a growable
/// table is a `Vec` that is committed (filled) when it grows. 8 bytes is exact for funcref
/// tables on 64-bit hosts and an upper bound for the others.
pub const TABLE_ELEMENT_BYTES: u64 = 8;

/// Store-wide counts, whatever the profile says. Wasmtime's defaults are 10,000 of each; a
/// real module has one or two memories and tables, a component a few per core instance, so
/// these leave generous room while bounding what a hostile module can make wasmtime reserve:
/// each linear memory is a 4 GiB + 32 MiB virtual reservation (see `engine::config`), so 100
/// memories are 400 GiB of address space, far from the 128 TiB a process has and from
/// `vm.max_map_count`.
pub const MAX_INSTANCES: usize = 1_000;
/// See [`MAX_INSTANCES`].
pub const MAX_TABLES: usize = 1_000;
/// See [`MAX_INSTANCES`].
pub const MAX_MEMORIES: usize = 100;

/// Bounds the whole store: the sum of all linear memories (every memory of every core
/// instance, including a GC heap, which wasmtime also grows through the limiter) and all
/// tables at [`TABLE_ELEMENT_BYTES`] per element, against `limits.memory`.
///
/// Wasmtime calls `memory_growing`/`table_growing` for the initial allocation too (with
/// `current` 0) and for every later growth, so charging `desired - current` each time keeps a
/// running total. Growth past a memory's or table's own declared maximum is answered
/// `Ok(false)` before charging (the spec's -1, the guest continues). A grow that would pass
/// `limits.memory` is an error: the guest traps, the run ends as `Limit(Memory)` (exit 135),
/// also when it happens while instantiating.
///
/// Nothing is credited back: a growth the limiter allowed can still fail inside wasmtime
/// (the OS refusing memory), and `memory_grow_failed` is also called for failures the limiter
/// never saw, so crediting there could be abused to reset the count. Over-counting in that
/// rare case only makes the bound stricter. Memories and tables are never freed while the
/// store lives. Shared memories bypass the limiter in wasmtime, which is why the engine
/// disables the threads proposal.
pub struct MemoryLimiter {
    limit: Option<u64>,
    memory_bytes: u64,
    table_bytes: u64,
    hit: LimitHit,
}

impl MemoryLimiter {
    pub fn new(limit: Option<u64>, hit: LimitHit) -> Self {
        MemoryLimiter {
            limit,
            memory_bytes: 0,
            table_bytes: 0,
            hit,
        }
    }

    /// Charges `delta` more bytes, or refuses (recording the limit) if the total would pass
    /// the limit. `what` describes the request for the message.
    fn charge(&mut self, delta: u64, what: impl FnOnce() -> String) -> wasmtime::Result<()> {
        let total = self
            .memory_bytes
            .saturating_add(self.table_bytes)
            .saturating_add(delta);
        if let Some(limit) = self.limit
            && total > limit
        {
            let msg = format!(
                "{} refused: memories and tables would total {total} bytes, the limit is \
                 {limit} bytes",
                what()
            );
            self.hit.set(LimitKind::Memory, msg.clone());
            wasmtime::bail!("{msg}");
        }
        Ok(())
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        let delta = to_u64(desired.saturating_sub(current));
        self.charge(delta, || {
            format!("memory grow from {current} to {desired} bytes")
        })?;
        self.memory_bytes = self.memory_bytes.saturating_add(delta);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        let delta = to_u64(desired.saturating_sub(current)).saturating_mul(TABLE_ELEMENT_BYTES);
        self.charge(delta, || {
            format!(
                "table grow from {current} to {desired} elements ({TABLE_ELEMENT_BYTES} bytes \
                 each)"
            )
        })?;
        self.table_bytes = self.table_bytes.saturating_add(delta);
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Runs `program` to completion under `limits`. Components look names up with `dns`.
///
/// Time limits stop a guest only while it runs Wasm code; a guest blocked in a host call runs
/// on. The container's runner uses [`run_with`], which also stops those; tests use this.
#[cfg(test)]
pub fn run(
    engine: &Engine,
    program: Program,
    wasi: WasiCtxBuilder,
    dns: dns::NameLookup,
    limits: &Limits,
) -> Outcome {
    let service = ServiceEnv::quiet(([127, 0, 0, 1], 0).into());
    let guest = Guest {
        program,
        serve: Serve::Command,
        wasi: std::sync::Arc::new(WasiMaker::once(wasi)),
        dns,
        service: &service,
    };
    run_inner(engine, guest, limits, None)
}

/// What to run and with what: the program, how it is served, its WASI contexts and name
/// lookup, and what serving HTTP needs.
pub struct Guest<'a> {
    pub program: Program,
    pub serve: Serve,
    pub wasi: std::sync::Arc<WasiMaker>,
    pub dns: dns::NameLookup,
    pub service: &'a ServiceEnv,
}

/// Like [`run`], for the process that exists only to run this guest (the container's runner):
/// when `limits.deadline` or `limits.cpu_time` is over and the guest has not stopped within
/// [`watchdog::GRACE`] (it is blocked or busy in a host call), a watchdog thread calls
/// `on_forced_stop` with the `Outcome::Limit` (report the limit there) and then ends the
/// whole process with `_exit(outcome.exit_code())` (124 or 152); `run_with` then never
/// returns. Otherwise the outcome is returned as from [`run`], and `on_forced_stop` is never
/// called: each outcome is reported exactly once.
///
/// With `limits.cpu_time` it also sets `RLIMIT_CPU` a second or two past the limit as a
/// kernel backstop (see [`watchdog::install_cpu_rlimit`]); this changes process-wide state.
pub fn run_with(
    engine: &Engine,
    guest: Guest<'_>,
    limits: &Limits,
    on_forced_stop: OnForcedStop,
) -> Outcome {
    if let Some(cpu) = limits.cpu_time {
        watchdog::install_cpu_rlimit(cpu);
    }
    let forced = ForcedStop::exit_process(on_forced_stop);
    run_inner(engine, guest, limits, Some(forced))
}

fn run_inner(
    engine: &Engine,
    guest: Guest<'_>,
    limits: &Limits,
    forced: Option<ForcedStop>,
) -> Outcome {
    let serving = guest.program.serves_http(guest.serve, engine);
    let runner = match guest.program.into_runner(engine, guest.serve) {
        Ok(r) => r,
        Err(e) => return Outcome::SetupFailed(e),
    };
    let hit = LimitHit::default();
    let limiter = MemoryLimiter::new(limits.memory, hit.clone());
    let started = Instant::now();
    let watch = start_watch(engine, limits, &hit, started, forced);
    let env = RunEnv {
        engine,
        dns: guest.dns,
        limiter,
        limits,
        hit: &hit,
        started,
        service: guest.service,
    };
    let what = runner.describe();
    // A command's host calls run in this runtime (see `host_call_runtime`); a service brings
    // its own, one per shard.
    let runtime = if serving {
        None
    } else {
        match host_call_runtime() {
            Ok(rt) => Some(rt),
            Err(e) => return Outcome::SetupFailed(format!("starting the host-call runtime: {e}")),
        }
    };
    let entered = runtime.as_ref().map(tokio::runtime::Runtime::enter);
    let result = runner.run(guest.wasi, env);
    drop(entered);
    if let Some(rt) = runtime {
        rt.shutdown_background();
    }
    if let Some(watch) = &watch
        && !watch.finish()
    {
        // The watchdog took over: it reports and ends the process; reporting here too would
        // report twice.
        loop {
            std::thread::park();
        }
    }
    match result {
        Ok(code) => Outcome::Exited(code),
        // A limit refused at instantiation (an initial memory or table too big) surfaces as an
        // instantiation error, which for components is a setup error.
        Err(RunError::Setup(e)) => match hit.get() {
            Some((kind, msg)) => Outcome::Limit(kind, msg),
            None => Outcome::SetupFailed(format!("setting up the {what}: {e:#}")),
        },
        Err(RunError::Guest(e)) => classify_error(&e, &hit),
    }
}

/// The runtime a command's host calls run in. wasmtime-wasi's synchronous bindings (WASI
/// preview 1, and preview 2 commands) run each host call on the current tokio runtime, and
/// without one they build a global multi-thread runtime with one worker thread per core of
/// the node: 64 threads in the container of a guest printing "hello" on a 64-core node, and
/// the cgroup and mount tables read to count the cores, on every start. This one has one
/// worker (it drives timers and I/O; the guest runs on the caller's thread) and the
/// default pool for blocking calls.
fn host_call_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("warden-host-calls")
        .enable_all()
        .build()
}

/// Starts the ticker/watchdog thread when the grants bound time.
fn start_watch(
    engine: &Engine,
    limits: &Limits,
    hit: &LimitHit,
    started: Instant,
    forced: Option<ForcedStop>,
) -> Option<Watch> {
    if limits.deadline.is_none() && limits.cpu_time.is_none() {
        return None;
    }
    let (deadline, cpu) = (limits.deadline, limits.cpu_time);
    let hit = hit.clone();
    let check = move || {
        over_limit(deadline, cpu, started).map(|(kind, msg)| watchdog::Over {
            kind,
            msg,
            stopping: hit.get().is_some(),
        })
    };
    Some(Watch::start(engine, check, forced))
}

/// Sets fuel and the epoch deadline; the thread that advances the epoch is the watchdog
/// started by [`run_inner`].
pub fn arm_limits<T: 'static>(
    store: &mut Store<T>,
    limits: &Limits,
    hit: &LimitHit,
    started: Instant,
) {
    if let Some(fuel) = limits.fuel {
        // Only a metered engine (see `engine::Flavor`) accepts fuel.
        if let Err(e) = store.set_fuel(fuel) {
            log::error!("cannot set fuel: {e}");
        }
    }
    if limits.deadline.is_none() && limits.cpu_time.is_none() {
        store.set_epoch_deadline(u64::MAX);
        return;
    }
    store.set_epoch_deadline(1);
    let (deadline, cpu) = (limits.deadline, limits.cpu_time);
    let hook_hit = hit.clone();
    store.epoch_deadline_callback(move |_| {
        if let Some((kind, msg)) = over_limit(deadline, cpu, started) {
            hook_hit.set(kind, msg.clone());
            wasmtime::bail!("{msg}");
        }
        Ok(UpdateDeadline::Continue(1))
    });
}

fn over_limit(
    deadline: Option<Duration>,
    cpu: Option<Duration>,
    started: Instant,
) -> Option<(LimitKind, String)> {
    if let Some(d) = deadline
        && started.elapsed() > d
    {
        return Some((
            LimitKind::Deadline,
            format!("ran past its wall-clock deadline of {}ms", d.as_millis()),
        ));
    }
    if let Some(c) = cpu
        && process_cpu_time() > c
    {
        return Some((
            LimitKind::CpuTime,
            format!("used up its CPU time of {}ms", c.as_millis()),
        ));
    }
    None
}

/// CPU time used by this process (the container's runner process, which is the guest).
pub fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn classify_error(err: &wasmtime::Error, hit: &LimitHit) -> Outcome {
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return Outcome::Exited(exit.0);
    }
    if let Some((kind, msg)) = hit.get() {
        return Outcome::Limit(kind, msg);
    }
    if matches!(err.downcast_ref::<Trap>(), Some(Trap::OutOfFuel)) {
        return Outcome::Limit(LimitKind::Fuel, "ran out of fuel".into());
    }
    let what = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    let place = err
        .downcast_ref::<WasmBacktrace>()
        .and_then(|bt| {
            bt.frames()
                .first()
                .map(|f| f.func_name().map(str::to_owned))
        })
        .map(|name| match name {
            Some(n) => format!(" in function `{n}`"),
            None => " in an unnamed function".into(),
        })
        .unwrap_or_default();
    Outcome::Trap(format!("{what}{place}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::new_engine;

    fn run_wat(wat: &str, limits: &Limits) -> Outcome {
        let engine = crate::engine::engine_for(crate::engine::Flavor::for_limits(limits)).unwrap();
        let module = Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        let wasi = WasiCtxBuilder::new();
        run(
            &engine,
            Program::Module(module),
            wasi,
            dns::NameLookup::disabled(),
            limits,
        )
    }

    const EXIT_42: &str = r#"(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start") (call $exit (i32.const 42))))"#;

    #[test]
    fn proc_exit_code_passes_through() {
        let o = run_wat(EXIT_42, &Limits::default());
        assert_eq!(o, Outcome::Exited(42));
        assert_eq!(o.exit_code(), 42);
        assert_eq!(o.message(), None);
    }

    #[test]
    fn returning_from_start_is_exit_zero() {
        let o = run_wat(r#"(module (func (export "_start")))"#, &Limits::default());
        assert_eq!(o, Outcome::Exited(0));
    }

    #[test]
    fn a_trap_is_named_with_its_function() {
        let o = run_wat(
            r#"(module
                (func $boom (unreachable))
                (func (export "_start") (call $boom)))"#,
            &Limits::default(),
        );
        let Outcome::Trap(msg) = &o else {
            panic!("{o:?}")
        };
        assert!(msg.contains("unreachable"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
        assert_eq!(o.exit_code(), exit_code::TRAP);
    }

    #[test]
    fn growing_memory_past_the_limit_stops_the_guest() {
        let limits = Limits {
            memory: Some(2 << 20),
            ..Default::default()
        };
        let o = run_wat(
            r#"(module (memory 1)
                (func (export "_start") (drop (memory.grow (i32.const 64)))))"#,
            &limits,
        );
        assert!(matches!(o, Outcome::Limit(LimitKind::Memory, _)), "{o:?}");
        assert_eq!(o.exit_code(), exit_code::MEMORY_LIMIT);
    }

    #[test]
    fn growing_within_the_limit_is_fine() {
        let limits = Limits {
            memory: Some(8 << 20),
            ..Default::default()
        };
        let o = run_wat(
            r#"(module (memory 1)
                (func (export "_start") (drop (memory.grow (i32.const 16)))))"#,
            &limits,
        );
        assert_eq!(o, Outcome::Exited(0));
    }

    const SPIN: &str = r#"(module (func (export "_start") (loop $l (br $l))))"#;

    #[test]
    fn a_loop_past_the_deadline_is_stopped() {
        let limits = Limits {
            deadline: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        let o = run_wat(SPIN, &limits);
        assert!(matches!(o, Outcome::Limit(LimitKind::Deadline, _)), "{o:?}");
        assert_eq!(o.exit_code(), exit_code::DEADLINE);
    }

    #[test]
    fn a_loop_past_the_cpu_time_is_stopped() {
        let limits = Limits {
            cpu_time: Some(process_cpu_time() + Duration::from_millis(100)),
            ..Default::default()
        };
        let o = run_wat(SPIN, &limits);
        assert!(matches!(o, Outcome::Limit(LimitKind::CpuTime, _)), "{o:?}");
        assert_eq!(o.exit_code(), exit_code::CPU_TIME);
    }

    #[test]
    fn a_loop_out_of_fuel_is_stopped() {
        let limits = Limits {
            fuel: Some(100_000),
            ..Default::default()
        };
        let o = run_wat(SPIN, &limits);
        assert!(matches!(o, Outcome::Limit(LimitKind::Fuel, _)), "{o:?}");
        assert_eq!(o.exit_code(), exit_code::FUEL);
        let enough = Limits {
            fuel: Some(100_000),
            ..Default::default()
        };
        assert_eq!(
            run_wat(r#"(module (func (export "_start")))"#, &enough),
            Outcome::Exited(0)
        );
    }

    #[test]
    fn a_component_that_is_neither_a_command_nor_a_proxy_does_not_start() {
        let engine = new_engine().unwrap();
        let bytes =
            wat::parse_str(r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#)
                .unwrap();
        let component = Component::new(&engine, bytes).unwrap();
        let o = run(
            &engine,
            Program::Component(component),
            WasiCtxBuilder::new(),
            dns::NameLookup::disabled(),
            &Limits::default(),
        );
        let Outcome::SetupFailed(msg) = &o else {
            panic!("{o:?}")
        };
        assert!(
            msg.contains("exports none of wasi:cli/run@0.3.x, wasi:cli/run@0.2.x (a command)"),
            "{msg}"
        );
        assert_eq!(o.exit_code(), exit_code::SETUP_FAILED);
    }

    #[test]
    fn a_module_without_start_is_a_setup_failure() {
        let o = run_wat("(module)", &Limits::default());
        assert!(matches!(o, Outcome::SetupFailed(_)), "{o:?}");
        assert_eq!(o.exit_code(), exit_code::SETUP_FAILED);
    }

    #[test]
    fn strict_guest_sees_no_env_and_no_preopens() {
        // environ_sizes_get writes the count at 0; fd_prestat_get(3) must fail (EBADF = 8).
        let wat = r#"(module
            (import "wasi_snapshot_preview1" "environ_sizes_get" (func $es (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "fd_prestat_get" (func $pg (param i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func (export "_start")
                (drop (call $es (i32.const 0) (i32.const 4)))
                (if (i32.ne (i32.load (i32.const 0)) (i32.const 0)) (then (call $exit (i32.const 10))))
                (if (i32.ne (call $pg (i32.const 3) (i32.const 8)) (i32.const 8)) (then (call $exit (i32.const 11))))
                (call $exit (i32.const 0))))"#;
        let engine = new_engine().unwrap();
        let module = Module::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        let mut grants = warden_policy::Grants::strict();
        let wasi = crate::wasi_ctx::builder(&grants, &["m".into()], Arc::new(|_, _| {})).unwrap();
        assert_eq!(
            run(
                &engine,
                Program::Module(module.clone()),
                wasi,
                dns::NameLookup::disabled(),
                &grants.limits
            ),
            Outcome::Exited(0)
        );
        // And with a granted env var the same module sees one.
        grants.env.push(("A".into(), "1".into()));
        let wasi = crate::wasi_ctx::builder(&grants, &["m".into()], Arc::new(|_, _| {})).unwrap();
        assert_eq!(
            run(
                &engine,
                Program::Module(module),
                wasi,
                dns::NameLookup::disabled(),
                &grants.limits
            ),
            Outcome::Exited(10)
        );
    }

    // --- limits.memory over the whole store -------------------------------------------------

    fn mem_limit(bytes: u64) -> Limits {
        Limits {
            memory: Some(bytes),
            ..Default::default()
        }
    }

    /// Four memories of one page each, each grown by `pages` (64 KiB pages) in turn; exits 7
    /// if a grow returned -1 (so a refusal that merely fails the grow is told apart).
    fn four_memories_grown_by(pages: u32) -> String {
        let grows: String = (0..4)
            .map(|i| {
                format!(
                    "(if (i32.eq (memory.grow {i} (i32.const {pages})) (i32.const -1)) \
                     (then (call $exit (i32.const 7))))"
                )
            })
            .collect();
        format!(
            r#"(module
                (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                (memory (export "memory") 1) (memory 1) (memory 1) (memory 1)
                (func (export "_start") {grows}))"#
        )
    }

    #[test]
    fn four_memories_together_past_the_limit_stop_the_guest() {
        // 4 x 6.25 MiB (100 pages) under 8 MiB: each alone fits, together they do not.
        let o = run_wat(&four_memories_grown_by(99), &mem_limit(8 << 20));
        let Outcome::Limit(LimitKind::Memory, msg) = &o else {
            panic!("{o:?}")
        };
        assert!(msg.contains("memory grow"), "{msg}");
        assert_eq!(o.exit_code(), exit_code::MEMORY_LIMIT);
    }

    #[test]
    fn four_memories_together_within_the_limit_run() {
        // 4 x 1.5 MiB (24 pages) = 6 MiB under 8 MiB.
        let o = run_wat(&four_memories_grown_by(23), &mem_limit(8 << 20));
        assert_eq!(o, Outcome::Exited(0));
    }

    #[test]
    fn initial_memories_past_the_limit_are_the_memory_limit() {
        // 4 x 100 pages declared: refused while instantiating, before `_start` runs.
        let o = run_wat(
            r#"(module (memory 100) (memory 100) (memory 100) (memory 100)
                (func (export "_start")))"#,
            &mem_limit(8 << 20),
        );
        assert!(matches!(o, Outcome::Limit(LimitKind::Memory, _)), "{o:?}");
        assert_eq!(o.exit_code(), exit_code::MEMORY_LIMIT);
    }

    #[test]
    fn an_initial_table_past_the_limit_is_the_memory_limit() {
        // 2,000,000 funcref elements = 16 MB at 8 bytes each.
        let o = run_wat(
            r#"(module (table 2000000 funcref) (func (export "_start")))"#,
            &mem_limit(8 << 20),
        );
        assert!(matches!(o, Outcome::Limit(LimitKind::Memory, _)), "{o:?}");
    }

    /// Resident set size of this process, in bytes.
    fn rss() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        // SAFETY: sysconf has no preconditions.
        pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
    }

    const TABLE_GROW_200M: &str = r#"(module
        (table 1 funcref)
        (func (export "_start")
            (drop (table.grow (ref.null func) (i32.const 200000000)))))"#;

    #[test]
    fn growing_a_table_by_200_million_stops_the_guest_without_committing_it() {
        let before = rss();
        let t = Instant::now();
        let o = run_wat(TABLE_GROW_200M, &mem_limit(8 << 20));
        let grew = rss().saturating_sub(before);
        let Outcome::Limit(LimitKind::Memory, msg) = &o else {
            panic!("{o:?}")
        };
        assert!(msg.contains("table grow"), "{msg}");
        assert_eq!(o.exit_code(), exit_code::MEMORY_LIMIT);
        // 200M elements would be 1.6 GB; other tests run alongside, so allow some noise.
        assert!(grew < 256 << 20, "RSS grew by {grew} bytes");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    #[test]
    fn a_small_table_grow_within_the_limit_works() {
        // Grows by 1000 and checks the new size; exits 7 if table.grow failed.
        let o = run_wat(
            r#"(module
                (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                (table 1 funcref)
                (func (export "_start")
                    (if (i32.ne (table.grow (ref.null func) (i32.const 1000)) (i32.const 1))
                        (then (call $exit (i32.const 7))))
                    (if (i32.ne (table.size) (i32.const 1001))
                        (then (call $exit (i32.const 8))))))"#,
            &mem_limit(8 << 20),
        );
        assert_eq!(o, Outcome::Exited(0));
    }

    #[test]
    fn memories_and_tables_count_against_one_limit() {
        // 100 pages (6.25 MiB) of memory fit, 300,000 table elements (2.4 MB) fit, both don't.
        let wat = r#"(module
            (memory 100)
            (table 1 funcref)
            (func (export "_start")
                (drop (table.grow (ref.null func) (i32.const 300000)))))"#;
        let o = run_wat(wat, &mem_limit(8 << 20));
        assert!(matches!(o, Outcome::Limit(LimitKind::Memory, _)), "{o:?}");
        assert_eq!(run_wat(wat, &mem_limit(9 << 20)), Outcome::Exited(0));
    }

    #[test]
    fn growing_past_a_declared_maximum_fails_the_grow_not_the_guest() {
        // The spec's -1 (the guest goes on), not the profile's limit.
        let o = run_wat(
            r#"(module
                (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                (memory (export "memory") 1 2) (table 1 2 funcref)
                (func (export "_start")
                    (if (i32.ne (memory.grow (i32.const 5)) (i32.const -1))
                        (then (call $exit (i32.const 7))))
                    (if (i32.ne (table.grow (ref.null func) (i32.const 5)) (i32.const -1))
                        (then (call $exit (i32.const 8))))
                    (call $exit (i32.const 3))))"#,
            &mem_limit(8 << 20),
        );
        assert_eq!(o, Outcome::Exited(3));
    }

    #[test]
    fn the_store_bounds_how_many_memories_there_are() {
        // A module may declare at most 100 memories (wasmparser's own limit), so the store's
        // count shows with several instances, as in a component: 60 + 60 > MAX_MEMORIES.
        let engine = new_engine().unwrap();
        let memories = "(memory 0) ".repeat(60);
        let module = Module::new(&engine, format!("(module {memories})")).unwrap();
        let mut store = Store::new(&engine, MemoryLimiter::new(None, LimitHit::default()));
        store.limiter(|l| l);
        let linker: wasmtime::Linker<MemoryLimiter> = wasmtime::Linker::new(&engine);
        linker.instantiate(&mut store, &module).unwrap();
        let err = linker.instantiate(&mut store, &module).unwrap_err();
        assert!(format!("{err:#}").contains("memory count"), "{err:#}");
    }

    // --- time limits for a guest blocked in a host call -------------------------------------

    /// `poll_oneoff` with one relative monotonic-clock subscription of `nanos`: the guest
    /// sleeps in the host. The subscription is at 0 (48 bytes), the event at 64, the count at
    /// 128. Exits with poll_oneoff's errno if it fails, else returns (exit 0).
    fn sleep_wat(nanos: u64) -> String {
        format!(
            r#"(module
                (import "wasi_snapshot_preview1" "poll_oneoff"
                    (func $poll (param i32 i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                (memory (export "memory") 1)
                (func (export "_start") (local $e i32)
                    (i64.store (i32.const 0) (i64.const 1))           ;; userdata
                    (i32.store8 (i32.const 8) (i32.const 0))          ;; tag: clock
                    (i32.store (i32.const 16) (i32.const 1))          ;; id: monotonic
                    (i64.store (i32.const 24) (i64.const {nanos}))    ;; timeout
                    (i64.store (i32.const 32) (i64.const 0))          ;; precision
                    (i32.store16 (i32.const 40) (i32.const 0))        ;; flags: relative
                    (local.set $e (call $poll (i32.const 0) (i32.const 64) (i32.const 1)
                        (i32.const 128)))
                    (if (local.get $e) (then (call $exit (local.get $e))))))"#
        )
    }

    #[test]
    fn a_short_sleep_sleeps_and_returns() {
        let t = Instant::now();
        assert_eq!(
            run_wat(&sleep_wat(50_000_000), &Limits::default()),
            Outcome::Exited(0)
        );
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "{:?}",
            t.elapsed()
        );
    }

    /// Selects the helper below in a child process of the test binary.
    const CHILD_ENV: &str = "WARDEN_RUN_WATCHDOG_CHILD";
    const MARKER: &str = "WARDEN-FORCED-STOP";

    /// Not a test on its own: the parent tests re-run the test binary with only this test and
    /// `CHILD_ENV` naming a case. It runs the case through `run_with`, whose watchdog may
    /// `_exit` the process; if the run returns instead, it prints the outcome and exits with
    /// its status.
    #[test]
    fn watchdog_child() {
        let Ok(case) = std::env::var(CHILD_ENV) else {
            return;
        };
        let cpu_in = |ms| Some(process_cpu_time() + Duration::from_millis(ms));
        let (wat, limits) = match case.as_str() {
            "sleep-deadline" => (
                sleep_wat(20_000_000_000),
                Limits {
                    deadline: Some(Duration::from_millis(500)),
                    ..Default::default()
                },
            ),
            "spin-deadline" => (
                SPIN.to_string(),
                Limits {
                    deadline: Some(Duration::from_millis(300)),
                    ..Default::default()
                },
            ),
            "sleep-cpu" => (
                sleep_wat(1_000_000_000),
                Limits {
                    cpu_time: cpu_in(200),
                    ..Default::default()
                },
            ),
            "spin-cpu" => (
                SPIN.to_string(),
                Limits {
                    cpu_time: cpu_in(300),
                    ..Default::default()
                },
            ),
            "sleep-host-burns-cpu" => {
                // Stands in for CPU burnt inside a host call: another thread of the process
                // spins while the guest sleeps, and CPU time is the process's.
                std::thread::spawn(|| {
                    loop {
                        std::hint::spin_loop();
                    }
                });
                (
                    sleep_wat(20_000_000_000),
                    Limits {
                        cpu_time: cpu_in(300),
                        ..Default::default()
                    },
                )
            }
            other => panic!("unknown case {other}"),
        };
        let engine = crate::engine::engine_for(crate::engine::Flavor::for_limits(&limits)).unwrap();
        let module = Module::new(&engine, wat::parse_str(&wat).unwrap()).unwrap();
        let service = ServiceEnv::quiet(([127, 0, 0, 1], 0).into());
        let guest = Guest {
            program: Program::Module(module),
            serve: Serve::Command,
            wasi: std::sync::Arc::new(WasiMaker::once(WasiCtxBuilder::new())),
            dns: dns::NameLookup::disabled(),
            service: &service,
        };
        let o = run_with(
            &engine,
            guest,
            &limits,
            Box::new(|o: &Outcome| {
                eprintln!("{MARKER} {} {:?}", o.exit_code(), o.message());
            }),
        );
        eprintln!("RUN RETURNED {o:?}");
        std::process::exit(o.exit_code());
    }

    /// Runs `case` in a child; returns its exit status, its stderr and how long it took.
    fn child(case: &str) -> (Option<i32>, String, Duration) {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let t = Instant::now();
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "run::tests::watchdog_child", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, case)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(s) = c.try_wait().unwrap() {
                break s;
            }
            if t.elapsed() > Duration::from_secs(10) {
                let _ = c.kill();
                let _ = c.wait();
                panic!("case {case} still running after 10s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        (status.code(), err, t.elapsed())
    }

    #[test]
    fn a_guest_sleeping_past_the_deadline_is_ended_with_124() {
        let (code, err, took) = child("sleep-deadline");
        assert_eq!(code, Some(exit_code::DEADLINE), "{err}");
        assert!(err.contains(&format!("{MARKER} 124")), "{err}");
        assert!(err.contains("limits.deadline"), "{err}");
        assert!(!err.contains("RUN RETURNED"), "{err}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn a_spinning_guest_past_the_deadline_stops_the_normal_way() {
        let (code, err, _) = child("spin-deadline");
        assert_eq!(code, Some(exit_code::DEADLINE), "{err}");
        assert!(err.contains("RUN RETURNED Limit(Deadline"), "{err}");
        assert!(!err.contains(MARKER), "reported twice: {err}");
    }

    #[test]
    fn a_sleeping_guest_uses_no_cpu_time_and_is_not_stopped() {
        let (code, err, _) = child("sleep-cpu");
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains("RUN RETURNED Exited(0)"), "{err}");
        assert!(!err.contains(MARKER), "{err}");
    }

    #[test]
    fn a_spinning_guest_past_the_cpu_time_stops_the_normal_way() {
        let (code, err, _) = child("spin-cpu");
        assert_eq!(code, Some(exit_code::CPU_TIME), "{err}");
        assert!(err.contains("RUN RETURNED Limit(CpuTime"), "{err}");
        assert!(!err.contains(MARKER), "reported twice: {err}");
    }

    #[test]
    fn cpu_burnt_outside_wasm_past_the_cpu_time_ends_the_process_with_152() {
        let (code, err, took) = child("sleep-host-burns-cpu");
        assert_eq!(code, Some(exit_code::CPU_TIME), "{err}");
        assert!(err.contains(&format!("{MARKER} 152")), "{err}");
        assert!(err.contains("limits.cpu_time"), "{err}");
        assert!(!err.contains("RUN RETURNED"), "{err}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
