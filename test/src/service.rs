//! An HTTP service container (`wasi:http` or WAGI) on a free port of 127.0.0.1: started with
//! `--net-host` and `WARDEN_HTTP_ADDR`, waited for until it listens, stopped with SIGTERM.
//! The HTTP suites and the examples' tests share it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::containerd::{Containerd, RunOpts, RunResult, Running};
use crate::http::{free_port, wait_listening};

/// A running service.
pub struct Service<'a> {
    containerd: &'a Containerd,
    pub running: Running,
    pub addr: SocketAddr,
}

impl<'a> Service<'a> {
    /// Runs `image` as container `id` with `module` as its only argument, under `profile`
    /// (none: the namespace's), and waits up to `timeout` until it listens. Panics with the
    /// run's result and containerd's log when it exits or does not listen in time.
    pub fn start(
        containerd: &'a Containerd,
        image: &str,
        id: &str,
        module: &str,
        profile: Option<&str>,
        opts: RunOpts,
        timeout: Duration,
    ) -> Service<'a> {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut opts = opts
            .env("WARDEN_HTTP_ADDR", &addr.to_string())
            .args([module]);
        opts.net_host = true;
        if let Some(p) = profile {
            opts = opts.annotation("warden.dev/profile", p);
        }
        let mut running = containerd.spawn_run(image, id, opts);
        let start = Instant::now();
        while !wait_listening(addr, Duration::from_millis(200)) {
            if running.has_exited() || start.elapsed() > timeout {
                let r = running.wait(Duration::from_secs(5));
                panic!(
                    "{image} did not listen on {addr}: {r:?}\n--- containerd log ---\n{}",
                    containerd.log_tail(40)
                );
            }
        }
        Service {
            containerd,
            running,
            addr,
        }
    }

    /// The container's id.
    pub fn id(&self) -> String {
        self.running.id.clone()
    }

    /// SIGTERM, then what the container printed and its exit code.
    pub fn stop(self) -> RunResult {
        self.containerd.kill_task(&self.running.id, "SIGTERM");
        self.running
            .wait(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"))
    }
}
