//! The libcontainer executor: the code that runs as the container's process, after youki has
//! set up namespaces, cgroups, mounts and pivoted into the rootfs.
//!
//! It never decides anything: the host side already chose between native (the pod sandbox, or
//! a profile that grants `native`) and Wasm, and fixed the grants. A Wasm workload runs in
//! wasmtime here with a WASI context built from those grants only, in this order:
//!
//! 1. load the artifact the shim compiled (a sealed memfd) into memory;
//! 2. open the granted paths that live in container mounts ([`preopen`]);
//! 3. close every descriptor but stdio, the report pipe and the granted directories
//!    ([`close_other_fds`]): the shim's log, the zygote's socket, the artifact and anything
//!    youki left open are gone before guest code runs;
//! 4. build the WASI context and run the guest;
//! 5. report how it ended to the shim ([`report`]) and exit with the status.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
// libcontainer's own oci-spec (0.10 for libcontainer 0.7), which its `Executor` trait takes; the
// rest of the shim uses oci-spec 0.9, as containerd-shimkit does.
use libcontainer::oci_spec::runtime::Spec;
use warden_audit::escape_for_terminal;
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::entrypoint::WasmKind;
use crate::launch::{WasmWorkload, Workload};
use crate::report::{Ended, Report, Reporter};
use crate::run::{LimitKind, Outcome, Program};
use crate::runner::{LimitHook, ServiceEnv};
use crate::{engine, exit_code, preopen, run, wasi_ctx};

#[derive(Clone)]
pub struct WardenExecutor(Arc<Workload>);

impl WardenExecutor {
    pub fn new(workload: Workload) -> Self {
        Self(Arc::new(workload))
    }
}

impl Executor for WardenExecutor {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        match &*self.0 {
            Workload::Native => DefaultExecutor {}.validate(spec),
            Workload::Wasm(_) => Ok(()),
        }
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        match &*self.0 {
            Workload::Native => DefaultExecutor {}.setup_envs(envs),
            // A guest's environment is exactly what its grants name, built into the WASI
            // context; the runner process's own environment is irrelevant to it.
            Workload::Wasm(_) => Ok(()),
        }
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        match &*self.0 {
            Workload::Native => {
                log::info!("running native container (pod sandbox or granted native)");
                DefaultExecutor {}.exec(spec)
            }
            Workload::Wasm(w) => {
                let reporter = match w.report.try_clone() {
                    Ok(f) => Reporter::new(f),
                    Err(e) => {
                        eprintln!("warden: the report pipe is unusable: {e}");
                        std::process::exit(exit_code::SETUP_FAILED);
                    }
                };
                let reporter = Arc::new(reporter);
                let end = run_guest(w, &reporter);
                finish(&reporter, &w.module_path, end)
            }
        }
    }
}

/// How the runner's part ended: a guest outcome, or a granted path refused in the container.
enum End {
    Ran(Outcome),
    Refused(String),
}

fn run_guest(w: &WasmWorkload, reporter: &Arc<Reporter>) -> End {
    let module_path = escape_for_terminal(&w.module_path);
    reporter.log(
        log::Level::Info,
        format!(
            "running {module_path} ({}) with grants: {}",
            w.digest,
            w.grants.summary()
        ),
    );
    let (engine, program) = match load(w, reporter) {
        Ok(p) => p,
        Err(e) => return End::Ran(Outcome::SetupFailed(format!("{e:#}"))),
    };
    let dirs = match preopen::open_all(&w.preopens) {
        Ok(d) => d,
        Err(e) => {
            let msg = e.to_string();
            reporter.send(&Report::Deny {
                rule: "mounts".into(),
                what: msg.clone(),
            });
            return End::Refused(msg);
        }
    };
    let mut keep = preopen::raw_fds(&dirs);
    keep.push(reporter.raw_fd());
    if let Err(e) = close_other_fds(&keep) {
        return End::Ran(Outcome::SetupFailed(format!(
            "closing inherited descriptors: {e}"
        )));
    }
    let deny_reporter = reporter.clone();
    let on_deny: wasi_ctx::DenyHook = Arc::new(move |rule: &'static str, what: String| {
        deny_reporter.send(&Report::Deny {
            rule: rule.into(),
            what,
        });
    });
    let limit_reporter = reporter.clone();
    let on_limit: LimitHook = Arc::new(move |kind: LimitKind, reason: String| {
        limit_reporter.send(&Report::Limit {
            rule: kind.rule().to_string(),
            reason,
        });
    });
    let service = ServiceEnv {
        addr: w.http_addr,
        http: w.grants.http.clone(),
        resolver: w.resolver.clone(),
        on_deny: on_deny.clone(),
        on_limit,
    };
    // Names resolve with the node's (or the pod's CRI) resolver configuration the shim read
    // on the host side, never the image's files or NSS modules.
    let wasi_ctx::GuestWasi {
        ctx: wasi,
        dns: lookup,
    } = match wasi_ctx::for_grants(&w.grants, &w.args, dirs, &w.resolver, on_deny) {
        Ok(g) => g,
        Err(e) => return End::Ran(Outcome::SetupFailed(format!("{e:#}"))),
    };
    // A guest blocked in a host call past its deadline or CPU time is stopped by the
    // watchdog, which reports the limit here before it ends the process.
    let (forced_reporter, module_path) = (reporter.clone(), w.module_path.clone());
    let on_forced_stop: run::OnForcedStop = Box::new(move |outcome: &Outcome| {
        report_end(&forced_reporter, &module_path, &End::Ran(outcome.clone()));
    });
    let guest = run::Guest {
        program,
        serve: w.serve,
        wasi: Arc::new(wasi),
        dns: lookup,
        service: &service,
    };
    End::Ran(run::run_with(
        &engine,
        guest,
        &w.grants.limits,
        on_forced_stop,
    ))
}

/// The engine for the grants' flavour and the program deserialized from the artifact. An
/// HTTP service gets the pooled engine where the host allows it (see
/// [`engine::pooled_engine_for`]); the container's stderr says which.
fn load(w: &WasmWorkload, reporter: &Reporter) -> anyhow::Result<(Engine, Program)> {
    let engine = engine::engine_for(w.flavor)?;
    let mut bytes = Vec::new();
    let mut file = w.artifact.try_clone()?;
    std::io::Seek::rewind(&mut file)?;
    file.read_to_end(&mut bytes)?;
    let program = deserialize(&engine, w.kind, &bytes)?;
    if !program.serves_http(w.serve, &engine) {
        return Ok((engine, program));
    }
    let pooled = engine::pooled_engine_for(w.flavor, w.grants.limits.memory)
        .and_then(|e| deserialize(&e, w.kind, &bytes).map(|p| (e, p)));
    Ok(match pooled {
        Ok(pooled) => {
            eprintln!(
                "warden-http: instances come from wasmtime's pooling allocator ({} slots)",
                engine::POOL_INSTANCES
            );
            pooled
        }
        Err(e) => {
            let msg = format!(
                "the pooling allocator is not available here ({e:#}); instances are allocated \
                 one by one"
            );
            eprintln!("warden-http: {msg}");
            reporter.log(log::Level::Warn, msg);
            (engine, program)
        }
    })
}

fn deserialize(engine: &Engine, kind: WasmKind, bytes: &[u8]) -> anyhow::Result<Program> {
    // SAFETY: the artifact was compiled by this shim, on the host side, with the same engine
    // configuration (the allocation strategy is not part of it), and reached this process as
    // a sealed memfd nothing else can write.
    Ok(unsafe {
        match kind {
            WasmKind::Component => Program::Component(Component::deserialize(engine, bytes)?),
            WasmKind::Module => Program::Module(Module::deserialize(engine, bytes)?),
        }
    })
}

/// Reports how the run ended, writes the reason on the container's stderr, and exits.
fn finish(reporter: &Reporter, module_path: &str, end: End) -> ! {
    let code = report_end(reporter, module_path, &end);
    std::process::exit(code)
}

/// Reports how the run ended to the shim and writes the reason on the container's stderr;
/// returns the exit status.
fn report_end(reporter: &Reporter, module_path: &str, end: &End) -> i32 {
    let module_path = escape_for_terminal(module_path);
    let (ended, code, message) = match end {
        End::Refused(msg) => (
            Ended::Refused,
            exit_code::SETUP_FAILED,
            Some(format!("refused by policy (mounts): {msg}")),
        ),
        End::Ran(outcome) => {
            let ended = match outcome {
                Outcome::Exited(_) => Ended::GuestExit,
                Outcome::Trap(_) => Ended::Trap,
                Outcome::Limit(..) => Ended::Limit,
                Outcome::SetupFailed(_) => Ended::Setup,
            };
            (ended, outcome.exit_code(), outcome.message())
        }
    };
    if let End::Ran(Outcome::Limit(kind, msg)) = end {
        reporter.send(&Report::Limit {
            rule: kind.rule().to_string(),
            reason: msg.clone(),
        });
    }
    if let Some(msg) = &message {
        // Function names in a trap's backtrace come from the module: each line is escaped,
        // the lines stay lines.
        let msg = msg
            .lines()
            .map(|l| escape_for_terminal(l).into_owned())
            .collect::<Vec<_>>()
            .join("\n");
        eprintln!("warden: {module_path}: {msg}");
        reporter.log(log::Level::Error, format!("{module_path}: {msg}"));
    }
    reporter.send(&Report::Ended {
        ended,
        code,
        message,
    });
    code
}

/// Closes every descriptor of this process except stdio and `keep`.
///
/// Called before guest code runs: what youki and the zygote left open (the shim's log FIFO,
/// the zygote's socket, the artifact) must not outlive the setup. Nothing that owns one of
/// those descriptors is dropped afterwards (the process ends in `exit`), and logging is
/// switched off first so that the log crate never writes to a number that a later open
/// reuses; run-time messages go to the shim over the report pipe instead.
pub fn close_other_fds(keep: &[i32]) -> std::io::Result<()> {
    log::set_max_level(log::LevelFilter::Off);
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&fd| fd > 2)
        .map(|&fd| fd as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 3u32;
    for k in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if k > first {
            let last = if k == u32::MAX { u32::MAX } else { k - 1 };
            // SAFETY: close_range only closes descriptors; every one in the range is either
            // unused by this process from here on, or not open.
            let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        first = k.saturating_add(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn open_fds() -> Vec<i32> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    #[test]
    fn only_stdio_and_kept_descriptors_survive() {
        // In a child, so the test harness's own descriptors are not touched.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let a = std::fs::File::open("/dev/null").unwrap();
                let b = std::fs::File::open("/dev/null").unwrap();
                let c = std::fs::File::open("/dev/null").unwrap();
                let keep = b.as_raw_fd();
                close_other_fds(&[keep]).unwrap();
                // read_dir opens one descriptor of its own while listing.
                let left: Vec<i32> = open_fds()
                    .into_iter()
                    .filter(|&fd| fd > 2 && fd != keep)
                    .collect();
                std::mem::forget(a);
                std::mem::forget(c);
                let ok = left.len() <= 1;
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
