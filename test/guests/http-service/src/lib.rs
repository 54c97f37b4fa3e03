//! `http-service`: a `wasi:http` proxy component for warden's HTTP integration tests.
//!
//! Built for `wasm32-wasip2` as a `cdylib`, which the toolchain's linker turns into a
//! component. The component exports `wasi:http/incoming-handler@0.2.12` (bindings from the
//! `wasip2` crate); a host that implements any `wasi:http@0.2.x` with semver-compatible
//! lookup (e.g. wasmtime 50) can serve it. Besides `wasi:http/{types,outgoing-handler}` it
//! imports `wasi:io/{poll,error,streams}`, `wasi:clocks/monotonic-clock` and what Rust's std
//! needs on wasip2: `wasi:cli/{stdin,stdout,stderr,environment,exit}` and the five
//! `wasi:cli/terminal-*` interfaces (all `@0.2.12`). A host must link `wasi:cli` as well as
//! `wasi:http` (`wasmtime serve -S cli=y`); other std interfaces (`wasi:random`,
//! `wasi:filesystem`, `wasi:sockets`) may show up if the code comes to use them.
//!
//! Every handled request gets one response. Paths are matched exactly (no trailing-slash
//! folding); the method must match too, else the answer is 404. The query string is parsed
//! as `k=v&k2=v2`; `%XX` escapes in keys and values are decoded (a `+` is NOT turned into a
//! space). Unless said otherwise a response has `content-type: text/plain`.
//!
//! | route | response |
//! | --- | --- |
//! | `GET /` | 200, body `hello from warden http\n`, header `x-warden-test: hello` |
//! | `GET /headers` | 200; each request header `x-<rest>` is echoed as response header `x-echo-<rest>` with the same value, and the body has one `name: value` line per such request header |
//! | `POST /echo`, `PUT /echo` | 200, body = the whole request body (read to its end, any size); `content-type` = the request's, if it had one |
//! | `GET /status/<code>` | status `<code>`, body `status <code>\n`; a code outside `100..=599` (or not a number) gives 400 |
//! | `GET /stream?n=<K>&ms=<M>` | 200, response sent first, then K chunks `chunk <i>\n` (i from 0), each its own write and flush, with M ms (default 0) of sleep between two chunks |
//! | `GET /log?msg=<text>` | prints `<text>` to stdout and `stderr: <text>` to stderr (each with a newline), then 200 `logged\n` |
//! | `GET /fetch?url=<absolute url>&host=<value>` | outgoing `GET` of `url` (http or https; host `name`, IPv4, or `[IPv6]`, optional `:port`) through `wasi:http/outgoing-handler`; see below |
//! | `GET /fetch-redirect?url=...&host=...` | as `/fetch`, but a 301/302/303/307/308 answer with a `location` header is followed once (absolute URL, or a path on the same origin) |
//! | `GET /spin` | never answers: burns CPU forever |
//! | `GET /alloc?mb=<N>` | allocates N MiB, writes one byte in every 4 KiB page, then 200 `allocated <N> MiB\n`; 500 `allocation of <N> MiB failed\n` if the allocator says no |
//! | `GET /remember?secret=<S>` | writes S (up to 64 bytes) into the lowest page of linear memory and into a static; 200 `remembered low=<S> static=<S>\n` (read back as `/recall` reads) |
//! | `GET /recall` | 200 `low=<bytes> static=<bytes>\n`: what those two places hold in this instance, each up to its first zero byte |
//! | `GET /slow?ms=<N>` | sleeps N ms, then 200 `slept <N> ms\n` |
//! | anything else | 404 `not found\n` |
//!
//! `/fetch` and `/fetch-redirect` bodies start with a line telling whether the optional
//! `host` parameter could be set as the outgoing request's `host` header (wasmtime forbids
//! it by default): `host-header: accepted`, `host-header: refused(<HeaderError>)` (e.g.
//! `refused(Forbidden)`), or `host-header: none` when no `host` parameter was given. The
//! same `host` is tried on a redirect's second request. Then, for `/fetch-redirect` that
//! followed a redirect, `redirected to <location>`. Then either:
//! - on an upstream response: status 200, `upstream <status>\n` followed by the upstream body;
//! - on an error from `handle`, from the response future or from the upstream body
//!   stream: status 502, `error: <ErrorCode>\n` (e.g. `error: HttpRequestDenied`,
//!   `error: ConnectionRefused`, `error: DnsError(DnsErrorPayload { .. })`).
//!
//! `<HeaderError>` and `<ErrorCode>` are the bindings' `Debug` output without its leading
//! `HeaderError::` / `ErrorCode::`.
//!
//! Statuses 1xx, 204 and 304 from `/status/<code>` are sent as they are; the host's HTTP
//! server then drops the body (and a 1xx is not a valid final response for most clients).
//!
//! A missing or malformed required query parameter (`n` for `/stream`, `url` for the
//! fetches, a number that does not parse) gives 400 with a `bad request: ...` line.

use std::hint::black_box;
use std::io::Write as _;

use wasip2::clocks::monotonic_clock;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, IncomingResponse, Method, OutgoingBody,
    OutgoingRequest, OutgoingResponse, ResponseOutparam, Scheme,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

wasip2::http::proxy::export!(Service);

struct Service;

impl wasip2::exports::http::incoming_handler::Guest for Service {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let method = request.method();
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path, parse_query(query)),
            None => (path_with_query.as_str(), Vec::new()),
        };
        let query = Query(query);

        match (&method, path) {
            (Method::Get, "/") => {
                let mut reply = Reply::text(200, "hello from warden http\n");
                reply.header("x-warden-test", "hello");
                reply.send(response_out);
            }
            (Method::Get, "/headers") => echo_headers(&request).send(response_out),
            (Method::Post | Method::Put, "/echo") => echo_body(request).send(response_out),
            (Method::Get, "/stream") => stream(&query, response_out),
            (Method::Get, "/log") => {
                let msg = query.get("msg").unwrap_or_default();
                println!("{msg}");
                let _ = std::io::stdout().flush();
                eprintln!("stderr: {msg}");
                Reply::text(200, "logged\n").send(response_out);
            }
            (Method::Get, "/fetch") => fetch(&query, false).send(response_out),
            (Method::Get, "/fetch-redirect") => fetch(&query, true).send(response_out),
            (Method::Get, "/spin") => spin(),
            (Method::Get, "/alloc") => alloc(&query).send(response_out),
            (Method::Get, "/remember") => remember(&query).send(response_out),
            (Method::Get, "/recall") => recall().send(response_out),
            (Method::Get, "/slow") => match query.number::<u64>("ms", Some(0)) {
                Ok(ms) => {
                    sleep_ms(ms);
                    Reply::text(200, format!("slept {ms} ms\n")).send(response_out);
                }
                Err(reply) => reply.send(response_out),
            },
            (Method::Get, _) if path.starts_with("/status/") => {
                status(&path["/status/".len()..]).send(response_out)
            }
            _ => Reply::text(404, "not found\n").send(response_out),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Responses

/// A complete response, sent in one go by [`Reply::send`].
struct Reply {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Reply {
    /// A `text/plain` response.
    fn text(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".to_string(), b"text/plain".to_vec())],
            body: body.into(),
        }
    }

    /// 400 with body `bad request: <what>\n`.
    fn bad_request(what: impl std::fmt::Display) -> Reply {
        Reply::text(400, format!("bad request: {what}\n"))
    }

    fn header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.headers.push((name.to_string(), value.into()));
    }

    /// Sets the response (falling back to a 500 if the host refuses a header or the
    /// status) and writes the body.
    fn send(self, response_out: ResponseOutparam) {
        let (response, body) = match self.response() {
            Ok(pair) => pair,
            Err(what) => {
                eprintln!("http-service: {what}");
                let fallback = Reply::text(500, format!("{what}\n"));
                match fallback.response() {
                    Ok(pair) => pair,
                    Err(what) => panic!("cannot build a plain 500 response: {what}"),
                }
            }
        };
        ResponseOutparam::set(response_out, Ok(response));
        write_body(body, &self.body);
    }

    /// The outgoing response with its headers and status; the body bytes stay in `self`.
    fn response(&self) -> Result<(OutgoingResponse, OutgoingBody), String> {
        let fields = Fields::new();
        for (name, value) in &self.headers {
            fields
                .append(name, value)
                .map_err(|e| format!("response header {name:?} refused: {e:?}"))?;
        }
        let response = OutgoingResponse::new(fields);
        response
            .set_status_code(self.status)
            .map_err(|()| format!("status {} refused", self.status))?;
        let body = response
            .body()
            .expect("a new response's body is taken once");
        Ok((response, body))
    }
}

/// Writes `bytes` to an outgoing body and finishes it. Errors (the client went away) are
/// only logged to stderr: the response has already been set.
fn write_body(body: OutgoingBody, bytes: &[u8]) {
    let mut stream: OutputStream = body
        .write()
        .expect("an outgoing body's stream is taken once");
    let written = stream
        .write_all(bytes)
        .and_then(|()| std::io::Write::flush(&mut stream));
    drop(stream);
    if let Err(e) = written {
        eprintln!("http-service: writing the response body: {e}");
    }
    if let Err(e) = OutgoingBody::finish(body, None) {
        eprintln!("http-service: finishing the response body: {e:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Query strings

/// Parsed `k=v&k2=v2` pairs, percent-decoded, in order.
struct Query(Vec<(String, String)>);

impl Query {
    /// The first value of `key`.
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed as a number; `default` if absent (`None`: required).
    fn number<T: std::str::FromStr>(&self, key: &str, default: Option<T>) -> Result<T, Reply> {
        match (self.get(key), default) {
            (Some(value), _) => value
                .parse()
                .map_err(|_| Reply::bad_request(format!("{key}={value:?} is not a number"))),
            (None, Some(default)) => Ok(default),
            (None, None) => Err(Reply::bad_request(format!("missing {key}"))),
        }
    }
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
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
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

// ---------------------------------------------------------------------------------------
// Routes

/// `GET /headers`.
fn echo_headers(request: &IncomingRequest) -> Reply {
    let headers = request.headers();
    let entries = headers.entries();
    drop(headers);
    let mut reply = Reply::text(200, Vec::new());
    for (name, value) in entries {
        let lower = name.to_ascii_lowercase();
        let Some(rest) = lower.strip_prefix("x-") else {
            continue;
        };
        reply.body.extend_from_slice(name.as_bytes());
        reply.body.extend_from_slice(b": ");
        reply.body.extend_from_slice(&value);
        reply.body.push(b'\n');
        reply.header(&format!("x-echo-{rest}"), value);
    }
    reply
}

/// `POST /echo`, `PUT /echo`.
fn echo_body(request: IncomingRequest) -> Reply {
    let content_type = {
        let headers = request.headers();
        headers.get("content-type").into_iter().next()
    };
    let body = request
        .consume()
        .expect("the request body is consumed once");
    let read = read_body(&body);
    drop(IncomingBody::finish(body));
    drop(request);
    match read {
        Ok(bytes) => {
            let mut reply = Reply {
                status: 200,
                headers: Vec::new(),
                body: bytes,
            };
            if let Some(content_type) = content_type {
                reply.header("content-type", content_type);
            }
            reply
        }
        Err(e) => Reply::bad_request(format!("reading the request body: {}", short_debug(&e))),
    }
}

/// Reads an incoming body's stream to its end. The error is the stream's, turned into an
/// `ErrorCode` where the host gives one.
fn read_body(body: &IncomingBody) -> Result<Vec<u8>, ErrorCode> {
    let stream: InputStream = body
        .stream()
        .expect("an incoming body's stream is taken once");
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(wasip2::http::types::http_error_code(&e)
                    .unwrap_or_else(|| ErrorCode::InternalError(Some(e.to_debug_string()))));
            }
        }
    }
}

/// `GET /status/<code>`.
fn status(code: &str) -> Reply {
    match code.parse::<u16>() {
        Ok(code @ 100..=599) => Reply::text(code, format!("status {code}\n")),
        _ => Reply::bad_request(format!("status code {code:?} not in 100..=599")),
    }
}

/// `GET /stream?n=<K>&ms=<M>`: sets the response first, then writes and flushes the chunks
/// one by one.
fn stream(query: &Query, response_out: ResponseOutparam) {
    let (n, ms) = match (
        query.number::<u64>("n", None),
        query.number::<u64>("ms", Some(0)),
    ) {
        (Ok(n), Ok(ms)) => (n, ms),
        (Err(reply), _) | (_, Err(reply)) => return reply.send(response_out),
    };
    let (response, body) = match Reply::text(200, Vec::new()).response() {
        Ok(pair) => pair,
        Err(what) => panic!("cannot build the /stream response: {what}"),
    };
    ResponseOutparam::set(response_out, Ok(response));
    let stream = body
        .write()
        .expect("an outgoing body's stream is taken once");
    for i in 0..n {
        if i > 0 {
            sleep_ms(ms);
        }
        if let Err(e) = stream.blocking_write_and_flush(format!("chunk {i}\n").as_bytes()) {
            eprintln!("http-service: /stream chunk {i}: {e:?}");
            break;
        }
    }
    drop(stream);
    if let Err(e) = OutgoingBody::finish(body, None) {
        eprintln!("http-service: finishing the /stream body: {e:?}");
    }
}

/// `GET /spin`: never returns.
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// `GET /alloc?mb=<N>`.
fn alloc(query: &Query) -> Reply {
    let mb = match query.number::<usize>("mb", None) {
        Ok(mb) => mb,
        Err(reply) => return reply,
    };
    let Some(len) = mb.checked_mul(1024 * 1024) else {
        return Reply::text(500, format!("allocation of {mb} MiB failed\n"));
    };
    let mut memory: Vec<u8> = Vec::new();
    if memory.try_reserve_exact(len).is_err() {
        return Reply::text(500, format!("allocation of {mb} MiB failed\n"));
    }
    memory.resize(len, 0);
    for i in (0..len).step_by(4096) {
        memory[i] = black_box(1);
    }
    black_box(&memory);
    Reply::text(200, format!("allocated {mb} MiB\n"))
}

/// Where `/remember` leaves a secret in the lowest page of linear memory (below the stack's
/// used part, which grows down from 1 MiB): the first bytes a slot's in-place reset covers.
const LOW_ADDRESS: usize = 0x1000;
/// How many bytes of a secret are kept (both places).
const SECRET_LEN: usize = 64;
/// The other place: a static, in the data/bss segment above the stack (decommitted on reset).
static mut SECRET: [u8; SECRET_LEN] = [0; SECRET_LEN];

/// Writes the `secret` parameter (up to 64 bytes) into the lowest page of memory and into a
/// static, as a request handling one user's data would leave it behind.
fn remember(query: &Query) -> Reply {
    let Some(secret) = query.get("secret") else {
        return Reply::text(400, "missing query parameter `secret`\n");
    };
    let bytes = secret.as_bytes();
    let n = bytes.len().min(SECRET_LEN);
    for (i, &b) in bytes[..n].iter().enumerate() {
        // SAFETY: linear memory from LOW_ADDRESS on is mapped and nothing of this program
        // lives there (the shadow stack starts at 1 MiB and grows down, far from it).
        unsafe {
            std::ptr::write_volatile((LOW_ADDRESS + i) as *mut u8, b);
            std::ptr::write_volatile(std::ptr::addr_of_mut!(SECRET[i]), b);
        }
    }
    Reply::text(200, format!("remembered {}", recalled()))
}

/// What `/remember` left, as this instance sees it: `low=<bytes> static=<bytes>`, each up to
/// its first zero byte (empty in a fresh instance).
fn recall() -> Reply {
    Reply::text(200, recalled())
}

fn recalled() -> String {
    let read = |at: &dyn Fn(usize) -> u8| {
        let bytes: Vec<u8> = (0..SECRET_LEN).map(at).take_while(|&b| b != 0).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    // SAFETY: as in `remember`.
    let low = read(&|i| unsafe { std::ptr::read_volatile((LOW_ADDRESS + i) as *const u8) });
    let stat = read(&|i| unsafe { std::ptr::read_volatile(std::ptr::addr_of!(SECRET[i])) });
    format!("low={low} static={stat}\n")
}

fn sleep_ms(ms: u64) {
    if ms > 0 {
        monotonic_clock::subscribe_duration(ms.saturating_mul(1_000_000)).block();
    }
}

// ---------------------------------------------------------------------------------------
// Outgoing requests

/// Where an outgoing request goes.
struct Target {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

/// Parses `http[s]://authority[/path][?query][#fragment]` (the fragment is dropped).
fn parse_url(url: &str) -> Result<Target, String> {
    let (scheme_name, rest) = url.split_once("://").ok_or("no scheme")?;
    let scheme = if scheme_name.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else if scheme_name.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else {
        return Err(format!("scheme {scheme_name:?} is neither http nor https"));
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path_with_query) = rest.split_at(end);
    check_authority(authority)?;
    let path_with_query = match path_with_query.chars().next() {
        None => "/".to_string(),
        Some('?') => format!("/{path_with_query}"),
        Some(_) => path_with_query.to_string(),
    };
    Ok(Target {
        scheme,
        authority: authority.to_string(),
        path_with_query,
    })
}

/// Accepts `host`, `host:port`, `[ipv6]` and `[ipv6]:port` (no user info).
fn check_authority(authority: &str) -> Result<(), String> {
    let bad = || format!("bad authority {authority:?}");
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    let port = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(bad)?;
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(bad());
        }
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() || host.contains(':') {
            return Err(bad());
        }
        port
    };
    match port {
        Some(port) if port.parse::<u16>().is_err() => Err(bad()),
        _ => Ok(()),
    }
}

/// What one outgoing request came to.
enum Fetched {
    /// The upstream answered: status, `location` header (first value), whole body.
    Response {
        status: u16,
        location: Option<String>,
        body: Vec<u8>,
    },
    /// `handle`, the response future or the body stream failed.
    Error(ErrorCode),
}

/// `GET /fetch` and `GET /fetch-redirect`.
fn fetch(query: &Query, follow_redirect: bool) -> Reply {
    let Some(url) = query.get("url") else {
        return Reply::bad_request("missing url");
    };
    let target = match parse_url(url) {
        Ok(target) => target,
        Err(what) => return Reply::bad_request(format!("url {url:?}: {what}")),
    };
    let host = query.get("host");

    let mut body = Vec::new();
    let (mut fetched, host_header) = match send_request(&target, host) {
        Ok(pair) => pair,
        Err(reply) => return reply,
    };
    body.extend_from_slice(format!("host-header: {host_header}\n").as_bytes());

    if follow_redirect {
        if let Fetched::Response {
            status: 301 | 302 | 303 | 307 | 308,
            location: Some(location),
            ..
        } = &fetched
        {
            let location = location.clone();
            let next = if location.starts_with('/') {
                let scheme = match target.scheme {
                    Scheme::Https => "https",
                    _ => "http",
                };
                parse_url(&format!("{scheme}://{}{location}", target.authority))
            } else {
                parse_url(&location)
            };
            body.extend_from_slice(format!("redirected to {location}\n").as_bytes());
            let next = match next {
                Ok(next) => next,
                Err(what) => {
                    body.extend_from_slice(format!("error: bad location: {what}\n").as_bytes());
                    return Reply::text(502, body);
                }
            };
            fetched = match send_request(&next, host) {
                Ok((fetched, _)) => fetched,
                Err(reply) => {
                    // The host refused the location as a request target.
                    body.extend_from_slice(b"error: bad location: ");
                    body.extend_from_slice(&reply.body);
                    return Reply::text(502, body);
                }
            };
        }
    }

    match fetched {
        Fetched::Response {
            status,
            body: upstream,
            ..
        } => {
            body.extend_from_slice(format!("upstream {status}\n").as_bytes());
            body.extend_from_slice(&upstream);
            Reply::text(200, body)
        }
        Fetched::Error(code) => {
            body.extend_from_slice(format!("error: {}\n", short_debug(&code)).as_bytes());
            Reply::text(502, body)
        }
    }
}

/// Sends a `GET` to `target` and waits for the whole response. Returns it with the
/// `host-header` report; `Err` is a 400 for a target the host refuses to set.
fn send_request(target: &Target, host: Option<&str>) -> Result<(Fetched, String), Reply> {
    let headers = Fields::new();
    let host_header = match host {
        None => "none".to_string(),
        Some(host) => match headers.append("host", host.as_bytes()) {
            Ok(()) => "accepted".to_string(),
            Err(e) => format!("refused({})", short_debug(&e)),
        },
    };
    let request = OutgoingRequest::new(headers);
    request
        .set_method(&Method::Get)
        .expect("GET is a valid method");
    request
        .set_scheme(Some(&target.scheme))
        .map_err(|()| Reply::bad_request("scheme refused by the host"))?;
    request
        .set_authority(Some(&target.authority))
        .map_err(|()| Reply::bad_request(format!("authority {:?} refused", target.authority)))?;
    request
        .set_path_with_query(Some(&target.path_with_query))
        .map_err(|()| Reply::bad_request(format!("path {:?} refused", target.path_with_query)))?;

    let future = match outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(code) => return Ok((Fetched::Error(code), host_header)),
    };
    let pollable = future.subscribe();
    pollable.block();
    drop(pollable);
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Ok((Fetched::Error(code), host_header)),
        Some(Err(())) => panic!("the response future was already consumed"),
        None => panic!("the response future is not ready after its pollable was"),
    };
    drop(future);
    Ok((read_response(response), host_header))
}

/// `{value:?}` without the leading `TypeName::` that the bindings' `Debug` puts before an
/// enum case: `ErrorCode::HttpRequestDenied` becomes `HttpRequestDenied`, and
/// `ErrorCode::DnsError(DnsErrorPayload { .. })` becomes `DnsError(DnsErrorPayload { .. })`.
fn short_debug(value: &impl std::fmt::Debug) -> String {
    let debug = format!("{value:?}");
    match debug.split_once("::") {
        Some((type_name, case))
            if !type_name.is_empty() && type_name.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            case.to_string()
        }
        _ => debug,
    }
}

fn read_response(response: IncomingResponse) -> Fetched {
    let status = response.status();
    let location = {
        let headers = response.headers();
        let values = headers.get("location");
        values
            .into_iter()
            .next()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    };
    let body = response
        .consume()
        .expect("the response body is consumed once");
    let read = read_body(&body);
    drop(IncomingBody::finish(body));
    drop(response);
    match read {
        Ok(body) => Fetched::Response {
            status,
            location,
            body,
        },
        Err(code) => Fetched::Error(code),
    }
}
