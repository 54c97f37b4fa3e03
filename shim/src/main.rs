//! `containerd-shim-warden-v1`: runs WebAssembly workloads under containerd, deny by default.
//!
//! The shim is a containerd shim v2 built on runwasi's `containerd-shimkit`. Warden supplies
//! its own `Instance`: the host side decides what a container may do and prepares the
//! compiled module ([`instance`]); the container process runs wasmtime with exactly those
//! grants ([`executor`], [`run`]).

mod admission;
mod audit;
mod cache;
mod cgi;
mod compile;
mod container;
mod content_store;
mod dns;
mod engine;
mod entrypoint;
mod executor;
mod exit_cell;
mod exit_code;
mod facts;
mod grant_paths;
mod guest_output;
mod http_egress;
mod http_server;
mod instance;
mod launch;
mod pid_fd;
mod preopen;
mod report;
mod run;
mod runner;
mod safe_open;
mod settings;
mod wasi_ctx;
mod watchdog;

use containerd_shimkit::sandbox::cli::{Version, shim_main};

fn main() {
    let version = Version {
        version: env!("CARGO_PKG_VERSION"),
        revision: option_env!("WARDEN_GIT_REVISION").unwrap_or("unknown"),
    };
    shim_main::<instance::WardenInstance>("warden", version, None);
}
