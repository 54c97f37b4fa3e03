//! The libcontainer executor: the code that runs as the container's process, after youki has
//! set up namespaces, cgroups, mounts and pivoted into the rootfs.
//!
//! It never decides anything: the host side already chose between native (the pod sandbox, or
//! a profile that grants `native`) and Wasm, and fixed the grants. A Wasm workload runs in
//! wasmtime here with a WASI context built from those grants only.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use oci_spec::runtime::Spec;
use warden_policy::Grants;
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::launch::{WasmWorkload, Workload};
use crate::run::{Outcome, Program};
use crate::{audit, dns, engine, run, wasi_ctx};

#[derive(Clone)]
pub struct WardenExecutor(Arc<Workload>);

impl WardenExecutor {
    pub fn new(workload: Workload) -> Self {
        Self(Arc::new(workload))
    }
}

impl Executor for WardenExecutor {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        match &*self.0 {
            Workload::Native => DefaultExecutor {}.validate(spec),
            Workload::Wasm(_) => Ok(()),
        }
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        match &*self.0 {
            Workload::Native => DefaultExecutor {}.setup_envs(envs),
            // A guest's environment is exactly what its grants name, built into the WASI
            // context; the runner process's own environment is irrelevant to it.
            Workload::Wasm(_) => Ok(()),
        }
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        match &*self.0 {
            Workload::Native => {
                log::info!("running native container (pod sandbox or granted native)");
                DefaultExecutor {}.exec(spec)
            }
            Workload::Wasm(w) => {
                let WasmWorkload {
                    artifact,
                    component,
                    args,
                    grants,
                    module_path,
                    digest,
                    audit_log,
                    audit,
                } = &**w;
                log::info!(
                    "running {module_path} ({digest}) with grants: {}",
                    grants.summary()
                );
                let outcome = match audit_log.try_clone() {
                    Ok(log_file) => {
                        let ctx = audit.clone();
                        let on_deny: wasi_ctx::DenyHook =
                            Arc::new(move |rule: &'static str, what: String| {
                                log::warn!("denied by policy ({rule}): {what}");
                                let rec = ctx.decision("deny", Some(rule), Some(what));
                                audit::append_from_container(&log_file, rec);
                            });
                        run_wasm(artifact, *component, args, grants, on_deny)
                    }
                    Err(e) => Outcome::SetupFailed(format!("audit log descriptor: {e}")),
                };
                if let Some(msg) = outcome.message() {
                    log::error!("{module_path}: {msg}");
                    eprintln!("warden: {module_path}: {msg}");
                }
                if let Outcome::Limit(kind, msg) = &outcome {
                    let mut rec = audit.record(warden_audit::event::LIMIT);
                    rec.rule = Some(kind.rule().to_string());
                    rec.reason = Some(msg.clone());
                    audit::append_from_container(audit_log, rec);
                }
                log::info!(
                    "{module_path} finished with exit code {}",
                    outcome.exit_code()
                );
                std::process::exit(outcome.exit_code())
            }
        }
    }
}

fn run_wasm(
    artifact: &File,
    component: bool,
    args: &[String],
    grants: &Grants,
    on_deny: wasi_ctx::DenyHook,
) -> Outcome {
    let setup = || -> anyhow::Result<(Engine, Program)> {
        let engine = engine::engine_for(engine::Flavor::for_limits(&grants.limits))?;
        let file = artifact.try_clone()?;
        // SAFETY: the artifact was compiled by this shim, on the host side, with the same
        // engine configuration, and is held through an fd the guest cannot reach.
        let program = unsafe {
            if component {
                let mut bytes = Vec::new();
                (&file).read_to_end(&mut bytes)?;
                Program::Component(Component::deserialize(&engine, &bytes)?)
            } else {
                Program::Module(Module::deserialize_open_file(&engine, file)?)
            }
        };
        Ok((engine, program))
    };
    let (engine, program) = match setup() {
        Ok(p) => p,
        Err(e) => return Outcome::SetupFailed(format!("{e:#}")),
    };
    // TODO(dns wiring): the `ResolverConfig` the host side built for this container
    // (`dns::ResolverConfig::for_container`), carried in the workload. Until then names do
    // not resolve (no nameservers, no static entries); IP literals still do.
    let lookup = dns::NameLookup::new(
        dns::ResolverConfig::default(),
        &grants.network,
        on_deny.clone(),
    );
    let wasi = match wasi_ctx::builder(grants, args, on_deny) {
        Ok(w) => w,
        Err(e) => return Outcome::SetupFailed(format!("{e:#}")),
    };
    run::run(&engine, program, wasi, lookup, &grants.limits)
}
