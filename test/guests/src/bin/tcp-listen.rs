//! `tcp-listen ADDR` (wasip2): binds a TCP listener on ADDR (`IP:PORT`), prints
//! `listening`, then `local-addr=IP:PORT`, and exits 0. On wasip1 it is refused: there are
//! no sockets.

fn main() {
    let addr = warden_guests::arg(1, "ADDR");
    warden_guests::deny_without_sockets();
    let listener = match std::net::TcpListener::bind(addr.as_str()) {
        Ok(listener) => listener,
        Err(e) => warden_guests::deny(format!("listen {addr}: {e}")),
    };
    println!("listening");
    match listener.local_addr() {
        Ok(local) => println!("local-addr={local}"),
        Err(e) => println!("local-addr=unknown ({e})"),
    }
}
