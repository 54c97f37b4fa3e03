//! Measures the audit log: append latency (fsync included) against a bare append+fsync of
//! the same size on the same disk, and verify throughput.
//!
//! ```text
//! cargo run --release -p warden-audit --example audit_bench -- [APPENDS] [LOG_MB] [DIR]
//! ```
//!
//! Defaults: 2000 appends, a 100 MB log, the system temp dir. The verify figure is for a
//! log in the page cache (the file was just written), i.e. the CPU cost of verifying.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use warden_audit::{Chain, Record, append, event, verify_file, writer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let appends: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let log_mb: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let base = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("warden-audit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    // Append latency: each call opens, locks, reads the last line, writes, fsyncs.
    let path = dir.join("append.jsonl");
    let mut lat = Vec::with_capacity(appends);
    // The floor under any fsynced append on this disk, measured in the same run and
    // interleaved with the audit appends so drift hits both alike: open with O_APPEND,
    // write one record-sized line, fsync, close. No lock, no chain.
    let floor_path = dir.join("floor.jsonl");
    let line = vec![b'x'; 480];
    let mut floor = Vec::with_capacity(appends);
    for i in 0..appends {
        let mut r = sample(i);
        let t = Instant::now();
        append(&path, &mut r)?;
        lat.push(t.elapsed());

        let t = Instant::now();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&floor_path)?;
        f.write_all(&line)?;
        f.sync_all()?;
        drop(f);
        floor.push(t.elapsed());
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let total: Duration = lat.iter().sum();
    println!(
        "append ({appends} records, fsync each, {}): p50 {:?}  p99 {:?}  max {:?}  ({:.0} appends/s)",
        dir.display(),
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1],
        appends as f64 / total.as_secs_f64()
    );

    floor.sort();
    let fpct = |p: f64| floor[((floor.len() as f64 * p) as usize).min(floor.len() - 1)];
    println!(
        "bare append+fsync baseline (same disk, same run): p50 {:?}  p99 {:?}; audit append / baseline: p50 {:.2}x  p99 {:.2}x",
        fpct(0.50),
        fpct(0.99),
        pct(0.50).as_secs_f64() / fpct(0.50).as_secs_f64(),
        pct(0.99).as_secs_f64() / fpct(0.99).as_secs_f64(),
    );

    // Verify throughput on a generated log of about `log_mb` MB.
    let big = dir.join("big.jsonl");
    let target = log_mb * 1_000_000;
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&big)?);
    let mut chain = Chain::start();
    let mut buf = Vec::with_capacity(1024);
    let mut written = 0u64;
    let mut anchor = Record::anchor("bench-node", writer::SHIM, "2026-11-25T00:00:00.000000Z");
    chain.encode_into(&mut anchor, &mut buf)?;
    let mut i = 0;
    while written < target {
        chain.encode_into(&mut sample(i), &mut buf)?;
        out.write_all(&buf)?;
        written += buf.len() as u64;
        buf.clear();
        i += 1;
    }
    out.flush()?;
    drop(out);
    let size = std::fs::metadata(&big)?.len();
    let mut best = Duration::MAX;
    let mut records = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let sum = verify_file(&big, None)?;
        best = best.min(t.elapsed());
        records = sum.records;
    }
    println!(
        "verify ({:.1} MB, {records} records, {:.0} bytes/record, page cache warm): best of 3 {:?} = {:.0} MB/s",
        size as f64 / 1e6,
        size as f64 / records as f64,
        best,
        size as f64 / 1e6 / best.as_secs_f64()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
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
