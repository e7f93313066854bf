//! `cargo xtask guest-test`: build or reuse the kernel and initramfs, boot the guest,
//! run UDP echo scenarios against the unmodified echo server, and write
//! `target/kbp/guest-test.json`. Exit 0 only when every scenario passes: no packet
//! lost, no kernel warning in the guest log.

use std::net::SocketAddr;
use std::time::Duration;

use kbp_traffic::{run_trial, zero_loss_search, RttSummary, SearchResult, TrialSpec};
use serde::Serialize;

use crate::guest::{count_warnings, net_rx_softirqs, Guest, QUEUE_PAIRS, VCPUS};
use crate::initramfs::{ECHO_PORT, GUEST_ADDR};
use crate::progress::Stage;
use crate::{initramfs, kernel, toolchain, workspace_root, Result};

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
    /// WARN/BUG/Oops/soft lockup/RCU stall/hung task lines logged during the scenario.
    pub kernel_warnings: usize,
    /// lost == 0 and kernel_warnings == 0.
    pub passed: bool,
}

#[derive(Serialize)]
struct Report {
    kernel: String,
    vcpus: u32,
    queue_pairs: u32,
    guest_rx_queues: u32,
    boot_seconds: f64,
    warmup_packets: u64,
    scenarios: Vec<Scenario>,
    zero_loss_search_64b: Option<SearchResult>,
    kernel_warnings_total: usize,
    passed: bool,
}

struct Options {
    rate: u64,
    packets: u64,
    warmup: u64,
    search: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options { rate: 2_000, packets: 100_000, warmup: 5_000, search: true };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| format!("{flag} needs a number"));
        match flag.as_str() {
            "--rate" => o.rate = num()?,
            "--packets" => o.packets = num()?,
            "--warmup" => o.warmup = num()?,
            "--no-search" => o.search = false,
            "--quick" => {
                o.packets = 10_000;
                o.warmup = 2_000;
                o.search = false;
            }
            other => return Err(format!("unknown flag {other} (flags: --rate PPS --packets N --warmup N --no-search --quick)")),
        }
    }
    if o.rate == 0 || o.packets == 0 {
        return Err("--rate and --packets must be positive".into());
    }
    Ok(o)
}

fn scenario(guest: &Guest, mode: &str, frame: usize, o: &Options) -> Result<Scenario> {
    let target: SocketAddr = format!("{GUEST_ADDR}:{ECHO_PORT}").parse().expect("address");
    let log_before = std::fs::read_to_string(&guest.log).unwrap_or_default().len();
    let before = net_rx_softirqs(guest)?;
    let spec = TrialSpec { target, rate_pps: o.rate, frame_bytes: frame, packets: o.packets, warmup_packets: o.warmup, grace: Duration::from_secs(2) };
    let result = run_trial(&spec).map_err(|e| format!("load generator: {e}"))?;
    let after = net_rx_softirqs(guest)?;
    let log = std::fs::read_to_string(&guest.log).unwrap_or_default();
    let warnings = count_warnings(log.get(log_before..).unwrap_or(""));
    let s = Scenario {
        mode: mode.into(),
        frame_bytes: frame,
        rate_pps: o.rate,
        sent: result.sent,
        received: result.received,
        lost: result.lost,
        rtt_us: result.rtt_us,
        net_rx_softirq_delta: after.saturating_sub(before),
        kernel_warnings: warnings,
        passed: result.lost == 0 && warnings == 0 && result.received > 0,
    };
    println!(
        "[xtask]   {:<12} {:>5} B  sent {:>7} lost {:>5}  rtt us p50 {:>8.1} p99 {:>8.1} p99.9 {:>8.1} max {:>8.1}  NET_RX +{:<7} warnings {}  {}",
        s.mode,
        s.frame_bytes,
        s.sent,
        s.lost,
        s.rtt_us.p50,
        s.rtt_us.p99,
        s.rtt_us.p99_9,
        s.rtt_us.max,
        s.net_rx_softirq_delta,
        s.kernel_warnings,
        if s.passed { "ok" } else { "FAIL" }
    );
    Ok(s)
}

/// Runs the guest test.
pub fn run(args: &[String]) -> Result {
    let o = parse(args)?;
    let tc = toolchain::ensure()?;
    let k = kernel::build(&tc)?;
    let image = initramfs::build(&[])?;
    let out_dir = workspace_root().join("target/kbp");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;

    let stage = Stage::start(format!("boot guest ({VCPUS} vCPUs, virtio-net {QUEUE_PAIRS} queue pairs, TCG)"));
    let guest = Guest::boot(&k.bzimage, &image, &out_dir.join("guest.log"), Duration::from_secs(180))?;
    println!("[xtask]   guest up in {:.1} s", guest.boot_seconds);
    stage.done();
    let rx_queues: u32 = guest.check("ls -d /sys/class/net/eth0/queues/rx-* | wc -l")?.trim().parse().unwrap_or(0);

    let stage = Stage::start(format!("echo scenarios: {} packets at {} pps after {} warm-up packets", o.packets, o.rate, o.warmup));
    let mut scenarios = Vec::new();
    for frame in FRAMES {
        scenarios.push(scenario(&guest, "napi", frame, &o)?);
    }
    stage.done();

    let search = if o.search {
        let stage = Stage::start("zero-loss search, 64 B frames");
        let target: SocketAddr = format!("{GUEST_ADDR}:{ECHO_PORT}").parse().expect("address");
        let r = zero_loss_search(target, 64, 500, 40_000, 3.0, 7).map_err(|e| e.to_string())?;
        println!("[xtask]   highest zero-loss rate {} pps; trials {:?}", r.zero_loss_pps, r.trials);
        stage.done();
        Some(r)
    } else {
        None
    };

    let boot_seconds = guest.boot_seconds;
    let log = guest.power_off(Duration::from_secs(60))?;
    let total_warnings = count_warnings(&log);
    let passed = scenarios.iter().all(|s| s.passed) && total_warnings == 0 && rx_queues == QUEUE_PAIRS;
    let report = Report {
        kernel: k.release,
        vcpus: VCPUS,
        queue_pairs: QUEUE_PAIRS,
        guest_rx_queues: rx_queues,
        boot_seconds,
        warmup_packets: o.warmup,
        scenarios,
        zero_loss_search_64b: search,
        kernel_warnings_total: total_warnings,
        passed,
    };
    let json = out_dir.join("guest-test.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    println!("[xtask] wrote {}", json.display());
    if rx_queues != QUEUE_PAIRS {
        return Err(format!("the guest's eth0 has {rx_queues} RX queues, expected {QUEUE_PAIRS}"));
    }
    if passed {
        Ok(())
    } else {
        Err(format!("some scenarios failed or the guest logged {total_warnings} kernel warning(s); see {}", json.display()))
    }
}
