//! TCP against the guest's `kbp-tcp` servers: request/response RTT over one connection,
//! and bulk transfers in each direction with throughput, the longest stall and the
//! sender's retransmissions (`TCP_INFO`); plus an nstat-style reader of
//! `/proc/net/netstat` and `/proc/net/snmp` texts for the counters that explain them.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::RttSummary;

/// How long one read or write may block before the transfer counts as stalled for
/// good (an error): far above any RTO backoff of a few seconds' transfer.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The sender's view of a transfer, from its socket's `TCP_INFO` after the last byte
/// was acknowledged.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct SenderInfo {
    /// Segments retransmitted over the connection's life (`tcpi_total_retrans`).
    pub total_retrans: u64,
    /// Bytes retransmitted (`tcpi_bytes_retrans`).
    pub bytes_retrans: u64,
    /// Segments sent (`tcpi_segs_out`).
    pub segs_out: u64,
    /// Data segments sent (`tcpi_data_segs_out`).
    pub data_segs_out: u64,
    /// Retransmission timeouts (`tcpi_total_rto`).
    pub total_rto: u64,
    /// Recoveries from an RTO (`tcpi_total_rto_recoveries`).
    pub total_rto_recoveries: u64,
    /// Duplicate segments the receiver reported with D-SACK, i.e. retransmissions that
    /// were spurious (`tcpi_dsack_dups`).
    pub dsack_dups: u64,
    /// Reordering events seen (`tcpi_reord_seen`).
    pub reord_seen: u64,
    /// Reordering degree estimate (`tcpi_reordering`).
    pub reordering: u64,
    /// Smoothed RTT, microseconds.
    pub rtt_us: u64,
    /// RTT variance, microseconds.
    pub rttvar_us: u64,
    /// Retransmission timeout, microseconds.
    pub rto_us: u64,
    /// Congestion window, segments.
    pub snd_cwnd: u64,
    /// Slow-start threshold, segments.
    pub snd_ssthresh: u64,
}

impl SenderInfo {
    /// Reads a socket's `TCP_INFO`.
    pub fn of(stream: &TcpStream) -> io::Result<SenderInfo> {
        // SAFETY: tcp_info is plain old data; all-zero is a valid value.
        let mut i: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: a valid socket descriptor; `i` and `len` describe a writable
        // tcp_info (the kernel writes at most `len` bytes and returns the length).
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&raw mut i).cast(),
                &raw mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SenderInfo {
            total_retrans: u64::from(i.tcpi_total_retrans),
            bytes_retrans: i.tcpi_bytes_retrans,
            segs_out: u64::from(i.tcpi_segs_out),
            data_segs_out: u64::from(i.tcpi_data_segs_out),
            total_rto: u64::from(i.tcpi_total_rto),
            total_rto_recoveries: u64::from(i.tcpi_total_rto_recoveries),
            dsack_dups: u64::from(i.tcpi_dsack_dups),
            reord_seen: u64::from(i.tcpi_reord_seen),
            reordering: u64::from(i.tcpi_reordering),
            rtt_us: u64::from(i.tcpi_rtt),
            rttvar_us: u64::from(i.tcpi_rttvar),
            rto_us: u64::from(i.tcpi_rto),
            snd_cwnd: u64::from(i.tcpi_snd_cwnd),
            snd_ssthresh: u64::from(i.tcpi_snd_ssthresh),
        })
    }

    /// Parses the guest source's report line (`key=value ...`, see `kbp-tcp`):
    /// (bytes, seconds, sender info).
    pub fn parse_report(text: &str) -> Option<(u64, f64, SenderInfo)> {
        let kv: BTreeMap<&str, &str> = text
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        let n = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let bytes = kv.get("bytes")?.parse().ok()?;
        let seconds = kv.get("seconds")?.parse().ok()?;
        Some((
            bytes,
            seconds,
            SenderInfo {
                total_retrans: n("total_retrans"),
                bytes_retrans: n("bytes_retrans"),
                segs_out: n("segs_out"),
                data_segs_out: n("data_segs_out"),
                total_rto: n("total_rto"),
                total_rto_recoveries: n("total_rto_recoveries"),
                dsack_dups: n("dsack_dups"),
                reord_seen: n("reord_seen"),
                reordering: n("reordering"),
                rtt_us: n("rtt_us"),
                rttvar_us: n("rttvar_us"),
                rto_us: n("rto_us"),
                snd_cwnd: n("snd_cwnd"),
                snd_ssthresh: n("snd_ssthresh"),
            },
        ))
    }
}

/// One bulk transfer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BulkResult {
    /// Payload bytes delivered.
    pub bytes: u64,
    /// From the first byte to the receiver having read the last.
    pub seconds: f64,
    /// `bytes` over `seconds`, Mbit/s.
    pub mbit_s: f64,
    /// The longest time one read or write of the host's side blocked, milliseconds.
    pub longest_stall_ms: f64,
    /// The sender's `TCP_INFO` (the host's socket, or the guest's report).
    pub sender: Option<SenderInfo>,
}

fn connect(target: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&target, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Host -> guest: writes to a sink for `seconds`, shuts down its side and waits for the
/// sink to close (it has read everything), then reads its own `TCP_INFO`.
pub fn bulk_to(target: SocketAddr, seconds: f64) -> io::Result<BulkResult> {
    let mut stream = connect(target)?;
    let buf = vec![0xa5u8; 1 << 16];
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let (mut bytes, mut stall) = (0u64, Duration::ZERO);
    while Instant::now() < until {
        let t = Instant::now();
        stream.write_all(&buf)?;
        stall = stall.max(t.elapsed());
        bytes += buf.len() as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    let t = Instant::now();
    let mut rest = [0u8; 64];
    while stream.read(&mut rest)? > 0 {}
    stall = stall.max(t.elapsed());
    let elapsed = start.elapsed().as_secs_f64();
    let sender = SenderInfo::of(&stream)?;
    Ok(BulkResult {
        bytes,
        seconds: elapsed,
        mbit_s: bytes as f64 * 8.0 / elapsed.max(1e-9) / 1e6,
        longest_stall_ms: stall.as_secs_f64() * 1e3,
        sender: Some(sender),
    })
}

/// Guest -> host: asks a source for `seconds` of data and reads to its end. The
/// sender's counters are the guest's (its report file), not filled in here.
pub fn bulk_from(target: SocketAddr, seconds: f64) -> io::Result<BulkResult> {
    let mut stream = connect(target)?;
    // One write: a request split over two segments can reach a server that has read
    // its line's first part and closed, and the rest then resets the connection.
    stream.write_all(format!("{seconds}\n").as_bytes())?;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let (mut bytes, mut stall) = (0u64, Duration::ZERO);
    loop {
        let t = Instant::now();
        let n = stream.read(&mut buf)?;
        stall = stall.max(t.elapsed());
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(stream);
    Ok(BulkResult {
        bytes,
        seconds: elapsed,
        mbit_s: bytes as f64 * 8.0 / elapsed.max(1e-9) / 1e6,
        longest_stall_ms: stall.as_secs_f64() * 1e3,
        sender: None,
    })
}

/// Request/response over one connection.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RrResult {
    /// Requests that count (after the warm-up).
    pub requests: u64,
    /// Bytes per request (and per response).
    pub request_bytes: usize,
    /// RTT percentiles of the counted requests, microseconds.
    pub rtt_us: RttSummary,
    /// The host socket's `TCP_INFO` at the end (retransmissions of requests).
    pub sender: Option<SenderInfo>,
}

/// Sends `warmup + requests` requests of `bytes` each over one `TCP_NODELAY`
/// connection to an echo, each after the previous response was read whole.
pub fn request_response(
    target: SocketAddr,
    requests: u64,
    warmup: u64,
    bytes: usize,
) -> io::Result<RrResult> {
    let mut stream = connect(target)?;
    stream.set_nodelay(true)?;
    let request = vec![0x4bu8; bytes.max(1)];
    let mut response = vec![0u8; request.len()];
    let mut rtts = Vec::with_capacity(requests as usize);
    for i in 0..warmup + requests {
        let t = Instant::now();
        stream.write_all(&request)?;
        stream.read_exact(&mut response)?;
        if i >= warmup {
            rtts.push(t.elapsed().as_nanos() as u64);
        }
    }
    let sender = SenderInfo::of(&stream)?;
    Ok(RrResult {
        requests,
        request_bytes: request.len(),
        rtt_us: RttSummary::from_ns(&mut rtts),
        sender: Some(sender),
    })
}

/// Counters of a `/proc/net/netstat` or `/proc/net/snmp` text, by `Group.Name`
/// (`TcpExt.TCPOFOQueue`, `Tcp.RetransSegs`): each group is a line of names followed
/// by a line of values. Negative values (`Tcp.MaxConn`) are left out.
pub fn parse_nstat(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((group, names)), Some((group2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if group != group2 {
            continue;
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = value.parse::<u64>() {
                out.insert(format!("{group}.{name}"), v);
            }
        }
    }
    out
}

/// The counters that grew from `before` to `after` (nstat's view), growth only.
pub fn nstat_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, &a)| {
            let d = a.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn nstat_pairs_lines_by_group() {
        let text =
            "TcpExt: SyncookiesSent TCPOFOQueue\nTcpExt: 0 17\nIpExt: InNoRoutes\nIpExt: 3\n";
        let m = parse_nstat(text);
        assert_eq!(m["TcpExt.TCPOFOQueue"], 17);
        assert_eq!(m["IpExt.InNoRoutes"], 3);
        let snmp = "Tcp: RtoAlgorithm MaxConn RetransSegs\nTcp: 1 -1 42\n";
        let m2 = parse_nstat(snmp);
        assert_eq!(m2["Tcp.RetransSegs"], 42);
        assert!(!m2.contains_key("Tcp.MaxConn"));
        let mut later = m.clone();
        later.insert("TcpExt.TCPOFOQueue".into(), 20);
        let d = nstat_delta(&m, &later);
        assert_eq!(d.len(), 1);
        assert_eq!(d["TcpExt.TCPOFOQueue"], 3);
    }

    #[test]
    fn the_guest_report_parses() {
        let (bytes, seconds, s) = SenderInfo::parse_report(
            "bytes=100 seconds=1.5 total_retrans=7 dsack_dups=2 total_rto=1 rtt_us=300\n",
        )
        .unwrap();
        assert_eq!((bytes, seconds), (100, 1.5));
        assert_eq!((s.total_retrans, s.dsack_dups, s.total_rto), (7, 2, 1));
        assert_eq!(s.rtt_us, 300);
        assert!(SenderInfo::parse_report("garbage").is_none());
    }

    #[test]
    fn local_rr_and_bulk_work() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_addr = echo.local_addr().unwrap();
        thread::spawn(move || {
            for mut s in echo.incoming().flatten() {
                thread::spawn(move || {
                    let mut b = [0u8; 4096];
                    while let Ok(n @ 1..) = s.read(&mut b) {
                        if s.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let r = request_response(echo_addr, 200, 10, 64).unwrap();
        assert_eq!(r.requests, 200);
        assert!(r.rtt_us.min > 0.0 && r.rtt_us.max >= r.rtt_us.p50);

        let sink = TcpListener::bind("127.0.0.1:0").unwrap();
        let sink_addr = sink.local_addr().unwrap();
        thread::spawn(move || {
            for mut s in sink.incoming().flatten() {
                let mut b = vec![0u8; 1 << 16];
                while let Ok(1..) = s.read(&mut b) {}
            }
        });
        let b = bulk_to(sink_addr, 0.2).unwrap();
        assert!(b.bytes > 0 && b.mbit_s > 0.0);
        assert!(b.sender.unwrap().data_segs_out > 0);

        let source = TcpListener::bind("127.0.0.1:0").unwrap();
        let source_addr = source.local_addr().unwrap();
        thread::spawn(move || {
            // As kbp-tcp's source: read the whole line, write, shut the sending side
            // down and wait for the peer to close (closing with unread bytes would
            // reset the connection under the reader).
            for mut s in source.incoming().flatten() {
                let mut line = String::new();
                let _ = BufReader::new(&s).read_line(&mut line);
                for _ in 0..100 {
                    s.write_all(&[1u8; 4096]).unwrap();
                }
                let _ = s.shutdown(Shutdown::Write);
                while let Ok(1..) = s.read(&mut [0u8; 64]) {}
            }
        });
        let f = bulk_from(source_addr, 0.2).unwrap();
        assert_eq!(f.bytes, 409_600);
    }
}
