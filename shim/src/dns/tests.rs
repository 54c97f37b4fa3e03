//! The guest-facing functions, called as the component linker calls them, against a
//! resource table; DNS from a responder on 127.0.0.1 written here (nothing else on the
//! network is used).

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Instant;

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::{RData, Record, RecordType, rdata};
use warden_policy::SocketRule;
use wasmtime_wasi::p2::bindings::sockets::instance_network::Host as _;
use wasmtime_wasi::p2::bindings::sync::io::poll::{Host as _, HostPollable};
use wasmtime_wasi::p2::bindings::sync::sockets::ip_name_lookup::{
    Host as _, HostResolveAddressStream,
};
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use super::config::parse_hosts;
use super::*;

/// Denials seen by the deny hook.
#[derive(Clone, Default)]
struct Denials(Arc<Mutex<Vec<(&'static str, String)>>>);

impl Denials {
    fn hook(&self) -> DenyHook {
        let seen = self.0.clone();
        Arc::new(move |rule, what| seen.lock().unwrap().push((rule, what)))
    }

    fn take(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn grant(dns: bool, connect: &[&str]) -> NetworkGrant {
    NetworkGrant {
        connect: connect
            .iter()
            .map(|r| r.parse::<SocketRule>().unwrap())
            .collect(),
        listen: Vec::new(),
        dns,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A store's worth of state: the WASI context (for `instance-network`), the table, the
/// lookup.
struct Guest {
    wasi: WasiCtx,
    table: ResourceTable,
    lookup: NameLookup,
}

impl Guest {
    fn new(lookup: NameLookup) -> Self {
        Self {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            lookup,
        }
    }

    fn view(&mut self) -> DnsCtxView<'_> {
        DnsCtxView {
            lookup: &self.lookup,
            table: &mut self.table,
        }
    }

    /// What a guest does: `instance-network`, `resolve-addresses`, then
    /// `resolve-next-address` until done, waiting with `subscribe` + `wasi:io/poll.poll`
    /// on `would-block`.
    fn resolve(&mut self, name: &str) -> Result<Vec<IpAddr>, ErrorCode> {
        let network = WasiSocketsCtxView {
            ctx: self.wasi.sockets(),
            table: &mut self.table,
        }
        .instance_network()
        .unwrap();
        let stream = self
            .view()
            .resolve_addresses(Resource::new_borrow(network.rep()), name.to_string());
        let stream = match stream {
            Ok(s) => s,
            Err(e) => return Err(e.downcast().unwrap()),
        };
        let mut addrs = Vec::new();
        let result = loop {
            let borrowed = Resource::new_borrow(stream.rep());
            match self.view().resolve_next_address(borrowed) {
                Ok(Some(IpAddress::Ipv4(a))) => addrs.push(IpAddr::from(a_to_v4(a))),
                Ok(Some(IpAddress::Ipv6(a))) => addrs.push(IpAddr::from(a_to_v6(a))),
                Ok(None) => break Ok(addrs),
                Err(e) => match e.downcast().unwrap() {
                    ErrorCode::WouldBlock => {
                        let borrowed = Resource::new_borrow(stream.rep());
                        let pollable = self.view().subscribe(borrowed).unwrap();
                        let ready = self
                            .table
                            .poll(vec![Resource::new_borrow(pollable.rep())])
                            .unwrap();
                        assert_eq!(ready, [0]);
                        HostPollable::drop(&mut self.table, pollable).unwrap();
                    }
                    e => break Err(e),
                },
            }
        };
        HostResolveAddressStream::drop(&mut self.view(), stream).unwrap();
        self.table.delete(network).unwrap();
        assert!(self.table.is_empty(), "every resource is gone");
        result
    }
}

fn a_to_v4((a, b, c, d): (u8, u8, u8, u8)) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(a, b, c, d)
}

fn a_to_v6(
    (a, b, c, d, e, f, g, h): (u16, u16, u16, u16, u16, u16, u16, u16),
) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::new(a, b, c, d, e, f, g, h)
}

fn hosts_config(text: &str) -> ResolverConfig {
    ResolverConfig {
        hosts: parse_hosts(text.as_bytes()),
        ..Default::default()
    }
}

#[test]
fn without_the_dns_grant_every_lookup_fails_permanently() {
    let config = hosts_config("10.0.0.5 db.internal\n");
    let denials = Denials::default();
    for lookup in [
        NameLookup::disabled(),
        NameLookup::new(config, &grant(false, &["0.0.0.0/0:*"]), denials.hook()),
    ] {
        let mut g = Guest::new(lookup);
        for name in ["db.internal", "10.0.0.5", "::1", "example.com"] {
            assert_eq!(
                g.resolve(name),
                Err(ErrorCode::PermanentResolverFailure),
                "{name}"
            );
        }
    }
    assert!(denials.take().is_empty());
}

#[test]
fn ip_literals_pass_through_and_bad_names_are_invalid() {
    let denials = Denials::default();
    // No connect rule at all: literals are still answered (connecting is checked later).
    let mut g = Guest::new(NameLookup::new(
        ResolverConfig::default(),
        &grant(true, &[]),
        denials.hook(),
    ));
    assert_eq!(g.resolve("192.0.2.1"), Ok(vec![ip("192.0.2.1")]));
    assert_eq!(g.resolve("::1"), Ok(vec![ip("::1")]));
    assert_eq!(g.resolve("[2001:db8::1]"), Ok(vec![ip("2001:db8::1")]));
    for bad in ["", "a b", "exa mple.com", "[::1"] {
        assert_eq!(g.resolve(bad), Err(ErrorCode::InvalidArgument), "{bad:?}");
    }
    assert!(denials.take().is_empty());
}

#[test]
fn static_entries_resolve_filtered_by_the_connect_rules() {
    let config = hosts_config(
        "10.0.0.5 db.internal\n\
         192.0.2.7 db.internal\n\
         fd00::5 db.internal\n\
         192.0.2.9 blocked.internal\n",
    );
    let denials = Denials::default();
    let mut g = Guest::new(NameLookup::new(
        config,
        &grant(true, &["10.0.0.0/8:5432", "[fd00::/8]:443"]),
        denials.hook(),
    ));
    assert_eq!(
        g.resolve("DB.internal."),
        Ok(vec![ip("10.0.0.5"), ip("fd00::5")])
    );
    assert!(
        denials.take().is_empty(),
        "a partly allowed name is no denial"
    );

    assert_eq!(
        g.resolve("blocked.internal"),
        Err(ErrorCode::NameUnresolvable)
    );
    let seen = denials.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "network.connect");
    assert!(seen[0].1.contains("blocked.internal"), "{}", seen[0].1);
    assert!(seen[0].1.contains("192.0.2.9"), "{}", seen[0].1);

    // Not in the entries and no nameserver: unresolvable, and no denial.
    assert_eq!(
        g.resolve("other.internal"),
        Err(ErrorCode::NameUnresolvable)
    );
    assert!(denials.take().is_empty());
}

#[test]
fn an_ipv4_rule_covers_the_mapped_form_and_port_ranges_do_not_matter() {
    let net = grant(true, &["10.0.0.0/8:5432"]);
    assert!(may_connect_to_ip(&net, ip("10.1.2.3")));
    assert!(may_connect_to_ip(&net, ip("::ffff:10.1.2.3")));
    assert!(!may_connect_to_ip(&net, ip("11.1.2.3")));
    assert!(!may_connect_to_ip(&grant(true, &[]), ip("10.1.2.3")));
}

#[test]
fn the_resolver_never_reads_the_hosts_file_of_the_current_root() {
    assert_eq!(
        resolver_opts(&ResolverConfig::default()).use_hosts_file,
        ResolveHosts::Never
    );
    // The names of this process's /etc/hosts (in the container: the image's) do not
    // resolve: they go to the configured nameserver, which knows none of them.
    let root_hosts = std::fs::read("/etc/hosts").unwrap_or_default();
    let names: Vec<String> = parse_hosts(&root_hosts)
        .into_iter()
        .flat_map(|e| e.names)
        .filter(|n| !n.contains("localhost") && !n.starts_with("ip6-"))
        .take(3)
        .collect();
    let server = Responder::start(HashMap::new(), 4 * names.len().max(1));
    let config = ResolverConfig {
        nameservers: vec![server.addr],
        ..Default::default()
    };
    let denials = Denials::default();
    let mut g = Guest::new(NameLookup::new(
        config,
        &grant(true, &["0.0.0.0/0:*", "[::/0]:*"]),
        denials.hook(),
    ));
    for name in &names {
        assert_eq!(g.resolve(name), Err(ErrorCode::NameUnresolvable), "{name}");
    }
    let asked = server.stop();
    for name in &names {
        assert!(
            asked.iter().any(|q| q.starts_with(&format!("{name}."))),
            "{name} went to the nameserver: {asked:?}"
        );
    }
    eprintln!("checked names from /etc/hosts: {names:?}");
}

#[test]
fn names_resolve_through_the_configured_nameserver_with_search_and_filter() {
    let answers = HashMap::from([
        (
            "web.example.".to_string(),
            vec![ip("127.0.0.1"), ip("192.0.2.1"), ip("::1")],
        ),
        ("api.svc.test.".to_string(), vec![ip("127.0.0.2")]),
        ("far.example.".to_string(), vec![ip("192.0.2.2")]),
    ]);
    let server = Responder::start(answers, 32);
    let config = ResolverConfig {
        nameservers: vec![server.addr],
        search: vec!["svc.test".into()],
        ndots: 5,
        hosts: Vec::new(),
    };
    let denials = Denials::default();
    let mut g = Guest::new(NameLookup::new(
        config,
        &grant(true, &["127.0.0.0/8:*", "[::1]:80"]),
        denials.hook(),
    ));
    assert_eq!(
        g.resolve("web.example"),
        Ok(vec![ip("127.0.0.1"), ip("::1")])
    );
    assert_eq!(g.resolve("api"), Ok(vec![ip("127.0.0.2")]));
    assert!(denials.take().is_empty());
    assert_eq!(g.resolve("far.example"), Err(ErrorCode::NameUnresolvable));
    let seen = denials.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, "network.connect");
    assert!(seen[0].1.contains("far.example"), "{}", seen[0].1);
    assert_eq!(g.resolve("nx.example"), Err(ErrorCode::NameUnresolvable));
    assert!(
        denials.take().is_empty(),
        "a name without addresses is no denial"
    );
    let asked = server.stop();
    assert!(asked.iter().any(|q| q == "api.svc.test. A"), "{asked:?}");
}

#[test]
fn a_silent_nameserver_fails_within_the_deadline() {
    // Bound but never answering.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = ResolverConfig {
        nameservers: vec![silent.local_addr().unwrap()],
        ..Default::default()
    };
    let mut lookup = NameLookup::new(
        config,
        &grant(true, &["0.0.0.0/0:*"]),
        Denials::default().hook(),
    );
    if let Some(inner) = lookup.0.as_mut().and_then(Arc::get_mut) {
        inner.deadline = Duration::from_millis(300);
    }
    let mut g = Guest::new(lookup);
    let started = Instant::now();
    assert_eq!(
        g.resolve("hang.example."),
        Err(ErrorCode::TemporaryResolverFailure)
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn add_to_linker_replaces_wasmtime_wasis_name_lookup() {
    struct State {
        wasi: WasiCtx,
        table: ResourceTable,
        lookup: NameLookup,
    }
    impl wasmtime_wasi::WasiView for State {
        fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
            wasmtime_wasi::WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }
    impl DnsView for State {
        fn dns(&mut self) -> DnsCtxView<'_> {
            DnsCtxView {
                lookup: &self.lookup,
                table: &mut self.table,
            }
        }
    }
    let engine = wasmtime::Engine::default();
    let mut linker = wasmtime::component::Linker::<State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    add_to_linker(&mut linker).unwrap();
    // Shadowing is off again afterwards: defining the interface once more fails.
    assert!(ip_name_lookup::add_to_linker::<State, HasDns>(&mut linker, State::dns).is_err());
    let _ = State {
        wasi: WasiCtxBuilder::new().build(),
        table: ResourceTable::new(),
        lookup: NameLookup::disabled(),
    };
}

/// A DNS responder on 127.0.0.1 at a random port: answers A and AAAA queries for the names
/// in its table (NXDOMAIN for others), at most `max` queries, each within 5 s of the last.
/// Records `NAME TYPE` of each query.
struct Responder {
    addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: JoinHandle<Vec<String>>,
}

impl Responder {
    fn start(answers: HashMap<String, Vec<IpAddr>>, max: usize) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut asked = Vec::new();
            let mut buf = [0u8; 4096];
            let mut idle = Instant::now();
            while asked.len() < max
                && idle.elapsed() < Duration::from_secs(5)
                && !stopping.load(std::sync::atomic::Ordering::SeqCst)
            {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                idle = Instant::now();
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
                reply.metadata.message_type = MessageType::Response;
                reply.metadata.recursion_desired = query.metadata.recursion_desired;
                reply.metadata.recursion_available = true;
                let mut known = false;
                for q in &query.queries {
                    let name = q.name().to_ascii().to_ascii_lowercase();
                    asked.push(format!("{name} {}", q.query_type()));
                    reply.add_query(q.clone());
                    if let Some(addrs) = answers.get(&name) {
                        known = true;
                        for a in addrs {
                            let rdata = match (a, q.query_type()) {
                                (IpAddr::V4(v4), RecordType::A) => RData::A(rdata::A(*v4)),
                                (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(rdata::AAAA(*v6)),
                                _ => continue,
                            };
                            reply.add_answer(Record::from_rdata(q.name().clone(), 60, rdata));
                        }
                    }
                }
                if !known {
                    reply.metadata.response_code = ResponseCode::NXDomain;
                }
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer);
                }
            }
            asked
        });
        Self { addr, stop, thread }
    }

    /// Stops the responder; the queries it saw.
    fn stop(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}
