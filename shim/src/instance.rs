//! warden's `containerd_shimkit::sandbox::Instance`: the host side of a container.
//!
//! `new` runs on the host with the bundle readable: it reads the spec, finds the entrypoint in
//! the rootfs, decides what the container may do, compiles the module into the shim's cache,
//! and creates the container in a zygote with the decided workload. A refusal fails the
//! create, and its message reaches `ctr` and, through CRI, the container status.

use std::sync::OnceLock;
use std::time::Instant;

use chrono::{DateTime, Utc};
use containerd_shimkit::sandbox::sync::WaitableCell;
use containerd_shimkit::sandbox::{Error as SandboxError, Instance, InstanceConfig};
use containerd_shimkit::zygote::WireFd;
use oci_spec::runtime::Spec;
use sha2::{Digest, Sha256};
use warden_policy::{Grants, STRICT_PROFILE};
use wasmtime::Engine;

use crate::cache::{Cache, Outcome as CacheOutcome};
use crate::container::Container;
use crate::entrypoint::{self, Kind};
use crate::facts::Facts;
use crate::launch::{Launch, WasmWorkload, Workload};
use crate::pid_fd::PidFd;
use crate::settings::Settings;
use crate::{cache, engine};

pub struct WardenInstance {
    id: String,
    container: Container,
    exit: WaitableCell<(u32, DateTime<Utc>)>,
}

/// Why a container may not run: the message names the profile and the rule.
#[derive(Debug)]
pub struct Refusal {
    pub profile: String,
    pub rule: &'static str,
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "warden refused to run the container: {} (profile \"{}\", rule {})",
            self.reason, self.profile, self.rule
        )
    }
}

impl Instance for WardenInstance {
    async fn new(id: String, cfg: &InstanceConfig) -> Result<Self, SandboxError> {
        let started = Instant::now();
        let (id2, cfg2) = (id.clone(), cfg.clone());
        let launch = tokio::task::spawn_blocking(move || prepare(&id2, &cfg2))
            .await
            .map_err(|e| SandboxError::Others(format!("preparing container {id}: {e}")))??;
        let container = Container::build(launch)
            .map_err(|e| SandboxError::Others(format!("creating container {id}: {e:#}")))?;
        log::info!("container {id} created in {:?}", started.elapsed());
        Ok(Self {
            id,
            container,
            exit: WaitableCell::new(),
        })
    }

    async fn start(&self) -> Result<u32, SandboxError> {
        log::info!("starting container {}", self.id);
        // Whatever happens below, a waiter must get an exit status.
        let guard = self.exit.clone().set_guard_with(|| (137, Utc::now()));
        let pid = self.container.pid()?;
        let pidfd = PidFd::new(pid)?;
        self.container.start()?;
        let exit = self.exit.clone();
        let id = self.id.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let code = match pidfd.wait().await {
                Ok(code) => code,
                Err(e) => {
                    log::error!("waiting for container {id}: {e}");
                    137
                }
            };
            log::info!("container {id} exited with status {code}");
            let _ = exit.set((code as u32, Utc::now()));
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
        self.container.delete()?;
        Ok(())
    }

    async fn wait(&self) -> (u32, DateTime<Utc>) {
        *self.exit.wait().await
    }
}

/// The host-side decision and preparation; blocking (it may compile).
fn prepare(id: &str, cfg: &InstanceConfig) -> Result<Launch, SandboxError> {
    let settings = Settings::from_env();
    let spec = Spec::load(cfg.bundle.join("config.json"))
        .map_err(|e| SandboxError::InvalidArgument(format!("reading the OCI spec: {e}")))?;
    let facts = Facts::from_spec(&spec, &cfg.namespace);
    let rootfs = entrypoint::rootfs_of(
        &cfg.bundle,
        spec.root()
            .as_ref()
            .map(|r| r.path().as_path())
            .unwrap_or("rootfs".as_ref()),
    );
    let arg0 = facts.args.first().cloned().unwrap_or_default();
    let entry = entrypoint::read(&rootfs, &arg0, &facts.cwd, &facts.env)
        .map_err(|e| SandboxError::InvalidArgument(format!("{e:#}")))?;

    let profile = STRICT_PROFILE.to_string();
    let grants = Grants::strict();
    let refuse = |rule: &'static str, reason: String| {
        let r = Refusal {
            profile: profile.clone(),
            rule,
            reason,
        };
        log::warn!("container {id}: {r}");
        SandboxError::FailedPrecondition(r.to_string())
    };

    let workload = match entry.kind {
        Kind::Precompiled => {
            return Err(refuse(
                "precompiled",
                format!(
                    "{} is {}; warden runs only code it compiled itself, ship the .wasm instead",
                    entry.path,
                    entry.kind.describe()
                ),
            ));
        }
        Kind::Elf | Kind::Script if facts.sandbox || grants.native => Workload::Native,
        Kind::Elf | Kind::Script => {
            return Err(refuse(
                "native",
                format!(
                    "{} is {} and the profile does not allow native code",
                    entry.path,
                    entry.kind.describe()
                ),
            ));
        }
        Kind::Unknown => {
            return Err(refuse(
                "module.invalid",
                format!("{} is {}", entry.path, entry.kind.describe()),
            ));
        }
        Kind::Module | Kind::Component => {
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(&entry.bytes)));
            let artifact = compile_cached(&settings, &entry, &digest).map_err(|e| {
                refuse(
                    "module.invalid",
                    format!("{} is not a valid {}: {e:#}", entry.path, entry.kind.noun()),
                )
            })?;
            Workload::Wasm(WasmWorkload {
                artifact: WireFd::new(artifact),
                component: entry.kind == Kind::Component,
                args: facts.args.clone(),
                grants,
                module_path: entry.path.clone(),
                digest,
            })
        }
    };
    Ok(Launch {
        id: id.to_string(),
        cfg: cfg.clone(),
        workload,
    })
}

fn host_engine() -> anyhow::Result<&'static Engine> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    if let Some(e) = ENGINE.get() {
        return Ok(e);
    }
    let e = engine::new_engine()?;
    Ok(ENGINE.get_or_init(|| e))
}

/// The compiled artifact for the entrypoint, from the cache or freshly compiled.
fn compile_cached(
    settings: &Settings,
    entry: &entrypoint::Entrypoint,
    digest: &str,
) -> anyhow::Result<std::fs::File> {
    let engine = host_engine()?;
    let compat = engine::compat_key(engine);
    let digest_hex = digest.trim_start_matches("sha256:");
    let started = Instant::now();
    match Cache::open(&settings.cache_dir, settings.cache_max_bytes) {
        Ok(cache) => {
            let (file, outcome) =
                cache.get_or_compile(engine, entry.kind, &entry.bytes, digest_hex, &compat)?;
            match outcome {
                CacheOutcome::Hit => log::info!(
                    "compile cache hit for {} ({digest}) in {:?}",
                    entry.path,
                    started.elapsed()
                ),
                CacheOutcome::Compiled => log::info!(
                    "compiled {} ({digest}) in {:?}, stored in the compile cache",
                    entry.path,
                    started.elapsed()
                ),
            }
            Ok(file)
        }
        Err(e) => {
            log::warn!("compile cache unusable, compiling without it: {e:#}");
            let bytes = cache::compile(engine, entry.kind, &entry.bytes)?;
            cache::anonymous_file(&bytes)
        }
    }
}
