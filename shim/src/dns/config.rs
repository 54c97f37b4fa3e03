//! What a guest's name lookups may use, decided on the host side from trusted files.
//!
//! The image's `/etc/resolv.conf`, `/etc/hosts` and `/etc/nsswitch.conf` are never read: the
//! container side resolves only with a [`ResolverConfig`] built here, before the pivot, from
//! the file containerd made for the container (under CRI, the pod's `resolv.conf` from
//! kubelet's DNS settings, bind-mounted at `/etc/resolv.conf`) or else the node's own.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Largest `resolv.conf` read (kubelet's are a few hundred bytes).
pub const MAX_RESOLV_CONF_BYTES: u64 = 64 * 1024;
/// Largest hosts file read (kubelet's are a few hundred bytes; a node's can be larger).
pub const MAX_HOSTS_BYTES: u64 = 1024 * 1024;
/// Nameservers used, as glibc (`MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;
/// Search domains used, as glibc.
pub const MAX_SEARCH: usize = 6;
/// Largest `ndots` honoured, as glibc.
pub const MAX_NDOTS: u8 = 15;

/// Where a guest's name lookups go, and the static names it may resolve.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolverConfig {
    /// DNS servers, queried over UDP (TCP on truncation). Empty: names resolve from
    /// [`ResolverConfig::hosts`] only.
    pub nameservers: Vec<SocketAddr>,
    /// Search domains for names with fewer than `ndots` dots.
    pub search: Vec<String>,
    /// Dots a name needs to be tried as absolute first (resolv.conf's default is 1).
    pub ndots: u8,
    /// Static entries (the hosts file), checked before DNS.
    pub hosts: Vec<HostEntry>,
}

/// One line of a hosts file: an address and the names that resolve to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub addr: IpAddr,
    /// Lowercase, without a trailing dot.
    pub names: Vec<String>,
}

impl ResolverConfig {
    /// The configuration for a container, read on the host side: `/etc/resolv.conf` and
    /// `/etc/hosts` from the sources of the spec's mounts at those destinations when there
    /// are such mounts (containerd's CRI plugin makes them for every pod), else from the
    /// node's files. `spec_mounts` is `(destination, source)` of each OCI mount, in order
    /// (a later mount over the same destination wins, as when they are mounted).
    ///
    /// A missing hosts file is no entries; any other failure to read a file is an error.
    pub fn for_container<D: AsRef<Path>, S: AsRef<Path>>(
        spec_mounts: &[(D, S)],
        node_resolv_conf: &Path,
        node_hosts: &Path,
    ) -> Result<Self> {
        let source_for = |dest: &str| {
            spec_mounts
                .iter()
                .rev()
                .find(|(d, _)| d.as_ref() == Path::new(dest))
                .map(|(_, s)| s.as_ref())
        };
        let resolv_path = source_for("/etc/resolv.conf").unwrap_or(node_resolv_conf);
        let hosts_path = source_for("/etc/hosts").unwrap_or(node_hosts);
        let resolv = read_trusted(resolv_path, MAX_RESOLV_CONF_BYTES)
            .with_context(|| format!("reading resolver config {}", resolv_path.display()))?;
        let hosts = match read_trusted(hosts_path, MAX_HOSTS_BYTES) {
            Ok(bytes) => parse_hosts(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading hosts {}", hosts_path.display()));
            }
        };
        let mut config = parse_resolv_conf(&resolv);
        config.hosts = hosts;
        Ok(config)
    }

    /// The addresses of `name` in the static entries, in file order, without duplicates.
    /// Names compare case-insensitively and without a trailing dot.
    pub fn host_addrs(&self, name: &str) -> Vec<IpAddr> {
        let name = normalize_name(name);
        let mut addrs = Vec::new();
        for entry in &self.hosts {
            if entry.names.contains(&name) && !addrs.contains(&entry.addr) {
                addrs.push(entry.addr);
            }
        }
        addrs
    }
}

fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Reads a host-side file that the image cannot influence with the project's one bounded
/// reader ([`warden_common::input_file::read_capped`]): the final path component must not
/// be a symlink, the file must be regular (a FIFO cannot block the open), and at most `max`
/// bytes long. Its refusals come back as I/O errors of the matching kind: `NotFound`,
/// `InvalidInput` (not a regular file, a symlink), `InvalidData` (too large).
pub fn read_trusted(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use warden_common::input_file::{InputError, Links, read_capped};
    match read_capped("resolver file", path, max, Links::Refuse) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} does not exist", path.display()),
        )),
        Err(InputError::Io { source, .. }) => Err(source),
        Err(e @ InputError::TooLarge { .. }) => {
            Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
        }
        Err(e @ (InputError::NotRegular { .. } | InputError::Symlink { .. })) => {
            Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
        }
    }
}

/// Parses a `resolv.conf` the way glibc reads it (comments, `nameserver`, `search` or
/// `domain` whichever comes last, `options ndots:N`; unknown lines ignored). No nameserver
/// means the local one (127.0.0.1 and ::1), as in glibc. Addresses use port 53.
pub fn parse_resolv_conf(bytes: &[u8]) -> ResolverConfig {
    let (mut conf, errors) = resolv_conf::Config::parse_with_errors(bytes);
    for e in errors {
        log::debug!("resolv.conf: ignoring {e}");
    }
    conf.glibc_normalize();
    let nameservers = conf
        .get_nameservers_or_local()
        .iter()
        .take(MAX_NAMESERVERS)
        .map(|ip| SocketAddr::new(IpAddr::from(ip), 53))
        .collect();
    let search = conf
        .get_last_search_or_domain()
        .map(|d| normalize_name(d))
        .filter(|d| !d.is_empty())
        .take(MAX_SEARCH)
        .collect();
    ResolverConfig {
        nameservers,
        search,
        ndots: u8::try_from(conf.ndots).unwrap_or(MAX_NDOTS).min(MAX_NDOTS),
        hosts: Vec::new(),
    }
}

/// Parses a hosts file: `ADDRESS NAME [ALIAS...]` per line, `#` to the end of a line is a
/// comment; lines whose address does not parse are skipped, as glibc does.
pub fn parse_hosts(bytes: &[u8]) -> Vec<HostEntry> {
    let text = String::from_utf8_lossy(bytes);
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(addr) = fields.next() else { continue };
        // A zone (`fe80::1%eth0`) names an interface of the node, not of the container.
        let Ok(addr) = addr.parse::<IpAddr>() else {
            continue;
        };
        let names: Vec<String> = fields
            .map(normalize_name)
            .filter(|n| !n.is_empty())
            .collect();
        if !names.is_empty() {
            entries.push(HostEntry { addr, names });
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn ns(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_kubelet_resolv_conf() {
        let c = parse_resolv_conf(
            b"# generated by kubelet\n\
              search default.svc.cluster.local svc.cluster.local cluster.local\n\
              nameserver 10.96.0.10\n\
              options ndots:5\n",
        );
        assert_eq!(c.nameservers, vec![ns("10.96.0.10:53")]);
        assert_eq!(
            c.search,
            [
                "default.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(c.ndots, 5);
        assert!(c.hosts.is_empty());
    }

    #[test]
    fn comments_ipv6_domain_and_unknown_lines() {
        let c = parse_resolv_conf(
            b"; a comment\n\
              \t# another\n\
              nameserver 2001:db8::53\n\
              nameserver 192.0.2.1 # trailing\n\
              search a.example\n\
              domain Corp.Example.\n\
              sortlist 10.0.0.0/8\n\
              bogus line here\n\
              options rotate timeout:1\n",
        );
        assert_eq!(
            c.nameservers,
            vec![ns("[2001:db8::53]:53"), ns("192.0.2.1:53")]
        );
        // The last of `search` and `domain` wins, as in glibc.
        assert_eq!(c.search, ["corp.example"]);
        assert_eq!(c.ndots, 1, "resolv.conf default");
    }

    #[test]
    fn limits_of_glibc() {
        let c = parse_resolv_conf(
            b"nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\n\
              nameserver 192.0.2.4\nsearch a b c d e f g h\noptions ndots:99\n",
        );
        assert_eq!(c.nameservers.len(), MAX_NAMESERVERS);
        assert_eq!(c.search, ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(c.ndots, MAX_NDOTS);
    }

    #[test]
    fn no_nameserver_means_the_local_one() {
        let c = parse_resolv_conf(b"search example.com\n");
        assert_eq!(c.nameservers, vec![ns("127.0.0.1:53"), ns("[::1]:53")]);
    }

    #[test]
    fn hosts_lines_comments_aliases_and_bad_addresses() {
        let h = parse_hosts(
            b"# Kubernetes-managed hosts file.\n\
              127.0.0.1\tlocalhost\n\
              ::1 localhost ip6-localhost ip6-loopback\n\
              10.244.1.7  web-0.web.default.svc.cluster.local  Web-0 # me\n\
              not-an-ip foo\n\
              fe80::1%eth0 scoped\n\
              192.0.2.9\n\
              \n   \n",
        );
        assert_eq!(h.len(), 3);
        let c = ResolverConfig {
            hosts: h,
            ..Default::default()
        };
        assert_eq!(
            c.host_addrs("localhost"),
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(
            c.host_addrs("WEB-0."),
            ["10.244.1.7".parse::<IpAddr>().unwrap()]
        );
        assert!(c.host_addrs("foo").is_empty());
        assert!(c.host_addrs("scoped").is_empty());
        assert!(c.host_addrs("me").is_empty(), "comment");
    }

    #[test]
    fn oversize_and_non_regular_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("resolv.conf");
        let mut f = std::fs::File::create(&big).unwrap();
        f.write_all(&vec![b'#'; MAX_RESOLV_CONF_BYTES as usize + 1])
            .unwrap();
        let e = read_trusted(&big, MAX_RESOLV_CONF_BYTES).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let e = ResolverConfig::for_container::<&str, &str>(&[], &big, Path::new("/nonexistent"))
            .unwrap_err();
        assert!(format!("{e:#}").contains("more than"), "{e:#}");

        // A directory, a FIFO (must not block) and a symlink.
        let e = read_trusted(dir.path(), 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = read_trusted(&fifo, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        assert!(read_trusted(&link, u64::MAX).is_err(), "O_NOFOLLOW");
    }

    #[test]
    fn for_container_prefers_the_spec_mount_sources() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let node_resolv = write("node-resolv", "nameserver 192.0.2.1\n");
        let node_hosts = write("node-hosts", "192.0.2.100 node-name\n");
        let pod_resolv = write(
            "pod-resolv",
            "nameserver 10.96.0.10\nsearch ns.svc.cluster.local\noptions ndots:5\n",
        );
        let pod_hosts = write("pod-hosts", "10.244.0.5 pod-name\n");

        let none: &[(&str, &Path)] = &[];
        let c = ResolverConfig::for_container(none, &node_resolv, &node_hosts).unwrap();
        assert_eq!(c.nameservers, vec![ns("192.0.2.1:53")]);
        assert_eq!(c.host_addrs("node-name").len(), 1);

        let mounts = [
            ("/etc/hostname", dir.path().join("whatever")),
            ("/etc/resolv.conf", pod_resolv.clone()),
            ("/etc/hosts", pod_hosts.clone()),
        ];
        let c = ResolverConfig::for_container(&mounts, &node_resolv, &node_hosts).unwrap();
        assert_eq!(c.nameservers, vec![ns("10.96.0.10:53")]);
        assert_eq!(c.search, ["ns.svc.cluster.local"]);
        assert_eq!(c.ndots, 5);
        assert_eq!(
            c.host_addrs("pod-name"),
            ["10.244.0.5".parse::<IpAddr>().unwrap()]
        );
        assert!(c.host_addrs("node-name").is_empty());

        // A missing hosts file is no entries; a missing resolv.conf is an error.
        let c = ResolverConfig::for_container(none, &node_resolv, &dir.path().join("no")).unwrap();
        assert!(c.hosts.is_empty());
        let e =
            ResolverConfig::for_container(none, &dir.path().join("no"), &node_hosts).unwrap_err();
        assert!(
            format!("{e:#}").contains("reading resolver config"),
            "{e:#}"
        );
    }

    #[test]
    fn it_travels_as_json() {
        let c = ResolverConfig {
            nameservers: vec![ns("[2001:db8::53]:53"), ns("10.96.0.10:53")],
            search: vec!["a.example".into()],
            ndots: 5,
            hosts: parse_hosts(b"10.0.0.1 a b\n"),
        };
        let back: ResolverConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
