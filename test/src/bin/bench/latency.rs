//! Start latency: `ctr run --rm` from start to exit, runc running a static native hello (the
//! baseline) against warden with a cold compile cache (cleared before each run) and a warm
//! one, for the Rust p1 hello, a C hello, the p2 and WASI 0.3 components and, when built, the
//! examples' Go and Python images; then strict against a profile that grants env, a mount
//! and limits (interleaved, so drift hits both alike); and how much of a warm start is the
//! shim's own create, from its log.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use warden_test::containerd::RunOpts;
use warden_test::guests::Wasi;

use crate::report::{Section, Table};
use crate::stats::{Samples, measure};
use crate::{Bench, NATIVE_IMAGE, c_hello, charts, examples, timeline};

pub const TABLE: &str = "ctr run --rm, start to exit";
pub const RUNC: &str = "runc + static native hello";
pub const WARM_P1: &str = "warden Rust p1 hello, warm cache";
const CHART: &str = "start-latency.png";

/// Unmeasured runs before each case's samples.
const WARMUP: usize = 2;

/// One `ctr run --rm`; fails unless the container exits 0.
pub fn ctr_run(b: &Bench, image: &str, opts: RunOpts) -> Result<Duration> {
    let id = b.c.unique_id("b");
    let r = b.c.run(image, &id, opts);
    if !r.success() {
        bail!(
            "{image}: exit {:?}: {}\n--- containerd log (end) ---\n{}",
            r.code,
            r.stderr.trim(),
            b.c.log_tail(20)
        );
    }
    Ok(r.duration)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `runs` samples (ms) of `f` after [`WARMUP`] unmeasured runs; the first failure ends it.
fn sample(runs: usize, mut f: impl FnMut() -> Result<Duration>) -> Result<Samples> {
    let mut error = None;
    let samples = measure(WARMUP, runs, || match f() {
        Ok(d) => ms(d),
        Err(e) => {
            error.get_or_insert(e);
            f64::NAN
        }
    });
    match error {
        Some(e) => Err(e),
        None => Ok(samples),
    }
}

/// `runs` samples (ms) of `first` and of `second`, alternating (which of the two goes first
/// alternates too), after [`WARMUP`] unmeasured runs of each; the first failure ends it.
fn interleaved(
    runs: usize,
    mut first: impl FnMut() -> Result<Duration>,
    mut second: impl FnMut() -> Result<Duration>,
) -> Result<(Samples, Samples)> {
    for _ in 0..WARMUP {
        first()?;
        second()?;
    }
    let (mut a, mut b) = (Samples::default(), Samples::default());
    for i in 0..runs {
        if i % 2 == 0 {
            a.push(ms(first()?));
            b.push(ms(second()?));
        } else {
            b.push(ms(second()?));
            a.push(ms(first()?));
        }
    }
    Ok((a, b))
}

/// The cold and warm cases of one Wasm image.
fn cold_and_warm(
    b: &Bench,
    table: &mut Table,
    name: &str,
    image: &str,
    opts: &dyn Fn() -> RunOpts,
    cold_runs: usize,
) -> Result<()> {
    let cache = b.cache();
    let cold = sample(cold_runs, || {
        let _ = std::fs::remove_dir_all(&cache);
        ctr_run(b, image, opts())
    })?;
    table.measured(&format!("{name}, cold compile cache"), &cold);
    let warm = sample(b.runs, || ctr_run(b, image, opts()))?;
    table.measured(&format!("{name}, warm cache"), &warm);
    Ok(())
}

pub fn run(b: &Bench, out: &Path) -> Result<Section> {
    let runs = b.runs;
    let p1 = b.wasm_image("p1", b.guests.p1("hello"));
    let p2 = b.wasm_image("p2", b.guests.bytes(Wasi::P2, "hello"));
    let p3 = b.wasm_image("p3", b.guests.p3_bytes("p3-hello"));
    let c_hello = b.wasm_image("c-hello", c_hello::build()?);
    let app = || RunOpts::warden().args(["/app.wasm"]);
    let first = b.c.run(&c_hello, &b.c.unique_id("c"), app());
    anyhow::ensure!(
        first.success() && first.stdout.contains(c_hello::OUTPUT),
        "the C hello under warden: {first:?}"
    );

    let mut table = Table::new(TABLE, "ms", RUNC);
    // The baseline and the target's case (the warm p1 start) interleaved, run for run: their
    // ratio compares runs made at the same time, so the machine's drift over the section
    // (measured: the runc median moved by 10% between consecutive runs of this section) hits
    // both alike.
    let mut warm_ids = Vec::new();
    let (runc, warm) = interleaved(
        runs,
        || ctr_run(b, NATIVE_IMAGE, RunOpts::default().args(["/hello"])),
        || {
            let id = b.c.unique_id("warm");
            let r = b.c.run(&p1, &id, app());
            warm_ids.push(id);
            if r.success() {
                Ok(r.duration)
            } else {
                bail!("{p1}: {r:?}")
            }
        },
    )?;
    table.measured(RUNC, &runc);
    let cache = b.cache();
    let cold = sample(runs, || {
        let _ = std::fs::remove_dir_all(&cache);
        ctr_run(b, &p1, app())
    })?;
    table.measured("warden Rust p1 hello, cold compile cache", &cold);
    table.measured(WARM_P1, &warm);
    cold_and_warm(
        b,
        &mut table,
        "warden C hello (clang, wasi-libc)",
        &c_hello,
        &app,
        runs,
    )?;
    let p2_warm = sample(runs, || ctr_run(b, &p2, app()))?;
    table.measured("warden Rust p2 component, warm cache", &p2_warm);
    let p3_warm = sample(runs, || ctr_run(b, &p3, app()))?;
    table.measured("warden WASI 0.3 component, warm cache", &p3_warm);
    for example in examples::EXAMPLES {
        examples::measure(b, &mut table, example)?;
    }

    // Strict and granted interleaved, so that drift affects both alike.
    let (mut strict, mut granted) = (Samples::default(), Samples::default());
    for _ in 0..runs {
        strict.push(ms(ctr_run(b, &p1, app())?));
        granted.push(ms(ctr_run(
            b,
            &p1,
            app()
                .annotation("warden.dev/profile", "granted")
                .env("APP_MODE", "x"),
        )?));
    }
    let strict_name = "warden p1 warm, strict profile";
    let mut profiles = Table::new("what a profile's grants cost", "ms", strict_name);
    profiles.measured(strict_name, &strict);
    profiles.measured("warden p1 warm, env + mount + limits profile", &granted);

    // The shim's own create of the warm p1 runs (prepare: policy, entrypoint, cache lookup,
    // then youki's create in a zygote), from containerd's log.
    let log = b.c.log();
    let created = Samples(
        warm_ids
            .iter()
            .skip(WARMUP)
            .filter_map(|id| created_in(&log, id))
            .map(ms)
            .collect(),
    );
    let mut inside = Table::new(
        "warm p1 start: the shim's create within ctr run",
        "ms",
        WARM_P1,
    );
    inside.measured(WARM_P1, &warm);
    inside.measured(
        "shim: Instance::new (prepare + youki create in a zygote)",
        &created,
    );

    let mut s = Section::new("latency", "Start latency");
    s.table(table);
    s.table(profiles);
    s.table(inside);
    s.note(format!(
        "{WARMUP} unmeasured runs before each case; a cold run clears the compile cache first. One private containerd, overlayfs, no CNI (`ctr run` has no network namespace setup either way)."
    ));
    s.note("The examples' Go and Python images run with their own entrypoint and command under their own profile (from their policy.toml: /data read-only, their memory and deadline); their cold case takes at most 5 samples (an interpreter component compiles for seconds).");
    chart(&mut s, out);
    if timeline::wanted() {
        timeline::print(b, "runc", NATIVE_IMAGE, RunOpts::default().args(["/hello"]))?;
        timeline::print(b, "warden warm p1", &p1, app())?;
    }
    Ok(s)
}

fn chart(s: &mut Section, out: &Path) {
    let Some(table) = s.find(TABLE) else { return };
    match charts::cases(
        table,
        "Start latency: ctr run --rm, start to exit",
        Some((0.75, "target: warm start at most 0.75x runc")),
        &out.join(CHART),
    ) {
        Ok(()) => s
            .charts
            .push(("start latency per case".into(), CHART.into())),
        Err(e) => {
            eprintln!("bench: {e:#}");
            s.note(format!("chart not drawn: {e:#}"));
        }
    }
}

/// The shim's "container ID created in DURATION" for `id`, from containerd's log.
pub fn created_in(log: &str, id: &str) -> Option<Duration> {
    let needle = format!("container {id} created in ");
    let line = log.lines().find(|l| l.contains(&needle))?;
    let rest = &line[line.find(&needle)? + needle.len()..];
    let word = rest
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\\')
        .next()?;
    debug_duration(word)
}

/// A `Duration` as `{:?}` prints it: `14.2ms`, `1.5s`, `950µs`, `12ns`.
fn debug_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let value: f64 = text[..split].parse().ok()?;
    let seconds = match &text[split..] {
        "s" => value,
        "ms" => value / 1e3,
        "µs" | "us" => value / 1e6,
        "ns" => value / 1e9,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// The cold (at most `cold_limit` samples) and warm cases of `image`, as rows `NAME, cold
/// compile cache` and `NAME, warm cache`.
pub fn sample_cases(
    b: &Bench,
    table: &mut Table,
    name: &str,
    image: &str,
    opts: &dyn Fn() -> RunOpts,
    cold_limit: usize,
) -> Result<()> {
    cold_and_warm(b, table, name, image, opts, b.runs.min(cold_limit))
        .with_context(|| format!("measuring {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shims_create_time_is_read_from_the_log() {
        let log = "time=\"x\" level=info msg=\"container b-x-1 created in 14.25ms\" instance=b-x-1\n\
                   time=\"x\" level=info msg=\"container b-x-10 created in 1.5s\"\n";
        assert_eq!(
            created_in(log, "b-x-1"),
            Some(Duration::from_micros(14_250))
        );
        assert_eq!(created_in(log, "b-x-10"), Some(Duration::from_millis(1500)));
        assert_eq!(created_in(log, "b-x-2"), None);
        assert_eq!(debug_duration("950µs"), Some(Duration::from_micros(950)));
        assert_eq!(debug_duration("3"), None);
    }
}
