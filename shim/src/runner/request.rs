//! One request of an HTTP service: its store's limits, how it ended, and how limits that
//! stopped requests are audited.
//!
//! Each request runs in a fresh store from the pre-instantiated guest, so `limits.memory`
//! and `limits.fuel` apply per request; `limits.request_deadline` (default
//! [`DEFAULT_REQUEST_DEADLINE`]) bounds each request's wall-clock time. A request a limit
//! stopped gets an error response and the service goes on. Whole-process bounds
//! (`limits.deadline`, `limits.cpu_time`) stay the watchdog's, as for commands: they stop
//! the service.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use warden_policy::Limits;
use wasmtime::{Store, UpdateDeadline};

use super::LimitHook;
use crate::run::{LimitHit, LimitKind};

/// A request's wall-clock bound when the profile sets no `limits.request_deadline`.
pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// How often a limit of one kind that stops requests is written to the audit log.
pub const LIMIT_RECORD_INTERVAL: Duration = Duration::from_secs(60);

/// The request deadline in force.
pub fn request_deadline(limits: &Limits) -> Duration {
    limits.request_deadline.unwrap_or(DEFAULT_REQUEST_DEADLINE)
}

/// Arms a request's store: fuel, and an epoch hook that stops the guest once the request is
/// older than its deadline and otherwise yields, so that a guest computing for long does
/// not hold its worker thread from other requests. The epoch is advanced by the service's
/// ticker ([`crate::engine::EPOCH_TICK`]).
pub fn arm<T: 'static>(store: &mut Store<T>, limits: &Limits, hit: &LimitHit, started: Instant) {
    if let Some(fuel) = limits.fuel
        && let Err(e) = store.set_fuel(fuel)
    {
        log::error!("cannot set fuel: {e}");
    }
    let deadline = request_deadline(limits);
    let hit = hit.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if started.elapsed() > deadline {
            let msg = format!(
                "the request ran past its deadline of {}ms",
                deadline.as_millis()
            );
            hit.set(LimitKind::RequestDeadline, msg.clone());
            wasmtime::bail!("{msg}");
        }
        Ok(UpdateDeadline::Yield(1))
    });
}

/// How one request's guest ended when it did not answer normally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A limit stopped it.
    Limit(LimitKind, String),
    /// It trapped, or failed in a host call.
    Trap(String),
    /// It returned without setting a response.
    NoResponse,
}

impl Failure {
    /// The response status the client gets.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Failure::Limit(LimitKind::RequestDeadline | LimitKind::Deadline, _) => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            Failure::Limit(..) => http::StatusCode::SERVICE_UNAVAILABLE,
            Failure::Trap(_) | Failure::NoResponse => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What went wrong, for the container's stderr.
    pub fn describe(&self) -> String {
        match self {
            Failure::Limit(kind, msg) => format!("stopped by {}: {msg}", kind.rule()),
            Failure::Trap(msg) => format!("wasm trap: {msg}"),
            Failure::NoResponse => "the handler returned without setting a response".into(),
        }
    }

    /// Classifies a guest error: a limit recorded in `hit`, out of fuel, or a trap.
    pub fn of(err: &wasmtime::Error, hit: &LimitHit) -> Self {
        if let Some((kind, msg)) = hit.get() {
            return Failure::Limit(kind, msg);
        }
        if matches!(
            err.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::OutOfFuel)
        ) {
            return Failure::Limit(LimitKind::Fuel, "ran out of fuel".into());
        }
        Failure::Trap(format!("{err:#}"))
    }
}

/// Writes a limit that stopped requests at most once per kind per
/// [`LIMIT_RECORD_INTERVAL`], with the count of the others in between: a client can make a
/// service hit a limit on every request, and each would otherwise be an audit record.
pub struct LimitRecords {
    report: LimitHook,
    state: Mutex<HashMap<LimitKind, Window>>,
}

struct Window {
    last: Instant,
    unrecorded: u64,
}

impl LimitRecords {
    pub fn new(report: LimitHook) -> Self {
        LimitRecords {
            report,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Records (or counts) one request stopped by `kind`.
    pub fn hit(&self, kind: LimitKind, msg: &str) {
        self.hit_at(kind, msg, Instant::now());
    }

    fn hit_at(&self, kind: LimitKind, msg: &str, now: Instant) {
        let record = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            match state.get_mut(&kind) {
                Some(w) if now.duration_since(w.last) < LIMIT_RECORD_INTERVAL => {
                    w.unrecorded += 1;
                    None
                }
                Some(w) => {
                    let earlier = std::mem::take(&mut w.unrecorded);
                    w.last = now;
                    Some(earlier)
                }
                None => {
                    state.insert(
                        kind,
                        Window {
                            last: now,
                            unrecorded: 0,
                        },
                    );
                    Some(0)
                }
            }
        };
        if let Some(earlier) = record {
            let msg = if earlier > 0 {
                format!(
                    "a request {msg} ({earlier} more requests were stopped by this limit in \
                     the previous interval)"
                )
            } else {
                format!("a request {msg}")
            };
            (self.report)(kind, msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn failures_map_to_statuses() {
        use http::StatusCode as S;
        let cases = [
            (
                Failure::Limit(LimitKind::RequestDeadline, String::new()),
                S::GATEWAY_TIMEOUT,
            ),
            (
                Failure::Limit(LimitKind::Memory, String::new()),
                S::SERVICE_UNAVAILABLE,
            ),
            (
                Failure::Limit(LimitKind::Fuel, String::new()),
                S::SERVICE_UNAVAILABLE,
            ),
            (Failure::Trap("x".into()), S::INTERNAL_SERVER_ERROR),
            (Failure::NoResponse, S::INTERNAL_SERVER_ERROR),
        ];
        for (f, want) in cases {
            assert_eq!(f.status(), want, "{f:?}");
        }
    }

    #[test]
    fn a_limit_is_recorded_once_per_kind_per_interval_with_a_count() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let records = LimitRecords::new(Arc::new(move |kind, msg| {
            sink.lock().unwrap().push((kind, msg));
        }));
        let t0 = Instant::now();
        records.hit_at(LimitKind::Memory, "hit memory", t0);
        for i in 1..=5 {
            records.hit_at(LimitKind::Memory, "hit memory", t0 + Duration::from_secs(i));
        }
        records.hit_at(
            LimitKind::RequestDeadline,
            "ran long",
            t0 + Duration::from_secs(2),
        );
        records.hit_at(
            LimitKind::Memory,
            "hit memory",
            t0 + LIMIT_RECORD_INTERVAL + Duration::from_secs(1),
        );
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], (LimitKind::Memory, "a request hit memory".into()));
        assert_eq!(got[1].0, LimitKind::RequestDeadline);
        assert_eq!(got[2].0, LimitKind::Memory);
        assert!(got[2].1.contains("5 more requests"), "{}", got[2].1);
    }
}
