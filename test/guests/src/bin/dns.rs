//! `dns NAME` (wasip2): looks NAME up and prints each address as `addr=IP`. On wasip1 it
//! is refused: there are no sockets.

use std::net::ToSocketAddrs;

fn main() {
    let name = warden_guests::arg(1, "NAME");
    warden_guests::deny_without_sockets();
    match (name.as_str(), 0).to_socket_addrs() {
        Ok(addrs) => {
            let mut count = 0;
            for addr in addrs {
                println!("addr={}", addr.ip());
                count += 1;
            }
            println!("addr-count={count}");
        }
        Err(e) => warden_guests::deny(format!("lookup {name}: {e}")),
    }
}
