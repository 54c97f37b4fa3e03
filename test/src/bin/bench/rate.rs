//! `ctr run --rm` per second, sequential and 8-way parallel: runc's native hello against
//! warden's p1 hello with a warm cache. A round is [`SEQUENTIAL`] runs one after another, or
//! [`WORKERS`] threads each doing [`PER_WORKER`] runs at once; its rate is runs over wall
//! time. Rounds of the two runtimes alternate, so drift hits both alike.

use std::time::Instant;

use anyhow::{Result, anyhow};
use warden_test::containerd::RunOpts;

use crate::report::{Section, Table};
use crate::stats::Samples;
use crate::{Bench, NATIVE_IMAGE, latency};

const SEQUENTIAL: usize = 8;
const WORKERS: usize = 8;
const PER_WORKER: usize = 3;
/// Rounds per runtime and mode, at most (fewer when `WARDEN_BENCH_RUNS` is lower).
const ROUNDS: usize = 5;

const RUNC: &str = "runc + static native hello";
const WARDEN: &str = "warden Rust p1 hello, warm cache";

pub fn run(b: &Bench) -> Result<Section> {
    let p1 = b.wasm_image("p1", b.guests.p1("hello"));
    let runc = || RunOpts::default().args(["/hello"]);
    let warden = || RunOpts::warden().args(["/app.wasm"]);
    // Warm the cache and both runtimes.
    latency::ctr_run(b, NATIVE_IMAGE, runc())?;
    latency::ctr_run(b, &p1, warden())?;
    let rounds = ROUNDS.min(b.runs);
    let (mut seq_runc, mut seq_warden) = (Samples::default(), Samples::default());
    let (mut par_runc, mut par_warden) = (Samples::default(), Samples::default());
    for _ in 0..rounds {
        seq_runc.push(sequential(b, NATIVE_IMAGE, &runc)?);
        seq_warden.push(sequential(b, &p1, &warden)?);
        par_runc.push(parallel(b, NATIVE_IMAGE, &runc)?);
        par_warden.push(parallel(b, &p1, &warden)?);
    }
    let mut s = Section::new("rate", "ctr run --rm per second");
    let mut seq = Table::new(
        &format!("sequential: {SEQUENTIAL} runs one after another per round"),
        "runs/s",
        RUNC,
    )
    .higher_is_better();
    seq.measured(RUNC, &seq_runc);
    seq.measured(WARDEN, &seq_warden);
    let mut par = Table::new(
        &format!("{WORKERS}-way parallel: {WORKERS} threads x {PER_WORKER} runs per round"),
        "runs/s",
        RUNC,
    )
    .higher_is_better();
    par.measured(RUNC, &par_runc);
    par.measured(WARDEN, &par_warden);
    s.table(seq);
    s.table(par);
    s.note(format!(
        "n is rounds; a round's rate is its runs over its wall time. On {} CPUs, shared with containerd, ctr and the shims.",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    Ok(s)
}

fn sequential(b: &Bench, image: &str, opts: &dyn Fn() -> RunOpts) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..SEQUENTIAL {
        latency::ctr_run(b, image, opts())?;
    }
    Ok(SEQUENTIAL as f64 / t.elapsed().as_secs_f64())
}

fn parallel(b: &Bench, image: &str, opts: &(dyn Fn() -> RunOpts + Sync)) -> Result<f64> {
    let t = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    for _ in 0..PER_WORKER {
                        latency::ctr_run(b, image, opts())?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow!("a ctr run worker panicked"))?)
    })?;
    Ok((WORKERS * PER_WORKER) as f64 / t.elapsed().as_secs_f64())
}
