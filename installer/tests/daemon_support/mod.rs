//! What the daemon's tests share: an API server that replays recorded exchanges, a private
//! dbus-daemon, and a stand-in for systemd's Manager interface.
//!
//! - [`RecordedApi`]: a plain-HTTP/1.1 server on 127.0.0.1 that answers each request with the
//!   recorded response of the exchange it matches (method, path, query, content type and
//!   JSON body, from `tests/k8s_exchanges/*.json`), and keeps every request it received, so a
//!   test asserts what reached the API server (and what did not). A request that matches no
//!   recording gets a 404 `Status` and is kept too. A kubeconfig pointing at it is written
//!   for `warden --kubeconfig`.
//! - [`DbusDaemon`]: Debian's `dbus-daemon` with a config of its own (a socket in a temp dir,
//!   every name and message allowed), started and stopped by the test.
//! - [`SystemdStandIn`]: a zbus object at `/org/freedesktop/systemd1` with the two methods of
//!   `org.freedesktop.systemd1.Manager` that warden calls: `Subscribe`, and `RestartUnit`,
//!   which answers with a new job's path, runs a given command, and then emits `JobRemoved`
//!   for that job with result `done` (or `failed` for a unit whose name starts with `fail`,
//!   or when the command fails); before it, a `JobRemoved` of another job (result `failed`),
//!   which warden must ignore. A unit whose name starts with `hang` never ends. Served on a
//!   bus (owning `org.freedesktop.systemd1`) or peer to peer on a socket of its own, as
//!   systemd serves `/run/systemd/private`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

// ---------------------------------------------------------------------------------------
// What the daemon's tests do alike.

/// A static binary that sleeps until it is killed: the pod sandbox's process (built with
/// rustc for the musl target that `rust-toolchain.toml` installs).
pub fn build_pause(dir: &Path) -> Vec<u8> {
    let source = dir.join("pause.rs");
    std::fs::write(&source, "fn main() { loop { std::thread::park(); } }\n").unwrap();
    let out = dir.join("pause");
    let status = Command::new("rustc")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--edition",
            "2021",
            "-O",
            "--target",
            "x86_64-unknown-linux-musl",
            "-o",
        ])
        .arg(&out)
        .arg(&source)
        .status()
        .expect("cannot run rustc");
    assert!(status.success(), "rustc could not build the pause binary");
    std::fs::read(out).unwrap()
}

/// The audit records in `path` (none when it is missing).
pub fn records(path: &Path) -> Vec<warden_audit::Record> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Polls `ready` every 100 ms; fails with `what` and `diag()` after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
    diag: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}\n{}",
            diag()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// The recorded API server.

/// One recorded request and the response the API server gave.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Exchange {
    pub name: String,
    pub request: RecordedRequest,
    pub response: RecordedResponse,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub body: Option<Value>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct RecordedResponse {
    pub status: u16,
    pub body: Value,
}

/// A request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Option<Value>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The recording it matched, if any.
    pub matched: Option<String>,
}

/// The recordings of `tests/k8s_exchanges/<name>.json`, with `{NODE}` replaced by `node`.
pub fn exchanges(names: &[&str], node: &str) -> Vec<Exchange> {
    exchanges_with(names, &[("{NODE}", node)])
}

/// The recordings of `tests/k8s_exchanges/<name>.json`, with each `(from, to)` of
/// `replace` replaced in their text (`{NODE}`; the recorded `containerd://1.6.20` by the
/// version a test's containerd really is).
pub fn exchanges_with(names: &[&str], replace: &[(&str, &str)]) -> Vec<Exchange> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/k8s_exchanges");
    names
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(format!("{name}.json")))
                .unwrap_or_else(|e| panic!("{name}.json: {e}"));
            let text = replace
                .iter()
                .fold(text, |text, (from, to)| text.replace(from, to));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}.json: {e}"))
        })
        .collect()
}

/// The server. Stops when dropped.
pub struct RecordedApi {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    addr: std::net::SocketAddr,
    /// The network namespace it listens in, when not this process's.
    netns: Option<PathBuf>,
}

/// Runs `f` on a thread that joined the network namespace `netns` (this one's for `None`).
fn in_netns<T: Send + 'static>(netns: Option<&Path>, f: impl FnOnce() -> T + Send + 'static) -> T {
    let netns = netns.map(Path::to_path_buf);
    std::thread::spawn(move || {
        if let Some(netns) = netns {
            use std::os::fd::AsRawFd;
            let file =
                std::fs::File::open(&netns).unwrap_or_else(|e| panic!("{}: {e}", netns.display()));
            // SAFETY: setns on a namespace fd; it changes only this thread, which ends here.
            let joined = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                joined,
                0,
                "setns {}: {}",
                netns.display(),
                std::io::Error::last_os_error()
            );
        }
        f()
    })
    .join()
    .unwrap()
}

impl RecordedApi {
    /// Serves `exchanges` (any number of times each, in any order).
    pub fn start(exchanges: Vec<Exchange>) -> RecordedApi {
        RecordedApi::serve_on(TcpListener::bind("127.0.0.1:0").unwrap(), exchanges, None)
    }

    /// [`RecordedApi::start`], listening on 127.0.0.1 of the network namespace `netns`
    /// (e.g. `/proc/PID/ns/net`): for a container that runs in that namespace, as a pod
    /// without hostNetwork does. The listening socket is made by a thread that joined the
    /// namespace, and stays in it.
    pub fn start_in_netns(exchanges: Vec<Exchange>, netns: &Path) -> RecordedApi {
        let listener = in_netns(Some(netns), || TcpListener::bind("127.0.0.1:0").unwrap());
        let mut api = RecordedApi::serve_on(listener, exchanges, None);
        api.netns = Some(netns.to_path_buf());
        api
    }

    /// [`RecordedApi::start_in_netns`] over TLS, as an API server serves: `https://`, with
    /// `cert`'s chain and key (see [`ServingCert`]).
    pub fn start_tls_in_netns(
        exchanges: Vec<Exchange>,
        netns: &Path,
        cert: &ServingCert,
    ) -> RecordedApi {
        let listener = in_netns(Some(netns), || TcpListener::bind("127.0.0.1:0").unwrap());
        let mut api = RecordedApi::serve_on(listener, exchanges, Some(cert.server_config()));
        api.netns = Some(netns.to_path_buf());
        api
    }

    fn serve_on(
        listener: TcpListener,
        exchanges: Vec<Exchange>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> RecordedApi {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let received = received.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let received = received.clone();
                    let exchanges = exchanges.clone();
                    let tls = tls.clone();
                    std::thread::spawn(move || {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                        match tls {
                            Some(config) => {
                                let Ok(connection) = rustls::ServerConnection::new(config) else {
                                    return;
                                };
                                let stream = rustls::StreamOwned::new(connection, stream);
                                serve(BufReader::new(stream), &exchanges, &received);
                            }
                            None => serve(BufReader::new(stream), &exchanges, &received),
                        }
                    });
                }
            })
        };
        RecordedApi {
            url: format!("{scheme}://{addr}"),
            received,
            stop,
            thread: Some(thread),
            addr,
            netns: None,
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// `METHOD path` of every request received so far.
    pub fn lines(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// Waits until a request matched recording `name`.
    pub fn wait_for(&self, name: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .received()
                .iter()
                .any(|r| r.matched.as_deref() == Some(name))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// A kubeconfig for this server (no credentials: plain HTTP on loopback).
    pub fn write_kubeconfig(&self, path: &Path) {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: recorded\n  cluster:\n    \
                 server: {}\ncontexts:\n- name: recorded\n  context:\n    cluster: recorded\n    \
                 user: warden\ncurrent-context: recorded\nusers:\n- name: warden\n  user: {{}}\n",
                self.url
            ),
        )
        .unwrap();
    }
}

impl Drop for RecordedApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let addr = self.addr;
        in_netns(self.netns.as_deref(), move || {
            let _ = TcpStream::connect(addr);
        });
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers the requests of one connection (HTTP/1.1 keep-alive).
fn serve<S: Read + Write>(
    mut reader: BufReader<S>,
    exchanges: &[Exchange],
    received: &Mutex<Vec<Received>>,
) {
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, path) = (method.to_owned(), path.to_owned());
        let mut length = 0usize;
        let mut content_type = None;
        let mut authorization = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "content-type" => content_type = Some(value.trim().to_owned()),
                    "authorization" => authorization = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body: Option<Value> = (!body.is_empty()).then(|| {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()))
        });
        let matched = exchanges.iter().find(|x| {
            x.request.method == method
                && x.request.path == path
                && (x.request.content_type.is_none() || x.request.content_type == content_type)
                && (x.request.body.is_none() || x.request.body == body)
        });
        let (status, response) = match matched {
            Some(x) => (x.response.status, x.response.body.clone()),
            None => (
                404,
                serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": format!("no recorded exchange for {method} {path}"),
                    "reason": "NotFound", "code": 404
                }),
            ),
        };
        received.lock().unwrap().push(Received {
            method,
            path,
            content_type,
            body,
            authorization,
            matched: matched.map(|x| x.name.clone()),
        });
        let text = response.to_string();
        let reply = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            if status < 300 { "OK" } else { "Not Found" },
            text.len()
        );
        let writer = reader.get_mut();
        if writer.write_all(reply.as_bytes()).is_err() || writer.flush().is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// TLS for the recorded API server.

/// A CA and a server certificate it signed for IP 127.0.0.1, made with `openssl` (as a
/// cluster's CA signs the API server's): `ca.crt` is what a pod's service account volume
/// holds.
pub struct ServingCert {
    pub ca_pem: PathBuf,
    server_pem: PathBuf,
    key_pem: PathBuf,
}

impl ServingCert {
    pub fn generate(dir: &Path) -> ServingCert {
        std::fs::create_dir_all(dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(dir)
                .args(args)
                .output()
                .expect("cannot run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec[..],
                &["-keyout", "ca.key", "-out", "ca.crt"][..],
                &["-subj", "/CN=warden-test-cluster-ca", "-days", "2"][..],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec[..],
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=kube-apiserver",
                ][..],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        ServingCert {
            ca_pem: dir.join("ca.crt"),
            server_pem: dir.join("server.crt"),
            key_pem: dir.join("server.key"),
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_file_iter(&self.server_pem)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&self.key_pem).unwrap();
        // The process's provider: ring, the only one built in (as for kube's client).
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }
}

// ---------------------------------------------------------------------------------------
// D-Bus.

/// A private dbus-daemon. Stopped when dropped.
pub struct DbusDaemon {
    child: Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl DbusDaemon {
    pub fn start() -> DbusDaemon {
        let program = Path::new("/usr/bin/dbus-daemon");
        assert!(
            program.is_file(),
            "dbus-daemon is missing (Debian package dbus-daemon; `make deps` installs it)"
        );
        let dir = tempfile::Builder::new()
            .prefix("warden-dbus-")
            .tempdir()
            .unwrap();
        let socket = dir.path().join("system_bus_socket");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        // Its log (as root without CAP_SYS_RESOURCE it says it cannot raise its fd limit).
        let log = std::fs::File::create(dir.path().join("dbus-daemon.log")).unwrap();
        let child = Command::new(program)
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .arg("--nopidfile")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start dbus-daemon");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "dbus-daemon did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        DbusDaemon {
            child,
            address: format!("unix:path={}", socket.display()),
            _dir: dir,
        }
    }
}

impl Drop for DbusDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call of `RestartUnit` the stand-in received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartCall {
    pub unit: String,
    pub mode: String,
    pub result: String,
}

struct Manager {
    command: Option<PathBuf>,
    calls: Arc<Mutex<Vec<RestartCall>>>,
    subscribed: Arc<AtomicU32>,
    next_job: Arc<AtomicU32>,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    async fn subscribe(&self) {
        self.subscribed.fetch_add(1, Ordering::SeqCst);
    }

    async fn restart_unit(
        &self,
        name: String,
        mode: String,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> zbus::fdo::Result<zbus::OwnedObjectPath> {
        let id = self.next_job.fetch_add(2, Ordering::SeqCst);
        let job = format!("/org/freedesktop/systemd1/job/{id}");
        let path = zbus::OwnedObjectPath::try_from(job.clone())
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
        let decoy =
            zbus::OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{}", id + 1))
                .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
        let conn = conn.clone();
        let command = self.command.clone();
        let calls = self.calls.clone();
        // The reply goes out first; the job runs and ends afterwards, as systemd's does.
        tokio::spawn(async move {
            if name.starts_with("hang") {
                return;
            }
            let ran_ok = match command {
                Some(command) => {
                    let unit = name.clone();
                    tokio::task::spawn_blocking(move || {
                        Command::new(&command)
                            .env("WARDEN_RESTART_UNIT", unit)
                            .stdin(Stdio::null())
                            .status()
                            .is_ok_and(|s| s.success())
                    })
                    .await
                    .unwrap_or(false)
                }
                None => true,
            };
            let result = if name.starts_with("fail") || !ran_ok {
                "failed"
            } else {
                "done"
            };
            calls.lock().unwrap().push(RestartCall {
                unit: name.clone(),
                mode,
                result: result.to_owned(),
            });
            let emit = |job: zbus::OwnedObjectPath, id: u32, result: &'static str| {
                let conn = conn.clone();
                let name = name.clone();
                async move {
                    conn.emit_signal(
                        None::<&str>,
                        "/org/freedesktop/systemd1",
                        "org.freedesktop.systemd1.Manager",
                        "JobRemoved",
                        &(id, job, name, result),
                    )
                    .await
                }
            };
            let _ = emit(decoy, id + 1, "failed").await;
            let _ = emit(path, id, result).await;
        });
        Ok(zbus::OwnedObjectPath::try_from(job).expect("a valid path"))
    }
}

/// The stand-in for systemd. Stops when dropped.
pub struct SystemdStandIn {
    pub address: String,
    calls: Arc<Mutex<Vec<RestartCall>>>,
    subscribed: Arc<AtomicU32>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl SystemdStandIn {
    fn manager(command: Option<&Path>) -> (Manager, Arc<Mutex<Vec<RestartCall>>>, Arc<AtomicU32>) {
        let calls: Arc<Mutex<Vec<RestartCall>>> = Arc::default();
        let subscribed: Arc<AtomicU32> = Arc::default();
        (
            Manager {
                command: command.map(Path::to_path_buf),
                calls: calls.clone(),
                subscribed: subscribed.clone(),
                next_job: Arc::new(AtomicU32::new(100)),
            },
            calls,
            subscribed,
        )
    }

    /// On the bus at `bus_address`, owning `org.freedesktop.systemd1`; `RestartUnit` runs
    /// `command` (when given) before the job ends.
    pub fn on_bus(bus_address: &str, command: Option<&Path>) -> SystemdStandIn {
        let (manager, calls, subscribed) = Self::manager(command);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let address = bus_address.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let conn = zbus::connection::Builder::address(address.as_str())
                    .name("org.freedesktop.systemd1")
                    .serve_at("/org/freedesktop/systemd1", manager)
                    .build()
                    .await;
                match conn {
                    Ok(conn) => {
                        ready_tx.send(Ok(())).unwrap();
                        let _ = shutdown_rx.await;
                        drop(conn);
                    }
                    Err(e) => ready_tx.send(Err(e.to_string())).unwrap(),
                }
            });
        });
        ready_rx
            .recv()
            .unwrap()
            .expect("the stand-in could not join the bus");
        SystemdStandIn {
            address: bus_address.to_owned(),
            calls,
            subscribed,
            shutdown: Some(shutdown),
            thread: Some(thread),
            _dir: None,
        }
    }

    /// Peer to peer on a socket of its own (as systemd's /run/systemd/private): every
    /// connection is served, none has a bus daemon in between.
    pub fn peer_to_peer(command: Option<&Path>) -> SystemdStandIn {
        let (manager, calls, subscribed) = Self::manager(command);
        let manager = Arc::new(manager);
        let dir = tempfile::Builder::new()
            .prefix("warden-systemd-")
            .tempdir()
            .unwrap();
        let socket = dir.path().join("private");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let (shutdown, mut shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                let mut connections = Vec::new();
                loop {
                    tokio::select! {
                        _ = &mut shutdown_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let manager = Manager {
                                command: manager.command.clone(),
                                calls: manager.calls.clone(),
                                subscribed: manager.subscribed.clone(),
                                next_job: manager.next_job.clone(),
                            };
                            let stream = stream.into_std().unwrap();
                            let built = zbus::connection::Builder::unix_stream(stream)
                                .server(zbus::Guid::generate())
                                .p2p()
                                .serve_at("/org/freedesktop/systemd1", manager)
                                .build()
                                .await;
                            // A client that tried the bus handshake first is dropped there.
                            if let Ok(conn) = built {
                                connections.push(conn);
                            }
                        }
                    }
                }
            });
        });
        SystemdStandIn {
            address: format!("unix:path={}", socket.display()),
            calls,
            subscribed,
            shutdown: Some(shutdown),
            thread: Some(thread),
            _dir: Some(dir),
        }
    }

    pub fn calls(&self) -> Vec<RestartCall> {
        self.calls.lock().unwrap().clone()
    }

    pub fn subscribed(&self) -> u32 {
        self.subscribed.load(Ordering::SeqCst)
    }
}

impl Drop for SystemdStandIn {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
