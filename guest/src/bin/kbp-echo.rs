//! A plain UDP echo server: the unmodified POSIX application of the experiments.
//! It uses `std::net::UdpSocket` only and knows nothing about KBP.
//!
//! `kbp-echo [ADDR:PORT]` (default 0.0.0.0:9000)

use std::net::UdpSocket;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0.0.0.0:9000".into());
    let socket = UdpSocket::bind(&addr)?;
    let mut buf = [0u8; 2048];
    loop {
        // Like any long-running server, it outlives transient errors: a send while the
        // link is down fails with ENETUNREACH, and the next packet is served again.
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let _ = socket.send_to(&buf[..n], peer);
    }
}
