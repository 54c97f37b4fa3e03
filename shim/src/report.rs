//! The one way back from a running container to the shim: a pipe whose write end is the only
//! descriptor the runner process keeps besides stdio.
//!
//! The runner does not hold the audit log. It reports what happened at run time (a refused
//! socket use, a limit, how the guest ended, log lines) as small JSON lines on this pipe; the
//! shim, on the host side, turns them into audit records. That keeps the node-wide log out of
//! the container's reach (nothing in it can truncate or rewrite the log), lets the shim
//! throttle a container that floods refusals without ever holding the log's lock for it, and
//! tells the shim how the guest ended, so that a guest calling `exit(137)` is recorded as the
//! guest's own exit and not as a kill.
//!
//! Each message is one `write` of at most [`MAX_MESSAGE`] bytes (less than `PIPE_BUF`), so
//! messages from the runner's threads never interleave.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use warden_audit::{Admit, Record, Throttle, event};

use crate::audit;

/// Longest message written in one `write` (pipe writes up to `PIPE_BUF`, 4096, are atomic).
pub const MAX_MESSAGE: usize = 4000;
/// Longest line the shim reads; anything longer is the runner misbehaving and is cut.
const MAX_LINE: u64 = 8192;

/// How a guest's run ended, as the runner saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// The guest chose its exit code (`proc_exit`, `wasi:cli/exit`, returning from `run`).
    GuestExit,
    Trap,
    Limit,
    /// Warden could not set the runtime up (artifact, preopens, linking).
    Setup,
    /// A granted path was refused at run time (a symlink planted in a shared volume...).
    Refused,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::GuestExit => "guest_exit",
            Ended::Trap => "trap",
            Ended::Limit => "limit",
            Ended::Setup => "setup",
            Ended::Refused => "refused",
        }
    }
}

/// One message from the runner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    /// The policy refused something at run time.
    Deny { rule: String, what: String },
    /// A limit stopped the guest.
    Limit { rule: String, reason: String },
    /// How the run ended; sent once, just before the runner exits with `code`.
    Ended {
        ended: Ended,
        code: i32,
        message: Option<String>,
    },
    /// A line for the shim's log.
    Log { level: String, message: String },
}

fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

impl Report {
    /// The message as one line, its free-text fields shortened so the line fits in one
    /// atomic pipe write.
    pub fn to_line(&self) -> Vec<u8> {
        let mut r = self.clone();
        let budget = MAX_MESSAGE / 2;
        match &mut r {
            Report::Deny { rule, what } => {
                cut(rule, 64);
                cut(what, budget);
            }
            Report::Limit { rule, reason } => {
                cut(rule, 64);
                cut(reason, budget);
            }
            Report::Ended { message, .. } => {
                if let Some(m) = message {
                    cut(m, budget);
                }
            }
            Report::Log { level, message } => {
                cut(level, 16);
                cut(message, budget);
            }
        }
        let mut line = serde_json::to_vec(&r).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// The runner's end: sends reports to the shim.
pub struct Reporter(File);

impl Reporter {
    pub fn new(write_end: File) -> Self {
        Reporter(write_end)
    }

    pub fn raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }

    /// Sends one report. A failure (the shim is gone) cannot be reported anywhere else.
    pub fn send(&self, report: &Report) {
        let line = report.to_line();
        let _ = (&self.0).write_all(&line);
    }

    pub fn log(&self, level: log::Level, message: String) {
        self.send(&Report::Log {
            level: level.as_str().to_lowercase(),
            message,
        });
    }
}

/// A pipe for one container's reports: `(read end, write end)`, both close-on-exec.
pub fn pipe() -> std::io::Result<(File, File)> {
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    Ok((File::from(r), File::from(w)))
}

/// What the shim learned from a container's reports by the time the runner went away.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// How the run ended, if the runner said so.
    pub ended: Option<(Ended, i32, Option<String>)>,
    /// Records the throttle left out.
    pub suppressed: u64,
    /// An audit record could not be written: the container was stopped for it.
    pub audit_failed: bool,
}

/// Where the shim's reader puts records; the audit log, or a test's list.
pub trait Sink {
    fn append(&mut self, rec: Record) -> Result<(), warden_audit::AuditError>;
}

/// Appends to the audit log at a path (the shim's host side).
pub struct LogSink(pub std::path::PathBuf);

impl Sink for LogSink {
    fn append(&mut self, rec: Record) -> Result<(), warden_audit::AuditError> {
        audit::append(&self.0, rec)
    }
}

/// Reads reports until the runner closes its end, and audits them: every limit, the
/// run-time refusals up to the throttle's rate (with one summary record for the rest), and
/// log lines into the shim's log. `on_audit_failure` is called once if a record cannot be
/// written; the shim stops the container then, since it does not run what it cannot audit.
pub fn read_reports(
    read_end: impl Read,
    ctx: &audit::Context,
    sink: &mut dyn Sink,
    mut throttle: Throttle,
    on_audit_failure: &mut dyn FnMut(&warden_audit::AuditError),
) -> Summary {
    let mut summary = Summary::default();
    let mut reader = BufReader::new(read_end);
    let mut line = Vec::new();
    let mut write = |rec: Record, summary: &mut Summary| {
        if summary.audit_failed {
            return;
        }
        if let Err(e) = sink.append(rec) {
            summary.audit_failed = true;
            on_audit_failure(&e);
        }
    };
    loop {
        line.clear();
        match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("reading reports of {}: {e}", ctx.container_id);
                break;
            }
        }
        if line.last() != Some(&b'\n') {
            // Cut at MAX_LINE: skip the rest of it.
            let mut rest = Vec::new();
            let _ = (&mut reader).take(1 << 20).read_until(b'\n', &mut rest);
            log::warn!("{}: dropped an over-long report", ctx.container_id);
            continue;
        }
        let report: Report = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("{}: unreadable report: {e}", ctx.container_id);
                continue;
            }
        };
        match report {
            Report::Deny { rule, what } => {
                log::warn!(
                    "container {}: denied by policy ({rule}): {what}",
                    ctx.container_id
                );
                let rec = ctx.decision("deny", Some(&rule), Some(what));
                match throttle.admit(Instant::now()) {
                    Admit::Write => write(rec, &mut summary),
                    Admit::Suppress => summary.suppressed += 1,
                    Admit::WriteWithSummary { suppressed, .. } => {
                        write(suppressed_record(ctx, &throttle, suppressed), &mut summary);
                        write(rec, &mut summary);
                    }
                }
            }
            Report::Limit { rule, reason } => {
                let mut rec = ctx.record(event::LIMIT);
                rec.rule = Some(rule);
                rec.reason = Some(reason);
                write(rec, &mut summary);
            }
            Report::Ended {
                ended,
                code,
                message,
            } => summary.ended = Some((ended, code, message)),
            Report::Log { level, message } => {
                let level = level.parse().unwrap_or(log::Level::Info);
                log::log!(level, "container {}: {message}", ctx.container_id);
            }
        }
    }
    if let Some((n, _)) = throttle.take_suppressed() {
        write(suppressed_record(ctx, &throttle, n), &mut summary);
    }
    summary
}

fn suppressed_record(ctx: &audit::Context, throttle: &Throttle, n: u64) -> Record {
    let mut rec = ctx.record(event::SUPPRESSED);
    rec.rule = Some("audit.throttle".into());
    rec.reason = Some(throttle.summary_reason(n));
    rec
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Default)]
    struct Vec_(Vec<Record>, bool);

    impl Sink for Vec_ {
        fn append(&mut self, rec: Record) -> Result<(), warden_audit::AuditError> {
            if self.1 {
                return Err(warden_audit::AuditError::Full {
                    target: "test".into(),
                    op: "append",
                });
            }
            self.0.push(rec);
            Ok(())
        }
    }

    fn ctx() -> audit::Context {
        audit::Context {
            container_id: "c1".into(),
            ..Default::default()
        }
    }

    fn lines(reports: &[Report]) -> Vec<u8> {
        reports.iter().flat_map(|r| r.to_line()).collect()
    }

    #[test]
    fn a_flood_of_refusals_is_throttled_with_a_summary() {
        let deny = Report::Deny {
            rule: "network.connect".into(),
            what: "tcp connect 10.0.0.1:80".into(),
        };
        let mut input = lines(&vec![deny; 5000]);
        input.extend(lines(&[Report::Ended {
            ended: Ended::GuestExit,
            code: 3,
            message: None,
        }]));
        let mut sink = Vec_::default();
        let s = read_reports(
            &input[..],
            &ctx(),
            &mut sink,
            Throttle::new(20, Duration::from_secs(10)),
            &mut |_| panic!("no failure"),
        );
        let denies = sink.0.iter().filter(|r| r.event == event::DENY).count();
        let summaries: Vec<&Record> = sink
            .0
            .iter()
            .filter(|r| r.event == event::SUPPRESSED)
            .collect();
        assert_eq!(denies, 20);
        assert_eq!(summaries.len(), 1);
        assert!(
            summaries[0]
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("4980 records suppressed")),
            "{summaries:?}"
        );
        assert_eq!(s.ended, Some((Ended::GuestExit, 3, None)));
    }

    #[test]
    fn limits_are_always_written_and_an_audit_failure_is_reported_once() {
        let input = lines(&[
            Report::Limit {
                rule: "limits.memory".into(),
                reason: "grow refused".into(),
            },
            Report::Limit {
                rule: "limits.memory".into(),
                reason: "again".into(),
            },
        ]);
        let mut sink = Vec_(Vec::new(), true);
        let mut failures = 0;
        let s = read_reports(
            &input[..],
            &ctx(),
            &mut sink,
            Throttle::new(20, Duration::from_secs(10)),
            &mut |_| failures += 1,
        );
        assert!(s.audit_failed);
        assert_eq!(failures, 1);
    }

    #[test]
    fn long_and_broken_lines_do_not_stop_the_reader() {
        let mut input = b"{not json}\n".to_vec();
        input.extend(vec![b'x'; 20_000]);
        input.push(b'\n');
        let huge = Report::Deny {
            rule: "network.connect".into(),
            what: "y".repeat(100_000),
        };
        let line = huge.to_line();
        assert!(line.len() <= MAX_MESSAGE + 200, "{}", line.len());
        input.extend(line);
        let mut sink = Vec_::default();
        read_reports(
            &input[..],
            &ctx(),
            &mut sink,
            Throttle::new(20, Duration::from_secs(10)),
            &mut |_| {},
        );
        assert_eq!(sink.0.len(), 1);
    }
}
