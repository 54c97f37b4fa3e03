//! The bench's results as data: sections of tables, each row a case measured against the
//! table's baseline from the same run; written as `results.json` and `results.md`.
//!
//! Everything here is pure (no measuring, no I/O but [`Report::write`]), so the writers are
//! unit-tested.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::machine::Machine;
use crate::stats::Samples;

/// Everything one `bench` run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    /// Samples per case unless a table says otherwise (`WARDEN_BENCH_RUNS`).
    pub runs: usize,
    /// The sections this run measured (`WARDEN_BENCH_ONLY`, or all).
    pub sections_run: Vec<String>,
    pub sections: Vec<Section>,
    /// The targets of the examples-and-bench issue, against this run's figures.
    pub targets: Vec<Target>,
}

/// One section of the bench (`latency`, `memory`, ...).
#[derive(Debug, Serialize)]
pub struct Section {
    /// The name `WARDEN_BENCH_ONLY` selects it by.
    pub id: String,
    pub title: String,
    pub tables: Vec<Table>,
    /// What a reader needs to read the tables: method, caveats, findings.
    pub notes: Vec<String>,
    /// PNG files beside the report: (caption, file name).
    pub charts: Vec<(String, String)>,
}

/// Cases measured in one unit against one baseline.
#[derive(Debug, Serialize)]
pub struct Table {
    pub title: String,
    /// `ms`, `MB`, `req/s`, `µs`, `MB/s`, `runs/s`.
    pub unit: String,
    pub higher_is_better: bool,
    /// The case every row is compared with, unless the row names its own.
    pub baseline: String,
    pub rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub case: String,
    /// This row's baseline when it is not the table's (e.g. runc at the same pod count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Measured(Figure),
    /// Not measured in this run, and why (e.g. `not built (make examples)`).
    NotRun {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Figure {
    pub samples: usize,
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// median / the baseline's median, in the same run; `None` for the baseline itself or
    /// when the baseline was not measured.
    pub ratio: Option<f64>,
}

/// One target and how this run compares.
#[derive(Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub limit: f64,
    pub unit: String,
    /// This run's figure, when the section ran.
    pub value: Option<f64>,
    pub met: Option<bool>,
}

impl Target {
    /// A target met when the value is at most `limit`.
    pub fn at_most(what: &str, limit: f64, unit: &str, value: Option<f64>) -> Target {
        Target {
            what: what.into(),
            limit,
            unit: unit.into(),
            value,
            met: value.map(|v| v <= limit),
        }
    }
}

impl Table {
    pub fn new(title: &str, unit: &str, baseline: &str) -> Table {
        Table {
            title: title.into(),
            unit: unit.into(),
            higher_is_better: false,
            baseline: baseline.into(),
            rows: Vec::new(),
        }
    }

    /// Marks the figures as rates (a ratio above 1 is better).
    pub fn higher_is_better(mut self) -> Table {
        self.higher_is_better = true;
        self
    }

    /// Adds a measured case; its ratio is filled in by [`Table::compare`].
    pub fn measured(&mut self, case: &str, samples: &Samples) -> &mut Row {
        self.rows.push(Row {
            case: case.into(),
            baseline: None,
            outcome: Outcome::Measured(Figure {
                samples: samples.len(),
                min: samples.min(),
                median: samples.median(),
                max: samples.max(),
                ratio: None,
            }),
        });
        self.rows.last_mut().expect("just pushed")
    }

    /// Adds a case that was not measured, with the reason.
    pub fn not_run(&mut self, case: &str, reason: &str) {
        self.rows.push(Row {
            case: case.into(),
            baseline: None,
            outcome: Outcome::NotRun {
                reason: reason.into(),
            },
        });
    }

    /// The figure of `case`, when it was measured.
    pub fn figure(&self, case: &str) -> Option<&Figure> {
        self.rows.iter().find_map(|r| match &r.outcome {
            Outcome::Measured(f) if r.case == case => Some(f),
            _ => None,
        })
    }

    /// Fills in every row's ratio against its baseline's median.
    pub fn compare(&mut self) {
        let medians: Vec<(String, f64)> = self
            .rows
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Measured(f) => Some((r.case.clone(), f.median)),
                Outcome::NotRun { .. } => None,
            })
            .collect();
        for row in &mut self.rows {
            let base_case = row
                .baseline
                .clone()
                .unwrap_or_else(|| self.baseline.clone());
            let base = medians
                .iter()
                .find(|(c, _)| *c == base_case)
                .map(|(_, m)| *m);
            if let Outcome::Measured(f) = &mut row.outcome {
                f.ratio = match base {
                    Some(b) if row.case != base_case && b > 0.0 => Some(f.median / b),
                    _ => None,
                };
            }
        }
    }
}

impl Row {
    /// Compares this row with `case` instead of the table's baseline.
    pub fn against(&mut self, case: &str) {
        self.baseline = Some(case.into());
    }
}

impl Section {
    pub fn new(id: &str, title: &str) -> Section {
        Section {
            id: id.into(),
            title: title.into(),
            tables: Vec::new(),
            notes: Vec::new(),
            charts: Vec::new(),
        }
    }

    pub fn table(&mut self, mut table: Table) {
        table.compare();
        self.tables.push(table);
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// The table titled `title`.
    pub fn find(&self, title: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.title == title)
    }
}

/// How a figure in `unit` is written.
pub fn format_value(unit: &str, value: f64) -> String {
    match unit {
        "req/s" | "µs" => format!("{value:.0}"),
        "ms" if value < 10.0 => format!("{value:.2}"),
        _ => format!("{value:.1}"),
    }
}

impl Report {
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).context("cannot encode the results as JSON")
    }

    pub fn to_markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::from("# warden bench results\n\n");
        out.push_str(&format!(
            "Written by the bench (`test/src/bin/bench/`; `make bench` runs every section) on {}.\n\n",
            m.date
        ));
        out.push_str("| machine | |\n|---|---|\n");
        for (key, value) in m.rows() {
            out.push_str(&format!("| {key} | {} |\n", cell(&value)));
        }
        out.push_str(&format!(
            "\nSections run: {}. Runs per case: {} unless a table says otherwise (column n). \
             Each figure is min / median / max of its samples; the ratio is the median over \
             the baseline's median measured in the same run. The load averages show whether \
             other work ran on the machine at the same time: read the ratios rather than the \
             absolute times.\n",
            self.sections_run.join(", "),
            self.runs
        ));
        if !self.targets.is_empty() {
            out.push_str("\n## Targets\n\n| target | this run | met |\n|---|---|---|\n");
            for t in &self.targets {
                let value = t
                    .value
                    .map_or("not measured".into(), |v| format!("{v:.2} {}", t.unit));
                let met = match t.met {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "-",
                };
                out.push_str(&format!(
                    "| {} (at most {} {}) | {value} | {met} |\n",
                    cell(&t.what),
                    t.limit,
                    t.unit
                ));
            }
        }
        for s in &self.sections {
            out.push_str(&format!("\n## {} (`{}`)\n", s.title, s.id));
            for t in &s.tables {
                out.push_str(&table_markdown(t));
            }
            for (caption, file) in &s.charts {
                out.push_str(&format!("\n![{caption}]({file})\n"));
            }
            if !s.notes.is_empty() {
                out.push('\n');
                for n in &s.notes {
                    out.push_str(&format!("- {n}\n"));
                }
            }
        }
        out
    }

    /// Writes `results.json` and `results.md` into `dir` (created if missing).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, text) in [
            ("results.json", self.to_json()? + "\n"),
            ("results.md", self.to_markdown()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

pub fn table_markdown(t: &Table) -> String {
    let better = if t.higher_is_better {
        "higher is better"
    } else {
        "lower is better"
    };
    let mut out = format!(
        "\n### {}\n\n{} ({better}); baseline: {}\n\n| case | n | min | median | max | median / baseline |\n|---|---|---|---|---|---|\n",
        t.title, t.unit, t.baseline
    );
    for r in &t.rows {
        match &r.outcome {
            Outcome::Measured(f) => {
                let ratio = match (f.ratio, &r.baseline) {
                    (Some(x), Some(b)) => format!("{x:.2} (of {b})"),
                    (Some(x), None) => format!("{x:.2}"),
                    (None, _) => "baseline".into(),
                };
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {ratio} |\n",
                    cell(&r.case),
                    f.samples,
                    format_value(&t.unit, f.min),
                    format_value(&t.unit, f.median),
                    format_value(&t.unit, f.max),
                ));
            }
            Outcome::NotRun { reason } => {
                out.push_str(&format!(
                    "| {} | - | - | - | - | {} |\n",
                    cell(&r.case),
                    cell(reason)
                ));
            }
        }
    }
    out
}

/// Text fit for a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            date: "2026-12-06T10:00:00Z".into(),
            cpu_model: "Test CPU".into(),
            cores: 2,
            memory_mib: 24_000,
            kernel: "6.1.0".into(),
            containerd: vec!["1.6.20".into()],
            runc: "1.1.5".into(),
            shim: "/x/release/containerd-shim-warden-v1".into(),
            bench_build: "release".into(),
            git_revision: "abc1234".into(),
            load_before: "0.10 0.20 0.30".into(),
            load_after: "1.00 0.50 0.40".into(),
        }
    }

    fn report() -> Report {
        let mut latency = Table::new("ctr run --rm", "ms", "runc");
        latency.measured("runc", &Samples(vec![80.0, 70.0, 90.0]));
        latency.measured("warden warm", &Samples(vec![60.0, 64.0, 56.0]));
        latency.not_run("Go example", "not built (make examples)");
        let mut memory = Table::new("PSS per pod", "MB", "runc, 1 pod");
        memory.measured("runc, 1 pod", &Samples(vec![12.0]));
        memory.measured("runc, 10 pods", &Samples(vec![4.0]));
        memory
            .measured("warden, 10 pods", &Samples(vec![5.0]))
            .against("runc, 10 pods");
        let mut s = Section::new("latency", "Start latency");
        s.table(latency);
        s.table(memory);
        s.note("a note | with a bar");
        s.charts.push(("start".into(), "start-latency.png".into()));
        let ratio = s
            .find("ctr run --rm")
            .and_then(|t| t.figure("warden warm"))
            .and_then(|f| f.ratio);
        Report {
            machine: machine(),
            runs: 3,
            sections_run: vec!["latency".into()],
            sections: vec![s],
            targets: vec![
                Target::at_most("warm start / runc", 0.75, "x", ratio),
                Target::at_most("PSS per pod at 50 pods", 8.0, "MB", None),
            ],
        }
    }

    #[test]
    fn ratios_are_medians_over_the_rows_baseline() {
        let r = report();
        let s = r
            .sections
            .iter()
            .find(|s| s.id == "latency")
            .expect("section");
        let t = s.find("ctr run --rm").expect("table");
        assert_eq!(t.figure("runc").and_then(|f| f.ratio), None);
        let warm = t.figure("warden warm").expect("measured");
        assert_eq!((warm.min, warm.median, warm.max), (56.0, 60.0, 64.0));
        assert_eq!(warm.ratio, Some(60.0 / 80.0));
        assert_eq!(t.figure("Go example"), None);
        let m = s.find("PSS per pod").expect("table");
        assert_eq!(
            m.figure("warden, 10 pods").and_then(|f| f.ratio),
            Some(1.25)
        );
        assert_eq!(r.targets[0].met, Some(true));
        assert_eq!(r.targets[1].met, None);
    }

    #[test]
    fn json_holds_every_figure_with_its_baseline_and_the_machine() {
        let json: serde_json::Value =
            serde_json::from_str(&report().to_json().expect("json")).expect("parses");
        assert_eq!(json["machine"]["cpu_model"], "Test CPU");
        assert_eq!(json["machine"]["containerd"][0], "1.6.20");
        let rows = &json["sections"][0]["tables"][0]["rows"];
        assert_eq!(json["sections"][0]["tables"][0]["baseline"], "runc");
        assert_eq!(rows[1]["case"], "warden warm");
        assert_eq!(rows[1]["status"], "measured");
        assert_eq!(rows[1]["median"], 60.0);
        assert_eq!(rows[1]["ratio"], 0.75);
        assert_eq!(rows[2]["status"], "not_run");
        assert_eq!(rows[2]["reason"], "not built (make examples)");
        let memory = &json["sections"][0]["tables"][1]["rows"];
        assert_eq!(memory[2]["baseline"], "runc, 10 pods");
        assert!(memory[1].get("baseline").is_none());
        assert_eq!(json["targets"][0]["met"], true);
        assert!(json["targets"][1]["value"].is_null());
    }

    #[test]
    fn markdown_shows_rows_reasons_charts_and_the_machine() {
        let md = report().to_markdown();
        assert!(md.contains("| CPU | Test CPU |"), "{md}");
        assert!(
            md.contains("| runc | 3 | 70.0 | 80.0 | 90.0 | baseline |"),
            "{md}"
        );
        assert!(
            md.contains("| warden warm | 3 | 56.0 | 60.0 | 64.0 | 0.75 |"),
            "{md}"
        );
        assert!(
            md.contains("| Go example | - | - | - | - | not built (make examples) |"),
            "{md}"
        );
        assert!(md.contains("| 1.25 (of runc, 10 pods) |"), "{md}");
        assert!(md.contains("![start](start-latency.png)"), "{md}");
        assert!(md.contains("- a note | with a bar"), "{md}");
        assert!(
            md.contains("| warm start / runc (at most 0.75 x) | 0.75 x | yes |"),
            "{md}"
        );
    }

    #[test]
    fn values_are_written_to_the_units_precision() {
        assert_eq!(format_value("ms", 79.14), "79.1");
        assert_eq!(format_value("ms", 4.637), "4.64");
        assert_eq!(format_value("req/s", 21487.4), "21487");
        assert_eq!(format_value("MB", 19.24), "19.2");
    }
}
