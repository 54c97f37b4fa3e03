//! `warden audit ...`: verify the audit log's chain, print what to pin, show its records.
//!
//! Everything a record says (pod names, images, reasons, paths, rule names) is written by
//! pod authors, so it reaches the terminal escaped: tables and messages through
//! [`escape_for_terminal`], JSON through [`escape_json_for_terminal`] (same JSON value).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, FixedOffset};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use warden_audit::{
    Pin, Record, Summary, VerifyError, escape_for_terminal, escape_json_for_terminal,
    verify_file_pins,
};
use warden_common::names::DEFAULT_AUDIT_LOG;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the log's hash chain: every line carries the SHA-256 of the line before.
    ///
    /// Catches a line edited, removed from the start or the middle, inserted or reordered,
    /// a torn (cut-off) line, and a missing anchor: exits 1 naming the first bad line and
    /// why. Exits 0 with a summary otherwise.
    ///
    /// What the chain alone cannot catch, because whoever can write the file (root on the
    /// node) can redo the hashes: the last line deleted or replaced, lines cut from the end,
    /// forged lines appended with a correct prev, the whole log rewritten from scratch. For
    /// those, keep the output of `warden audit head` off the node and pass it back with
    /// --pin: a pinned line proves itself and every line before it; pinning the anchor
    /// (line 1) proves the log was not rewritten from scratch. No pin proves lines written
    /// after it: they are reported as not proven, and a forged append passes even with a
    /// pin.
    Verify(VerifyArgs),
    /// Verify the log and print the pins to keep off the node.
    ///
    /// Prints the last line's number, hash and time, the anchor's hash and node, and the
    /// `warden audit verify --pin ...` command that checks them later. Store the printed pins somewhere the node cannot write (a ticket, a git repository,
    /// another machine) and pass them later to `warden audit verify --pin`. Exits 1 (and
    /// prints no pins) if the log does not verify.
    Head(HeadArgs),
    /// Show records as an aligned table (or JSON), optionally filtered.
    ///
    /// Does not verify the chain; run `warden audit verify` for that. Control characters
    /// and bidi overrides in a record are shown escaped (`\x1b`, `\u{202e}`); JSON output
    /// escapes them as JSON `\uXXXX`, which parses to the same value.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Audit log to verify.
    #[arg(long, short = 'f', value_name = "FILE", env = "WARDEN_AUDIT_LOG", default_value = DEFAULT_AUDIT_LOG)]
    pub file: PathBuf,
    /// A line the log must still hold, as kept from `warden audit head`: LINE:HASH (that
    /// line must have that SHA-256) or HASH (some line must). Repeat for several pins.
    ///
    /// Proves the pinned line and every line before it unchanged; lines after the latest
    /// pin are reported as not proven. Pinning the anchor (1:HASH) proves the log was not
    /// rewritten from scratch.
    #[arg(long, value_name = "PIN")]
    pub pin: Vec<Pin>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = VerifyFormat::Text)]
    pub output: VerifyFormat,
}

#[derive(Debug, Args)]
pub struct HeadArgs {
    /// Audit log to read.
    #[arg(long, short = 'f', value_name = "FILE", env = "WARDEN_AUDIT_LOG", default_value = DEFAULT_AUDIT_LOG)]
    pub file: PathBuf,
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

fn parse_time(s: &str) -> std::result::Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-11-25T01:45:00Z: {e}"))
}

impl AuditCommand {
    /// Runs the command, writing its report to `out`; returns the process exit status.
    /// An error's message is escaped for the terminal (it may name paths and log content).
    pub fn run(&self, out: &mut dyn Write) -> Result<u8> {
        let result = match self {
            AuditCommand::Verify(args) => verify(args, out),
            AuditCommand::Head(args) => head(args, out),
            AuditCommand::Show(args) => show(args, out),
        };
        result.map_err(|e| anyhow!("{}", escape_for_terminal(&format!("{e:#}"))))
    }
}

/// A path as shown on the terminal.
fn shown(path: &Path) -> String {
    escape_for_terminal(&path.display().to_string()).into_owned()
}

/// Writes a JSON document, escaped for the terminal.
fn write_json(out: &mut dyn Write, doc: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(doc)?;
    writeln!(out, "{}", escape_json_for_terminal(&text))?;
    Ok(())
}

/// The verdict on a log that does not verify (exit 1), or the error for one that could not
/// be read at all.
fn failed(file: &Path, output: VerifyFormat, e: VerifyError, out: &mut dyn Write) -> Result<u8> {
    let shown_file = shown(file);
    if e.line == 0 || matches!(e.kind, warden_audit::VerifyErrorKind::Io(_)) {
        // Not a verdict on the content: the log could not be read at all.
        return Err(anyhow::Error::new(e).context(format!("reading the audit log {shown_file}")));
    }
    let reason = escape_for_terminal(&e.kind.to_string()).into_owned();
    match output {
        VerifyFormat::Json => write_json(
            out,
            &json!({
                "file": file.display().to_string(),
                "ok": false,
                "line": e.line,
                "error": reason,
            }),
        )?,
        VerifyFormat::Text => {
            writeln!(out, "audit log {shown_file}: FAILED")?;
            writeln!(out, "  line {}: {reason}", e.line)?;
        }
    }
    eprintln!(
        "error: audit log {shown_file} does not verify: line {}: {reason}",
        e.line
    );
    Ok(1)
}

/// `warden audit verify`.
pub fn verify(args: &VerifyArgs, out: &mut dyn Write) -> Result<u8> {
    let sum = match verify_file_pins(&args.file, &args.pin) {
        Ok(sum) => sum,
        Err(e) => return failed(&args.file, args.output, e, out),
    };
    match args.output {
        VerifyFormat::Json => {
            let mut doc = serde_json::to_value(&sum)?;
            doc["file"] = json!(args.file.display().to_string());
            doc["ok"] = json!(true);
            doc["span_seconds"] = json!(span(&sum).map(|d| d.num_seconds()));
            let (proven, unproven) = match sum.proven() {
                Some((p, u)) => (json!(p), json!(u)),
                None => (json!(null), json!(null)),
            };
            doc["proven_records"] = proven;
            doc["unproven_records"] = unproven;
            write_json(out, &doc)?;
        }
        VerifyFormat::Text => write_summary(out, &shown(&args.file), &sum)?,
    }
    Ok(0)
}

/// What `--pin` proved, in one sentence.
fn proven_sentence(sum: &Summary) -> String {
    match sum.proven() {
        None => "chain only (no --pin): a log whose last line was deleted or replaced, with \
                 forged lines appended, or rewritten from scratch would pass too; keep \
                 `warden audit head` off the node and verify with --pin"
            .to_owned(),
        Some((p, 0)) => format!(
            "{p} record{} proven up to the pinned line {p}, the last line",
            plural(p)
        ),
        Some((p, u)) => format!(
            "{p} record{} proven up to the pinned line {p}; {u} record{} after it {} not proven by any pin (a node root could have written them)",
            plural(p),
            plural(u),
            if u == 1 { "is" } else { "are" }
        ),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `warden audit head`.
pub fn head(args: &HeadArgs, out: &mut dyn Write) -> Result<u8> {
    let sum = match verify_file_pins(&args.file, &[]) {
        Ok(sum) => sum,
        Err(e) => return failed(&args.file, args.output, e, out),
    };
    let anchor_pin = format!("1:{}", sum.anchor_hash);
    let last_pin = format!("{}:{}", sum.records, sum.last_hash);
    match args.output {
        VerifyFormat::Json => write_json(
            out,
            &json!({
                "file": args.file.display().to_string(),
                "ok": true,
                "last_line": sum.records,
                "last_hash": sum.last_hash,
                "last_time": sum.last_time,
                "anchor_hash": sum.anchor_hash,
                "anchor_node": sum.anchor_node,
                "anchor_time": sum.first_time,
                "pins": [anchor_pin, last_pin],
            }),
        )?,
        VerifyFormat::Text => {
            let file = shown(&args.file);
            let esc = |s: &str| escape_for_terminal(s).into_owned();
            writeln!(out, "audit log {file}: OK")?;
            writeln!(out, "  last line:   {}", sum.records)?;
            writeln!(out, "  last hash:   {}", sum.last_hash)?;
            writeln!(
                out,
                "  last time:   {}",
                esc(sum.last_time.as_deref().unwrap_or("-"))
            )?;
            writeln!(out, "  anchor hash: {}", sum.anchor_hash)?;
            writeln!(out, "  anchor node: {}", esc(&sum.anchor_node))?;
            writeln!(
                out,
                "  anchor time: {}",
                esc(sum.first_time.as_deref().unwrap_or("-"))
            )?;
            writeln!(
                out,
                "Keep these pins off this node, then check the log against them later:"
            )?;
            writeln!(
                out,
                "  warden audit verify --file {} --pin {anchor_pin} --pin {last_pin}",
                shell_word(&file)
            )?;
        }
    }
    Ok(0)
}

/// `s` as one shell word: as it is when it is plainly safe, else single-quoted.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
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
            .map(|(k, v)| {
                if k.is_empty() {
                    format!("(none) {v}")
                } else {
                    format!("{} {v}", escape_for_terminal(k))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let esc = |s: Option<&str>| escape_for_terminal(s.unwrap_or("-")).into_owned();
    writeln!(out, "audit log {file}: OK")?;
    writeln!(out, "  records:   {} ({} bytes)", sum.records, sum.bytes)?;
    writeln!(
        out,
        "  nodes:     {}",
        sum.nodes
            .iter()
            .map(|n| escape_for_terminal(n))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(out, "  writers:   {}", counts(&sum.writers))?;
    writeln!(out, "  events:    {}", counts(&sum.events))?;
    writeln!(out, "  from:      {}", esc(sum.first_time.as_deref()))?;
    writeln!(
        out,
        "  to:        {}{}",
        esc(sum.last_time.as_deref()),
        span(sum)
            .map(|d| format!(" ({})", human_span(d)))
            .unwrap_or_default()
    )?;
    writeln!(out, "  anchor:    {}", sum.anchor_hash)?;
    writeln!(out, "  last hash: {}", sum.last_hash)?;
    if !sum.pinned_lines.is_empty() {
        let lines: Vec<String> = sum
            .pinned_lines
            .iter()
            .map(|l| format!("line {l}"))
            .collect();
        writeln!(out, "  pins:      found at {}", lines.join(", "))?;
    }
    writeln!(out, "  proven:    {}", proven_sentence(sum))?;
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
    let file = warden_audit::open_for_reading(&args.file)
        .with_context(|| format!("opening the audit log {}", shown(&args.file)))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    let mut rows: Vec<[String; COLUMNS]> = Vec::new();
    let mut first_json = true;
    let mut skipped = 0u64;
    if args.output == ShowFormat::Json {
        write!(out, "[")?;
    }
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.with_context(|| format!("reading the audit log {}", shown(&args.file)))?;
        let Ok(rec) = serde_json::from_slice::<Record>(&line) else {
            skipped += 1;
            eprintln!(
                "warning: {}:{}: not an audit record, skipped (run `warden audit verify`)",
                shown(&args.file),
                i + 1
            );
            continue;
        };
        if !args.matches(&rec) {
            continue;
        }
        match args.output {
            ShowFormat::Json => {
                // The line as written (all fields, `prev` included), not a re-encoding; only
                // DEL, C1 and bidi controls inside strings become \uXXXX escapes, which
                // parse to the same value. A line that parsed is UTF-8.
                out.write_all(if first_json { b"\n  " } else { b",\n  " })?;
                let text = String::from_utf8_lossy(&line);
                out.write_all(escape_json_for_terminal(&text).as_bytes())?;
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
    // Every cell from the record, escaped before the widths are measured.
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
    .map(|cell| match escape_for_terminal(&cell) {
        std::borrow::Cow::Borrowed(_) => cell,
        std::borrow::Cow::Owned(escaped) => escaped,
    })
}

fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `sha256:4b1c0a2e9f3d…` (12 hex digits are plenty to tell digests apart by eye).
fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) if hex.chars().count() > 12 => {
            format!("{alg}:{}…", hex.chars().take(12).collect::<String>())
        }
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
        parts.push(reason.clone());
    }
    if let Some(c) = r.exit_code {
        parts.push(format!("exit={c}"));
    }
    if let Some(e) = &r.ended {
        parts.push(format!("ended={e}"));
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
            pin: vec![],
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
            pin: vec![],
            output: VerifyFormat::Text,
        };
        let err = verify(&missing, &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
    }

    #[test]
    fn show_escapes_what_pods_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut r = Record {
            time: "2026-11-25T01:00:00.000000Z".into(),
            node: "n1".into(),
            writer: "shim".into(),
            event: event::DENY.into(),
            pod_namespace: Some("evil\u{202e}gnp.exe".into()),
            pod_name: Some("\x1b]0;owned\x07".into()),
            image: Some("reg/x:1\x1b[2J".into()),
            rule: Some("rule\u{9b}31m".into()),
            reason: Some("line one\nline two\x7f".into()),
            file: Some("/tmp/\u{2066}x".into()),
            module_digest: Some("sha256:ééééééééééééééééé".into()),
            ..Record::default()
        };
        append(&path, &mut r).unwrap();
        let mut out = Vec::new();
        show(&show_args(path.clone()), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && warden_audit::is_unsafe_for_terminal(c)),
            "{text:?}"
        );
        assert_eq!(text.lines().count(), 3, "{text}");
        for want in [
            "evil\\u{202e}gnp.exe/\\x1b]0;owned\\x07",
            "reg/x:1\\x1b[2J",
            "rule=rule\\u{9b}31m",
            "line one\\nline two\\x7f",
            "/tmp/\\u{2066}x",
            "module=sha256:éééééééééééé…",
        ] {
            assert!(text.contains(want), "{want}\n{text}");
        }

        let mut out = Vec::new();
        show(
            &ShowArgs {
                output: ShowFormat::Json,
                ..show_args(path)
            },
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && warden_audit::is_unsafe_for_terminal(c)),
            "{text:?}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[1]["pod_namespace"], "evil\u{202e}gnp.exe");
        assert_eq!(v[1]["rule"], "rule\u{9b}31m");
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_word("/var/log/warden/audit.jsonl"),
            "/var/log/warden/audit.jsonl"
        );
        assert_eq!(shell_word("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_word("/tmp/it's"), "'/tmp/it'\\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn spans_read_well() {
        assert_eq!(human_span(chrono::TimeDelta::seconds(59)), "59s");
        assert_eq!(human_span(chrono::TimeDelta::seconds(3661)), "1h 1m 1s");
        assert_eq!(human_span(chrono::TimeDelta::seconds(90061)), "1d 1h 1m 1s");
    }
}
