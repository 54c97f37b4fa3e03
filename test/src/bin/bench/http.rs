//! HTTP: requests per second and p50/p99 latency of `wrk -t2 -c50 -d10s --latency` (Debian's
//! `wrk`, which `make deps` installs) against `GET /` of the `wasi:http` component
//! `test/guests/http-hello` under warden, run under profile `bench`, which has an egress rule
//! loaded (`http.outbound`), and against the same answer from a static native hyper server
//! (`test/guests/native-http`) under runc. Both serve on a free port of 127.0.0.1 with
//! `ctr run --net-host`, get 1 s of `wrk` as warm-up, are measured `WARDEN_BENCH_HTTP_ROUNDS`
//! times (default 3), and are stopped with SIGTERM (and must exit 0). The load generator
//! shares the machine's CPUs with the server.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use warden_test::containerd::{Containerd, RunOpts};
use warden_test::http::{free_port, get, wait_listening};
use warden_test::image::ImageBuilder;

use crate::Bench;
use crate::report::{Section, Table};
use crate::stats::Samples;

/// `wrk`'s load: threads, connections, seconds measured, seconds of warm-up before.
const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 50;
const WRK_SECONDS: u32 = 10;
const WRK_WARMUP_SECONDS: u32 = 1;

/// What the HTTP services answer to `GET /`.
const HTTP_BODY: &str = "hello from warden http\n";

const RUNC: &str = "runc + static native hyper";
const WARDEN: &str = "warden, wasi:http hello component, egress policy";

/// What one `wrk` run measured.
#[derive(Debug, Clone, PartialEq)]
struct Load {
    requests_per_sec: f64,
    p50: Duration,
    p99: Duration,
    requests: u64,
    /// Socket errors (connect, read, write, timeout).
    socket_errors: u64,
    /// Responses with a status outside 2xx and 3xx.
    bad_responses: u64,
}

/// One HTTP server under load.
struct Served {
    loads: Vec<Load>,
    /// From `ctr run` to the port accepting connections.
    listening_after: Duration,
    /// From SIGTERM to `ctr run` returning.
    stopped_after: Duration,
}

pub fn run(b: &Bench) -> Result<Section> {
    let rounds = crate::env_count("WARDEN_BENCH_HTTP_ROUNDS", 3)?;
    let c = &b.c;
    let component = std::fs::read(b.guests.http_hello()).context("the http-hello component")?;
    let wasm_image = "localhost/bench/http-wasm:1";
    c.import_image(&ImageBuilder::wasm_rootfs(
        wasm_image,
        "/app.wasm",
        component,
    ));
    let native = std::fs::read(b.guests.native_http()).context("the native-http server")?;
    let native_image = "localhost/bench/http-native:1";
    c.import_image(
        &ImageBuilder::new(native_image)
            .file("/server", native, 0o755)
            .entrypoint(["/server"]),
    );

    let runc_id = c.unique_id("http");
    let runc = serve_under_load(
        c,
        RUNC,
        native_image,
        &runc_id,
        RunOpts::default().args(["/server"]),
        rounds,
    )?;
    let warden_id = c.unique_id("http");
    let warden = serve_under_load(
        c,
        WARDEN,
        wasm_image,
        &warden_id,
        RunOpts::warden()
            .annotation("warden.dev/profile", "bench")
            .args(["/app.wasm"]),
        rounds,
    )?;
    check_profile(&b.audit_log(), &warden_id, "bench")?;

    let mut s = Section::new("http", "HTTP requests per second and latency");
    let series =
        |served: &Served, f: &dyn Fn(&Load) -> f64| Samples(served.loads.iter().map(f).collect());
    let mut rps = Table::new("requests per second", "req/s", RUNC).higher_is_better();
    let mut p99 = Table::new("p99 latency", "ms", RUNC);
    let mut p50 = Table::new("p50 latency", "ms", RUNC);
    for (name, served) in [(RUNC, &runc), (WARDEN, &warden)] {
        rps.measured(name, &series(served, &|l| l.requests_per_sec));
        p99.measured(name, &series(served, &|l| l.p99.as_secs_f64() * 1000.0));
        p50.measured(name, &series(served, &|l| l.p50.as_secs_f64() * 1000.0));
    }
    s.table(rps);
    s.table(p99);
    s.table(p50);
    s.note(format!(
        "`wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s --latency`, GET /, after {WRK_WARMUP_SECONDS} s of warm-up, {rounds} rounds per server (n); `ctr run --net-host` on 127.0.0.1; wrk shares the CPUs with the server."
    ));
    let errors = |s: &Served| s.loads.iter().map(|l| l.socket_errors).sum::<u64>();
    s.note(format!(
        "socket errors: runc {}, warden {}; listening after `ctr run`: runc {:.1} ms, warden {:.1} ms; SIGTERM to exit: runc {:.1} ms, warden {:.1} ms",
        errors(&runc),
        errors(&warden),
        ms(runc.listening_after),
        ms(warden.listening_after),
        ms(runc.stopped_after),
        ms(warden.stopped_after)
    ));
    Ok(s)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Serves `image` as container `id` on a free port of 127.0.0.1 (`WARDEN_HTTP_ADDR`,
/// `--net-host`), checks its answer to `GET /`, warms it up, measures it with `wrk`
/// `rounds` times, and stops it with SIGTERM.
fn serve_under_load(
    c: &Containerd,
    name: &str,
    image: &str,
    id: &str,
    opts: RunOpts,
    rounds: usize,
) -> Result<Served> {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut opts = opts.env("WARDEN_HTTP_ADDR", &addr.to_string());
    opts.net_host = true;
    let start = Instant::now();
    let mut running = c.spawn_run(image, id, opts);
    while !wait_listening(addr, Duration::from_millis(200)) {
        if running.has_exited() || start.elapsed() > Duration::from_secs(60) {
            let r = running.wait(Duration::from_secs(5));
            bail!(
                "{name}: nothing listens on {addr}: {r:?}\n--- containerd log ---\n{}",
                c.log_tail(40)
            );
        }
    }
    let listening_after = start.elapsed();
    let r = get(addr, "/").map_err(|e| anyhow::anyhow!("{name}: GET / on {addr}: {e}"))?;
    ensure!(
        r.status == 200 && r.text() == HTTP_BODY,
        "{name}: GET / answered {r:?}"
    );
    wrk(name, addr, WRK_WARMUP_SECONDS)?;
    let loads = (0..rounds)
        .map(|_| wrk(name, addr, WRK_SECONDS))
        .collect::<Result<Vec<_>>>()?;
    let stop = Instant::now();
    c.kill_task(id, "SIGTERM");
    let out = running
        .wait(Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!("{name}: after SIGTERM: {e}"))?;
    let stopped_after = stop.elapsed();
    ensure!(
        out.code == Some(0),
        "{name}: SIGTERM must end the server cleanly; stderr (end):\n{}\n--- containerd log ---\n{}",
        tail(&out.stderr, 20),
        c.log_tail(40)
    );
    // What the server said about itself (warden: which instance allocator it uses), without
    // the access lines.
    for line in out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .filter(|l| !l.contains(" access method="))
        .take(5)
    {
        println!("   {name}: {line}");
    }
    Ok(Served {
        loads,
        listening_after,
        stopped_after,
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `wrk` against `GET /` of `addr` for `seconds`; fails unless every response was
/// 2xx/3xx.
fn wrk(name: &str, addr: SocketAddr, seconds: u32) -> Result<Load> {
    let out = Command::new("wrk")
        .args([
            format!("-t{WRK_THREADS}"),
            format!("-c{WRK_CONNECTIONS}"),
            format!("-d{seconds}s"),
            "--latency".into(),
            format!("http://{addr}/"),
        ])
        .output()
        .context("cannot run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{name}: wrk failed ({}):\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let load =
        parse_wrk(&text).with_context(|| format!("{name}: cannot read wrk's output:\n{text}"))?;
    ensure!(
        load.bad_responses == 0,
        "{name}: responses other than 2xx/3xx under load:\n{text}"
    );
    Ok(load)
}

/// Reads requests/sec, the 50% and 99% latency lines, the request count and the errors from
/// the output of `wrk --latency`.
fn parse_wrk(out: &str) -> Option<Load> {
    let (mut rps, mut p50, mut p99, mut requests) = (None, None, None, None);
    let (mut socket_errors, mut bad_responses) = (0, 0);
    for line in out.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => rps = v.parse::<f64>().ok(),
            ["50%", v] => p50 = wrk_duration(v),
            ["99%", v] => p99 = wrk_duration(v),
            [n, "requests", "in", ..] => requests = n.parse::<u64>().ok(),
            ["Socket", "errors:", rest @ ..] => {
                socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => bad_responses = n.parse().ok()?,
            _ => {}
        }
    }
    Some(Load {
        requests_per_sec: rps?,
        p50: p50?,
        p99: p99?,
        requests: requests?,
        socket_errors,
        bad_responses,
    })
}

/// A latency as `wrk` prints it: `287.00us`, `1.80ms`, `2.00s`, `1.50m`.
fn wrk_duration(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let value: f64 = text[..split].parse().ok()?;
    let seconds = match &text[split..] {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Checks in the audit log that container `id` ran under `profile`, i.e. that the policy
/// with the egress rule was the one in force.
fn check_profile(audit_log: &Path, id: &str, profile: &str) -> Result<()> {
    let text = std::fs::read_to_string(audit_log)
        .with_context(|| format!("cannot read the audit log {}", audit_log.display()))?;
    let profiles: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["container_id"] == id)
        .filter_map(|r| r["profile"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        !profiles.is_empty() && profiles.iter().all(|p| p == profile),
        "container {id} should have run under profile {profile:?}; the audit log names {profiles:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let out = "Running 10s test @ http://127.0.0.1:18555/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.47ms    2.61ms  36.12ms   88.60%
    Req/Sec    51.44k    11.90k   92.38k    85.00%
  Latency Distribution
     50%  287.00us
     75%    1.80ms
     90%    4.40ms
     99%   11.85ms
  307853 requests in 3.01s, 43.16MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
Requests/sec: 102342.98
Transfer/sec:     14.35MB
";
        let load = parse_wrk(out).expect("parsed");
        assert_eq!(load.requests_per_sec, 102342.98);
        let micros = |d: Duration| (d.as_secs_f64() * 1e6).round();
        assert_eq!(micros(load.p50), 287.0);
        assert_eq!(micros(load.p99), 11_850.0);
        assert_eq!(load.requests, 307853);
        assert_eq!(load.socket_errors, 5);
        assert_eq!(load.bad_responses, 0);
        let bad = out.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 17\nRequests/sec",
        );
        assert_eq!(parse_wrk(&bad).map(|l| l.bad_responses), Some(17));
        assert_eq!(parse_wrk("Requests/sec: 1\n"), None);
    }

    #[test]
    fn wrk_durations() {
        assert_eq!(wrk_duration("2.00s"), Some(Duration::from_secs(2)));
        assert_eq!(wrk_duration("1.50m"), Some(Duration::from_secs(90)));
        assert_eq!(wrk_duration("1.00ms"), Some(Duration::from_millis(1)));
        assert_eq!(wrk_duration("12"), None);
        assert_eq!(wrk_duration("x"), None);
    }
}
