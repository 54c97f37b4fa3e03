//! Native baseline of the HTTP benchmark: what `GET /` of the `http-service` component does,
//! as a static Linux binary on hyper 1 and tokio's multi-thread runtime.
//!
//! Serves HTTP/1.1 (keep-alive) on the address in env `WARDEN_HTTP_ADDR` (default
//! `0.0.0.0:8080`) and answers every request, whatever its method and path, with 200, body
//! `hello from warden http\n`, `content-type: text/plain` and `x-warden-test: hello` (the
//! same headers and body as the component's `GET /`). Exits 0 on SIGTERM (or SIGINT): it
//! stops accepting and drops open connections. A bad address or a failed bind prints the
//! error and exits 1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

const BODY: &[u8] = b"hello from warden http\n";
const DEFAULT_ADDR: &str = "0.0.0.0:8080";

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    headers.insert(
        "x-warden-test",
        hyper::header::HeaderValue::from_static("hello"),
    );
    Ok(response)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let addr = std::env::var("WARDEN_HTTP_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_string());
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("native-http: bad WARDEN_HTTP_ADDR {addr:?}: {e}");
            return ExitCode::from(1);
        }
    };
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("native-http: cannot handle signals: {e}");
            return ExitCode::from(1);
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("native-http: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    println!("native-http: listening on {addr}");
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        // A client that goes away mid-request is no error of the server's.
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service_fn(hello))
                            .await;
                    });
                }
                Err(e) => {
                    // E.g. EMFILE: wait a little rather than spin.
                    eprintln!("native-http: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    println!("native-http: SIGTERM, stopping");
    ExitCode::SUCCESS
}
