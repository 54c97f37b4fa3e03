//! `p3-tcp-listen ADDR`: binds a TCP socket to ADDR (`IP:PORT`) and listens, with
//! `wasi:sockets@0.3.0`; prints `listening`, then `local-addr=IP:PORT`, and exits 0. Any
//! error is refused: `denied: listen ADDR: ...`, exit 3.
#![no_main]

use warden_p3_guests as guest;
use wasip3::sockets::types::TcpSocket;

struct TcpListen;
wasip3::cli::command::export!(TcpListen);

impl wasip3::exports::cli::run::Guest for TcpListen {
    async fn run() -> Result<(), ()> {
        let addr = guest::arg(1, "IP:PORT").await;
        let Ok(sockaddr) = addr.parse::<std::net::SocketAddr>() else {
            guest::usage("IP:PORT").await
        };
        let result = (|| {
            let socket = TcpSocket::create(guest::family(&sockaddr))?;
            socket.bind(guest::ip_socket_address(&sockaddr))?;
            let connections = socket.listen()?;
            Ok::<_, wasip3::sockets::types::ErrorCode>((socket, connections))
        })();
        match result {
            Ok((socket, _connections)) => {
                guest::println("listening").await;
                match socket.get_local_address() {
                    Ok(local) => {
                        guest::println(format!("local-addr={}", guest::socket_addr(&local))).await
                    }
                    Err(e) => guest::println(format!("local-addr=unknown ({e})")).await,
                }
            }
            Err(e) => guest::deny(format!("listen {addr}: {e}")).await,
        }
        Ok(())
    }
}
