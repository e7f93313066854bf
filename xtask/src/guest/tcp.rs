//! TCP against the guest's unmodified `kbp-tcp` servers: request/response over one
//! connection, then a bulk transfer each way, each with the counters that explain its
//! retransmissions: the growth of the guest's and the host namespace's TCP counters
//! (`/proc/net/netstat` `TcpExt`, `/proc/net/snmp` `Tcp`, nstat's view) and of the
//! link's drops (`Dev.eth0_rx_dropped` in the guest, `Dev.tap0_tx_dropped` /
//! `Dev.tap0_rx_dropped` on the host), and the sender's `TCP_INFO`: the host socket's
//! for host -> guest, the guest source's report for guest -> host.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use kbp_traffic::tcp::{BulkResult, RrResult, SenderInfo, bulk_from, bulk_to, parse_nstat};
use kbp_traffic::tcp::{nstat_delta, request_response};
use serde::Serialize;

use crate::base::Result;
use crate::base::progress::output;
use crate::build::initramfs::{
    GUEST_ADDR, TCP_ECHO_PORT, TCP_SINK_PORT, TCP_SOURCE_PORT, TCP_SOURCE_REPORT,
};
use crate::guest::stats_file::StatsFile;
use crate::guest::vm::Guest;

/// What one TCP measurement does.
#[derive(Clone, Copy, Debug)]
pub struct TcpOptions {
    /// Length of each bulk transfer.
    pub bulk_seconds: f64,
    /// Requests that count in the request/response test.
    pub rr_requests: u64,
    /// Requests sent first and not counted.
    pub rr_warmup: u64,
    /// Bytes per request and per response.
    pub rr_bytes: usize,
}

/// The counters shown on a report line: the sender's recovery (RTO, tail loss probe,
/// fast retransmit, D-SACKs received = spurious retransmissions) and the receiver's
/// reasons (out of order, D-SACKs sent, delayed ACKs, drops in the socket's queues).
pub const SHOWN_COUNTERS: &[&str] = &[
    "Tcp.RetransSegs",
    "TcpExt.TCPTimeouts",
    "TcpExt.TCPLossProbes",
    "TcpExt.TCPLossProbeRecovery",
    "TcpExt.TCPFastRetrans",
    "TcpExt.TCPSlowStartRetrans",
    "TcpExt.TCPLostRetransmit",
    "TcpExt.TCPDSACKRecv",
    "TcpExt.TCPDSACKRecvSegs",
    "TcpExt.TCPDSACKUndo",
    "TcpExt.TCPSpuriousRTOs",
    "TcpExt.TCPSACKReorder",
    "TcpExt.TCPOFOQueue",
    "TcpExt.TCPOFODrop",
    "TcpExt.TCPDSACKOldSent",
    "TcpExt.TCPDSACKOfoSent",
    "TcpExt.DelayedACKs",
    "TcpExt.TCPBacklogDrop",
    "TcpExt.PruneCalled",
    "TcpExt.RcvPruned",
    "TcpExt.TCPRcvQDrop",
    "TcpExt.TCPZeroWindowDrop",
    "Dev.eth0_rx_dropped",
    "Dev.eth0_rx_missed_errors",
    "Dev.eth0_rx_fifo_errors",
    "Dev.eth0_rx_over_errors",
    "Dev.tap0_tx_dropped",
    "Dev.tap0_rx_dropped",
];

/// One bulk transfer with its counters.
#[derive(Clone, Debug, Serialize)]
pub struct Direction {
    /// Throughput, stall and the sender's `TCP_INFO`.
    pub bulk: BulkResult,
    /// Growth of the guest's counters during the transfer (only those that grew).
    pub guest_counters: BTreeMap<String, u64>,
    /// Growth of the host test namespace's counters during the transfer.
    pub host_counters: BTreeMap<String, u64>,
    /// Host -> guest only: frames lost on the emulated link, sent into it but not
    /// received (host tap0 TX, i.e. frames QEMU read, minus the guest's eth0 RX), the
    /// agent's few frames included. An emulated NIC may drop without counting: QEMU's
    /// igb discards a frame when the RSS queue it picked has no descriptor, while its
    /// `can_receive` looks at any queue, and increments no drop register
    /// (hw/net/igb_core.c, `igb_receive_internal`). Not for guest -> host: the guest's
    /// driver counts a TSO frame's segments, the tap may carry it as one frame (igb:
    /// eth0 TX exceeded tap0 RX by 500,492 in a transfer with no retransmission).
    pub link_lost: Option<i64>,
}

impl Direction {
    /// The sender's retransmitted segments (`tcpi_total_retrans`), if it reported.
    pub fn retrans(&self) -> Option<u64> {
        self.bulk.sender.map(|s| s.total_retrans)
    }
}

/// One TCP measurement of a mode.
#[derive(Clone, Debug, Serialize)]
pub struct TcpRun {
    /// Request/response over one connection.
    pub rr: RrResult,
    /// Host sends, the guest's sink receives.
    pub to_guest: Direction,
    /// The guest's source sends, the host receives.
    pub from_guest: Direction,
}

/// eth0's receive drop counters read with the TCP counters: `rx_dropped` (the stack's
/// and virtio-net's), and the NIC's own: frames it had no descriptor for
/// (`rx_missed_errors`, the Intel models' MPC) or no FIFO room for.
/// Also its packet counts, for [`Direction::link_lost`].
const ETH0_RX_DROPS: [&str; 6] = [
    "rx_dropped",
    "rx_missed_errors",
    "rx_fifo_errors",
    "rx_over_errors",
    "rx_packets",
    "tx_packets",
];

/// The guest's TCP counters, eth0's [`ETH0_RX_DROPS`] and, with kbp.ko loaded, the
/// packets of each instance it serves (`Kbp.napi_<cpu>_<index>`: which queues a flow
/// took).
fn guest_counters(guest: &Guest) -> Result<BTreeMap<String, u64>> {
    let names: Vec<String> = ETH0_RX_DROPS.iter().map(|c| format!("eth0_{c}")).collect();
    let values: Vec<String> = ETH0_RX_DROPS
        .iter()
        .map(|c| format!("$(cat /sys/class/net/eth0/statistics/{c})"))
        .collect();
    let text = guest.check(&format!(
        "cat /proc/net/netstat /proc/net/snmp; echo \"Dev: {}\"; echo \"Dev: {}\"",
        names.join(" "),
        values.join(" ")
    ))?;
    let mut m = parse_nstat(&text);
    if let Some(stats) = StatsFile::read(guest)? {
        for ((cpu, index), packets) in stats.napi_packets() {
            m.insert(format!("Kbp.napi_{cpu}_{index}"), packets);
        }
    }
    Ok(m)
}

/// The host test namespace's TCP counters and tap0's drops (this process is inside the
/// namespace: /proc/thread-self/net is that namespace's).
fn host_counters() -> Result<BTreeMap<String, u64>> {
    let mut text = String::new();
    for f in ["netstat", "snmp"] {
        text += &std::fs::read_to_string(format!("/proc/thread-self/net/{f}"))
            .map_err(|e| format!("/proc/thread-self/net/{f}: {e}"))?;
    }
    let mut m = parse_nstat(&text);
    let link = output(Command::new("ip").args(["-j", "-s", "link", "show", "tap0"]))?;
    let v = serde_json::from_str::<serde_json::Value>(&link).unwrap_or_default();
    for dir in ["tx", "rx"] {
        for counter in ["dropped", "packets"] {
            if let Some(d) = v[0]["stats64"][dir][counter].as_u64() {
                m.insert(format!("Dev.tap0_{dir}_{counter}"), d);
            }
        }
    }
    Ok(m)
}

fn addr(port: u16) -> SocketAddr {
    format!("{GUEST_ADDR}:{port}").parse().expect("address")
}

/// Runs `transfer` (towards the guest if `to_guest`) between two readings of both
/// sides' counters.
fn with_counters(
    guest: &Guest,
    to_guest: bool,
    transfer: impl FnOnce() -> Result<BulkResult>,
) -> Result<Direction> {
    let (g0, h0) = (guest_counters(guest)?, host_counters()?);
    let bulk = transfer()?;
    let (g1, h1) = (guest_counters(guest)?, host_counters()?);
    let (guest_counters, host_counters) = (nstat_delta(&g0, &g1), nstat_delta(&h0, &h1));
    let grew = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0) as i64;
    let link_lost = to_guest.then(|| {
        grew(&host_counters, "Dev.tap0_tx_packets") - grew(&guest_counters, "Dev.eth0_rx_packets")
    });
    Ok(Direction {
        bulk,
        guest_counters,
        host_counters,
        link_lost,
    })
}

/// The guest source's report of the transfer that just ended (it writes it once the
/// host closed; a few hundred milliseconds at most).
fn source_report(guest: &Guest) -> Result<SenderInfo> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, text) = guest.exec(&format!("cat {TCP_SOURCE_REPORT}"))?;
        if code == 0
            && let Some((_, _, info)) = SenderInfo::parse_report(&text)
        {
            return Ok(info);
        }
        if Instant::now() > deadline {
            return Err(format!("no TCP source report in the guest: {text}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Request/response, then host -> guest bulk, then guest -> host bulk.
pub fn measure(guest: &Guest, o: &TcpOptions) -> Result<TcpRun> {
    let rr = request_response(addr(TCP_ECHO_PORT), o.rr_requests, o.rr_warmup, o.rr_bytes)
        .map_err(|e| format!("TCP request/response: {e}"))?;
    let to_guest = with_counters(guest, true, || {
        bulk_to(addr(TCP_SINK_PORT), o.bulk_seconds).map_err(|e| format!("TCP bulk to guest: {e}"))
    })?;
    guest.check(&format!("rm -f {TCP_SOURCE_REPORT}"))?;
    let mut from_guest = with_counters(guest, false, || {
        bulk_from(addr(TCP_SOURCE_PORT), o.bulk_seconds)
            .map_err(|e| format!("TCP bulk from guest: {e}"))
    })?;
    from_guest.bulk.sender = Some(source_report(guest)?);
    Ok(TcpRun {
        rr,
        to_guest,
        from_guest,
    })
}

/// `name=value` of every shown counter that grew, and of every kbp instance that
/// received packets, on one line.
pub fn shown(counters: &BTreeMap<String, u64>) -> String {
    SHOWN_COUNTERS
        .iter()
        .copied()
        .chain(
            counters
                .keys()
                .map(String::as_str)
                .filter(|k| k.starts_with("Kbp.")),
        )
        .filter_map(|k| {
            counters
                .get(k)
                .map(|v| format!("{}={v}", k.split_once('.').map_or(k, |(_, n)| n)))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
