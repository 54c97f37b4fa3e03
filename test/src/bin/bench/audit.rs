//! The audit log: append latency (open, lock, read the last line, chain, write, fsync, as the
//! shim does for every record) against a bare `O_APPEND` write of a record-sized line plus
//! fsync on the same disk (the floor of any fsynced append), interleaved so drift hits both
//! alike; and `audit verify` throughput on a generated log in the page cache against SHA-256
//! over the same bytes (verify hashes every record, so that is its floor).
//!
//! Sizes: `WARDEN_BENCH_AUDIT_APPENDS` (default 2000) appends, a `WARDEN_BENCH_AUDIT_LOG_MB`
//! (default 100) MB log, in the system temp dir.

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use warden_audit::{Chain, Record, append, event, verify_file, writer};
use warden_common::Digest;

use crate::report::{Section, Table};
use crate::stats::Samples;

const FLOOR: &str = "bare O_APPEND write + fsync, record-sized";
const AUDIT: &str = "audit append (lock, chain, write, fsync)";
const HASH: &str = "SHA-256 of the same bytes";
const VERIFY: &str = "audit verify";
/// Verify passes; the figures are over these.
const VERIFY_PASSES: usize = 3;

pub fn run(runs: usize) -> Result<Section> {
    let appends = crate::env_count("WARDEN_BENCH_AUDIT_APPENDS", 2000)?;
    let log_mb = crate::env_count("WARDEN_BENCH_AUDIT_LOG_MB", 100)? as u64;
    let dir = tempfile::Builder::new()
        .prefix("warden-audit-bench-")
        .tempdir()
        .context("temp dir")?;

    let path = dir.path().join("append.jsonl");
    let floor_path = dir.path().join("floor.jsonl");
    let line = vec![b'x'; 480];
    let (mut audit, mut floor) = (Vec::with_capacity(appends), Vec::with_capacity(appends));
    for i in 0..appends {
        let mut r = sample(i);
        let t = Instant::now();
        append(&path, &mut r).context("audit append")?;
        audit.push(t.elapsed());

        let t = Instant::now();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&floor_path)
            .context("opening the floor file")?;
        f.write_all(&line).context("writing the floor file")?;
        f.sync_all().context("fsync")?;
        drop(f);
        floor.push(t.elapsed());
    }
    let micros = |d: &[Duration]| Samples(d.iter().map(|d| d.as_secs_f64() * 1e6).collect());
    let mut latency = Table::new("append latency, fsync included", "µs", FLOOR);
    latency.measured(FLOOR, &micros(&floor));
    latency.measured(AUDIT, &micros(&audit));
    let mut p99 = Table::new("append p99 latency", "µs", FLOOR);
    p99.measured(FLOOR, &Samples(vec![percentile(&floor, 0.99)]));
    p99.measured(AUDIT, &Samples(vec![percentile(&audit, 0.99)]));

    let (size, records) = write_log(&dir.path().join("big.jsonl"), log_mb * 1_000_000)?;
    let big = dir.path().join("big.jsonl");
    let (mut verify, mut hash) = (Samples::default(), Samples::default());
    for _ in 0..VERIFY_PASSES.max(runs.min(5)) {
        let t = Instant::now();
        verify_file(&big, None).context("audit verify")?;
        verify.push(size as f64 / 1e6 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let bytes = std::fs::read(&big).context("reading the log")?;
        let _ = Digest::of(&bytes);
        hash.push(size as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    let mut throughput =
        Table::new("verify throughput, log in the page cache", "MB/s", HASH).higher_is_better();
    throughput.measured(HASH, &hash);
    throughput.measured(VERIFY, &verify);

    let mut s = Section::new("audit", "Audit log");
    s.table(latency);
    s.table(p99);
    s.table(throughput);
    let total: Duration = audit.iter().sum();
    s.note(format!(
        "{appends} appends of a shim-shaped exit record, each followed by a bare append on the same disk ({}); {:.0} audit appends/s.",
        dir.path().display(),
        appends as f64 / total.as_secs_f64()
    ));
    s.note(format!(
        "verify: {:.1} MB, {records} records ({:.0} bytes each), read from the page cache: the CPU cost of verifying.",
        size as f64 / 1e6,
        size as f64 / records.max(1) as f64
    ));
    Ok(s)
}

/// The `p` quantile (nearest rank) of `samples` in µs.
fn percentile(samples: &[Duration], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort();
    let i = ((s.len() as f64 * p) as usize).min(s.len().saturating_sub(1));
    s.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// Writes a chained log of about `target` bytes; returns its size and record count.
fn write_log(path: &std::path::Path, target: u64) -> Result<(u64, u64)> {
    let mut out = BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).context("creating the log")?,
    );
    let mut chain = Chain::start();
    let mut buf = Vec::with_capacity(1024);
    let mut anchor = Record::anchor("bench-node", writer::SHIM, "2026-11-25T00:00:00.000000Z");
    chain
        .encode_into(&mut anchor, &mut buf)
        .context("encoding")?;
    let (mut written, mut records) = (0u64, 0u64);
    while written < target {
        chain
            .encode_into(&mut sample(records as usize), &mut buf)
            .context("encoding")?;
        out.write_all(&buf).context("writing the log")?;
        written += buf.len() as u64;
        buf.clear();
        records += 1;
    }
    out.flush().context("writing the log")?;
    drop(out);
    let size = std::fs::metadata(path).context("the log's size")?.len();
    Ok((size, records))
}

/// A record shaped like the shim's `exit` records.
fn sample(i: usize) -> Record {
    Record {
        time: "2026-11-25T01:45:00.123456Z".into(),
        node: "bench-node".into(),
        writer: writer::SHIM.into(),
        event: event::EXIT.into(),
        container_id: Some(format!("{i:064x}")),
        pod_namespace: Some("payments".into()),
        pod_name: Some(format!("payments-api-7d9f8c6b5-{i:05}")),
        image: Some("registry.example.com/payments/api:1.4.2".into()),
        module_digest: Some(format!("sha256:{}", "4b1c".repeat(16))),
        profile: Some("payments-api".into()),
        grants: Some("env=LOG_LEVEL,APP_MODE mounts=/config:ro,/data:rw connect=1 memory=67108864 cpu_time=2000ms".into()),
        decision: Some("allow".into()),
        exit_code: Some(0),
        duration_ms: Some(1234),
        ..Record::default()
    }
}
