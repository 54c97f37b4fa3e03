//! `wasi:http` grants: the outgoing origins a guest may send requests to, and whether it may
//! be served as a WAGI module.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpScheme {
    Http,
    Https,
}

impl HttpScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpScheme::Http => "http",
            HttpScheme::Https => "https",
        }
    }

    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            HttpScheme::Http => 80,
            HttpScheme::Https => 443,
        }
    }

    /// `http` or `https` in any case; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("http") {
            Some(HttpScheme::Http)
        } else if text.eq_ignore_ascii_case("https") {
            Some(HttpScheme::Https)
        } else {
            None
        }
    }
}

/// One allowed outgoing origin: `https://api.example.com`, `http://127.0.0.1:9000`,
/// `http://127.0.0.1:8080-8089`, `http://10.0.0.7:*`.
///
/// A request matches when its scheme is the rule's, its host is the rule's host exactly
/// (case-insensitive; no wildcards, no suffix matching) and its port (the scheme's default
/// when the URL names none) is in the rule's range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OriginRule {
    pub scheme: HttpScheme,
    /// Lower case; an IPv6 address in brackets (`[::1]`).
    pub host: String,
    pub ports: (u16, u16),
}

impl OriginRule {
    /// Whether a request to `scheme://host:port` is covered. `host` is compared without
    /// regard to case; an IPv6 host must be bracketed and in its canonical form, as
    /// [`crate::values::canonical_host`] makes it.
    pub fn matches(&self, scheme: HttpScheme, host: &str, port: u16) -> bool {
        self.scheme == scheme
            && self.host.eq_ignore_ascii_case(host)
            && (self.ports.0..=self.ports.1).contains(&port)
    }
}

/// The policy file's spelling, canonical: the scheme's default port is left out.
impl fmt::Display for OriginRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, host) = (self.scheme.as_str(), &self.host);
        let default = self.scheme.default_port();
        match self.ports {
            (lo, hi) if lo == hi && lo == default => write!(f, "{scheme}://{host}"),
            (1, u16::MAX) => write!(f, "{scheme}://{host}:*"),
            (lo, hi) if lo == hi => write!(f, "{scheme}://{host}:{lo}"),
            (lo, hi) => write!(f, "{scheme}://{host}:{lo}-{hi}"),
        }
    }
}

/// Parses the policy file's spelling; see [`crate::values::parse_origin`].
impl std::str::FromStr for OriginRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::values::parse_origin(s)
    }
}

impl TryFrom<String> for OriginRule {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<OriginRule> for String {
    fn from(r: OriginRule) -> String {
        r.to_string()
    }
}

/// What a container may do over `wasi:http` besides being served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpGrant {
    /// Origins outgoing requests may go to. Empty: none.
    pub outbound: Vec<OriginRule>,
    /// Whether a WASI preview 1 module may be served as WAGI (`warden.dev/http=wagi`). WAGI
    /// gives a module nothing a command does not have (its stdin and stdout carry the
    /// request and response), so it is allowed unless a profile says `wagi = false`.
    pub wagi: bool,
}

impl Default for HttpGrant {
    fn default() -> Self {
        HttpGrant {
            outbound: Vec::new(),
            wagi: true,
        }
    }
}

impl HttpGrant {
    /// The rule that allows a request to `scheme://host:port`, if one does.
    pub fn allowing(&self, scheme: HttpScheme, host: &str, port: u16) -> Option<&OriginRule> {
        self.outbound.iter().find(|r| r.matches(scheme, host, port))
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

    #[test]
    fn requests_match_scheme_host_and_port() {
        use HttpScheme::*;
        let g = grant(&[
            "https://api.example.com",
            "http://127.0.0.1:9000",
            "http://127.0.0.1:8080-8089",
            "http://10.0.0.7:*",
            "http://[::1]:8080",
        ]);
        let cases = [
            (Https, "api.example.com", 443, true),
            (Https, "API.Example.com", 443, true),
            (Http, "api.example.com", 80, false),
            (Https, "api.example.com", 8443, false),
            (Https, "evil.api.example.com", 443, false),
            (Https, "api.example.com.evil", 443, false),
            (Http, "127.0.0.1", 9000, true),
            (Http, "127.0.0.1", 9001, false),
            (Https, "127.0.0.1", 9000, false),
            (Http, "127.0.0.1", 8085, true),
            (Http, "127.0.0.1", 8090, false),
            (Http, "10.0.0.7", 1, true),
            (Http, "10.0.0.7", 65535, true),
            (Http, "10.0.0.8", 80, false),
            (Http, "[::1]", 8080, true),
            (Http, "localhost", 9000, false),
        ];
        for (scheme, host, port, want) in cases {
            assert_eq!(
                g.allowing(scheme, host, port).is_some(),
                want,
                "{scheme:?} {host} {port}"
            );
        }
    }

    #[test]
    fn nothing_is_allowed_by_default_and_wagi_is() {
        let g = HttpGrant::default();
        assert!(g.allowing(HttpScheme::Http, "127.0.0.1", 80).is_none());
        assert!(g.wagi);
    }

    #[test]
    fn rules_round_trip_through_serde_in_their_canonical_spelling() {
        let g = grant(&["HTTPS://Api.Example.com:443", "http://h:*", "http://h:1-9"]);
        let json = serde_json::to_string(&g).unwrap();
        assert!(json.contains(r#""https://api.example.com""#), "{json}");
        assert!(json.contains(r#""http://h:*""#), "{json}");
        assert!(json.contains(r#""http://h:1-9""#), "{json}");
        let back: HttpGrant = serde_json::from_str(&json).unwrap();
        assert_eq!(back, g);
    }
}
