//! The container configuration in the guest, as a Docker bridge network with a
//! published port lays it out: a network namespace (held by a `sleep` process, whose
//! PID names it) with a second echo server, a veth pair (`veth0` in the guest's
//! namespace, `ceth0` in the container's), the bridge `br0` with `veth0` as its port,
//! and nftables NAT: the host sends to a port of the guest's own address, DNAT forwards
//! it to the container and conntrack undoes it for the replies. Used by the bench's
//! `container` scenarios and the guest test's `container` record.
//!
//! A veth has NAPI instances only with GRO on or an XDP program attached
//! (`drivers/net/veth.c:1405-1406` in `veth_open`, :1534-1549 in `veth_set_features`);
//! without them its transmit hands every packet to the peer's per-CPU backlog
//! (`__netif_rx`, veth.c:320-326), which `process_backlog` drains in NET_RX_SOFTIRQ.
//! With GRO on, `veth_xmit` queues a packet on the peer's ring and schedules the peer's
//! NAPI (`__veth_xdp_flush`, veth.c:301-310) only if the transmitting end has TSO off or
//! the packet is a local UDP socket's and the receiving end forwards UDP GRO
//! (`veth_skb_is_eligible_for_gro`, veth.c:338-345): a packet forwarded from eth0 never
//! is the latter, so [`Veth::Napi`] also turns TSO off on both ends.

use std::net::SocketAddr;

use serde::Serialize;

use crate::base::Result;
use crate::build::initramfs::{ECHO_PORT, GUEST_ADDR};
use crate::guest::probes::snmp_field;
use crate::guest::vm::Guest;

/// The container's address (inside the guest, behind a bridge on 10.78.0.0/24).
pub const CONTAINER_ADDR: &str = "10.78.0.2";
/// The guest port the NAT forwards to the container's echo server (Docker's
/// `-p 9001:9000/udp`); the guest's own echo server keeps `ECHO_PORT`.
pub const CONTAINER_PUBLISHED_PORT: u16 = 9001;
/// The veth end in the guest's namespace (the bridge port).
pub const HOST_VETH: &str = "veth0";
/// The veth end in the container's namespace.
pub const CONTAINER_VETH: &str = "ceth0";

/// How the veth pair receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Veth {
    /// The default: GRO off, no NAPI; each end's receive is the per-CPU backlog
    /// (`process_backlog` in NET_RX_SOFTIRQ).
    Backlog,
    /// GRO on and TSO off on both ends: each end receives through its own NAPI
    /// instance (`veth_poll`), which kbp.ko can own.
    Napi,
}

/// A container set up in the guest.
#[derive(Clone, Copy, Debug)]
pub struct Container {
    /// The PID of the process holding the container's network namespace (what kbp.ko's
    /// `ifaces=ceth0@PID` names).
    pub ns_pid: u32,
    /// The published address the host sends to.
    pub published: SocketAddr,
}

impl Container {
    /// The `ifaces` parameter for kbp.ko serving eth0 and both veth ends.
    pub fn ifaces_with_veths(&self) -> String {
        format!("eth0,{HOST_VETH},{CONTAINER_VETH}@{}", self.ns_pid)
    }

    /// Runs `command` inside the container's network namespace (a guest shell line).
    pub fn inside(&self, command: &str) -> String {
        format!("nsenter -t {} -n {command}", self.ns_pid)
    }

    /// The drop counters along the container's path, for locating a loss: the
    /// container's own UDP receive errors (its namespace has its own /proc/net/snmp,
    /// which [`crate::harness::Drops`] does not read), both veth ends' drops (a full
    /// peer ring in `veth_xmit` counts as a TX drop of the sending end, veth being
    /// `noqueue`) and the
    /// softnet backlog drops and squeezes of every CPU.
    pub fn path_drops(&self, guest: &Guest) -> Result<PathDrops> {
        let snmp = guest.check(&self.inside("cat /proc/net/snmp"))?;
        let guest_dev = guest.check("cat /proc/net/dev")?;
        let container_dev = guest.check(&self.inside("cat /proc/net/dev"))?;
        let softnet = guest.check("cat /proc/net/softnet_stat")?;
        let (veth0_rx, veth0_tx) = dev_drops(&guest_dev, HOST_VETH);
        let (ceth0_rx, ceth0_tx) = dev_drops(&container_dev, CONTAINER_VETH);
        let hex = |l: &str, i: usize| {
            l.split_whitespace()
                .nth(i)
                .and_then(|v| u64::from_str_radix(v, 16).ok())
                .unwrap_or(0)
        };
        Ok(PathDrops {
            container_udp_rcvbuf_errors: snmp_field(&snmp, "Udp:", "RcvbufErrors"),
            container_udp_in_errors: snmp_field(&snmp, "Udp:", "InErrors"),
            veth0_rx_dropped: veth0_rx,
            veth0_tx_dropped: veth0_tx,
            ceth0_rx_dropped: ceth0_rx,
            ceth0_tx_dropped: ceth0_tx,
            softnet_dropped: softnet.lines().map(|l| hex(l, 1)).sum(),
            softnet_time_squeeze: softnet.lines().map(|l| hex(l, 2)).sum(),
        })
    }

    /// Starts sampling the container's UDP sockets' receive queues (/proc/net/udp's
    /// `rx_queue`, bytes of truesize) every 500 ms in the background, until
    /// [`Container::stop_queue_sampling`].
    pub fn start_queue_sampling(&self, guest: &Guest) -> Result {
        guest
            .check(&format!(
                "rm -f /tmp/kbp-queue; {} > /tmp/kbp-queue 2> /dev/null & echo $! > /tmp/kbp-queue.pid",
                self.inside("sh -c 'while :; do cat /proc/net/udp; sleep 0.5; done'")
            ))
            .map(drop)
    }

    /// Stops [`Container::start_queue_sampling`]; returns the largest receive queue seen
    /// (bytes) and the number of samples.
    pub fn stop_queue_sampling(&self, guest: &Guest) -> Result<(u64, usize)> {
        // `kill` fails (and so does the line) if the sampler died on the way.
        let text =
            guest.check("kill $(cat /tmp/kbp-queue.pid) && sleep 0.2 && cat /tmp/kbp-queue")?;
        let (max, samples) = max_udp_rx_queue(&text);
        if samples == 0 {
            return Err("container socket queue sampler: no samples".into());
        }
        Ok((max, samples))
    }

    /// Switches both veth ends to `veth` (GRO and TSO through `kbp-ctl offload`);
    /// returns the ends' reported states.
    pub fn set_veth(&self, guest: &Guest, veth: Veth) -> Result<String> {
        let (gro, tso) = match veth {
            Veth::Backlog => ("off", "on"),
            Veth::Napi => ("on", "off"),
        };
        let mut states = Vec::new();
        for (dev, wrap) in [(HOST_VETH, false), (CONTAINER_VETH, true)] {
            for (feature, state) in [("tso", tso), ("gro", gro)] {
                let cmd = format!("kbp-ctl offload {dev} {feature} {state}");
                let cmd = if wrap { self.inside(&cmd) } else { cmd };
                states.push(guest.check(&cmd)?.trim().to_string());
            }
        }
        Ok(states.join(", "))
    }
}

/// Drop counters along the container's path ([`Container::path_drops`]).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PathDrops {
    /// `Udp: RcvbufErrors` of the container's namespace: its echo socket was full.
    pub container_udp_rcvbuf_errors: u64,
    /// `Udp: InErrors` there (RcvbufErrors included).
    pub container_udp_in_errors: u64,
    /// `veth0`'s (the guest end's) receive drops, from /proc/net/dev.
    pub veth0_rx_dropped: u64,
    /// Its transmit drops: `ceth0`'s ring was full.
    pub veth0_tx_dropped: u64,
    /// `ceth0`'s (the container end's) receive drops.
    pub ceth0_rx_dropped: u64,
    /// Its transmit drops: `veth0`'s ring was full.
    pub ceth0_tx_dropped: u64,
    /// `/proc/net/softnet_stat`'s dropped column, all CPUs (backlog full).
    pub softnet_dropped: u64,
    /// Its time_squeeze column: net_rx_action runs that ended with work left.
    pub softnet_time_squeeze: u64,
}

impl PathDrops {
    /// The growth from `before` to `self`.
    pub fn since(self, before: PathDrops) -> PathDrops {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        PathDrops {
            container_udp_rcvbuf_errors: d(
                self.container_udp_rcvbuf_errors,
                before.container_udp_rcvbuf_errors,
            ),
            container_udp_in_errors: d(
                self.container_udp_in_errors,
                before.container_udp_in_errors,
            ),
            veth0_rx_dropped: d(self.veth0_rx_dropped, before.veth0_rx_dropped),
            veth0_tx_dropped: d(self.veth0_tx_dropped, before.veth0_tx_dropped),
            ceth0_rx_dropped: d(self.ceth0_rx_dropped, before.ceth0_rx_dropped),
            ceth0_tx_dropped: d(self.ceth0_tx_dropped, before.ceth0_tx_dropped),
            softnet_dropped: d(self.softnet_dropped, before.softnet_dropped),
            softnet_time_squeeze: d(self.softnet_time_squeeze, before.softnet_time_squeeze),
        }
    }
}

/// The largest `rx_queue` over the socket rows of /proc/net/udp texts, and the number
/// of texts (header rows).
fn max_udp_rx_queue(text: &str) -> (u64, usize) {
    let samples = text
        .lines()
        .filter(|l| l.trim_start().starts_with("sl"))
        .count();
    let max = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter_map(|q| q.split_once(':'))
        .filter_map(|(_, rx)| u64::from_str_radix(rx, 16).ok())
        .max()
        .unwrap_or(0);
    (max, samples)
}

/// `dev`'s (rx drop, tx drop) from a /proc/net/dev text.
fn dev_drops(proc_net_dev: &str, dev: &str) -> (u64, u64) {
    let Some(line) = proc_net_dev
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{dev}:")))
    else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_once(':')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // rx: bytes packets errs drop ...(8 columns); tx: bytes packets errs drop ...
    (
        v.get(3).copied().unwrap_or(0),
        v.get(11).copied().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_drops_reads_the_rx_and_tx_drop_columns() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n\
                    veth0: 100 10 0 3 0 0 0 0 200 20 0 7 0 0 0 0\n";
        assert_eq!(dev_drops(text, "veth0"), (3, 7));
        assert_eq!(dev_drops(text, "ceth0"), (0, 0));
    }

    #[test]
    fn max_udp_rx_queue_reads_the_queue_column_of_every_sample() {
        let text = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                    \x20 12: 00000000:2328 00000000:0000 07 00000000:00000300 00:00000000 00000000     0        0 1 2 0 0\n\
                    \x20  sl  local_address rem_address\n\
                    \x20 12: 00000000:2328 00000000:0000 07 00000000:00001000 00:00000000 00000000     0        0 1 2 0 0\n";
        assert_eq!(max_udp_rx_queue(text), (0x1000, 2));
    }

    #[test]
    fn snmp_field_finds_the_named_column() {
        let snmp = "Udp: InDatagrams NoPorts InErrors RcvbufErrors\nUdp: 5 0 2 9\n";
        assert_eq!(snmp_field(snmp, "Udp:", "RcvbufErrors"), 9);
        assert_eq!(snmp_field(snmp, "Udp:", "InErrors"), 2);
        assert_eq!(snmp_field(snmp, "Tcp:", "InErrors"), 0);
    }
}

/// The NAT of a Docker bridge network: published port -> container (DNAT, undone for
/// the replies by conntrack), and the container's own traffic out through eth0
/// masqueraded.
fn container_nat_ruleset() -> String {
    format!(
        "table ip kbp_nat {{\n\
         chain prerouting {{ type nat hook prerouting priority dstnat; policy accept; \
         iifname \"eth0\" udp dport {CONTAINER_PUBLISHED_PORT} dnat to {CONTAINER_ADDR}:{ECHO_PORT}; }}\n\
         chain postrouting {{ type nat hook postrouting priority srcnat; policy accept; \
         ip saddr 10.78.0.0/24 oifname \"eth0\" masquerade; }}\n\
         }}\n"
    )
}

/// Sets the container up, with its echo server pinned to `echo_cpu` and both veth
/// ends in `veth` mode.
pub fn set_up(guest: &Guest, echo_cpu: u32, veth: Veth) -> Result<Container> {
    let pid = guest.check("unshare -n sleep 1000000 > /dev/null 2>&1 & echo $!")?;
    let ns_pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| format!("container: no namespace holder pid in {pid:?}"))?;
    guest.check(&format!(
        "sleep 0.3 && kbp-ctl veth {HOST_VETH} {CONTAINER_VETH} {ns_pid} && brctl addbr br0 && brctl addif br0 {HOST_VETH} && \
         ip addr add 10.78.0.1/24 dev br0 && ip link set br0 up && ip link set {HOST_VETH} up && echo 1 > /proc/sys/net/ipv4/ip_forward && \
         nsenter -t {ns_pid} -n sh -c 'ip link set lo up && ip addr add {CONTAINER_ADDR}/24 dev {CONTAINER_VETH} && ip link set {CONTAINER_VETH} up && \
         ip route add default via 10.78.0.1; echo 4194304 > /proc/sys/net/core/rmem_default; echo 4194304 > /proc/sys/net/core/rmem_max; true'"
    ))?;
    // The agent takes one line per command: the ruleset's newlines travel as printf's `\n`.
    let ruleset = container_nat_ruleset().replace('\n', "\\n");
    guest.check(&format!("printf '{ruleset}' > /tmp/kbp-nat.nft && nft -f /tmp/kbp-nat.nft && nft list table ip kbp_nat > /dev/null"))?;
    let container = Container {
        ns_pid,
        published: format!("{GUEST_ADDR}:{CONTAINER_PUBLISHED_PORT}")
            .parse()
            .expect("address"),
    };
    if veth != Veth::Backlog {
        container.set_veth(guest, veth)?;
    }
    let echo = guest.check(&format!(
        "nsenter -t {ns_pid} -n kbp-echo 0.0.0.0:{ECHO_PORT} > /dev/null 2>&1 & echo $!"
    ))?;
    guest.check(&format!(
        "sleep 0.3; kbp-ctl pin {echo_cpu} {}",
        echo.trim()
    ))?;
    Ok(container)
}
