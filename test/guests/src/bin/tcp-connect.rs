//! `tcp-connect ADDR` (wasip2): connects to ADDR (`IP:PORT`), prints `connected`, and
//! writes the line `hello from wasm` to the peer. On wasip1 it is refused: there are no
//! sockets.

use std::io::Write;

fn main() {
    let addr = warden_guests::arg(1, "ADDR");
    warden_guests::deny_without_sockets();
    let mut stream = match std::net::TcpStream::connect(addr.as_str()) {
        Ok(stream) => stream,
        Err(e) => warden_guests::deny(format!("connect {addr}: {e}")),
    };
    println!("connected");
    if let Err(e) = stream.write_all(b"hello from wasm\n") {
        warden_guests::deny(format!("write to {addr}: {e}"));
    }
    println!("sent");
}
