//! `WARDEN_BENCH_LOG=1`: where one start spends its time. containerd runs at log level debug
//! (so it starts its shims with `-debug` too), and after the latency section one more warm
//! `ctr run --rm` of each runtime is printed as the log lines it caused, each with its time
//! since `ctr run` was started. Debug logging itself costs time: read the gaps, not the total.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use warden_test::containerd::RunOpts;

use crate::Bench;

/// Whether `WARDEN_BENCH_LOG` asks for the shim's timings.
pub fn wanted() -> bool {
    std::env::var_os("WARDEN_BENCH_LOG").is_some()
}

/// Runs `image` once and prints the containerd and shim log lines of that run.
pub fn print(b: &Bench, name: &str, image: &str, opts: RunOpts) -> Result<()> {
    let before = b.c.log().len();
    let t0 = seconds_of_day(SystemTime::now());
    let d = crate::latency::ctr_run(b, image, opts)?;
    let log = b.c.log();
    println!(
        "\ntimeline of one {name} ctr run --rm ({:.1} ms), ms since ctr run started:",
        d.as_secs_f64() * 1000.0
    );
    for line in log.get(before..).unwrap_or_default().lines() {
        let Some(t) = log_time(line) else { continue };
        let mut offset = (t - t0) * 1000.0;
        if offset < -43_200_000.0 {
            offset += 86_400_000.0;
        }
        let msg = message(line);
        println!("{offset:>8.1}  {msg}");
    }
    Ok(())
}

fn seconds_of_day(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() % 86_400.0)
}

/// The seconds of the day of a containerd log line: `time="2026-12-06T02:46:01.123456789Z"`.
fn log_time(line: &str) -> Option<f64> {
    let rest = line.strip_prefix("time=\"")?;
    let clock = rest.split_once('T')?.1;
    let clock = clock.split(['Z', '+', '"']).next()?;
    let mut parts = clock.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The line without its time, shortened.
fn message(line: &str) -> String {
    let rest = line
        .split_once("\" ")
        .map_or(line, |(_, r)| r)
        .replace("level=", "");
    rest.chars().take(180).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_times_are_read() {
        let t = log_time("time=\"2026-12-06T02:46:01.5Z\" level=info msg=x").expect("time");
        assert!((t - (2.0 * 3600.0 + 46.0 * 60.0 + 1.5)).abs() < 1e-6);
        assert_eq!(log_time("no time"), None);
        assert_eq!(
            message("time=\"2026-12-06T02:46:01.5Z\" level=info msg=x"),
            "info msg=x"
        );
    }
}
