//! `p3-resolve NAME`: resolves NAME with `wasi:sockets/ip-name-lookup@0.3.0`'s
//! `resolve-addresses` and prints each address on its own line. Any error is refused:
//! `denied: resolve NAME: ...`, exit 3.
#![no_main]

use warden_p3_guests as guest;
use wasip3::sockets::ip_name_lookup::resolve_addresses;
use wasip3::sockets::types::IpAddress;

struct Resolve;
wasip3::cli::command::export!(Resolve);

impl wasip3::exports::cli::run::Guest for Resolve {
    async fn run() -> Result<(), ()> {
        let name = guest::arg(1, "NAME").await;
        match resolve_addresses(name.clone()).await {
            Ok(addresses) => {
                let mut out = String::new();
                for address in &addresses {
                    out.push_str(&ip_addr(address).to_string());
                    out.push('\n');
                }
                guest::print(out).await;
            }
            Err(e) => guest::deny(format!("resolve {name}: {e}")).await,
        }
        Ok(())
    }
}

/// A `wasi:sockets` IP address as a Rust one (for printing).
fn ip_addr(address: &IpAddress) -> std::net::IpAddr {
    match *address {
        IpAddress::Ipv4((a, b, c, d)) => std::net::Ipv4Addr::new(a, b, c, d).into(),
        IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => {
            std::net::Ipv6Addr::new(a, b, c, d, e, f, g, h).into()
        }
    }
}
