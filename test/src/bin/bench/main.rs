//! `make bench`: warden's start latency and memory against runc running the same program as
//! a static native binary, all measured in one run on one private containerd.
//!
//! - `ctr run --rm` of hello: runc + static native hello (the baseline), warden with a cold
//!   compile cache (cleared before each run), warm cache (p1 module and p2 component), and
//!   warm under a profile that grants env, a mount and limits (against strict, interleaved).
//! - Memory of one sleeping container: RSS and PSS summed over the shim's whole process tree
//!   (shim, zygotes, container process), warden against runc.
//! - HTTP: requests per second and p50/p99 latency of `wrk -t2 -c50 -d10s --latency` (Debian's
//!   `wrk`, which `make deps` installs; the bench fails without it) against `GET /` of the
//!   `wasi:http` component `test/guests/http-hello` under warden, run under profile `bench`,
//!   which has an egress rule loaded (`http.outbound`), and against the same answer from a
//!   static native hyper server (`test/guests/native-http`) under runc. Both serve on a free
//!   port of 127.0.0.1 with `ctr run --net-host`, get 1 s of `wrk` as warm-up first, and are
//!   stopped with SIGTERM (and must exit 0). Reported: req/s, p50, p99 and the ratio
//!   warden / runc of req/s. The load generator shares the machine's CPUs with the server.
//!
//! - Versions: warm `ctr run --rm` of the p1 hello against runc's native hello on each
//!   containerd release warden supports (1.6, 1.7, 2.1, each its own private containerd), and
//!   on 1.7 and 2.1 the same module as an OCI Wasm-layer image read from the content store.
//!
//! Runs per case: `WARDEN_BENCH_RUNS` (default 20). Reported as min/median/max and as ratios
//! of medians against the baseline, because absolute times depend on the machine.
//!
//! `WARDEN_BENCH_ONLY=SECTION[,SECTION...]` runs only the named sections, among `latency`,
//! `memory`, `http` and `versions` (unset: all), e.g. `WARDEN_BENCH_ONLY=http cargo run --release -p
//! warden-test --bin bench` for the HTTP numbers alone (about 40 s once built).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use warden_test::containerd::{Containerd, Options, RunOpts};
use warden_test::containerd_versions::{Release, Version};
use warden_test::guests::{Guests, Wasi, build_guests};
use warden_test::http::{free_port, get, wait_listening};
use warden_test::image::ImageBuilder;

const POLICY: &str = r#"version = 1
[profiles.granted]
namespaces = ["*"]
env = ["APP_*"]
mounts = [{ path = "/config" }]
[profiles.granted.limits]
memory = "64Mi"
deadline = "30s"
[profiles.bench]
namespaces = ["*"]
[profiles.bench.http]
outbound = ["http://127.0.0.1:9"]
"#;

/// The sections of the bench, in the order they run.
const SECTIONS: &[&str] = &["latency", "memory", "http", "versions"];

struct Stats {
    name: String,
    samples: Vec<Duration>,
}

impl Stats {
    fn median(&self) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        s[s.len() / 2]
    }
    fn min(&self) -> Duration {
        self.samples.iter().copied().min().unwrap_or_default()
    }
    fn max(&self) -> Duration {
        self.samples.iter().copied().max().unwrap_or_default()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The sections `WARDEN_BENCH_ONLY` names (comma-separated), or all of them.
fn selected_sections() -> Vec<&'static str> {
    let Ok(only) = std::env::var("WARDEN_BENCH_ONLY") else {
        return SECTIONS.to_vec();
    };
    let named: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = named.iter().find(|n| !SECTIONS.contains(n)) {
        panic!("WARDEN_BENCH_ONLY names {bad:?}; the sections are {SECTIONS:?}");
    }
    SECTIONS
        .iter()
        .copied()
        .filter(|s| named.is_empty() || named.contains(s))
        .collect()
}

fn main() {
    warden_test::require_root();
    let sections = selected_sections();
    // Checked first, so that a missing `wrk` fails the bench before its long sections.
    if sections.contains(&"http") {
        assert!(
            warden_test::find_in_path("wrk").is_some(),
            "the HTTP bench needs `wrk` on PATH: apt-get install wrk (`make bench` installs it through `make deps`)"
        );
    }
    let runs: usize = std::env::var("WARDEN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let files = tempfile::tempdir().expect("temp dir");
    let cache = files.path().join("cache");
    std::fs::write(files.path().join("policy.toml"), POLICY).expect("policy");
    let guests = build_guests();
    let c = Containerd::start(warden_options(files.path()));

    import_native_hello(&c, guests);
    let wasm_image = |name: &str, bytes: Vec<u8>| {
        let r = format!("localhost/bench/{name}:1");
        c.import_image(&ImageBuilder::wasm_rootfs(&r, "/app.wasm", bytes).file(
            "/config/app.conf",
            "x=1\n",
            0o644,
        ));
        r
    };
    let p1 = wasm_image("p1", guests.p1("hello"));
    let p2 = wasm_image("p2", guests.bytes(Wasi::P2, "hello"));
    let p3 = wasm_image("p3", guests.p3_bytes("p3-hello"));
    let sleeper = wasm_image("sleep", guests.p1("sleep"));

    if sections.contains(&"latency") {
        latency(&c, runs, &cache, &p1, &p2, &p3);
    }
    if sections.contains(&"memory") {
        memory(&c, &sleeper);
    }
    if sections.contains(&"http") {
        http(&c, guests, &files.path().join("audit.jsonl"));
    }
    if sections.contains(&"versions") {
        versions(runs, guests);
    }
    // WARDEN_BENCH_LOG=1: the shim's own timings, for finding where a start spends its time.
    if std::env::var("WARDEN_BENCH_LOG").is_ok() {
        for l in c.log().lines().filter(|l| {
            l.contains("created in") || l.contains("cache hit") || l.contains("compiled")
        }) {
            println!("{l}");
        }
    }
}

/// A private containerd with the shim on its PATH and warden's cache, audit log and policy
/// under `files`.
fn warden_options(files: &Path) -> Options {
    let file = |name: &str| files.join(name).display().to_string();
    Options {
        shim_dir: Some(warden_test::shim::shim_dir().to_path_buf()),
        env: vec![
            ("WARDEN_CACHE_DIR".into(), file("cache")),
            ("WARDEN_AUDIT_LOG".into(), file("audit.jsonl")),
            ("WARDEN_POLICY".into(), file("policy.toml")),
        ],
        ..Options::default()
    }
}

/// The baseline image: the static native hello at `/hello`.
fn import_native_hello(c: &Containerd, guests: &Guests) {
    let native = std::fs::read(guests.native_hello()).expect("native hello");
    c.import_image(
        &ImageBuilder::new("localhost/bench/native:1")
            .file("/hello", native, 0o755)
            .entrypoint(["/hello"]),
    );
}

fn latency(c: &Containerd, runs: usize, cache: &Path, p1: &str, p2: &str, p3: &str) {
    let run = |image: &str, opts: RunOpts, args: &[&str]| -> Duration {
        let id = c.unique_id("b");
        let r = c.run(image, &id, opts.args(args.iter().copied()));
        assert!(r.success(), "{image}: {r:?}\n{}", c.log_tail(20));
        r.duration
    };
    let measure = |name: &str, f: &dyn Fn() -> Duration| -> Stats {
        for _ in 0..2 {
            f();
        }
        Stats {
            name: name.to_string(),
            samples: (0..runs).map(|_| f()).collect(),
        }
    };
    println!("warden bench: {runs} runs per case, ctr run --rm, one private containerd\n");
    let runc = measure("runc + static native hello", &|| {
        run("localhost/bench/native:1", RunOpts::default(), &["/hello"])
    });
    let cold = measure("warden p1, cold cache", &|| {
        let _ = std::fs::remove_dir_all(cache);
        run(p1, RunOpts::warden(), &["/app.wasm"])
    });
    let warm = measure("warden p1, warm cache", &|| {
        run(p1, RunOpts::warden(), &["/app.wasm"])
    });
    let warm_p2 = measure("warden p2 component, warm cache", &|| {
        run(p2, RunOpts::warden(), &["/app.wasm"])
    });
    let warm_p3 = measure("warden WASI 0.3 component, warm cache", &|| {
        run(p3, RunOpts::warden(), &["/app.wasm"])
    });
    // Strict and granted interleaved, so that drift affects both alike.
    let mut strict = Stats {
        name: "warden p1 warm, strict profile".into(),
        samples: vec![],
    };
    let mut granted = Stats {
        name: "warden p1 warm, env+mount+limits profile".into(),
        samples: vec![],
    };
    for _ in 0..runs {
        strict
            .samples
            .push(run(p1, RunOpts::warden(), &["/app.wasm"]));
        granted.samples.push(run(
            p1,
            RunOpts::warden()
                .annotation("warden.dev/profile", "granted")
                .env("APP_MODE", "x"),
            &["/app.wasm"],
        ));
    }

    let base = runc.median().as_secs_f64();
    println!("| case | min ms | median ms | max ms | median / runc |");
    println!("|---|---|---|---|---|");
    for s in [&runc, &cold, &warm, &warm_p2, &warm_p3, &strict, &granted] {
        println!(
            "| {} | {} | {} | {} | {:.2} |",
            s.name,
            ms(s.min()),
            ms(s.median()),
            ms(s.max()),
            s.median().as_secs_f64() / base
        );
    }
    println!(
        "\ngranted profile / strict profile (medians): {:.3}",
        granted.median().as_secs_f64() / strict.median().as_secs_f64()
    );
    println!(
        "sequential ctr run --rm per second: runc {:.1}/s, warden warm {:.1}/s",
        1.0 / base,
        1.0 / warm.median().as_secs_f64()
    );
}

/// Warm start against runc on each containerd release, and for a Wasm-layer image where the
/// release unpacks one.
fn versions(runs: usize, guests: &Guests) {
    println!(
        "\nwarm start per containerd release: ctr run --rm, {runs} runs per case, medians (min-max) in ms"
    );
    println!(
        "| containerd | runc native | warden p1 rootfs | / runc | warden p1 Wasm layer | / runc |"
    );
    println!("|---|---|---|---|---|---|");
    for version in [Version::V1_6, Version::V1_7, Version::V2_1] {
        let files = tempfile::tempdir().expect("temp dir");
        let c = Containerd::start(Options {
            version: Some(version.clone()),
            ..warden_options(files.path())
        });
        import_native_hello(&c, guests);
        let rootfs = "localhost/bench/p1:1";
        c.import_image(&ImageBuilder::wasm_rootfs(
            rootfs,
            "/app.wasm",
            guests.p1("hello"),
        ));
        let layer = "localhost/bench/p1-layer:1";
        let layers = c.version()
            >= Release {
                major: 1,
                minor: 7,
                patch: 7,
            };
        if layers {
            c.import_image(
                &ImageBuilder::new(layer)
                    .wasm_layer(guests.p1("hello"), warden_test::image::MEDIA_TYPE_WASM)
                    .platform("wasip1", "wasm"),
            );
        }
        let measure = |image: &str, opts: &dyn Fn() -> RunOpts, args: &[&str]| -> Stats {
            let mut samples = Vec::with_capacity(runs);
            for i in 0..runs + 2 {
                let id = c.unique_id("v");
                let r = c.run(image, &id, opts().args(args.iter().copied()));
                assert!(r.success(), "{version} {image}: {r:?}\n{}", c.log_tail(20));
                if i >= 2 {
                    samples.push(r.duration);
                }
            }
            Stats {
                name: image.to_string(),
                samples,
            }
        };
        let runc = measure("localhost/bench/native:1", &RunOpts::default, &["/hello"]);
        let warm = measure(rootfs, &RunOpts::warden, &["/app.wasm"]);
        let base = runc.median().as_secs_f64();
        let cell = |s: &Stats| format!("{} ({}-{})", ms(s.median()), ms(s.min()), ms(s.max()));
        let (layer_cell, layer_ratio) = if layers {
            let l = measure(layer, &RunOpts::warden, &["/app.wasm"]);
            (cell(&l), format!("{:.2}", l.median().as_secs_f64() / base))
        } else {
            ("refused at import by this release".into(), "-".into())
        };
        println!(
            "| {} | {} | {} | {:.2} | {} | {} |",
            c.version(),
            cell(&runc),
            cell(&warm),
            warm.median().as_secs_f64() / base,
            layer_cell,
            layer_ratio
        );
    }
}

fn memory(c: &Containerd, sleeper: &str) {
    println!("\nmemory of one sleeping container (whole shim process tree):");
    let (runc_rss, runc_pss, runc_n) = sleeping_tree(
        c,
        "localhost/bench/native:1",
        "io.containerd.runc.v2",
        &["/hello", "sleep", "30"],
    );
    let (w_rss, w_pss, w_n) =
        sleeping_tree(c, sleeper, "io.containerd.warden.v1", &["/app.wasm", "30"]);
    println!("| runtime | processes | RSS MB | PSS MB | PSS / runc |");
    println!("|---|---|---|---|---|");
    println!(
        "| runc | {runc_n} | {:.1} | {:.1} | 1.00 |",
        runc_rss / 1024.0,
        runc_pss / 1024.0
    );
    println!(
        "| warden | {w_n} | {:.1} | {:.1} | {:.2} |",
        w_rss / 1024.0,
        w_pss / 1024.0,
        w_pss / runc_pss
    );
}

/// `wrk`'s load: threads, connections, seconds measured, seconds of warm-up before.
const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 50;
const WRK_SECONDS: u32 = 10;
const WRK_WARMUP_SECONDS: u32 = 1;

/// What the HTTP services answer to `GET /`.
const HTTP_BODY: &str = "hello from warden http\n";

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
    name: &'static str,
    load: Load,
    /// From `ctr run` to the port accepting connections.
    listening_after: Duration,
    /// From SIGTERM to `ctr run` returning.
    stopped_after: Duration,
}

fn http(c: &Containerd, guests: &Guests, audit_log: &Path) {
    let started = Instant::now();
    println!(
        "\nhttp: wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s --latency, GET /, after {WRK_WARMUP_SECONDS} s of warm-up; ctr run --net-host on 127.0.0.1"
    );
    let component = std::fs::read(guests.http_hello()).expect("the http-hello component");
    let wasm_image = "localhost/bench/http-wasm:1";
    c.import_image(&ImageBuilder::wasm_rootfs(
        wasm_image,
        "/app.wasm",
        component,
    ));
    let native = std::fs::read(guests.native_http()).expect("the native-http server");
    let native_image = "localhost/bench/http-native:1";
    c.import_image(
        &ImageBuilder::new(native_image)
            .file("/server", native, 0o755)
            .entrypoint(["/server"]),
    );

    let runc = serve_under_load(
        c,
        "runc + static native hyper",
        native_image,
        RunOpts::default().args(["/server"]),
    );
    let warden_id = c.unique_id("http");
    let warden = serve_under_load_as(
        c,
        "warden wasi:http component, egress policy",
        wasm_image,
        &warden_id,
        RunOpts::warden()
            .annotation("warden.dev/profile", "bench")
            .args(["/app.wasm"]),
    );
    check_profile(audit_log, &warden_id, "bench");

    let base = runc.load.requests_per_sec;
    println!("| server | req/s | p50 ms | p99 ms | requests | socket errors | req/s / runc |");
    println!("|---|---|---|---|---|---|---|");
    for s in [&runc, &warden] {
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {:.2} |",
            s.name,
            s.load.requests_per_sec,
            ms2(s.load.p50),
            ms2(s.load.p99),
            s.load.requests,
            s.load.socket_errors,
            s.load.requests_per_sec / base
        );
    }
    println!(
        "\nwarden / runc req/s: {:.3}; p99: warden {} ms, runc {} ms",
        warden.load.requests_per_sec / base,
        ms2(warden.load.p99),
        ms2(runc.load.p99)
    );
    println!(
        "listening after ctr run: runc {} ms, warden {} ms; SIGTERM to exit: runc {} ms, warden {} ms",
        ms(runc.listening_after),
        ms(warden.listening_after),
        ms(runc.stopped_after),
        ms(warden.stopped_after)
    );
    println!(
        "(http section took {:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

fn ms2(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn serve_under_load(c: &Containerd, name: &'static str, image: &str, opts: RunOpts) -> Served {
    let id = c.unique_id("http");
    serve_under_load_as(c, name, image, &id, opts)
}

/// Serves `image` as container `id` on a free port of 127.0.0.1 (`WARDEN_HTTP_ADDR`,
/// `--net-host`), checks its answer to `GET /`, warms it up, measures it with `wrk`, and stops
/// it with SIGTERM.
fn serve_under_load_as(
    c: &Containerd,
    name: &'static str,
    image: &str,
    id: &str,
    opts: RunOpts,
) -> Served {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut opts = opts.env("WARDEN_HTTP_ADDR", &addr.to_string());
    opts.net_host = true;
    let start = Instant::now();
    let mut running = c.spawn_run(image, id, opts);
    while !wait_listening(addr, Duration::from_millis(200)) {
        if running.has_exited() || start.elapsed() > Duration::from_secs(60) {
            let r = running.wait(Duration::from_secs(5));
            panic!(
                "{name}: nothing listens on {addr}: {r:?}\n--- containerd log ---\n{}",
                c.log_tail(40)
            );
        }
    }
    let listening_after = start.elapsed();
    let r = get(addr, "/").unwrap_or_else(|e| panic!("{name}: GET / on {addr}: {e}"));
    assert!(
        r.status == 200 && r.text() == HTTP_BODY,
        "{name}: GET / answered {r:?}"
    );
    wrk(name, addr, WRK_WARMUP_SECONDS);
    let load = wrk(name, addr, WRK_SECONDS);
    let stop = Instant::now();
    c.kill_task(id, "SIGTERM");
    let out = running
        .wait(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{name}: after SIGTERM: {e}"));
    let stopped_after = stop.elapsed();
    assert_eq!(
        out.code,
        Some(0),
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
    Served {
        name,
        load,
        listening_after,
        stopped_after,
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `wrk` against `GET /` of `addr` for `seconds`; panics unless every response was
/// 2xx/3xx.
fn wrk(name: &str, addr: SocketAddr, seconds: u32) -> Load {
    let mut command = Command::new("wrk");
    command.args([
        format!("-t{WRK_THREADS}"),
        format!("-c{WRK_CONNECTIONS}"),
        format!("-d{seconds}s"),
        "--latency".into(),
        format!("http://{addr}/"),
    ]);
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run wrk (apt-get install wrk): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name}: wrk failed ({}):\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let load =
        parse_wrk(&text).unwrap_or_else(|| panic!("{name}: cannot read wrk's output:\n{text}"));
    assert_eq!(
        load.bad_responses, 0,
        "{name}: responses other than 2xx/3xx under load:\n{text}"
    );
    load
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
fn check_profile(audit_log: &Path, id: &str, profile: &str) {
    let text = std::fs::read_to_string(audit_log)
        .unwrap_or_else(|e| panic!("cannot read the audit log {}: {e}", audit_log.display()));
    let profiles: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["container_id"] == id)
        .filter_map(|r| r["profile"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !profiles.is_empty() && profiles.iter().all(|p| p == profile),
        "container {id} should have run under profile {profile:?}; the audit log names {profiles:?}"
    );
}

/// Starts a detached sleeping container; returns the RSS and PSS (kB) summed over the
/// shim process and all its descendants, and how many processes that is.
fn sleeping_tree(c: &Containerd, image: &str, runtime: &str, args: &[&str]) -> (f64, f64, usize) {
    let id = c.unique_id("mem");
    let mut argv = vec!["run", "-d", "--runtime", runtime, image, &id];
    argv.extend_from_slice(args);
    c.ctr_ok(argv);
    std::thread::sleep(Duration::from_secs(2));
    let tasks = c.ctr_ok(["task", "ls"]);
    let pid: u32 = tasks
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no task {id} in:\n{tasks}"));
    let parents = parent_map();
    let shim = parents
        .get(&pid)
        .copied()
        .expect("the task has a parent (its shim)");
    let tree: Vec<u32> = parents
        .keys()
        .copied()
        .filter(|p| descends_from(*p, shim, &parents))
        .chain([shim])
        .collect();
    let (mut rss, mut pss) = (0.0, 0.0);
    for p in &tree {
        let (r, s) = (
            kb_field(&format!("/proc/{p}/status"), "VmRSS:"),
            kb_field(&format!("/proc/{p}/smaps_rollup"), "Pss:"),
        );
        let name = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        println!(
            "   {runtime}: pid {p} {:<24} RSS {:>6.1} MB  PSS {:>6.1} MB",
            name.trim(),
            r / 1024.0,
            s / 1024.0
        );
        if std::env::var("WARDEN_BENCH_SMAPS").is_ok() {
            for (name, kb) in top_mappings(*p, 6) {
                println!("        {kb:>7.0} kB PSS  {name}");
            }
        }
        rss += r;
        pss += s;
    }
    c.ctr(["task", "kill", "-s", "SIGKILL", &id]);
    std::thread::sleep(Duration::from_millis(500));
    c.ctr(["task", "delete", &id]);
    c.ctr(["container", "delete", &id]);
    (rss, pss, tree.len())
}

fn parent_map() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            map.insert(pid, ppid);
        }
    }
    map
}

fn descends_from(mut pid: u32, ancestor: u32, parents: &HashMap<u32, u32>) -> bool {
    for _ in 0..64 {
        match parents.get(&pid) {
            Some(&p) if p == ancestor => return true,
            Some(&p) if p > 1 => pid = p,
            _ => return false,
        }
    }
    false
}

fn kb_field(path: &str, key: &str) -> f64 {
    let text = std::fs::read_to_string(Path::new(path)).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// The mappings of `pid` with the most PSS (kB), grouped by name.
fn top_mappings(pid: u32, n: usize) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by_name: HashMap<String, f64> = HashMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let fields: Vec<&str> = line.split_whitespace().collect();
            current = fields
                .get(5)
                .map_or("[anon]".to_string(), |s| s.to_string());
            if let Some(perms) = fields.get(1) {
                current = format!("{current} {perms}");
            }
        } else if let Some(v) = line.strip_prefix("Pss:") {
            let kb: f64 = v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0.0);
            *by_name.entry(current.clone()).or_default() += kb;
        }
    }
    let mut v: Vec<(String, f64)> = by_name.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.truncate(n);
    v
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
