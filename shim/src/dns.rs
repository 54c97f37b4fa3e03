//! Name lookup for guests (`wasi:sockets/ip-name-lookup`) without the image's resolver.
//!
//! wasmtime-wasi resolves names with `tokio::net::lookup_host`, that is glibc's
//! `getaddrinfo` in the container's process after the pivot: it would read the image's
//! `/etc/nsswitch.conf`, `/etc/hosts` and `/etc/resolv.conf`, `dlopen` the image's
//! `libnss_*.so` (native code from the image), and query whatever nameserver the image
//! names. [`add_to_linker`] shadows that interface with this module's implementation, which:
//! - resolves with hickory-resolver (pure Rust) configured only from a [`ResolverConfig`]
//!   that the host side built from trusted files; no file of the container is read;
//! - answers literal IP addresses itself, as wasmtime-wasi does;
//! - keeps only the addresses that the grant's `network.connect` rules cover; a name whose
//!   addresses are all outside them is `name-unresolvable`, and the refusal goes to the
//!   deny hook (rule `network.connect`);
//! - bounds every lookup in time ([`LOOKUP_DEADLINE`]) and in number
//!   ([`MAX_CONCURRENT_LOOKUPS`] at a time);
//! - refuses every lookup (`permanent-resolver-failure`) when the grant has no `dns`.

mod config;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::Semaphore;
use warden_policy::NetworkGrant;
use wasmtime::component::{Accessor, HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddress, Network};
use wasmtime_wasi::p2::bindings::sync::sockets::ip_name_lookup;
use wasmtime_wasi::p2::{DynPollable, Pollable, SocketError, subscribe};
use wasmtime_wasi::p3::bindings::sockets::ip_name_lookup as ip_name_lookup3;
use wasmtime_wasi::p3::bindings::sockets::types as types3;
use wasmtime_wasi::runtime::{AbortOnDropJoinHandle, poll_noop};

pub use self::config::ResolverConfig;
use crate::wasi_ctx::DenyHook;

/// Time one DNS query waits for an answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Times a query is sent before the nameserver counts as failed.
pub const QUERY_ATTEMPTS: usize = 2;
/// Longest a guest's lookup takes, search domains and nameservers included; after it the
/// lookup fails with `temporary-resolver-failure`.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(10);
/// Lookups of one guest that run at the same time; more wait for a turn (within their
/// deadline).
pub const MAX_CONCURRENT_LOOKUPS: usize = 4;

/// A guest's name lookup: off (the grant has no `dns`), or a resolver bound to a
/// [`ResolverConfig`] and the grant's connect rules.
#[derive(Clone)]
pub struct NameLookup(Option<Arc<Lookup>>);

struct Lookup {
    config: ResolverConfig,
    network: NetworkGrant,
    on_deny: DenyHook,
    /// `None` when the config has no nameservers: only static entries resolve.
    resolver: Option<TokioResolver>,
    turns: Semaphore,
    deadline: Duration,
}

impl NameLookup {
    /// Lookups for a guest with grant `network`: refused unless `network.dns`; else resolved
    /// with `config` only and filtered by `network.connect`. Refusals go to `on_deny`.
    pub fn new(config: ResolverConfig, network: &NetworkGrant, on_deny: DenyHook) -> Self {
        if !network.dns {
            return Self::disabled();
        }
        let resolver = if config.nameservers.is_empty() {
            None
        } else {
            build_resolver(&config)
        };
        Self(Some(Arc::new(Lookup {
            config,
            network: network.clone(),
            on_deny,
            resolver,
            turns: Semaphore::new(MAX_CONCURRENT_LOOKUPS),
            deadline: LOOKUP_DEADLINE,
        })))
    }

    /// Every lookup fails with `permanent-resolver-failure`, as wasmtime-wasi does when name
    /// lookup is not allowed.
    pub fn disabled() -> Self {
        Self(None)
    }
}

/// The hickory options: bounded, and no system file (`/etc/hosts`) ever read.
fn resolver_opts(config: &ResolverConfig) -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.ndots = usize::from(config.ndots);
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = QUERY_ATTEMPTS;
    // The default (`Auto`) reads the hosts file of the current root, which is the image's.
    opts.use_hosts_file = ResolveHosts::Never;
    // A before AAAA: pods often have no IPv6 route.
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts
}

fn build_resolver(config: &ResolverConfig) -> Option<TokioResolver> {
    let name_servers = config
        .nameservers
        .iter()
        .map(|addr| {
            let conn = |mut c: ConnectionConfig| {
                c.port = addr.port();
                c
            };
            NameServerConfig::new(
                addr.ip(),
                true,
                vec![conn(ConnectionConfig::udp()), conn(ConnectionConfig::tcp())],
            )
        })
        .collect();
    let search = config
        .search
        .iter()
        .filter_map(|d| match Name::from_utf8(d) {
            Ok(name) => Some(name),
            Err(e) => {
                log::warn!("dns: ignoring search domain {d:?}: {e}");
                None
            }
        })
        .collect();
    let hconfig = hickory_resolver::config::ResolverConfig::from_parts(None, search, name_servers);
    let built = wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
        Resolver::builder_with_config(hconfig, TokioRuntimeProvider::default())
            .with_options(resolver_opts(config))
            .build()
    });
    match built {
        Ok(r) => Some(r),
        Err(e) => {
            log::error!("dns: cannot set up the resolver, names resolve from hosts only: {e}");
            None
        }
    }
}

/// Name lookup for the host's own connections on a guest's behalf (outgoing `wasi:http`):
/// the same trusted [`ResolverConfig`] and bounds as a guest's lookup, but independent of
/// the `dns` grant and unfiltered, because the policy rule that allowed the request names
/// the host itself.
pub struct HostLookup {
    config: ResolverConfig,
    resolver: Option<TokioResolver>,
}

impl HostLookup {
    /// Needs a tokio runtime to be current (hickory's resolver is built on it).
    pub fn new(config: ResolverConfig) -> Self {
        let resolver = if config.nameservers.is_empty() {
            None
        } else {
            build_resolver(&config)
        };
        HostLookup { config, resolver }
    }

    /// The addresses of `name` (a DNS name, not an IP literal): from the trusted hosts
    /// entries first, else from the nameservers, within [`LOOKUP_DEADLINE`].
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let from_hosts = self.config.host_addrs(name);
        if !from_hosts.is_empty() {
            return Ok(from_hosts);
        }
        let Some(resolver) = &self.resolver else {
            return Err(format!("{name}: no nameserver is configured"));
        };
        match tokio::time::timeout(LOOKUP_DEADLINE, resolver.lookup_ip(name)).await {
            Err(_) => Err(format!("{name}: the lookup ran out of time")),
            Ok(Err(e)) => Err(format!("{name}: {e}")),
            Ok(Ok(found)) => {
                let mut addrs: Vec<IpAddr> = Vec::new();
                for ip in found.iter().map(|ip| ip.to_canonical()) {
                    if !addrs.contains(&ip) {
                        addrs.push(ip);
                    }
                }
                if addrs.is_empty() {
                    Err(format!("{name}: no address"))
                } else {
                    Ok(addrs)
                }
            }
        }
    }
}

type LookupResult = Result<Vec<IpAddr>, ErrorCode>;

/// The guest's `resolve-address-stream`.
pub struct ResolveStream(StreamState);

enum StreamState {
    Pending(AbortOnDropJoinHandle<LookupResult>),
    Done(Result<std::vec::IntoIter<IpAddr>, ErrorCode>),
}

impl ResolveStream {
    fn ready(result: LookupResult) -> Self {
        Self(StreamState::Done(result.map(Vec::into_iter)))
    }

    /// Moves a finished lookup to `Done`; false while it runs.
    fn poll_done(&mut self) -> bool {
        if let StreamState::Pending(handle) = &mut self.0 {
            match poll_noop(std::pin::Pin::new(handle)) {
                Some(result) => *self = Self::ready(result),
                None => return false,
            }
        }
        true
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ResolveStream {
    async fn ready(&mut self) {
        if let StreamState::Pending(handle) = &mut self.0 {
            let result = handle.await;
            *self = Self::ready(result);
        }
    }
}

impl Lookup {
    /// Starts a lookup of `name`, a domain name (not an IP literal, not empty).
    fn start(self: &Arc<Self>, name: String) -> ResolveStream {
        let from_hosts = self.config.host_addrs(&name);
        if !from_hosts.is_empty() {
            return ResolveStream::ready(self.allowed(&name, from_hosts));
        }
        if self.resolver.is_none() {
            return ResolveStream::ready(Err(ErrorCode::NameUnresolvable));
        }
        let this = self.clone();
        ResolveStream(StreamState::Pending(wasmtime_wasi::runtime::spawn(
            async move { this.resolve(name).await },
        )))
    }

    /// Looks `name` up (a domain name): the trusted hosts entries, else the nameservers,
    /// bounded in time and in concurrent lookups, filtered by the connect rules.
    async fn resolve(self: Arc<Self>, name: String) -> LookupResult {
        let from_hosts = self.config.host_addrs(&name);
        if !from_hosts.is_empty() {
            return self.allowed(&name, from_hosts);
        }
        let Some(resolver) = self.resolver.clone() else {
            return Err(ErrorCode::NameUnresolvable);
        };
        let lookup = async {
            let _turn = self
                .turns
                .acquire()
                .await
                .map_err(|_| ErrorCode::TemporaryResolverFailure)?;
            resolver
                .lookup_ip(name.as_str())
                .await
                .map_err(|e| lookup_error(&name, &e))
        };
        let found = match tokio::time::timeout(self.deadline, lookup).await {
            Ok(found) => found?,
            Err(_) => {
                log::debug!("dns: lookup of {name} ran out of time");
                return Err(ErrorCode::TemporaryResolverFailure);
            }
        };
        let mut addrs: Vec<IpAddr> = Vec::new();
        for ip in found.iter().map(|ip| ip.to_canonical()) {
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
        self.allowed(&name, addrs)
    }

    /// The addresses of `name` that a connect rule covers; none is `name-unresolvable`,
    /// reported to the deny hook when the name did have addresses.
    fn allowed(&self, name: &str, addrs: Vec<IpAddr>) -> LookupResult {
        if addrs.is_empty() {
            return Err(ErrorCode::NameUnresolvable);
        }
        let (allowed, refused): (Vec<IpAddr>, Vec<IpAddr>) = addrs
            .into_iter()
            .partition(|ip| may_connect_to_ip(&self.network, *ip));
        if allowed.is_empty() {
            let list: Vec<String> = refused.iter().map(IpAddr::to_string).collect();
            (self.on_deny)(
                "network.connect",
                format!(
                    "dns lookup {name}: no connect rule covers its addresses {}",
                    list.join(", ")
                ),
            );
            return Err(ErrorCode::NameUnresolvable);
        }
        if !refused.is_empty() {
            log::debug!("dns: {name}: dropped addresses no connect rule covers: {refused:?}");
        }
        Ok(allowed)
    }
}

/// Whether some `network.connect` rule covers `ip` (on any of the rule's ports).
pub fn may_connect_to_ip(network: &NetworkGrant, ip: IpAddr) -> bool {
    network
        .connect
        .iter()
        .any(|rule| rule.matches(SocketAddr::new(ip, rule.ports.0)))
}

fn lookup_error(name: &str, e: &NetError) -> ErrorCode {
    log::debug!("dns: lookup of {name} failed: {e}");
    if e.is_nx_domain() || e.is_no_records_found() {
        return ErrorCode::NameUnresolvable;
    }
    match e {
        NetError::Timeout | NetError::Io(_) | NetError::NoConnections | NetError::Busy => {
            ErrorCode::TemporaryResolverFailure
        }
        _ => ErrorCode::NameUnresolvable,
    }
}

/// What the guest's name is: an IP literal (answered as is, like wasmtime-wasi), a domain
/// name (punycoded), or invalid. Same parsing as wasmtime-wasi.
enum Parsed {
    Ip(IpAddr),
    Domain(String),
}

fn parse_name(name: &str) -> Result<Parsed, ErrorCode> {
    match url::Host::parse(name) {
        Ok(url::Host::Domain(domain)) => Ok(Parsed::Domain(domain)),
        Ok(url::Host::Ipv4(addr)) => Ok(Parsed::Ip(IpAddr::V4(addr))),
        Ok(url::Host::Ipv6(addr)) => Ok(Parsed::Ip(IpAddr::V6(addr))),
        // `url::Host::parse` wants IPv6 in [brackets].
        Err(_) => match name.parse::<std::net::Ipv6Addr>() {
            Ok(addr) => Ok(Parsed::Ip(IpAddr::V6(addr))),
            Err(_) => Err(ErrorCode::InvalidArgument),
        },
    }
}

/// What the linker's functions get from the store: the guest's lookup and resource table.
pub struct DnsCtxView<'a> {
    pub lookup: &'a NameLookup,
    pub table: &'a mut ResourceTable,
}

/// A store whose guests may look names up with this module.
pub trait DnsView: Send {
    fn dns(&mut self) -> DnsCtxView<'_>;
}

struct HasDns;

impl HasData for HasDns {
    type Data<'a> = DnsCtxView<'a>;
}

/// Replaces wasmtime-wasi's `wasi:sockets/ip-name-lookup` (added by
/// `wasmtime_wasi::p2::add_to_linker_sync`) with this module's. Call it after that.
pub fn add_to_linker<T: DnsView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = ip_name_lookup::add_to_linker::<T, HasDns>(linker, T::dns);
    linker.allow_shadowing(false);
    added
}

/// Replaces wasmtime-wasi's WASI 0.3 `wasi:sockets/ip-name-lookup` (added by
/// `wasmtime_wasi::p3::add_to_linker`) with this module's, the same lookups as for preview
/// 2. Call it after that.
pub fn add_p3_to_linker<T: DnsView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = ip_name_lookup3::add_to_linker::<T, HasDns>(linker, T::dns);
    linker.allow_shadowing(false);
    added
}

impl<U> ip_name_lookup3::HostWithStore<U> for HasDns {
    async fn resolve_addresses(
        store: &Accessor<U, Self>,
        name: String,
    ) -> wasmtime::Result<Result<Vec<types3::IpAddress>, ip_name_lookup3::ErrorCode>> {
        let lookup = store.with(|mut view| view.get().lookup.0.clone());
        let result = match (lookup, parse_name(&name)) {
            (None, _) => Err(ErrorCode::PermanentResolverFailure),
            (Some(_), Err(e)) => Err(e),
            (Some(_), Ok(Parsed::Ip(ip))) => Ok(vec![ip]),
            (Some(lookup), Ok(Parsed::Domain(domain))) => lookup.resolve(domain).await,
        };
        Ok(result
            .map(|ips| ips.into_iter().map(types3::IpAddress::from).collect())
            .map_err(p3_error))
    }
}

impl ip_name_lookup3::Host for DnsCtxView<'_> {}

/// A lookup error in WASI 0.3's terms.
fn p3_error(e: ErrorCode) -> ip_name_lookup3::ErrorCode {
    use ip_name_lookup3::ErrorCode as E3;
    match e {
        ErrorCode::AccessDenied => E3::AccessDenied,
        ErrorCode::InvalidArgument => E3::InvalidArgument,
        ErrorCode::NameUnresolvable => E3::NameUnresolvable,
        ErrorCode::TemporaryResolverFailure => E3::TemporaryResolverFailure,
        ErrorCode::PermanentResolverFailure => E3::PermanentResolverFailure,
        other => E3::Other(Some(format!("{other:?}"))),
    }
}

// The guest-facing resource type stays wasmtime-wasi's `ResolveAddressStream` (the bindings
// name it), but the table holds this module's `ResolveStream` at that index: handles are
// only an index plus a type tag, checked when the table entry is read.
type WasiStream = ip_name_lookup::ResolveAddressStream;

fn ours(r: &Resource<WasiStream>) -> Resource<ResolveStream> {
    if r.owned() {
        Resource::new_own(r.rep())
    } else {
        Resource::new_borrow(r.rep())
    }
}

// Required by the bindings of `ip-name-lookup` (which use `network`'s types); only
// `convert_error_code` is called, to turn this module's errors into the guest's error-code.
impl network::Host for DnsCtxView<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        error.downcast()
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        let err = self.table.get(&err)?;
        Ok(err.downcast_ref::<std::io::Error>().map(ErrorCode::from))
    }
}

impl network::HostNetwork for DnsCtxView<'_> {
    fn drop(&mut self, network: Resource<Network>) -> wasmtime::Result<()> {
        self.table.delete(network)?;
        Ok(())
    }
}

impl ip_name_lookup::Host for DnsCtxView<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<WasiStream>, SocketError> {
        // The network resource is the capability to call this; it has to be valid.
        self.table.get(&network)?;
        let Some(lookup) = &self.lookup.0 else {
            return Err(ErrorCode::PermanentResolverFailure.into());
        };
        let stream = match parse_name(&name)? {
            Parsed::Ip(ip) => ResolveStream::ready(Ok(vec![ip])),
            Parsed::Domain(domain) => lookup.start(domain),
        };
        // Errors known at once are returned at once, as wasmtime-wasi does.
        if let StreamState::Done(Err(e)) = &stream.0 {
            return Err((*e).into());
        }
        let r = self.table.push(stream)?;
        Ok(Resource::new_own(r.rep()))
    }
}

impl ip_name_lookup::HostResolveAddressStream for DnsCtxView<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<WasiStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        let stream = self.table.get_mut(&ours(&stream))?;
        if !stream.poll_done() {
            return Err(ErrorCode::WouldBlock.into());
        }
        match &mut stream.0 {
            StreamState::Done(Ok(addrs)) => Ok(addrs.next().map(IpAddress::from)),
            StreamState::Done(Err(e)) => Err((*e).into()),
            StreamState::Pending(_) => Err(ErrorCode::WouldBlock.into()),
        }
    }

    fn subscribe(
        &mut self,
        stream: Resource<WasiStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        subscribe(self.table, ours(&stream))
    }

    fn drop(&mut self, stream: Resource<WasiStream>) -> wasmtime::Result<()> {
        // Dropping a running lookup aborts its task.
        self.table.delete(ours(&stream))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
