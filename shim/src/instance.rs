//! warden's `containerd_shimkit::sandbox::Instance`: the host side of a container.
//!
//! `new` runs on the host with the bundle readable: it reads the spec, finds the entrypoint in
//! the rootfs, decides what the container may do, compiles the module into the shim's cache,
//! and creates the container in a zygote with the decided workload. A refusal fails the
//! create, and its message reaches `ctr` and, through CRI, the container status.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use containerd_shimkit::sandbox::{Error as SandboxError, Instance, InstanceConfig};
use containerd_shimkit::zygote::WireFd;
use oci_spec::runtime::Spec;
use warden_audit::{Throttle, escape_for_terminal, event};
use warden_common::Digest;
use warden_policy::{Policy, Rule};

use crate::admission::{self, Admitted, Gathered, Refusal};
use crate::compile::CompileError;
use crate::container::Container;
use crate::engine::Flavor;
use crate::entrypoint::{
    self, ContentLayer, Entrypoint, ModuleSource, NotInRootfs, RootfsFile, WasmKind,
};
use crate::exit_cell::ExitCell;
use crate::facts::Facts;
use crate::launch::{Launch, WasmWorkload, Workload};
use crate::oom::OomCounter;
use crate::pid_fd::{PidFd, Status};
use crate::settings::Settings;
use crate::{audit, cache, compile, dns, exit_code, grant_paths, report};

/// The reason of an exit record when the kernel's OOM killer ended the container.
const OOM_KILLED: &str = "killed by the kernel's OOM killer: the container's memory cgroup \
                          limit was reached (the pod's resources.limits.memory; the profile's \
                          limits.memory is warden's own and ends a guest with 135)";

pub struct WardenInstance {
    id: String,
    container: Arc<Container>,
    /// Whether youki's container (its cgroups, its state directory) has been removed. The
    /// exit task holds this lock from before containerd learns of the exit until it has
    /// removed the container; containerd's `Delete` takes it after.
    removed: Arc<tokio::sync::Mutex<bool>>,
    exit: ExitCell,
    audit_log: PathBuf,
    audit: audit::Context,
    started: std::sync::Mutex<Option<Instant>>,
    /// The read end of the container's report pipe, until `start` hands it to its reader.
    reports: std::sync::Mutex<Option<File>>,
    /// The kernel's OOM kill count of the container's memory cgroup, when it can be found.
    oom: Option<OomCounter>,
}

impl Instance for WardenInstance {
    async fn new(id: String, cfg: &InstanceConfig) -> Result<Self, SandboxError> {
        let started = Instant::now();
        // The container's cgroup join waits for a kernel grace period unless one just
        // passed: that wait runs beside the preparation below (for a daemon's first
        // container it started with the daemon), until the container is created.
        let prime = crate::cgroup_prime::for_this_create();
        let (id2, cfg2) = (id.clone(), cfg.clone());
        let (launch, audit, reports, oom) =
            tokio::task::spawn_blocking(move || prepare(&id2, &cfg2))
                .await
                .map_err(|e| SandboxError::Others(format!("preparing container {id}: {e}")))??;
        let prepared = started.elapsed();
        let container = Container::build(launch)
            .map_err(|e| SandboxError::Others(format!("creating container {id}: {e}")))?;
        drop(prime);
        let total = started.elapsed();
        log::info!(
            "container {id} created in {total:?} (warden's preparation {prepared:?}, the \
             container's processes {:?})",
            total.saturating_sub(prepared)
        );
        Ok(Self {
            id,
            container: Arc::new(container),
            removed: Arc::new(tokio::sync::Mutex::new(false)),
            exit: ExitCell::new(),
            audit_log: Settings::from_env().audit_log,
            audit,
            started: std::sync::Mutex::new(None),
            reports: std::sync::Mutex::new(Some(reports)),
            oom,
        })
    }

    async fn start(&self) -> Result<u32, SandboxError> {
        log::info!("starting container {}", self.id);
        // Whatever happens below, a waiter must get an exit status.
        let guard = self.exit.set_guard_with(|| (137, Utc::now()));
        let pid = self.container.pid()?;
        let pidfd = PidFd::new(pid)?;
        // The start is audited before the container runs: warden does not run what it
        // cannot record.
        audit::append(&self.audit_log, self.audit.record(event::START))
            .map_err(|e| unauditable(&e))?;
        let reports = self.reports.lock().ok().and_then(|mut r| r.take());
        let reader = reports.map(|r| spawn_reader(r, &self.audit, &self.audit_log, &pidfd));
        let oom = self.oom.clone();
        let oom_before = oom.as_ref().and_then(OomCounter::kills);
        self.container.start()?;
        let t0 = Instant::now();
        if let Ok(mut s) = self.started.lock() {
            *s = Some(t0);
        }
        let exit = self.exit.clone();
        let id = self.id.clone();
        let (log_path, ctx) = (self.audit_log.clone(), self.audit.clone());
        let (container, removed) = (self.container.clone(), self.removed.clone());
        tokio::spawn(async move {
            let _guard = guard;
            let status = match pidfd.wait().await {
                Ok(status) => status,
                Err(e) => {
                    log::error!("waiting for container {id}: {e}");
                    Status::Code(137)
                }
            };
            let code = status.code();
            log::info!("container {id} exited with status {code}");
            // The runner's last report says how the guest ended; the reader has it once the
            // runner's end of the pipe is closed, which its exit does.
            let summary = match reader {
                Some(r) => tokio::time::timeout(READER_GRACE, r)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default(),
                None => report::Summary::default(),
            };
            let mut rec = ctx.record(event::EXIT);
            rec.exit_code = Some(code.into());
            rec.duration_ms = Some(t0.elapsed().as_millis() as u64);
            // Read before the container's cgroup is removed (below).
            let oom_killed = matches!(
                (oom.as_ref().and_then(OomCounter::kills), oom_before),
                (Some(after), Some(before)) if after > before
            );
            let (ended, reason) = describe_end(status, &summary, oom_killed);
            rec.ended = Some(ended);
            rec.reason = reason;
            if let Err(e) = audit::append(&log_path, rec) {
                log::error!("cannot audit the exit of {id}: {e}");
            }
            // Taken before containerd learns of the exit, so its Delete waits for the removal
            // below instead of starting its own.
            let mut removed = removed.lock_owned().await;
            exit.set((code as u32, Utc::now()));
            // youki's delete (the cgroups, the state directory) now, while containerd and its
            // client turn the exit into a Delete request, rather than inside that request.
            if !*removed {
                match tokio::task::spawn_blocking(move || container.delete()).await {
                    Ok(Ok(())) => *removed = true,
                    // Delete tries again, and reports what fails then.
                    Ok(Err(e)) => log::warn!("removing container {id} at its exit: {e}"),
                    Err(e) => log::warn!("removing container {id} at its exit: {e}"),
                }
            }
        });
        Ok(pid as u32)
    }

    async fn kill(&self, signal: u32) -> Result<(), SandboxError> {
        log::info!("sending signal {signal} to container {}", self.id);
        self.container.kill(signal)?;
        Ok(())
    }

    async fn delete(&self) -> Result<(), SandboxError> {
        log::info!("deleting container {}", self.id);
        let started = Instant::now();
        let mut removed = self.removed.lock().await;
        let at_exit = *removed;
        if !at_exit {
            self.container.delete()?;
            *removed = true;
        }
        drop(removed);
        let removal = started.elapsed();
        self.append(self.audit.record(event::DELETE));
        let how = if at_exit {
            "its processes and cgroups were removed at its exit".to_string()
        } else {
            format!("its processes and cgroups {removal:?}")
        };
        log::info!(
            "container {} deleted in {:?} ({how})",
            self.id,
            started.elapsed()
        );
        Ok(())
    }

    async fn wait(&self) -> (u32, DateTime<Utc>) {
        self.exit.wait().await
    }
}

impl WardenInstance {
    /// Appends a lifecycle record; after create, a failure is logged, not fatal.
    fn append(&self, rec: warden_audit::Record) {
        if let Err(e) = audit::append(&self.audit_log, rec) {
            log::error!("cannot audit container {}: {e}", self.id);
        }
    }
}

/// How long the exit waits for the runner's last reports after the process ended.
const READER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the thread that turns the runner's reports into audit records. If a record cannot
/// be written, the container is killed: warden does not run what it cannot audit.
fn spawn_reader(
    reports: File,
    ctx: &audit::Context,
    log_path: &Path,
    pidfd: &PidFd,
) -> tokio::sync::oneshot::Receiver<report::Summary> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (ctx, log_path) = (ctx.clone(), log_path.to_path_buf());
    let killer = pidfd.try_clone().ok();
    std::thread::spawn(move || {
        let mut sink = report::LogSink(log_path);
        let throttle = Throttle::new(
            warden_audit::DEFAULT_MAX_PER_WINDOW,
            warden_audit::DEFAULT_WINDOW,
        );
        let mut on_failure = |e: &warden_audit::AuditError| {
            log::error!(
                "container {}: the audit log cannot be written ({e}); stopping the container",
                ctx.container_id
            );
            match &killer {
                Some(k) => {
                    if let Err(e) = k.signal(libc::SIGKILL) {
                        log::error!("cannot stop container {}: {e}", ctx.container_id);
                    }
                }
                None => log::error!("cannot stop container {}: no handle", ctx.container_id),
            }
        };
        let summary = report::read_reports(reports, &ctx, &mut sink, throttle, &mut on_failure);
        let _ = tx.send(summary);
    });
    rx
}

/// The `ended` field and reason of an exit record, from the process status, what the runner
/// reported, and whether the kernel's OOM killer acted in the container's memory cgroup
/// meanwhile. Only the runner can say that a status is the guest's own choice: a guest
/// calling `exit(137)` ends `guest_exit`, a SIGKILL ends `killed`.
fn describe_end(
    status: Status,
    summary: &report::Summary,
    oom_killed: bool,
) -> (String, Option<String>) {
    let killed_by = |sig: i32| {
        if oom_killed && sig == libc::SIGKILL {
            format!("{OOM_KILLED} (signal {sig})")
        } else {
            format!("killed by signal {sig}")
        }
    };
    let audit_note = |r: Option<String>| {
        if summary.audit_failed {
            Some(format!(
                "stopped: the audit log could not be written{}",
                r.map(|r| format!("; {r}")).unwrap_or_default()
            ))
        } else {
            r
        }
    };
    let suppressed = (summary.suppressed > 0).then(|| {
        format!(
            "{} run-time refusals not recorded one by one",
            summary.suppressed
        )
    });
    match (status, &summary.ended) {
        (Status::Signaled(sig), _) => ("killed".into(), audit_note(Some(killed_by(sig)))),
        (Status::Exited(code) | Status::Code(code), Some((ended, reported, message)))
            if *reported == code =>
        {
            let reason = match ended {
                report::Ended::GuestExit if code == 0 => suppressed,
                report::Ended::GuestExit => Some(format!("the guest exited with {code}")),
                _ => message
                    .clone()
                    .map(|m| escape_for_terminal(&m).into_owned()),
            };
            (ended.as_str().into(), audit_note(reason))
        }
        // Only the shell-style code is known (the shim's reaper took the status first) and
        // the runner said nothing: past 128 that is a signal, since a runner that exits on
        // its own always reports first.
        (Status::Code(code), None) if code > 128 => {
            ("killed".into(), audit_note(Some(killed_by(code - 128))))
        }
        (Status::Exited(code) | Status::Code(code), _) => {
            ("unreported".into(), audit_note(exit_code::describe(code)))
        }
    }
}

/// The host-side decision and preparation; blocking (it may compile). Every outcome is
/// audited before it takes effect: a container warden cannot audit does not run.
/// What `prepare` hands to the instance: the launch for the zygote, the audit context, the
/// read end of the report pipe, and the container's OOM counter.
type Prepared = (Launch, audit::Context, File, Option<OomCounter>);

fn prepare(id: &str, cfg: &InstanceConfig) -> Result<Prepared, SandboxError> {
    let settings = Settings::from_env();
    let spec = Spec::load(cfg.bundle.join("config.json"))
        .map_err(|e| SandboxError::InvalidArgument(format!("reading the OCI spec: {e}")))?;
    let facts = Facts::from_spec(&spec, &cfg.namespace, id, &settings.cri_namespace);
    // The audit log's node name (NODE_NAME, else the host name), read here on the host
    // side: inside the container the host name is the container's.
    let mut ctx = audit::Context::new(&warden_audit::node_name(), id, &facts);
    let audit_log = &settings.audit_log;

    // Refuses: audits the denial (or fails closed if it cannot), then fails the create.
    let refuse = |ctx: &audit::Context, r: Refusal| {
        log::warn!("container {id}: {r}");
        let mut rec = ctx.decision("deny", Some(r.rule.as_str()), Some(r.reason.clone()));
        rec.profile = r.profile.clone();
        if let Err(e) = audit::append(audit_log, rec) {
            return unauditable(&e);
        }
        SandboxError::FailedPrecondition(r.to_string())
    };

    // 1. Gather: the policy (or why it does not load) and the entrypoint (or why it cannot be
    // read) from its module source.
    let policy = Policy::load_or_strict(&settings.policy).map_err(|e| e.to_string());
    let rootfs = entrypoint::rootfs_of(
        &cfg.bundle,
        spec.root()
            .as_ref()
            .map(|r| r.path().as_path())
            .unwrap_or("rootfs".as_ref()),
    );
    let arg0 = facts.args.first().cloned().unwrap_or_default();
    let entry = RootfsFile {
        rootfs: &rootfs,
        arg0: &arg0,
        cwd: &facts.cwd,
        env: &facts.env,
        max_bytes: settings.max_module_bytes,
    }
    .read()
    .or_else(|missing| {
        // Not a file of the rootfs: the image may carry its module as a Wasm layer.
        if missing.downcast_ref::<NotInRootfs>().is_none() {
            return Err(missing);
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Err(missing);
        };
        let layer = ContentLayer {
            handle: &handle,
            address: &cfg.containerd_address,
            namespace: &cfg.namespace,
            id,
            max_bytes: settings.max_module_bytes,
        };
        match layer.read_layer() {
            Ok(Some(entry)) => Ok(entry),
            Ok(None) => Err(missing),
            Err(e) => Err(anyhow::anyhow!(
                "{missing:#}; reading the image's Wasm layer from containerd failed too: {e:#}"
            )),
        }
    });
    ctx.module_digest = entry
        .as_ref()
        .ok()
        .and_then(|e| e.digest.as_ref().map(Digest::to_string));

    // 2. Admit: a pure decision (see `admission`).
    let admitted = admission::admit(Gathered {
        facts: &facts,
        policy: policy.as_ref().map_err(Clone::clone),
        entry: entry
            .as_ref()
            .map(Entrypoint::facts)
            .map_err(|e| format!("{e:#}")),
    });
    let Admitted {
        profile,
        grants,
        serve,
        http_addr,
        ..
    } = admitted.map_err(|r| refuse(&ctx, r))?;
    // Admission refuses an entrypoint that could not be read.
    let entry = entry.map_err(|e| SandboxError::Others(format!("{e:#}")))?;
    ctx.profile = Some(profile.clone());
    let refuse_with = |ctx: &audit::Context, rule: Rule, reason: String| {
        refuse(
            ctx,
            Refusal {
                profile: Some(profile.clone()),
                rule,
                reason,
            },
        )
    };

    // 3. Place granted paths: image directories opened here without following symlinks,
    // mount paths left to the container process; pseudo file systems refused.
    let resolved = grant_paths::resolve(&grants.mounts, &facts.spec_mounts, &rootfs)
        .map_err(|e| refuse_with(&ctx, Rule::Mounts, e.to_string()))?;
    for path in &resolved.absent {
        log::info!(
            "container {id}: granted path {path} is not in the image nor a mount; not preopened"
        );
    }
    ctx.grants = Some(grants_summary(&grants, &resolved));

    // 4. Compile (Wasm) and assemble what the container process gets.
    let (report_read, report_write) = report::pipe()
        .map_err(|e| SandboxError::Others(format!("creating the report pipe: {e}")))?;
    let workload = match (entry.kind.wasm(), entry.digest) {
        (Some(kind), Some(digest)) => {
            let flavor = Flavor::for_limits(&grants.limits);
            let artifact = match compile_cached(&settings, &entry, kind, &digest, flavor) {
                Ok(a) => a,
                // The module's fault (invalid bytes, a compile past its bounds): a refusal.
                Err(e @ (CompileError::Invalid(_) | CompileError::Bounds(_))) => {
                    let reason = format!("{} is not a valid {}: {e}", entry.path, kind.noun());
                    return Err(refuse_with(&ctx, Rule::ModuleInvalid, reason));
                }
                // The node's: an error of the create, not the module's.
                Err(CompileError::Io(e)) => {
                    return Err(SandboxError::Others(format!(
                        "compiling {}: {e}",
                        entry.path
                    )));
                }
            };
            Workload::Wasm(Box::new(WasmWorkload {
                artifact: WireFd::new(artifact),
                kind,
                flavor,
                args: facts.args.clone(),
                // Outgoing HTTP to a name resolves with the same trusted files as the guest's
                // own lookups.
                resolver: resolver_config(
                    id,
                    grants.network.dns || !grants.http.outbound.is_empty(),
                    &facts,
                ),
                serve,
                http_addr,
                grants,
                preopens: resolved.preopens,
                module_path: entry.path.clone(),
                digest,
                report: WireFd::new(report_write),
            }))
        }
        // Admission let native code through: the pod sandbox, or a profile with native.
        _ if entry.kind.is_native() => Workload::Native,
        // Admission refuses anything else; never run it as anything.
        _ => {
            return Err(SandboxError::Others(format!(
                "{} is {}: admission should have refused it",
                entry.path,
                entry.kind.describe()
            )));
        }
    };

    // 5. Audit the decision: what warden cannot record does not run.
    audit::append(audit_log, ctx.decision("allow", None, None)).map_err(|e| unauditable(&e))?;
    log::info!(
        "container {id}: allowed under profile {profile} ({})",
        ctx.grants.as_deref().unwrap_or("nothing")
    );
    let oom = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .and_then(|p| OomCounter::for_cgroup(&p.to_string_lossy()));
    Ok((
        Launch {
            id: id.to_string(),
            cfg: cfg.clone(),
            workload,
        },
        ctx,
        report_read,
        oom,
    ))
}

/// The resolver configuration for a guest granted `dns`: the pod's `/etc/resolv.conf` and
/// `/etc/hosts` as CRI mounted them (files containerd made on the host), else the node's
/// own. Never the image's. Without `dns`, none is needed.
fn resolver_config(id: &str, dns: bool, facts: &Facts) -> dns::ResolverConfig {
    if !dns {
        return dns::ResolverConfig::default();
    }
    let mounts: Vec<(String, String)> = facts
        .spec_mounts
        .iter()
        .filter(|m| m.kind == "bind" || m.kind.is_empty())
        .filter(|m| m.source.starts_with('/'))
        .map(|m| (m.destination.clone(), m.source.clone()))
        .collect();
    // The node's own files may be symlinks the node's admin made (systemd-resolved's stub):
    // resolved here, on the host, where that is safe.
    let node = |p: &str| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
    match dns::ResolverConfig::for_container(
        &mounts,
        &node("/etc/resolv.conf"),
        &node("/etc/hosts"),
    ) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("container {id}: no resolver configuration, names will not resolve: {e:#}");
            dns::ResolverConfig::default()
        }
    }
}

/// The grants' summary with each granted path as it resolved: `/data:rw (mount)`,
/// `/srv/site->/:ro (image)`, `/x:ro (absent)`.
fn grants_summary(grants: &warden_policy::Grants, resolved: &grant_paths::Resolved) -> String {
    let mut g = grants.clone();
    g.mounts.clear();
    let mut paths: Vec<String> = resolved.preopens.iter().map(|p| p.describe()).collect();
    paths.extend(resolved.absent.iter().map(|a| format!("{a} (absent)")));
    let rest = g.summary();
    match (paths.is_empty(), rest.as_str()) {
        (true, _) => rest,
        (false, "nothing") => format!("mounts={}", paths.join(",")),
        (false, _) => format!("mounts={} {rest}", paths.join(",")),
    }
}

/// The error for a container that cannot be audited: warden runs nothing it cannot record.
fn unauditable(e: &warden_audit::AuditError) -> SandboxError {
    let msg = format!(
        "warden refused to run the container: the audit log cannot be written ({e}); warden does not run workloads it cannot audit"
    );
    log::error!("{msg}");
    SandboxError::FailedPrecondition(msg)
}

/// The compiled artifact for the entrypoint: from the cache in this process when its key is
/// remembered, else from the cache or freshly compiled in a short-lived child process (see
/// [`compile`]).
fn compile_cached(
    settings: &Settings,
    entry: &entrypoint::Entrypoint,
    kind: WasmKind,
    digest: &Digest,
    flavor: Flavor,
) -> Result<std::fs::File, CompileError> {
    let hit = compile::hit_here(
        &settings.cache_dir,
        settings.cache_max_bytes,
        flavor,
        digest,
    );
    let compiled = match hit {
        Some(c) => c,
        None => {
            let module = cache::anonymous_file(&entry.bytes)
                .map_err(|e| CompileError::Io(format!("handing the module over: {e:#}")))?;
            compile::compile_in_child(compile::Request {
                cache_dir: settings.cache_dir.clone(),
                cache_max_bytes: settings.cache_max_bytes,
                module: WireFd::new(module),
                kind,
                flavor,
                digest: *digest,
            })?
        }
    };
    let took = std::time::Duration::from_micros(compiled.micros);
    match compiled.outcome {
        cache::Outcome::Hit => {
            log::info!(
                "compile cache hit for {} ({digest}) in {took:?}",
                entry.path
            )
        }
        cache::Outcome::Compiled => log::info!(
            "compiled {} ({digest}) in {took:?}, stored in the compile cache",
            entry.path
        ),
        cache::Outcome::Uncached => {
            log::info!("compiled {} ({digest}) in {took:?}, not cached", entry.path)
        }
    }
    Ok(compiled.artifact.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Ended, Summary};

    fn summary(ended: Option<(Ended, i32)>) -> Summary {
        Summary {
            ended: ended.map(|(e, c)| (e, c, None)),
            ..Summary::default()
        }
    }

    #[test]
    fn how_a_run_ended_comes_from_the_runner_or_the_signal() {
        let end = |status, s: &Summary| describe_end(status, s, false).0;
        // The runner's word decides, whatever the code.
        let guest = summary(Some((Ended::GuestExit, 137)));
        assert_eq!(end(Status::Exited(137), &guest), "guest_exit");
        assert_eq!(end(Status::Code(137), &guest), "guest_exit");
        // A signal, seen as such or only as a code past 128 with no word from the runner.
        assert_eq!(end(Status::Signaled(9), &guest), "killed");
        assert_eq!(end(Status::Code(137), &summary(None)), "killed");
        // A status with no word and no signal.
        assert_eq!(end(Status::Exited(3), &summary(None)), "unreported");
        // A report for another code is not believed.
        let other = summary(Some((Ended::GuestExit, 3)));
        assert_eq!(end(Status::Exited(124), &other), "unreported");
        let (_, reason) = describe_end(
            Status::Exited(124),
            &summary(Some((Ended::GuestExit, 124))),
            false,
        );
        assert_eq!(reason.as_deref(), Some("the guest exited with 124"));
    }

    #[test]
    fn an_oom_kill_says_so_and_only_a_kill_does() {
        for status in [Status::Signaled(9), Status::Code(137)] {
            let (ended, reason) = describe_end(status, &summary(None), true);
            assert_eq!(ended, "killed");
            let reason = reason.unwrap();
            assert!(
                reason.starts_with("killed by the kernel's OOM killer"),
                "{reason}"
            );
            assert!(reason.ends_with("(signal 9)"), "{reason}");
        }
        // Another signal, or a guest's own exit, is not the OOM killer's.
        let (_, reason) = describe_end(Status::Signaled(15), &summary(None), true);
        assert_eq!(reason.as_deref(), Some("killed by signal 15"));
        let guest = summary(Some((Ended::GuestExit, 137)));
        assert_eq!(
            describe_end(Status::Exited(137), &guest, true).0,
            "guest_exit"
        );
        let (_, reason) = describe_end(Status::Signaled(9), &summary(None), false);
        assert_eq!(reason.as_deref(), Some("killed by signal 9"));
    }
}
