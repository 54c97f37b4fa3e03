//! `p3-http-service`: a WASI 0.3 HTTP service for warden's HTTP integration tests.
//!
//! Built for `wasm32-wasip2` as a `cdylib`, which the toolchain's linker turns into a
//! component. The component exports `wasi:http/handler@0.3.0` (through
//! [`wasip3::http::service::export!`]) and imports WASI 0.3 only:
//! `wasi:http/{types,client}@0.3.0` and `wasi:cli/{types,stdin,stdout,stderr}@0.3.0`. The
//! parts of wasi-libc that Rust's std can reach would import WASI 0.2; the trapping stubs of
//! `warden_p3_guests::no_wasi_p2` (linked in here) keep those imports out, so a path that
//! would have used WASI 0.2 (a Rust panic message, for one) traps instead.
//!
//! Every handled request gets one response. Paths are matched exactly and the method must
//! be `GET`, else the answer is 404. The query string is parsed as `k=v&k2=v2`; `%XX`
//! escapes in keys and values are decoded (a `+` is NOT turned into a space). Every
//! response has `content-type: text/plain`.
//!
//! | route | response |
//! | --- | --- |
//! | `GET /` | 200, body `hello from wasip3 http\n`, header `x-warden-test: p3` |
//! | `GET /fetch?url=<absolute url>` | outgoing `GET` of `url` through `wasi:http/client@0.3.0`'s `send`: 200 `upstream <status>\n<upstream body>`, or 502 `error: <ErrorCode>\n` on an error code from `send` or from the upstream body (e.g. `error: HttpRequestDenied`, `error: ConnectionRefused`) |
//! | `GET /log?msg=<text>` | prints `<text>` and a newline to stdout, then 200 `logged\n` |
//! | `GET /spin` | never answers: burns CPU forever |
//! | anything else | 404 `not found\n` |
//!
//! `<ErrorCode>` is the bindings' `Debug` output without its leading `ErrorCode::`. A
//! missing `url` (or one that is not `scheme://authority[/path][?query]`, or that the host
//! refuses to set on the request) gives 400 `bad request: ...\n`.

use std::hint::black_box;

use warden_p3_guests::{self as guest, http};
use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response};
use wasip3::{wit_future, wit_stream};

struct Service;
wasip3::http::service::export!(Service);

impl wasip3::exports::http::handler::Guest for Service {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path_with_query = request.get_path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((&path_with_query, ""));
        let query = parse_query(query);
        if !matches!(request.get_method(), Method::Get) {
            return Ok(text(404, &[], "not found\n"));
        }
        Ok(match path {
            "/" => text(200, &[("x-warden-test", "p3")], "hello from wasip3 http\n"),
            "/fetch" => fetch(param(&query, "url")).await,
            "/log" => {
                guest::println(param(&query, "msg").unwrap_or_default()).await;
                text(200, &[], "logged\n")
            }
            "/spin" => spin(),
            _ => text(404, &[], "not found\n"),
        })
    }
}

/// `GET /fetch?url=<absolute url>`.
async fn fetch(url: Option<String>) -> Response {
    let Some(url) = url else {
        return text(400, &[], "bad request: missing url\n");
    };
    match http::get(&url).await {
        Ok((status, body)) => {
            let mut out = format!("upstream {status}\n").into_bytes();
            out.extend_from_slice(&body);
            response(200, &[], out)
        }
        Err(http::GetError::Http(code)) => {
            text(502, &[], &format!("error: {}\n", short_debug(&code)))
        }
        Err(http::GetError::BadUrl(why)) => text(400, &[], &format!("bad request: {why}\n")),
    }
}

/// `GET /spin`: never returns.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "C" fn warden_guest_spin_here() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

fn spin() -> ! {
    warden_guest_spin_here()
}

/// A `text/plain` response with `status`, the extra `headers` and `body`.
fn text(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
    response(status, headers, body.as_bytes().to_vec())
}

/// A `text/plain` response with `status`, the extra `headers` and `body`. The body is written
/// by a spawned task, which goes on after `handle` has returned the response.
fn response(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Response {
    let mut fields = vec![("content-type".to_string(), b"text/plain".to_vec())];
    fields.extend(
        headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec())),
    );
    let fields = Fields::from_list(&fields).expect("valid response headers");
    let (mut body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(fields, Some(body_rx), trailers_rx);
    let _ = response.set_status_code(status);
    wasip3::spawn_local(async move {
        body_tx.write_all(body).await;
        drop(body_tx);
        drop(trailers_tx);
    });
    response
}

/// The first value of `key` in `query`.
fn param(query: &[(String, String)], key: &str) -> Option<String> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is. Invalid UTF-8
/// in the result is replaced by U+FFFD.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The `Debug` form of `code` without its leading `ErrorCode::`: `ErrorCode::HttpRequestDenied`
/// becomes `HttpRequestDenied`.
fn short_debug(code: &ErrorCode) -> String {
    let debug = format!("{code:?}");
    match debug.strip_prefix("ErrorCode::") {
        Some(rest) => rest.to_string(),
        None => debug,
    }
}
