//! `p3-tcp-connect ADDR`: connects to ADDR (`IP:PORT`) with `wasi:sockets@0.3.0` and prints
//! `connected`. Any error is refused: `denied: connect ADDR: ...`, exit 3.
#![no_main]

use warden_p3_guests as guest;
use wasip3::sockets::types::TcpSocket;

struct TcpConnect;
wasip3::cli::command::export!(TcpConnect);

impl wasip3::exports::cli::run::Guest for TcpConnect {
    async fn run() -> Result<(), ()> {
        let addr = guest::arg(1, "IP:PORT").await;
        let Ok(sockaddr) = addr.parse::<std::net::SocketAddr>() else {
            guest::usage("IP:PORT").await
        };
        let result = async {
            let socket = TcpSocket::create(guest::family(&sockaddr))?;
            socket.connect(guest::ip_socket_address(&sockaddr)).await?;
            Ok::<_, wasip3::sockets::types::ErrorCode>(socket)
        }
        .await;
        match result {
            Ok(_socket) => guest::println("connected").await,
            Err(e) => guest::deny(format!("connect {addr}: {e}")).await,
        }
        Ok(())
    }
}
