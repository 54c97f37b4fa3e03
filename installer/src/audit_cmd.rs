//! `warden audit ...`: verify the audit log's chain and show its records.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use warden_audit::{DEFAULT_AUDIT_LOG, Record, Summary, verify_file};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the log's hash chain: every line carries the SHA-256 of the line before.
    ///
    /// Exits 0 and prints a summary (records, writers, time span, and the last line's
    /// hash, which an auditor can write down and later check with --pin). Exits 1 naming
    /// the first bad line and why: not JSON, missing prev, chain broken (edited, removed
    /// or reordered lines), truncated last line, or missing anchor.
    Verify(VerifyArgs),
    /// Show records as an aligned table (or JSON), optionally filtered.
    ///
    /// Does not verify the chain; run `warden audit verify` for that.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Audit log to verify.
    #[arg(long, short = 'f', value_name = "FILE", env = "WARDEN_AUDIT_LOG", default_value = DEFAULT_AUDIT_LOG)]
    pub file: PathBuf,
    /// Also require a line with this SHA-256 (hex), as printed earlier as "last hash":
    /// proves that line is still in the log, unchanged, and nothing was cut before it.
    #[arg(long, value_name = "HASH", value_parser = parse_hash)]
    pub pin: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = VerifyFormat::Text)]
    pub output: VerifyFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VerifyFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Audit log to read.
    #[arg(long, short = 'f', value_name = "FILE", env = "WARDEN_AUDIT_LOG", default_value = DEFAULT_AUDIT_LOG)]
    pub file: PathBuf,
    /// Only records of this pod (name).
    #[arg(long, value_name = "POD")]
    pub pod: Option<String>,
    /// Only records of pods in this namespace.
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,
    /// Only records whose image contains this text.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Only this event (create, start, exit, delete, deny, limit, install, config-write, ...).
    #[arg(long, value_name = "EVENT")]
    pub event: Option<String>,
    /// Only this decision (allow or deny).
    #[arg(long, value_name = "DECISION")]
    pub decision: Option<String>,
    /// Only records at or after this time (RFC 3339, e.g. 2026-11-25T00:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub since: Option<DateTime<FixedOffset>>,
    /// Only records before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub until: Option<DateTime<FixedOffset>>,
    /// Output format: an aligned table, or a JSON array of the records as written.
    #[arg(long, short = 'o', value_enum, default_value_t = ShowFormat::Table)]
    pub output: ShowFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ShowFormat {
    Table,
    Json,
}

fn parse_hash(s: &str) -> std::result::Result<String, String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!("{s:?} is not a SHA-256 hash (64 hex digits)"))
    }
}

fn parse_time(s: &str) -> std::result::Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-11-25T01:45:00Z: {e}"))
}

impl AuditCommand {
    /// Runs the command, writing its report to `out`; returns the process exit status.
    pub fn run(&self, out: &mut dyn Write) -> Result<u8> {
        match self {
            AuditCommand::Verify(args) => verify(args, out),
            AuditCommand::Show(args) => show(args, out),
        }
    }
}

/// `warden audit verify`.
pub fn verify(args: &VerifyArgs, out: &mut dyn Write) -> Result<u8> {
    let file = args.file.display().to_string();
    match verify_file(&args.file, args.pin.as_deref()) {
        Ok(sum) => {
            match args.output {
                VerifyFormat::Json => {
                    let mut doc = serde_json::to_value(&sum)?;
                    doc["file"] = json!(file);
                    doc["ok"] = json!(true);
                    doc["span_seconds"] = json!(span(&sum).map(|d| d.num_seconds()));
                    writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
                }
                VerifyFormat::Text => write_summary(out, &file, &sum)?,
            }
            Ok(0)
        }
        Err(e) if e.line == 0 || matches!(e.kind, warden_audit::VerifyErrorKind::Io(_)) => {
            // Not a verdict on the content: the log could not be read at all.
            Err(anyhow::Error::new(e).context(format!("reading the audit log {file}")))
        }
        Err(e) => {
            match args.output {
                VerifyFormat::Json => {
                    let doc = json!({
                        "file": file,
                        "ok": false,
                        "line": e.line,
                        "error": e.kind.to_string(),
                    });
                    writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
                }
                VerifyFormat::Text => {
                    writeln!(out, "audit log {file}: FAILED")?;
                    writeln!(out, "  line {}: {}", e.line, e.kind)?;
                }
            }
            eprintln!(
                "error: audit log {file} does not verify: line {}: {}",
                e.line, e.kind
            );
            Ok(1)
        }
    }
}

fn span(sum: &Summary) -> Option<chrono::TimeDelta> {
    let first = DateTime::parse_from_rfc3339(sum.first_time.as_deref()?).ok()?;
    let last = DateTime::parse_from_rfc3339(sum.last_time.as_deref()?).ok()?;
    Some(last - first)
}

fn write_summary(out: &mut dyn Write, file: &str, sum: &Summary) -> Result<()> {
    let counts = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{} {v}", if k.is_empty() { "(none)" } else { k }))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(out, "audit log {file}: OK")?;
    writeln!(out, "  records:   {} ({} bytes)", sum.records, sum.bytes)?;
    writeln!(
        out,
        "  nodes:     {}",
        sum.nodes.iter().cloned().collect::<Vec<_>>().join(", ")
    )?;
    writeln!(out, "  writers:   {}", counts(&sum.writers))?;
    writeln!(out, "  events:    {}", counts(&sum.events))?;
    writeln!(
        out,
        "  from:      {}",
        sum.first_time.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "  to:        {}{}",
        sum.last_time.as_deref().unwrap_or("-"),
        span(sum)
            .map(|d| format!(" ({})", human_span(d)))
            .unwrap_or_default()
    )?;
    writeln!(out, "  last hash: {}", sum.last_hash)?;
    if let Some(line) = sum.pinned_line {
        writeln!(out, "  pinned:    found at line {line}")?;
    }
    Ok(())
}

/// `3d 4h 5m 6s`, leaving out leading zero units.
fn human_span(d: chrono::TimeDelta) -> String {
    let total = d.num_seconds();
    if total < 0 {
        return format!("-{}", human_span(-d));
    }
    let (days, h, m, s) = (
        total / 86400,
        total % 86400 / 3600,
        total % 3600 / 60,
        total % 60,
    );
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if h > 0 || !parts.is_empty() {
        parts.push(format!("{h}h"));
    }
    if m > 0 || !parts.is_empty() {
        parts.push(format!("{m}m"));
    }
    parts.push(format!("{s}s"));
    parts.join(" ")
}

impl ShowArgs {
    fn matches(&self, r: &Record) -> bool {
        let eq = |want: &Option<String>, got: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| got.as_deref() == Some(w.as_str()))
        };
        if !eq(&self.pod, &r.pod_name)
            || !eq(&self.namespace, &r.pod_namespace)
            || !eq(&self.decision, &r.decision)
        {
            return false;
        }
        if let Some(ev) = &self.event
            && *ev != r.event
        {
            return false;
        }
        if let Some(img) = &self.image
            && !r.image.as_deref().is_some_and(|i| i.contains(img.as_str()))
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(t) = DateTime::parse_from_rfc3339(&r.time) else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        true
    }
}

/// `warden audit show`.
pub fn show(args: &ShowArgs, out: &mut dyn Write) -> Result<u8> {
    if let (Some(s), Some(u)) = (args.since, args.until)
        && s > u
    {
        bail!("--since {s} is after --until {u}");
    }
    let file = File::open(&args.file)
        .with_context(|| format!("opening the audit log {}", args.file.display()))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    let mut rows: Vec<[String; COLUMNS]> = Vec::new();
    let mut first_json = true;
    let mut skipped = 0u64;
    if args.output == ShowFormat::Json {
        write!(out, "[")?;
    }
    for (i, line) in reader.split(b'\n').enumerate() {
        let line =
            line.with_context(|| format!("reading the audit log {}", args.file.display()))?;
        let Ok(rec) = serde_json::from_slice::<Record>(&line) else {
            skipped += 1;
            eprintln!(
                "warning: {}:{}: not an audit record, skipped (run `warden audit verify`)",
                args.file.display(),
                i + 1
            );
            continue;
        };
        if !args.matches(&rec) {
            continue;
        }
        match args.output {
            ShowFormat::Json => {
                // The line exactly as written (all fields, `prev` included), not a re-encoding.
                out.write_all(if first_json { b"\n  " } else { b",\n  " })?;
                out.write_all(&line)?;
                first_json = false;
            }
            ShowFormat::Table => rows.push(row(&rec)),
        }
    }
    match args.output {
        ShowFormat::Json => writeln!(out, "{}]", if first_json { "" } else { "\n" })?,
        ShowFormat::Table => write_table(out, &rows)?,
    }
    if skipped > 0 {
        eprintln!("warning: {skipped} line(s) were not audit records");
    }
    Ok(0)
}

const COLUMNS: usize = 8;
const HEADER: [&str; COLUMNS] = [
    "TIME", "EVENT", "WRITER", "POD", "IMAGE", "PROFILE", "DECISION", "DETAIL",
];

fn row(r: &Record) -> [String; COLUMNS] {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let pod = match (&r.pod_namespace, &r.pod_name) {
        (Some(ns), Some(p)) => format!("{ns}/{p}"),
        (None, Some(p)) => p.clone(),
        (Some(ns), None) => format!("{ns}/-"),
        (None, None) => r
            .container_id
            .as_deref()
            .map(short_id)
            .unwrap_or_else(|| "-".into()),
    };
    [
        r.time.clone(),
        r.event.clone(),
        r.writer.clone(),
        pod,
        dash(&r.image),
        dash(&r.profile),
        dash(&r.decision),
        detail(r),
    ]
}

fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `sha256:4b1c0a2e9f3d…` (12 hex digits are plenty to tell digests apart by eye).
fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}…", &hex[..12]),
        _ => d.to_owned(),
    }
}

/// The event-specific rest of a record, in one cell.
fn detail(r: &Record) -> String {
    let mut parts = Vec::new();
    if let Some(rule) = &r.rule {
        parts.push(format!("rule={rule}"));
    }
    if let Some(reason) = &r.reason {
        parts.push(reason.replace('\n', " "));
    }
    if let Some(c) = r.exit_code {
        parts.push(format!("exit={c}"));
    }
    if let Some(d) = r.duration_ms {
        parts.push(format!("{d}ms"));
    }
    if let Some(f) = &r.file {
        let before = r
            .digest_before
            .as_deref()
            .map(short_digest)
            .unwrap_or_else(|| "(none)".into());
        let after = r
            .digest_after
            .as_deref()
            .map(short_digest)
            .unwrap_or_else(|| "(none)".into());
        if r.digest_before.is_some() || r.digest_after.is_some() {
            parts.push(format!("{f} {before} -> {after}"));
        } else {
            parts.push(f.clone());
        }
    }
    if let Some(restart) = &r.restart {
        parts.push(format!("restart: {restart}"));
    }
    if let Some(m) = &r.module_digest {
        parts.push(format!("module={}", short_digest(m)));
    }
    if let Some(g) = &r.grants {
        parts.push(format!("grants: {g}"));
    }
    if let Some(c) = &r.container_id
        && (r.pod_name.is_some() || r.pod_namespace.is_some())
    {
        parts.push(format!("container={}", short_id(c)));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

fn write_table(out: &mut dyn Write, rows: &[[String; COLUMNS]]) -> Result<()> {
    let mut widths = HEADER.map(|h| h.chars().count());
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[&str]| -> std::io::Result<()> {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths.iter()).enumerate() {
            if i + 1 == COLUMNS {
                s.push_str(cell); // last column: no padding
            } else {
                s.push_str(cell);
                s.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(&HEADER)?;
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&cells)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_audit::{append, event};

    fn log(dir: &std::path::Path) -> PathBuf {
        let path = dir.join("audit.jsonl");
        let recs = [
            (
                "2026-11-25T01:00:00.000000Z",
                "shim",
                event::CREATE,
                Some("payments"),
                Some("api-1"),
                Some("reg/api:1"),
                Some("allow"),
            ),
            (
                "2026-11-25T02:00:00.000000Z",
                "shim",
                event::DENY,
                Some("payments"),
                Some("api-2"),
                Some("reg/api:2"),
                Some("deny"),
            ),
            (
                "2026-11-25T03:00:00.000000Z",
                "shim",
                event::EXIT,
                Some("web"),
                Some("front"),
                Some("reg/web:1"),
                None,
            ),
            (
                "2026-11-25T04:00:00.000000Z",
                "installer",
                event::CONFIG_WRITE,
                None,
                None,
                None,
                None,
            ),
        ];
        for (time, w, ev, ns, pod, image, decision) in recs {
            let mut r = Record {
                time: time.into(),
                node: "n1".into(),
                writer: w.into(),
                event: ev.into(),
                pod_namespace: ns.map(Into::into),
                pod_name: pod.map(Into::into),
                image: image.map(Into::into),
                decision: decision.map(Into::into),
                file: (ev == event::CONFIG_WRITE).then(|| "/etc/containerd/config.toml".into()),
                digest_after: (ev == event::CONFIG_WRITE)
                    .then(|| format!("sha256:{}", "ab".repeat(32))),
                exit_code: (ev == event::EXIT).then_some(0),
                ..Record::default()
            };
            append(&path, &mut r).unwrap();
        }
        path
    }

    fn show_args(file: PathBuf) -> ShowArgs {
        ShowArgs {
            file,
            pod: None,
            namespace: None,
            image: None,
            event: None,
            decision: None,
            since: None,
            until: None,
            output: ShowFormat::Table,
        }
    }

    #[test]
    fn show_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        let t = |s: &str| Some(parse_time(s).unwrap());
        // (filter, number of data rows)
        let cases: Vec<(ShowArgs, usize)> = vec![
            (show_args(path.clone()), 5), // anchor + 4
            (
                ShowArgs {
                    namespace: Some("payments".into()),
                    ..show_args(path.clone())
                },
                2,
            ),
            (
                ShowArgs {
                    pod: Some("front".into()),
                    ..show_args(path.clone())
                },
                1,
            ),
            (
                ShowArgs {
                    image: Some("reg/api".into()),
                    ..show_args(path.clone())
                },
                2,
            ),
            (
                ShowArgs {
                    event: Some("deny".into()),
                    ..show_args(path.clone())
                },
                1,
            ),
            (
                ShowArgs {
                    decision: Some("allow".into()),
                    ..show_args(path.clone())
                },
                1,
            ),
            (
                ShowArgs {
                    since: t("2026-11-25T02:00:00Z"),
                    ..show_args(path.clone())
                },
                3,
            ),
            (
                ShowArgs {
                    until: t("2026-11-25T02:00:00Z"),
                    ..show_args(path.clone())
                },
                2,
            ),
            (
                ShowArgs {
                    since: t("2026-11-25T03:00:00+01:00"),
                    until: t("2026-11-25T03:00:00Z"),
                    ..show_args(path.clone())
                },
                1,
            ),
        ];
        for (i, (args, want)) in cases.into_iter().enumerate() {
            let mut out = Vec::new();
            assert_eq!(show(&args, &mut out).unwrap(), 0);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.lines().count(), want + 1, "case {i}:\n{text}");
            assert!(text.starts_with("TIME"), "case {i}:\n{text}");
        }
    }

    #[test]
    fn show_table_is_aligned_and_json_is_raw() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        let mut out = Vec::new();
        show(&show_args(path.clone()), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let col = lines[0].find("EVENT").unwrap();
        for l in &lines[1..] {
            assert_eq!(&l[col - 2..col], "  ", "{text}");
            assert_ne!(&l[col..col + 1], " ", "{text}");
        }
        assert!(text.contains("payments/api-2"), "{text}");
        assert!(
            text.contains("/etc/containerd/config.toml (none) -> sha256:abababababab…"),
            "{text}"
        );

        let mut out = Vec::new();
        show(
            &ShowArgs {
                output: ShowFormat::Json,
                event: Some("exit".into()),
                ..show_args(path)
            },
            &mut out,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(v[0]["pod_name"], "front");
        assert_eq!(v[0]["prev"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn verify_reports_ok_and_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        let args = VerifyArgs {
            file: path.clone(),
            pin: None,
            output: VerifyFormat::Text,
        };
        let mut out = Vec::new();
        assert_eq!(verify(&args, &mut out).unwrap(), 0);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(": OK"), "{text}");
        assert!(text.contains("records:   5"), "{text}");
        assert!(text.contains("writers:   installer 1, shim 4"), "{text}");
        assert!(text.contains("(3h 0m 0s)"), "{text}");

        let data = std::fs::read_to_string(&path)
            .unwrap()
            .replacen("api-1", "api-X", 1);
        std::fs::write(&path, data).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            verify(
                &VerifyArgs {
                    output: VerifyFormat::Json,
                    ..args
                },
                &mut out
            )
            .unwrap(),
            1
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["line"], 3);

        let missing = VerifyArgs {
            file: dir.path().join("nope"),
            pin: None,
            output: VerifyFormat::Text,
        };
        let err = verify(&missing, &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
    }

    #[test]
    fn spans_read_well() {
        assert_eq!(human_span(chrono::TimeDelta::seconds(59)), "59s");
        assert_eq!(human_span(chrono::TimeDelta::seconds(3661)), "1h 1m 1s");
        assert_eq!(human_span(chrono::TimeDelta::seconds(90061)), "1d 1h 1m 1s");
    }
}
