//! `cargo xtask bench [--quick] [--modes LIST]`: the paper's latency and throughput
//! experiments in the guest, NAPI vs threaded NAPI vs upstream threaded busy poll vs
//! KBP, side by side in one run. Writes `target/kbp/bench/results.json`, `report.md` and
//! SVG plots (`report.rs`).
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the options, [`run`] (userspace figures, then one mode after another) and `bench_mode` (every scenario of one mode, in one boot) |
//! | `model.rs` | what is measured: `Trial`, `ZeroLoss`, `Idle`, `Results` (`results.json`); the traced `Delay` is [`crate::guest::tracing`]'s |
//! | `setup.rs` | a mode's configuration and the CPU plan, the container behind NAT, the competition load |
//! | `trial.rs` | one echo trial: load generator, NET_RX count, polling CPU |
//! | `report.rs` | `report.md` and the plots, from `Results` |
//! | `cost.rs` | guest CPU per received packet, in instructions: one icount boot per mode, one vCPU (after the modes; `--no-cost`, `--cost-only`) |
//! | `cost_fit.rs` | the cost stage's arithmetic: the no-traffic background and the net busy time per packet |
//! | `cost_report.rs` | the cost stage's table in `report.md` and the verdict on the 1.05x goal |
//!
//! One fresh guest boot per mode (`setup::set_up`); in every mode the same CPUs do the
//! same jobs:
//!
//! ```text
//! CPU 0      every virtio-net interrupt (set so in every mode); in `napi` mode
//!            NET_RX runs here; the competition loads run here
//! CPU 1      the `deferral` load's flood threads (RPS sends their packets to CPU 0)
//! CPU 2      the echo server (kbp-echo, plain UdpSocket), pinned
//! CPU 3      every polling thread: napi/eth0-* (threaded, busy-poll), kbp/3 (KBP)
//! ```
//!
//! | mode | set up by `setup::set_up` as |
//! |---|---|
//! | `napi` | nothing: stock softirq NAPI |
//! | `threaded` | `echo 1 > /sys/class/net/eth0/threaded` |
//! | `busy-poll` | threaded, then `kbp-ctl napi-threaded ID busy-poll` for every RX NAPI |
//! | `kbp-spin` | `insmod kbp.ko ifaces=eth0 cpus=3 mode=spin` |
//! | `kbp-adaptive` | `insmod kbp.ko ifaces=eth0 cpus=3 mode=adaptive` |
//!
//! The scenarios of one mode, in the order `bench_mode` runs them (the `variant` of a
//! [`model::Trial`] names the trials'):
//!
//! | scenario | `results.json` | what | code |
//! |---|---|---|---|
//! | idle cost | `idle` | 3 s without traffic: polling threads' and whole guest's CPU | `bench_mode` |
//! | warm-up | - | 3000 packets of every frame size, discarded (TCG's first translation of new code paths makes RTTs of 25-30 ms) | `bench_mode` |
//! | echo | `trials`, `base` | low and high fixed rate x 64/512/1518-byte frames x repetitions | `bench_mode`, `trial::trial` |
//! | zero-loss | `zero_loss` | binary search up to [`ZERO_LOSS_CEILING_PPS`] | `bench_mode` |
//! | many queues | `trials`, `many-queues` | 16 flows over both queue pairs (XPS off), polling CPU measured | `bench_mode` |
//! | competition | `trials`, `competition` | a loopback UDP flood on CPU 0 (`kbp-ctl flood`), so NET_RX there has other work | `setup::start_load`, `Load::Flood` |
//! | deferral | `trials`, `deferral` | the paper's mechanism: a flood on CPU 1 steered by RPS into CPU 0's backlog (softirq work beyond `__do_softirq`'s limits: NET_RX deferred to `ksoftirqd/0`) and CPU-bound threads on CPU 0 at `ksoftirqd`'s priority (`kbp-ctl spin`) | `setup::start_load`, `Load::Deferral` |
//! | container | `trials`, `container` | an echo server in a network namespace behind a veth pair, a bridge and NAT on a published port, as Docker lays out a bridge network (`nft` in the guest); the veth hop is `process_backlog` in NET_RX_SOFTIRQ | `setup::set_up_container` |
//! | container, veth NAPI | `trials`, `container-veth` | the same with GRO on and TSO off on both veth ends (each end receives through its NAPI instance); in the kbp modes kbp.ko is reloaded to own both ends too (`ifaces=eth0,veth0,ceth0@PID`), so no NET_RX_SOFTIRQ on the whole path | `setup::own_container_veths` |
//! | traced delay | `delays` (and `traced` trials, not in the tables) | in-guest delay from hist triggers, without load and under each load; KBP modes add kbp.ko's poll-gap histogram; every mode adds `ksoftirqd/0`'s wake to run | [`crate::guest::tracing`] |

mod cost;
mod cost_fit;
mod cost_report;
mod model;
mod report;
mod setup;
mod trial;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kbp_traffic::{TrialSpec, run_trial, zero_loss_search};

use crate::base::progress::{Stage, output};
use crate::base::{Result, workspace_root};
use crate::build::kernel::Flavor;
use crate::guest::host_cpus::{self, allowed_cpus, cpu_list_text, parse_cpu_list, set_affinity};
use crate::guest::probes::{cpu_between, cpu_sample, eth0_rx_queues};
use crate::guest::stats_file::{StatsFile, gap_bucket_text, gap_percentile_bucket};
use crate::guest::tracing::{ksoftirqd_sample, ksoftirqd_since, trace_read, trace_start};
use crate::guest::vm::{Nic, QUEUE_PAIRS, Tcg, VCPUS};
use crate::harness::{ZERO_LOSS_CEILING_PPS, build_and_boot_with};
use crate::suites::bench::model::{Idle, Results, ZeroLoss};
use crate::suites::bench::setup::{
    ECHO_CPU, IRQ_CPU, Load, POLL_CPU, own_container_veths, set_up, set_up_container, start_load,
    stop_load,
};
use crate::suites::bench::trial::{TrialPlan, target, trial};

/// The competition loads, in the order they run (each a trial `variant`).
const LOADS: [Load; 2] = [Load::Flood, Load::Deferral];

/// The modes, in report order.
pub const MODES: [&str; 5] = ["napi", "threaded", "busy-poll", "kbp-spin", "kbp-adaptive"];

struct Options {
    quick: bool,
    frames: Vec<usize>,
    search_frames: Vec<usize>,
    rates: [u64; 2],
    seconds: f64,
    reps: u32,
    modes: Vec<String>,
    /// The host cores the guest may use (`--host-cpus`, default: the xtask's affinity).
    host_cpus: Vec<usize>,
    /// Run the per-packet cost stage (`--no-cost`: not).
    cost: bool,
    /// Run only the per-packet cost stage (`--cost-only`).
    cost_only: bool,
    /// `--nic NAME`: the guest's NIC model (the cost stage stays on virtio-net).
    nic: Nic,
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
        host_cpus: allowed_cpus()?,
        cost: true,
        cost_only: false,
        nic: Nic::Virtio,
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
            "--no-cost" => o.cost = false,
            "--nic" => o.nic = Nic::parse(it.next().ok_or("--nic needs a model name")?)?,
            "--cost-only" => o.cost_only = true,
            "--host-cpus" => {
                let list = it.next().ok_or("--host-cpus needs a CPU list (e.g. 2-7)")?;
                let cpus = parse_cpu_list(list)?;
                let allowed = allowed_cpus()?;
                if let Some(bad) = cpus.iter().find(|c| !allowed.contains(c)) {
                    return Err(format!(
                        "--host-cpus {list}: CPU {bad} is not one this process may use ({})",
                        cpu_list_text(&allowed)
                    ));
                }
                o.host_cpus = cpus;
            }
            other => {
                return Err(format!(
                    "unknown flag {other} (flags: --quick, --modes LIST, --host-cpus LIST, --no-cost, --cost-only, --nic virtio|e1000e|vmxnet3|igb)"
                ));
            }
        }
    }
    Ok(o)
}

/// The log-name prefix of a NIC model other than virtio-net (`igb-`).
fn nic_prefix(nic: Nic) -> String {
    match nic {
        Nic::Virtio => String::new(),
        nic => format!("{}-", nic.name()),
    }
}

/// Everything for one mode, in one boot.
fn bench_mode(mode: &str, o: &Options, results: &mut Results) -> Result {
    let stage = Stage::start(format!("bench mode {mode}"));
    // QEMU inherits this thread's affinity: every core of the run until it is laid out.
    set_affinity(0, &o.host_cpus)?;
    let (release, guest) = build_and_boot_with(
        &format!("bench-{}{mode}.log", nic_prefix(o.nic)),
        Flavor::Normal,
        Tcg::MultiThread,
        o.nic,
    )?;
    results.guest_kernel = release;
    let qemu = guest.qemu_pid().ok_or("no QEMU process")?;
    let layout = host_cpus::apply(qemu, VCPUS, &o.host_cpus)?;
    println!("[xtask]   host: {}", layout.line);
    results.oversubscribed |= layout.oversubscribed;
    if !results.host_layout.contains(&layout.line) {
        results.host_layout.push(layout.line.clone());
    }
    // The load generator (this thread and the threads it starts) on the spare cores.
    if !layout.spare.is_empty() {
        set_affinity(0, &layout.spare)?;
    }
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
    // hash picks, and the host tap steers the flow's requests to that queue. A NIC
    // with one RX queue (e1000e) has nothing to spread: not run.
    let rx_queues = eth0_rx_queues(&guest)?;
    if rx_queues >= 2 {
        guest.check("for f in /sys/class/net/eth0/queues/tx-*/xps_cpus; do echo 0 > $f; done")?;
        for rep in 0..o.reps {
            results.trials.push(trial(
                &guest,
                &plan("many-queues", 64, o.rates[0], rep, 16, true),
            )?);
        }
    } else {
        let why = format!("many-queues: {} has {rx_queues} RX queue", o.nic.name());
        println!("[xtask]   not run: {why}");
        if !results.not_run.contains(&why) {
            results.not_run.push(why);
        }
    }

    for load in LOADS {
        start_load(&guest, load)?;
        for &frame in &o.frames {
            for rep in 0..o.reps {
                results.trials.push(trial(
                    &guest,
                    &plan(load.variant(), frame, o.rates[0], rep, 1, false),
                )?);
            }
        }
        stop_load(&guest)?;
    }

    let container = set_up_container(&guest)?;
    for variant in ["container", "container-veth"] {
        if variant == "container-veth" {
            let line = own_container_veths(&guest, mode, &container)?;
            println!("[xtask]   container-veth: {line}");
        }
        for &frame in &o.frames {
            for rep in 0..o.reps {
                results.trials.push(trial(
                    &guest,
                    &TrialPlan {
                        target: container.published,
                        ..plan(variant, frame, o.rates[0], rep, 1, false)
                    },
                )?);
            }
        }
    }

    // Last, because tracing costs: the delay distributions, without and with load.
    for load in [None, Some(Load::Flood), Some(Load::Deferral)] {
        let variant = load.map_or("base", Load::variant);
        if let Some(load) = load {
            start_load(&guest, load)?;
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
        let what = trace_start(&guest, mode, IRQ_CPU)?;
        let ksd_before = ksoftirqd_sample(&guest, IRQ_CPU)?;
        trial(&guest, &plan("traced", 64, o.rates[0], 0, 1, false))?;
        let ksd = ksoftirqd_since(&ksd_before, &ksoftirqd_sample(&guest, IRQ_CPU)?);
        let [mut d, mut ksoftirqd] = trace_read(&guest, mode, variant, what, IRQ_CPU)?;
        ksoftirqd.ksoftirqd = Some(ksd);
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
        println!(
            "[xtask]   delay {variant}: {} over {} events: p50 {:?} p99 {:?} p99.9 {:?} max {:?} us; over the trial it ran {} ms, waited {} ms in {} slices; CPU {IRQ_CPU} NET_RX +{}, time_squeeze +{}",
            ksoftirqd.what,
            ksoftirqd.count,
            ksoftirqd.p50_us,
            ksoftirqd.p99_us,
            ksoftirqd.p99_9_us,
            ksoftirqd.max_us,
            ksd.ran_ms,
            ksd.waited_ms,
            ksd.slices,
            ksd.net_rx,
            ksd.time_squeeze
        );
        results.delays.push(d);
        results.delays.push(ksoftirqd);
        if load.is_some() {
            stop_load(&guest)?;
        }
    }
    // The mode's figures are in: a guest that does not power off is reported (QEMU is
    // killed), not fatal. Seen once, e1000e in busy-poll mode (2026-11-29 04:04 UTC),
    // after KBP-GUEST-POWEROFF; upstream threaded busy poll keeps its instances, and
    // e1000e's shutdown path waits in napi_synchronize (the hang KBP's idle release
    // avoids), which is the likely cause, not established.
    if let Err(e) = guest.power_off(Duration::from_secs(60)) {
        let first = e.lines().next().unwrap_or_default();
        println!("[xtask]   {mode}: {first}; QEMU killed");
        results.incidents.push(format!(
            "{mode}: {first} (QEMU killed after the mode's measurements)"
        ));
    }
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
    let dir: PathBuf = workspace_root().join(match o.nic {
        Nic::Virtio => "target/kbp/bench".to_string(),
        nic => format!("target/kbp/bench-{}", nic.name()),
    });
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
        host_layout: Vec::new(),
        oversubscribed: false,
        setup: format!(
            "QEMU TCG guest, {VCPUS} vCPUs, 1 GiB, {}; every NIC IRQ on CPU {IRQ_CPU}, \
             echo server pinned to CPU {ECHO_CPU}, every polling thread pinned to CPU {POLL_CPU}; competition loads: {}",
            match o.nic {
                Nic::Virtio => format!("virtio-net with {QUEUE_PAIRS} queue pairs on a multi-queue tap"),
                nic => format!("{} NIC on a single-queue tap", nic.name()),
            },
            LOADS.map(Load::describe).join("; ")
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
        costs: Vec::new(),
        cost_errors: Vec::new(),
        not_run: Vec::new(),
        incidents: Vec::new(),
        userspace_example,
        engine_bench,
    };
    if !o.cost_only {
        for mode in &o.modes {
            bench_mode(mode, &o, &mut results)?;
            // Written after every mode, so an interrupted run keeps what it measured.
            report::write(&dir, &results)?;
        }
    }
    if o.nic != Nic::Virtio && (o.cost || o.cost_only) {
        println!(
            "[xtask] the per-packet cost stage runs on virtio-net only; not run with --nic {}",
            o.nic.name()
        );
    } else if o.cost || o.cost_only {
        for mode in &o.modes {
            set_affinity(0, &o.host_cpus)?;
            // A failed cost stage is reported, not fatal: the figures above stand.
            match cost::cost_mode(mode) {
                Ok(c) => results.costs.extend(c),
                Err(e) => {
                    println!("[xtask]   cost {mode} failed: {e}");
                    results.cost_errors.push(format!("{mode}: {e}"));
                }
            }
            report::write(&dir, &results)?;
        }
        for line in cost_report::goal_lines(&results.costs) {
            println!("[xtask] {line}");
        }
    }
    println!(
        "[xtask] wrote {}/report.md, results.json, fig8-max-rtt*.svg, fig9-zero-loss.svg",
        dir.display()
    );
    Ok(())
}
