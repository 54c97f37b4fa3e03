//! `make bench`: every figure warden has, each against its baseline measured in the same
//! run, written to `bench/results.md` and `bench/results.json` with PNG charts beside them.
//!
//! Sections (`WARDEN_BENCH_ONLY=SECTION[,SECTION...]` runs only those; unset: all):
//!
//! - `latency` ([`latency`]): `ctr run --rm` start to exit: runc running a static native hello
//!   (the baseline) against warden, cold compile cache and warm, for the Rust p1 hello, a C
//!   hello (clang, wasi-libc), the p2 and WASI 0.3 components, the examples' Go and Python
//!   images when `make examples` built them, and strict against a granting profile.
//! - `rate` ([`rate`]): sequential and 8-way parallel `ctr run --rm` per second.
//! - `cri` ([`cri`]): the CRI pod lifecycle, RunPodSandbox to RemovePodSandbox, of a Wasm pod
//!   against a runc pod with the same pause image.
//! - `memory` ([`memory`]): PSS per pod, summed over each pod's shim process tree, with 1, 10
//!   and 50 sleeping pods (`WARDEN_BENCH_PODS`), warden against runc.
//! - `http` ([`http`]): requests/s and p50/p99 of `wrk` against a `wasi:http` component under
//!   warden and a static native hyper server under runc.
//! - `audit` ([`audit`]): audit append (fsync included) against a bare append+fsync, and
//!   `audit verify` against SHA-256 over the same bytes.
//! - `installer` ([`installer`]): `warden plan` and a no-op `warden install` against the
//!   config of a private containerd, against the floor of starting `warden` at all.
//! - `versions` ([`versions`]): warm start against runc on containerd 1.6, 1.7 and 2.1, and a
//!   Wasm-layer image where the release unpacks one.
//!
//! `WARDEN_BENCH_RUNS` sets the samples per case (default 20). The results go to
//! `WARDEN_BENCH_OUT`, by default `<repo>/bench` for a run of every section and
//! `<target>/bench` for a run of some (so a partial run does not replace the full results).
//! `WARDEN_BENCH_LOG=1` prints the shim's own timings; `WARDEN_BENCH_SMAPS=1` the largest
//! mappings of each process of one sleeping pod.
//!
//! Nothing here asserts a timing: the bench fails only when something does not run.

mod audit;
mod c_hello;
mod charts;
mod cri;
mod examples;
mod http;
mod installer;
mod latency;
mod machine;
mod memory;
mod memory_cri;
mod rate;
mod report;
mod stats;
mod timeline;
mod versions;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use warden_test::containerd::{Containerd, Options};
use warden_test::guests::{Guests, build_guests};
use warden_test::image::ImageBuilder;

use crate::machine::Machine;
use crate::report::{Report, Section, Target};

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
const SECTIONS: &[&str] = &[
    "latency",
    "rate",
    "cri",
    "memory",
    "http",
    "audit",
    "installer",
    "versions",
];

/// The native baseline image: the static native hello at `/hello`.
pub const NATIVE_IMAGE: &str = "localhost/bench/native:1";

/// What the sections share: the runs per case, the test programs, and one private containerd
/// with the shim, its cache, policy and audit log under `files`.
pub struct Bench {
    pub runs: usize,
    pub guests: &'static Guests,
    pub files: tempfile::TempDir,
    pub c: Containerd,
}

impl Bench {
    pub fn cache(&self) -> PathBuf {
        self.files.path().join("cache")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.files.path().join("audit.jsonl")
    }

    /// Imports `module` at `/app.wasm` (with `/config/app.conf` for the granting profile)
    /// as `localhost/bench/NAME:1`.
    pub fn wasm_image(&self, name: &str, module: Vec<u8>) -> String {
        let r = format!("localhost/bench/{name}:1");
        self.c
            .import_image(&ImageBuilder::wasm_rootfs(&r, "/app.wasm", module).file(
                "/config/app.conf",
                "x=1\n",
                0o644,
            ));
        r
    }
}

/// The sections `WARDEN_BENCH_ONLY` names (comma-separated), or all of them.
fn selected_sections() -> Result<Vec<&'static str>> {
    let Ok(only) = std::env::var("WARDEN_BENCH_ONLY") else {
        return Ok(SECTIONS.to_vec());
    };
    let named: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = named.iter().find(|n| !SECTIONS.contains(n)) {
        bail!("WARDEN_BENCH_ONLY names {bad:?}; the sections are {SECTIONS:?}");
    }
    Ok(SECTIONS
        .iter()
        .copied()
        .filter(|s| named.is_empty() || named.contains(s))
        .collect())
}

/// A positive count from the environment, or `default`.
pub fn env_count(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("{name}={v:?} is not a positive number")),
    }
}

/// Where the results go (see the module doc).
fn out_dir(all_sections: bool) -> PathBuf {
    if let Some(dir) = std::env::var_os("WARDEN_BENCH_OUT") {
        return PathBuf::from(dir);
    }
    if all_sections {
        warden_test::workspace_root().join("bench")
    } else {
        warden_test::target_dir().join("bench")
    }
}

fn main() -> Result<()> {
    warden_test::require_root();
    let sections = selected_sections()?;
    // Checked first, so that a missing `wrk` fails the bench before its long sections.
    if sections.contains(&"http") && warden_test::find_in_path("wrk").is_none() {
        bail!(
            "the HTTP bench needs `wrk` on PATH: apt-get install wrk (`make bench` installs it through `make deps`)"
        );
    }
    let runs = env_count("WARDEN_BENCH_RUNS", 20)?;
    let shim = warden_test::shim::shim_binary();
    let mut machine = Machine::probe(&shim.display().to_string());
    let files = tempfile::tempdir().context("temp dir")?;
    std::fs::write(
        files.path().join("policy.toml"),
        examples::with_example_profiles(POLICY)?,
    )
    .context("writing the policy")?;
    let guests = build_guests();
    let c = Containerd::start(warden_options(files.path()));
    machine.containerd.push(c.version().to_string());
    import_native_hello(&c, guests)?;
    let bench = Bench {
        runs,
        guests,
        files,
        c,
    };
    println!(
        "warden bench: sections {}, {runs} runs per case, containerd {}",
        sections.join(","),
        bench.c.version()
    );

    let out = out_dir(sections.len() == SECTIONS.len());
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut done: Vec<Section> = Vec::new();
    for name in &sections {
        let started = std::time::Instant::now();
        println!("\n== {name}");
        let section = match *name {
            "latency" => latency::run(&bench, &out)?,
            "rate" => rate::run(&bench)?,
            "cri" => cri::run(&bench, &mut machine)?,
            "memory" => memory::run(&bench, &mut machine, &out)?,
            "http" => http::run(&bench)?,
            "audit" => audit::run(runs)?,
            "installer" => installer::run(&bench, &mut machine)?,
            "versions" => versions::run(&bench, &mut machine)?,
            other => bail!("no section {other}"),
        };
        println!(
            "{}(section {name} took {:.0} s)",
            section_text(&section),
            started.elapsed().as_secs_f64()
        );
        done.push(section);
    }
    // WARDEN_BENCH_LOG=1: the shim's own timings, for finding where a start spends its time.
    if timeline::wanted() {
        for l in bench.c.log().lines().filter(|l| {
            l.contains("created in") || l.contains("cache hit") || l.contains("compiled")
        }) {
            println!("{l}");
        }
    }
    machine.load_after = machine::load_average();
    machine.containerd.dedup();
    let report = Report {
        targets: targets(&done),
        machine,
        runs,
        sections_run: sections.iter().map(|s| s.to_string()).collect(),
        sections: done,
    };
    report.write(&out)?;
    println!(
        "\nwrote {} and {}",
        out.join("results.md").display(),
        out.join("results.json").display()
    );
    Ok(())
}

/// The issue's targets against this run's figures.
fn targets(sections: &[Section]) -> Vec<Target> {
    let find = |section: &str, table: &str, case: &str| {
        sections
            .iter()
            .find(|s| s.id == section)
            .and_then(|s: &Section| s.find(table))
            .and_then(|t| t.figure(case))
            .cloned()
    };
    vec![
        Target::at_most(
            "warm start (p1 hello) / runc, medians",
            0.75,
            "x",
            find("latency", latency::TABLE, latency::WARM_P1).and_then(|f| f.ratio),
        ),
        Target::at_most(
            "PSS per pod at 50 pods (warden, median)",
            8.0,
            "MB",
            find("memory", memory::PSS_TABLE, &memory::case("warden", 50)).map(|f| f.median),
        ),
    ]
}

/// A section as Markdown, for the terminal.
fn section_text(section: &Section) -> String {
    let mut out = String::new();
    for t in &section.tables {
        out.push_str(&report::table_markdown(t));
    }
    out.push('\n');
    for n in &section.notes {
        out.push_str(&format!("- {n}\n"));
    }
    out
}

/// A private containerd with the shim on its PATH and warden's cache, audit log and policy
/// under `files`.
pub fn warden_options(files: &Path) -> Options {
    let file = |name: &str| files.join(name).display().to_string();
    Options {
        shim_dir: Some(warden_test::shim::shim_dir().to_path_buf()),
        env: vec![
            ("WARDEN_CACHE_DIR".into(), file("cache")),
            ("WARDEN_AUDIT_LOG".into(), file("audit.jsonl")),
            ("WARDEN_POLICY".into(), file("policy.toml")),
        ],
        log_level: if timeline::wanted() { "debug" } else { "info" }.into(),
        ..Options::default()
    }
}

/// Imports the baseline image, [`NATIVE_IMAGE`].
pub fn import_native_hello(c: &Containerd, guests: &Guests) -> Result<()> {
    let native = std::fs::read(guests.native_hello()).context("the native hello")?;
    c.import_image(
        &ImageBuilder::new(NATIVE_IMAGE)
            .file("/hello", native, 0o755)
            .entrypoint(["/hello"]),
    );
    Ok(())
}
