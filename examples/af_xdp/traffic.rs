//! The traffic: a paced UDP sender whose payload carries its send time, the parser that
//! finds that time in a received frame, the socket consumers (blocking, busy poll), and
//! latency percentiles.

use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::clock::monotonic_ns;
use crate::netns::{HOST_ADDR, PORT, QUEUES, RX_ADDR};

/// Payload: the send time (CLOCK_MONOTONIC ns) and a sequence number, little-endian.
pub const PAYLOAD: usize = 16;

/// Sends `rate` packets per second for `seconds` from the host end; returns how many.
pub fn send(rate: u32, seconds: f64) -> io::Result<u64> {
    // As many flows as queues (source ports differ), packets alternating between them.
    // The veth picks a flow's queue by hashing the socket's random `sk_txhash`, so the
    // flows spread over the queues or share one, differently in each trial.
    let flows = (0..QUEUES)
        .map(|_| {
            let sock = UdpSocket::bind(SocketAddrV4::new(HOST_ADDR, 0))?;
            sock.connect(SocketAddrV4::new(RX_ADDR, PORT))?;
            Ok(sock)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let gap = 1e9 / f64::from(rate.max(1));
    let start = monotonic_ns();
    let total = (f64::from(rate) * seconds) as u64;
    let mut buf = [0u8; PAYLOAD];
    for seq in 0..total {
        let due = start + (seq as f64 * gap) as u64;
        loop {
            let now = monotonic_ns();
            if now >= due {
                break;
            }
            if due - now > 200_000 {
                std::thread::sleep(Duration::from_nanos(due - now - 100_000));
            } else {
                std::hint::spin_loop();
            }
        }
        buf[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
        buf[8..].copy_from_slice(&seq.to_le_bytes());
        flows[seq as usize % flows.len()].send(&buf)?;
    }
    Ok(total)
}

/// The send time in an Ethernet frame carrying one of our UDP packets.
pub fn stamp_of_frame(frame: &[u8]) -> Option<u64> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    let udp = ip.get(usize::from(ip[0] & 0xf) * 4..)?;
    if u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]) != PORT {
        return None;
    }
    stamp_of_payload(udp.get(8..)?)
}

/// The send time in a UDP payload.
pub fn stamp_of_payload(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// How the socket consumer waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketMode {
    /// Plain blocking `recv`: the kernel's softirq path wakes it.
    Blocking,
    /// `SO_BUSY_POLL` 50 µs, `SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL_BUDGET` 64: `recv`
    /// busy-polls the NAPI instance the packets came from.
    BusyPoll,
}

fn set_int(sock: &UdpSocket, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: an int option of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A UDP socket on the receiving end (call inside the namespace).
pub fn bind_receiver(mode: SocketMode) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddrV4::new(RX_ADDR, PORT))?;
    set_int(&sock, libc::SO_RCVBUF, 4 << 20)?;
    if mode == SocketMode::BusyPoll {
        set_int(&sock, libc::SO_BUSY_POLL, 50)?;
        set_int(&sock, libc::SO_PREFER_BUSY_POLL, 1)?;
        set_int(&sock, libc::SO_BUSY_POLL_BUDGET, 64)?;
    }
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    Ok(sock)
}

/// Receives on `sock` until `stop`, calling `record` with each packet's send time.
pub fn receive(sock: &UdpSocket, stop: &AtomicBool, mut record: impl FnMut(u64)) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Acquire) {
        if let Some(stamp) = sock
            .recv(&mut buf)
            .ok()
            .and_then(|n| stamp_of_payload(&buf[..n]))
        {
            record(stamp);
        }
    }
}

/// Latency percentiles of a sample, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 99th.
    pub p99: u64,
    /// 99.9th.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (sorted in place); zeros when empty.
    pub fn of(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = (q * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Percentiles {
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            max: samples[samples.len() - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=1000).rev().collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p99, p.p999, p.max), (500, 990, 999, 1000));
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }

    #[test]
    fn finds_the_stamp_in_a_frame() {
        let mut frame = vec![0u8; 14 + 20 + 8 + PAYLOAD];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[14 + 9] = 17;
        frame[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&PORT.to_be_bytes());
        frame[42..50].copy_from_slice(&1234u64.to_le_bytes());
        assert_eq!(stamp_of_frame(&frame), Some(1234));
        frame[14 + 20 + 3] ^= 1;
        assert_eq!(stamp_of_frame(&frame), None, "another port");
        assert_eq!(stamp_of_frame(&frame[..20]), None, "truncated");
    }
}
