//! `wagi`: a CGI script, served by warden as WAGI (`warden.dev/http=wagi`; built for
//! wasm32-wasip1, where it is meant to run).
//!
//! By `PATH_INFO`:
//! - `/missing`: `Status: 404 Not Found`, body `missing`;
//! - `/redirect`: `Location: /elsewhere` (a 302), no body;
//! - `/env`: every environment variable as `K=V`, one per line;
//! - `/spin`: loops for ever;
//! - `/alloc?mb=N`: allocates and touches N MiB, then answers `allocated N MiB`;
//! - anything else: 200 with header `X-Wagi: 1` and body lines `method=`, `path=`,
//!   `query=`, `content_type=`, `content_length=`, `server=NAME:PORT`, `body=` (stdin).
//!
//! Every request also writes `wagi: handled METHOD PATH` to stderr.

use std::io::{Read, Write};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn query_number(query: &str, key: &str) -> usize {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let method = var("REQUEST_METHOD");
    let path = var("PATH_INFO");
    let query = var("QUERY_STRING");
    eprintln!("wagi: handled {method} {path}");
    let mut out = std::io::stdout().lock();
    let mut reply = |text: String| {
        out.write_all(text.as_bytes()).expect("stdout");
        out.flush().expect("stdout");
    };
    match path.as_str() {
        "/missing" => reply("Status: 404 Not Found\nContent-Type: text/plain\n\nmissing\n".into()),
        "/redirect" => reply("Location: /elsewhere\n\n".into()),
        "/env" => {
            let mut text = String::from("Content-Type: text/plain\n\n");
            for (k, v) in std::env::vars() {
                text.push_str(&format!("{k}={v}\n"));
            }
            reply(text);
        }
        "/spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "/alloc" => {
            let mb = query_number(&query, "mb");
            let mut v = vec![0u8; mb << 20];
            for i in (0..v.len()).step_by(4096) {
                v[i] = 1;
            }
            std::hint::black_box(&v);
            reply(format!("Content-Type: text/plain\n\nallocated {mb} MiB\n"));
        }
        _ => {
            let mut body = String::new();
            std::io::stdin().read_to_string(&mut body).expect("stdin");
            reply(format!(
                "Content-Type: text/plain\nX-Wagi: 1\n\nmethod={method}\npath={path}\n\
                 query={query}\ncontent_type={}\ncontent_length={}\nserver={}:{}\nbody={body}\n",
                var("CONTENT_TYPE"),
                var("CONTENT_LENGTH"),
                var("SERVER_NAME"),
                var("SERVER_PORT"),
            ));
        }
    }
}
