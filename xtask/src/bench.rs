//! `cargo xtask bench [--quick]`: the paper's latency and throughput experiments in the
//! guest, NAPI vs threaded NAPI vs upstream threaded busy poll vs KBP, side by side in
//! one run. Writes `target/kbp/bench/results.json`, `report.md` and SVG plots
//! (`bench_report.rs`).
//!
//! One fresh guest boot per mode; in every mode the same CPUs do the same jobs:
//!
//! ```text
//! CPU 0      every virtio-net interrupt (set so in every mode); in `napi` mode
//!            NET_RX runs here; the competition load runs here
//! CPU 2      the echo server (kbp-echo, plain UdpSocket), pinned
//! CPU 3      every polling thread: napi/eth0-* (threaded, busy-poll), kbp/3 (KBP)
//! ```
//!
//! Per mode: idle cost; a warm-up of every frame size (discarded: TCG's first
//! translation of new code paths makes RTTs of 25-30 ms); echo trials at a low and a
//! high fixed rate, 64/512/1518-byte frames, repeated; the zero-loss rate by binary
//! search; "many queues" (16 flows over both queue pairs, polling CPU measured); the
//! container configuration (an echo server in a network namespace behind a veth pair
//! and a bridge in the guest, reached through NAT on a published port, as Docker lays
//! out a bridge network; `nft` in the guest); and
//! the softirq-competition variant (a loopback UDP flood on CPU 0, so NET_RX there has
//! other work; `kbp-ctl flood`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kbp_traffic::{RttSummary, TrialSpec, run_trial, zero_loss_search};
use serde::Serialize;

use crate::bench_report;
use crate::guest::{
    Guest, POLLER_PIDS, QUEUE_PAIRS, VCPUS, cpu_between, cpu_sample, net_rx_softirqs,
};
use crate::guest_test::{MODULE_PATH, build_and_boot};
use crate::initramfs::{ECHO_PORT, GUEST_ADDR};
use crate::progress::{Stage, output};
use crate::stats_file::{GAP_BUCKETS, StatsFile, gap_bucket_text, gap_percentile_bucket};
use crate::{Result, workspace_root};

/// The modes, in report order.
pub const MODES: [&str; 5] = ["napi", "threaded", "busy-poll", "kbp-spin", "kbp-adaptive"];
/// The CPU of every polling thread.
const POLL_CPU: u32 = 3;
/// The echo server's CPU.
const ECHO_CPU: u32 = 2;
/// The CPU of the NIC's interrupts and of the competition load.
const IRQ_CPU: u32 = 0;

/// One echo trial.
#[derive(Clone, Serialize)]
pub struct Trial {
    /// Mode.
    pub mode: String,
    /// `base`, `competition`, `many-queues` or `container`.
    pub variant: String,
    /// Ethernet frame size.
    pub frame_bytes: usize,
    /// Offered rate.
    pub rate_pps: u64,
    /// Repetition index.
    pub rep: u32,
    /// UDP flows.
    pub flows: usize,
    /// Counted packets sent.
    pub sent: u64,
    /// Echoes received.
    pub received: u64,
    /// `sent - received`.
    pub lost: u64,
    /// RTT percentiles, microseconds.
    pub rtt_us: RttSummary,
    /// Growth of the guest's NET_RX softirq count.
    pub net_rx_softirq_delta: u64,
    /// Guest CPU of the polling threads during the trial, percent of one CPU
    /// (measured in the `many-queues` variant).
    pub poller_cpu_percent: Option<f64>,
}

/// The zero-loss rate of one mode and frame size.
#[derive(Clone, Serialize)]
pub struct ZeroLoss {
    /// Mode.
    pub mode: String,
    /// Ethernet frame size.
    pub frame_bytes: usize,
    /// Highest rate with no loss, packets/s.
    pub pps: u64,
    /// Every trial of the search: (rate, lost).
    pub trials: Vec<(u64, u64)>,
}

/// What a mode costs with no traffic.
#[derive(Clone, Serialize)]
pub struct Idle {
    /// Mode.
    pub mode: String,
    /// All guest CPUs' busy time, percent of one CPU.
    pub guest_busy_percent: f64,
    /// The polling threads' CPU, percent of one CPU.
    pub poller_percent: f64,
}

/// The inside-the-guest delay KBP exists to remove, from kernel tracing (hist triggers
/// and a synthetic event), as a distribution in microseconds.
#[derive(Clone, Serialize)]
pub struct Delay {
    /// Mode.
    pub mode: String,
    /// `base` or `competition`.
    pub variant: String,
    /// What was measured: `NET_RX raise -> softirq entry` (napi) or `poller wake ->
    /// running` (the polling thread's sched_waking -> sched_switch).
    pub what: String,
    /// Events measured.
    pub count: u64,
    /// Percentiles and max, microseconds (None when there were no events: a spinning
    /// poller is never woken).
    pub p50_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
    /// 99.9th percentile.
    pub p99_9_us: Option<u64>,
    /// Maximum.
    pub max_us: Option<u64>,
    /// KBP modes: kbp.ko's own poll-gap histogram over the traced trial (the growth of
    /// its `poll_gaps` records; log2 buckets from 1024 ns): the times between two polls
    /// of an owned instance, so the bound on how long a packet waits for a spinning
    /// poller.
    pub kbp_poll_gaps: Option<[u64; GAP_BUCKETS]>,
}

/// Everything measured; `results.json`.
#[derive(Serialize)]
pub struct Results {
    /// UTC date and time of the run.
    pub date: String,
    /// The host: CPU model, cores, kernel.
    pub machine: String,
    /// The guest kernel release.
    pub guest_kernel: String,
    /// The guest's shape and the CPU plan.
    pub setup: String,
    /// `--quick` was given.
    pub quick: bool,
    /// The low and high fixed rates, packets/s.
    pub rates_pps: [u64; 2],
    /// Seconds of each measured trial.
    pub trial_seconds: f64,
    /// Repetitions of each trial.
    pub reps: u32,
    /// How the warm-up was discarded.
    pub warmup: String,
    /// Modes measured, in order.
    pub modes: Vec<String>,
    /// Every echo trial.
    pub trials: Vec<Trial>,
    /// Zero-loss searches.
    pub zero_loss: Vec<ZeroLoss>,
    /// Idle cost per mode.
    pub idle: Vec<Idle>,
    /// Inside-the-guest delays per mode (traced trials, not in the RTT tables).
    pub delays: Vec<Delay>,
    /// `cargo run --release --example simulated_nic` output (this machine, same run).
    pub userspace_example: String,
    /// `cargo bench -p kbp-examples --bench engine` output (same run).
    pub engine_bench: String,
}

struct Options {
    quick: bool,
    frames: Vec<usize>,
    search_frames: Vec<usize>,
    rates: [u64; 2],
    seconds: f64,
    reps: u32,
    modes: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        quick: false,
        frames: vec![64, 512, 1518],
        search_frames: vec![64, 512, 1518],
        rates: [1_000, 5_000],
        seconds: 10.0,
        reps: 3,
        modes: MODES.iter().map(|m| m.to_string()).collect(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--quick" => {
                o.quick = true;
                o.frames = vec![64, 1518];
                o.search_frames = vec![64];
                o.seconds = 4.0;
                o.reps = 1;
            }
            "--modes" => {
                let list = it.next().ok_or("--modes needs a comma-separated list")?;
                o.modes = list.split(',').map(str::to_string).collect();
                if let Some(bad) = o.modes.iter().find(|m| !MODES.contains(&m.as_str())) {
                    return Err(format!("unknown mode {bad} (modes: {})", MODES.join(",")));
                }
            }
            other => {
                return Err(format!(
                    "unknown flag {other} (flags: --quick, --modes LIST)"
                ));
            }
        }
    }
    Ok(o)
}

/// Puts the guest into `mode` and pins the echo server and the polling threads.
fn set_up(guest: &Guest, mode: &str) -> Result<String> {
    guest.check(&format!("kbp-ctl pin {ECHO_CPU} $(pidof kbp-echo)"))?;
    guest.check(&format!("for i in $(grep virtio0- /proc/interrupts | cut -d: -f1); do echo {IRQ_CPU} > /proc/irq/$i/smp_affinity_list; done"))?;
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
                "insmod {MODULE_PATH} ifaces=eth0 cpus={POLL_CPU} mode=spin"
            ))?;
        }
        "kbp-adaptive" => {
            guest.check(&format!(
                "insmod {MODULE_PATH} ifaces=eth0 cpus={POLL_CPU} mode=adaptive"
            ))?;
        }
        _ => return Err(format!("unknown mode {mode}")),
    }
    if mode != "napi" && !mode.starts_with("kbp") {
        guest.check(&format!("{POLLER_PIDS}; kbp-ctl pin {POLL_CPU} $(pollers)"))?;
    }
    guest.check(&format!("{POLLER_PIDS}; for p in $(pollers); do echo $(cat /proc/$p/comm) $(grep Cpus_allowed_list /proc/$p/status); done"))
}

fn target() -> SocketAddr {
    format!("{GUEST_ADDR}:{ECHO_PORT}")
        .parse()
        .expect("address")
}

struct TrialPlan<'a> {
    target: SocketAddr,
    mode: &'a str,
    variant: &'a str,
    frame: usize,
    rate: u64,
    rep: u32,
    flows: usize,
    seconds: f64,
    measure_cpu: bool,
}

fn trial(guest: &Guest, p: &TrialPlan<'_>) -> Result<Trial> {
    let before = net_rx_softirqs(guest)?;
    let cpu0 = if p.measure_cpu {
        Some(cpu_sample(guest)?)
    } else {
        None
    };
    let spec = TrialSpec {
        target: p.target,
        rate_pps: p.rate,
        frame_bytes: p.frame,
        packets: (p.rate as f64 * p.seconds) as u64,
        warmup_packets: p.rate / 5,
        grace: Duration::from_secs(2),
        flows: p.flows,
        bursts: None,
        stop: None,
    };
    let r = run_trial(&spec).map_err(|e| format!("load generator: {e}"))?;
    let poller_cpu_percent = match cpu0 {
        Some(a) => Some(cpu_between(a, cpu_sample(guest)?).0),
        None => None,
    };
    let after = net_rx_softirqs(guest)?;
    let t = Trial {
        mode: p.mode.into(),
        variant: p.variant.into(),
        frame_bytes: p.frame,
        rate_pps: p.rate,
        rep: p.rep,
        flows: p.flows,
        sent: r.sent,
        received: r.received,
        lost: r.lost,
        rtt_us: r.rtt_us,
        net_rx_softirq_delta: after
            .iter()
            .sum::<u64>()
            .saturating_sub(before.iter().sum()),
        poller_cpu_percent,
    };
    println!(
        "[xtask]   {:<12} {:<11} {:>4} B {:>5} pps #{}  lost {:>4}  rtt us p50 {:>8.1} p99 {:>8.1} p99.9 {:>8.1} max {:>8.1}  NET_RX +{}{}",
        t.mode,
        t.variant,
        t.frame_bytes,
        t.rate_pps,
        t.rep,
        t.lost,
        t.rtt_us.p50,
        t.rtt_us.p99,
        t.rtt_us.p99_9,
        t.rtt_us.max,
        t.net_rx_softirq_delta,
        t.poller_cpu_percent
            .map_or(String::new(), |c| format!("  pollers {c:.0}%"))
    );
    Ok(t)
}

/// The zero-loss search's upper bound: above what this emulated guest sustains (56 kpps
/// of 64 B echo in `napi` mode, measured once the meter's own sockets stopped dropping
/// replies; the old 40 kpps bound was reached).
pub const ZERO_LOSS_CEILING_PPS: u64 = 80_000;

/// The container's address (inside the guest, behind a bridge on 10.78.0.0/24).
const CONTAINER_ADDR: &str = "10.78.0.2";
/// The guest port the NAT forwards to the container's echo server (Docker's
/// `-p 9001:9000/udp`); the guest's own echo server keeps `ECHO_PORT`.
const CONTAINER_PUBLISHED_PORT: u16 = 9001;

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

/// The paper's container configuration: a network namespace holding a second echo
/// server (pinned like the first), behind a veth pair, a bridge and NAT in the guest,
/// as a Docker bridge network with a published port lays it out. The host sends to the
/// guest's own address. Returns the published address.
fn set_up_container(guest: &Guest) -> Result<SocketAddr> {
    let pid = guest.check("unshare -n sleep 1000000 > /dev/null 2>&1 & echo $!")?;
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| format!("container: no namespace holder pid in {pid:?}"))?;
    guest.check(&format!(
        "sleep 0.3 && kbp-ctl veth veth0 ceth0 {pid} && brctl addbr br0 && brctl addif br0 veth0 && \
         ip addr add 10.78.0.1/24 dev br0 && ip link set br0 up && ip link set veth0 up && echo 1 > /proc/sys/net/ipv4/ip_forward && \
         nsenter -t {pid} -n sh -c 'ip link set lo up && ip addr add {CONTAINER_ADDR}/24 dev ceth0 && ip link set ceth0 up && \
         ip route add default via 10.78.0.1; echo 4194304 > /proc/sys/net/core/rmem_default; echo 4194304 > /proc/sys/net/core/rmem_max; true'"
    ))?;
    // The agent takes one line per command: the ruleset's newlines travel as printf's `\n`.
    let ruleset = container_nat_ruleset().replace('\n', "\\n");
    guest.check(&format!("printf '{ruleset}' > /tmp/kbp-nat.nft && nft -f /tmp/kbp-nat.nft && nft list table ip kbp_nat > /dev/null"))?;
    let echo = guest.check(&format!(
        "nsenter -t {pid} -n kbp-echo 0.0.0.0:{ECHO_PORT} > /dev/null 2>&1 & echo $!"
    ))?;
    guest.check(&format!(
        "sleep 0.3; kbp-ctl pin {ECHO_CPU} {}",
        echo.trim()
    ))?;
    Ok(format!("{GUEST_ADDR}:{CONTAINER_PUBLISHED_PORT}")
        .parse()
        .expect("address"))
}

fn start_load(guest: &Guest) -> Result {
    guest
        .check(&format!(
            "(kbp-ctl flood {IRQ_CPU} > /dev/null 2>&1 &) ; sleep 1; pidof kbp-ctl"
        ))
        .map(drop)
}

fn stop_load(guest: &Guest) -> Result {
    guest.check("kill $(pidof kbp-ctl); true").map(drop)
}

const TRACING: &str = "/sys/kernel/tracing";

/// Arms the hist triggers that feed the synthetic event `kbp_lat`: for `napi` the time
/// from raising NET_RX on a CPU to the softirq's entry there; for polling-thread modes
/// the time from waking a `kbp/*` or `napi/*` thread to it running. Clears the
/// histogram (a trial may have run before).
fn trace_start(guest: &Guest, mode: &str) -> Result<&'static str> {
    let (what, arm) = if mode == "napi" {
        (
            "NET_RX raise -> softirq entry",
            "echo 'hist:keys=common_cpu:ts0=common_timestamp.usecs if vec == 3' > events/irq/softirq_raise/trigger && \
             echo 'hist:keys=common_cpu:lat=common_timestamp.usecs-$ts0:onmatch(irq.softirq_raise).trace(kbp_lat,$lat) if vec == 3' > events/irq/softirq_entry/trigger",
        )
    } else {
        (
            "poller wake -> running",
            "echo 'hist:keys=pid:ts0=common_timestamp.usecs if comm ~ \"kbp/*\" || comm ~ \"napi/*\"' > events/sched/sched_waking/trigger && \
             echo 'hist:keys=next_pid:lat=common_timestamp.usecs-$ts0:onmatch(sched.sched_waking).trace(kbp_lat,$lat) if next_comm ~ \"kbp/*\" || next_comm ~ \"napi/*\"' > events/sched/sched_switch/trigger",
        )
    };
    let first = guest
        .exec(&format!("test -e {TRACING}/events/synthetic/kbp_lat"))?
        .0
        != 0;
    if first {
        // The mono clock is comparable across CPUs (the wake and the run of a thread may
        // be on different CPUs); the default local clock is not.
        guest.check(&format!(
            "cd {TRACING} && echo mono > trace_clock && echo 'kbp_lat u64 lat' >> synthetic_events && {arm} && \
             echo 'hist:keys=lat:sort=lat:size=4096' > events/synthetic/kbp_lat/trigger"
        ))?;
    } else {
        guest.check(&format!("echo 'hist:keys=lat:sort=lat:size=4096:clear' >> {TRACING}/events/synthetic/kbp_lat/trigger"))?;
    }
    Ok(what)
}

/// Reads the `kbp_lat` histogram (`{ lat: N } hitcount: C` lines).
fn trace_read(guest: &Guest, mode: &str, variant: &str, what: &str) -> Result<Delay> {
    let text = guest.check(&format!("cat {TRACING}/events/synthetic/kbp_lat/hist"))?;
    let mut buckets: Vec<(u64, u64)> = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with("{ lat:"))
    {
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|x| x.parse().ok())
            .collect();
        // A negative difference (wrapped) would be a clock artefact: not a delay.
        if let [lat, count] = nums.as_slice()
            && *lat < 1 << 40
        {
            buckets.push((*lat, *count));
        }
    }
    buckets.sort_unstable();
    let count: u64 = buckets.iter().map(|b| b.1).sum();
    let pick = |p: f64| -> Option<u64> {
        let rank = ((p / 100.0) * count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        buckets
            .iter()
            .find(|&&(_, c)| {
                seen += c;
                seen >= rank
            })
            .map(|b| b.0)
    };
    Ok(Delay {
        mode: mode.into(),
        variant: variant.into(),
        what: what.into(),
        count,
        p50_us: pick(50.0),
        p99_us: pick(99.0),
        p99_9_us: pick(99.9),
        max_us: buckets.last().map(|b| b.0),
        kbp_poll_gaps: None,
    })
}

/// Everything for one mode, in one boot.
fn bench_mode(mode: &str, o: &Options, results: &mut Results) -> Result {
    let stage = Stage::start(format!("bench mode {mode}"));
    let (release, guest) = build_and_boot(&format!("bench-{mode}.log"))?;
    results.guest_kernel = release;
    let pinning = set_up(&guest, mode)?;
    for line in pinning.lines() {
        println!("[xtask]   poller {line}");
    }

    // Idle cost: 3 s without traffic.
    std::thread::sleep(Duration::from_secs(1));
    let a = cpu_sample(&guest)?;
    std::thread::sleep(Duration::from_secs(3));
    let (poller_percent, guest_busy_percent) = cpu_between(a, cpu_sample(&guest)?);
    println!(
        "[xtask]   idle: pollers {poller_percent:.0}% of a CPU, whole guest {guest_busy_percent:.0}%"
    );
    results.idle.push(Idle {
        mode: mode.into(),
        guest_busy_percent,
        poller_percent,
    });

    // Warm-up, discarded: every frame size once at the low rate.
    for &frame in &o.frames {
        let spec = TrialSpec {
            target: target(),
            rate_pps: o.rates[0],
            frame_bytes: frame,
            packets: 3_000,
            warmup_packets: 0,
            grace: Duration::from_millis(500),
            flows: 1,
            bursts: None,
            stop: None,
        };
        run_trial(&spec).map_err(|e| format!("warm-up: {e}"))?;
    }

    let plan = |variant, frame, rate, rep, flows, measure_cpu| TrialPlan {
        target: target(),
        mode,
        variant,
        frame,
        rate,
        rep,
        flows,
        seconds: o.seconds,
        measure_cpu,
    };
    for &frame in &o.frames {
        for rate in o.rates {
            for rep in 0..o.reps {
                results
                    .trials
                    .push(trial(&guest, &plan("base", frame, rate, rep, 1, false))?);
            }
        }
    }
    for &frame in &o.search_frames {
        let r = zero_loss_search(
            target(),
            frame,
            1,
            500,
            ZERO_LOSS_CEILING_PPS,
            if o.quick { 2.0 } else { 3.0 },
            if o.quick { 6 } else { 8 },
        )
        .map_err(|e| e.to_string())?;
        println!("[xtask]   zero-loss {frame} B: {} pps", r.zero_loss_pps);
        results.zero_loss.push(ZeroLoss {
            mode: mode.into(),
            frame_bytes: frame,
            pps: r.zero_loss_pps,
            trials: r.trials,
        });
    }

    // Many queues: without XPS the guest sends each flow's replies on the queue its
    // hash picks, and the host tap steers the flow's requests to that queue.
    guest.check("for f in /sys/class/net/eth0/queues/tx-*/xps_cpus; do echo 0 > $f; done")?;
    for rep in 0..o.reps {
        results.trials.push(trial(
            &guest,
            &plan("many-queues", 64, o.rates[0], rep, 16, true),
        )?);
    }

    start_load(&guest)?;
    for &frame in &o.frames {
        for rep in 0..o.reps {
            results.trials.push(trial(
                &guest,
                &plan("competition", frame, o.rates[0], rep, 1, false),
            )?);
        }
    }
    stop_load(&guest)?;

    let container = set_up_container(&guest)?;
    for &frame in &o.frames {
        for rep in 0..o.reps {
            results.trials.push(trial(
                &guest,
                &TrialPlan {
                    target: container,
                    ..plan("container", frame, o.rates[0], rep, 1, false)
                },
            )?);
        }
    }

    // Last, because tracing costs: the delay distributions, without and with load.
    for variant in ["base", "competition"] {
        if variant == "competition" {
            start_load(&guest)?;
        }
        let kbp_stats = || -> Result<Option<StatsFile>> {
            if !mode.starts_with("kbp") {
                return Ok(None);
            }
            let text = guest.check("cat /sys/kernel/debug/kbp/stats")?;
            StatsFile::parse(&text)
                .map(Some)
                .ok_or_else(|| format!("unreadable kbp stats: {text}"))
        };
        let before = kbp_stats()?;
        let what = trace_start(&guest, mode)?;
        trial(&guest, &plan("traced", 64, o.rates[0], 0, 1, false))?;
        let mut d = trace_read(&guest, mode, variant, what)?;
        if let (Some(before), Some(after)) = (before, kbp_stats()?) {
            let mut gaps = after.poll_gaps();
            gaps.iter_mut()
                .zip(before.poll_gaps())
                .for_each(|(a, b)| *a = a.saturating_sub(b));
            d.kbp_poll_gaps = Some(gaps);
        }
        let gap_p99 = d
            .kbp_poll_gaps
            .and_then(|g| gap_percentile_bucket(&g, 99.0))
            .map(gap_bucket_text);
        println!(
            "[xtask]   delay {variant}: {} over {} events: p50 {:?} p99 {:?} p99.9 {:?} max {:?} us; kbp poll gaps {:?} (p99 {gap_p99:?})",
            d.what, d.count, d.p50_us, d.p99_us, d.p99_9_us, d.max_us, d.kbp_poll_gaps
        );
        results.delays.push(d);
        if variant == "competition" {
            stop_load(&guest)?;
        }
    }
    guest.power_off(Duration::from_secs(60))?;
    stage.done();
    Ok(())
}

fn host_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    format!("{model}, {cores} cores, host kernel {kernel}")
}

/// Runs a userspace figure command and returns its output.
fn userspace(args: &[&str]) -> Result<String> {
    let stage = Stage::start(format!("cargo {}", args.join(" ")));
    let out = output(
        Command::new("cargo")
            .current_dir(workspace_root())
            .args(args),
    )?;
    stage.done();
    Ok(out)
}

/// `cargo xtask bench`.
pub fn run(args: &[String]) -> Result {
    let o = parse(args)?;
    let dir: PathBuf = workspace_root().join("target/kbp/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // Userspace figures first, while no guest competes for the two cores.
    let userspace_example = userspace(&[
        "run",
        "--release",
        "-q",
        "-p",
        "kbp-examples",
        "--example",
        "simulated_nic",
    ])?;
    let engine_bench = userspace(&["bench", "-q", "-p", "kbp-examples", "--bench", "engine"])?;
    let date = output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?
        .trim()
        .to_string();
    let mut results = Results {
        date,
        machine: host_description(),
        guest_kernel: String::new(),
        setup: format!(
            "QEMU TCG guest, {VCPUS} vCPUs, 1 GiB, virtio-net with {QUEUE_PAIRS} queue pairs on a multi-queue tap; every virtio-net IRQ on CPU {IRQ_CPU}, \
             echo server pinned to CPU {ECHO_CPU}, every polling thread pinned to CPU {POLL_CPU}; competition load: a loopback UDP flood \
             pinned to CPU {IRQ_CPU} (kbp-ctl flood)"
        ),
        quick: o.quick,
        rates_pps: o.rates,
        trial_seconds: o.seconds,
        reps: o.reps,
        warmup: "per mode, 3000 packets of each frame size at the low rate right after boot, then the first 0.2 s of every trial; none of it counted".into(),
        modes: o.modes.clone(),
        trials: Vec::new(),
        zero_loss: Vec::new(),
        idle: Vec::new(),
        delays: Vec::new(),
        userspace_example,
        engine_bench,
    };
    for mode in &o.modes {
        bench_mode(mode, &o, &mut results)?;
        // Written after every mode, so an interrupted run keeps what it measured.
        bench_report::write(&dir, &results)?;
    }
    println!(
        "[xtask] wrote {}/report.md, results.json, fig8-max-rtt*.svg, fig9-zero-loss.svg",
        dir.display()
    );
    Ok(())
}
