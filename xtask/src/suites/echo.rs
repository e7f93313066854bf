//! `cargo xtask guest-test [--quick]`: build or reuse the kernel and initramfs, boot the
//! guest, run UDP echo scenarios against the unmodified echo server, and write
//! `target/kbp/guest-test.json` (serial log `target/kbp/guest.log`). Exit 0 only when
//! every scenario passes: no packet lost, no kernel warning in the guest log.
//!
//! The scenarios, in the order [`run`] runs them, by their record in the report (a
//! scenario's `mode`, or a field of its own):
//!
//! | record | what |
//! |---|---|
//! | `napi` | stock kernel, 64/512/1518-byte frames |
//! | `kbp-spin` | module loaded, one thread on CPU 3 (load/unload times and the idle thread's CPU in `module_cycles`), every frame size |
//! | `kbp-spin-after-link-flap` | `ip link set eth0 down && up` while owned, then echo |
//! | `kbp-adaptive` | module loaded in adaptive mode (200 µs window), one thread on CPU 3, every frame size |
//! | `kbp-spin-2-threads` | two threads (CPUs 2 and 3), 16 UDP flows (`kbp-ctl udp-hash` first, for igb): when the NIC spreads them over two or more instances, those must not all be on one thread; not run on a NIC with one RX queue |
//! | `napi-after-unload` | echo after rmmod |
//! | `unload-under-traffic` | rmmod halfway through the traffic (`scenario_with`) |
//! | `bad_params` | every load in [`BAD_PARAMS`] must be refused with a line naming the parameter |
//! | `unregister`, `napi-after-rebind` | the owned device unbound while two threads own it (`unregister_while_owned`), then echo |
//! | `container` | the echo server in a container's network namespace behind veth + bridge + NAT, GRO on both veth ends, in `napi`, with kbp.ko owning eth0 only (spin and adaptive), and owning eth0 and both veth ends (`ifaces=eth0,veth0,ceth0@PID`, spin and adaptive), at a quarter of the UDP rate: NET_RX of the whole path per mode, 0 required with the veths owned ([`container`]) |
//! | `zero_loss_search_64b` | RFC 2544 zero-loss rate, 64 B (not with `--quick`) |
//! | `tcp` | in `napi` and in each kbp mode (inside its module cycle): TCP request/response over one connection, then a bulk transfer host -> guest and guest -> host against `kbp-tcp`, with the sender's retransmissions and both sides' TCP counters (`tcp_scenario`) |
//! | `tcp_goal` | each kbp mode against `napi` of the same run: retransmissions no higher, throughput at least 0.95x, each way (reported, not judged: see [`TcpGoal`]) |
//!
//! `--container-only` runs just the `container` record
//! (`target/kbp/guest-test-container.json`). `--tcp-only` runs just the `tcp` records
//! (napi, then each kbp mode) and writes `target/kbp/guest-test-tcp.json`;
//! `--tcp-seconds S` sets the bulk length (8 s, 4 s with `--quick`).

mod container;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kbp_traffic::{RttSummary, SearchResult, TrialSpec, run_trial, zero_loss_search};
use serde::Serialize;

use crate::base::progress::Stage;
use crate::base::{Result, workspace_root};
use crate::build::initramfs::{ECHO_PORT, GUEST_ADDR};
use crate::build::kernel::Flavor;
use crate::guest::probes::{cpu_between, cpu_sample, eth0_rx_queues, net_rx_softirqs};
use crate::guest::stats_file::StatsFile;
use crate::guest::tcp::{Direction, TcpOptions, TcpRun, measure, shown};
use crate::guest::vm::{Guest, Nic, Tcg, VCPUS, count_warnings};
use crate::harness::{
    BAD_PARAMS, DEVICE_AND_DRIVER, Drops, MODULE_PATH, ZERO_LOSS_CEILING_PPS, build_and_boot_with,
};

/// Frame sizes of every scenario (Ethernet, with FCS).
pub const FRAMES: [usize; 3] = [64, 512, 1518];

/// One scenario's record in the JSON file.
#[derive(Serialize)]
pub struct Scenario {
    /// `napi` (stock kernel), later `kbp-spin` / `kbp-adaptive`.
    pub mode: String,
    /// Ethernet frame size.
    pub frame_bytes: usize,
    /// Offered rate.
    pub rate_pps: u64,
    /// Packets sent (after the warm-up).
    pub sent: u64,
    /// Echoes received.
    pub received: u64,
    /// `sent - received`.
    pub lost: u64,
    /// RTT percentiles, microseconds.
    pub rtt_us: RttSummary,
    /// Growth of the guest's NET_RX softirq count during the scenario (warm-up included).
    pub net_rx_softirq_delta: u64,
    /// The same, per guest CPU.
    pub net_rx_softirq_delta_per_cpu: Vec<u64>,
    /// WARN/BUG/Oops/soft lockup/RCU stall/hung task lines logged during the scenario.
    pub kernel_warnings: usize,
    /// Packets the KBP threads processed during the scenario (kbp modes; from debugfs).
    pub kbp_packets: Option<u64>,
    /// The same per KBP thread, by CPU.
    pub kbp_packets_per_thread: Option<Vec<u64>>,
    /// The KBP instances (thread CPU, index) that carried at least 5% of the echoes.
    pub busy_instances: Option<Vec<(i64, i64)>>,
    /// UDP flows the load generator spread the packets over.
    pub flows: usize,
    /// Where lost packets were dropped: the guest's UDP receive-buffer errors and the
    /// host tap's TX drops (QEMU not reading the tap fast enough) during the scenario.
    pub drops: Drops,
    /// A guest command run while the traffic flowed (e.g. `rmmod kbp`) and its duration.
    pub during: Option<(String, f64)>,
    /// lost == 0, no kernel warning; in kbp modes also NET_RX below 1% of the packets
    /// received and the KBP counters covering every echoed packet; with several flows,
    /// the busy instances are not all on one thread when there are two or more.
    pub passed: bool,
}

/// A module load that must be refused.
#[derive(Serialize)]
pub struct BadParam {
    /// The parameter under test.
    pub param: String,
    /// The insmod arguments.
    pub args: String,
    /// insmod failed and the module is not loaded.
    pub refused: bool,
    /// The kernel's last `kbp:` line.
    pub dmesg: String,
}

/// One load/unload cycle of a kbp mode.
#[derive(Serialize)]
pub struct ModuleCycle {
    /// `kbp-spin` or `kbp-adaptive`.
    pub mode: String,
    /// insmod arguments.
    pub args: String,
    /// Time of insmod, milliseconds (host side, through the agent).
    pub load_ms: f64,
    /// Time of rmmod, milliseconds.
    pub unload_ms: f64,
    /// The debugfs stats file just before unload.
    pub stats: String,
    /// Guest CPU share of the KBP threads while idle (no traffic), percent of one CPU.
    pub idle_thread_cpu_percent: f64,
    /// `ip link set eth0 down && ip link set eth0 up` while owned, milliseconds.
    pub link_flap_ms: Option<f64>,
}

/// The owned device unregistered (virtio driver unbound) while the module runs.
#[derive(Serialize)]
pub struct Unregister {
    /// Time of the unbind (device unregister), milliseconds, from the guest's uptime.
    pub unbind_ms: f64,
    /// The module's dmesg line about it.
    pub dmesg: String,
    /// rmmod afterwards succeeded.
    pub unloaded: bool,
}

/// One mode's TCP measurement.
#[derive(Serialize)]
pub struct TcpScenario {
    /// `napi`, `kbp-spin`, ...
    pub mode: String,
    /// Request/response and the two bulk transfers with their counters.
    #[serde(flatten)]
    pub run: TcpRun,
    /// Growth of the guest's NET_RX softirq count during the measurement.
    pub net_rx_softirq_delta: u64,
    /// Kernel warning lines logged during the measurement.
    pub kernel_warnings: usize,
    /// The connection works and nothing stalls: every request answered, both transfers
    /// moved data with no read or write blocked for [`TCP_STALL_MS`] or more, both
    /// senders reported their retransmissions, no kernel warning.
    pub passed: bool,
}

/// A read or write of a bulk transfer blocked this long is a stall (a hang, or an RTO
/// backed off several times), milliseconds.
pub const TCP_STALL_MS: f64 = 5_000.0;

/// Issue 13's goal for a kbp mode, against `napi` of the same run: retransmissions no
/// higher and throughput at least 0.95x, each way. Reported, not judged: on this 2-core
/// TCG host, shared with other work, three runs with XPS by receive queue gave every
/// mode 0 or 1 retransmissions (a kbp mode once 1 against napi's 0) and throughput
/// ratios from 0.32x to 1.40x napi's for the same mode: neither is stable enough to
/// fail on.
#[derive(Serialize)]
pub struct TcpGoal {
    /// The kbp mode.
    pub mode: String,
    /// Host -> guest sender retransmissions: (this mode, napi).
    pub to_guest_retrans: (u64, u64),
    /// Host -> guest throughput over napi's.
    pub to_guest_throughput_vs_napi: f64,
    /// Guest -> host sender retransmissions: (this mode, napi).
    pub from_guest_retrans: (u64, u64),
    /// Guest -> host throughput over napi's.
    pub from_guest_throughput_vs_napi: f64,
    /// Request/response p99 over napi's.
    pub rr_p99_vs_napi: f64,
    /// Retransmissions no higher and throughput at least 0.95x, both ways.
    pub met: bool,
}

fn tcp_goal(mode: &TcpScenario, napi: &TcpScenario) -> TcpGoal {
    let pair = |d: fn(&TcpRun) -> &Direction| {
        let (m, n) = (d(&mode.run), d(&napi.run));
        (
            (m.retrans().unwrap_or(u64::MAX), n.retrans().unwrap_or(0)),
            m.bulk.mbit_s / n.bulk.mbit_s.max(1e-9),
        )
    };
    let (to_guest_retrans, to_ratio) = pair(|r| &r.to_guest);
    let (from_guest_retrans, from_ratio) = pair(|r| &r.from_guest);
    TcpGoal {
        mode: mode.mode.clone(),
        to_guest_retrans,
        to_guest_throughput_vs_napi: to_ratio,
        from_guest_retrans,
        from_guest_throughput_vs_napi: from_ratio,
        rr_p99_vs_napi: mode.run.rr.rtt_us.p99 / napi.run.rr.rtt_us.p99.max(1e-9),
        met: to_guest_retrans.0 <= to_guest_retrans.1
            && from_guest_retrans.0 <= from_guest_retrans.1
            && to_ratio >= 0.95
            && from_ratio >= 0.95,
    }
}

fn print_direction(name: &str, d: &Direction) {
    let s = d.bulk.sender.unwrap_or_default();
    println!(
        "[xtask]     {name:<10} {:>8.1} Mbit/s  retrans {} (rto {}, dsack {}, reord {}) stall {:.0} ms srtt {} us{}
[xtask]       host:  {}
[xtask]       guest: {}",
        d.bulk.mbit_s,
        s.total_retrans,
        s.total_rto,
        s.dsack_dups,
        s.reord_seen,
        d.bulk.longest_stall_ms,
        s.rtt_us,
        d.link_lost
            .map_or(String::new(), |n| format!(", lost on the link {n}")),
        shown(&d.host_counters),
        shown(&d.guest_counters),
    );
}

/// TCP request/response and bulk each way in the current mode.
fn tcp_scenario(guest: &Guest, mode: &str, o: &TcpOptions) -> Result<TcpScenario> {
    let log_before = std::fs::read_to_string(&guest.log)
        .unwrap_or_default()
        .len();
    let before = net_rx_softirqs(guest)?;
    let run = measure(guest, o)?;
    let after = net_rx_softirqs(guest)?;
    let log = std::fs::read_to_string(&guest.log).unwrap_or_default();
    let warnings = count_warnings(log.get(log_before..).unwrap_or(""));
    let net_rx_softirq_delta = after
        .iter()
        .zip(before.iter().chain(std::iter::repeat(&0)))
        .map(|(a, b)| a.saturating_sub(*b))
        .sum();
    let bulk_ok = |d: &Direction| {
        d.bulk.bytes > 0 && d.bulk.longest_stall_ms < TCP_STALL_MS && d.bulk.sender.is_some()
    };
    let passed = run.rr.requests > 0
        && run.rr.rtt_us.max > 0.0
        && bulk_ok(&run.to_guest)
        && bulk_ok(&run.from_guest)
        && warnings == 0;
    println!(
        "[xtask]   tcp {mode:<18} rr {} x {} B: p50 {:.1} p99 {:.1} max {:.1} us; NET_RX +{net_rx_softirq_delta} warnings {warnings}  {}",
        run.rr.requests,
        run.rr.request_bytes,
        run.rr.rtt_us.p50,
        run.rr.rtt_us.p99,
        run.rr.rtt_us.max,
        if passed { "ok" } else { "FAIL" }
    );
    print_direction("to guest", &run.to_guest);
    print_direction("from guest", &run.from_guest);
    Ok(TcpScenario {
        mode: mode.into(),
        run,
        net_rx_softirq_delta,
        kernel_warnings: warnings,
        passed,
    })
}

/// The TCP table of a run, and each kbp mode against napi.
fn tcp_summary(tcp: &[TcpScenario]) -> Vec<TcpGoal> {
    println!(
        "[xtask] TCP | mode | to guest Mbit/s | retrans | from guest Mbit/s | retrans | RR p50 / p99 / max us |"
    );
    for t in tcp {
        println!(
            "[xtask] TCP | {} | {:.0} | {} | {:.0} | {} | {:.0} / {:.0} / {:.0} |",
            t.mode,
            t.run.to_guest.bulk.mbit_s,
            t.run
                .to_guest
                .retrans()
                .map_or("-".into(), |r| r.to_string()),
            t.run.from_guest.bulk.mbit_s,
            t.run
                .from_guest
                .retrans()
                .map_or("-".into(), |r| r.to_string()),
            t.run.rr.rtt_us.p50,
            t.run.rr.rtt_us.p99,
            t.run.rr.rtt_us.max,
        );
    }
    let Some(napi) = tcp.iter().find(|t| t.mode == "napi") else {
        return Vec::new();
    };
    let goals: Vec<TcpGoal> = tcp
        .iter()
        .filter(|t| t.mode != "napi")
        .map(|t| tcp_goal(t, napi))
        .collect();
    for g in &goals {
        println!(
            "[xtask] TCP goal {}: retrans to guest {} vs napi {}, from guest {} vs {}; throughput {:.2}x / {:.2}x napi; RR p99 {:.2}x: {}",
            g.mode,
            g.to_guest_retrans.0,
            g.to_guest_retrans.1,
            g.from_guest_retrans.0,
            g.from_guest_retrans.1,
            g.to_guest_throughput_vs_napi,
            g.from_guest_throughput_vs_napi,
            g.rr_p99_vs_napi,
            if g.met { "met" } else { "not met" }
        );
    }
    goals
}

#[derive(Serialize)]
struct TcpReport {
    kernel: String,
    tcp: Vec<TcpScenario>,
    tcp_goal: Vec<TcpGoal>,
    kernel_warnings_total: usize,
    passed: bool,
}

#[derive(Serialize)]
struct Report {
    kernel: String,
    /// The NIC model (`--nic`) and the QEMU that modelled it.
    nic: &'static str,
    qemu: String,
    vcpus: u32,
    /// RX queues the model must show (virtio-net's queue pairs), if it fixes them.
    expected_rx_queues: Option<u32>,
    guest_rx_queues: u32,
    /// Scenarios not run on this NIC, each with why.
    not_run: Vec<String>,
    /// The guest's XPS maps at boot (`tx-N/xps_cpus`, `tx-N/xps_rxqs`).
    xps: String,
    boot_seconds: f64,
    warmup_packets: u64,
    scenarios: Vec<Scenario>,
    zero_loss_search_64b: Option<SearchResult>,
    module_cycles: Vec<ModuleCycle>,
    bad_params: Vec<BadParam>,
    unregister: Option<Unregister>,
    container: container::ContainerReport,
    tcp: Vec<TcpScenario>,
    tcp_goal: Vec<TcpGoal>,
    kernel_warnings_total: usize,
    passed: bool,
}

/// Unbinds the owned device from its driver while the module serves it (the device is
/// unregistered), unloads the module, binds the device again and restores its
/// address. One agent command does it all: the agent is reached through that device.
fn unregister_while_owned(guest: &Guest, cpus: &str) -> Result<Unregister> {
    let stage = Stage::start(format!("device unregister while owned (cpus={cpus})"));
    guest.check(&format!(
        "insmod {MODULE_PATH} ifaces=eth0 cpus={cpus} mode=spin"
    ))?;
    let script = format!(
        "{DEVICE_AND_DRIVER}; \
         t0=$(cut -d' ' -f1 /proc/uptime); echo $dev > $drv/unbind; \
         t1=$(cut -d' ' -f1 /proc/uptime); sleep 1; \
         rmmod kbp && echo UNLOADED; \
         echo $dev > $drv/bind; sleep 1; \
         ip addr add {GUEST_ADDR}/24 dev eth0; ip link set eth0 up; sleep 1; \
         echo UNBIND $t0 $t1; dmesg | grep 'kbp: device .* unregistered' | tail -n 1"
    );
    let out = guest.check(&script)?;
    let times: Vec<f64> = out
        .lines()
        .find(|l| l.starts_with("UNBIND "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let unbind_ms = match times.as_slice() {
        [t0, t1] => (t1 - t0) * 1e3,
        _ => return Err(format!("unregister test: no timing in {out}")),
    };
    let dmesg = out
        .lines()
        .rfind(|l| l.contains("kbp: device") && l.contains(" unregistered"))
        .unwrap_or("")
        .trim()
        .to_string();
    let unloaded = out.lines().any(|l| l == "UNLOADED");
    println!("[xtask]   unbind {unbind_ms:.0} ms, module unloaded: {unloaded}; {dmesg}");
    stage.done();
    Ok(Unregister {
        unbind_ms,
        dmesg,
        unloaded,
    })
}

/// CPU share of the KBP threads together over `seconds`, percent of one CPU.
fn thread_cpu_percent(guest: &Guest, seconds: u32) -> Result<f64> {
    let a = cpu_sample(guest)?;
    std::thread::sleep(Duration::from_secs(u64::from(seconds)));
    Ok(cpu_between(a, cpu_sample(guest)?).0)
}

#[derive(Clone)]
struct Options {
    rate: u64,
    packets: u64,
    warmup: u64,
    search: bool,
    flows: usize,
    tcp: TcpOptions,
    tcp_only: bool,
    /// `--tcp-mode NAME=ARGS`: the kbp modes of `--tcp-only` instead of the usual ones.
    tcp_modes: Vec<(String, String)>,
    /// `--guest-setup CMD`: run in the guest before any measurement.
    guest_setup: Option<String>,
    /// `--mttcg`: boot with multi-threaded TCG (as the bench does) instead of
    /// single-threaded.
    mttcg: bool,
    /// `--nic NAME`: the guest's NIC model.
    nic: Nic,
    /// `--container-only`: just the `container` record.
    container_only: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        rate: 2_000,
        packets: 100_000,
        warmup: 5_000,
        search: true,
        flows: 1,
        tcp: TcpOptions {
            bulk_seconds: 8.0,
            rr_requests: 5_000,
            rr_warmup: 500,
            rr_bytes: 64,
        },
        tcp_only: false,
        tcp_modes: Vec::new(),
        guest_setup: None,
        mttcg: false,
        nic: Nic::Virtio,
        container_only: false,
    };
    let mut tcp_seconds = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut num = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--rate" => o.rate = num()?,
            "--packets" => o.packets = num()?,
            "--warmup" => o.warmup = num()?,
            "--no-search" => o.search = false,
            "--tcp-only" => o.tcp_only = true,
            "--mttcg" => o.mttcg = true,
            "--container-only" => o.container_only = true,
            "--tcp-mode" => {
                let v = it.next().ok_or("--tcp-mode needs NAME=ARGS")?;
                let (name, args) = v.split_once('=').ok_or("--tcp-mode needs NAME=ARGS")?;
                o.tcp_modes.push((name.to_string(), args.to_string()));
            }
            "--guest-setup" => {
                o.guest_setup = Some(it.next().ok_or("--guest-setup needs a command")?.clone());
            }
            "--tcp-seconds" => tcp_seconds = Some(num()?),
            "--nic" => o.nic = Nic::parse(it.next().ok_or("--nic needs a model name")?)?,
            "--quick" => {
                o.packets = 10_000;
                o.warmup = 2_000;
                o.search = false;
                o.tcp.bulk_seconds = 4.0;
                o.tcp.rr_requests = 2_000;
                o.tcp.rr_warmup = 200;
            }
            other => {
                return Err(format!(
                    "unknown flag {other} (flags: --rate PPS --packets N --warmup N --no-search --quick --tcp-only --tcp-seconds S --tcp-mode NAME=ARGS --guest-setup CMD --mttcg --nic virtio|e1000e|vmxnet3|igb --container-only)"
                ));
            }
        }
    }
    if let Some(seconds) = tcp_seconds {
        o.tcp.bulk_seconds = seconds as f64;
    }
    if o.rate == 0 || o.packets == 0 {
        return Err("--rate and --packets must be positive".into());
    }
    Ok(o)
}

fn scenario(guest: &Guest, mode: &str, frame: usize, o: &Options) -> Result<Scenario> {
    scenario_with(guest, mode, frame, o, None)
}

/// A scenario that runs `during.0` in the guest `during.1` after the traffic started.
fn scenario_with(
    guest: &Guest,
    mode: &str,
    frame: usize,
    o: &Options,
    during: Option<(&str, Duration)>,
) -> Result<Scenario> {
    let target: SocketAddr = format!("{GUEST_ADDR}:{ECHO_PORT}")
        .parse()
        .expect("address");
    let log_before = std::fs::read_to_string(&guest.log)
        .unwrap_or_default()
        .len();
    let kbp_before = StatsFile::read(guest)?;
    let drops_before = Drops::read(guest)?;
    let before = net_rx_softirqs(guest)?;
    let spec = TrialSpec {
        target,
        rate_pps: o.rate,
        frame_bytes: frame,
        packets: o.packets,
        warmup_packets: o.warmup,
        grace: Duration::from_secs(2),
        flows: o.flows,
        bursts: None,
        stop: None,
    };
    let (result, during) = std::thread::scope(|scope| -> Result<_> {
        let trial = scope.spawn(|| run_trial(&spec));
        let mut timed = None;
        if let Some((command, after)) = during {
            std::thread::sleep(after);
            let t = Instant::now();
            guest.check(command)?;
            timed = Some((command.to_string(), t.elapsed().as_secs_f64() * 1e3));
        }
        let result = trial
            .join()
            .map_err(|_| "load generator panicked".to_string())?
            .map_err(|e| format!("load generator: {e}"))?;
        Ok((result, timed))
    })?;
    let after = net_rx_softirqs(guest)?;
    let drops = Drops::read(guest)?.since(drops_before);
    let kbp_after = StatsFile::read(guest)?;
    let kbp_packets_per_thread = match (&kbp_before, &kbp_after) {
        (Some(b), Some(a)) => {
            let (a, b) = (a.thread_packets(), b.thread_packets());
            (a.len() == b.len()).then(|| {
                a.iter()
                    .zip(&b)
                    .map(|(a, b)| a.saturating_sub(*b))
                    .collect::<Vec<_>>()
            })
        }
        _ => None,
    };
    let kbp_packets = kbp_packets_per_thread
        .as_ref()
        .map(|v| v.iter().sum::<u64>());
    // Instances that carried at least 5% of the echoes: where the NIC steered the flows.
    let busy_instances = match (&kbp_before, &kbp_after) {
        (Some(b), Some(a)) => Some({
            let (a, b) = (a.napi_packets(), b.napi_packets());
            a.iter()
                .filter(|(key, n)| {
                    n.saturating_sub(b.get(key).copied().unwrap_or(0)) * 20
                        >= result.received.max(1)
                })
                .map(|(key, _)| *key)
                .collect::<Vec<_>>()
        }),
        _ => None,
    };
    let log = std::fs::read_to_string(&guest.log).unwrap_or_default();
    let warnings = count_warnings(log.get(log_before..).unwrap_or(""));
    let per_cpu: Vec<u64> = after
        .iter()
        .zip(before.iter().chain(std::iter::repeat(&0)))
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let net_rx_softirq_delta = per_cpu.iter().sum();
    let kbp_ok = kbp_packets
        .is_none_or(|k| net_rx_softirq_delta * 100 < result.received && k >= result.received);
    // With several flows, the instances the NIC steered them to must not all be on one
    // thread when there are several of them (the deal spreads RX queues over the
    // threads). A NIC that puts every flow on one queue leaves nothing to spread.
    let spread_ok = o.flows < 8
        || busy_instances.as_ref().is_none_or(|busy| {
            let threads: std::collections::BTreeSet<i64> =
                busy.iter().map(|(cpu, _)| *cpu).collect();
            busy.len() < 2 || threads.len() >= 2
        });
    let s = Scenario {
        mode: mode.into(),
        frame_bytes: frame,
        rate_pps: o.rate,
        sent: result.sent,
        received: result.received,
        lost: result.lost,
        rtt_us: result.rtt_us,
        net_rx_softirq_delta,
        net_rx_softirq_delta_per_cpu: per_cpu,
        kernel_warnings: warnings,
        kbp_packets,
        kbp_packets_per_thread,
        busy_instances,
        flows: o.flows,
        drops,
        during,
        passed: result.lost == 0 && warnings == 0 && result.received > 0 && kbp_ok && spread_ok,
    };
    println!(
        "[xtask]   {:<18} {:>5} B  sent {:>7} lost {:>5} (rcvbuf {}, eth0 rx_dropped {}, tap {}, host rcvbuf {})  rtt us p50 {:>8.1} p99 {:>8.1} p99.9 {:>8.1} max {:>8.1}  NET_RX +{:<7} kbp {:<8} warnings {}  {}",
        s.mode,
        s.frame_bytes,
        s.sent,
        s.lost,
        s.drops.guest_udp_rcvbuf_errors,
        s.drops.guest_dev_rx_dropped,
        s.drops.host_tap_tx_dropped,
        s.drops.host_udp_rcvbuf_errors,
        s.rtt_us.p50,
        s.rtt_us.p99,
        s.rtt_us.p99_9,
        s.rtt_us.max,
        s.net_rx_softirq_delta,
        s.kbp_packets_per_thread
            .as_ref()
            .map_or("-".to_string(), |v| v
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join("+")),
        s.kernel_warnings,
        if s.passed { "ok" } else { "FAIL" }
    );
    if o.flows > 1
        && let Some(busy) = &s.busy_instances
    {
        let shown: Vec<String> = busy.iter().map(|(c, i)| format!("{c}/{i}")).collect();
        println!(
            "[xtask]     {} flows carried by instance(s) (thread CPU/index) {}{}",
            o.flows,
            shown.join(", "),
            if busy.len() < 2 {
                ": the NIC put every flow on one queue, nothing to spread"
            } else {
                ""
            }
        );
    }
    Ok(s)
}

/// The kbp modes the test loads the module in: (mode, insmod arguments). One thread
/// per queue pair (`kbp-spin-2-threads`) needs at least two RX queues: it is left out
/// on a NIC with one, and said so in the report's `not_run`.
fn module_modes(rx_queues: u32) -> Vec<(&'static str, String)> {
    let mut modes = all_module_modes().to_vec();
    modes.retain(|(mode, _)| *mode != "kbp-spin-2-threads" || rx_queues >= 2);
    modes
}

/// Every kbp mode of the test.
fn all_module_modes() -> [(&'static str, String); 3] {
    let last_cpu = VCPUS - 1;
    [
        ("kbp-spin", format!("ifaces=eth0 cpus={last_cpu} mode=spin")),
        (
            "kbp-adaptive",
            format!("ifaces=eth0 cpus={last_cpu} mode=adaptive spin_window_us=200"),
        ),
        (
            "kbp-spin-2-threads",
            format!("ifaces=eth0 cpus={},{last_cpu} mode=spin", last_cpu - 1),
        ),
    ]
}

/// `--tcp-only`: the TCP measurement in napi and in each kbp mode, nothing else.
fn run_tcp_only(o: &Options, release: String, guest: Guest) -> Result {
    let modes: Vec<(String, String)> = if o.tcp_modes.is_empty() {
        module_modes(eth0_rx_queues(&guest)?)
            .into_iter()
            .map(|(m, a)| (m.to_string(), a))
            .collect()
    } else {
        o.tcp_modes.clone()
    };
    let mut tcp = vec![tcp_scenario(&guest, "napi", &o.tcp)?];
    for (mode, args) in &modes {
        let stage = Stage::start(format!("{mode}: insmod kbp.ko {args}"));
        guest.check(&format!("insmod {MODULE_PATH} {args}"))?;
        std::thread::sleep(Duration::from_millis(500));
        tcp.push(tcp_scenario(&guest, mode, &o.tcp)?);
        guest.check("rmmod kbp")?;
        stage.done();
    }
    let tcp_goal = tcp_summary(&tcp);
    let log = guest.power_off(Duration::from_secs(60))?;
    let total_warnings = count_warnings(&log);
    let passed = tcp.iter().all(|t| t.passed) && total_warnings == 0;
    let report = TcpReport {
        kernel: release,
        tcp,
        tcp_goal,
        kernel_warnings_total: total_warnings,
        passed,
    };
    let json = workspace_root().join("target/kbp/guest-test-tcp.json");
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    println!("[xtask] wrote {}", json.display());
    if passed {
        Ok(())
    } else {
        Err(format!(
            "TCP failed or kernel warnings; see {}",
            json.display()
        ))
    }
}

/// The `container` record's packets per scenario.
fn container_packets(o: &Options) -> u64 {
    (o.packets / 10).max(2_500)
}

/// The `container` record's rate: a quarter of the UDP scenarios'. Every echo there
/// crosses NAT, the bridge and both veth ends twice, and on this host (2 cores, itself
/// a VM whose hypervisor stole 11-33 % of them in the run after) the guest could not
/// carry the UDP rate through that path in every mode: at 2000 pps the container's echo socket overflowed
/// its 4 MiB buffer with napi (398 of 25,000 lost at 1518 B, all `RcvbufErrors` of the
/// container's namespace) and with kbp.ko owning eth0 only (6038 and 4105 lost), and
/// the one KBP thread carrying the whole path with the veths owned let the tap
/// overflow (462 lost at 1518 B) (2026-11-29 05:32 UTC). The record is about NET_RX
/// and delivery, not capacity; each row prints its socket queue's peak.
fn container_rate(o: &Options) -> u64 {
    (o.rate / 4).max(1)
}

/// `--container-only`: the `container` record alone, in
/// `target/kbp/guest-test-container.json`.
fn run_container_only(o: &Options, guest: Guest) -> Result {
    let last_cpu = VCPUS - 1;
    let report = container::run(
        &guest,
        last_cpu - 1,
        last_cpu,
        container_rate(o),
        container_packets(o),
    )?;
    let log = guest.power_off(Duration::from_secs(60))?;
    let total_warnings = count_warnings(&log);
    let json = workspace_root().join("target/kbp/guest-test-container.json");
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    println!("[xtask] wrote {}", json.display());
    if report.passed && total_warnings == 0 {
        Ok(())
    } else {
        Err(format!(
            "the container record failed or the guest logged {total_warnings} kernel warning(s); see {}",
            json.display()
        ))
    }
}

/// Runs the guest test.
pub fn run(args: &[String]) -> Result {
    let o = parse(args)?;
    let out_dir = workspace_root().join("target/kbp");
    let tcg = if o.mttcg {
        Tcg::MultiThread
    } else {
        Tcg::SingleThread
    };
    let (release, guest) = build_and_boot_with(
        &match o.nic {
            Nic::Virtio => "guest.log".to_string(),
            nic => format!("guest-{}.log", nic.name()),
        },
        Flavor::Normal,
        tcg,
        o.nic,
    )?;
    let qemu_version = guest.qemu_version.clone();
    if let Some(setup) = &o.guest_setup {
        println!("[xtask] guest setup: {}", guest.check(setup)?);
    }
    if o.tcp_only {
        return run_tcp_only(&o, release, guest);
    }
    if o.container_only {
        return run_container_only(&o, guest);
    }
    let rx_queues = eth0_rx_queues(&guest)?;
    let mut not_run = Vec::new();
    if rx_queues < 2 {
        not_run.push(format!(
            "kbp-spin-2-threads: eth0 ({}) has {rx_queues} RX queue, so one NAPI takes its receive traffic and a second thread would have nothing to poll",
            o.nic.name()
        ));
    }
    let xps = guest.check("grep . /sys/class/net/eth0/queues/tx-*/xps_*")?;
    println!(
        "[xtask] XPS: {}",
        xps.split_whitespace().collect::<Vec<_>>().join(" ")
    );

    let stage = Stage::start(format!(
        "echo scenarios: {} packets at {} pps after {} warm-up packets",
        o.packets, o.rate, o.warmup
    ));
    let mut scenarios = Vec::new();
    for frame in FRAMES {
        scenarios.push(scenario(&guest, "napi", frame, &o)?);
    }
    stage.done();
    let stage = Stage::start(format!(
        "TCP: request/response, {} s bulk each way",
        o.tcp.bulk_seconds
    ));
    let mut tcp = vec![tcp_scenario(&guest, "napi", &o.tcp)?];
    stage.done();

    let last_cpu = VCPUS - 1;
    let short = Options {
        packets: (o.packets / 10).max(1_000),
        warmup: 0,
        ..o.clone()
    };
    let mut module_cycles = Vec::new();
    for (mode, args) in module_modes(rx_queues) {
        let stage = Stage::start(format!("{mode}: insmod kbp.ko {args}"));
        let t = Instant::now();
        guest.check(&format!("insmod {MODULE_PATH} {args}"))?;
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        let idle_thread_cpu_percent = thread_cpu_percent(&guest, 2)?;
        let mut link_flap_ms = None;
        if mode == "kbp-spin-2-threads" {
            // One thread per queue pair: spread the echo traffic over both queues. The
            // host tap steers a flow to the queue the guest last sent it on, and XPS
            // would send every reply of the single-threaded echo server on its CPU's
            // queue; without XPS the guest picks a TX queue by flow hash.
            guest
                .check("for f in /sys/class/net/eth0/queues/tx-*/xps_cpus; do echo 0 > $f; done")?;
            // RSS by UDP ports where the driver hashes UDP by addresses only (igb);
            // virtio-net's queue is the tap's flow steering, and it refuses.
            let (_, hash) = guest.exec("kbp-ctl udp-hash eth0")?;
            println!("[xtask]   udp-hash: {}", hash.trim());
            scenarios.push(scenario(
                &guest,
                mode,
                64,
                &Options {
                    flows: 16,
                    ..short.clone()
                },
            )?);
        } else {
            for frame in FRAMES {
                scenarios.push(scenario(&guest, mode, frame, &o)?);
            }
        }
        tcp.push(tcp_scenario(&guest, mode, &o.tcp)?);
        if mode == "kbp-spin" {
            let t = Instant::now();
            guest.check("ip link set eth0 down && ip link set eth0 up")?;
            link_flap_ms = Some(t.elapsed().as_secs_f64() * 1e3);
            std::thread::sleep(Duration::from_millis(500));
            scenarios.push(scenario(&guest, "kbp-spin-after-link-flap", 64, &short)?);
        }
        let stats = guest.check("cat /sys/kernel/debug/kbp/stats")?;
        println!(
            "{}",
            stats
                .lines()
                .map(|l| format!("[xtask]     {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let t = Instant::now();
        guest.check("rmmod kbp")?;
        let unload_ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "[xtask]   load {load_ms:.0} ms, unload {unload_ms:.0} ms, idle KBP thread(s) {idle_thread_cpu_percent:.0}% of a CPU"
        );
        module_cycles.push(ModuleCycle {
            mode: mode.into(),
            args,
            load_ms,
            unload_ms,
            stats,
            idle_thread_cpu_percent,
            link_flap_ms,
        });
        stage.done();
    }
    scenarios.push(scenario(&guest, "napi-after-unload", 64, &short)?);
    // Unload while packets flow: those arriving during the hand-back must be delivered.
    guest.check(&format!(
        "insmod {MODULE_PATH} ifaces=eth0 cpus={last_cpu} mode=spin"
    ))?;
    let halfway = Duration::from_secs_f64(short.packets as f64 / short.rate as f64 / 2.0);
    let s = scenario_with(
        &guest,
        "unload-under-traffic",
        64,
        &short,
        Some(("rmmod kbp", halfway)),
    )?;
    if let Some((_, ms)) = &s.during {
        println!("[xtask]   rmmod under traffic took {ms:.0} ms");
    }
    scenarios.push(s);

    let stage = Stage::start("bad module parameters");
    let mut bad_params = Vec::new();
    for (param, args) in BAD_PARAMS {
        let (code, _) = guest.exec(&format!("insmod {MODULE_PATH} {args}"))?;
        let loaded = guest.exec("grep -q '^kbp ' /proc/modules")?.0 == 0;
        if loaded {
            let _ = guest.exec("rmmod kbp");
        }
        let dmesg = guest.check("dmesg | grep 'invalid parameter' | tail -n 1")?;
        let refused = code != 0 && !loaded && dmesg.contains(&format!("invalid parameter {param}"));
        println!(
            "[xtask]   {:<40} {}  {}",
            args,
            if refused { "refused" } else { "NOT REFUSED" },
            dmesg.trim()
        );
        bad_params.push(BadParam {
            param: param.to_string(),
            args: args.to_string(),
            refused,
            dmesg: dmesg.trim().to_string(),
        });
        let _ = guest.exec("dmesg -c > /dev/null");
    }
    stage.done();

    let unregister_cpus = if rx_queues >= 2 {
        format!("{},{last_cpu}", last_cpu - 1)
    } else {
        last_cpu.to_string()
    };
    let unregister = Some(unregister_while_owned(&guest, &unregister_cpus)?);
    scenarios.push(scenario(&guest, "napi-after-rebind", 64, &short)?);

    let stage = Stage::start("container behind NAT, veth NAPI: NET_RX of the whole path per mode");
    let container = container::run(
        &guest,
        last_cpu - 1,
        last_cpu,
        container_rate(&o),
        container_packets(&o),
    )?;
    stage.done();

    let search = if o.search {
        let stage = Stage::start("zero-loss search, 64 B frames");
        let target: SocketAddr = format!("{GUEST_ADDR}:{ECHO_PORT}")
            .parse()
            .expect("address");
        let r = zero_loss_search(target, 64, 1, 500, ZERO_LOSS_CEILING_PPS, 3.0, 8)
            .map_err(|e| e.to_string())?;
        println!(
            "[xtask]   highest zero-loss rate {} pps; trials {:?}",
            r.zero_loss_pps, r.trials
        );
        stage.done();
        Some(r)
    } else {
        None
    };

    let tcp_goal = tcp_summary(&tcp);
    let boot_seconds = guest.boot_seconds;
    let rx_queues_as_expected = o.nic.expected_rx_queues().is_none_or(|n| n == rx_queues);
    let log = guest.power_off(Duration::from_secs(60))?;
    let total_warnings = count_warnings(&log);
    let passed = scenarios.iter().all(|s| s.passed)
        && bad_params.iter().all(|b| b.refused)
        && unregister
            .as_ref()
            .is_some_and(|u| u.unloaded && !u.dmesg.is_empty())
        && container.passed
        && tcp.iter().all(|t| t.passed)
        && total_warnings == 0
        && rx_queues_as_expected;
    let report = Report {
        kernel: release,
        nic: o.nic.name(),
        qemu: qemu_version,
        vcpus: VCPUS,
        expected_rx_queues: o.nic.expected_rx_queues(),
        guest_rx_queues: rx_queues,
        not_run,
        xps,
        boot_seconds,
        warmup_packets: o.warmup,
        scenarios,
        zero_loss_search_64b: search,
        module_cycles,
        bad_params,
        unregister,
        container,
        tcp,
        tcp_goal,
        kernel_warnings_total: total_warnings,
        passed,
    };
    let json = out_dir.join(match o.nic {
        Nic::Virtio => "guest-test.json".to_string(),
        nic => format!("guest-test-{}.json", nic.name()),
    });
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    println!("[xtask] wrote {}", json.display());
    if !rx_queues_as_expected {
        return Err(format!(
            "the guest's eth0 has {rx_queues} RX queues, expected {:?}",
            o.nic.expected_rx_queues()
        ));
    }
    if passed {
        Ok(())
    } else {
        Err(format!(
            "some scenarios failed or the guest logged {total_warnings} kernel warning(s); see {}",
            json.display()
        ))
    }
}
