//! The thread that drives time limits for one guest run.
//!
//! Every [`EPOCH_TICK`] it advances the engine's epoch, so that guest code running in Wasm
//! reaches the epoch hook in `run.rs`, which checks the deadline and CPU time and stops the
//! guest with a trap (the normal path: the run returns `Outcome::Limit`).
//!
//! The epoch hook only runs while Wasm code runs. A guest blocked in a host call (`sleep`,
//! `poll_oneoff`, a blocking socket receive) never reaches it, and CPU burnt inside a host
//! call is never checked by it. So when the run was given a [`ForcedStop`] (the container's
//! runner process, where the guest is the only thing in the process), the watchdog also
//! checks the limits itself: once a limit has been over for [`GRACE`] and the run has not
//! finished, it takes over — it runs the caller's report callback and ends the whole process
//! with `_exit` and the limit's exit status.
//!
//! Who reports is decided by one atomic state, so an outcome is reported exactly once:
//! the run calls [`Watch::finish`] when it has an outcome (`Running -> Finished`), the
//! watchdog moves `Running -> Forced` before it reports. Whoever loses does nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wasmtime::Engine;

use crate::engine::EPOCH_TICK;
use crate::run::{LimitKind, Outcome};

/// How long a limit must have been over, as seen by the watchdog, before it stops the process
/// itself: two ticks, in which a guest running Wasm code has reached the epoch hook and is
/// unwinding. Only a guest blocked (or busy) in a host call is still running after that.
pub const GRACE: Duration = Duration::from_millis(2 * EPOCH_TICK.as_millis() as u64);

/// How long the watchdog gives a guest that the epoch hook has already stopped (it is
/// unwinding, and the run is about to report the limit itself) before taking over anyway.
/// Only a badly starved machine needs more than [`GRACE`] there; this keeps the normal path
/// (and its message) on such a machine too.
pub const UNWIND_GRACE: Duration = Duration::from_secs(1);

/// A limit the watchdog found over.
pub struct Over {
    pub kind: LimitKind,
    pub msg: String,
    /// The epoch hook has already stopped the guest for a limit: it is unwinding, not blocked.
    pub stopping: bool,
}

/// How long the watchdog waits for the report callback before ending the process anyway (the
/// callback writes to stderr and the audit log; neither may hold the process up for ever, e.g.
/// if the guest's own thread is blocked holding the stderr lock on a full pipe).
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Called at most once, on a thread the watchdog starts (given [`REPORT_TIMEOUT`] to finish),
/// with the limit outcome, just before the process is
/// ended: the executor writes the `limit` audit record and the stderr message here.
pub type OnForcedStop = Box<dyn Fn(&Outcome) + Send + Sync>;

/// What the watchdog does when a limit is over and the guest did not stop: report, then end
/// the process. `terminate` is `libc::_exit` in production; unit tests substitute a recorder.
pub struct ForcedStop {
    pub report: Arc<dyn Fn(&Outcome) + Send + Sync>,
    pub terminate: Box<dyn Fn(i32) + Send>,
}

impl ForcedStop {
    /// Report with `report`, then `_exit` the process with the outcome's exit status.
    pub fn exit_process(report: OnForcedStop) -> Self {
        ForcedStop {
            report: Arc::from(report),
            terminate: Box::new(|code| {
                // SAFETY: `_exit` ends the process without running destructors or atexit
                // handlers, which is what we want while another thread is inside wasmtime.
                unsafe { libc::_exit(code) }
            }),
        }
    }
}

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const FORCED: u8 = 2;

/// A running watchdog; [`Watch::finish`] claims the outcome for the run and stops the thread.
pub struct Watch {
    state: Arc<AtomicU8>,
}

impl Watch {
    /// Starts the thread. `check` says whether a limit is over (the same check as the epoch
    /// hook's, so both name the same limit); it is only consulted when `forced` is given.
    pub fn start(
        engine: &Engine,
        check: impl Fn() -> Option<Over> + Send + 'static,
        forced: Option<ForcedStop>,
    ) -> Watch {
        let state = Arc::new(AtomicU8::new(RUNNING));
        let engine = engine.clone();
        let thread_state = state.clone();
        let spawned = std::thread::Builder::new()
            .name("warden-watchdog".into())
            .spawn(move || watch(&engine, &thread_state, check, forced));
        if let Err(e) = spawned {
            // Without the thread neither epochs nor the watchdog run; the guest then runs
            // unbounded in time, so say so loudly. (Spawning fails only when out of threads.)
            log::error!("cannot start the limits watchdog thread: {e}");
        }
        Watch { state }
    }

    /// The run has its outcome. Returns `true` if the run reports it, `false` if the watchdog
    /// has already taken over (it reports and ends the process; the caller must not report).
    pub fn finish(&self) -> bool {
        self.state
            .compare_exchange(RUNNING, FINISHED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // A run that ends without calling `finish` (a panic) still stops the thread.
        let _ = self
            .state
            .compare_exchange(RUNNING, FINISHED, Ordering::AcqRel, Ordering::Acquire);
    }
}

fn watch(
    engine: &Engine,
    state: &AtomicU8,
    check: impl Fn() -> Option<Over>,
    forced: Option<ForcedStop>,
) {
    let mut over_since: Option<Instant> = None;
    loop {
        std::thread::sleep(EPOCH_TICK);
        if state.load(Ordering::Acquire) != RUNNING {
            return;
        }
        engine.increment_epoch();
        let Some(forced) = &forced else { continue };
        let Some(Over {
            kind,
            msg,
            stopping,
        }) = check()
        else {
            over_since = None;
            continue;
        };
        let since = *over_since.get_or_insert_with(Instant::now);
        if since.elapsed() < if stopping { UNWIND_GRACE } else { GRACE } {
            continue;
        }
        if state
            .compare_exchange(RUNNING, FORCED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // the run finished meanwhile and reports itself
        }
        let outcome = Outcome::Limit(
            kind,
            format!("{msg} (the guest was in a host call and did not stop; process ended)"),
        );
        report_bounded(&forced.report, &outcome);
        (forced.terminate)(outcome.exit_code());
        return;
    }
}

/// Runs the report callback on its own thread and waits at most [`REPORT_TIMEOUT`] for it; a
/// callback still hanging then is ended with the process by the caller's `terminate`.
fn report_bounded(report: &Arc<dyn Fn(&Outcome) + Send + Sync>, outcome: &Outcome) {
    let (tx, rx) = mpsc::channel::<()>();
    let (report, for_report) = (report.clone(), outcome.clone());
    let spawned = std::thread::Builder::new()
        .name("warden-report".into())
        .spawn(move || {
            report(&for_report);
            let _ = tx.send(());
        });
    match spawned {
        Ok(_) => {
            if rx.recv_timeout(REPORT_TIMEOUT).is_err() {
                log::error!("the forced-stop report did not finish in time");
            }
        }
        Err(e) => log::error!("cannot start the forced-stop report thread: {e}"),
    }
}

/// Installs the kernel's CPU-time backstop for the runner process: `RLIMIT_CPU` a little past
/// `cpu` (rounded up to a whole second, plus one, so the watchdog always acts first), and a
/// `SIGXCPU` handler that ends the process with status 152. If even the watchdog thread cannot
/// run, the kernel still ends a guest that burns CPU; the hard limit one second later
/// `SIGKILL`s it should the handler not run. No audit record is written on this path (the
/// shim's exit status description still names the CPU limit).
///
/// Only for the container's runner process: it changes process-wide state.
pub fn install_cpu_rlimit(cpu: Duration) {
    let soft = cpu.as_secs() + u64::from(cpu.subsec_nanos() > 0) + 1;
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit to a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_CPU, &mut old) } != 0 {
        log::warn!("getrlimit(RLIMIT_CPU): {}", std::io::Error::last_os_error());
        return;
    }
    let new = libc::rlimit {
        rlim_cur: soft.min(old.rlim_max),
        rlim_max: soft.saturating_add(1).min(old.rlim_max),
    };
    // SAFETY: a zeroed sigaction with a plain handler is valid; the handler only calls
    // async-signal-safe functions (write, _exit).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigxcpu as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGXCPU, &sa, std::ptr::null_mut()) != 0 {
            log::warn!("sigaction(SIGXCPU): {}", std::io::Error::last_os_error());
        }
    }
    // SAFETY: setrlimit reads one rlimit from a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_CPU, &new) } != 0 {
        log::warn!("setrlimit(RLIMIT_CPU): {}", std::io::Error::last_os_error());
    }
}

extern "C" fn on_sigxcpu(_: libc::c_int) {
    const MSG: &[u8] = b"warden: stopped by limits.cpu_time: the kernel's RLIMIT_CPU backstop\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        libc::write(2, MSG.as_ptr().cast(), MSG.len());
        libc::_exit(crate::exit_code::CPU_TIME);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Log = Arc<Mutex<Vec<String>>>;

    fn recording(log: &Log) -> ForcedStop {
        let (a, b) = (log.clone(), log.clone());
        ForcedStop {
            report: Arc::new(move |o| a.lock().unwrap().push(format!("report {o:?}"))),
            terminate: Box::new(move |c| b.lock().unwrap().push(format!("exit {c}"))),
        }
    }

    fn over(kind: LimitKind, msg: &str, stopping: bool) -> Option<Over> {
        Some(Over {
            kind,
            msg: msg.into(),
            stopping,
        })
    }

    #[test]
    fn a_guest_already_unwinding_gets_longer() {
        let log = Log::default();
        let w = Watch::start(
            &engine(),
            || over(LimitKind::Deadline, "late", true),
            Some(recording(&log)),
        );
        std::thread::sleep(GRACE + 10 * EPOCH_TICK);
        assert!(w.finish(), "forced while the guest was unwinding");
        assert!(log.lock().unwrap().is_empty());
    }

    fn engine() -> Engine {
        crate::engine::new_engine().unwrap()
    }

    #[test]
    fn a_limit_that_stays_over_is_reported_once_then_the_process_ends() {
        let log = Log::default();
        let w = Watch::start(
            &engine(),
            || over(LimitKind::Deadline, "late", false),
            Some(recording(&log)),
        );
        std::thread::sleep(GRACE + 20 * EPOCH_TICK);
        assert!(
            !w.finish(),
            "the watchdog took over, so the run must not report"
        );
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(
            log[0].starts_with("report Limit(Deadline, \"late"),
            "{log:?}"
        );
        assert_eq!(log[1], format!("exit {}", crate::exit_code::DEADLINE));
    }

    #[test]
    fn a_finished_run_is_never_forced() {
        let log = Log::default();
        let w = Watch::start(
            &engine(),
            || over(LimitKind::CpuTime, "spent", false),
            Some(recording(&log)),
        );
        assert!(w.finish());
        std::thread::sleep(GRACE + 5 * EPOCH_TICK);
        assert!(log.lock().unwrap().is_empty());
    }

    #[test]
    fn without_a_forced_stop_the_watchdog_only_ticks() {
        let e = engine();
        let w = Watch::start(&e, || over(LimitKind::Deadline, "x", false), None);
        std::thread::sleep(GRACE + 5 * EPOCH_TICK);
        assert!(w.finish());
    }

    #[test]
    fn a_limit_not_over_is_not_forced() {
        let log = Log::default();
        let w = Watch::start(&engine(), || None, Some(recording(&log)));
        std::thread::sleep(GRACE + 5 * EPOCH_TICK);
        assert!(w.finish());
        assert!(log.lock().unwrap().is_empty());
    }
}
