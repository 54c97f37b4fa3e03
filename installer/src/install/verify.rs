//! `warden verify`: is warden installed as the state says? The disk against the state (the
//! shim's digest, every config file warden wrote, the `warden` runtime still registered as
//! wanted) and containerd against the handler (it knows it and accepts a pod with it).
//! Exits 1 naming each problem. Writes nothing.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use super::args::VerifyArgs;
use super::context::{self, Refusal};
use super::outcome::Outcome;
use crate::containerd_check;
use crate::containerd_config::plan_install;
use crate::containerd_config::source::host_path;
use crate::digest;
use crate::paths;
use crate::state::{Phase, State};
use warden_common::lock::HostLock;

/// One check and its result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail: detail.into(),
    }
}

/// `warden verify`.
pub fn verify(args: &VerifyArgs) -> Result<Outcome> {
    let node = &args.node;
    context::check_root(node)?;
    context::check_state_dir(node)?;
    let store = context::store(node);
    let _shared =
        HostLock::shared_if_present(store.dir(), node.lock_timeout(), &mut context::tell_waiting)
            .map_err(Refusal::from)?;
    let mut checks = Vec::new();
    match store.load().map_err(Refusal::from)? {
        None => checks.push(check(
            "state",
            false,
            format!(
                "not installed: no state in {} (run `warden install`)",
                store.dir().display()
            ),
        )),
        Some(state) => {
            if let Ok((layout, _, _)) = context::detect_layout(node) {
                store
                    .validate(&state, &context::scope(node, &layout))
                    .map_err(Refusal::from)?;
            }
            disk_checks(args, &state, &mut checks)
        }
    }
    let ok = checks.iter().all(|c| c.ok);
    let mut lines: Vec<String> = checks
        .iter()
        .map(|c| {
            format!(
                "{} {}: {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            )
        })
        .collect();
    lines.push(if ok {
        "verified: warden is installed as its state says".to_owned()
    } else {
        let failed = checks.iter().filter(|c| !c.ok).count();
        format!("not verified: {failed} check(s) failed")
    });
    Ok(Outcome {
        code: if ok { 0 } else { 1 },
        json: json!({"ok": ok, "checks": checks}),
        lines,
    })
}

fn disk_checks(args: &VerifyArgs, state: &State, checks: &mut Vec<Check>) {
    let root = &args.node.root;
    let mut phase = format!("phase {}", state.phase);
    if let Some(v) = &state.verification {
        phase.push_str(&format!(", verification {} at {}", v.result, v.at));
    }
    if let Some(error) = &state.last_error {
        phase.push_str(&format!(", last error: {error}"));
    }
    checks.push(check("state", state.phase == Phase::Verified, phase));
    if state.restart_pending {
        checks.push(check(
            "restart",
            false,
            "the config changed and containerd was not restarted since (run `warden install`)",
        ));
    }

    match &state.binary {
        None => checks.push(check("binary", false, "the state records no shim")),
        Some(record) => {
            let host = host_path(root, &record.path);
            let (ok, detail) = match digest::of_file(&host) {
                Ok(Some(d)) if d == record.digest => (
                    true,
                    format!(
                        "{} is {}",
                        record.path.display(),
                        warden_common::digest::short(&d)
                    ),
                ),
                Ok(Some(d)) => (
                    false,
                    format!(
                        "{} is {}, the state says {}",
                        record.path.display(),
                        warden_common::digest::short(&d),
                        warden_common::digest::short(&record.digest)
                    ),
                ),
                Ok(None) => (false, format!("{} is missing", record.path.display())),
                Err(e) => (
                    false,
                    format!("{}: cannot read: {e}", record.path.display()),
                ),
            };
            checks.push(check("binary", ok, detail));
        }
    }

    for record in &state.files {
        let host = paths::write_target(root, &record.path);
        let (ok, detail) = match digest::of_file(&host) {
            Ok(Some(d)) if d == record.digest_after => (
                true,
                format!("{} is as warden wrote it", record.path.display()),
            ),
            Ok(Some(_)) => (
                false,
                format!("{} changed since warden wrote it", record.path.display()),
            ),
            Ok(None) => (false, format!("{} is missing", record.path.display())),
            Err(e) => (
                false,
                format!("{}: cannot read: {e}", record.path.display()),
            ),
        };
        checks.push(check("config file", ok, detail));
    }

    match context::detect_layout(&args.node) {
        Err(e) => checks.push(check("config", false, e.to_string())),
        Ok((layout, _, _)) => match plan_install(root, &layout, &state.install_dir) {
            Ok(plan) if plan.is_noop() => checks.push(check(
                "config",
                true,
                format!(
                    "{} registers the `warden` runtime as installed",
                    layout.target.path().display()
                ),
            )),
            Ok(plan) => checks.push(check(
                "config",
                false,
                format!(
                    "the `warden` runtime is not registered as installed; install would change:\n{}",
                    plan.render_diff().trim_end()
                ),
            )),
            Err(e) => checks.push(check("config", false, e.to_string())),
        },
    }

    if args.disk_only {
        return;
    }
    let socket = match (&args.node.containerd_socket, &state.containerd_socket) {
        (Some(s), _) | (None, Some(s)) => s.clone(),
        (None, None) => match context::detect_layout(&args.node) {
            Ok((layout, _, _)) => context::socket(&args.node, root, &layout),
            Err(_) => Path::new("/run/containerd/containerd.sock").to_path_buf(),
        },
    };
    let runtime_path = state
        .binary
        .as_ref()
        .map(|b| b.path.display().to_string())
        .unwrap_or_default();
    match containerd_check::check_installed(
        &host_path(root, &socket),
        &runtime_path,
        args.node.verify_timeout(),
    ) {
        Ok(report) => checks.push(check("containerd", true, report.summary())),
        Err(e) => checks.push(check("containerd", false, e.to_string())),
    }
}
