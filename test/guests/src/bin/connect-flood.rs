//! `connect-flood ADDR COUNT` (wasip2): tries to connect to ADDR (`IP:PORT`) COUNT times,
//! prints `refused=N connected=M`, and exits 0. Under a profile that does not grant ADDR,
//! every try is refused: a flood of refusals for the audit log's throttle. On wasip1 it is
//! refused: there are no sockets.

fn main() {
    let addr = warden_guests::arg(1, "ADDR COUNT");
    let count: u32 = warden_guests::parsed_arg(2, "ADDR COUNT");
    warden_guests::deny_without_sockets();
    let (mut refused, mut connected) = (0, 0);
    for _ in 0..count {
        match std::net::TcpStream::connect(addr.as_str()) {
            Ok(_) => connected += 1,
            Err(_) => refused += 1,
        }
    }
    println!("refused={refused} connected={connected}");
}
