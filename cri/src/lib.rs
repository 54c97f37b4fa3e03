//! A small blocking client for the Kubernetes Container Runtime Interface (CRI, API `v1`)
//! over a Unix socket, such as containerd's.
//!
//! It speaks to the runtime exactly as the kubelet does (`RunPodSandbox`, `CreateContainer`,
//! `StartContainer`, ...), which is what `warden verify` and the integration tests need. It
//! owns a current-thread tokio runtime, so callers are plain synchronous code:
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//! use warden_cri::{Client, ContainerSpec, PodSpec};
//!
//! let mut cri = Client::connect(Path::new("/run/containerd/containerd.sock"), Duration::from_secs(10))?;
//! assert!(cri.runtime_handlers()?.iter().any(|h| h == "warden"));
//! let pod = PodSpec::new("hello", "default").handler("warden").host_network(true);
//! let pod_id = cri.run_pod(&pod)?;
//! let id = cri.create_container(&pod_id, &pod, &ContainerSpec::new("hello", "example.com/hello:1"))?;
//! cri.start_container(&id)?;
//! let status = cri.wait_exited(&id, Duration::from_secs(30))?;
//! println!("exit code {}", status.exit_code);
//! cri.stop_and_remove_pod(&pod_id)?;
//! # Ok::<(), warden_cri::CriError>(())
//! ```
//!
//! Errors keep the gRPC status code and message ([`CriError::code`], [`CriError::message`]):
//! the message of a failed `CreateContainer` or `StartContainer` is what
//! `kubectl describe pod` shows.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper_util::rt::TokioIo;
/// The CRI `v1` messages (from `k8s-cri`), for [`PodSpec::sandbox_config`] and
/// [`ContainerSpec::container_config`].
pub use k8s_cri::v1 as api;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// gRPC status codes, as [`CriError::code`] reports them.
pub use tonic::Code;

/// The CRI API version this client speaks.
pub const API_VERSION: &str = "v1";

/// How often [`Client::wait_exited`] asks for the container's status.
pub const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What can go wrong talking to a CRI runtime.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The socket could not be connected to (missing, refused, or no answer in time).
    #[error("cannot connect to the CRI socket {}: {message}", socket.display())]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// Why.
        message: String,
    },
    /// The runtime answered a call with a gRPC error.
    #[error("CRI {method} failed ({code:?}): {message}")]
    Status {
        /// The CRI method (`CreateContainer`, ...).
        method: &'static str,
        /// The gRPC status code.
        code: Code,
        /// The runtime's message (what `kubectl describe pod` shows).
        message: String,
    },
    /// A call, or a wait, did not finish in time.
    #[error(
        "CRI {method} did not finish within {after:?}{}",
        detail_suffix(detail)
    )]
    Timeout {
        /// The CRI method, or `wait_exited`.
        method: &'static str,
        /// The time limit.
        after: Duration,
        /// What was last seen (e.g. the container's last state), possibly empty.
        detail: String,
    },
    /// The runtime answered, but not with what the API promises (a missing field, a
    /// verbose `info` entry that is not the expected JSON).
    #[error("CRI {method}: unexpected answer: {message}")]
    Protocol {
        /// The CRI method.
        method: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The client's tokio runtime could not be created.
    #[error("cannot start the CRI client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

impl CriError {
    /// The gRPC status code of a [`CriError::Status`]; [`Code::DeadlineExceeded`] for a
    /// timeout, [`Code::Unavailable`] for a failed connection, [`Code::Internal`] for an
    /// unexpected answer, [`Code::Unknown`] otherwise.
    pub fn code(&self) -> Code {
        match self {
            CriError::Status { code, .. } => *code,
            CriError::Timeout { .. } => Code::DeadlineExceeded,
            CriError::Connect { .. } => Code::Unavailable,
            CriError::Protocol { .. } => Code::Internal,
            CriError::Runtime(_) => Code::Unknown,
        }
    }

    /// The runtime's own message for a [`CriError::Status`]; the whole error text otherwise.
    pub fn message(&self) -> String {
        match self {
            CriError::Status { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Whether the runtime said the object does not exist ([`Code::NotFound`]).
    pub fn is_not_found(&self) -> bool {
        self.code() == Code::NotFound
    }

    fn status(method: &'static str, status: tonic::Status) -> CriError {
        CriError::Status {
            method,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    fn protocol(method: &'static str, message: impl Into<String>) -> CriError {
        CriError::Protocol {
            method,
            message: message.into(),
        }
    }
}

/// What the runtime says about itself (`Version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The kubelet runtime API version the runtime reports (containerd: `0.1.0`).
    pub version: String,
    /// The runtime's name (`containerd`).
    pub runtime_name: String,
    /// The runtime's version (Debian's containerd: `1.6.20~ds1`).
    pub runtime_version: String,
    /// The CRI API version of the runtime (`v1`).
    pub runtime_api_version: String,
}

/// A runtime handler (a `runtimes.<name>` entry of containerd's CRI config), as
/// [`Client::runtimes`] reads it from the verbose status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeHandler {
    /// The handler's name: what a RuntimeClass's `handler` names (`warden`).
    pub name: String,
    /// `runtime_type` (`io.containerd.warden.v1`), when the runtime reports it.
    pub runtime_type: Option<String>,
    /// `runtime_path`, when set.
    pub runtime_path: Option<String>,
    /// `pod_annotations`: the pod annotations passed to the runtime.
    pub pod_annotations: Vec<String>,
}

/// A runtime condition (`RuntimeReady`, `NetworkReady`) from `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The condition's type.
    pub kind: String,
    /// Whether it holds.
    pub status: bool,
    /// Why not, in one word.
    pub reason: String,
    /// Why not, in words.
    pub message: String,
}

/// A pod sandbox to run: what the kubelet puts in a `PodSandboxConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSpec {
    /// The pod's name.
    pub name: String,
    /// The pod's Kubernetes namespace.
    pub namespace: String,
    /// The pod's uid (unique among pods of the same name and namespace).
    pub uid: String,
    /// The runtime handler (a RuntimeClass's `handler`); empty for the runtime's default.
    pub handler: String,
    /// The pod's annotations (e.g. `warden.dev/profile`).
    pub annotations: BTreeMap<String, String>,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// The directory the containers' logs go to ([`ContainerSpec::log_path`] is relative to
    /// it); `None`: no logs.
    pub log_dir: Option<PathBuf>,
    /// Use the node's network namespace (`hostNetwork: true`), so no CNI is involved.
    pub host_network: bool,
}

impl PodSpec {
    /// A pod `name` in `namespace` with a fresh uid, the default handler, the pod's own
    /// network namespace, and no logs.
    pub fn new(name: &str, namespace: &str) -> PodSpec {
        PodSpec {
            name: name.into(),
            namespace: namespace.into(),
            uid: fresh_uid(),
            ..PodSpec::default()
        }
    }

    /// Sets [`PodSpec::handler`].
    pub fn handler(mut self, handler: &str) -> PodSpec {
        self.handler = handler.into();
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> PodSpec {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: &str, value: &str) -> PodSpec {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets [`PodSpec::log_dir`].
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> PodSpec {
        self.log_dir = Some(dir.into());
        self
    }

    /// Sets [`PodSpec::host_network`].
    pub fn host_network(mut self, host_network: bool) -> PodSpec {
        self.host_network = host_network;
        self
    }

    /// The `PodSandboxConfig` the kubelet would send for this pod: metadata, log directory,
    /// labels, annotations; network namespace NODE for a host-network pod (else POD), a
    /// PID namespace of its own (CONTAINER, as for a pod without `shareProcessNamespace`),
    /// the pod's IPC namespace. No hostname: a host-network sandbox shares the node's UTS
    /// namespace and must not set one.
    pub fn sandbox_config(&self) -> api::PodSandboxConfig {
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            hostname: String::new(),
            log_directory: self
                .log_dir
                .as_ref()
                .map(|dir| dir.to_string_lossy().into_owned())
                .unwrap_or_default(),
            labels: self.labels.clone().into_iter().collect(),
            annotations: self.annotations.clone().into_iter().collect(),
            linux: Some(api::LinuxPodSandboxConfig {
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(self.namespace_options()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn namespace_options(&self) -> api::NamespaceOption {
        api::NamespaceOption {
            network: if self.host_network {
                api::NamespaceMode::Node
            } else {
                api::NamespaceMode::Pod
            } as i32,
            pid: api::NamespaceMode::Container as i32,
            ipc: api::NamespaceMode::Pod as i32,
            ..Default::default()
        }
    }
}

/// A bind mount of a host path into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// The host path.
    pub host_path: PathBuf,
    /// Where it appears in the container.
    pub container_path: String,
    /// Read-only.
    pub readonly: bool,
}

/// A container to create in a pod: what the kubelet puts in a `ContainerConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The container's name in the pod.
    pub name: String,
    /// The image reference (must be known to the runtime: imported or pulled).
    pub image: String,
    /// The entrypoint (`command` in the pod spec); empty keeps the image's.
    pub command: Vec<String>,
    /// The arguments (`args` in the pod spec); empty keeps the image's.
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Container annotations.
    pub annotations: BTreeMap<String, String>,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// The log file, relative to the pod's [`PodSpec::log_dir`]
    /// (the kubelet uses `<container name>/<restart count>.log`).
    pub log_path: Option<String>,
    /// Bind mounts.
    pub mounts: Vec<MountSpec>,
    /// The working directory; empty keeps the image's.
    pub working_dir: String,
    /// The memory limit the kubelet derives from `resources.limits.memory` (bytes; swap
    /// limited to the same, as the kubelet does on a node without swap).
    pub memory_limit: Option<u64>,
}

impl ContainerSpec {
    /// A container `name` running `image` as the image says.
    pub fn new(name: &str, image: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            ..ContainerSpec::default()
        }
    }

    /// Sets [`ContainerSpec::command`].
    pub fn command<I, S>(mut self, command: I) -> ContainerSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.command = command.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`ContainerSpec::args`].
    pub fn args<I, S>(mut self, args: I) -> ContainerSpec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> ContainerSpec {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> ContainerSpec {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// `resources.limits.memory`, in bytes.
    pub fn memory_limit(mut self, bytes: u64) -> ContainerSpec {
        self.memory_limit = Some(bytes);
        self
    }

    /// Sets [`ContainerSpec::log_path`].
    pub fn log_path(mut self, path: &str) -> ContainerSpec {
        self.log_path = Some(path.into());
        self
    }

    /// Adds a bind mount.
    pub fn mount(
        mut self,
        host_path: impl Into<PathBuf>,
        container_path: &str,
        readonly: bool,
    ) -> ContainerSpec {
        self.mounts.push(MountSpec {
            host_path: host_path.into(),
            container_path: container_path.into(),
            readonly,
        });
        self
    }

    /// The `ContainerConfig` the kubelet would send for this container in `pod`: the pod's
    /// network namespace, a PID namespace of its own, the pod's IPC namespace.
    pub fn container_config(&self, pod: &PodSpec) -> api::ContainerConfig {
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: self.name.clone(),
                attempt: 0,
            }),
            image: Some(api::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: self.command.clone(),
            args: self.args.clone(),
            working_dir: self.working_dir.clone(),
            envs: self
                .env
                .iter()
                .map(|(key, value)| api::KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            mounts: self
                .mounts
                .iter()
                .map(|m| api::Mount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.to_string_lossy().into_owned(),
                    readonly: m.readonly,
                    ..Default::default()
                })
                .collect(),
            labels: self.labels.clone().into_iter().collect(),
            annotations: self.annotations.clone().into_iter().collect(),
            log_path: self.log_path.clone().unwrap_or_default(),
            linux: Some(api::LinuxContainerConfig {
                security_context: Some(api::LinuxContainerSecurityContext {
                    namespace_options: Some(pod.namespace_options()),
                    ..Default::default()
                }),
                resources: self.memory_limit.map(|bytes| {
                    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
                    api::LinuxContainerResources {
                        memory_limit_in_bytes: bytes,
                        memory_swap_limit_in_bytes: bytes,
                        ..Default::default()
                    }
                }),
            }),
            ..Default::default()
        }
    }
}

/// A container's state, as CRI reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started (or failed to start: see [`ContainerStatus::reason`]).
    Created,
    /// Running.
    Running,
    /// Exited (also after a failed start, with reason `StartError`).
    Exited,
    /// The runtime does not know.
    Unknown,
}

impl ContainerState {
    fn from_api(state: i32) -> ContainerState {
        match api::ContainerState::try_from(state) {
            Ok(api::ContainerState::ContainerCreated) => ContainerState::Created,
            Ok(api::ContainerState::ContainerRunning) => ContainerState::Running,
            Ok(api::ContainerState::ContainerExited) => ContainerState::Exited,
            Ok(api::ContainerState::ContainerUnknown) | Err(_) => ContainerState::Unknown,
        }
    }
}

/// What an `ExecSync` ran to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What `ContainerStatus` says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The container id.
    pub id: String,
    /// Its state.
    pub state: ContainerState,
    /// Its exit code (meaningful once [`ContainerState::Exited`]).
    pub exit_code: i32,
    /// Why it is in this state, in one word (`Completed`, `Error`, `StartError`).
    pub reason: String,
    /// Why, in words (for a failed start: the runtime's error).
    pub message: String,
    /// The log file's path on the host (empty when it has none).
    pub log_path: String,
}

/// An image the runtime knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image id (`sha256:...` of its config).
    pub id: String,
    /// Its names.
    pub repo_tags: Vec<String>,
    /// Its digests by repository.
    pub repo_digests: Vec<String>,
    /// Its size in bytes.
    pub size: u64,
}

impl ImageInfo {
    fn from_api(image: api::Image) -> ImageInfo {
        ImageInfo {
            id: image.id,
            repo_tags: image.repo_tags,
            repo_digests: image.repo_digests,
            size: image.size,
        }
    }
}

/// A connection to a CRI runtime, with its own current-thread tokio runtime.
pub struct Client {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the CRI runtime on `socket`. `timeout` bounds the connection and, later,
    /// each call (see [`Client::set_timeout`]).
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Client, CriError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CriError::Runtime)?;
        let path = socket.to_path_buf();
        let connect_error = |message: String| CriError::Connect {
            socket: socket.to_path_buf(),
            message,
        };
        // The URI is required by tonic but unused: the connector ignores it.
        let endpoint = Endpoint::from_static("http://[::1]:50051").connect_timeout(timeout);
        let channel = rt.block_on(async {
            let connecting = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }));
            match tokio::time::timeout(timeout, connecting).await {
                Ok(Ok(channel)) => Ok(channel),
                Ok(Err(e)) => Err(connect_error(error_chain(&e))),
                Err(_) => Err(connect_error(format!("no connection within {timeout:?}"))),
            }
        })?;
        Ok(Client {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            timeout,
        })
    }

    /// The time limit of each call from now on.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The time limit of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one call on the client's runtime, bounded by the call timeout.
    fn call<T, F>(&self, method: &'static str, call: F) -> Result<T, CriError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let after = self.timeout;
        self.rt.block_on(async move {
            match tokio::time::timeout(after, call).await {
                Ok(Ok(response)) => Ok(response.into_inner()),
                Ok(Err(status)) => Err(CriError::status(method, status)),
                Err(_) => Err(CriError::Timeout {
                    method,
                    after,
                    detail: String::new(),
                }),
            }
        })
    }

    /// `Version`: the runtime's name and versions.
    pub fn version(&mut self) -> Result<Version, CriError> {
        let mut client = self.runtime.clone();
        let response = self.call(
            "Version",
            client.version(api::VersionRequest {
                version: API_VERSION.into(),
            }),
        )?;
        Ok(Version {
            version: response.version,
            runtime_name: response.runtime_name,
            runtime_version: response.runtime_version,
            runtime_api_version: response.runtime_api_version,
        })
    }

    fn status(&mut self, verbose: bool) -> Result<api::StatusResponse, CriError> {
        let mut client = self.runtime.clone();
        self.call("Status", client.status(api::StatusRequest { verbose }))
    }

    /// `Status`: the runtime's conditions (`RuntimeReady`, `NetworkReady`).
    pub fn conditions(&mut self) -> Result<Vec<Condition>, CriError> {
        let status = self.status(false)?;
        Ok(status
            .status
            .map(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .map(|c| Condition {
                kind: c.r#type,
                status: c.status,
                reason: c.reason,
                message: c.message,
            })
            .collect())
    }

    /// The verbose `Status`'s `info` map, as the runtime sends it (containerd: `config`, its
    /// CRI config as JSON; `cniconfig`; `golang`; `lastCNILoadStatus`...).
    pub fn status_info(&mut self) -> Result<BTreeMap<String, String>, CriError> {
        Ok(self.status(true)?.info.into_iter().collect())
    }

    /// The runtime handlers the runtime knows, with what it reports of each: from the
    /// verbose `Status`'s `info["config"]` (containerd 1.6 and later put their CRI config
    /// there, with its `containerd.runtimes` map), else from the `runtime_handlers` field
    /// (CRI runtimes that fill it, without details). Sorted by name.
    pub fn runtimes(&mut self) -> Result<Vec<RuntimeHandler>, CriError> {
        let status = self.status(true)?;
        if let Some(config) = status.info.get("config") {
            return parse_runtimes(config).map_err(|message| {
                CriError::protocol("Status", format!("info[\"config\"]: {message}"))
            });
        }
        if !status.runtime_handlers.is_empty() {
            let mut handlers: Vec<RuntimeHandler> = status
                .runtime_handlers
                .into_iter()
                .map(|h| RuntimeHandler {
                    name: h.name,
                    ..RuntimeHandler::default()
                })
                .collect();
            handlers.sort_by(|a, b| a.name.cmp(&b.name));
            return Ok(handlers);
        }
        Err(CriError::protocol(
            "Status",
            "the verbose status has no info[\"config\"] and names no runtime handlers",
        ))
    }

    /// The names of the runtime handlers the runtime knows ([`Client::runtimes`]).
    pub fn runtime_handlers(&mut self) -> Result<Vec<String>, CriError> {
        Ok(self.runtimes()?.into_iter().map(|h| h.name).collect())
    }

    /// `RunPodSandbox` with [`PodSpec::sandbox_config`] and the pod's handler; returns the
    /// sandbox id.
    pub fn run_pod(&mut self, pod: &PodSpec) -> Result<String, CriError> {
        let mut client = self.runtime.clone();
        let response = self.call(
            "RunPodSandbox",
            client.run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(pod.sandbox_config()),
                runtime_handler: pod.handler.clone(),
            }),
        )?;
        non_empty("RunPodSandbox", "pod_sandbox_id", response.pod_sandbox_id)
    }

    /// `StopPodSandbox`.
    pub fn stop_pod(&mut self, pod_id: &str) -> Result<(), CriError> {
        let mut client = self.runtime.clone();
        self.call(
            "StopPodSandbox",
            client.stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.into(),
            }),
        )?;
        Ok(())
    }

    /// `RemovePodSandbox` (which also removes the pod's containers).
    pub fn remove_pod(&mut self, pod_id: &str) -> Result<(), CriError> {
        let mut client = self.runtime.clone();
        self.call(
            "RemovePodSandbox",
            client.remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.into(),
            }),
        )?;
        Ok(())
    }

    /// `StopPodSandbox` then `RemovePodSandbox`, as the kubelet does when a pod is deleted. A
    /// pod the runtime does not know (already removed) is not an error.
    pub fn stop_and_remove_pod(&mut self, pod_id: &str) -> Result<(), CriError> {
        match self.stop_pod(pod_id) {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        }
        match self.remove_pod(pod_id) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Whether the pod sandbox is ready (`PodSandboxStatus`).
    pub fn pod_ready(&mut self, pod_id: &str) -> Result<bool, CriError> {
        let mut client = self.runtime.clone();
        let response = self.call(
            "PodSandboxStatus",
            client.pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: pod_id.into(),
                verbose: false,
            }),
        )?;
        let status = response
            .status
            .ok_or_else(|| CriError::protocol("PodSandboxStatus", "no status"))?;
        Ok(status.state == api::PodSandboxState::SandboxReady as i32)
    }

    /// `CreateContainer` of `c` in pod `pod_id` (run from `pod`); returns the container id.
    pub fn create_container(
        &mut self,
        pod_id: &str,
        pod: &PodSpec,
        c: &ContainerSpec,
    ) -> Result<String, CriError> {
        let mut client = self.runtime.clone();
        let response = self.call(
            "CreateContainer",
            client.create_container(api::CreateContainerRequest {
                pod_sandbox_id: pod_id.into(),
                config: Some(c.container_config(pod)),
                sandbox_config: Some(pod.sandbox_config()),
            }),
        )?;
        non_empty("CreateContainer", "container_id", response.container_id)
    }

    /// `StartContainer`.
    pub fn start_container(&mut self, id: &str) -> Result<(), CriError> {
        let mut client = self.runtime.clone();
        self.call(
            "StartContainer",
            client.start_container(api::StartContainerRequest {
                container_id: id.into(),
            }),
        )?;
        Ok(())
    }

    /// `StopContainer`, giving it `grace` before it is killed.
    pub fn stop_container(&mut self, id: &str, grace: Duration) -> Result<(), CriError> {
        let mut client = self.runtime.clone();
        self.call(
            "StopContainer",
            client.stop_container(api::StopContainerRequest {
                container_id: id.into(),
                timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
            }),
        )?;
        Ok(())
    }

    /// `RemoveContainer`.
    pub fn remove_container(&mut self, id: &str) -> Result<(), CriError> {
        let mut client = self.runtime.clone();
        self.call(
            "RemoveContainer",
            client.remove_container(api::RemoveContainerRequest {
                container_id: id.into(),
            }),
        )?;
        Ok(())
    }

    /// `ExecSync`: runs `cmd` in running container `id` (what `kubectl exec` asks for), for
    /// up to `timeout`.
    pub fn exec_sync(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: Duration,
    ) -> Result<ExecResult, CriError> {
        let mut client = self.runtime.clone();
        let response = self.call(
            "ExecSync",
            client.exec_sync(api::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            }),
        )?;
        Ok(ExecResult {
            exit_code: response.exit_code,
            stdout: response.stdout,
            stderr: response.stderr,
        })
    }

    /// The ids of the containers in pod `pod_id` (`ListContainers`).
    pub fn list_containers(&mut self, pod_id: &str) -> Result<Vec<String>, CriError> {
        let mut client = self.runtime.clone();
        let response = self.call(
            "ListContainers",
            client.list_containers(api::ListContainersRequest {
                filter: Some(api::ContainerFilter {
                    pod_sandbox_id: pod_id.into(),
                    ..Default::default()
                }),
            }),
        )?;
        Ok(response.containers.into_iter().map(|c| c.id).collect())
    }

    /// `ContainerStatus`.
    pub fn container_status(&mut self, id: &str) -> Result<ContainerStatus, CriError> {
        let mut client = self.runtime.clone();
        let response = self.call(
            "ContainerStatus",
            client.container_status(api::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }),
        )?;
        let status = response
            .status
            .ok_or_else(|| CriError::protocol("ContainerStatus", "no status"))?;
        Ok(ContainerStatus {
            id: status.id,
            state: ContainerState::from_api(status.state),
            exit_code: status.exit_code,
            reason: status.reason,
            message: status.message,
            log_path: status.log_path,
        })
    }

    /// Polls [`Client::container_status`] until the container has exited, for up to
    /// `timeout`; a [`CriError::Timeout`] (method `wait_exited`, with the last status seen)
    /// after that.
    pub fn wait_exited(
        &mut self,
        id: &str,
        timeout: Duration,
    ) -> Result<ContainerStatus, CriError> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.container_status(id)?;
            if status.state == ContainerState::Exited {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(CriError::Timeout {
                    method: "wait_exited",
                    after: timeout,
                    detail: format!(
                        "container {id} is {:?} {} {}",
                        status.state, status.reason, status.message
                    )
                    .trim_end()
                    .to_string(),
                });
            }
            std::thread::sleep(WAIT_POLL_INTERVAL);
        }
    }

    /// `ImageStatus`: the image `image` names, or `None` when the runtime does not have it.
    pub fn image_status(&mut self, image: &str) -> Result<Option<ImageInfo>, CriError> {
        let mut client = self.images.clone();
        let response = self.call(
            "ImageStatus",
            client.image_status(api::ImageStatusRequest {
                image: Some(api::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            }),
        )?;
        Ok(response.image.map(ImageInfo::from_api))
    }

    /// `ListImages`: every image the runtime has.
    pub fn list_images(&mut self) -> Result<Vec<ImageInfo>, CriError> {
        let mut client = self.images.clone();
        let response = self.call(
            "ListImages",
            client.list_images(api::ListImagesRequest { filter: None }),
        )?;
        Ok(response
            .images
            .into_iter()
            .map(ImageInfo::from_api)
            .collect())
    }
}

fn non_empty(method: &'static str, field: &str, value: String) -> Result<String, CriError> {
    if value.is_empty() {
        Err(CriError::protocol(method, format!("empty {field}")))
    } else {
        Ok(value)
    }
}

/// An error with its sources, `a: b: c` (tonic's transport errors say little at the top).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A uid for a pod: unique enough among pods of one name (time and process id).
fn fresh_uid() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:x}-{:x}-{:x}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The runtime handlers in a CRI config as containerd renders it into the verbose status
/// (`info["config"]`): the `containerd.runtimes` map, keyed by handler name, each with
/// `runtimeType`, `runtimePath` and `PodAnnotations` (containerd's JSON names). Sorted by
/// name.
pub fn parse_runtimes(config_json: &str) -> Result<Vec<RuntimeHandler>, String> {
    let config: serde_json::Value =
        serde_json::from_str(config_json).map_err(|e| format!("not JSON: {e}"))?;
    let runtimes = config
        .get("containerd")
        .and_then(|c| c.get("runtimes"))
        .ok_or("no containerd.runtimes")?
        .as_object()
        .ok_or("containerd.runtimes is not an object")?;
    let string = |entry: &serde_json::Value, keys: &[&str]| {
        keys.iter()
            .find_map(|key| entry.get(*key).and_then(serde_json::Value::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut handlers: Vec<RuntimeHandler> = runtimes
        .iter()
        .map(|(name, entry)| RuntimeHandler {
            name: name.clone(),
            runtime_type: string(entry, &["runtimeType", "runtime_type"]),
            runtime_path: string(entry, &["runtimePath", "runtime_path"]),
            pod_annotations: ["PodAnnotations", "podAnnotations", "pod_annotations"]
                .iter()
                .find_map(|key| entry.get(*key).and_then(serde_json::Value::as_array))
                .map(|list| {
                    list.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    handlers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(handlers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from what Debian's containerd 1.6.20 answers in the verbose `Status`
    /// (`info["config"]`), with a `runtime_path` set for `warden`.
    const CONTAINERD_16_CONFIG: &str = r#"{
  "containerd": {
    "snapshotter": "overlayfs",
    "defaultRuntimeName": "runc",
    "defaultRuntime": {"runtimeType": "", "runtimePath": "", "runtimeEngine": "", "PodAnnotations": null},
    "runtimes": {
      "runc": {"runtimeType": "io.containerd.runc.v2", "runtimePath": "", "runtimeEngine": "", "PodAnnotations": null, "ContainerAnnotations": null, "options": null},
      "warden": {"runtimeType": "io.containerd.warden.v1", "runtimePath": "/opt/warden/bin/containerd-shim-warden-v1", "runtimeEngine": "", "PodAnnotations": ["warden.dev/*"], "ContainerAnnotations": null, "options": null}
    },
    "noPivot": false
  },
  "cni": {"binDir": "/opt/cni/bin", "confDir": "/etc/cni/net.d"},
  "sandboxImage": "registry.k8s.io/pause:3.6"
}"#;

    #[test]
    fn runtimes_are_read_from_containerd_16_config() {
        let handlers = parse_runtimes(CONTAINERD_16_CONFIG).unwrap();
        assert_eq!(
            handlers,
            vec![
                RuntimeHandler {
                    name: "runc".into(),
                    runtime_type: Some("io.containerd.runc.v2".into()),
                    runtime_path: None,
                    pod_annotations: vec![],
                },
                RuntimeHandler {
                    name: "warden".into(),
                    runtime_type: Some("io.containerd.warden.v1".into()),
                    runtime_path: Some("/opt/warden/bin/containerd-shim-warden-v1".into()),
                    pod_annotations: vec!["warden.dev/*".into()],
                },
            ]
        );
    }

    #[test]
    fn runtimes_in_a_bad_config_are_errors() {
        assert!(parse_runtimes("not json").unwrap_err().contains("not JSON"));
        assert!(
            parse_runtimes(r#"{"containerd": {}}"#)
                .unwrap_err()
                .contains("no containerd.runtimes")
        );
        assert!(
            parse_runtimes(r#"{"containerd": {"runtimes": []}}"#)
                .unwrap_err()
                .contains("not an object")
        );
        assert_eq!(
            parse_runtimes(r#"{"containerd": {"runtimes": {}}}"#).unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_runtime_entry_of_unexpected_shape_yields_the_name_only() {
        let handlers =
            parse_runtimes(r#"{"containerd": {"runtimes": {"x": {"runtimeType": 3}, "y": 1}}}"#)
                .unwrap();
        assert_eq!(handlers.len(), 2);
        assert_eq!(handlers[0].name, "x");
        assert_eq!(handlers[0].runtime_type, None);
        assert_eq!(handlers[1].name, "y");
    }

    #[test]
    fn host_network_pod_config_is_what_the_kubelet_sends() {
        let pod = PodSpec::new("web-0", "payments")
            .handler("warden")
            .annotation("warden.dev/profile", "payments-api")
            .label("app", "web")
            .log_dir("/var/log/pods/x")
            .host_network(true);
        let config = pod.sandbox_config();
        let meta = config.metadata.as_ref().unwrap();
        assert_eq!(
            (meta.name.as_str(), meta.namespace.as_str()),
            ("web-0", "payments")
        );
        assert!(!meta.uid.is_empty());
        assert_eq!(config.hostname, "");
        assert_eq!(config.log_directory, "/var/log/pods/x");
        assert_eq!(config.annotations["warden.dev/profile"], "payments-api");
        assert_eq!(config.labels["app"], "web");
        let ns = config
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, api::NamespaceMode::Node as i32);
        assert_eq!(ns.pid, api::NamespaceMode::Container as i32);
        assert_eq!(ns.ipc, api::NamespaceMode::Pod as i32);

        let ns = PodSpec::new("a", "b").sandbox_config().linux.unwrap();
        let ns = ns.security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.network, api::NamespaceMode::Pod as i32);
    }

    #[test]
    fn pods_get_distinct_uids() {
        assert_ne!(PodSpec::new("a", "b").uid, PodSpec::new("a", "b").uid);
    }

    #[test]
    fn container_config_carries_the_spec() {
        let pod = PodSpec::new("p", "n").host_network(true);
        let c = ContainerSpec::new("app", "localhost/x:1")
            .command(["/app.wasm"])
            .args(["a", "b"])
            .env("K", "V")
            .env("A", "B")
            .annotation("k", "v")
            .log_path("app/0.log")
            .mount("/host/data", "/data", true);
        let config = c.container_config(&pod);
        assert_eq!(config.metadata.unwrap().name, "app");
        assert_eq!(config.image.unwrap().image, "localhost/x:1");
        assert_eq!(config.command, ["/app.wasm"]);
        assert_eq!(config.args, ["a", "b"]);
        let env: Vec<(String, String)> = config
            .envs
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect();
        assert_eq!(env, [("K".into(), "V".into()), ("A".into(), "B".into())]);
        assert_eq!(config.annotations["k"], "v");
        assert_eq!(config.log_path, "app/0.log");
        assert_eq!(config.mounts.len(), 1);
        assert_eq!(config.mounts[0].host_path, "/host/data");
        assert_eq!(config.mounts[0].container_path, "/data");
        assert!(config.mounts[0].readonly);
        let ns = config
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, api::NamespaceMode::Node as i32);
    }

    #[test]
    fn container_states_map_from_the_api() {
        assert_eq!(ContainerState::from_api(0), ContainerState::Created);
        assert_eq!(ContainerState::from_api(1), ContainerState::Running);
        assert_eq!(ContainerState::from_api(2), ContainerState::Exited);
        assert_eq!(ContainerState::from_api(3), ContainerState::Unknown);
        assert_eq!(ContainerState::from_api(42), ContainerState::Unknown);
    }

    #[test]
    fn errors_keep_code_and_message() {
        let e = CriError::status(
            "StartContainer",
            tonic::Status::unknown("failed to create containerd task: rule native"),
        );
        assert_eq!(e.code(), Code::Unknown);
        assert_eq!(e.message(), "failed to create containerd task: rule native");
        assert!(e.to_string().contains("CRI StartContainer failed"));
        let e = CriError::status("StopPodSandbox", tonic::Status::not_found("no such pod"));
        assert!(e.is_not_found());
        let e = CriError::Timeout {
            method: "wait_exited",
            after: Duration::from_secs(1),
            detail: "container x is Running".into(),
        };
        assert_eq!(e.code(), Code::DeadlineExceeded);
        assert!(e.to_string().ends_with("(container x is Running)"), "{e}");
    }

    #[test]
    fn connecting_to_a_missing_socket_fails_with_the_path() {
        let dir = std::env::temp_dir().join(format!("warden-cri-missing-{}", fresh_uid()));
        let socket = dir.join("none.sock");
        let e = Client::connect(&socket, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, CriError::Connect { .. }), "{e:?}");
        assert!(e.to_string().contains("none.sock"), "{e}");
        assert_eq!(e.code(), Code::Unavailable);
    }
}
