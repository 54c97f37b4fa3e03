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
mod cgroup_prime;
mod compat_memo;
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
mod oom;
mod pid_fd;
mod preopen;
mod report;
mod run;
mod runner;
mod safe_open;
mod settings;
mod shim_actions;
mod wasi_ctx;
mod watchdog;

use containerd_shimkit::sandbox::cli::{Version, shim_main};

/// Library backtraces (`std::backtrace::Backtrace::capture`, which error types call) are
/// off unless the operator asked for them by name: with `RUST_BACKTRACE=1` in containerd's
/// environment, wasmtime captures one each time a component store is dropped, which is every
/// HTTP request (a stack walk costing about 6% of a small request's time). Panics still print
/// their backtrace under `RUST_BACKTRACE`.
fn library_backtraces_off_by_default() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: the first thing `main` does, before any thread exists (nothing here starts
        // threads before `main`), so no other thread reads the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

/// The runtime's name, as `-info` reports it and errors begin.
const RUNTIME: &str = "warden";

fn main() {
    library_backtraces_off_by_default();
    let version = Version {
        version: env!("CARGO_PKG_VERSION"),
        revision: option_env!("WARDEN_GIT_REVISION").unwrap_or("unknown"),
    };
    // `start` and `delete` are answered without containerd-shimkit's zygote and logger, and
    // so is whatever a person types (`--help`, `--version`, a wrong flag).
    let args: Vec<_> = std::env::args_os().collect();
    let version_text = format!(
        "{}:\n  Runtime: {RUNTIME}\n  Version: {}\n  Revision: {}\n",
        warden_common::names::SHIM_BINARY,
        version.version,
        version.revision
    );
    match shim_actions::handle(RUNTIME, &version_text, &args) {
        shim_actions::Next::Exit(code) => std::process::exit(code),
        shim_actions::Next::Info => {}
        shim_actions::Next::Daemon => {
            // The zygote first, while this is the only thread (`shim_main` finds it made);
            // then the daemon's first container's cgroup join starts waiting, as early as it
            // can, beside containerd's create request on its way (see `cgroup_prime`).
            containerd_shimkit::zygote::Zygote::init();
            cgroup_prime::start_for_first_container();
        }
    }
    shim_main::<instance::WardenInstance>(RUNTIME, version, None);
}
