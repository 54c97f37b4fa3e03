//! `resolve NAME [PORT]` (wasip2): looks NAME up, prints each address as `addr=IP` and then
//! `addr-count=N`, and connects to the first address at PORT (default 80), printing
//! `connected=IP:PORT`. A failed lookup or connect prints `denied: ...` (the lookup's error
//! names what the resolver said, e.g. that the name does not resolve). On wasip1 it is
//! refused: there are no sockets.
//!
//! The shim resolves without the image's `/etc/nsswitch.conf`, NSS modules, `/etc/hosts` or
//! `/etc/resolv.conf`; an image that carries hostile ones is how that is tested.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

const SYNOPSIS: &str = "NAME [PORT]";

fn main() {
    let name = warden_guests::arg(1, SYNOPSIS);
    let port: u16 = match std::env::args().nth(2) {
        Some(p) => p.parse().unwrap_or_else(|_| warden_guests::usage(SYNOPSIS)),
        None => 80,
    };
    warden_guests::deny_without_sockets();
    let addrs: Vec<SocketAddr> = match (name.as_str(), port).to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => warden_guests::deny(format!("lookup {name}: {e}")),
    };
    for addr in &addrs {
        println!("addr={}", addr.ip());
    }
    println!("addr-count={}", addrs.len());
    let Some(first) = addrs.first() else {
        warden_guests::deny(format!("lookup {name}: no addresses"));
    };
    match TcpStream::connect_timeout(first, Duration::from_secs(5)) {
        Ok(_) => println!("connected={first}"),
        Err(e) => warden_guests::deny(format!("connect {first}: {e}")),
    }
}
