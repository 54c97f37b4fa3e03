//! Memory per pod, with 1, 10 and 50 sleeping pods (`WARDEN_BENCH_PODS`), warden against runc
//! at the same count: CRI pods ([`memory_cri`]: the pause and a sleeping container, as the
//! kubelet starts them), then containers started with `ctr run -d`, each with its own shim
//! (warden: shim, zygote, container zygote, Wasm runner; runc: shim and the static native
//! program). A pod's figure is RSS and PSS summed over its shims' whole process trees. PSS
//! shares each page among the processes mapping it, so the shim binary's pages cost less per
//! pod as pods are added: hence several counts. The chart and the target are the CRI pods'.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use warden_test::containerd::{Containerd, RUNC_RUNTIME, WARDEN_RUNTIME};

use warden_test::sandbox::HANDLER;

use crate::charts::{self, PodCount};
use crate::machine::Machine;
use crate::report::{Section, Table};
use crate::stats::Samples;
use crate::{Bench, NATIVE_IMAGE, cri, memory_cri};

pub const PSS_TABLE: &str = "PSS per CRI pod (pause + a sleeping container)";
const RSS_TABLE: &str = "RSS per CRI pod (pause + a sleeping container)";
const CTR_PSS_TABLE: &str = "PSS per container started with ctr run -d (its own shim)";
const CTR_RSS_TABLE: &str = "RSS per container started with ctr run -d (its own shim)";
const CHART: &str = "memory-per-pod.png";
/// Each row's baseline.
const BASELINE: &str = "runc at the same pod count";
/// The target at 50 pods, MB of PSS per pod.
pub const TARGET_MB: f64 = 8.0;
/// How long the containers sleep (they are killed when measured).
const SLEEP_SECONDS: &str = "600";
/// How long after the last start the trees are read, so that start-up is over
/// (`WARDEN_BENCH_SETTLE` seconds, e.g. to inspect the pods meanwhile).
pub fn settle() -> Result<Duration> {
    Ok(Duration::from_secs(
        crate::env_count("WARDEN_BENCH_SETTLE", 2)? as u64,
    ))
}

/// The row name of `runtime` at `pods` pods.
pub fn case(runtime: &str, pods: usize) -> String {
    match pods {
        1 => format!("{runtime}, 1 pod"),
        _ => format!("{runtime}, {pods} pods"),
    }
}

/// One pod's shim tree (or trees).
#[derive(Debug, Default)]
pub struct Tree {
    pub rss_kb: f64,
    pub pss_kb: f64,
    pub processes: usize,
}

impl Tree {
    pub fn add(&mut self, other: &Tree) {
        self.rss_kb += other.rss_kb;
        self.pss_kb += other.pss_kb;
        self.processes += other.processes;
    }
}

/// One form of "pod": CRI pods, or containers started with `ctr run -d`.
struct Form {
    /// How the notes name the form.
    label: &'static str,
    pss: Table,
    rss: Table,
    groups: Vec<PodCount>,
    notes: Vec<String>,
}

impl Form {
    fn new(label: &'static str, pss_title: &str, rss_title: &str) -> Form {
        Form {
            label,
            pss: Table::new(pss_title, "MB", BASELINE),
            rss: Table::new(rss_title, "MB", BASELINE),
            groups: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Records `n` pods of `name` (`runc` or `warden`).
    fn add(&mut self, name: &str, n: usize, trees: &[Tree]) {
        let mb = |f: &dyn Fn(&Tree) -> f64| Samples(trees.iter().map(|t| f(t) / 1024.0).collect());
        let pss_mb = mb(&|t| t.pss_kb);
        let base = case("runc", n);
        self.pss.measured(&case(name, n), &pss_mb).against(&base);
        self.rss
            .measured(&case(name, n), &mb(&|t| t.rss_kb))
            .against(&base);
        if self.groups.last().is_none_or(|g| g.pods != n) {
            self.groups.push(PodCount {
                pods: n,
                runc: None,
                warden: None,
            });
        }
        if let Some(group) = self.groups.last_mut() {
            match name {
                "runc" => group.runc = Some(pss_mb.median()),
                _ => group.warden = Some(pss_mb.median()),
            }
        }
        let processes: usize = trees.iter().map(|t| t.processes).sum();
        let total: f64 = trees.iter().map(|t| t.pss_kb).sum::<f64>() / 1024.0;
        self.notes.push(format!(
            "{}, {}: {processes} processes, {total:.1} MB PSS in all ({:.2} MB per pod)",
            self.label,
            case(name, n),
            total / n.max(1) as f64
        ));
    }
}

pub fn run(b: &Bench, machine: &mut Machine, out: &Path) -> Result<Section> {
    let counts = pod_counts()?;
    let sleeper = b.wasm_image("sleep", b.guests.p1("sleep"));
    let mut ctr = Form::new("ctr run -d", CTR_PSS_TABLE, CTR_RSS_TABLE);
    for &n in &counts {
        for (name, runtime, image, args) in [
            (
                "runc",
                RUNC_RUNTIME,
                NATIVE_IMAGE,
                vec!["/hello", "sleep", SLEEP_SECONDS],
            ),
            (
                "warden",
                WARDEN_RUNTIME,
                sleeper.as_str(),
                vec!["/app.wasm", SLEEP_SECONDS],
            ),
        ] {
            let smaps = n == counts[0] && std::env::var_os("WARDEN_BENCH_SMAPS").is_some();
            let trees = sleeping_pods(&b.c, n, runtime, image, &args, smaps)?;
            ctr.add(name, n, &trees);
        }
    }
    let mut pods = Form::new("CRI pods", PSS_TABLE, RSS_TABLE);
    let mut node = cri::Node::start(b, machine)?;
    for &n in &counts {
        for (name, handler) in [("runc", "runc"), ("warden", HANDLER)] {
            let trees = memory_cri::sleeping_pods(&mut node, n, handler)
                .map_err(|e| anyhow::anyhow!("{e:#}\n{}", node.c.log_tail(30)))?;
            pods.add(name, n, &trees);
        }
    }

    let mut s = Section::new("memory", "Memory per pod");
    s.note(format!(
        "n is pods: each pod's figure is RSS or PSS summed over its own shim process tree(s); the pods sleep and are read {} s after the last one started. CRI pods: RunPodSandbox (the pause image) and one sleeping container, hostNetwork, on a containerd with CRI. `ctr run -d`: one sleeping container with its own shim, no pause.",
        settle()?.as_secs()
    ));
    for form in [&mut pods, &mut ctr] {
        for n in std::mem::take(&mut form.notes) {
            s.note(n);
        }
    }
    match charts::memory_per_pod(&pods.groups, TARGET_MB, &out.join(CHART)) {
        Ok(()) => s.charts.push(("memory per CRI pod".into(), CHART.into())),
        Err(e) => {
            eprintln!("bench: {e:#}");
            s.note(format!("chart not drawn: {e:#}"));
        }
    }
    s.table(pods.pss);
    s.table(pods.rss);
    s.table(ctr.pss);
    s.table(ctr.rss);
    Ok(s)
}

/// The pod counts, from `WARDEN_BENCH_PODS` (comma-separated) or 1, 10 and 50.
fn pod_counts() -> Result<Vec<usize>> {
    let Ok(text) = std::env::var("WARDEN_BENCH_PODS") else {
        return Ok(vec![1, 10, 50]);
    };
    let counts: Vec<usize> = text
        .split(',')
        .map(|n| n.trim().parse().ok().filter(|n| *n > 0))
        .collect::<Option<_>>()
        .with_context(|| format!("WARDEN_BENCH_PODS={text:?} is not a list of counts"))?;
    if counts.is_empty() {
        bail!("WARDEN_BENCH_PODS is empty");
    }
    Ok(counts)
}

/// Starts `n` detached sleeping containers, reads each one's shim tree, and removes them.
fn sleeping_pods(
    c: &Containerd,
    n: usize,
    runtime: &str,
    image: &str,
    args: &[&str],
    smaps: bool,
) -> Result<Vec<Tree>> {
    let ids: Vec<String> = (0..n).map(|_| c.unique_id("mem")).collect();
    let result = read_trees(c, &ids, runtime, image, args, smaps);
    for id in &ids {
        c.ctr(["task", "kill", "-s", "SIGKILL", id]);
    }
    std::thread::sleep(Duration::from_millis(500));
    for id in &ids {
        c.ctr(["task", "delete", id]);
        c.ctr(["container", "delete", id]);
    }
    result
}

/// Starts containers `ids` and reads each one's shim tree once they have settled.
fn read_trees(
    c: &Containerd,
    ids: &[String],
    runtime: &str,
    image: &str,
    args: &[&str],
    smaps: bool,
) -> Result<Vec<Tree>> {
    for id in ids {
        let mut argv = vec!["run", "-d", "--runtime", runtime, image, id];
        argv.extend_from_slice(args);
        c.ctr_ok(argv);
    }
    std::thread::sleep(settle()?);
    let tasks = c.ctr_ok(["task", "ls"]);
    let parents = parent_map();
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let pid: u32 = tasks
                .lines()
                .find(|l| l.split_whitespace().next() == Some(id.as_str()))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|p| p.parse().ok())
                .with_context(|| format!("no task {id} in:\n{tasks}"))?;
            let shim = *parents
                .get(&pid)
                .with_context(|| format!("task {id} (pid {pid}) has no parent"))?;
            Ok(tree(shim, &parents, runtime, smaps && i == 0))
        })
        .collect()
}

/// The shim `shim` and its descendants.
pub fn tree(shim: u32, parents: &HashMap<u32, u32>, runtime: &str, smaps: bool) -> Tree {
    let pids: Vec<u32> = parents
        .keys()
        .copied()
        .filter(|p| descends_from(*p, shim, parents))
        .chain([shim])
        .collect();
    let mut t = Tree {
        rss_kb: 0.0,
        pss_kb: 0.0,
        processes: pids.len(),
    };
    for p in &pids {
        let (r, s) = (
            kb_field(&format!("/proc/{p}/status"), "VmRSS:"),
            kb_field(&format!("/proc/{p}/smaps_rollup"), "Pss:"),
        );
        if smaps {
            let name = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            println!(
                "   {runtime}: pid {p} {:<24} RSS {:>6.1} MB  PSS {:>6.1} MB",
                name.trim(),
                r / 1024.0,
                s / 1024.0
            );
            for (name, kb) in top_mappings(*p, 8) {
                println!("        {kb:>7.0} kB PSS  {name}");
            }
        }
        t.rss_kb += r;
        t.pss_kb += s;
    }
    t
}

pub fn parent_map() -> HashMap<u32, u32> {
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
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

/// The mappings of `pid` with the most PSS (kB), grouped by name and permissions.
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
