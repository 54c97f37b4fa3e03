//! Running a guest inside the container process, and what its end means.
//!
//! The module or component arrives already compiled (by the shim, on the host side); this
//! code instantiates it in a store with the grants' WASI context and limits, runs it, and
//! turns the result into an [`Outcome`]: the guest's own exit code, a trap (named, with the
//! function it happened in), a limit that stopped it, or a setup failure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warden_policy::Limits;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{
    Engine, Linker, Module, ResourceLimiter, Store, Trap, UpdateDeadline, WasmBacktrace,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::engine::EPOCH_TICK;
use crate::{dns, exit_code};

/// Which limit stopped a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    Memory,
    Deadline,
    CpuTime,
    Fuel,
}

impl LimitKind {
    pub fn rule(self) -> &'static str {
        match self {
            LimitKind::Memory => "limits.memory",
            LimitKind::Deadline => "limits.deadline",
            LimitKind::CpuTime => "limits.cpu_time",
            LimitKind::Fuel => "limits.fuel",
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
            Outcome::Limit(LimitKind::Deadline, _) => exit_code::DEADLINE,
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

/// Records the first limit that stopped the guest, shared by the limiter and the epoch hook.
#[derive(Clone, Default)]
struct LimitHit(Arc<Mutex<Option<(LimitKind, String)>>>);

impl LimitHit {
    fn set(&self, kind: LimitKind, msg: String) {
        if let Ok(mut g) = self.0.lock()
            && g.is_none()
        {
            *g = Some((kind, msg));
        }
    }

    fn get(&self) -> Option<(LimitKind, String)> {
        self.0.lock().ok().and_then(|g| g.clone())
    }
}

/// Bounds linear memory across all of the instance's memories.
struct MemoryLimiter {
    limit: Option<u64>,
    hit: LimitHit,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if let Some(limit) = self.limit
            && desired as u64 > limit
        {
            let msg = format!(
                "memory grow from {current} to {desired} bytes refused: the limit is {limit} bytes"
            );
            self.hit.set(LimitKind::Memory, msg.clone());
            wasmtime::bail!("{msg}");
        }
        Ok(maximum.is_none_or(|m| desired <= m))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|m| desired <= m))
    }
}

struct P1State {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

struct P2State {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    /// Name lookup for `wasi:sockets/ip-name-lookup` (see `dns`).
    dns: dns::NameLookup,
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl dns::DnsView for P2State {
    fn dns(&mut self) -> dns::DnsCtxView<'_> {
        dns::DnsCtxView {
            lookup: &self.dns,
            table: &mut self.table,
        }
    }
}

/// Runs `program` to completion under `limits`. Components look names up with `dns`.
pub fn run(
    engine: &Engine,
    program: Program,
    wasi: WasiCtxBuilder,
    dns: dns::NameLookup,
    limits: &Limits,
) -> Outcome {
    let hit = LimitHit::default();
    let limiter = MemoryLimiter {
        limit: limits.memory,
        hit: hit.clone(),
    };
    let started = Instant::now();
    let result = match program {
        Program::Module(m) => run_module(engine, &m, wasi, limiter, limits, &hit, started),
        Program::Component(c) => {
            run_component(engine, &c, wasi, dns, limiter, limits, &hit, started)
        }
    };
    match result {
        Ok(code) => Outcome::Exited(code),
        Err(RunError::Setup(e)) => Outcome::SetupFailed(format!("{e:#}")),
        Err(RunError::Guest(e)) => classify_error(&e, &hit),
    }
}

enum RunError {
    Setup(wasmtime::Error),
    Guest(wasmtime::Error),
}

fn run_module(
    engine: &Engine,
    module: &Module,
    mut wasi: WasiCtxBuilder,
    limiter: MemoryLimiter,
    limits: &Limits,
    hit: &LimitHit,
    started: Instant,
) -> Result<i32, RunError> {
    let mut linker: Linker<P1State> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi).map_err(RunError::Setup)?;
    let state = P1State {
        wasi: wasi.build_p1(),
        limiter,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    arm_limits(&mut store, engine, limits, hit, started);
    let instance = linker
        .instantiate(&mut store, module)
        .map_err(RunError::Guest)?;
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|e| {
            RunError::Setup(e.context("the module does not export a `_start` function"))
        })?;
    start.call(&mut store, ()).map_err(RunError::Guest)?;
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
fn run_component(
    engine: &Engine,
    component: &Component,
    mut wasi: WasiCtxBuilder,
    dns: dns::NameLookup,
    limiter: MemoryLimiter,
    limits: &Limits,
    hit: &LimitHit,
    started: Instant,
) -> Result<i32, RunError> {
    let mut linker: wasmtime::component::Linker<P2State> = wasmtime::component::Linker::new(engine);
    // `wasi:cli/exit.exit` carries only ok/err (status 0 or 1); components that call
    // `exit-with-code` (WASI 0.2.12) get their exact status through as `I32Exit`.
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(RunError::Setup)?;
    // Replaces wasmtime-wasi's name lookup (getaddrinfo in the image's root).
    dns::add_to_linker(&mut linker).map_err(RunError::Setup)?;
    let state = P2State {
        ctx: wasi.build(),
        table: ResourceTable::new(),
        limiter,
        dns,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    arm_limits(&mut store, engine, limits, hit, started);
    let command =
        wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, component, &linker)
            .map_err(|e| {
                RunError::Setup(e.context(
                    "instantiating the component: it must be a WASI command (export \
                         wasi:cli/run) and import only what warden provides (wasi:cli, \
                         wasi:clocks, wasi:filesystem, wasi:io, wasi:random, wasi:sockets)",
                ))
            })?;
    match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(e) => Err(RunError::Guest(e)),
    }
}

/// Sets the epoch deadline and, when the grants bound time, starts the ticker that drives it.
fn arm_limits<T: 'static>(
    store: &mut Store<T>,
    engine: &Engine,
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
    let engine = engine.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
        }
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
    fn a_component_importing_what_warden_does_not_provide_does_not_start() {
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
        assert!(msg.contains("import only what warden provides"), "{msg}");
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
}
