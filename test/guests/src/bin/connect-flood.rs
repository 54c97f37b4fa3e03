//! `connect-flood ADDR COUNT [DELAY_SECONDS]` (wasip2): prints `ready`, sleeps DELAY_SECONDS
//! (default 0), then tries to connect to ADDR (`IP:PORT`) COUNT times and prints
//! `refused=N connected=M`; exits 0. Under a profile that does not grant ADDR, every try is
//! refused: a flood of refusals for the audit log's throttle. On wasip1 it is refused: there
//! are no sockets.

fn main() {
    let synopsis = "ADDR COUNT [DELAY_SECONDS]";
    let addr = warden_guests::arg(1, synopsis);
    let count: u32 = warden_guests::parsed_arg(2, synopsis);
    let delay: u64 = std::env::args()
        .nth(3)
        .map(|d| d.parse().unwrap_or_else(|_| warden_guests::usage(synopsis)))
        .unwrap_or(0);
    warden_guests::deny_without_sockets();
    println!("ready");
    std::thread::sleep(std::time::Duration::from_secs(delay));
    let (mut refused, mut connected) = (0, 0);
    for _ in 0..count {
        match std::net::TcpStream::connect(addr.as_str()) {
            Ok(_) => connected += 1,
            Err(_) => refused += 1,
        }
    }
    println!("refused={refused} connected={connected}");
}
