//! Outgoing `wasi:http` requests: the one place a guest's request leaves the container.
//!
//! wasmtime-wasi-http hands every request a guest sends (`wasi:http/outgoing-handler`) to
//! [`WasiHttpHooks::send_request`]; [`Egress`] is warden's implementation, and the crate's
//! default sender is not compiled in. For each request it:
//!
//! 1. takes the origin from the request's URI, which the guest set with `set-scheme` and
//!    `set-authority`: scheme, host and port (the scheme's default when none). The `Host`
//!    header is never looked at: guests cannot set it (it is a forbidden header), and the
//!    header sent is the authority's;
//! 2. checks it against the grant's `http.outbound` rules ([`HttpGrant::allowing`]); a
//!    request no rule allows fails with `HTTP-request-denied` and is reported to the deny
//!    hook (rule `http.outbound`, the origin) before anything is sent or resolved;
//! 3. resolves a host name with warden's resolver ([`dns::HostLookup`]: the node's or the
//!    pod's resolver files read on the host side, never the image's `/etc/hosts` or NSS), and
//!    connects to those addresses itself, so what is connected to is what was checked;
//! 4. speaks TLS for `https` with rustls and the Mozilla roots (no certificate store of the
//!    image), HTTP/1.1 with hyper.
//!
//! Redirects are not followed here (hyper's client never does): a guest that wants to
//! follow one sends a new request, which is checked like any other.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::client::conn::http1;
use tokio::net::TcpStream;
use warden_policy::values::canonical_host;
use warden_policy::{HttpGrant, HttpScheme};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::dns;
use crate::wasi_ctx::DenyHook;

/// How long a connection (TCP and TLS) may take when the guest sets no timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the response's head may take when the guest sets no timeout.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);

/// What one request goes to, as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub scheme: HttpScheme,
    /// Canonical: lower case, IPv6 in brackets.
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

impl Origin {
    /// The origin of a request URI, or why it has none.
    pub fn of(uri: &http::Uri) -> Result<Origin, String> {
        let scheme = uri
            .scheme_str()
            .and_then(HttpScheme::parse)
            .ok_or_else(|| format!("{uri}: the scheme must be http or https"))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{uri}: no authority"))?;
        let host = canonical_host(authority.host())
            .ok_or_else(|| format!("{uri}: {:?} is not a host", authority.host()))?;
        let port = authority.port_u16().unwrap_or(scheme.default_port());
        Ok(Origin { scheme, host, port })
    }

    /// The IP address a host written as an IP literal stands for.
    fn ip(&self) -> Option<IpAddr> {
        let bare = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host);
        bare.parse().ok()
    }
}

/// Whether the grant allows a request to `origin`: the rule, in its policy spelling, or the
/// refusal's description for the audit record.
pub fn check(grant: &HttpGrant, origin: &Origin) -> Result<String, String> {
    match grant.allowing(origin.scheme, &origin.host, origin.port) {
        Some(rule) => Ok(rule.to_string()),
        None if grant.outbound.is_empty() => Err(format!(
            "http request to {origin}: the profile allows no outgoing requests"
        )),
        None => Err(format!(
            "http request to {origin}: no http.outbound rule allows it"
        )),
    }
}

/// The egress of one HTTP service: its grant, resolver and deny hook, shared by every
/// request's store.
pub struct Egress {
    grant: HttpGrant,
    lookup: dns::HostLookup,
    on_deny: DenyHook,
}

impl Egress {
    /// Needs a tokio runtime to be current (see [`dns::HostLookup::new`]).
    pub fn new(grant: HttpGrant, resolver: dns::ResolverConfig, on_deny: DenyHook) -> Arc<Self> {
        Arc::new(Egress {
            grant,
            lookup: dns::HostLookup::new(resolver),
            on_deny,
        })
    }

    async fn send(
        self: Arc<Self>,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, Error> {
        let origin = Origin::of(request.uri()).map_err(|e| {
            log::debug!("http egress: {e}");
            Error::HttpRequestUriInvalid
        })?;
        if let Err(refusal) = check(&self.grant, &origin) {
            (self.on_deny)("http.outbound", refusal);
            return Err(Error::HttpRequestDenied);
        }
        let addrs = match origin.ip() {
            Some(ip) => vec![ip],
            None => self.lookup.lookup(&origin.host).await.map_err(|e| {
                log::debug!("http egress: {e}");
                Error::DnsError {
                    rcode: Some(e),
                    info_code: None,
                }
            })?,
        };
        let connect_timeout = options
            .and_then(|o| o.connect_timeout)
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let first_byte_timeout = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);
        let tcp = connect(&addrs, origin.port, connect_timeout).await?;
        // Only the path goes on the wire; the origin is the connection (and the Host header
        // wasmtime-wasi-http set from the same authority).
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        *request.uri_mut() = http::Uri::builder()
            .path_and_query(path)
            .build()
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        let response = match origin.scheme {
            HttpScheme::Http => {
                exchange(
                    TokioIo::new(tcp),
                    request,
                    connect_timeout,
                    first_byte_timeout,
                )
                .await?
            }
            HttpScheme::Https => {
                let name = server_name(&origin)?;
                let tls = tokio::time::timeout(
                    connect_timeout,
                    tokio_rustls::TlsConnector::from(tls_config()).connect(name, tcp),
                )
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(Error::Tls)?;
                exchange(
                    TokioIo::new(tls),
                    request,
                    connect_timeout,
                    first_byte_timeout,
                )
                .await?
            }
        };
        Ok(response)
    }
}

/// Connects to the first of `addrs` that answers.
async fn connect(addrs: &[IpAddr], port: u16, timeout: Duration) -> Result<TcpStream, Error> {
    let mut last = Error::ConnectionRefused;
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

/// One HTTP/1.1 request on a fresh connection; the connection is driven by a task of its
/// own until the response body is read or dropped.
async fn exchange<S>(
    io: TokioIo<S>,
    request: http::Request<WasiBody>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
) -> Result<http::Response<WasiBody>, Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) =
        tokio::time::timeout(connect_timeout, http1::Builder::new().handshake(io))
            .await
            .map_err(|_| Error::ConnectionTimeout)??;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            log::debug!("http egress: connection ended: {e}");
        }
    });
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    Ok(response.map(|body| body.map_err(Error::from).boxed_unsync()))
}

fn server_name(origin: &Origin) -> Result<rustls::pki_types::ServerName<'static>, Error> {
    if let Some(ip) = origin.ip() {
        return Ok(rustls::pki_types::ServerName::IpAddress(ip.into()));
    }
    rustls::pki_types::ServerName::try_from(origin.host.clone()).map_err(|_| Error::DnsError {
        rcode: Some(format!("{}: not a valid TLS server name", origin.host)),
        info_code: None,
    })
}

/// The TLS client configuration: ring, the Mozilla roots, built once per process.
///
/// ring, as wasmtime-wasi-http's own sender uses: rustls 0.23.48 marks ring's provider
/// deprecated because it has no post-quantum key exchange, but the provider that has one
/// (aws-lc-rs) is a C and cmake build this project does not take on for a test-and-sidecar
/// client. Revisit when wasmtime-wasi-http moves.
#[allow(deprecated)]
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
            match config {
                Ok(c) => Arc::new(c),
                // The ring provider supports the default versions; this cannot fail.
                Err(e) => panic!("rustls configuration: {e}"),
            }
        })
        .clone()
}

/// The hooks a service's stores use: [`Egress`] for sending, wasmtime-wasi-http's defaults
/// for the rest (forbidden headers, schemes http and https).
#[derive(Clone)]
pub struct EgressHooks(pub Arc<Egress>);

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                )>,
            > + Send,
    > {
        drop(fut);
        let egress = self.0.clone();
        Box::new(async move {
            let response = egress.send(request, options).await?;
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(rules: &[&str]) -> HttpGrant {
        HttpGrant {
            outbound: rules.iter().map(|r| r.parse().unwrap()).collect(),
            wagi: true,
        }
    }

    fn origin(uri: &str) -> Origin {
        Origin::of(&uri.parse().unwrap()).unwrap()
    }

    #[test]
    fn the_origin_is_the_uri_with_the_default_port() {
        assert_eq!(
            origin("http://Example.com/x").to_string(),
            "http://example.com:80"
        );
        assert_eq!(origin("https://example.com/x").port, 443);
        assert_eq!(
            origin("http://127.0.0.1:9000/").to_string(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(origin("http://[0::1]:8080/").host, "[::1]");
        assert_eq!(
            origin("http://[::1]:8080/").ip(),
            Some("::1".parse().unwrap())
        );
        assert_eq!(origin("http://example.com/").ip(), None);
        assert!(Origin::of(&"/relative".parse().unwrap()).is_err());
        assert!(Origin::of(&"ftp://example.com/".parse().unwrap()).is_err());
    }

    #[test]
    fn requests_are_checked_against_the_rules() {
        let g = grant(&["http://127.0.0.1:9000", "https://api.example.com"]);
        assert_eq!(
            check(&g, &origin("http://127.0.0.1:9000/a")).as_deref(),
            Ok("http://127.0.0.1:9000")
        );
        assert!(check(&g, &origin("http://127.0.0.1:9001/a")).is_err());
        assert!(check(&g, &origin("https://127.0.0.1:9000/a")).is_err());
        assert!(check(&g, &origin("https://api.example.com/v1")).is_ok());
        assert!(check(&g, &origin("https://api.example.com:8443/v1")).is_err());
        let refused = check(&HttpGrant::default(), &origin("http://127.0.0.1:9000/")).unwrap_err();
        assert!(refused.contains("allows no outgoing requests"), "{refused}");
        assert!(refused.contains("http://127.0.0.1:9000"), "{refused}");
    }
}
