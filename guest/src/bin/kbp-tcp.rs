//! Plain TCP servers for the guest test: the unmodified application of the TCP
//! scenarios. `std::net` sockets only (and `TCP_INFO`, read after a transfer); each
//! connection is served by its own thread.
//!
//! `kbp-tcp [ADDR]` (default 0.0.0.0) listens on three ports:
//!
//! | port | service |
//! |---|---|
//! | 9001 | echo: every byte read is written back (request/response over one connection) |
//! | 9002 | sink: reads and discards until the peer shuts down its side, then closes |
//! | 9003 | source: reads one line `SECONDS`, writes for that long, shuts down its side, waits for the peer to close, then writes its `TCP_INFO` to [`SOURCE_REPORT`] |
//!
//! The source's report is one line of `key=value` pairs (`bytes`, `seconds`,
//! `total_retrans`, `lost`, `rto_us`, `rtt_us`, `rttvar_us`, `snd_cwnd`, `snd_ssthresh`,
//! `reordering`, `segs_out`, `data_segs_out`, `bytes_retrans`, `dsack_dups`,
//! `reord_seen`, `total_rto`, `total_rto_recoveries`), written to a temporary file and renamed,
//! so a reader sees it whole or not at all.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

/// Where the source writes its sender counters after a transfer.
const SOURCE_REPORT: &str = "/tmp/kbp-tcp-source.txt";

fn serve(addr: &str, port: u16, handler: fn(TcpStream) -> std::io::Result<()>) {
    let listener = match TcpListener::bind((addr, port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kbp-tcp: bind {addr}:{port}: {e}");
            std::process::exit(1);
        }
    };
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let _ = handler(stream);
            });
        }
    });
}

fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 65536];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

fn sink(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while stream.read(&mut buf)? > 0 {}
    Ok(())
}

/// The socket's `TCP_INFO`.
fn tcp_info(stream: &TcpStream) -> std::io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: a valid socket descriptor; info and len describe a writable tcp_info.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    if rc == 0 {
        Ok(info)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn source(mut stream: TcpStream) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let seconds: f64 = line.trim().parse().unwrap_or(1.0);
    let buf = vec![0x5au8; 1 << 16];
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let mut bytes = 0u64;
    while Instant::now() < until {
        stream.write_all(&buf)?;
        bytes += buf.len() as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    // The peer closes once it has read everything: every byte is acknowledged by then.
    let mut rest = [0u8; 64];
    while stream.read(&mut rest).unwrap_or(0) > 0 {}
    let elapsed = start.elapsed().as_secs_f64();
    let i = tcp_info(&stream)?;
    let report = format!(
        "bytes={bytes} seconds={elapsed:.3} total_retrans={} lost={} rto_us={} rtt_us={} rttvar_us={} snd_cwnd={} snd_ssthresh={} reordering={} segs_out={} data_segs_out={} bytes_retrans={} dsack_dups={} reord_seen={} total_rto={} total_rto_recoveries={}\n",
        i.tcpi_total_retrans,
        i.tcpi_lost,
        i.tcpi_rto,
        i.tcpi_rtt,
        i.tcpi_rttvar,
        i.tcpi_snd_cwnd,
        i.tcpi_snd_ssthresh,
        i.tcpi_reordering,
        i.tcpi_segs_out,
        i.tcpi_data_segs_out,
        i.tcpi_bytes_retrans,
        i.tcpi_dsack_dups,
        i.tcpi_reord_seen,
        i.tcpi_total_rto,
        i.tcpi_total_rto_recoveries,
    );
    let tmp = format!("{SOURCE_REPORT}.tmp");
    std::fs::write(&tmp, report)?;
    std::fs::rename(tmp, SOURCE_REPORT)
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "0.0.0.0".into());
    serve(&addr, 9001, echo);
    serve(&addr, 9002, sink);
    serve(&addr, 9003, source);
    loop {
        thread::park();
    }
}
