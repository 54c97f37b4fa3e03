//! `wagi`: a CGI program for WAGI, which warden serves when a container asks for it
//! (annotation `warden.dev/http=wagi`). For every request warden starts this module afresh
//! with the request in the environment (`REQUEST_METHOD`, `PATH_INFO`, `QUERY_STRING`,
//! `CONTENT_TYPE`, ...) and its body on stdin; the module writes CGI headers, an empty line
//! and the body to stdout.
//!
//! Routes:
//! - `GET /`: a plain-text greeting naming the method, path and query;
//! - `POST /echo`: the request body back, with its length;
//! - `GET /files/NAME`: the file `/site/NAME` (the profile grants `/site` read-only), or 404
//!   when it is missing or `/site` is not granted;
//! - anything else: 404.

use std::io::{Read, Write};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Writes one CGI response: `Status`, `Content-Type`, the empty line, the body.
fn respond(status: &str, content_type: &str, body: &[u8]) {
    let mut out = std::io::stdout().lock();
    let head = format!("Status: {status}\nContent-Type: {content_type}\n\n");
    let written = out
        .write_all(head.as_bytes())
        .and_then(|()| out.write_all(body))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        eprintln!("wagi: cannot write the response: {e}");
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

fn main() {
    let method = var("REQUEST_METHOD");
    let path = var("PATH_INFO");
    let query = var("QUERY_STRING");
    eprintln!("wagi: {method} {path}");
    match (method.as_str(), path.as_str()) {
        ("GET", "/") => {
            let body = format!("Hello from WAGI: {method} {path} query={query:?}\n");
            respond("200 OK", "text/plain; charset=utf-8", body.as_bytes());
        }
        ("POST", "/echo") => {
            let mut body = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut body) {
                respond("400 Bad Request", "text/plain", format!("{e}\n").as_bytes());
                return;
            }
            let mut reply = format!("echo {} bytes: ", body.len()).into_bytes();
            reply.extend_from_slice(&body);
            reply.push(b'\n');
            respond("200 OK", "text/plain; charset=utf-8", &reply);
        }
        ("GET", _) if path.starts_with("/files/") => {
            let name = &path["/files/".len()..];
            // One path component: no `..`, no subdirectories.
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                respond("404 Not Found", "text/plain", b"not found\n");
                return;
            }
            match std::fs::read(format!("/site/{name}")) {
                Ok(bytes) => respond("200 OK", content_type(name), &bytes),
                Err(e) => respond(
                    "404 Not Found",
                    "text/plain",
                    format!("/site/{name}: {e}\n").as_bytes(),
                ),
            }
        }
        _ => respond("404 Not Found", "text/plain", b"not found\n"),
    }
}
