//! Guest CPU per received packet, counted in instructions: `cargo xtask bench --cost`.
//!
//! One boot per mode under [`Tcg::Icount`] (`-icount shift=0,sleep=off`: the guest's
//! clock advances one nanosecond per instruction executed, and jumps ahead while the
//! guest idles), with one vCPU online: with more, icount's single clock advances for
//! every vCPU while only one of them executes, and per-CPU busy time would overcount.
//! So in this stage everything runs on CPU 0: the interrupts, NET_RX, the echo server
//! and the mode's polling thread.
//!
//! Busy time is the clock's advance minus the idle task's time, summed by hist
//! triggers on `sched_switch` to and from the idle task (the synthetic event
//! `kbp_idle`), read with the clock (`/proc/timer_list`'s `now at`) by one agent
//! command before and after each trial; the agent's own work is in both the trials
//! and the baseline. Per mode: a baseline (no traffic, 2 s of host time), then
//! [`REPS`] trials of [`PACKETS`] 64-byte echoes at [`RATE`] pps. The figure is
//! `(busy - baseline busy rate x clock advance) / received`: the interrupt, the
//! softirq or polling thread and the echo server's work for one packet, net of the
//! guest's background. For kbp.ko's modes the stage also reports the empty polls per
//! packet (its `stats` file): a spinning poller's empty polls are busy time, so for
//! `kbp-spin` (and upstream `busy-poll`, which does not count them) the figure is not
//! a per-packet cost, and the table says so.

use std::time::Duration;

use kbp_traffic::{TrialSpec, run_trial};

use crate::base::Result;
use crate::base::progress::Stage;
use crate::guest::stats_file::StatsFile;
use crate::guest::vm::{Guest, Tcg, VCPUS};
use crate::harness::build_and_boot;
use crate::suites::bench::model::Cost;
use crate::suites::bench::setup::enter_mode;
use crate::suites::bench::trial::target;

/// Offered rate of a cost trial.
pub const RATE: u64 = 200;
/// Packets of a cost trial.
pub const PACKETS: u64 = 1_000;
/// Trials per mode (the repeatability is the point).
pub const REPS: u32 = 2;
/// `thread` record: empty polls.
const THREAD_EMPTY_POLLS: usize = 3;

/// Arms the idle accounting: `kbp_idle` carries each idle period's length, and its
/// hist trigger sums them per CPU.
const IDLE_ARM: &str = "cd /sys/kernel/tracing && echo 'kbp_idle u64 dur' >> synthetic_events && \
    echo 'hist:keys=common_cpu:its=common_timestamp if next_pid == 0' > events/sched/sched_switch/trigger && \
    echo 'hist:keys=common_cpu:idur=common_timestamp-$its:onmatch(sched.sched_switch).trace(kbp_idle,$idur) if prev_pid == 0' >> events/sched/sched_switch/trigger && \
    echo 'hist:keys=common_cpu:vals=dur' > events/synthetic/kbp_idle/trigger";

/// Prints `now_ns idle_ns`.
const SNAP: &str = "awk '/^now at/{n=$3} END{printf \"%s \", n}' /proc/timer_list; \
    awk '{for(i=1;i<NF;i++) if($i==\"dur:\") s+=$(i+1)} END{print s+0}' /sys/kernel/tracing/events/synthetic/kbp_idle/hist";

fn parse_snap(text: &str) -> Option<(u64, u64)> {
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    match (it.next()??, it.next()??, it.next()) {
        (now, idle, None) => Some((now, idle)),
        _ => None,
    }
}

fn snap(guest: &Guest) -> Result<(u64, u64)> {
    let text = guest.check(SNAP)?;
    parse_snap(&text).ok_or_else(|| format!("cost: unreadable clock/idle {text:?}"))
}

fn empty_polls(guest: &Guest, mode: &str) -> Result<Option<u64>> {
    if !mode.starts_with("kbp") {
        return Ok(None);
    }
    let text = guest.check("cat /sys/kernel/debug/kbp/stats")?;
    let stats = StatsFile::parse(&text).ok_or_else(|| format!("unreadable kbp stats: {text}"))?;
    Ok(Some(
        stats.threads().map(|(_, v)| v[THREAD_EMPTY_POLLS]).sum(),
    ))
}

/// Busy ns between two snapshots.
fn busy(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    let clock = b.0.saturating_sub(a.0);
    (clock, clock.saturating_sub(b.1.saturating_sub(a.1)))
}

/// Net busy per packet: the trial's busy time less the baseline's busy rate over the
/// trial's clock advance.
fn net_per_packet(busy_ns: u64, clock_ns: u64, baseline: (u64, u64), received: u64) -> Option<f64> {
    let (base_clock, base_busy) = baseline;
    if received == 0 || base_clock == 0 {
        return None;
    }
    let background = base_busy as f64 / base_clock as f64 * clock_ns as f64;
    Some((busy_ns as f64 - background) / received as f64)
}

/// The mode on CPU 0 alone.
fn set_up_on_cpu0(guest: &Guest, mode: &str) -> Result {
    guest.check(&format!(
        "for c in $(seq 1 {}); do echo 0 > /sys/devices/system/cpu/cpu$c/online; done; test $(cat /sys/devices/system/cpu/online) = 0",
        VCPUS - 1
    ))?;
    enter_mode(guest, mode, 0)?;
    guest.check(IDLE_ARM).map(drop)
}

fn spec(packets: u64) -> TrialSpec {
    TrialSpec {
        target: target(),
        rate_pps: RATE,
        frame_bytes: 64,
        packets,
        warmup_packets: 0,
        grace: Duration::from_secs(2),
        flows: 1,
        bursts: None,
        stop: None,
    }
}

/// The cost trials of one mode, in one icount boot.
pub fn cost_mode(mode: &str) -> Result<Vec<Cost>> {
    let stage = Stage::start(format!("cost {mode} (icount, one vCPU)"));
    let (_, guest) = build_and_boot(&format!("bench-cost-{mode}.log"), Tcg::Icount)?;
    set_up_on_cpu0(&guest, mode)?;
    // Warm-up, discarded: ARP and the first packets' paths.
    run_trial(&spec(200)).map_err(|e| format!("cost warm-up: {e}"))?;

    let mut out = Vec::new();
    let e0 = empty_polls(&guest, mode)?;
    let a = snap(&guest)?;
    std::thread::sleep(Duration::from_secs(2));
    let b = snap(&guest)?;
    let e1 = empty_polls(&guest, mode)?;
    let baseline = busy(a, b);
    out.push(Cost {
        mode: mode.into(),
        rep: None,
        received: 0,
        clock_ns: baseline.0,
        busy_ns: baseline.1,
        empty_polls: e0.zip(e1).map(|(x, y)| y.saturating_sub(x)),
        net_busy_per_packet_ns: None,
    });
    for rep in 0..REPS {
        let e0 = empty_polls(&guest, mode)?;
        let a = snap(&guest)?;
        let r = run_trial(&spec(PACKETS)).map_err(|e| format!("cost trial: {e}"))?;
        let b = snap(&guest)?;
        let e1 = empty_polls(&guest, mode)?;
        let (clock_ns, busy_ns) = busy(a, b);
        let c = Cost {
            mode: mode.into(),
            rep: Some(rep),
            received: r.received,
            clock_ns,
            busy_ns,
            empty_polls: e0.zip(e1).map(|(x, y)| y.saturating_sub(x)),
            net_busy_per_packet_ns: net_per_packet(busy_ns, clock_ns, baseline, r.received),
        };
        println!(
            "[xtask]   cost {mode} #{rep}: {} received, busy {} ns over {} ns, net {:?} ns per packet, empty polls {:?}",
            c.received, c.busy_ns, c.clock_ns, c.net_busy_per_packet_ns, c.empty_polls
        );
        out.push(c);
    }
    guest.power_off(Duration::from_secs(60))?;
    stage.done();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_parse_and_subtract() {
        assert_eq!(parse_snap("5007175007 123\n"), Some((5007175007, 123)));
        assert_eq!(parse_snap("1 2 3"), None);
        assert_eq!(parse_snap("x 2"), None);
        assert_eq!(parse_snap("1"), None);
        // 10 s of clock, 9 s idle: 1 s busy.
        assert_eq!(
            busy((1_000, 500), (10_000_001_000, 9_000_000_500)),
            (10_000_000_000, 1_000_000_000)
        );
    }

    #[test]
    fn background_is_taken_off_at_the_baseline_rate() {
        // Baseline: 1% busy. Trial: 5 s of clock, 100 ms busy, 1000 packets:
        // (100 ms - 50 ms) / 1000 = 50 us.
        let net = net_per_packet(
            100_000_000,
            5_000_000_000,
            (2_000_000_000, 20_000_000),
            1000,
        );
        assert_eq!(net, Some(50_000.0));
        assert_eq!(net_per_packet(1, 1, (1, 1), 0), None);
        assert_eq!(net_per_packet(1, 1, (0, 0), 10), None);
    }
}
