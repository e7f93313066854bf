//! The guest's configuration for a bench mode: the CPU plan and the mode itself, the
//! container behind NAT, and the softirq-competition loads ([`Load`]).

use crate::base::Result;
use crate::guest::container::{self, Container, Veth};
use crate::guest::probes::POLLER_PIDS;
use crate::guest::vm::Guest;
use crate::harness::MODULE_PATH;

/// The CPU of every polling thread.
pub const POLL_CPU: u32 = 3;
/// The echo server's CPU.
pub const ECHO_CPU: u32 = 2;
/// The CPU of the NIC's interrupts and of the competition loads.
pub const IRQ_CPU: u32 = 0;

/// Puts the guest into `mode` and pins the echo server and the polling threads.
pub fn set_up(guest: &Guest, mode: &str) -> Result<String> {
    patch_rps_paths_at_idle(guest)?;
    guest.check(&format!("kbp-ctl pin {ECHO_CPU} $(pidof kbp-echo)"))?;
    guest.check(&format!(
        "for i in $(grep -E '{}' /proc/interrupts | cut -d: -f1); do echo {IRQ_CPU} > /proc/irq/$i/smp_affinity_list; done",
        guest.nic.irq_names()
    ))?;
    enter_mode(guest, mode, POLL_CPU)?;
    if mode != "napi" && !mode.starts_with("kbp") {
        guest.check(&format!("{POLLER_PIDS}; kbp-ctl pin {POLL_CPU} $(pollers)"))?;
    }
    guest.check(&format!("{POLLER_PIDS}; for p in $(pollers); do echo $(cat /proc/$p/comm) $(grep Cpus_allowed_list /proc/$p/status); done"))
}

/// Switches eth0 into `mode` (napi, threaded, busy-poll, kbp-spin, kbp-adaptive), with
/// kbp.ko's thread on `poll_cpu`.
pub fn enter_mode(guest: &Guest, mode: &str, poll_cpu: u32) -> Result {
    match mode {
        "napi" => {}
        "threaded" => {
            guest.check("echo 1 > /sys/class/net/eth0/threaded")?;
        }
        "busy-poll" => {
            // The RX NAPI ids come from the threads threaded mode names napi/eth0-<id>;
            // TX-completion instances have no id and stay in plain threaded mode.
            guest.check("echo 1 > /sys/class/net/eth0/threaded")?;
            let ids = guest.check("for c in /proc/[0-9]*/comm; do read -r n < $c; case $n in napi/eth0-*) echo ${n#napi/eth0-};; esac; done")?;
            let ids: Vec<&str> = ids.split_whitespace().filter(|id| *id != "0").collect();
            if ids.is_empty() {
                return Err("busy-poll: no NAPI ids found".into());
            }
            for id in ids {
                guest.check(&format!("kbp-ctl napi-threaded {id} busy-poll"))?;
            }
        }
        "kbp-spin" => {
            guest.check(&format!(
                "insmod {MODULE_PATH} ifaces=eth0 cpus={poll_cpu} mode=spin"
            ))?;
        }
        "kbp-adaptive" => {
            guest.check(&format!(
                "insmod {MODULE_PATH} ifaces=eth0 cpus={poll_cpu} mode=adaptive"
            ))?;
        }
        _ => return Err(format!("unknown mode {mode}")),
    }
    Ok(())
}

/// The paper's container configuration ([`crate::guest::container`]): a network
/// namespace holding a second echo server (pinned like the first), behind a veth pair
/// (GRO off: the veth hop is `process_backlog` in NET_RX_SOFTIRQ), a bridge and NAT in
/// the guest, as a Docker bridge network with a published port lays it out.
pub fn set_up_container(guest: &Guest) -> Result<Container> {
    container::set_up(guest, ECHO_CPU, Veth::Backlog)
}

/// The `container-veth` variant on the same container: GRO on (and TSO off) on both
/// veth ends, so each end receives through its own NAPI instance; in the kbp modes
/// kbp.ko is loaded again to own both ends too (`ifaces=eth0,veth0,ceth0@PID`: no
/// NET_RX_SOFTIRQ on the whole path). Returns the veths' states and kbp.ko's line.
pub fn own_container_veths(guest: &Guest, mode: &str, c: &Container) -> Result<String> {
    let states = c.set_veth(guest, Veth::Napi)?;
    let idle = match mode {
        "kbp-spin" => "spin",
        "kbp-adaptive" => "adaptive",
        _ => return Ok(states),
    };
    guest.check(&format!(
        "rmmod kbp && insmod {MODULE_PATH} ifaces={} cpus={POLL_CPU} mode={idle}",
        c.ifaces_with_veths()
    ))?;
    let line = guest.check("dmesg | grep 'kbp: serving' | tail -n 1")?;
    Ok(format!("{states}; {}", line.trim()))
}

/// The CPU of the `deferral` load's flood threads (no other job in any mode).
pub const FLOOD_CPU: u32 = 1;
/// CPU-bound threads of the `deferral` load on [`IRQ_CPU`].
pub const SPINNERS: u32 = 2;
/// Their nice value: `ksoftirqd`'s own (it runs at nice 0, SCHED_OTHER).
pub const SPIN_NICE: i32 = 0;

/// A competition load on the NIC's interrupt CPU ([`IRQ_CPU`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// `competition`: a loopback UDP flood from a thread pinned to [`IRQ_CPU`]. Its
    /// NET_RX work runs inline, at the flood's own `local_bh_enable`, so it keeps the
    /// CPU busy but rarely defers anything to `ksoftirqd`.
    Flood,
    /// `deferral`, the paper's mechanism: softirq work on [`IRQ_CPU`] beyond
    /// `__do_softirq`'s limits, plus CPU-bound tasks there at `ksoftirqd`'s priority.
    /// The loopback flood runs on [`FLOOD_CPU`] and RPS steers its packets into
    /// [`IRQ_CPU`]'s backlog (`rps_cpus` of `lo`), so they are received in softirq
    /// context there, raised by RPS's IPI: a backlog that never empties, so
    /// `net_rx_action` runs out of budget (time_squeeze) and re-raises NET_RX, and
    /// `handle_softirqs` stops after `MAX_SOFTIRQ_TIME` (2 ms) or `MAX_SOFTIRQ_RESTART`
    /// (10) rounds and wakes `ksoftirqd` (kernel/softirq.c:543-544, :640-645).
    /// [`SPINNERS`] threads at nice [`SPIN_NICE`] on [`IRQ_CPU`] then compete with
    /// `ksoftirqd` for the CPU.
    Deferral,
}

impl Load {
    /// The trials' `variant`.
    pub fn variant(self) -> &'static str {
        match self {
            Load::Flood => "competition",
            Load::Deferral => "deferral",
        }
    }

    /// One line for the report's setup.
    pub fn describe(self) -> String {
        match self {
            Load::Flood => format!(
                "`competition`: a loopback UDP flood pinned to CPU {IRQ_CPU} (kbp-ctl flood; its NET_RX runs inline in the flood thread)"
            ),
            Load::Deferral => format!(
                "`deferral`: a loopback UDP flood on CPU {FLOOD_CPU} steered by RPS into CPU {IRQ_CPU}'s backlog (softirq work there beyond \
                 __do_softirq's 2 ms / 10-restart limits, so NET_RX is deferred to ksoftirqd/{IRQ_CPU}), plus {SPINNERS} CPU-bound threads \
                 on CPU {IRQ_CPU} at nice {SPIN_NICE}, ksoftirqd's own priority (kbp-ctl spin)"
            ),
        }
    }
}

/// `rps_cpus` of `lo`'s receive queue.
const LO_RPS: &str = "/sys/class/net/lo/queues/rx-0/rps_cpus";

/// Takes the code patches that RPS's first use makes while the guest is idle, not
/// under the `deferral` load. The first RPS packet computes the first software flow
/// hash, whose `net_get_random_once` (`__flow_hash_secret_init`) disables a DO_ONCE
/// static key afterwards, from a work item, patching `__skb_get_hash_net` once per
/// boot. Under the flood that patch oopsed an e1000e guest (`Oops: int3` at
/// `__skb_get_hash_net+0x57`, bench of 2026-11-29 03:45 UTC; e1000e gives no RX hash,
/// so the flood's packets are hashed in software on both CPUs). Multi-threaded TCG
/// does not patch reliably under load (README, "Why single-threaded TCG").
fn patch_rps_paths_at_idle(guest: &Guest) -> Result {
    guest
        .check(&format!(
            "echo 1 > {LO_RPS} && ping -c 2 -W 1 127.0.0.1 > /dev/null; sleep 0.5; echo 0 > {LO_RPS}; sleep 0.2"
        ))
        .map(drop)
}

/// Starts a load. `deferral` sets the RPS map before its flood starts (see [`stop_load`]).
pub fn start_load(guest: &Guest, load: Load) -> Result {
    let start = match load {
        Load::Flood => format!("(kbp-ctl flood {IRQ_CPU} > /dev/null 2>&1 &)"),
        Load::Deferral => format!(
            "echo {:x} > {LO_RPS} && (kbp-ctl flood {FLOOD_CPU} {FLOOD_CPU} > /dev/null 2>&1 &) && \
             (kbp-ctl spin {IRQ_CPU} {SPINNERS} {SPIN_NICE} > /dev/null 2>&1 &)",
            1u64 << IRQ_CPU
        ),
    };
    guest
        .check(&format!("{start}; sleep 1; pidof kbp-ctl"))
        .map(drop)
}

/// Stops the load, then clears the RPS map, in that order and never at once. Clearing
/// the last RPS map disables the `rps_needed` static key, which rewrites the branch in
/// `netif_rx_internal` (net/core/dev.c:5790) and `netif_receive_skb*`; under QEMU's
/// multi-threaded TCG a flood thread still inside that code oopsed the guest (`Oops:
/// int3` at `netif_rx_internal+0x25`, bench of 2026-11-29 00:04 UTC, when the RPS map was
/// cleared right after the asynchronous `kill`). So the flood must have exited first
/// (at most 5 s) and the static key flips with no flood running.
pub fn stop_load(guest: &Guest) -> Result {
    guest
        .check(&format!(
            "kill $(pidof kbp-ctl); i=0; \
             while pidof kbp-ctl > /dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; \
             if pidof kbp-ctl > /dev/null; then echo 'the load did not exit within 5 s'; exit 1; fi; \
             sleep 0.2; echo 0 > {LO_RPS}; sleep 0.2"
        ))
        .map(drop)
}
