//! `p3-udp-send ADDR TEXT`: creates a UDP socket with `wasi:sockets@0.3.0`, sends TEXT as one
//! datagram to ADDR (`IP:PORT`) and prints `sent N bytes`. Any error is refused:
//! `denied: send to ADDR: ...`, exit 3.
#![no_main]

use warden_p3_guests as guest;
use wasip3::sockets::types::UdpSocket;

const SYNOPSIS: &str = "IP:PORT TEXT";

struct UdpSend;
wasip3::cli::command::export!(UdpSend);

impl wasip3::exports::cli::run::Guest for UdpSend {
    async fn run() -> Result<(), ()> {
        let addr = guest::arg(1, SYNOPSIS).await;
        let text = guest::arg(2, SYNOPSIS).await;
        let Ok(sockaddr) = addr.parse::<std::net::SocketAddr>() else {
            guest::usage(SYNOPSIS).await
        };
        let data = text.into_bytes();
        let len = data.len();
        let result = async {
            let socket = UdpSocket::create(guest::family(&sockaddr))?;
            socket
                .send(data, Some(guest::ip_socket_address(&sockaddr)))
                .await
        }
        .await;
        match result {
            Ok(()) => guest::println(format!("sent {len} bytes")).await,
            Err(e) => guest::deny(format!("send to {addr}: {e}")).await,
        }
        Ok(())
    }
}
