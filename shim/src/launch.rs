//! What the host side hands to the container: the decided workload, passed to the zygote as
//! serialized arguments of the build request (open files travel as fds).
//!
//! Nothing in here comes from the workload's control after the decision: the grants are the
//! policy's, and the artifact is an fd to bytes the shim compiled itself.

use std::fs::File;

use containerd_shimkit::sandbox::InstanceConfig;
use containerd_shimkit::zygote::WireFd;
use serde::{Deserialize, Serialize};
use warden_policy::Grants;

use crate::audit;

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
    /// The artifact the shim compiled (from its cache, or an unlinked file).
    pub artifact: WireFd<File>,
    pub component: bool,
    pub args: Vec<String>,
    pub grants: Grants,
    /// The module's path in the container and its digest, for messages.
    pub module_path: String,
    pub digest: String,
    /// The audit log, opened on the host (read-write, append), for run-time denials and
    /// limits; and what those records name.
    pub audit_log: WireFd<File>,
    pub audit: audit::Context,
}
