//! Keeping a flood of records from one source (a guest that retries a refused socket a
//! million times) from filling the disk, while still saying that it happened.
//!
//! [`Throttle`] admits at most `max_per_window` records per fixed window. Records past that
//! are suppressed and counted; the first record admitted in a later window comes with
//! [`Admit::WriteWithSummary`], and the caller then writes one [`event::SUPPRESSED`]
//! record saying how many were suppressed and since when, before the record itself. When
//! the source ends (the container exits), [`Throttle::take_suppressed`] returns what is
//! still counted, so that the last suppressions are recorded too.
//!
//! Pure: it reads no clock, the caller passes `now`. So at most `max_per_window + 1`
//! records a window are written (the summary, then the admitted ones).
//!
//! [`event::SUPPRESSED`]: crate::event::SUPPRESSED

use std::time::{Duration, Instant};

/// Records admitted per window by [`Throttle::default`].
pub const DEFAULT_MAX_PER_WINDOW: u32 = 20;
/// The window of [`Throttle::default`].
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// What to do with one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Write the record.
    Write,
    /// Do not write it; it is counted.
    Suppress,
    /// Write a summary record first (`suppressed` records were left out, the first of them
    /// at `since`), then the record.
    WriteWithSummary { suppressed: u64, since: Instant },
}

/// A fixed-window rate limiter for audit records. See the module documentation.
#[derive(Clone, Debug)]
pub struct Throttle {
    max_per_window: u32,
    window: Duration,
    /// Start of the current window; `None` before the first record.
    window_start: Option<Instant>,
    /// Records admitted in the current window.
    admitted: u32,
    /// Records suppressed and not yet summarized.
    suppressed: u64,
    /// When the first of them came.
    first_suppressed: Option<Instant>,
}

impl Default for Throttle {
    /// [`DEFAULT_MAX_PER_WINDOW`] records per [`DEFAULT_WINDOW`].
    fn default() -> Self {
        Throttle::new(DEFAULT_MAX_PER_WINDOW, DEFAULT_WINDOW)
    }
}

impl Throttle {
    /// At most `max_per_window` records per `window`. A `max_per_window` of 0 suppresses
    /// everything (and only [`take_suppressed`](Self::take_suppressed) reports it); a zero
    /// `window` never suppresses.
    pub fn new(max_per_window: u32, window: Duration) -> Self {
        Throttle {
            max_per_window,
            window,
            window_start: None,
            admitted: 0,
            suppressed: 0,
            first_suppressed: None,
        }
    }

    pub fn max_per_window(&self) -> u32 {
        self.max_per_window
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Decides about one record arriving at `now`. Times earlier than the current window's
    /// start (a caller mixing clocks) count as inside it.
    pub fn admit(&mut self, now: Instant) -> Admit {
        let new_window = match self.window_start {
            None => true,
            Some(start) => now.saturating_duration_since(start) >= self.window,
        };
        let mut summary = None;
        if new_window {
            self.window_start = Some(now);
            self.admitted = 0;
            summary = self.take_suppressed();
        }
        if self.admitted < self.max_per_window {
            self.admitted += 1;
            match summary {
                Some((suppressed, since)) => Admit::WriteWithSummary { suppressed, since },
                None => Admit::Write,
            }
        } else {
            // Only reached with max_per_window == 0 right after a new window opened: keep
            // counting rather than lose what `take_suppressed` just returned.
            if let Some((n, since)) = summary {
                self.suppressed = n;
                self.first_suppressed = Some(since);
            }
            self.suppressed += 1;
            self.first_suppressed.get_or_insert(now);
            Admit::Suppress
        }
    }

    /// Records suppressed and not yet summarized, and when the first of them came; resets
    /// the count. For the end of a source: call it once more and write the summary if any.
    pub fn take_suppressed(&mut self) -> Option<(u64, Instant)> {
        let since = self.first_suppressed.take()?;
        let n = std::mem::take(&mut self.suppressed);
        Some((n, since))
    }

    /// The `reason` of a summary record: `1234 records suppressed (more than 20 in 10s)`.
    pub fn summary_reason(&self, suppressed: u64) -> String {
        format!(
            "{suppressed} record{} suppressed (more than {} in {:?})",
            if suppressed == 1 { "" } else { "s" },
            self.max_per_window,
            self.window
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn admits_up_to_the_limit_then_suppresses() {
        let t0 = Instant::now();
        let mut t = Throttle::new(3, secs(10.0));
        let got: Vec<Admit> = (0..6).map(|i| t.admit(t0 + secs(i as f64))).collect();
        assert_eq!(
            got,
            [
                Admit::Write,
                Admit::Write,
                Admit::Write,
                Admit::Suppress,
                Admit::Suppress,
                Admit::Suppress
            ]
        );
        // A new window: the first record brings the summary, with the first suppressed time.
        assert_eq!(
            t.admit(t0 + secs(10.0)),
            Admit::WriteWithSummary {
                suppressed: 3,
                since: t0 + secs(3.0)
            }
        );
        assert_eq!(t.admit(t0 + secs(11.0)), Admit::Write);
        assert_eq!(t.admit(t0 + secs(12.0)), Admit::Write);
        assert_eq!(t.admit(t0 + secs(13.0)), Admit::Suppress);
        assert_eq!(t.take_suppressed(), Some((1, t0 + secs(13.0))));
        assert_eq!(t.take_suppressed(), None);
    }

    #[test]
    fn a_quiet_window_brings_no_summary() {
        let t0 = Instant::now();
        let mut t = Throttle::new(2, secs(1.0));
        for k in 0..5 {
            let base = t0 + secs(k as f64 * 1.5);
            assert_eq!(t.admit(base), Admit::Write);
            assert_eq!(t.admit(base + secs(0.1)), Admit::Write);
        }
        assert_eq!(t.take_suppressed(), None);
    }

    #[test]
    fn the_window_starts_at_the_first_record_after_it() {
        let t0 = Instant::now();
        let mut t = Throttle::new(1, secs(10.0));
        assert_eq!(t.admit(t0), Admit::Write);
        assert_eq!(t.admit(t0 + secs(9.999)), Admit::Suppress);
        // Long after: a new window from here, not from t0 + 10s, 20s, ...
        assert_eq!(
            t.admit(t0 + secs(35.0)),
            Admit::WriteWithSummary {
                suppressed: 1,
                since: t0 + secs(9.999)
            }
        );
        assert_eq!(t.admit(t0 + secs(44.0)), Admit::Suppress);
        assert!(matches!(
            t.admit(t0 + secs(45.0)),
            Admit::WriteWithSummary { suppressed: 1, .. }
        ));
        // An earlier instant counts as inside the current window.
        assert_eq!(t.admit(t0), Admit::Suppress);
    }

    #[test]
    fn a_flood_writes_a_bounded_number_of_records() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        let (mut written, mut suppressed) = (0u64, 0u64);
        // 100 records a second for a minute.
        for i in 0..6000u64 {
            match t.admit(t0 + Duration::from_millis(i * 10)) {
                Admit::Write => written += 1,
                Admit::Suppress => {}
                Admit::WriteWithSummary { suppressed: n, .. } => {
                    written += 2;
                    suppressed += n;
                }
            }
        }
        suppressed += t.take_suppressed().map_or(0, |(n, _)| n);
        // 6 windows: 20 records each, and a summary in the 5 after the first.
        assert_eq!(written, 6 * 20 + 5);
        assert_eq!(
            suppressed + 6 * 20,
            6000,
            "every record is written or counted"
        );
    }

    #[test]
    fn edge_settings() {
        let t0 = Instant::now();
        let mut never = Throttle::new(5, Duration::ZERO);
        assert!((0..100).all(|_| never.admit(t0) == Admit::Write));
        let mut all = Throttle::new(0, secs(1.0));
        for i in 0..10 {
            assert_eq!(all.admit(t0 + secs(i as f64 * 0.5)), Admit::Suppress);
        }
        assert_eq!(all.take_suppressed(), Some((10, t0)));
        assert_eq!(
            Throttle::default().summary_reason(1234),
            "1234 records suppressed (more than 20 in 10s)"
        );
        assert_eq!(
            Throttle::default().summary_reason(1),
            "1 record suppressed (more than 20 in 10s)"
        );
    }
}
