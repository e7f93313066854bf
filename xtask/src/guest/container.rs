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

use crate::base::Result;
use crate::build::initramfs::{ECHO_PORT, GUEST_ADDR};
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
