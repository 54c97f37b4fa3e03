//! What the host side hands to the container: the decided workload, passed to the zygote as
//! serialized arguments of the build request (open files travel as fds).
//!
//! Nothing in here comes from the workload's control after the decision: the grants are the
//! policy's, the granted image directories were opened by the shim, and the artifact is an fd
//! to bytes the shim compiled itself. The audit log is not in here: the runner reports to the
//! shim over a pipe, and the shim writes the records.

use std::fs::File;

use containerd_shimkit::sandbox::InstanceConfig;
use containerd_shimkit::zygote::WireFd;
use serde::{Deserialize, Serialize};
use warden_policy::Grants;

use crate::grant_paths::Preopen;

#[derive(Serialize, Deserialize)]
pub struct Launch {
    pub id: String,
    pub cfg: InstanceConfig,
    pub workload: Workload,
}

#[derive(Serialize, Deserialize)]
pub enum Workload {
    /// A native container: the pod sandbox, or a profile with `native = true`.
    Native,
    Wasm(Box<WasmWorkload>),
}

#[derive(Serialize, Deserialize)]
pub struct WasmWorkload {
    /// The artifact the shim compiled, as a sealed memfd copy: the runner cannot write to it
    /// nor reach the cache file it came from.
    pub artifact: WireFd<File>,
    /// Module or component, as classified on the host side.
    pub kind: crate::entrypoint::WasmKind,
    /// The engine flavour the artifact was compiled for: the runner deserializes with it.
    pub flavor: crate::engine::Flavor,
    pub args: Vec<String>,
    /// The decided grants: env, network and limits are applied from here; granted paths
    /// come resolved in `preopens`.
    pub grants: Grants,
    /// Granted directories: image ones already open, mount ones to open in the container.
    pub preopens: Vec<Preopen>,
    /// The module's path in the container and its digest, for messages.
    pub module_path: String,
    pub digest: warden_common::Digest,
    /// The name resolver's configuration, read on the host side from the node's (or the
    /// pod's, under CRI) files: never the image's.
    pub resolver: crate::dns::ResolverConfig,
    /// How the container asked to be run: as a command, or served as WAGI.
    pub serve: crate::run::Serve,
    /// Where an HTTP service listens (`WARDEN_HTTP_ADDR`, default `0.0.0.0:8080`).
    pub http_addr: std::net::SocketAddr,
    /// The write end of the report pipe to the shim (see [`crate::report`]): the only
    /// descriptor the runner keeps besides stdio.
    pub report: WireFd<File>,
}
