//! A private containerd per test: its own config, root, state, sockets and log under a fresh
//! temp dir, driven with `ctr`; stopped and cleaned up on drop, also when the test panics.
//!
//! ```no_run
//! use warden_test::containerd::{Containerd, Options, RunOpts};
//! let containerd = Containerd::start(Options::default());
//! // containerd.import_image(&image);
//! let result = containerd.run("localhost/warden-test/hello:latest", "hello-1", RunOpts::default());
//! assert_eq!(result.code, Some(0), "{result:?}");
//! ```
//!
//! Instances are independent, so tests run in parallel. The runc shim keeps some state
//! outside the instance's directory, keyed by namespace and container id
//! (`/run/containerd/runc/<namespace>/<id>`, the cgroup `/<namespace>/<id>`): give containers
//! ids that are unique across instances, e.g. with [`Containerd::unique_id`].
//!
//! Do not keep a `Containerd` in a `static`: statics are never dropped, so it would be left
//! running.
//!
//! Which containerd runs is chosen by `WARDEN_TEST_CONTAINERD` (see
//! [`crate::containerd_versions`]): the system's 1.6 by default, or 1.7 or 2.1 fetched from
//! Debian's newer suites, whose own `ctr` then drives it. containerd 1.x gets a config of
//! `version = 2`, 2.x one of `version = 3`; [`Options::extra_config`] is always written with
//! version 2's CRI tables and is moved to version 3's for 2.x ([`extra_config_to_v3`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::containerd_versions::{self, Binaries, Release, Version};
use crate::image::{ImageBuilder, ImageInfo};
use crate::node_namespace::NodeNamespace;
pub use crate::node_namespace::NodePath;
use crate::util::{self, Error};

/// The runc runtime that containerd ships.
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
/// The runtime type of warden's shim.
pub const WARDEN_RUNTIME: &str = warden_common::names::RUNTIME_TYPE;
/// The containerd namespace used unless [`Options::namespace`] says otherwise.
pub const DEFAULT_NAMESPACE: &str = "warden-test";
/// How long [`Containerd::start`] waits for containerd to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a `ctr` command other than `run` may take.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of containerd's log quoted in error messages.
pub const LOG_TAIL_LINES: usize = 60;

/// How to start containerd.
#[derive(Debug, Clone)]
pub struct Options {
    /// Prepended to containerd's `PATH`, so that `--runtime io.containerd.warden.v1` finds
    /// `containerd-shim-warden-v1` there (see [`crate::shim::shim_dir`]).
    pub shim_dir: Option<PathBuf>,
    /// Added to containerd's environment, which its shims inherit (`WARDEN_POLICY`,
    /// `WARDEN_AUDIT_LOG`, `WARDEN_CACHE_DIR`, `RUST_LOG`, ...).
    pub env: Vec<(String, String)>,
    /// TOML merged into the generated config: tables are merged key by key, other values
    /// replace the generated ones. E.g. a CRI runtime entry:
    /// `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.warden]` /
    /// `runtime_type = "io.containerd.warden.v1"`. Written as for config version 2
    /// (containerd 1.x); for containerd 2.x the CRI parts are moved to the plugins of
    /// version 3 ([`extra_config_to_v3`]). Tables already named as in version 3 stay.
    pub extra_config: String,
    /// Whether to load the CRI plugin (`io.containerd.grpc.v1.cri`), served on the same
    /// socket. Off by default: containerd starts faster without it.
    pub cri: bool,
    /// The namespace `ctr` uses ([`DEFAULT_NAMESPACE`] by default).
    pub namespace: String,
    /// containerd's log level (`[debug] level`): `info` by default. The shims' own logs reach
    /// containerd's log at any level; `debug` also makes containerd start them with `-debug`.
    pub log_level: String,
    /// The snapshotter; `None` picks overlayfs where it works, else native.
    pub snapshotter: Option<String>,
    /// Which containerd to start; `None`: the one `WARDEN_TEST_CONTAINERD` chooses. A test
    /// that must run on every version names it (see `test/tests/containerd_matrix.rs`).
    pub version: Option<Version>,
    /// A node's file system: when not empty, containerd runs (and is restarted) in a mount
    /// namespace of its own in which these node paths are bind mounts of the test's dirs
    /// ([`crate::node_namespace`]); its shims and their containers' mount sources see them
    /// too. This machine's paths are not touched.
    pub node_paths: Vec<NodePath>,
    /// With `node_paths`: containerd's config file as a node path (e.g.
    /// `/etc/containerd/config.toml`, below one of the node paths), passed to `--config`.
    pub config_file: Option<PathBuf>,
    /// With `node_paths`: containerd's socket as a node path (e.g.
    /// `/run/containerd/containerd.sock`), the config's `grpc.address`.
    pub socket_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            shim_dir: None,
            env: Vec::new(),
            extra_config: String::new(),
            cri: false,
            namespace: DEFAULT_NAMESPACE.into(),
            log_level: "info".into(),
            snapshotter: None,
            version: None,
            node_paths: Vec::new(),
            config_file: None,
            socket_file: None,
        }
    }
}

/// How to run a container with [`Containerd::run`].
#[derive(Debug, Clone)]
pub struct RunOpts {
    /// `--runtime`: [`RUNC_RUNTIME`] by default, [`WARDEN_RUNTIME`] for the shim, or an
    /// absolute path to a shim binary.
    pub runtime: String,
    /// `--annotation key=value` (e.g. `warden.dev/profile`).
    pub annotations: Vec<(String, String)>,
    /// `--env KEY=VALUE`.
    pub env: Vec<(String, String)>,
    /// `--net-host`.
    pub net_host: bool,
    /// The container's whole argv, entrypoint included (`ctr run` replaces both entrypoint
    /// and cmd); empty keeps the image's.
    pub args: Vec<String>,
    /// Bind mounts `(host source, container destination, options)`; options like
    /// `rbind:ro` (empty: `rbind:rw`).
    pub mounts: Vec<(PathBuf, String, String)>,
    /// `--rm` (default true).
    pub rm: bool,
    /// Kill `ctr` (and the task) after this long (default 60 s).
    pub timeout: Duration,
    /// More `ctr run` flags, placed before the image name (e.g. `--memory-limit`, `--cwd`).
    pub extra_flags: Vec<String>,
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            runtime: RUNC_RUNTIME.into(),
            annotations: Vec::new(),
            env: Vec::new(),
            net_host: false,
            args: Vec::new(),
            mounts: Vec::new(),
            rm: true,
            timeout: Duration::from_secs(60),
            extra_flags: Vec::new(),
        }
    }
}

impl RunOpts {
    /// Defaults, with warden's runtime ([`WARDEN_RUNTIME`]).
    pub fn warden() -> Self {
        RunOpts {
            runtime: WARDEN_RUNTIME.into(),
            ..RunOpts::default()
        }
    }

    /// Sets [`RunOpts::args`].
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.into(), value.into()));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds a bind mount.
    pub fn mount(mut self, source: impl Into<PathBuf>, destination: &str, options: &str) -> Self {
        self.mounts
            .push((source.into(), destination.into(), options.into()));
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// What a `ctr run` did.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// `ctr`'s exit code, which is the container's exit code when the task ran; `None` when
    /// `ctr` was killed by a signal.
    pub code: Option<i32>,
    /// The container's stdout (through `ctr`).
    pub stdout: String,
    /// The container's stderr, and `ctr`'s own errors (`ctr: ...`).
    pub stderr: String,
    /// Wall time of the `ctr run` command.
    pub duration: Duration,
}

impl RunResult {
    /// Whether `ctr` exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Why [`Containerd::try_run`] returned no [`RunResult`].
#[derive(Debug, Clone)]
pub enum RunError {
    /// `ctr run` did not finish in time; it was killed, and so was the task.
    Timeout {
        /// The timeout.
        after: Duration,
        /// What the container had printed to stdout.
        stdout: String,
        /// What the container (and ctr) had printed to stderr.
        stderr: String,
        /// The end of containerd's log.
        log_tail: String,
    },
    /// `ctr` could not be run at all.
    Harness(Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Timeout {
                after,
                stdout,
                stderr,
                log_tail,
            } => write!(
                f,
                "`ctr run` did not finish within {after:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- containerd log (end) ---\n{log_tail}"
            ),
            RunError::Harness(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for RunError {}

/// A running private containerd. Dropping it stops containerd and its shims, unmounts
/// everything below its directory and removes the directory.
#[derive(Debug)]
pub struct Containerd {
    binaries: &'static Binaries,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    child: Option<Child>,
    socket: PathBuf,
    /// The config file on this machine, and as containerd is told it (a node path when
    /// containerd runs in a node namespace).
    config_path: PathBuf,
    config_arg: PathBuf,
    /// Declared after `child`: the holder of the node namespace ends after containerd.
    node: Option<NodeNamespace>,
    namespace: String,
    snapshotter: String,
    startup_time: Duration,
    next_id: AtomicU32,
}

impl Containerd {
    /// Starts containerd and waits (up to [`START_TIMEOUT`]) until `ctr version` answers.
    /// Panics with the reason and containerd's log when it does not; also panics, via
    /// [`crate::require_root`], when not root or containerd, ctr or runc is missing, and when
    /// the containerd `WARDEN_TEST_CONTAINERD` chooses cannot be provided.
    pub fn start(options: Options) -> Containerd {
        crate::require_root();
        Containerd::try_start(options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Containerd::start`], returning failures instead of panicking.
    pub fn try_start(options: Options) -> Result<Containerd, Error> {
        let binaries = match &options.version {
            Some(version) => containerd_versions::located(version)?,
            None => containerd_versions::selected()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("wt-")
            .rand_bytes(6)
            .tempdir_in("/tmp")
            .map_err(|e| Error::new(format!("cannot create a temp dir in /tmp: {e}")))?;
        let dir_path = dir.path().to_path_buf();
        let snapshotter = match &options.snapshotter {
            Some(name) => name.clone(),
            None if overlay_supported() => "overlayfs".into(),
            None => "native".into(),
        };
        let node = if options.node_paths.is_empty() {
            if options.config_file.is_some() || options.socket_file.is_some() {
                return Err(Error::new(
                    "Options::config_file and socket_file are node paths: they need node_paths",
                ));
            }
            None
        } else {
            Some(NodeNamespace::start(&dir_path, &options.node_paths)?)
        };
        let on_node =
            |file: &Option<PathBuf>, default: &str| -> Result<(PathBuf, PathBuf), Error> {
                match (file, &node) {
                    (Some(file), Some(node)) => {
                        let host = node.host_path(file).ok_or_else(|| {
                            Error::new(format!(
                                "{} is below none of Options::node_paths",
                                file.display()
                            ))
                        })?;
                        Ok((host, file.clone()))
                    }
                    _ => Ok((dir_path.join(default), dir_path.join(default))),
                }
            };
        let (socket, socket_arg) = on_node(&options.socket_file, "c.sock")?;
        let (config_path, config_arg) = on_node(&options.config_file, "config.toml")?;
        let config = config_toml(
            &dir_path,
            &socket_arg,
            &snapshotter,
            &options,
            binaries.release.major,
        )?;
        if let Some(parent) = config_path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::new(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&config_path, config)
            .map_err(|e| Error::new(format!("cannot write {}: {e}", config_path.display())))?;
        let log_path = dir_path.join("containerd.log");
        let log = File::create(&log_path)
            .map_err(|e| Error::new(format!("cannot create {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::new(format!("cannot dup the log file: {e}")))?;

        let mut path_var = std::ffi::OsString::new();
        if let Some(shim_dir) = &options.shim_dir {
            path_var.push(shim_dir);
            path_var.push(":");
        }
        // containerd starts the first `containerd-shim-runc-v2` on its PATH: its own.
        if let Some(prefix) = &binaries.path_prefix {
            path_var.push(prefix);
            path_var.push(":");
        }
        path_var.push(std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin".into()));

        let mut command = match &node {
            Some(node) => node.command(&binaries.containerd),
            None => Command::new(&binaries.containerd),
        };
        command
            .arg("--config")
            .arg(&config_arg)
            .env("PATH", path_var)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let start = Instant::now();
        let child = command.spawn().map_err(|e| {
            Error::new(format!(
                "cannot start {}: {e}",
                binaries.containerd.display()
            ))
        })?;
        let mut containerd = Containerd {
            binaries,
            dir: Some(dir),
            dir_path,
            child: Some(child),
            socket,
            config_path,
            config_arg,
            node,
            namespace: options.namespace.clone(),
            snapshotter,
            startup_time: Duration::ZERO,
            next_id: AtomicU32::new(0),
        };
        containerd.wait_ready(start)?;
        containerd.startup_time = start.elapsed();
        if options.cri {
            containerd.check_plugin_loaded("io.containerd.grpc.v1", "cri")?;
        }
        Ok(containerd)
    }

    /// Fails unless `ctr plugins ls` lists plugin `kind` `id` with status `ok` (containerd
    /// keeps running when a plugin fails to load, e.g. CRI with a bad runtime entry).
    fn check_plugin_loaded(&self, kind: &str, id: &str) -> Result<(), Error> {
        let mut command = self.ctr_command(["plugins", "ls"]);
        let output = match util::output_with_timeout(&mut command, CTR_TIMEOUT)? {
            Ok(output) if output.status.success() => output,
            _ => return Err(Error::new("`ctr plugins ls` failed")),
        };
        let listing = String::from_utf8_lossy(&output.stdout);
        let status = listing.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 3 && fields[0] == kind && fields[1] == id)
                .then(|| fields[fields.len() - 1].to_string())
        });
        if status.as_deref() == Some("ok") {
            return Ok(());
        }
        let log = self.log();
        let reasons: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("failed to load plugin"))
            .collect();
        Err(Error::new(format!(
            "containerd started, but plugin {kind}.{id} is {}: {}\nconfig {}:\n{}",
            status.as_deref().unwrap_or("not listed"),
            if reasons.is_empty() {
                "no reason in the log".to_string()
            } else {
                reasons.join("\n")
            },
            self.config_path().display(),
            std::fs::read_to_string(self.config_path()).unwrap_or_default()
        )))
    }

    fn wait_ready(&mut self, start: Instant) -> Result<(), Error> {
        let deadline = start + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::new(format!(
                    "containerd exited during startup ({status}); config {}\n--- containerd log (end) ---\n{}",
                    self.config_path().display(),
                    self.log_tail(LOG_TAIL_LINES)
                )));
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let mut command = self.ctr_command(["version"]);
                if let Ok(Ok(output)) = util::output_with_timeout(&mut command, remaining)
                    && output.status.success()
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::new(format!(
                    "containerd did not answer `ctr version` on {} within {START_TIMEOUT:?}\n--- containerd log (end) ---\n{}",
                    self.socket.display(),
                    self.log_tail(LOG_TAIL_LINES)
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The containerd gRPC socket (also CRI's when [`Options::cri`] is set).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The instance's directory (config, root, state, log, image tars).
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The generated config file (on this machine).
    pub fn config_path(&self) -> PathBuf {
        self.config_path.clone()
    }

    /// Where node path `node` is on this machine, when containerd runs in a node namespace
    /// ([`Options::node_paths`]) and `node` is below one of its node paths.
    pub fn node_host_path(&self, node: &Path) -> Option<PathBuf> {
        self.node.as_ref()?.host_path(node)
    }

    /// containerd's log file, which also receives the shims' logs.
    pub fn log_path(&self) -> PathBuf {
        self.dir_path.join("containerd.log")
    }

    /// containerd's log (with the shims' logs) so far.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of [`Containerd::log`].
    pub fn log_tail(&self, lines: usize) -> String {
        util::tail(&self.log(), lines)
    }

    /// The namespace `ctr` uses.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The snapshotter in use (`overlayfs` or `native`).
    pub fn snapshotter(&self) -> &str {
        &self.snapshotter
    }

    /// The release of the containerd this instance runs (from `containerd --version`), e.g.
    /// 1.6.20, 1.7.24 or 2.1.9.
    pub fn version(&self) -> Release {
        self.binaries.release
    }

    /// The containerd and ctr this instance runs, and what `containerd --version` printed.
    pub fn binaries(&self) -> &'static Binaries {
        self.binaries
    }

    /// containerd's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// How long containerd took to answer `ctr version` after being started.
    pub fn startup_time(&self) -> Duration {
        self.startup_time
    }

    /// Writes, at `path`, a shell script that restarts this containerd the way
    /// `systemctl restart containerd` would on a node: SIGTERM, wait until it is gone, start
    /// it again with the same config and `env`, wait until it answers. For `warden install
    /// --restart-command`. Each call appends `$WARDEN_RESTART_UNIT` to `calls` if given.
    /// The restarted containerd is still this instance's (same dir): dropping it stops it.
    pub fn write_restart_script(
        &self,
        path: &Path,
        env: &[(String, String)],
        calls: Option<&Path>,
    ) {
        let pidfile = self.dir_path.join("containerd.pid");
        std::fs::write(&pidfile, format!("{}\n", self.pid()))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", pidfile.display()));
        let exports: String = env
            .iter()
            .map(|(k, v)| format!("export {k}='{v}'\n"))
            .collect();
        let record = calls
            .map(|c| format!("echo \"${{WARDEN_RESTART_UNIT:-}}\" >> '{}'\n", c.display()))
            .unwrap_or_default();
        let path_prefix = self
            .binaries
            .path_prefix
            .as_ref()
            .map(|dir| format!("PATH='{}':\"$PATH\" ", dir.display()))
            .unwrap_or_default();
        let script = format!(
            r#"#!/bin/sh
set -eu
{exports}pidfile='{pidfile}'
pid=$(cat "$pidfile")
{record}kill -TERM "$pid" 2>/dev/null || true
i=0
while state=$(awk '{{print $3}}' "/proc/$pid/stat" 2>/dev/null) && [ "$state" != Z ]; do
  i=$((i+1)); [ $i -gt 400 ] && kill -KILL "$pid"; sleep 0.05
done
{path_prefix}setsid {enter}'{containerd}' --config '{config}' >> '{log}' 2>&1 < /dev/null &
echo $! > "$pidfile"
i=0
until '{ctr}' --address '{socket}' version > /dev/null 2>&1; do
  i=$((i+1)); [ $i -gt 400 ] && {{ echo "containerd did not come back" >&2; exit 1; }}; sleep 0.05
done
"#,
            pidfile = pidfile.display(),
            containerd = self.binaries.containerd.display(),
            ctr = self.binaries.ctr.display(),
            config = self.config_arg.display(),
            enter = self
                .node
                .as_ref()
                .map(|node| format!("nsenter --target {} --mount -- ", node.pid()))
                .unwrap_or_default(),
            log = self.log_path().display(),
            socket = self.socket().display(),
        );
        std::fs::write(path, script)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("cannot make {} executable: {e}", path.display()));
    }

    /// A container id unique across instances and calls: `<prefix>-<instance>-<n>`.
    pub fn unique_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let instance = self
            .dir_path
            .file_name()
            .map(|name| name.to_string_lossy().trim_start_matches("wt-").to_string())
            .unwrap_or_default();
        format!("{prefix}-{instance}-{n}")
    }

    /// A `ctr` command for this instance: `ctr --address SOCKET --namespace NS ARGS...`, with
    /// the instance's snapshotter.
    pub fn ctr_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(&self.binaries.ctr);
        command
            .arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args)
            .env("CONTAINERD_SNAPSHOTTER", &self.snapshotter);
        command
    }

    /// Runs `ctr --address SOCKET --namespace NS ARGS...` and returns its output, whatever
    /// its exit status. Panics when ctr cannot be run or takes longer than [`CTR_TIMEOUT`].
    pub fn ctr<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = self.ctr_command(args);
        match util::output_with_timeout(&mut command, CTR_TIMEOUT) {
            Ok(Ok(output)) => output,
            Ok(Err(timed_out)) => panic!(
                "`{}` did not finish within {CTR_TIMEOUT:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- containerd log (end) ---\n{}",
                util::describe(&command),
                String::from_utf8_lossy(&timed_out.stdout),
                String::from_utf8_lossy(&timed_out.stderr),
                self.log_tail(LOG_TAIL_LINES)
            ),
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Containerd::ctr`], panicking (with ctr's output and containerd's log) unless it
    /// exits 0; returns its stdout.
    pub fn ctr_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let args: Vec<std::ffi::OsString> = args
            .into_iter()
            .map(|arg| arg.as_ref().to_os_string())
            .collect();
        let output = self.ctr(&args);
        assert!(
            output.status.success(),
            "`ctr {}` failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- containerd log (end) ---\n{}",
            args.iter()
                .map(|arg| arg.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_tail(LOG_TAIL_LINES)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `ctr images import --all-platforms TAR`, returning ctr's output whatever its status.
    ///
    /// `--all-platforms` because ctr 1.6 otherwise filters the manifests by the host's
    /// platform and so imports nothing of a `wasm` image (`image might be filtered out`).
    pub fn try_import(&self, tar: &Path) -> Output {
        self.ctr([
            "images".as_ref(),
            "import".as_ref(),
            "--all-platforms".as_ref(),
            tar.as_os_str(),
        ])
    }

    /// Imports an image-layout tar ([`Containerd::try_import`]); panics unless it succeeds.
    pub fn import(&self, tar: &Path) {
        let output = self.try_import(tar);
        assert!(
            output.status.success(),
            "`ctr images import {}` failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- containerd log (end) ---\n{}",
            tar.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_tail(LOG_TAIL_LINES)
        );
    }

    /// Writes `image` as a tar into the instance's directory and imports it; panics unless
    /// the import succeeds.
    pub fn import_image(&self, image: &ImageBuilder) -> ImageInfo {
        let (tar, info) = self.write_image_tar(image);
        self.import(&tar);
        info
    }

    /// Writes `image` as a tar into the instance's directory; returns the tar's path.
    pub fn write_image_tar(&self, image: &ImageBuilder) -> (PathBuf, ImageInfo) {
        let images = self.dir_path.join("images");
        std::fs::create_dir_all(&images)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", images.display()));
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let path = images.join(format!("image-{n}.tar"));
        let info = image
            .write_tar(&path)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        (path, info)
    }

    /// The names of the images in the namespace (`ctr images ls -q`).
    pub fn images(&self) -> Vec<String> {
        self.ctr_ok(["images", "ls", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Runs `ctr run` for `image` as container `id` and waits for it; panics when it cannot
    /// be run or times out (with what it printed and containerd's log).
    pub fn run(&self, image: &str, id: &str, opts: RunOpts) -> RunResult {
        self.try_run(image, id, opts)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Containerd::run`], panicking also unless the container exits 0.
    pub fn run_ok(&self, image: &str, id: &str, opts: RunOpts) -> RunResult {
        let result = self.run(image, id, opts);
        assert!(
            result.success(),
            "container {id} ({image}) exited {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- containerd log (end) ---\n{}",
            result.code,
            result.stdout,
            result.stderr,
            self.log_tail(LOG_TAIL_LINES)
        );
        result
    }

    /// The `ctr run ...` arguments for `image`, `id` and `opts`.
    pub fn run_args(&self, image: &str, id: &str, opts: &RunOpts) -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            "--fifo-dir".into(),
            self.dir_path.join("fifo").to_string_lossy().into_owned(),
            "--runtime".into(),
            opts.runtime.clone(),
        ];
        if opts.rm {
            args.push("--rm".into());
        }
        if opts.net_host {
            args.push("--net-host".into());
        }
        for (key, value) in &opts.annotations {
            args.push("--annotation".into());
            args.push(format!("{key}={value}"));
        }
        for (key, value) in &opts.env {
            args.push("--env".into());
            args.push(format!("{key}={value}"));
        }
        for (source, destination, options) in &opts.mounts {
            let options = if options.is_empty() {
                "rbind:rw"
            } else {
                options
            };
            args.push("--mount".into());
            args.push(format!(
                "type=bind,src={},dst={destination},options={options}",
                source.display()
            ));
        }
        args.extend(opts.extra_flags.iter().cloned());
        args.push(image.into());
        args.push(id.into());
        args.extend(opts.args.iter().cloned());
        args
    }

    /// [`Containerd::run`], returning a timeout or harness failure instead of panicking.
    pub fn try_run(&self, image: &str, id: &str, opts: RunOpts) -> Result<RunResult, RunError> {
        let args = self.run_args(image, id, &opts);
        let mut command = self.ctr_command(&args);
        let start = Instant::now();
        let outcome =
            util::output_with_timeout(&mut command, opts.timeout).map_err(RunError::Harness)?;
        let duration = start.elapsed();
        match outcome {
            Ok(output) => Ok(RunResult {
                code: output.status.code(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                duration,
            }),
            Err(timed_out) => {
                self.remove_container(id);
                Err(RunError::Timeout {
                    after: opts.timeout,
                    stdout: String::from_utf8_lossy(&timed_out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&timed_out.stderr).into_owned(),
                    log_tail: self.log_tail(LOG_TAIL_LINES),
                })
            }
        }
    }

    /// Starts `ctr run` for `image` as container `id` in the background (a service): the
    /// container runs until it exits or is killed ([`Containerd::kill_task`]); what it prints
    /// is collected, and [`Running::wait`] returns it with the exit code.
    pub fn spawn_run(&self, image: &str, id: &str, opts: RunOpts) -> Running {
        let args = self.run_args(image, id, &opts);
        let mut command = self.ctr_command(&args);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `ctr run`: {e}"));
        let stdout = util::reader(child.stdout.take());
        let stderr = util::reader(child.stderr.take());
        Running {
            id: id.to_owned(),
            child: Some(child),
            stdout: Some(stdout),
            stderr: Some(stderr),
            started: Instant::now(),
        }
    }

    /// Sends `signal` (`SIGTERM`, `SIGKILL`) to container `id`'s task, as `ctr task kill`
    /// does; panics when ctr fails.
    pub fn kill_task(&self, id: &str, signal: &str) {
        self.ctr_ok(["tasks", "kill", "--signal", signal, id]);
    }

    /// Kills container `id`'s task (SIGKILL), deletes the task and the container. Best
    /// effort: errors (e.g. no such task) are ignored.
    pub fn remove_container(&self, id: &str) {
        self.remove_container_in(&self.namespace, id);
    }

    fn remove_container_in(&self, namespace: &str, id: &str) {
        let ctr = |args: &[&str]| {
            let mut command = Command::new(&self.binaries.ctr);
            command
                .arg("--address")
                .arg(&self.socket)
                .arg("--namespace")
                .arg(namespace)
                .args(args);
            let _ = util::output_with_timeout(&mut command, Duration::from_secs(10));
        };
        ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
        ctr(&["tasks", "delete", "--force", id]);
        ctr(&["containers", "delete", id]);
    }

    /// Removes every container in every namespace, through containerd, so that the shims
    /// tear down their containers properly.
    fn remove_all_containers(&self) {
        let list = |args: &[&str]| -> Vec<String> {
            let mut command = Command::new(&self.binaries.ctr);
            command.arg("--address").arg(&self.socket).args(args);
            match util::output_with_timeout(&mut command, Duration::from_secs(10)) {
                Ok(Ok(output)) if output.status.success() => {
                    String::from_utf8_lossy(&output.stdout)
                        .lines()
                        .map(|line| line.trim().to_string())
                        .filter(|line| !line.is_empty())
                        .collect()
                }
                _ => Vec::new(),
            }
        };
        for namespace in list(&["namespaces", "ls", "-q"]) {
            for id in list(&["--namespace", &namespace, "containers", "ls", "-q"]) {
                self.remove_container_in(&namespace, &id);
            }
        }
    }

    /// Stops containerd and cleans up; what [`Drop`] does. Returns the problems met (empty when
    /// everything was cleaned up).
    fn shutdown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.dir.is_none() {
            // Never started (or already cleaned up): nothing of ours can be running.
            return problems;
        }
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                self.remove_all_containers();
                util::kill(child.id(), libc::SIGTERM);
                let pid = child.id();
                if !util::wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
                    matches!(child.try_wait(), Ok(Some(_)))
                }) {
                    problems.push(format!("containerd (pid {pid}) ignored SIGTERM for 5 s"));
                    util::kill(pid, libc::SIGKILL);
                }
            }
            let _ = child.wait();
        }

        // Shims (their command line names our socket) and anything still running in a rootfs
        // below our directory.
        let node_ns = self.node.as_ref().and_then(NodeNamespace::id);
        let holder = self.node.as_ref().map(NodeNamespace::pid);
        let strays = |dir: &Path, socket: &str| -> Vec<u32> {
            let dir_prefix = format!("{}/", dir.display());
            util::all_pids()
                .into_iter()
                .filter(|pid| Some(*pid) != holder)
                .filter(|pid| {
                    let in_node = node_ns.as_ref().is_some_and(|ns| {
                        std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|m| &m == ns)
                    });
                    let by_cmdline = util::cmdline(*pid)
                        .is_some_and(|line| line.contains(socket) || line.contains(&dir_prefix));
                    let by_root = std::fs::read_link(format!("/proc/{pid}/root"))
                        .is_ok_and(|root| root != Path::new("/") && root.starts_with(dir));
                    by_cmdline || by_root || in_node
                })
                .collect()
        };
        let socket = self.socket.to_string_lossy().into_owned();
        for _ in 0..50 {
            let pids = strays(&self.dir_path, &socket);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                util::kill(pid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = strays(&self.dir_path, &socket);
        if !left.is_empty() {
            problems.push(format!("processes survived SIGKILL: {left:?}"));
        }

        for _ in 0..5 {
            let mounts = util::mounts_below(&self.dir_path);
            if mounts.is_empty() {
                break;
            }
            for point in mounts {
                if let Err(e) = util::unmount_lazy(&point) {
                    problems.push(e.to_string());
                }
            }
        }

        // The namespace's own mounts go with it.
        self.node = None;
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            problems.push(format!("cannot remove {}: {e}", self.dir_path.display()));
        }
        problems
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for problem in self.shutdown() {
            eprintln!(
                "warden-test: cleaning up containerd in {}: {problem}",
                self.dir_path.display()
            );
        }
    }
}

/// Whether an overlay filesystem can be mounted below /tmp (checked once per process).
pub fn overlay_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let Ok(dir) = tempfile::Builder::new()
            .prefix("wt-ovl-")
            .tempdir_in("/tmp")
        else {
            return false;
        };
        let path = dir.path();
        for sub in ["l", "u", "w", "m"] {
            if std::fs::create_dir(path.join(sub)).is_err() {
                return false;
            }
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            path.join("l").display(),
            path.join("u").display(),
            path.join("w").display()
        );
        let merged = path.join("m");
        match util::mount_overlay(&merged, &options) {
            Ok(()) => {
                let _ = util::unmount_lazy(&merged);
                true
            }
            Err(_) => false,
        }
    })
}

/// The CRI plugin of config version 2: all of CRI (containerd 1.x); in version 3 only its
/// server part (streaming).
pub const CRI_PLUGIN: &str = "io.containerd.grpc.v1.cri";
/// Version 3's CRI runtime plugin: `containerd.runtimes`, `cni`, the security settings.
pub const CRI_RUNTIME_PLUGIN_V3: &str = "io.containerd.cri.v1.runtime";
/// Version 3's CRI images plugin: the snapshotter, the sandbox (pause) image, registries.
pub const CRI_IMAGES_PLUGIN_V3: &str = "io.containerd.cri.v1.images";

/// Keys of version 2's CRI table that stay in [`CRI_PLUGIN`] in version 3 (its
/// `ServerConfig`).
const CRI_SERVER_KEYS: &[&str] = &[
    "disable_tcp_service",
    "stream_server_address",
    "stream_server_port",
    "stream_idle_timeout",
    "enable_tls_streaming",
    "x509_key_pair_streaming",
];
/// Keys of version 2's CRI table that move to [`CRI_IMAGES_PLUGIN_V3`] (as containerd 2.x's
/// own migration of version 2 configs moves them).
const CRI_IMAGES_KEYS: &[&str] = &[
    "registry",
    "image_decryption",
    "max_concurrent_downloads",
    "image_pull_progress_timeout",
    "image_pull_with_sync_fs",
    "stats_collect_period",
];
/// Keys of version 2's CRI `containerd` table that move to [`CRI_IMAGES_PLUGIN_V3`].
const CRI_IMAGES_CONTAINERD_KEYS: &[&str] = &[
    "snapshotter",
    "disable_snapshot_annotations",
    "discard_unpacked_layers",
];

/// The generated config for containerd `major` (version 2 for 1.x, version 3 for 2.x), with
/// [`Options::extra_config`] merged in (moved to version 3's tables for 2.x).
fn config_toml(
    dir: &Path,
    socket: &Path,
    snapshotter: &str,
    options: &Options,
    major: u32,
) -> Result<String, Error> {
    let path = |sub: &str| dir.join(sub).to_string_lossy().into_owned();
    let v3 = major >= 2;
    let mut disabled = if v3 {
        vec![
            "io.containerd.snapshotter.v1.blockfile",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.erofs",
            "io.containerd.snapshotter.v1.zfs",
        ]
    } else {
        vec![
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.zfs",
        ]
    };
    if !options.cri {
        // In 2.x only the CRI service: without the cri.v1 runtime and images plugins the
        // pod sandbox controller and the sandbox-controllers service fail to load.
        disabled.push(CRI_PLUGIN);
    }
    let common = format!(
        r#"
root = {root}
state = {state}
disabled_plugins = {disabled}

[grpc]
address = {socket}

[ttrpc]
address = {ttrpc}

[debug]
address = ""
level = {level}

[metrics]
address = ""

[plugins."io.containerd.internal.v1.opt"]
path = {opt}
"#,
        root = toml_string(&path("root")),
        state = toml_string(&path("state")),
        disabled = toml::Value::Array(
            disabled
                .iter()
                .map(|name| toml::Value::String((*name).into()))
                .collect()
        ),
        socket = toml_string(&socket.to_string_lossy()),
        ttrpc = toml_string(&path("t.sock")),
        level = toml_string(&options.log_level),
        opt = toml_string(&path("opt")),
    );
    let snapshotter = toml_string(snapshotter);
    let cri = if v3 {
        format!(
            r#"
version = 3
{common}
[plugins."{CRI_PLUGIN}"]
stream_server_address = "127.0.0.1"
stream_server_port = "0"

[plugins."{CRI_IMAGES_PLUGIN_V3}"]
snapshotter = {snapshotter}

[plugins."{CRI_RUNTIME_PLUGIN_V3}"]
restrict_oom_score_adj = true
disable_apparmor = true

[plugins."{CRI_RUNTIME_PLUGIN_V3}".containerd]
default_runtime_name = "runc"

[plugins."{CRI_RUNTIME_PLUGIN_V3}".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"

# On by default in 2.x (off in 1.7, absent in 1.6), with one socket for the whole host,
# /var/run/nri/nri.sock: a second instance with CRI would fail to start ("address already
# in use").
[plugins."io.containerd.nri.v1.nri"]
disable = true
"#
        )
    } else {
        format!(
            r#"
version = 2
{common}
[plugins."{CRI_PLUGIN}"]
restrict_oom_score_adj = true
disable_apparmor = true
stream_server_address = "127.0.0.1"
stream_server_port = "0"

[plugins."{CRI_PLUGIN}".containerd]
snapshotter = {snapshotter}
default_runtime_name = "runc"

# A config naming any runtime replaces containerd's built-in list, so runc is named too.
[plugins."{CRI_PLUGIN}".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
"#
        )
    };
    let mut table: toml::Table = cri
        .parse()
        .map_err(|e| Error::new(format!("generated containerd config does not parse: {e}")))?;
    let mut extra: toml::Table = options
        .extra_config
        .parse()
        .map_err(|e| Error::new(format!("Options::extra_config is not valid TOML: {e}")))?;
    if v3 {
        extra = extra_config_to_v3(extra);
    }
    merge(&mut table, extra);
    toml::to_string(&table)
        .map_err(|e| Error::new(format!("cannot write the containerd config: {e}")))
}

/// Moves the CRI settings of a version 2 config (`[plugins."io.containerd.grpc.v1.cri"]`,
/// as callers write [`Options::extra_config`]) to the plugins of version 3, as containerd 2.x
/// itself migrates a version 2 config:
///
/// - the streaming server's keys (`stream_server_address`, `stream_server_port`, ...) stay in
///   `io.containerd.grpc.v1.cri`;
/// - `sandbox_image` becomes `pinned_images.sandbox` of `io.containerd.cri.v1.images`, which
///   also gets `registry`, `image_decryption`, the pull settings and `containerd.snapshotter`,
///   `containerd.disable_snapshot_annotations`, `containerd.discard_unpacked_layers`;
/// - everything else (`containerd.default_runtime_name`, `containerd.runtimes.*`, `cni`,
///   `restrict_oom_score_adj`, ...) goes to `io.containerd.cri.v1.runtime`, a runtime's
///   `sandbox_mode` renamed `sandboxer`.
///
/// Other tables, and version 3 tables already in `extra`, are left as they are.
pub fn extra_config_to_v3(mut extra: toml::Table) -> toml::Table {
    let Some(toml::Value::Table(plugins)) = extra.get_mut("plugins") else {
        return extra;
    };
    let Some(toml::Value::Table(mut cri)) = plugins.remove(CRI_PLUGIN) else {
        return extra;
    };
    let mut server = toml::Table::new();
    for key in CRI_SERVER_KEYS {
        if let Some(value) = cri.remove(*key) {
            server.insert((*key).into(), value);
        }
    }
    let mut images = toml::Table::new();
    for key in CRI_IMAGES_KEYS {
        if let Some(value) = cri.remove(*key) {
            images.insert((*key).into(), value);
        }
    }
    if let Some(image) = cri.remove("sandbox_image") {
        let mut pinned = toml::Table::new();
        pinned.insert("sandbox".into(), image);
        images.insert("pinned_images".into(), toml::Value::Table(pinned));
    }
    if let Some(toml::Value::Table(containerd)) = cri.get_mut("containerd") {
        for key in CRI_IMAGES_CONTAINERD_KEYS {
            if let Some(value) = containerd.remove(*key) {
                images.insert((*key).into(), value);
            }
        }
        if let Some(toml::Value::Table(runtimes)) = containerd.get_mut("runtimes") {
            for (_, runtime) in runtimes.iter_mut() {
                if let toml::Value::Table(runtime) = runtime
                    && let Some(mode) = runtime.remove("sandbox_mode")
                {
                    runtime.entry("sandboxer").or_insert(mode);
                }
            }
        }
        if containerd.is_empty() {
            cri.remove("containerd");
        }
    }
    for (plugin, settings) in [
        (CRI_PLUGIN, server),
        (CRI_IMAGES_PLUGIN_V3, images),
        (CRI_RUNTIME_PLUGIN_V3, cri),
    ] {
        if settings.is_empty() {
            continue;
        }
        let mut moved = toml::Table::new();
        moved.insert(plugin.into(), toml::Value::Table(settings));
        merge(plugins, moved);
    }
    extra
}

fn toml_string(text: &str) -> toml::Value {
    toml::Value::String(text.into())
}

/// Merges `extra` into `base`: tables key by key (recursively), anything else replaces.
fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(extra_table)) => {
                merge(base_table, extra_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(options: &Options) -> toml::Table {
        config_for(options, 1)
    }

    fn config_for(options: &Options, major: u32) -> toml::Table {
        config_toml(
            Path::new("/tmp/wt-x"),
            Path::new("/tmp/wt-x/c.sock"),
            "overlayfs",
            options,
            major,
        )
        .unwrap()
        .parse()
        .unwrap()
    }

    #[test]
    fn config_has_private_paths_and_cri_settings() {
        let table = config(&Options::default());
        assert_eq!(table["version"].as_integer(), Some(2));
        assert_eq!(table["root"].as_str(), Some("/tmp/wt-x/root"));
        assert_eq!(table["state"].as_str(), Some("/tmp/wt-x/state"));
        assert_eq!(table["grpc"]["address"].as_str(), Some("/tmp/wt-x/c.sock"));
        let cri = &table["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["restrict_oom_score_adj"].as_bool(), Some(true));
        let disabled = table["disabled_plugins"].as_array().unwrap();
        assert!(
            disabled
                .iter()
                .any(|p| p.as_str() == Some("io.containerd.grpc.v1.cri"))
        );

        let table = config(&Options {
            cri: true,
            ..Options::default()
        });
        let disabled = table["disabled_plugins"].as_array().unwrap();
        assert!(
            !disabled
                .iter()
                .any(|p| p.as_str() == Some("io.containerd.grpc.v1.cri"))
        );
    }

    #[test]
    fn extra_config_merges_structurally() {
        let table = config(&Options {
            extra_config: r#"
[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "localhost/pause:1"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.warden]
runtime_type = "io.containerd.warden.v1"

[debug]
level = "debug"
"#
            .into(),
            ..Options::default()
        });
        let cri = &table["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["restrict_oom_score_adj"].as_bool(), Some(true));
        assert_eq!(cri["sandbox_image"].as_str(), Some("localhost/pause:1"));
        assert_eq!(cri["containerd"]["snapshotter"].as_str(), Some("overlayfs"));
        assert_eq!(
            cri["containerd"]["runtimes"]["warden"]["runtime_type"].as_str(),
            Some("io.containerd.warden.v1")
        );
        assert_eq!(table["debug"]["level"].as_str(), Some("debug"));
        assert_eq!(table["debug"]["address"].as_str(), Some(""));
    }

    #[test]
    fn containerd_2_gets_config_version_3() {
        let table = config_for(&Options::default(), 2);
        assert_eq!(table["version"].as_integer(), Some(3));
        assert_eq!(table["root"].as_str(), Some("/tmp/wt-x/root"));
        let plugins = &table["plugins"];
        assert_eq!(
            plugins[CRI_PLUGIN]["stream_server_port"].as_str(),
            Some("0")
        );
        assert!(plugins[CRI_PLUGIN].get("restrict_oom_score_adj").is_none());
        assert_eq!(
            plugins[CRI_IMAGES_PLUGIN_V3]["snapshotter"].as_str(),
            Some("overlayfs")
        );
        let runtime = &plugins[CRI_RUNTIME_PLUGIN_V3];
        assert_eq!(runtime["restrict_oom_score_adj"].as_bool(), Some(true));
        assert_eq!(
            runtime["containerd"]["runtimes"]["runc"]["runtime_type"].as_str(),
            Some("io.containerd.runc.v2")
        );
        assert_eq!(
            plugins["io.containerd.nri.v1.nri"]["disable"].as_bool(),
            Some(true)
        );
        let disabled = table["disabled_plugins"].as_array().unwrap();
        assert!(disabled.iter().any(|p| p.as_str() == Some(CRI_PLUGIN)));
        assert!(
            !disabled
                .iter()
                .any(|p| p.as_str() == Some(CRI_RUNTIME_PLUGIN_V3))
        );
    }

    #[test]
    fn extra_config_moves_to_version_3_tables() {
        let table = config_for(
            &Options {
                cri: true,
                extra_config: r#"
[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "localhost/pause:1"
stream_idle_timeout = "1h"
enable_cdi = false

[plugins."io.containerd.grpc.v1.cri".containerd]
snapshotter = "native"
default_runtime_name = "warden"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.warden]
runtime_type = "io.containerd.warden.v1"
pod_annotations = ["warden.dev/*"]
sandbox_mode = "podsandbox"

[plugins."io.containerd.cri.v1.runtime".cni]
conf_dir = "/x"

[debug]
level = "debug"
"#
                .into(),
                ..Options::default()
            },
            2,
        );
        let plugins = &table["plugins"];
        let server = plugins[CRI_PLUGIN].as_table().unwrap();
        assert_eq!(server["stream_idle_timeout"].as_str(), Some("1h"));
        assert_eq!(server["stream_server_address"].as_str(), Some("127.0.0.1"));
        assert!(server.get("sandbox_image").is_none(), "{server:?}");
        assert!(server.get("containerd").is_none(), "{server:?}");
        let images = &plugins[CRI_IMAGES_PLUGIN_V3];
        assert_eq!(
            images["pinned_images"]["sandbox"].as_str(),
            Some("localhost/pause:1")
        );
        assert_eq!(images["snapshotter"].as_str(), Some("native"));
        let runtime = &plugins[CRI_RUNTIME_PLUGIN_V3];
        assert_eq!(runtime["enable_cdi"].as_bool(), Some(false));
        assert_eq!(runtime["restrict_oom_score_adj"].as_bool(), Some(true));
        assert_eq!(runtime["cni"]["conf_dir"].as_str(), Some("/x"));
        let containerd = &runtime["containerd"];
        assert_eq!(containerd["default_runtime_name"].as_str(), Some("warden"));
        assert!(containerd.get("snapshotter").is_none());
        let warden = &containerd["runtimes"]["warden"];
        assert_eq!(
            warden["runtime_type"].as_str(),
            Some("io.containerd.warden.v1")
        );
        assert_eq!(warden["sandboxer"].as_str(), Some("podsandbox"));
        assert!(warden.get("sandbox_mode").is_none());
        assert_eq!(
            containerd["runtimes"]["runc"]["runtime_type"].as_str(),
            Some("io.containerd.runc.v2")
        );
        assert_eq!(table["debug"]["level"].as_str(), Some("debug"));
        let disabled = table["disabled_plugins"].as_array().unwrap();
        assert!(!disabled.iter().any(|p| p.as_str() == Some(CRI_PLUGIN)));
    }

    #[test]
    fn bad_extra_config_is_an_error() {
        let result = config_toml(
            Path::new("/tmp/wt-x"),
            Path::new("/tmp/wt-x/c.sock"),
            "native",
            &Options {
                extra_config: "[[oops".into(),
                ..Options::default()
            },
            1,
        );
        assert!(result.unwrap_err().0.contains("extra_config"));
    }

    #[test]
    fn run_args_follow_the_options() {
        // A Containerd value that was never started: only its paths are used here.
        let containerd = Containerd {
            binaries: Box::leak(Box::new(Binaries::on_path_unchecked())),
            dir: None,
            dir_path: PathBuf::from("/tmp/wt-x"),
            child: None,
            socket: PathBuf::from("/tmp/wt-x/c.sock"),
            config_path: PathBuf::from("/tmp/wt-x/config.toml"),
            config_arg: PathBuf::from("/tmp/wt-x/config.toml"),
            node: None,
            namespace: DEFAULT_NAMESPACE.into(),
            snapshotter: "overlayfs".into(),
            startup_time: Duration::ZERO,
            next_id: AtomicU32::new(0),
        };
        let opts = RunOpts::warden()
            .annotation("warden.dev/profile", "p")
            .env("A", "1")
            .mount("/host", "/data", "")
            .args(["/m.wasm", "x"]);
        let args = containerd.run_args("img", "id-1", &opts);
        assert_eq!(
            args,
            [
                "run",
                "--fifo-dir",
                "/tmp/wt-x/fifo",
                "--runtime",
                "io.containerd.warden.v1",
                "--rm",
                "--annotation",
                "warden.dev/profile=p",
                "--env",
                "A=1",
                "--mount",
                "type=bind,src=/host,dst=/data,options=rbind:rw",
                "img",
                "id-1",
                "/m.wasm",
                "x"
            ]
        );
        assert_eq!(containerd.unique_id("t"), "t-x-0");
        assert_eq!(containerd.unique_id("t"), "t-x-1");
    }
}

/// A `ctr run` in the background ([`Containerd::spawn_run`]).
#[derive(Debug)]
pub struct Running {
    /// The container's id.
    pub id: String,
    child: Option<Child>,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    started: Instant,
}

impl Running {
    /// Whether `ctr run` has ended (the container exited or could not start).
    pub fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Waits up to `timeout` for `ctr run` to end and returns what the container did; on
    /// timeout kills `ctr` and returns `Err` with what was printed.
    pub fn wait(mut self, timeout: Duration) -> Result<RunResult, String> {
        let mut child = self.child.take().expect("waited once");
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let text = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let (stdout, stderr) = (text(self.stdout.take()), text(self.stderr.take()));
        match status {
            Some(status) => Ok(RunResult {
                code: status.code(),
                stdout,
                stderr,
                duration: self.started.elapsed(),
            }),
            None => Err(format!(
                "`ctr run` of {} did not end within {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                self.id
            )),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
