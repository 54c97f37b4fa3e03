//! Parsers for the string forms a policy file uses: sizes, durations, socket rules, HTTP
//! origins, env globs, module digests and mount paths.
//!
//! Each returns the canonical form or a message that explains what is accepted, because
//! the message ends up in front of a node admin next to the file and line.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use warden_common::Digest;

use crate::SocketRule;
use crate::http::{HttpScheme, OriginRule};

/// Parses a byte size: `"64Mi"`, `"64MiB"`, `"1Gi"`, `"500M"`, `"4096"`, `"512k"`.
///
/// Binary suffixes (`Ki`, `Mi`, `Gi`, `Ti`, optionally followed by `B`) are powers of 1024,
/// decimal ones (`k`/`K`, `M`, `G`, `T`, optionally followed by `B`) powers of 1000, as in
/// Kubernetes quantities. Only whole numbers; zero is refused because a zero memory limit
/// would only make every module fail.
pub fn parse_size(text: &str) -> Result<u64, String> {
    const HINT: &str = "expected a size such as \"64Mi\", \"1Gi\", \"500M\" or a number of bytes";
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (num, suffix) = text.split_at(digits_end);
    if num.is_empty() {
        return Err(format!("{text:?}: {HINT}"));
    }
    let factor: u64 = match suffix {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1000,
        "M" | "MB" => 1000_u64.pow(2),
        "G" | "GB" => 1000_u64.pow(3),
        "T" | "TB" => 1000_u64.pow(4),
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        "Ti" | "TiB" => 1 << 40,
        _ => return Err(format!("{text:?}: unknown unit {suffix:?}; {HINT}")),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?}: number too large"))?;
    let bytes = n
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?}: size too large"))?;
    if bytes == 0 {
        return Err(format!("{text:?}: a size must be greater than zero"));
    }
    Ok(bytes)
}

/// Parses a duration: `"2s"`, `"500ms"`, `"1m"`, `"1h"`, `"250us"`, or a sum such as
/// `"1m30s"`. A bare number is refused: `30` could mean seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a duration such as \"2s\", \"500ms\", \"1m\" or \"1m30s\"";
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(format!("{text:?}: {HINT}"));
    }
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(format!("{text:?}: {HINT}"));
        }
        let (num, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{text:?}: number too large"))?;
        let part = match unit {
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "s" => Some(Duration::from_secs(n)),
            "ms" => Some(Duration::from_millis(n)),
            "us" | "µs" => Some(Duration::from_micros(n)),
            "ns" => Some(Duration::from_nanos(n)),
            "" => return Err(format!("{text:?}: missing unit; {HINT}")),
            _ => return Err(format!("{text:?}: unknown unit {unit:?}; {HINT}")),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("{text:?}: duration too large"))?;
        rest = next;
    }
    if total.is_zero() {
        return Err(format!("{text:?}: a duration must be greater than zero"));
    }
    Ok(total)
}

/// Parses a socket rule: `ADDR[/PREFIX]:PORTS` where `ADDR` is an IPv4 address or an IPv6
/// address in brackets (`[::1]:80`, `[fd00::/8]:443`) and `PORTS` is a port, a range
/// `LO-HI`, or `*` for every port (0-65535, so that a listen rule also covers an
/// ephemeral bind to port 0).
///
/// The port is required: a rule without one would silently grant every port. Host names
/// are refused because sockets are checked by address. A network address with host bits
/// set (`10.1.2.3/8`) is refused rather than masked, since the admin probably meant
/// something narrower than what masking would grant.
pub fn parse_socket_rule(text: &str) -> Result<SocketRule, String> {
    const FORMS: &str =
        "expected ADDR[/PREFIX]:PORT, ADDR:LO-HI or ADDR:* (IPv6 in brackets: [fd00::/8]:443)";
    let (addr_part, port_part) = if let Some(inner) = text.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("{text:?}: missing ']'; {FORMS}"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("{text:?}: missing port after ']'; {FORMS}"))?;
        (addr, port)
    } else {
        let (addr, port) = text.rsplit_once(':').ok_or_else(|| {
            format!("{text:?}: missing port (use ADDR:* for every port); {FORMS}")
        })?;
        if addr.contains(':') {
            return Err(format!(
                "{text:?}: an IPv6 address must be written in brackets, e.g. [::1]:80"
            ));
        }
        (addr, port)
    };
    let bracketed = text.starts_with('[');
    let (ip_text, prefix_text) = match addr_part.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (addr_part, None),
    };
    let addr: IpAddr = if bracketed {
        let v6: Ipv6Addr = ip_text
            .parse()
            .map_err(|_| format!("{text:?}: {ip_text:?} is not an IPv6 address"))?;
        IpAddr::V6(v6)
    } else {
        let v4: Ipv4Addr = ip_text.parse().map_err(|_| {
            format!("{text:?}: {ip_text:?} is not an IPv4 address (host names are not allowed: sockets are checked by address)")
        })?;
        IpAddr::V4(v4)
    };
    let max_prefix: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => max_prefix,
        Some(p) => {
            let n: u8 = p
                .parse()
                .map_err(|_| format!("{text:?}: prefix {p:?} is not a number"))?;
            if n > max_prefix {
                return Err(format!(
                    "{text:?}: prefix /{n} is longer than {max_prefix} bits"
                ));
            }
            n
        }
    };
    let masked = mask(addr, prefix);
    if masked != addr {
        return Err(format!(
            "{text:?}: {addr} has bits set beyond the /{prefix} prefix (did you mean {}?)",
            SocketRule {
                addr: masked,
                prefix,
                ports: (0, 0)
            }
            .net()
        ));
    }
    let ports = parse_ports(port_part).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(SocketRule {
        addr,
        prefix,
        ports,
    })
}

fn parse_ports(text: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number (0-65535)"))
    };
    if text == "*" {
        return Ok((0, u16::MAX));
    }
    match text.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (port(lo)?, port(hi)?);
            if lo > hi {
                return Err(format!("port range {lo}-{hi} is empty"));
            }
            Ok((lo, hi))
        }
        None => {
            let p = port(text)?;
            Ok((p, p))
        }
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    fn mask_bytes<const N: usize>(mut b: [u8; N], prefix: u8) -> [u8; N] {
        for (i, byte) in b.iter_mut().enumerate() {
            let bits_before = i * 8;
            let keep = usize::from(prefix).saturating_sub(bits_before).min(8);
            *byte &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        }
        b
    }
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(mask_bytes(a.octets(), prefix))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(mask_bytes(a.octets(), prefix))),
    }
}

/// Parses an outgoing HTTP origin rule: `http` or `https`, a host (DNS name, IPv4, or IPv6 in
/// brackets) and an optional port, range `LO-HI` or `*` (1-65535); no path, query, user info
/// or wildcard host. A single trailing `/` is tolerated. Scheme and host are stored in lower
/// case (an IPv6 host in its canonical form) and a URL without a port means the scheme's
/// default port, so that one origin has one spelling.
pub fn parse_origin(text: &str) -> Result<OriginRule, String> {
    const FORM: &str = "expected http(s)://HOST[:PORT], HOST:LO-HI or HOST:*, without a path";
    let (scheme_text, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("{text:?}: {FORM}"))?;
    let scheme = HttpScheme::parse(scheme_text)
        .ok_or_else(|| format!("{text:?}: scheme must be http or https"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(format!(
            "{text:?}: a path, query or fragment is not allowed; {FORM}"
        ));
    }
    if authority.contains('@') {
        return Err(format!("{text:?}: user info is not allowed; {FORM}"));
    }
    let (host, port_text) = if authority.starts_with('[') {
        let close = authority
            .find(']')
            .ok_or_else(|| format!("{text:?}: missing ']'"))?;
        let (host, after) = authority.split_at(close + 1);
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{text:?}: {FORM}"))?,
            ),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host = canonical_host(host).ok_or_else(|| {
        format!("{text:?}: {host:?} is not a host name, an IPv4 address or an [IPv6] address")
    })?;
    let ports = match port_text {
        None => (scheme.default_port(), scheme.default_port()),
        Some("*") => (1, u16::MAX),
        Some(p) => {
            let (lo, hi) = parse_ports(p).map_err(|e| format!("{text:?}: {e}"))?;
            if lo == 0 {
                return Err(format!(
                    "{text:?}: port 0 is not a port a request can go to (1-65535)"
                ));
            }
            (lo, hi)
        }
    };
    Ok(OriginRule {
        scheme,
        host,
        ports,
    })
}

/// The one spelling of a URL's host that origin rules are compared in: lower case; an IPv6
/// address in brackets and its canonical text form (`[0:0::1]` is `[::1]`); `None` for
/// anything that is not a DNS name, an IPv4 address or a bracketed IPv6 address.
pub fn canonical_host(host: &str) -> Option<String> {
    if let Some(inner) = host.strip_prefix('[') {
        let v6: Ipv6Addr = inner.strip_suffix(']')?.parse().ok()?;
        return Some(format!("[{v6}]"));
    }
    is_host_name(host).then(|| host.to_ascii_lowercase())
}

fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Checks an env name or glob: letters, digits, `_`, `-`, `.` and the wildcard `*`
/// (`LOG_LEVEL`, `APP_*`, `*`). Other glob syntax (`?`, `[...]`) is refused rather than
/// taken literally, so that a pattern never means something else than it seems to.
pub fn parse_env_pattern(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("an env name or glob must not be empty".into());
    }
    if let Some(c) = text
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '*')))
    {
        return Err(format!(
            "{text:?}: {c:?} is not allowed in an env name or glob (letters, digits, '_', '-', '.', and '*' as wildcard)"
        ));
    }
    Ok(text.to_owned())
}

/// Matches a name against a glob where `*` matches any run of characters (also empty).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Position of the last `*` seen and the name position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// Checks a module digest `sha256:<64 hex>` and returns it in lower case.
pub fn parse_digest(text: &str) -> Result<String, String> {
    text.parse::<Digest>()
        .map(String::from)
        .map_err(|e| e.to_string())
}

/// Checks a mount path: absolute, no `..` component, no NUL. Returns it normalized
/// (`//a/./b/` -> `/a/b`) so that the shim and the audit log see one spelling.
pub fn parse_mount_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("{text:?}: a mount path must be absolute"));
    }
    if text.contains('\0') {
        return Err(format!("{text:?}: a mount path must not contain NUL"));
    }
    let mut parts = Vec::new();
    for comp in text.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err(format!("{text:?}: a mount path must not contain '..'")),
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let ok = [
            ("64Mi", 64 << 20),
            ("64MiB", 64 << 20),
            ("1Gi", 1 << 30),
            ("500M", 500_000_000),
            ("500MB", 500_000_000),
            ("4096", 4096),
            ("512k", 512_000),
            ("2Ki", 2048),
            ("1Ti", 1 << 40),
        ];
        for (text, want) in ok {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "Mi",
            "64 Mi",
            "64mi",
            "1.5Gi",
            "-1",
            "0",
            "0Mi",
            "64Xi",
            "99999999999999999999",
            "20000000Ti",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        let ok = [
            ("2s", Duration::from_secs(2)),
            ("500ms", Duration::from_millis(500)),
            ("1m", Duration::from_secs(60)),
            ("1h", Duration::from_secs(3600)),
            ("1m30s", Duration::from_secs(90)),
            ("250us", Duration::from_micros(250)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["", "2", "s", "0s", "2 s", "2sec", "1.5s", "-1s", "ms5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn socket_rules() {
        let ok = [
            ("10.0.0.0/8:5432", "10.0.0.0", 8, (5432, 5432)),
            ("127.0.0.1:8080-8089", "127.0.0.1", 32, (8080, 8089)),
            ("0.0.0.0:8080", "0.0.0.0", 32, (8080, 8080)),
            ("0.0.0.0/0:*", "0.0.0.0", 0, (0, 65535)),
            ("[::1]:80", "::1", 128, (80, 80)),
            ("[fd00::/8]:443", "fd00::", 8, (443, 443)),
            ("[::/0]:1-1024", "::", 0, (1, 1024)),
        ];
        for (text, addr, prefix, ports) in ok {
            let r = parse_socket_rule(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(r.addr, addr.parse::<IpAddr>().unwrap(), "{text}");
            assert_eq!((r.prefix, r.ports), (prefix, ports), "{text}");
            assert_eq!(r.to_string(), text, "display of {text}");
        }
        let bad = [
            "10.0.0.0/8",
            "10.0.0.0/33:80",
            "10.1.0.0/8:80",
            "300.0.0.0/8:80",
            "example.com:80",
            "::1:80",
            "[::1]",
            "[::1:80",
            "[10.0.0.1]:80",
            "10.0.0.1:70000",
            "10.0.0.1:90-80",
            "10.0.0.1:",
            "10.0.0.1:a",
            "[fd00::/129]:1",
            "",
        ];
        for text in bad {
            assert!(parse_socket_rule(text).is_err(), "{text}");
        }
    }

    #[test]
    fn origins() {
        let ok = [
            ("https://api.example.com", "https://api.example.com"),
            ("https://API.example.com/", "https://api.example.com"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("https://example.com:443", "https://example.com"),
            ("http://example.com:8443", "http://example.com:8443"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[0:0::1]:8080", "http://[::1]:8080"),
            ("HTTPS://h", "https://h"),
            ("http://127.0.0.1:8080-8089", "http://127.0.0.1:8080-8089"),
            ("http://127.0.0.1:*", "http://127.0.0.1:*"),
            ("http://h:1-65535", "http://h:*"),
        ];
        for (text, want) in ok {
            assert_eq!(
                parse_origin(text).map(|r| r.to_string()).as_deref(),
                Ok(want),
                "{text}"
            );
        }
        for bad in [
            "api.example.com",
            "ftp://example.com",
            "https://example.com/v1",
            "https://example.com?x=1",
            "https://user@example.com",
            "https://*.example.com",
            "https://",
            "https://example.com:0",
            "https://example.com:0-80",
            "https://example.com:99999",
            "https://example.com:90-80",
            "https://-bad.com",
            "http://[::1",
            "http://[::1]x",
            "http://[example.com]:80",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_have_one_spelling() {
        assert_eq!(
            canonical_host("Api.Example.COM").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(canonical_host("[0:0:0::1]").as_deref(), Some("[::1]"));
        assert_eq!(canonical_host("10.0.0.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(canonical_host("::1"), None);
        assert_eq!(canonical_host("a b"), None);
        assert_eq!(canonical_host(""), None);
    }

    #[test]
    fn env_patterns_and_globs() {
        for ok in ["LOG_LEVEL", "APP_*", "*", "a.b-c"] {
            assert!(parse_env_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A B", "A=B", "A?", "[A]", "É"] {
            assert!(parse_env_pattern(bad).is_err(), "{bad}");
        }
        let cases = [
            ("APP_*", "APP_X", true),
            ("APP_*", "APP_", true),
            ("APP_*", "XAPP_X", false),
            ("*", "", true),
            ("*", "ANY", true),
            ("LOG_LEVEL", "LOG_LEVEL", true),
            ("LOG_LEVEL", "LOG_LEVELX", false),
            ("*_URL", "DB_URL", true),
            ("A*B*C", "AxxBxxC", true),
            ("A*B*C", "AxxCxxB", false),
            ("a*a", "aaa", true),
            ("log_level", "LOG_LEVEL", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(glob_match(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn digests_and_paths() {
        let hex = "4B1C".repeat(16);
        assert_eq!(
            parse_digest(&format!("sha256:{hex}")),
            Ok(format!("sha256:{}", hex.to_lowercase()))
        );
        let bad = [
            "sha256:abc".to_owned(),
            format!("sha512:{}", "a".repeat(64)),
            "a".repeat(64),
            format!("sha256:{}", "g".repeat(64)),
        ];
        for b in &bad {
            assert!(parse_digest(b).is_err(), "{b}");
        }
        assert_eq!(parse_mount_path("/config"), Ok("/config".into()));
        assert_eq!(parse_mount_path("//a/./b/"), Ok("/a/b".into()));
        assert_eq!(parse_mount_path("/"), Ok("/".into()));
        for bad in ["config", "", "/a/../b", "/..", "./x"] {
            assert!(parse_mount_path(bad).is_err(), "{bad}");
        }
    }
}
