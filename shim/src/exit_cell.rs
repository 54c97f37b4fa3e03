//! The container's exit status, handed to the shim's waiters so that `ctr run --rm` never
//! sees a finished task as still running.
//!
//! Why this is more than a `WaitableCell`: `containerd-shimkit` 0.1.2 answers every `Wait`
//! (and sends the `TaskExit` event) by awaiting `Instance::wait` and then taking a tokio
//! `RwLock` on the task state. Its `State` handler polls the same path once
//! (`now_or_never`). When several waiters wake at the same moment, the second is queued on
//! that lock; once the first releases it, the lock belongs to the second until a worker
//! thread polls it. A client that got its `Wait` answer from the first and asks for the
//! state inside that window is told `RUNNING`, and `ctr`'s delete then fails with "task must
//! be stopped before deletion: running". On a loaded node this happened in CI.
//!
//! So the waiters that were already waiting when the container exited are let through one
//! at a time, at least [`STAGGER`] / 2 apart: each takes the state lock uncontended and
//! releases it within the same poll. A caller that arrives after the exit (the `State`
//! handler, a late `Wait`) gets the status at once. The upstream fix belongs in shimkit
//! (`State` should not depend on the lock); this keeps warden correct until then.
//!
//! Which waiter goes first matters: a client's `Wait` request is on its critical path
//! (`ctr run` deletes the task when it is answered), the `TaskExit` event's publisher is not.
//! shimkit answers a request inside `block_on`, outside any tokio task, and publishes the
//! event from a task it spawned; so the waiters outside a task (`tokio::task::try_id` is
//! `None`) go first, at [`STAGGER`] intervals from the exit, and the waiters inside tasks
//! follow half a [`STAGGER`] after each of theirs. Measured, with the order left to the
//! scheduler: a warm `ctr run --rm` had its `Wait` answered 10 ms late whenever the event's
//! publisher happened to be polled first.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use containerd_shimkit::sandbox::sync::WaitableCell;

/// How far apart the waiters that were already waiting are let through. Only the first
/// `Wait` answer is on a client's critical path (`ctr run`, CRI's exit monitor); the others
/// (the `TaskExit` event, a second `Wait`) come this much later.
pub const STAGGER: Duration = Duration::from_millis(10);

pub type Status = (u32, DateTime<Utc>);

/// Who is waiting: a request answered outside any tokio task (a `Wait` or `State`), or a
/// task (the `TaskExit` event's publisher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiter {
    Request,
    Task,
}

#[derive(Clone, Default)]
pub struct ExitCell {
    status: WaitableCell<Status>,
    shared: std::sync::Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// When the status was set by [`ExitCell::set`]; unset if a fallback guard set it.
    set_at: OnceLock<Instant>,
    /// How many waiters outside a task (requests) that were waiting at the exit have been
    /// let through.
    requests: AtomicU32,
    /// How many waiters inside tasks (the event's publisher) that were waiting at the exit
    /// have been let through.
    tasks: AtomicU32,
}

impl ExitCell {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the exit status; later calls have no effect.
    pub fn set(&self, status: Status) {
        let _ = self.shared.set_at.set(Instant::now());
        let _ = self.status.set(status);
    }

    /// Sets `f()` when the guard drops without a status having been set: a waiter always gets
    /// an answer, even if the task that watches the process dies.
    pub fn set_guard_with<F: FnOnce() -> Status>(&self, f: F) -> impl Drop + use<F> {
        self.status.set_guard_with(f)
    }

    /// The exit status, once there is one.
    pub async fn wait(&self) -> Status {
        let arrived = Instant::now();
        let waiter = if tokio::task::try_id().is_none() {
            Waiter::Request
        } else {
            Waiter::Task
        };
        let status = *self.status.wait().await;
        if let Some(delay) = self.delay(arrived, waiter) {
            tokio::time::sleep(delay).await;
        }
        status
    }

    /// `None` for a caller that may have the status at once; otherwise how long it waits
    /// for its turn among the callers that were already waiting when the status was set:
    /// requests at 0, 1, 2, ... [`STAGGER`]s, tasks at half a [`STAGGER`] past each.
    fn delay(&self, arrived: Instant, waiter: Waiter) -> Option<Duration> {
        let set_at = self.shared.set_at.get()?;
        if arrived >= *set_at {
            return None;
        }
        match waiter {
            Waiter::Request => match self.shared.requests.fetch_add(1, Ordering::AcqRel) {
                0 => None,
                n => Some(STAGGER * n),
            },
            Waiter::Task => {
                let n = self.shared.tasks.fetch_add(1, Ordering::AcqRel);
                Some(STAGGER * n + STAGGER / 2)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u32) -> Status {
        (code, Utc::now())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_at_the_exit_are_let_through_one_at_a_time() {
        let cell = ExitCell::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let cell = cell.clone();
                tokio::spawn(async move {
                    let s = cell.wait().await;
                    (s.0, Instant::now())
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t0 = Instant::now();
        cell.set(status(7));
        let mut at = Vec::new();
        for w in waiters {
            let (code, when) = w.await.expect("waiter");
            assert_eq!(code, 7);
            at.push(when.duration_since(t0));
        }
        // Lower bounds only: how soon each runs is up to the scheduler. All three are
        // tasks: half a stagger, then a stagger apart.
        at.sort();
        assert!(at[0] >= STAGGER / 2, "{at:?}");
        assert!(at[1] >= STAGGER + STAGGER / 2, "{at:?}");
        assert!(at[2] >= STAGGER * 2 + STAGGER / 2, "{at:?}");
    }

    #[test]
    fn a_request_waiting_at_the_exit_goes_before_the_event_publishers_task() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let cell = ExitCell::new();
        // The event's publisher: a spawned task, waiting first.
        let publisher = {
            let cell = cell.clone();
            runtime.spawn(async move {
                cell.wait().await;
                Instant::now()
            })
        };
        // A client's `Wait`: answered in `block_on` on another thread, as shimkit does.
        let request = {
            let cell = cell.clone();
            let handle = runtime.handle().clone();
            std::thread::spawn(move || {
                handle.block_on(async move {
                    cell.wait().await;
                    Instant::now()
                })
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        cell.set(status(0));
        let answered = request.join().expect("request thread");
        let published = runtime.block_on(publisher).expect("publisher");
        assert!(
            answered.duration_since(t0) < STAGGER / 2,
            "the request waited {:?}",
            answered.duration_since(t0)
        );
        assert!(published.duration_since(t0) >= STAGGER / 2);
        assert!(published > answered);
    }

    #[test]
    fn turns_go_to_earlier_waiters_only_requests_first() {
        let cell = ExitCell::new();
        let before = Instant::now();
        assert_eq!(
            cell.delay(before, Waiter::Request),
            None,
            "no status yet: nobody waits for a turn"
        );
        cell.set(status(0));
        assert_eq!(cell.delay(before, Waiter::Task), Some(STAGGER / 2));
        assert_eq!(cell.delay(before, Waiter::Request), None);
        assert_eq!(cell.delay(before, Waiter::Request), Some(STAGGER));
        assert_eq!(
            cell.delay(before, Waiter::Task),
            Some(STAGGER + STAGGER / 2)
        );
        assert_eq!(
            cell.delay(Instant::now(), Waiter::Task),
            None,
            "a caller after the exit"
        );
    }

    #[tokio::test]
    async fn a_caller_after_the_exit_gets_the_status_at_once() {
        let cell = ExitCell::new();
        let early = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.wait().await })
        };
        let early2 = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.wait().await })
        };
        tokio::task::yield_now().await;
        cell.set(status(3));
        // The state handler polls exactly once; it must see the status even while the
        // earlier waiters are still being let through.
        let mut late = std::pin::pin!(cell.wait());
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(late.as_mut().poll(cx))).await;
        assert!(matches!(polled, std::task::Poll::Ready((3, _))));
        assert_eq!(early.await.expect("early").0, 3);
        assert_eq!(early2.await.expect("early2").0, 3);
    }

    #[tokio::test]
    async fn the_fallback_guard_answers_every_waiter_at_once() {
        let cell = ExitCell::new();
        let waiter = {
            let cell = cell.clone();
            tokio::spawn(async move { cell.wait().await })
        };
        tokio::task::yield_now().await;
        drop(cell.set_guard_with(|| status(137)));
        assert_eq!(waiter.await.expect("waiter").0, 137);
        let second = std::pin::pin!(cell.wait());
        assert_eq!(second.await.0, 137);
    }
}
