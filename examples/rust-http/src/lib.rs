//! `rust-http`: a `wasi:http` service (a component exporting
//! `wasi:http/incoming-handler`) that calls one upstream origin.
//!
//! - `GET /`: says what it is and which upstream it calls;
//! - `GET /upstream`: sends `GET` to the URL in env `UPSTREAM_URL` (given to the module only
//!   if the profile's `env` grants it) through `wasi:http/outgoing-handler`, and answers
//!   200 `upstream <status>: <body>`; 502 `upstream error: <ErrorCode>` when the request fails,
//!   `HttpRequestDenied` when warden's `http.outbound` does not allow the origin;
//! - anything else: 404.
//!
//! warden serves it on `WARDEN_HTTP_ADDR` (default `0.0.0.0:8080`), one fresh instance per
//! request.

use std::io::Write as _;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};
use wasip2::io::streams::StreamError;

wasip2::http::proxy::export!(Service);

struct Service;

impl wasip2::exports::http::incoming_handler::Guest for Service {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let upstream = std::env::var("UPSTREAM_URL").unwrap_or_default();
        let (status, body) = match (request.method(), path.as_str()) {
            (Method::Get, "/") => (
                200,
                format!("rust-http: GET /upstream calls {upstream:?}\n"),
            ),
            (Method::Get, "/upstream") if upstream.is_empty() => (
                500,
                "UPSTREAM_URL is not set (is it granted?)\n".to_string(),
            ),
            (Method::Get, "/upstream") => match call(&upstream) {
                Ok((status, body)) => (200, format!("upstream {status}: {body}\n")),
                Err(error) => {
                    eprintln!("rust-http: GET {upstream}: {error}");
                    (502, format!("upstream error: {error}\n"))
                }
            },
            _ => (404, "not found\n".to_string()),
        };
        respond(response_out, status, body.as_bytes());
    }
}

/// Sets a `text/plain` response and writes its body.
fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"text/plain; charset=utf-8");
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    // The stream is dropped at the end of the `if`, before the body is finished.
    if let Ok(mut stream) = outgoing.write()
        && let Err(e) = stream
            .write_all(body)
            .and_then(|()| std::io::Write::flush(&mut stream))
    {
        eprintln!("rust-http: writing the response: {e}");
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// `GET url`: the upstream's status and body (lossy UTF-8), or what went wrong.
fn call(url: &str) -> Result<(u16, String), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("{url:?} is not an http(s) URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_scheme(Some(&scheme))
        .and_then(|()| request.set_authority(Some(authority)))
        .and_then(|()| request.set_path_with_query(Some(path)))
        .map_err(|()| format!("{url:?} is not a request target"))?;
    let future = outgoing_handler::handle(request, None).map_err(|e| short(&e))?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(short(&e)),
        _ => return Err("no response".to_string()),
    };
    let status = response.status();
    let body = response.consume().map_err(|()| "no body".to_string())?;
    let mut bytes = Vec::new();
    if let Ok(stream) = body.stream() {
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
            }
        }
    }
    drop(IncomingBody::finish(body));
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// `ErrorCode::HttpRequestDenied` as `HttpRequestDenied`.
fn short(code: &ErrorCode) -> String {
    let debug = format!("{code:?}");
    debug
        .strip_prefix("ErrorCode::")
        .unwrap_or(&debug)
        .to_string()
}
