//! The guest test's `container` record (issue 13): the echo server in a container's
//! network namespace behind a veth pair, a bridge and NAT ([`crate::guest::container`]),
//! GRO on (TSO off) on both veth ends so each end receives through its own NAPI
//! instance, and the host sending to the published port. One scenario per mode, each
//! with the NET_RX_SOFTIRQ count of the whole path (every guest CPU):
//!
//! | mode | kbp.ko | what NET_RX is left |
//! |---|---|---|
//! | `container-napi` | not loaded | eth0 and both veth ends in the softirq |
//! | `container-kbp-eth0` | `ifaces=eth0` | the veth ends' NAPI in the softirq |
//! | `container-kbp-eth0-adaptive` | the same, adaptive (200 µs window): the control for the spinning thread's share of the emulator (a spinning vCPU takes turns of TCG's emulation thread from the echo server's) | the same |
//! | `container-kbp-veth` | `ifaces=eth0,veth0,ceth0@PID`, spin | none: must be 0 |
//! | `container-kbp-veth-adaptive` | the same, adaptive (200 µs window): every idle gap hands the veth instances back (veth's `rx_notify_masked` must be cleared by the hand-back poll, or the veth stalls) | none: must be 0 |
//!
//! A scenario passes when nothing is lost and no kernel warning was logged; with the
//! veths owned also when NET_RX grew by 0 on every CPU and kbp.ko's counters show
//! every request through `ceth0`'s instance and every reply through `veth0`'s. In the
//! kbp modes every NET_RX raise is traced (`irq:softirq_raise` with a stack trace) and
//! the record lists where the raises came from.

use std::collections::BTreeMap;
use std::time::Duration;

use kbp_traffic::{RttSummary, TrialSpec, run_trial};
use serde::Serialize;

use crate::base::Result;
use crate::guest::container::{self, CONTAINER_VETH, Container, HOST_VETH, PathDrops, Veth};
use crate::guest::probes::{
    busiest_threads, busy_percent_between, cpu_columns_per_cpu, cpu_jiffies_per_cpu,
    cpu_split_between, host_busy_steal_percent, host_cpu_jiffies, net_rx_softirqs, thread_ticks,
    virtio_net_irqs_per_cpu,
};
use crate::guest::stats_file::napi_packets_by_dev;
use crate::guest::vm::{Guest, count_warnings};
use crate::harness::{Drops, MODULE_PATH};

/// Frame sizes of each mode.
const FRAMES: [usize; 2] = [64, 1518];

/// One mode and frame size behind the container's NAT.
#[derive(Serialize)]
pub struct ContainerScenario {
    /// `container-napi`, `container-kbp-eth0`, `container-kbp-veth`, ...
    pub mode: String,
    /// kbp.ko's insmod arguments (None: not loaded).
    pub kbp_args: Option<String>,
    pub frame_bytes: usize,
    pub rate_pps: u64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub rtt_us: RttSummary,
    /// NET_RX_SOFTIRQ growth over the scenario (warm-up included), every guest CPU.
    pub net_rx_softirq_delta: u64,
    /// The same per guest CPU.
    pub net_rx_softirq_delta_per_cpu: Vec<u64>,
    /// Packets kbp.ko's instances processed during the scenario, by device (`eth0`,
    /// `veth0`, `ceth0@PID`), from debugfs.
    pub kbp_packets_by_dev: BTreeMap<String, u64>,
    /// NET_RX raises traced during the scenario (kbp modes), by their first stack
    /// frames, most frequent first.
    pub net_rx_raise_sites: Vec<(String, u64)>,
    pub drops: Drops,
    /// The drop counters along the container's path (its namespace's UDP, the veths,
    /// the softnet backlog), for locating a loss.
    pub path_drops: PathDrops,
    /// How busy each guest CPU was over the scenario, percent.
    pub busy_percent_per_cpu: Vec<u64>,
    /// Each guest CPU's time, percent: `[user + nice, system, irq, softirq]`.
    pub cpu_split_percent: Vec<[u64; 4]>,
    /// The threads that used the most CPU over the scenario (`comm/tid@cpu`, 10 ms
    /// ticks).
    pub busiest_threads: Vec<(String, u64)>,
    /// eth0's virtio interrupts over the scenario, per guest CPU.
    pub virtio_irqs_per_cpu: Vec<u64>,
    /// Contended locks (`lock:contention_begin`) over the scenario, every CPU.
    pub lock_contention: u64,
    /// The most frequent stacks of those, by their first frames outside the lock code.
    pub lock_contention_sites: Vec<(String, u64)>,
    /// The largest receive queue of the container's echo socket seen in 500 ms samples
    /// (bytes of truesize; its buffer is 4 MiB): a lower bound of the peak.
    pub max_container_socket_queue_bytes: u64,
    /// How many samples that is the largest of.
    pub container_socket_queue_samples: usize,
    /// The host's CPUs over the scenario, percent of all of them: busy...
    pub host_busy_percent: u64,
    /// ... and stolen by the hypervisor when the host is itself a virtual machine.
    pub host_steal_percent: u64,
    pub kernel_warnings: usize,
    pub passed: bool,
}

/// The `container` record of guest-test.json.
#[derive(Serialize)]
pub struct ContainerReport {
    /// The PID holding the container's network namespace.
    pub ns_pid: u32,
    /// GRO/TSO of both veth ends as the devices report them.
    pub veths: String,
    pub scenarios: Vec<ContainerScenario>,
    /// NET_RX over all scenarios of each mode.
    pub net_rx_by_mode: Vec<(String, u64)>,
    pub passed: bool,
}

const TRACING: &str = "/sys/kernel/tracing/events/irq/softirq_raise";

/// Traces every NET_RX raise with its stack trace from now on (clears the buffer).
fn trace_raises(guest: &Guest) -> Result {
    guest
        .check(&format!(
            "echo 0 > {TRACING}/enable; echo > /sys/kernel/tracing/trace; echo 'vec == 3' > {TRACING}/filter; \
             echo 'stacktrace if vec == 3' > {TRACING}/trigger; echo 1 > {TRACING}/enable"
        ))
        .map(drop)
}

/// Stops tracing and returns the raises by their first four stack frames.
fn raise_sites(guest: &Guest) -> Result<Vec<(String, u64)>> {
    let text = guest.check(&format!(
        "echo 0 > {TRACING}/enable; echo '!stacktrace if vec == 3' > {TRACING}/trigger; \
         echo 0 > {TRACING}/filter; cat /sys/kernel/tracing/trace"
    ))?;
    let mut sites: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.contains("<stack trace>") {
            continue;
        }
        let mut frames = Vec::new();
        while let Some(frame) = lines.next_if(|l| l.trim_start().starts_with("=>")) {
            if frames.len() < 4 {
                frames.push(
                    frame
                        .trim_start()
                        .trim_start_matches("=>")
                        .trim()
                        .to_string(),
                );
            }
        }
        *sites.entry(frames.join(" <- ")).or_default() += 1;
    }
    let mut sites: Vec<(String, u64)> = sites.into_iter().collect();
    sites.sort_by(|a, b| b.1.cmp(&a.1));
    Ok(sites)
}

const CONTENTION: &str = "/sys/kernel/tracing/events/lock/contention_begin";
/// Lock contention (`lock:contention_begin`: a queued spinlock's slow path,
/// `kernel/locking/qspinlock.c:219`, and the sleeping locks' waits) counted per stack.
const CONTENTION_BY_STACK: &str = "hist:keys=common_stacktrace:vals=hitcount:size=256";

/// Starts counting contended locks per stack.
fn count_contention(guest: &Guest) -> Result {
    guest
        .check(&format!(
            "echo '{CONTENTION_BY_STACK}' > {CONTENTION}/trigger"
        ))
        .map(drop)
}

/// Stops [`count_contention`]; returns the total and the most frequent stacks (their
/// first frames below the lock functions).
fn contention(guest: &Guest) -> Result<(u64, Vec<(String, u64)>)> {
    let text = guest.check(&format!(
        "cat {CONTENTION}/hist; echo '!{CONTENTION_BY_STACK}' > {CONTENTION}/trigger"
    ))?;
    Ok(parse_contention(&text))
}

/// The hist of [`count_contention`]: the total, and the stacks by their first frames
/// outside the lock code, most frequent first.
fn parse_contention(text: &str) -> (u64, Vec<(String, u64)>) {
    let mut stacks: BTreeMap<String, u64> = BTreeMap::new();
    let mut frames: Option<Vec<String>> = None;
    let hitcount = |l: &str| {
        l.rsplit_once("hitcount:")
            .and_then(|(_, n)| n.trim().parse::<u64>().ok())
    };
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("{ common_stacktrace:") {
            frames = Some(Vec::new());
        } else if let Some(f) = frames.as_mut() {
            if t.starts_with('}') {
                let n = hitcount(t).unwrap_or(0);
                let key = f.join(" <- ");
                *stacks.entry(key).or_default() += n;
                frames = None;
            } else if f.len() < 4
                && !t.is_empty()
                && ![
                    "spin_lock",
                    "contention",
                    "queued_",
                    "lock_acquire",
                    "trace_",
                ]
                .iter()
                .any(|skip| t.contains(skip))
            {
                f.push(t.split('+').next().unwrap_or(t).to_string());
            }
        }
    }
    let total = stacks.values().sum();
    let mut stacks: Vec<(String, u64)> = stacks.into_iter().collect();
    stacks.sort_by(|a, b| b.1.cmp(&a.1));
    stacks.truncate(6);
    (total, stacks)
}

/// kbp.ko's per-device packets, or empty when it is not loaded.
fn kbp_packets(guest: &Guest) -> Result<BTreeMap<String, u64>> {
    let (code, text) = guest.exec("cat /sys/kernel/debug/kbp/stats")?;
    Ok(if code == 0 {
        napi_packets_by_dev(&text)
    } else {
        BTreeMap::new()
    })
}

/// What the mode must show beyond "nothing lost".
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Nothing more (the softirq still runs part of the path).
    Delivered,
    /// NET_RX +0 on every CPU, and both veth ends' instances carried every packet.
    NoSoftirq,
}

/// One mode of the record.
struct Mode {
    name: &'static str,
    /// kbp.ko's insmod arguments (None: not loaded).
    kbp_args: Option<String>,
    expect: Expect,
}

fn scenario(
    guest: &Guest,
    c: &Container,
    m: &Mode,
    frame: usize,
    rate: u64,
    packets: u64,
) -> Result<ContainerScenario> {
    let (mode, kbp_args, expect) = (m.name, m.kbp_args.as_deref(), m.expect);
    let log_before = std::fs::read_to_string(&guest.log)
        .unwrap_or_default()
        .len();
    if kbp_args.is_some() {
        trace_raises(guest)?;
    }
    let kbp_before = kbp_packets(guest)?;
    let drops_before = Drops::read(guest)?;
    let path_before = c.path_drops(guest)?;
    let busy_before = cpu_jiffies_per_cpu(guest)?;
    let columns_before = cpu_columns_per_cpu(guest)?;
    let threads_before = thread_ticks(guest)?;
    let irqs_before = virtio_net_irqs_per_cpu(guest)?;
    let before = net_rx_softirqs(guest)?;
    c.start_queue_sampling(guest)?;
    count_contention(guest)?;
    let host_before = host_cpu_jiffies()?;
    let r = run_trial(&TrialSpec {
        target: c.published,
        rate_pps: rate,
        frame_bytes: frame,
        packets,
        warmup_packets: 500,
        grace: Duration::from_secs(2),
        flows: 1,
        bursts: None,
        stop: None,
    })
    .map_err(|e| format!("load generator: {e}"))?;
    let after = net_rx_softirqs(guest)?;
    let (host_busy, host_steal) = host_busy_steal_percent(host_before, host_cpu_jiffies()?);
    let (contended, contention_sites) = contention(guest)?;
    let (max_queue, queue_samples) = c.stop_queue_sampling(guest)?;
    let busy = busy_percent_between(&busy_before, &cpu_jiffies_per_cpu(guest)?);
    let split = cpu_split_between(&columns_before, &cpu_columns_per_cpu(guest)?);
    let threads = busiest_threads(&threads_before, &thread_ticks(guest)?, 6);
    let irqs: Vec<u64> = virtio_net_irqs_per_cpu(guest)?
        .iter()
        .zip(&irqs_before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let drops = Drops::read(guest)?.since(drops_before);
    let path_drops = c.path_drops(guest)?.since(path_before);
    let kbp_after = kbp_packets(guest)?;
    let sites = if kbp_args.is_some() {
        raise_sites(guest)?
    } else {
        Vec::new()
    };
    let log = std::fs::read_to_string(&guest.log).unwrap_or_default();
    let warnings = count_warnings(log.get(log_before..).unwrap_or(""));
    let per_cpu: Vec<u64> = after
        .iter()
        .zip(before.iter().chain(std::iter::repeat(&0)))
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let net_rx: u64 = per_cpu.iter().sum();
    let by_dev: BTreeMap<String, u64> = kbp_after
        .iter()
        .map(|(dev, n)| {
            let b = kbp_before.get(dev).copied().unwrap_or(0);
            (dev.clone(), n.saturating_sub(b))
        })
        .collect();
    let dev_packets = |prefix: &str| {
        by_dev
            .iter()
            .filter(|(d, _)| d.as_str() == prefix || d.starts_with(&format!("{prefix}@")))
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    let owned_ok = match expect {
        Expect::Delivered => true,
        Expect::NoSoftirq => {
            net_rx == 0
                && dev_packets(CONTAINER_VETH) >= r.received
                && dev_packets(HOST_VETH) >= r.received
        }
    };
    let s = ContainerScenario {
        mode: mode.into(),
        kbp_args: kbp_args.map(str::to_string),
        frame_bytes: frame,
        rate_pps: rate,
        sent: r.sent,
        received: r.received,
        lost: r.lost,
        rtt_us: r.rtt_us,
        net_rx_softirq_delta: net_rx,
        net_rx_softirq_delta_per_cpu: per_cpu,
        kbp_packets_by_dev: by_dev,
        net_rx_raise_sites: sites,
        drops,
        path_drops,
        busy_percent_per_cpu: busy,
        cpu_split_percent: split,
        busiest_threads: threads,
        virtio_irqs_per_cpu: irqs,
        lock_contention: contended,
        lock_contention_sites: contention_sites,
        max_container_socket_queue_bytes: max_queue,
        container_socket_queue_samples: queue_samples,
        host_busy_percent: host_busy,
        host_steal_percent: host_steal,
        kernel_warnings: warnings,
        passed: r.lost == 0 && r.received > 0 && warnings == 0 && owned_ok,
    };
    println!(
        "[xtask]   {:<28} {:>5} B  sent {:>6} lost {:>4}  rtt us p50 {:>8.1} p99 {:>8.1} max {:>8.1}  NET_RX +{} {:?}  kbp {:?}  {}",
        s.mode,
        s.frame_bytes,
        s.sent,
        s.lost,
        s.rtt_us.p50,
        s.rtt_us.p99,
        s.rtt_us.max,
        s.net_rx_softirq_delta,
        s.net_rx_softirq_delta_per_cpu,
        s.kbp_packets_by_dev,
        if s.passed { "ok" } else { "FAIL" }
    );
    println!(
        "[xtask]     guest CPUs busy {:?} %, host busy {} % stolen {} %; container socket queue max {} B; {:?}; {:?}",
        s.busy_percent_per_cpu,
        s.host_busy_percent,
        s.host_steal_percent,
        s.max_container_socket_queue_bytes,
        s.drops,
        s.path_drops
    );
    println!(
        "[xtask]     CPU time [user, system, irq, softirq] % {:?}; virtio IRQs per CPU {:?}; busiest threads {:?}",
        s.cpu_split_percent, s.virtio_irqs_per_cpu, s.busiest_threads
    );
    println!("[xtask]     contended locks {}", s.lock_contention);
    for (site, n) in s.lock_contention_sites.iter().take(3) {
        println!("[xtask]       {n} x at {site}");
    }
    for (site, n) in s.net_rx_raise_sites.iter().take(4) {
        println!("[xtask]     NET_RX raised {n} x at {site}");
    }
    Ok(s)
}

/// Sets the container up (echo server on `echo_cpu`, GRO on both veth ends) and runs
/// every mode, kbp.ko's thread on `kbp_cpu`. The container stays for the rest of the
/// boot; the module is unloaded at the end.
pub fn run(
    guest: &Guest,
    echo_cpu: u32,
    kbp_cpu: u32,
    rate: u64,
    packets: u64,
) -> Result<ContainerReport> {
    let c = container::set_up(guest, echo_cpu, Veth::Backlog)?;
    let veths = c.set_veth(guest, Veth::Napi)?;
    println!(
        "[xtask]   container: namespace of pid {}; {veths}",
        c.ns_pid
    );
    let veth_ifaces = c.ifaces_with_veths();
    let modes = [
        Mode {
            name: "container-napi",
            kbp_args: None,
            expect: Expect::Delivered,
        },
        Mode {
            name: "container-kbp-eth0",
            kbp_args: Some(format!("ifaces=eth0 cpus={kbp_cpu} mode=spin")),
            expect: Expect::Delivered,
        },
        Mode {
            name: "container-kbp-eth0-adaptive",
            kbp_args: Some(format!(
                "ifaces=eth0 cpus={kbp_cpu} mode=adaptive spin_window_us=200"
            )),
            expect: Expect::Delivered,
        },
        Mode {
            name: "container-kbp-veth",
            kbp_args: Some(format!("ifaces={veth_ifaces} cpus={kbp_cpu} mode=spin")),
            expect: Expect::NoSoftirq,
        },
        Mode {
            name: "container-kbp-veth-adaptive",
            kbp_args: Some(format!(
                "ifaces={veth_ifaces} cpus={kbp_cpu} mode=adaptive spin_window_us=200"
            )),
            expect: Expect::NoSoftirq,
        },
    ];
    let mut scenarios = Vec::new();
    let mut net_rx_by_mode = Vec::new();
    for m in &modes {
        if let Some(args) = &m.kbp_args {
            guest.check(&format!("insmod {MODULE_PATH} {args}"))?;
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut total = 0;
        for frame in FRAMES {
            let s = scenario(guest, &c, m, frame, rate, packets)?;
            total += s.net_rx_softirq_delta;
            scenarios.push(s);
        }
        net_rx_by_mode.push((m.name.to_string(), total));
        if m.kbp_args.is_some() {
            guest.check("rmmod kbp")?;
        }
    }
    let passed = scenarios.iter().all(|s| s.passed);
    Ok(ContainerReport {
        ns_pid: c.ns_pid,
        veths,
        scenarios,
        net_rx_by_mode,
        passed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_contention_reads_the_stacks_and_their_total() {
        let text = "# event histogram\n\
                    { common_stacktrace:\n\
                    \x20        queued_spin_lock_slowpath+0x1f/0x2a0\n\
                    \x20        _raw_spin_lock+0x29/0x30\n\
                    \x20        __netif_tx_lock+0x10/0x20\n\
                    \x20        virtnet_poll_tx+0x50/0x200\n\
                    } hitcount:         90\n";
        let (total, stacks) = parse_contention(text);
        assert_eq!(total, 90);
        assert_eq!(
            stacks,
            vec![("__netif_tx_lock <- virtnet_poll_tx".to_string(), 90)]
        );
    }
}
