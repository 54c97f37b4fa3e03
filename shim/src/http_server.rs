//! The HTTP/1.1 server of a service container: accepts connections, hands each request to a
//! [`Handler`] (a proxy component or a WAGI module), writes one access line per request, and
//! shuts down on SIGTERM.
//!
//! **Access lines** go to the container's stderr, one per request, when the response head
//! is ready:
//!
//! ```text
//! warden-http access method=GET path="/hello?x=1" status=200 ms=0.84
//! ```
//!
//! The path is escaped (no control characters reach a terminal or the log) and quoted. The
//! lines are written in batches every 50 ms (see [`ACCESS_FLUSH`]).
//!
//! **Bounds.** At most [`MAX_IN_FLIGHT`] requests are handled at once (each has a guest
//! instance with its own memory budget); more get 503 at once. A client must send its
//! request headers within [`HEADER_READ_TIMEOUT`] (a connection that trickles them is
//! closed), and a request body is read only as fast as the guest reads it.
//!
//! **Shutdown.** The first SIGTERM (what `ctr task kill` and the kubelet send) or SIGINT
//! stops accepting, lets every open connection finish the request it is serving (keep-alive
//! connections close after it), waits for them up to the drain bound (the request deadline:
//! no request may legitimately take longer), and then the service exits 0. A second SIGTERM
//! or SIGINT ends the process at once with status 143.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use nix::sys::signal::{SigSet, Signal};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;
use warden_audit::escape_for_terminal;
use wasmtime_wasi_http::io::TokioIo;

/// The response body every handler answers with (wasmtime-wasi-http's outgoing body).
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// Requests handled at the same time; more are answered 503 without running the guest.
pub const MAX_IN_FLIGHT: usize = 1000;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The exit status after a second SIGTERM cut the drain short (128 + SIGTERM).
pub const INTERRUPTED_EXIT: i32 = 143;

/// Answers requests.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        request: hyper::Request<Incoming>,
    ) -> Pin<Box<dyn Future<Output = hyper::Response<Body>> + Send>>;
}

/// A response with a short text body (errors the server or a runner produces itself).
pub fn text_response(status: http::StatusCode, text: impl Into<String>) -> hyper::Response<Body> {
    let mut text = text.into();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let body = http_body_util::Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Binds the service's address for one shard of the server (see [`serve`]): every shard
/// listens on the same address with `SO_REUSEPORT`, so that the kernel spreads connections
/// over the shards. The first shard's bind reports a bad address; the others bind the
/// address it got (a port 0 becomes the port the first one was given). The container is
/// ready once the first shard has bound.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("cannot create a socket for {addr}: {e}"))?;
    socket
        .set_reuseaddr(true)
        .and_then(|()| socket.set_reuseport(true))
        .map_err(|e| format!("cannot share {addr} between the server's threads: {e}"))?;
    socket
        .bind(addr)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    socket
        .listen(LISTEN_BACKLOG)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Connections waiting to be accepted, per shard.
const LISTEN_BACKLOG: u32 = 1024;

/// What the shards of one server share: the bound on requests in flight (the instance pool
/// is one for the whole service), how long a drain may take, and the termination signals.
#[derive(Clone)]
pub struct Shared {
    pub in_flight: Arc<tokio::sync::Semaphore>,
    pub drain: Duration,
    pub signals: Signals,
}

impl Shared {
    pub fn new(drain: Duration, signals: Signals) -> Self {
        Shared {
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            drain,
            signals,
        }
    }
}

/// How many termination signals (SIGTERM, SIGINT) the process has received, for every shard
/// to see: the first starts the drain, the second cuts it short.
pub type Signals = tokio::sync::watch::Receiver<u32>;

/// How serving ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ServeEnd {
    /// SIGTERM, and every connection finished within the drain bound.
    Drained,
    /// SIGTERM, and this many connections were still open at the drain bound.
    DrainTimedOut(usize),
    /// A second SIGTERM during the drain.
    Interrupted,
}

impl ServeEnd {
    pub fn exit_code(&self) -> i32 {
        match self {
            ServeEnd::Drained | ServeEnd::DrainTimedOut(_) => 0,
            ServeEnd::Interrupted => INTERRUPTED_EXIT,
        }
    }
}

/// SIGTERM and SIGINT, counted ([`Signals`]): blocks both in the calling thread (and so in
/// every thread it starts afterwards: call it before the server's threads start) and waits
/// for them in a thread of its own with `sigwait`. Unlike tokio's signal driver this opens
/// no descriptor (the runner holds none but stdio, its grants and the report pipe).
pub fn termination_signals() -> Result<Signals, String> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()
        .map_err(|e| format!("blocking SIGTERM and SIGINT: {e}"))?;
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    std::thread::Builder::new()
        .name("warden-signals".into())
        .spawn(move || {
            while set.wait().is_ok() {
                tx.send_modify(|count| *count += 1);
                if tx.is_closed() {
                    return;
                }
            }
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;
    Ok(rx)
}

/// Serves `listener` with `handler` until SIGTERM (see [`termination_signals`]); see the
/// module comment. One shard of the server: each runs on a thread of its own with a
/// single-threaded runtime, and a request is served start to end on the thread that
/// accepted its connection (the guest's task included), so that no request wakes another
/// thread. `announce`: this shard says where the service listens.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    shared: Shared,
    announce: bool,
) -> Result<ServeEnd, String> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut signals = shared.signals.clone();
    let mut connections = JoinSet::new();
    if announce {
        let local = listener.local_addr().ok();
        eprintln!(
            "warden-http: listening on {}",
            local.map_or_else(|| "?".into(), |a| a.to_string())
        );
    }
    loop {
        tokio::select! {
            // A closed channel (the signal thread is gone) ends serving too.
            _ = signals.wait_for(|n| *n >= 1) => break,
            // Finished connections are reaped as they end, so the set holds open ones only.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let handler = handler.clone();
                    let stop = stop_rx.clone();
                    let in_flight = shared.in_flight.clone();
                    connections.spawn(serve_connection(stream, handler, in_flight, stop));
                }
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    log::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let open = connections.len();
    if announce || open > 0 {
        eprintln!(
            "warden-http: SIGTERM: no longer accepting; draining {open} open connection(s) for \
             up to {}s",
            shared.drain.as_secs()
        );
    }
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + shared.drain;
    let end = drain_connections(&mut connections, &mut signals, deadline).await;
    access_log().flush();
    Ok(end)
}

/// How a server of several shards ended: interrupted if any shard was, else the open
/// connections left at the drain bound, summed.
pub fn combine(ends: impl IntoIterator<Item = ServeEnd>) -> ServeEnd {
    let mut left = None;
    for end in ends {
        match end {
            ServeEnd::Interrupted => return ServeEnd::Interrupted,
            ServeEnd::DrainTimedOut(n) => *left.get_or_insert(0) += n,
            ServeEnd::Drained => {}
        }
    }
    left.map_or(ServeEnd::Drained, ServeEnd::DrainTimedOut)
}

/// Waits for the open connections to finish, up to `deadline` or a second signal.
async fn drain_connections(
    connections: &mut JoinSet<()>,
    signals: &mut Signals,
    deadline: tokio::time::Instant,
) -> ServeEnd {
    loop {
        tokio::select! {
            _ = signals.wait_for(|n| *n >= 2) => return ServeEnd::Interrupted,
            _ = tokio::time::sleep_until(deadline) => {
                let left = connections.len();
                connections.abort_all();
                eprintln!("warden-http: drain bound reached with {left} connection(s) open");
                return ServeEnd::DrainTimedOut(left);
            }
            next = connections.join_next() => if next.is_none() {
                return ServeEnd::Drained;
            },
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    handler: Arc<dyn Handler>,
    in_flight: Arc<tokio::sync::Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let handler = handler.clone();
        let in_flight = in_flight.clone();
        async move {
            let started = Instant::now();
            let method = request.method().clone();
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".into());
            let response = match in_flight.try_acquire_owned() {
                Ok(_permit) => handler.handle(request).await,
                Err(_) => text_response(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    format!("more than {MAX_IN_FLIGHT} requests in flight"),
                ),
            };
            access_line(&method, &path, response.status(), started.elapsed());
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                log::debug!("connection: {e}");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    if let Err(e) = conn.await {
        log::debug!("connection: {e}");
    }
}

fn access_line(method: &http::Method, path: &str, status: http::StatusCode, took: Duration) {
    access_log().push(&format_access(method, path, status, took));
}

/// How often batched access lines are written.
pub const ACCESS_FLUSH: Duration = Duration::from_millis(50);
/// Batched access lines are written at once past this many bytes.
const ACCESS_BATCH: usize = 64 * 1024;

/// Access lines, written in batches: one write per [`ACCESS_FLUSH`] (or [`ACCESS_BATCH`]
/// bytes) instead of one per request, because each write to the container's stderr wakes
/// containerd's copier (and `ctr`'s) — per request, that was a large share of a small
/// request's cost. Lines stay whole; they reach the log at most [`ACCESS_FLUSH`] late, and
/// [`serve`] flushes what is left before it returns.
struct AccessLog {
    pending: Mutex<Vec<u8>>,
}

fn access_log() -> &'static AccessLog {
    static LOG: OnceLock<AccessLog> = OnceLock::new();
    static FLUSHER: OnceLock<()> = OnceLock::new();
    let log = LOG.get_or_init(|| AccessLog {
        pending: Mutex::new(Vec::new()),
    });
    FLUSHER.get_or_init(|| {
        let started = std::thread::Builder::new()
            .name("warden-access".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(ACCESS_FLUSH);
                    access_log().flush();
                }
            });
        if let Err(e) = started {
            log::warn!("no access-log flusher ({e}); lines are written as they come");
        }
    });
    log
}

impl AccessLog {
    fn push(&self, line: &str) {
        let full = match self.pending.lock() {
            Ok(mut pending) => {
                pending.extend_from_slice(line.as_bytes());
                pending.push(b'\n');
                pending.len() >= ACCESS_BATCH
            }
            Err(_) => return,
        };
        if full {
            self.flush();
        }
    }

    fn flush(&self) {
        let batch = match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => std::mem::take(&mut *pending),
            _ => return,
        };
        // A log nobody reads must not fail a request.
        let _ = std::io::stderr().lock().write_all(&batch);
    }
}

/// One access line (see the module comment).
pub fn format_access(
    method: &http::Method,
    path: &str,
    status: http::StatusCode,
    took: Duration,
) -> String {
    let path = escape_for_terminal(path).replace('"', "%22");
    format!(
        "warden-http access method={} path=\"{path}\" status={} ms={:.2}",
        escape_for_terminal(method.as_str()),
        status.as_u16(),
        took.as_secs_f64() * 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_are_one_greppable_line() {
        let line = format_access(
            &http::Method::POST,
            "/echo?a=\"b\"\n\u{1b}[31m",
            http::StatusCode::CREATED,
            Duration::from_micros(1500),
        );
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.contains('\u{1b}'), "{line}");
        assert!(line.starts_with("warden-http access method=POST path=\"/echo?a=%22b%22"));
        assert!(line.ends_with("status=201 ms=1.50"), "{line}");
    }

    #[test]
    fn shards_end_as_the_worst_of_them() {
        use ServeEnd::*;
        assert_eq!(combine([Drained, Drained]), Drained);
        assert_eq!(
            combine([Drained, DrainTimedOut(2), DrainTimedOut(1)]),
            DrainTimedOut(3)
        );
        assert_eq!(
            combine([DrainTimedOut(2), Interrupted, Drained]),
            Interrupted
        );
        assert_eq!(combine([]), Drained);
    }

    #[test]
    fn a_drained_service_exits_zero() {
        assert_eq!(ServeEnd::Drained.exit_code(), 0);
        assert_eq!(ServeEnd::DrainTimedOut(2).exit_code(), 0);
        assert_eq!(ServeEnd::Interrupted.exit_code(), INTERRUPTED_EXIT);
    }
}
