//! The resolved grants of one container.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::HttpGrant;

/// Name of the built-in profile that grants nothing.
pub const STRICT_PROFILE: &str = "strict";

/// Everything a container may use beyond args, stdio, clocks and random.
///
/// `Grants::default()` is the strict profile: nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Environment variables passed to the module, already filtered by the profile.
    pub env: Vec<(String, String)>,
    /// Container paths preopened for the module at the same guest path.
    pub mounts: Vec<MountGrant>,
    pub network: NetworkGrant,
    /// Outgoing `wasi:http` origins, and whether WAGI serving is allowed.
    pub http: HttpGrant,
    pub limits: Limits,
    /// Whether a non-Wasm entrypoint may run (the pod sandbox container is always allowed).
    pub native: bool,
}

impl Grants {
    /// The built-in strict profile: no env, no mounts, no sockets, no outbound HTTP.
    pub fn strict() -> Self {
        Self::default()
    }

    /// A one-line human summary, for logs and error messages.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.env.is_empty() {
            let names: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
            parts.push(format!("env={}", names.join(",")));
        }
        if !self.mounts.is_empty() {
            let m: Vec<String> = self.mounts.iter().map(MountGrant::describe).collect();
            parts.push(format!("mounts={}", m.join(",")));
        }
        if !self.network.connect.is_empty() {
            parts.push(format!("connect={}", self.network.connect.len()));
        }
        if !self.network.listen.is_empty() {
            parts.push(format!("listen={}", self.network.listen.len()));
        }
        if self.network.dns {
            parts.push("dns".into());
        }
        if !self.http.outbound.is_empty() {
            let o: Vec<String> = self.http.outbound.iter().map(ToString::to_string).collect();
            parts.push(format!("http={}", o.join(",")));
        }
        if !self.http.wagi {
            parts.push("no-wagi".into());
        }
        if let Some(m) = self.limits.memory {
            parts.push(format!("memory={m}"));
        }
        if let Some(c) = self.limits.cpu_time {
            parts.push(format!("cpu_time={}ms", c.as_millis()));
        }
        if let Some(d) = self.limits.deadline {
            parts.push(format!("deadline={}ms", d.as_millis()));
        }
        if let Some(f) = self.limits.fuel {
            parts.push(format!("fuel={f}"));
        }
        if let Some(d) = self.limits.request_deadline {
            parts.push(format!("request_deadline={}ms", d.as_millis()));
        }
        if self.native {
            parts.push("native".into());
        }
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(" ")
        }
    }
}

/// Read-only or read-write access to a preopened path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    #[default]
    Ro,
    Rw,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Ro => "ro",
            Access::Rw => "rw",
        }
    }
}

/// A container path preopened for the module: a mount of the container or a directory of
/// the image's rootfs, seen by the guest at `guest` (by default the same path).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountGrant {
    pub path: String,
    pub access: Access,
    /// The path the guest sees it at (`{ path = "/srv/site", guest = "/" }`); `None` means
    /// the same as `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<String>,
}

impl MountGrant {
    /// A grant of `path` seen by the guest at the same path.
    pub fn new(path: impl Into<String>, access: Access) -> Self {
        MountGrant {
            path: path.into(),
            access,
            guest: None,
        }
    }

    /// The path the guest sees the grant at.
    pub fn guest_path(&self) -> &str {
        self.guest.as_deref().unwrap_or(&self.path)
    }

    /// `path:access`, or `path->guest:access` when the guest sees it elsewhere.
    pub fn describe(&self) -> String {
        match &self.guest {
            Some(g) if g != &self.path => format!("{}->{g}:{}", self.path, self.access.as_str()),
            _ => format!("{}:{}", self.path, self.access.as_str()),
        }
    }
}

/// `wasi:sockets` grants. Empty lists allow nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkGrant {
    pub connect: Vec<SocketRule>,
    pub listen: Vec<SocketRule>,
    pub dns: bool,
}

impl NetworkGrant {
    pub fn may_connect(&self, addr: SocketAddr) -> bool {
        self.connect.iter().any(|r| r.matches(addr))
    }

    pub fn may_listen(&self, addr: SocketAddr) -> bool {
        self.listen.iter().any(|r| r.matches(addr))
    }
}

/// An address range and port range: `10.0.0.0/8:5432`, `127.0.0.1:8080-8089`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketRule {
    pub addr: IpAddr,
    pub prefix: u8,
    pub ports: (u16, u16),
}

impl SocketRule {
    pub fn matches(&self, sa: SocketAddr) -> bool {
        let port = sa.port();
        if port < self.ports.0 || port > self.ports.1 {
            return false;
        }
        let ip = match (self.addr, sa.ip()) {
            // An IPv4 rule also covers the IPv4-mapped IPv6 form of the same address.
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            (_, ip) => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl SocketRule {
    /// The address part as written in a policy: `10.0.0.0/8`, `127.0.0.1`, `[fd00::/8]`.
    ///
    /// A full-length prefix (/32, /128) is left out, as a policy writer would.
    pub fn net(&self) -> String {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        let base = if self.prefix == full {
            self.addr.to_string()
        } else {
            format!("{}/{}", self.addr, self.prefix)
        };
        if self.addr.is_ipv6() {
            format!("[{base}]")
        } else {
            base
        }
    }
}

/// The policy file's spelling: `10.0.0.0/8:5432`, `127.0.0.1:8080-8089`, `[::1]:*`.
impl std::fmt::Display for SocketRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let net = self.net();
        match self.ports {
            (0, u16::MAX) => write!(f, "{net}:*"),
            (lo, hi) if lo == hi => write!(f, "{net}:{lo}"),
            (lo, hi) => write!(f, "{net}:{lo}-{hi}"),
        }
    }
}

/// Parses the policy file's spelling; see [`crate::values::parse_socket_rule`].
impl std::str::FromStr for SocketRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::values::parse_socket_rule(s)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// Resource bounds applied inside the runtime (the pod cgroup still applies on top).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of linear memory (and table elements' worth) the instance may grow to.
    pub memory: Option<u64>,
    /// CPU time bound, measured on the thread running the guest.
    pub cpu_time: Option<Duration>,
    /// Wall-clock bound from the guest's start.
    pub deadline: Option<Duration>,
    /// Optional fuel (instruction budget).
    pub fuel: Option<u64>,
    /// Wall-clock bound on each request an HTTP service handles (`None`: the server's
    /// default).
    #[serde(default)]
    pub request_deadline: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(addr: &str, prefix: u8, lo: u16, hi: u16) -> SocketRule {
        SocketRule {
            addr: addr.parse().unwrap(),
            prefix,
            ports: (lo, hi),
        }
    }

    #[test]
    fn strict_grants_nothing() {
        let g = Grants::strict();
        assert!(g.env.is_empty() && g.mounts.is_empty() && !g.native && !g.network.dns);
        assert!(!g.network.may_connect("127.0.0.1:80".parse().unwrap()));
        assert_eq!(g.summary(), "nothing");
    }

    #[test]
    fn socket_rules_match_prefix_and_ports() {
        let cases = [
            (rule("10.0.0.0", 8, 5432, 5432), "10.1.2.3:5432", true),
            (rule("10.0.0.0", 8, 5432, 5432), "10.1.2.3:5433", false),
            (rule("10.0.0.0", 8, 5432, 5432), "11.0.0.1:5432", false),
            (rule("127.0.0.1", 32, 8080, 8089), "127.0.0.1:8085", true),
            (rule("127.0.0.1", 32, 8080, 8089), "127.0.0.2:8085", false),
            (rule("192.168.0.0", 20, 1, 65535), "192.168.15.1:9", true),
            (rule("192.168.0.0", 20, 1, 65535), "192.168.16.1:9", false),
            (rule("0.0.0.0", 0, 80, 80), "8.8.8.8:80", true),
            (rule("127.0.0.1", 32, 80, 80), "[::ffff:127.0.0.1]:80", true),
            (rule("::1", 128, 80, 80), "[::1]:80", true),
            (rule("::1", 128, 80, 80), "127.0.0.1:80", false),
        ];
        for (r, addr, want) in cases {
            assert_eq!(r.matches(addr.parse().unwrap()), want, "{r:?} vs {addr}");
        }
    }
}
