//! `warden policy ...`: validate the node policy and show what a namespace would get.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use warden_common::names::DEFAULT_POLICY_PATH;
use warden_policy::{Effective, Policy, PolicyError, Profile, SocketRule};

/// Exit status of `policy check` when the policy is valid but `--fail-on-deny` was given
/// and the pod would be refused: distinct from 1 (invalid policy or error) so that CI can
/// tell the two apart.
pub const EXIT_DENIED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate the node policy, and show what a pod in a namespace would get.
    ///
    /// Exits 1 with `FILE:LINE: message` naming the key when the policy does not load
    /// (the shim then refuses every workload). With --namespace, prints the profile a pod
    /// there gets (optionally asking for --profile, as the `warden.dev/profile`
    /// annotation does) and its grants, or the denial and the rule behind it.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy file to check.
    #[arg(long, value_name = "FILE", env = "WARDEN_POLICY", default_value = DEFAULT_POLICY_PATH)]
    pub policy: PathBuf,
    /// Kubernetes namespace (for `ctr`, the containerd namespace) to evaluate.
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,
    /// Profile the pod asks for (the `warden.dev/profile` annotation).
    #[arg(long, short = 'p', value_name = "PROFILE", requires = "namespace")]
    pub profile: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Exit with status 3 when the evaluated pod would be denied.
    #[arg(long, requires = "namespace")]
    pub fail_on_deny: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

impl PolicyCommand {
    /// Runs the command, writing its report to `out`; returns the process exit status.
    pub fn run(&self, out: &mut dyn Write) -> Result<u8> {
        match self {
            PolicyCommand::Check(args) => check(args, out),
        }
    }
}

/// `warden policy check`.
pub fn check(args: &CheckArgs, out: &mut dyn Write) -> Result<u8> {
    let policy = match Policy::load(&args.policy) {
        Ok(p) => p,
        Err(e) => return report_invalid(args, &e, out),
    };
    let evaluated = args
        .namespace
        .as_deref()
        .map(|ns| (ns, policy.effective(ns, args.profile.as_deref())));
    match args.output {
        Format::Json => {
            let mut doc = json!({
                "policy": args.policy.display().to_string(),
                "valid": true,
                "profiles": policy.profiles().map(|(n, _)| n).collect::<Vec<_>>(),
                "namespaces": policy
                    .namespaces()
                    .map(|(n, ns)| (n.to_owned(), json!({ "default": ns.default })))
                    .collect::<serde_json::Map<_, _>>(),
            });
            if let Some((ns, result)) = &evaluated {
                doc["check"] = check_json(ns, args.profile.as_deref(), result);
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Format::Text => {
            let names: Vec<&str> = policy.profiles().map(|(n, _)| n).collect();
            writeln!(
                out,
                "policy {}: OK ({} profile{}{}{}, {} namespace table{})",
                args.policy.display(),
                names.len(),
                plural(names.len()),
                if names.is_empty() { "" } else { ": " },
                names.join(", "),
                policy.namespaces().count(),
                plural(policy.namespaces().count()),
            )?;
            if let Some((ns, result)) = &evaluated {
                write_check_text(out, ns, args.profile.as_deref(), result)?;
            }
        }
    }
    let denied = matches!(evaluated, Some((_, Err(_))));
    Ok(if denied && args.fail_on_deny {
        EXIT_DENIED
    } else {
        0
    })
}

fn report_invalid(args: &CheckArgs, e: &PolicyError, out: &mut dyn Write) -> Result<u8> {
    let hint = if e.is_not_found() {
        " (without a policy file the shim allows only the built-in strict profile)"
    } else {
        " (the shim refuses every workload until this is fixed)"
    };
    match args.output {
        Format::Json => {
            let doc = json!({
                "policy": args.policy.display().to_string(),
                "valid": false,
                "error": {
                    "file": e.file(),
                    "line": e.line(),
                    "key": e.key(),
                    "message": e.message(),
                    "text": e.to_string(),
                },
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Format::Text => {}
    }
    // The `FILE:LINE: message` line goes to stderr in every format, like any error.
    eprintln!("error: {e}{hint}");
    Ok(1)
}

fn write_check_text(
    out: &mut dyn Write,
    ns: &str,
    requested: Option<&str>,
    result: &std::result::Result<Effective, warden_policy::Denial>,
) -> Result<()> {
    let asked = requested
        .map(|p| format!(", asking for profile '{p}'"))
        .unwrap_or_default();
    match result {
        Err(d) => {
            writeln!(out, "namespace '{ns}'{asked}: DENIED")?;
            writeln!(out, "  profile: {}", d.profile)?;
            writeln!(out, "  rule:    {}", d.rule)?;
            writeln!(out, "  reason:  {}", d.reason)?;
        }
        Ok(e) => {
            writeln!(
                out,
                "namespace '{ns}'{asked}: ALLOWED with profile '{}' ({})",
                e.profile,
                match e.selected_by {
                    warden_policy::SelectedBy::Annotation => "requested by annotation",
                    warden_policy::SelectedBy::NamespaceDefault => "the namespace's default",
                    warden_policy::SelectedBy::BuiltIn => "built-in: grants nothing",
                }
            )?;
            for (label, value) in profile_rows(&e.grants) {
                writeln!(out, "  {label:<10} {value}")?;
            }
        }
    }
    Ok(())
}

/// The grants of a profile as label/value rows, `none` where nothing is granted.
fn profile_rows(p: &Profile) -> Vec<(&'static str, String)> {
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let rules = |r: &[SocketRule]| list(r.iter().map(ToString::to_string).collect());
    vec![
        ("env", list(p.env.clone())),
        (
            "mounts",
            list(
                p.mounts
                    .iter()
                    .map(|m| format!("{} ({})", m.path, m.access.as_str()))
                    .collect(),
            ),
        ),
        (
            "modules",
            match &p.modules {
                None => "any".to_owned(),
                Some(m) if m.is_empty() => "none (empty list)".to_owned(),
                Some(m) => m.join(", "),
            },
        ),
        ("native", yes_no(p.native)),
        ("connect", rules(&p.network.connect)),
        ("listen", rules(&p.network.listen)),
        ("dns", yes_no(p.network.dns)),
        (
            "http",
            list(p.http.outbound.iter().map(ToString::to_string).collect()),
        ),
        ("wagi", yes_no(p.http.wagi)),
        (
            "memory",
            p.limits
                .memory
                .map(format_bytes)
                .unwrap_or_else(|| "no limit".into()),
        ),
        ("cpu_time", opt_duration(p.limits.cpu_time)),
        ("deadline", opt_duration(p.limits.deadline)),
        ("request_deadline", opt_duration(p.limits.request_deadline)),
        (
            "fuel",
            p.limits
                .fuel
                .map(|f| f.to_string())
                .unwrap_or_else(|| "no limit".into()),
        ),
    ]
}

fn check_json(
    ns: &str,
    requested: Option<&str>,
    result: &std::result::Result<Effective, warden_policy::Denial>,
) -> Value {
    match result {
        Err(d) => json!({
            "namespace": ns,
            "requested_profile": requested,
            "decision": "deny",
            "profile": d.profile,
            "rule": d.rule.as_str(),
            "reason": d.reason,
        }),
        Ok(e) => {
            let p = &e.grants;
            json!({
                "namespace": ns,
                "requested_profile": requested,
                "decision": "allow",
                "profile": e.profile,
                "selected_by": e.selected_by.as_str(),
                "grants": {
                    "env": p.env,
                    "mounts": p.mounts,
                    "modules": p.modules,
                    "native": p.native,
                    "network": {
                        "connect": p.network.connect.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "listen": p.network.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "dns": p.network.dns,
                    },
                    "http": {
                        "outbound": p.http.outbound.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "wagi": p.http.wagi,
                    },
                    "limits": {
                        "memory": p.limits.memory,
                        "cpu_time_ms": p.limits.cpu_time.map(|d| d.as_millis() as u64),
                        "deadline_ms": p.limits.deadline.map(|d| d.as_millis() as u64),
                        "request_deadline_ms": p.limits.request_deadline.map(|d| d.as_millis() as u64),
                        "fuel": p.limits.fuel,
                    },
                },
            })
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn opt_duration(d: Option<Duration>) -> String {
    d.map(format_duration).unwrap_or_else(|| "no limit".into())
}

/// `1m30s`, `500ms`, `2s`: the policy's own spelling.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return format!("{}us", d.as_micros());
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// `64Mi (67108864 bytes)`: binary units when exact, else plain bytes.
pub fn format_bytes(n: u64) -> String {
    for (unit, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if n >= size && n.is_multiple_of(size) {
            return format!("{}{unit} ({n} bytes)", n / size);
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
version = 1
[namespaces.payments]
default = "payments-api"
[profiles.payments-api]
namespaces = ["payments"]
env = ["LOG_LEVEL", "APP_*"]
mounts = [{ path = "/config" }, { path = "/data", access = "rw" }]
[profiles.payments-api.network]
connect = ["10.0.0.0/8:5432", "127.0.0.1:8080-8089"]
[profiles.payments-api.limits]
memory = "64Mi"
cpu_time = "2s"
"#;

    fn run(text: &str, ns: Option<&str>, profile: Option<&str>, output: Format) -> (u8, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, text).unwrap();
        let args = CheckArgs {
            policy: path,
            namespace: ns.map(Into::into),
            profile: profile.map(Into::into),
            output,
            fail_on_deny: true,
        };
        let mut out = Vec::new();
        let code = check(&args, &mut out).unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    #[test]
    fn check_cases() {
        // (namespace, profile, exit, fragments of the text output)
        type Case<'a> = (Option<&'a str>, Option<&'a str>, u8, &'a [&'a str]);
        let cases: [Case; 5] = [
            (
                None,
                None,
                0,
                &["OK (1 profile: payments-api, 1 namespace table)"],
            ),
            (
                Some("payments"),
                None,
                0,
                &[
                    "ALLOWED with profile 'payments-api' (the namespace's default)",
                    "env        LOG_LEVEL, APP_*",
                    "mounts     /config (ro), /data (rw)",
                    "connect    10.0.0.0/8:5432, 127.0.0.1:8080-8089",
                    "memory     64Mi (67108864 bytes)",
                    "cpu_time   2s",
                    "deadline   no limit",
                ],
            ),
            (
                Some("other"),
                None,
                0,
                &["ALLOWED with profile 'strict'", "env        none"],
            ),
            (
                Some("other"),
                Some("payments-api"),
                EXIT_DENIED,
                &["DENIED", "rule:    profile.namespace"],
            ),
            (
                Some("payments"),
                Some("nope"),
                EXIT_DENIED,
                &["DENIED", "rule:    profile.unknown"],
            ),
        ];
        for (ns, profile, want_code, fragments) in cases {
            let (code, text) = run(POLICY, ns, profile, Format::Text);
            assert_eq!(code, want_code, "{ns:?} {profile:?}: {text}");
            for f in fragments {
                assert!(text.contains(f), "{ns:?} {profile:?}: {text:?} lacks {f:?}");
            }
        }
    }

    #[test]
    fn check_json_output() {
        let (code, text) = run(POLICY, Some("payments"), None, Format::Json);
        assert_eq!(code, 0);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["check"]["decision"], "allow");
        assert_eq!(v["check"]["selected_by"], "namespace-default");
        assert_eq!(
            v["check"]["grants"]["network"]["connect"][1],
            "127.0.0.1:8080-8089"
        );
        assert_eq!(v["check"]["grants"]["limits"]["cpu_time_ms"], 2000);

        let (code, text) = run(
            "version = 1\n[profiles.x]\nfoo = 1\n",
            None,
            None,
            Format::Json,
        );
        assert_eq!(code, 1);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["valid"], false);
        assert_eq!(v["error"]["line"], 3);
        assert_eq!(v["error"]["key"], "profiles.x.foo");
    }

    #[test]
    fn formats() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_micros(250)), "250us");
        assert_eq!(format_bytes(64 << 20), "64Mi (67108864 bytes)");
        assert_eq!(format_bytes(500_000_000), "500000000 bytes");
    }
}
