//! Turning a grant set into a WASI context.
//!
//! `wasmtime-wasi`'s builder starts from nothing: no preopens, no environment, every socket
//! address refused, no name lookup. This module adds exactly what [`Grants`] names, and
//! nothing of the host: the only things a guest always gets are its args, its stdio (the
//! container's, set up by containerd), clocks and random. Granted directories are added by
//! [`crate::preopen::add_to`] from descriptors opened without following symlinks.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use warden_policy::{Grants, NetworkGrant};

use crate::{dns, preopen};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

/// Called with the rule (`network.connect`, `network.listen`) and a description of each
/// socket use the policy refused.
pub type DenyHook = Arc<dyn Fn(&'static str, String) + Send + Sync>;

/// What a guest gets to reach the host: its WASI contexts and the name lookup.
pub struct GuestWasi {
    pub ctx: WasiMaker,
    pub dns: dns::NameLookup,
}

type Make = dyn Fn() -> Result<WasiCtxBuilder> + Send + Sync;

/// Makes the WASI context of a guest instance from the grants, as often as needed: once for
/// a command, once per request for an HTTP service (each instance gets its own context,
/// with its own descriptors for the granted directories).
pub struct WasiMaker(Box<Make>);

impl WasiMaker {
    pub fn new(make: impl Fn() -> Result<WasiCtxBuilder> + Send + Sync + 'static) -> Self {
        WasiMaker(Box::new(make))
    }

    /// A maker that hands out `builder` once (tests); a second call is an error.
    #[cfg(test)]
    pub fn once(builder: WasiCtxBuilder) -> Self {
        let cell = std::sync::Mutex::new(Some(builder));
        WasiMaker::new(move || {
            cell.lock()
                .ok()
                .and_then(|mut b| b.take())
                .ok_or_else(|| anyhow::anyhow!("this guest's WASI context was already used"))
        })
    }

    /// A new context with the grants, stdio inherited from the container (a runner may
    /// replace stdin, stdout and stderr before building it).
    pub fn make(&self) -> Result<WasiCtxBuilder> {
        (self.0)()
    }
}

/// The one place that turns grants into what a guest may reach.
///
/// What every guest gets, strict profile included:
///
/// - its args (`args[0]` is the module's path in the image);
/// - stdin, stdout and stderr: the container's, as containerd set them up;
/// - the wall clock and the monotonic clock of the host;
/// - `random` (a CSPRNG seeded from the host) and `insecure-random`;
/// - TCP and UDP sockets may be created, but every bind, listen, connect and send is checked
///   against the grants: with none, every one is refused (`EACCES`) and reported;
/// - `exit`.
///
/// What it gets only when granted: environment variables (`env`, by name), preopened
/// directories (`mounts`, as `dirs` opened by descriptor), socket addresses (`network`), name
/// lookup (`network.dns`, with `resolver`, never the image's files). No working directory,
/// no host environment, nothing else of the host.
///
/// The granted directories `dirs` stay open in the maker for as long as it lives: each
/// context made gets its own descriptors for them.
pub fn for_grants(
    grants: &Grants,
    args: &[String],
    dirs: Vec<preopen::OpenDir>,
    resolver: &dns::ResolverConfig,
    on_deny: DenyHook,
) -> Result<GuestWasi> {
    let dns = dns::NameLookup::new(resolver.clone(), &grants.network, on_deny.clone());
    let (grants, args) = (grants.clone(), args.to_vec());
    // Checked once here, so that a grant that cannot be built fails the run at its start.
    let mut first = builder(&grants, &args, on_deny.clone())?;
    preopen::add_to(&mut first, &dirs)?;
    let first = std::sync::Mutex::new(Some(first));
    let ctx = WasiMaker::new(move || {
        if let Some(b) = first.lock().ok().and_then(|mut f| f.take()) {
            return Ok(b);
        }
        let mut b = builder(&grants, &args, on_deny.clone())?;
        preopen::add_to(&mut b, &dirs)?;
        Ok(b)
    });
    Ok(GuestWasi { ctx, dns })
}

/// The WASI context of [`for_grants`] without preopens and name lookup (tests use it).
pub fn builder(grants: &Grants, args: &[String], on_deny: DenyHook) -> Result<WasiCtxBuilder> {
    let mut b = WasiCtxBuilder::new();
    b.args(args).inherit_stdio();
    for (k, v) in &grants.env {
        b.env(k, v);
    }
    // Granted paths are not opened here: they are resolved without following symlinks
    // (image directories on the host, mount paths in the container) and added by
    // `preopen::add_to`, never by a path lookup that an image could redirect.
    let net = Arc::new(grants.network.clone());
    // Never wasmtime-wasi's name lookup: it calls getaddrinfo in the image's root (its
    // nsswitch.conf, NSS modules, resolv.conf). `dns::add_to_linker` replaces it; the
    // `dns` grant is enforced there.
    b.allow_ip_name_lookup(false);
    // Creating a socket is harmless on its own; every bind, listen, connect and send is
    // checked below against the grant (default: refuse). Allowing creation means that a
    // refused use is seen, with its address, and audited, instead of failing anonymously.
    b.allow_tcp(true).allow_udp(true);
    b.socket_addr_check(move |addr, use_| {
        let allowed = socket_allowed(&net, addr, use_);
        if !allowed {
            on_deny(rule_of(use_), format!("{} {addr}", use_name(use_)));
        }
        Box::pin(async move { allowed })
    });
    Ok(b)
}

/// Whether the network grant allows one use of a socket address.
///
/// `connect` rules cover outgoing TCP connects and UDP sends; `listen` rules cover binds to
/// a chosen address or port, and listening. A bind to the wildcard address and an ephemeral
/// port (what wasi-sockets checks for the implicit bind of a connect, listen or send) carries
/// no traffic and is allowed: the connect, listen or send that follows is what is checked,
/// refused, and audited with its real address. Accepted TCP clients and received datagrams
/// are allowed on sockets that passed those checks.
pub fn socket_allowed(net: &NetworkGrant, addr: SocketAddr, use_: SocketAddrUse) -> bool {
    let ephemeral_wildcard = addr.ip().is_unspecified() && addr.port() == 0;
    match use_ {
        SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend => net.may_connect(addr),
        SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
            ephemeral_wildcard || net.may_listen(addr)
        }
        SocketAddrUse::TcpListen => net.may_listen(addr),
        SocketAddrUse::TcpAccept => !net.listen.is_empty(),
        SocketAddrUse::UdpReceive => net.may_connect(addr) || !net.listen.is_empty(),
    }
}

/// The policy key that would have to grant a socket use.
pub fn rule_of(u: SocketAddrUse) -> &'static str {
    match u {
        SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend => "network.connect",
        _ => "network.listen",
    }
}

fn use_name(u: SocketAddrUse) -> &'static str {
    match u {
        SocketAddrUse::TcpBind => "tcp bind",
        SocketAddrUse::TcpListen => "tcp listen",
        SocketAddrUse::TcpAccept => "tcp accept from",
        SocketAddrUse::TcpConnect => "tcp connect",
        SocketAddrUse::UdpBind => "udp bind",
        SocketAddrUse::UdpSend => "udp send",
        SocketAddrUse::UdpReceive => "udp receive from",
    }
}

#[cfg(test)]
mod tests {
    use warden_policy::SocketRule;

    use super::*;

    /// A rule in the policy file's own syntax.
    fn rule(text: &str) -> SocketRule {
        text.parse().unwrap()
    }

    #[test]
    fn strict_network_refuses_every_use() {
        let net = NetworkGrant::default();
        for u in [
            SocketAddrUse::TcpBind,
            SocketAddrUse::TcpConnect,
            SocketAddrUse::TcpListen,
            SocketAddrUse::TcpAccept,
            SocketAddrUse::UdpBind,
            SocketAddrUse::UdpSend,
            SocketAddrUse::UdpReceive,
        ] {
            for a in ["127.0.0.1:80", "0.0.0.0:80", "[::1]:443", "10.0.0.1:5432"] {
                assert!(!socket_allowed(&net, a.parse().unwrap(), u), "{a} {u:?}");
            }
        }
    }

    #[test]
    fn connect_and_listen_rules_are_separate() {
        let net = NetworkGrant {
            connect: vec![rule("10.0.0.0/8:5432")],
            listen: vec![rule("0.0.0.0/0:8080")],
            dns: false,
        };
        let ok = |a: &str, u| socket_allowed(&net, a.parse().unwrap(), u);
        assert!(ok("10.2.3.4:5432", SocketAddrUse::TcpConnect));
        assert!(!ok("10.2.3.4:5433", SocketAddrUse::TcpConnect));
        assert!(!ok("127.0.0.1:5432", SocketAddrUse::TcpConnect));
        assert!(
            ok("0.0.0.0:0", SocketAddrUse::TcpBind),
            "implicit bind of a connect"
        );
        assert!(ok("0.0.0.0:8080", SocketAddrUse::TcpBind));
        assert!(ok("0.0.0.0:8080", SocketAddrUse::TcpListen));
        assert!(!ok("0.0.0.0:9090", SocketAddrUse::TcpBind));
        assert!(!ok("0.0.0.0:9090", SocketAddrUse::TcpListen));
        assert!(ok("10.9.9.9:5432", SocketAddrUse::UdpSend));
        assert!(!ok("11.9.9.9:5432", SocketAddrUse::UdpSend));
        assert!(!ok("10.2.3.4:8080", SocketAddrUse::TcpConnect));
    }

    #[test]
    fn an_ephemeral_wildcard_bind_is_harmless_and_what_follows_is_checked() {
        let none = NetworkGrant::default();
        let wild = "0.0.0.0:0".parse().unwrap();
        assert!(socket_allowed(&none, wild, SocketAddrUse::TcpBind));
        assert!(socket_allowed(&none, wild, SocketAddrUse::UdpBind));
        assert!(!socket_allowed(&none, wild, SocketAddrUse::TcpListen));
        let target = "127.0.0.1:22".parse().unwrap();
        assert!(!socket_allowed(&none, target, SocketAddrUse::TcpConnect));
        assert!(!socket_allowed(&none, target, SocketAddrUse::UdpSend));
    }

    #[test]
    fn granted_paths_are_not_opened_by_path_here() {
        let mut g = Grants::strict();
        g.mounts.push(warden_policy::MountGrant::new(
            "/does/not/exist/warden",
            warden_policy::Access::Ro,
        ));
        assert!(builder(&g, &[], Arc::new(|_, _| {})).is_ok());
    }
}
