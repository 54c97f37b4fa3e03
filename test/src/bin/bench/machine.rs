//! What the figures were measured on: CPU, cores, memory, kernel, containerd and runc
//! releases, the shim, the date, and the load averages around the run.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// When the run started, UTC (RFC 3339).
    pub date: String,
    pub cpu_model: String,
    pub cores: usize,
    pub memory_mib: u64,
    pub kernel: String,
    /// Every containerd release the run started (the first is the one most sections use).
    pub containerd: Vec<String>,
    pub runc: String,
    /// The shim binary measured.
    pub shim: String,
    /// The bench binary's own build (`release` under `make bench`): the audit section's
    /// figures are the audit code's as built here.
    pub bench_build: String,
    pub git_revision: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute averages when the run started and ended: other
    /// work on the machine shows here.
    pub load_before: String,
    pub load_after: String,
}

impl Machine {
    /// The machine as it is now; `containerd` and `load_after` are filled in later.
    pub fn probe(shim: &str) -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, v)| v.trim().to_string());
        let memory_kib: u64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Machine {
            date: utc_timestamp(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            ),
            cpu_model,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_mib: memory_kib / 1024,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            containerd: Vec::new(),
            runc: first_line("runc", &["--version"]),
            shim: shim.into(),
            bench_build: warden_test::shim::profile().into(),
            git_revision: first_line("git", &["rev-parse", "--short", "HEAD"]),
            load_before: load_average(),
            load_after: String::new(),
        }
    }

    /// The rows of the machine table in `results.md`.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("date (UTC)", self.date.clone()),
            ("CPU", self.cpu_model.clone()),
            ("cores", self.cores.to_string()),
            ("memory", format!("{} MiB", self.memory_mib)),
            ("kernel", self.kernel.clone()),
            ("containerd", self.containerd.join(", ")),
            ("runc", self.runc.clone()),
            ("shim", self.shim.clone()),
            ("bench build", self.bench_build.clone()),
            ("git revision", self.git_revision.clone()),
            ("load average before", self.load_before.clone()),
            ("load average after", self.load_after.clone()),
        ]
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The first line `program args` prints, or `unknown`.
fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(warden_test::workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_796_524_245), "2026-12-06T02:30:45Z");
    }
}
