//! CGI/1.1 (RFC 3875) as WAGI uses it: the request as environment variables, the response
//! as the script's standard output. Pure functions; the WAGI runner
//! (`runner/wagi.rs`) does the I/O.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};

/// The CGI variables for a request whose body is `content_length` bytes, served on
/// `server`: `REQUEST_METHOD`, `PATH_INFO`, `QUERY_STRING`, `CONTENT_TYPE`,
/// `CONTENT_LENGTH`, `SERVER_NAME`, `SERVER_PORT`, `SERVER_PROTOCOL`,
/// `GATEWAY_INTERFACE`, `SCRIPT_NAME`, `REQUEST_URI`, and `HTTP_*` for the other headers.
///
/// Left out: `Proxy` (a `HTTP_PROXY` variable would tell the module's HTTP client to use a
/// proxy the client chose: "httpoxy"), `Authorization` and `Proxy-Authorization` (CGI
/// servers do not pass credentials to scripts), and header values that are not UTF-8 text.
pub fn variables(
    parts: &http::request::Parts,
    server: SocketAddr,
    content_length: usize,
) -> Vec<(String, String)> {
    let mut vars = vec![
        ("GATEWAY_INTERFACE".to_owned(), "CGI/1.1".to_owned()),
        ("SERVER_PROTOCOL".to_owned(), "HTTP/1.1".to_owned()),
        ("SERVER_SOFTWARE".to_owned(), "warden".to_owned()),
        (
            "REQUEST_METHOD".to_owned(),
            parts.method.as_str().to_owned(),
        ),
        ("SCRIPT_NAME".to_owned(), String::new()),
        ("PATH_INFO".to_owned(), parts.uri.path().to_owned()),
        (
            "QUERY_STRING".to_owned(),
            parts.uri.query().unwrap_or("").to_owned(),
        ),
        (
            "REQUEST_URI".to_owned(),
            parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        ),
        ("SERVER_PORT".to_owned(), server.port().to_string()),
    ];
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| host_without_port(h).to_owned())
        .unwrap_or_else(|| server.ip().to_string());
    vars.push(("SERVER_NAME".to_owned(), host));
    if content_length > 0 || parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        vars.push(("CONTENT_LENGTH".to_owned(), content_length.to_string()));
    }
    if let Some(ct) = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        vars.push(("CONTENT_TYPE".to_owned(), ct.to_owned()));
    }
    for (name, value) in &parts.headers {
        if matches!(
            name.as_str(),
            "content-type" | "content-length" | "proxy" | "authorization" | "proxy-authorization"
        ) {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        let var = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        // Repeated headers are joined, as CGI servers do.
        match vars.iter_mut().find(|(k, _)| *k == var) {
            Some((_, v)) => {
                v.push_str(", ");
                v.push_str(value);
            }
            None => vars.push((var, value.to_owned())),
        }
    }
    vars
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}

/// A parsed CGI response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: http::StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// Parses a script's output: header lines (`Name: value`, LF or CRLF), a blank line, the
/// body. `Status: 404 Not Found` sets the status; a `Location` without one is a 302;
/// otherwise 200. A script must send at least one header (RFC 3875 6.2): output without
/// the blank line, or with a line that is not a header, is an error.
pub fn parse_response(out: Bytes) -> Result<Response, String> {
    let (head_len, body_start) = find_head_end(&out)
        .ok_or("the module's output has no CGI header block (headers, then an empty line)")?;
    let head = std::str::from_utf8(&out[..head_len])
        .map_err(|_| "the module's CGI headers are not UTF-8 text".to_owned())?;
    let mut status = None;
    let mut location = false;
    let mut headers = Vec::new();
    for line in head.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("not a CGI header line: {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("");
            let code: u16 = code
                .parse()
                .map_err(|_| format!("bad CGI Status: {value:?}"))?;
            status = Some(
                http::StatusCode::from_u16(code)
                    .map_err(|_| format!("bad CGI Status: {value:?}"))?,
            );
            continue;
        }
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("bad CGI header name: {name:?}"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("bad value of header {name}"))?;
        location |= name == http::header::LOCATION;
        headers.push((name, value));
    }
    if headers.is_empty() && status.is_none() {
        return Err("the module sent no CGI header".into());
    }
    let status = status.unwrap_or(if location {
        http::StatusCode::FOUND
    } else {
        http::StatusCode::OK
    });
    Ok(Response {
        status,
        headers,
        body: out.slice(body_start..),
    })
}

/// The length of the header block and where the body starts.
fn find_head_end(out: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < out.len() {
        if out[i] == b'\n' {
            if out.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if out.get(i + 1) == Some(&b'\r') && out.get(i + 2) == Some(&b'\n') {
                let end = if i > 0 && out[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                return Some((end, i + 3));
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::Request<()>) -> http::request::Parts {
        req.into_parts().0
    }

    fn get<'a>(vars: &'a [(String, String)], k: &str) -> Option<&'a str> {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_request_becomes_cgi_variables() {
        let req = http::Request::post("/submit/x?a=1&b=two")
            .header("host", "svc.example:8080")
            .header("content-type", "text/plain")
            .header("content-length", "5")
            .header("x-trace", "abc")
            .header("accept", "a")
            .header("accept", "b")
            .header("proxy", "http://evil:1")
            .header("authorization", "Bearer secret")
            .body(())
            .unwrap();
        let vars = variables(&parts(req), "0.0.0.0:8080".parse().unwrap(), 5);
        assert_eq!(get(&vars, "REQUEST_METHOD"), Some("POST"));
        assert_eq!(get(&vars, "PATH_INFO"), Some("/submit/x"));
        assert_eq!(get(&vars, "QUERY_STRING"), Some("a=1&b=two"));
        assert_eq!(get(&vars, "CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get(&vars, "CONTENT_LENGTH"), Some("5"));
        assert_eq!(get(&vars, "SERVER_NAME"), Some("svc.example"));
        assert_eq!(get(&vars, "SERVER_PORT"), Some("8080"));
        assert_eq!(get(&vars, "HTTP_X_TRACE"), Some("abc"));
        assert_eq!(get(&vars, "HTTP_ACCEPT"), Some("a, b"));
        assert_eq!(get(&vars, "HTTP_HOST"), Some("svc.example:8080"));
        assert_eq!(get(&vars, "HTTP_PROXY"), None);
        assert_eq!(get(&vars, "HTTP_AUTHORIZATION"), None);
        assert_eq!(get(&vars, "HTTP_CONTENT_TYPE"), None);
    }

    #[test]
    fn a_get_without_host_names_the_server_address() {
        let req = http::Request::get("/").body(()).unwrap();
        let vars = variables(&parts(req), "127.0.0.1:9000".parse().unwrap(), 0);
        assert_eq!(get(&vars, "SERVER_NAME"), Some("127.0.0.1"));
        assert_eq!(get(&vars, "QUERY_STRING"), Some(""));
        assert_eq!(get(&vars, "CONTENT_LENGTH"), None);
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
    }

    #[test]
    fn cgi_output_becomes_a_response() {
        let r = parse_response(Bytes::from_static(
            b"Content-Type: text/plain\nX-A: 1\n\nhello\n",
        ))
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.headers.len(), 2);
        assert_eq!(&r.body[..], b"hello\n");

        let r = parse_response(Bytes::from_static(
            b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope",
        ))
        .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(&r.body[..], b"nope");

        let r = parse_response(Bytes::from_static(b"Location: /elsewhere\n\n")).unwrap();
        assert_eq!(r.status, 302);
        assert!(r.body.is_empty());
    }

    #[test]
    fn output_that_is_not_cgi_is_an_error() {
        for bad in [
            &b"hello world"[..],
            b"no header line\n\nbody",
            b"\nbody",
            b"Status: abc\n\n",
            b"Status: 99\n\n",
            b"Bad Name: x\n\n",
        ] {
            assert!(
                parse_response(Bytes::copy_from_slice(bad)).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
