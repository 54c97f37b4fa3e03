//! `make bench`: warden's start latency and memory against runc running the same program as
//! a static native binary, all measured in one run on one private containerd.
//!
//! - `ctr run --rm` of hello: runc + static native hello (the baseline), warden with a cold
//!   compile cache (cleared before each run), warm cache (p1 module and p2 component), and
//!   warm under a profile that grants env, a mount and limits (against strict, interleaved).
//! - Memory of one sleeping container: RSS and PSS summed over the shim's whole process tree
//!   (shim, zygotes, container process), warden against runc.
//!
//! Runs per case: `WARDEN_BENCH_RUNS` (default 20). Reported as min/median/max and as ratios
//! of medians against the baseline, because absolute times depend on the machine.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use warden_test::containerd::{Containerd, Options, RunOpts};
use warden_test::guests::{Wasi, build_guests};
use warden_test::image::ImageBuilder;

const POLICY: &str = r#"version = 1
[profiles.granted]
namespaces = ["*"]
env = ["APP_*"]
mounts = [{ path = "/config" }]
[profiles.granted.limits]
memory = "64Mi"
deadline = "30s"
"#;

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

fn main() {
    warden_test::require_root();
    let runs: usize = std::env::var("WARDEN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let files = tempfile::tempdir().expect("temp dir");
    let cache = files.path().join("cache");
    std::fs::write(files.path().join("policy.toml"), POLICY).expect("policy");
    let guests = build_guests();
    let c = Containerd::start(Options {
        shim_dir: Some(warden_test::shim::shim_dir().to_path_buf()),
        env: vec![
            ("WARDEN_CACHE_DIR".into(), cache.display().to_string()),
            (
                "WARDEN_AUDIT_LOG".into(),
                files.path().join("audit.jsonl").display().to_string(),
            ),
            (
                "WARDEN_POLICY".into(),
                files.path().join("policy.toml").display().to_string(),
            ),
        ],
        ..Options::default()
    });

    let native = std::fs::read(guests.native_hello()).expect("native hello");
    c.import_image(
        &ImageBuilder::new("localhost/bench/native:1")
            .file("/hello", native, 0o755)
            .entrypoint(["/hello"]),
    );
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
    let sleeper = wasm_image("sleep", guests.p1("sleep"));

    // WARDEN_BENCH_ONLY=memory skips the latency cases (for iterating on memory).
    let only_memory = std::env::var("WARDEN_BENCH_ONLY").is_ok_and(|v| v == "memory");
    if !only_memory {
        latency(&c, runs, &cache, &p1, &p2);
    }
    memory(&c, &sleeper);
    // WARDEN_BENCH_LOG=1: the shim's own timings, for finding where a start spends its time.
    if std::env::var("WARDEN_BENCH_LOG").is_ok() {
        for l in c.log().lines().filter(|l| {
            l.contains("created in") || l.contains("cache hit") || l.contains("compiled")
        }) {
            println!("{l}");
        }
    }
}

fn latency(c: &Containerd, runs: usize, cache: &Path, p1: &str, p2: &str) {
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
    for s in [&runc, &cold, &warm, &warm_p2, &strict, &granted] {
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
