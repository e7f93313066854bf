//! UDP echo load: send timestamped packets at a fixed rate, match the echoes, report
//! loss and round-trip-time percentiles; search the highest zero-loss rate.
//!
//! Frame sizes are Ethernet frames including FCS: a frame of `F` bytes carries a UDP
//! payload of `F - 46` bytes (14 Ethernet + 20 IPv4 + 8 UDP + 4 FCS).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

const MAGIC: u16 = 0x4b42; // "KB"
/// Magic, sequence number, send time: 18 bytes, the payload of a 64-byte frame.
const HEADER: usize = 2 + 8 + 8;
/// Ethernet + IPv4 + UDP headers and FCS around a UDP payload.
pub const FRAME_OVERHEAD: usize = 46;

/// UDP payload bytes for an Ethernet frame of `frame_bytes` (64..=1518).
pub fn payload_len(frame_bytes: usize) -> usize {
    frame_bytes.saturating_sub(FRAME_OVERHEAD).max(HEADER)
}

/// One trial.
#[derive(Clone, Debug)]
pub struct TrialSpec {
    /// The echo server.
    pub target: SocketAddr,
    /// Packets per second.
    pub rate_pps: u64,
    /// Ethernet frame size.
    pub frame_bytes: usize,
    /// Packets that count.
    pub packets: u64,
    /// Packets sent first and not counted (TCG translates new code paths slowly).
    pub warmup_packets: u64,
    /// How long to wait for late echoes after the last packet.
    pub grace: Duration,
}

/// RTT percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct RttSummary {
    /// Minimum.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// 99.99th percentile.
    pub p99_99: f64,
    /// Maximum.
    pub max: f64,
}

impl RttSummary {
    /// Percentiles of `rtts_ns` (sorted in place), by the nearest-rank method.
    pub fn from_ns(rtts_ns: &mut [u64]) -> RttSummary {
        if rtts_ns.is_empty() {
            return RttSummary::default();
        }
        rtts_ns.sort_unstable();
        let pick = |p: f64| {
            let rank = ((p / 100.0) * rtts_ns.len() as f64).ceil() as usize;
            rtts_ns[rank.clamp(1, rtts_ns.len()) - 1] as f64 / 1_000.0
        };
        RttSummary {
            min: rtts_ns[0] as f64 / 1_000.0,
            p50: pick(50.0),
            p99: pick(99.0),
            p99_9: pick(99.9),
            p99_99: pick(99.99),
            max: rtts_ns[rtts_ns.len() - 1] as f64 / 1_000.0,
        }
    }
}

/// What a trial measured (warm-up excluded).
#[derive(Clone, Debug, Serialize)]
pub struct TrialResult {
    /// Counted packets sent.
    pub sent: u64,
    /// Counted packets echoed back.
    pub received: u64,
    /// `sent - received`.
    pub lost: u64,
    /// RTT percentiles.
    pub rtt_us: RttSummary,
    /// The rate actually achieved by the sender, packets/s.
    pub achieved_pps: f64,
}

/// Runs one trial against a UDP echo server.
pub fn run_trial(spec: &TrialSpec) -> io::Result<TrialResult> {
    let socket = UdpSocket::bind(("0.0.0.0", 0))?;
    socket.connect(spec.target)?;
    socket.set_read_timeout(Some(Duration::from_millis(50)))?;
    let receiver_socket = socket.try_clone()?;
    let total = spec.warmup_packets + spec.packets;
    let epoch = Instant::now();
    let done = Arc::new(AtomicBool::new(false));

    let receiver = {
        let done = done.clone();
        thread::spawn(move || {
            let mut rtts = vec![u64::MAX; total as usize];
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Acquire) {
                let Ok(n) = receiver_socket.recv(&mut buf) else { continue };
                let now = epoch.elapsed().as_nanos() as u64;
                if n < HEADER || u16::from_le_bytes([buf[0], buf[1]]) != MAGIC {
                    continue;
                }
                let seq = u64::from_le_bytes(buf[2..10].try_into().expect("8 bytes"));
                let sent = u64::from_le_bytes(buf[10..18].try_into().expect("8 bytes"));
                if let Some(slot) = rtts.get_mut(seq as usize) {
                    if *slot == u64::MAX {
                        *slot = now.saturating_sub(sent);
                    }
                }
            }
            rtts
        })
    };

    let mut payload = vec![0u8; payload_len(spec.frame_bytes)];
    payload[0..2].copy_from_slice(&MAGIC.to_le_bytes());
    let interval = Duration::from_secs_f64(1.0 / spec.rate_pps.max(1) as f64);
    let start = Instant::now();
    let mut measured_start = start;
    for seq in 0..total {
        if seq == spec.warmup_packets {
            measured_start = Instant::now();
        }
        let due = start + interval.mul_f64(seq as f64);
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            // Sleep until just before the due time, then spin: keeps the pacing exact
            // without holding a host CPU that the emulated guest needs.
            let left = due - now;
            if left > Duration::from_micros(120) {
                thread::sleep(left - Duration::from_micros(80));
            } else {
                std::hint::spin_loop();
            }
        }
        payload[2..10].copy_from_slice(&seq.to_le_bytes());
        payload[10..18].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes());
        // A full socket buffer is a send-side drop: it counts as lost.
        let _ = socket.send(&payload);
    }
    let send_time = measured_start.elapsed();
    thread::sleep(spec.grace);
    done.store(true, Ordering::Release);
    let rtts = receiver.join().map_err(|_| io::Error::other("receiver thread panicked"))?;
    let mut counted: Vec<u64> = rtts[spec.warmup_packets as usize..].iter().copied().filter(|&r| r != u64::MAX).collect();
    let received = counted.len() as u64;
    Ok(TrialResult {
        sent: spec.packets,
        received,
        lost: spec.packets - received,
        rtt_us: RttSummary::from_ns(&mut counted),
        achieved_pps: spec.packets as f64 / send_time.as_secs_f64().max(1e-9),
    })
}

/// The outcome of a zero-loss search.
#[derive(Clone, Debug, Serialize)]
pub struct SearchResult {
    /// Highest rate (packets/s) with zero loss found.
    pub zero_loss_pps: u64,
    /// Every trial: (rate, lost).
    pub trials: Vec<(u64, u64)>,
}

/// RFC 2544-style binary search for the highest rate in `[low, high]` with zero loss
/// over a trial of `seconds`, `iterations` halvings.
pub fn zero_loss_search(target: SocketAddr, frame_bytes: usize, low: u64, high: u64, seconds: f64, iterations: u32) -> io::Result<SearchResult> {
    let (mut lo, mut hi) = (low, high);
    let mut best = 0;
    let mut trials = Vec::new();
    for _ in 0..iterations {
        let rate = (lo + hi) / 2;
        let spec = TrialSpec {
            target,
            rate_pps: rate,
            frame_bytes,
            packets: ((rate as f64) * seconds) as u64,
            warmup_packets: rate / 10,
            grace: Duration::from_millis(500),
        };
        let result = run_trial(&spec)?;
        trials.push((rate, result.lost));
        if result.lost == 0 {
            best = best.max(rate);
            lo = rate;
        } else {
            hi = rate;
        }
        if hi <= lo + 1 {
            break;
        }
    }
    Ok(SearchResult { zero_loss_pps: best, trials })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_map_to_payloads() {
        assert_eq!(payload_len(64), 18);
        assert_eq!(payload_len(512), 466);
        assert_eq!(payload_len(1518), 1472);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut v: Vec<u64> = (1..=10_000).map(|i| i * 1_000).collect();
        let s = RttSummary::from_ns(&mut v);
        assert_eq!((s.min, s.p50, s.max), (1.0, 5_000.0, 10_000.0));
        assert_eq!(s.p99, 9_900.0);
    }

    #[test]
    fn a_local_echo_answers_every_packet() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, peer)) = server.recv_from(&mut buf) {
                let _ = server.send_to(&buf[..n], peer);
            }
        });
        let spec = TrialSpec { target, rate_pps: 5_000, frame_bytes: 64, packets: 2_000, warmup_packets: 100, grace: Duration::from_millis(200) };
        let r = run_trial(&spec).unwrap();
        assert_eq!((r.sent, r.received, r.lost), (2_000, 2_000, 0));
        assert!(r.rtt_us.min > 0.0 && r.rtt_us.max >= r.rtt_us.p50);
    }
}
