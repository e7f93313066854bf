//! Guest CPU per received packet, counted in instructions: the bench's cost stage
//! (`cargo xtask bench`, last; `--no-cost` skips it, `--cost-only` runs only it).
//!
//! One boot per mode under [`Tcg::Icount`] (`-icount shift=0,sleep=on`: while the guest
//! executes, its clock advances one nanosecond per instruction; while it idles, the
//! clock follows the host's), with one vCPU online: with more, icount's single clock
//! advances for every vCPU while only one of them executes, and per-CPU busy time would
//! overcount. So in this stage everything runs on CPU 0: the interrupts, NET_RX, the
//! echo server and the mode's polling thread. The guest boots with
//! `virtio_net.napi_tx=0` ([`Tcg::Icount`]): no TX-completion interrupts, whose timing
//! against the guest's work depends on the host's speed.
//!
//! Busy time is the clock's advance outside the idle task, plus the interrupt handlers
//! and softirqs that run inside it (an interrupt that wakes an idle CPU runs its
//! handler and, at its exit, NET_RX in the idle task's context): hist triggers sum the
//! idle task's periods (`sched_switch` to and from pid 0, the synthetic event
//! `kbp_idle`) and the handlers and softirqs run with pid 0 (`irq_handler_entry/exit`,
//! `softirq_entry/exit`, `kbp_irq_in_idle`), all on the `mono` trace clock, which
//! `/proc/timer_list`'s `now at` shares; one agent command reads the three (and
//! kbp.ko's counters) before and after each interval. Not counted: the interrupt entry
//! and exit code around the handler, and the idle loop itself (the same per packet in
//! every mode that idles between packets; a spinning mode never idles).
//!
//! Per mode (per kbp.ko configuration): two intervals without traffic, the two
//! readings back to back and [`IDLE_SECONDS`] apart, give the guest's background
//! ([`cost_fit`]: the readings' own work plus timers per clock ns; for `kbp-spin`,
//! whose guest never idles, per empty poll of its thread instead, over intervals of
//! [`SPIN_IDLE`] right after a few packets, with kbp.ko loaded with [`SPIN_HOLD`] so
//! the idle release leaves the instances owned; then [`REPS`]
//! trials of [`PACKETS`] 64-byte echoes at [`RATE`] pps, each reported as `(busy -
//! background) / received`. That is the interrupt, NET_RX or the KBP thread, and the
//! echo server's work per packet, and for `kbp-spin` its empty polls excluded.
//! `kbp-adaptive` runs twice in its boot: as the bench configures it (a 1000 µs spin
//! window after every packet, whose empty polls stay in the figure, [`CostFigure::
//! WithSpinWindow`]) and reloaded with `spin_window_us=0` (KBP's path without
//! spinning: no empty polls to exclude). Upstream `busy-poll`
//! spins without counting its polls: its figure is not a per-packet cost
//! ([`CostFigure::Spins`]).

use std::time::Duration;

use kbp_traffic::{TrialSpec, run_trial};

use crate::base::Result;
use crate::base::progress::Stage;
use crate::guest::vm::{Guest, Tcg, VCPUS};
use crate::harness::{MODULE_PATH, build_and_boot};
use crate::suites::bench::cost_fit::{
    Background, Interval, Regressor, empty_poll_resolution, net_per_packet,
};
use crate::suites::bench::model::{Cost, CostFigure};
use crate::suites::bench::setup::enter_mode;
use crate::suites::bench::trial::target;

/// Offered rate of a cost trial: 2.5 ms between packets, so `kbp-adaptive`'s 1000 µs
/// spin window ends (and its thread parks) before the next one, as at 200 pps, and
/// twice the packets over the same background as at 200 pps (1000 echoes at 200 pps:
/// napi 33.4 and 33.1 µs, 1.0% apart).
pub const RATE: u64 = 400;
/// Packets of a cost trial (5 s).
pub const PACKETS: u64 = 2_000;
/// Trials per configuration (the repeatability is the point).
pub const REPS: u32 = 2;
/// Host seconds of the longer no-traffic interval: twice a trial, since `kbp-spin`'s
/// cost per empty poll is read from it, from counters that lag by up to 256 steps.
pub const IDLE_SECONDS: u64 = 2 * PACKETS / RATE;
/// The 1.05x goal: KBP's cost per packet at most this times napi's.
pub const GOAL_VS_NAPI: f64 = 1.05;
/// Steps between two publications of kbp.ko's counters (`PUBLISH_EVERY`,
/// kbp-linux/worker.rs): a reading of its empty polls lags by up to this many steps.
const KBP_PUBLISH_EVERY_STEPS: f64 = 256.0;
/// The reload that gives `kbp-adaptive`'s second configuration.
const NO_WINDOW: &str = "spin_window_us=0";
/// `kbp-spin`'s configuration here: the idle release at its longest (1 s), so the
/// thread keeps the instances through the 2.5 ms between packets and through the
/// no-traffic intervals that give its cost per empty poll. With the default 2 ms it
/// lets them go between packets and in those intervals, whose few empty polls then
/// carried all the spinning (03:12 UTC: -67.9 ms per packet).
const SPIN_HOLD: &str = "idle_release_us=1000000";
/// `kbp-spin`'s longer no-traffic interval, and the grace after its trials: both well
/// inside [`SPIN_HOLD`]'s second, and checked (the instances still owned after it).
const SPIN_IDLE: Duration = Duration::from_millis(400);

/// Arms the busy accounting: `kbp_idle` carries each idle-task period's length,
/// `kbp_irq_in_idle` each handler's and softirq's run in the idle task; their hist
/// triggers sum them per CPU.
const ARM: &str = "cd /sys/kernel/tracing && echo 'kbp_idle u64 dur' >> synthetic_events && \
    echo 'kbp_irq_in_idle u64 dur' >> synthetic_events && \
    echo 'hist:keys=common_cpu:its=common_timestamp:clock=mono if next_pid == 0' > events/sched/sched_switch/trigger && \
    echo 'hist:keys=common_cpu:idur=common_timestamp-$its:clock=mono:onmatch(sched.sched_switch).trace(kbp_idle,$idur) if prev_pid == 0' >> events/sched/sched_switch/trigger && \
    echo 'hist:keys=common_cpu:hts=common_timestamp:clock=mono if common_pid == 0' > events/irq/irq_handler_entry/trigger && \
    echo 'hist:keys=common_cpu:hdur=common_timestamp-$hts:clock=mono:onmatch(irq.irq_handler_entry).trace(kbp_irq_in_idle,$hdur) if common_pid == 0' > events/irq/irq_handler_exit/trigger && \
    echo 'hist:keys=common_cpu:sts=common_timestamp:clock=mono if common_pid == 0' > events/irq/softirq_entry/trigger && \
    echo 'hist:keys=common_cpu:sdur=common_timestamp-$sts:clock=mono:onmatch(irq.softirq_entry).trace(kbp_irq_in_idle,$sdur) if common_pid == 0' > events/irq/softirq_exit/trigger && \
    echo 'hist:keys=common_cpu:vals=dur' > events/synthetic/kbp_idle/trigger && \
    echo 'hist:keys=common_cpu:vals=dur' > events/synthetic/kbp_irq_in_idle/trigger";

/// Prints `now_ns idle_ns irq_in_idle_ns empty_polls rounds` (`-` for the last two
/// without kbp.ko).
const SNAP: &str = "awk '/^now at/{n=$3} END{printf \"%s \", n}' /proc/timer_list; \
    for e in kbp_idle kbp_irq_in_idle; do awk '{for(i=1;i<NF;i++) if($i==\"dur:\") s+=$(i+1)} END{printf \"%.0f \", s}' /sys/kernel/tracing/events/synthetic/$e/hist; done; \
    if [ -e /sys/kernel/debug/kbp/stats ]; then awk '$1==\"thread\"{e+=$7; r+=$4} END{printf \"%.0f %.0f\\n\", e, r}' /sys/kernel/debug/kbp/stats; else echo '- -'; fi";

/// Prints how many instances kbp.ko's threads own (the stats file's `owned` column).
const OWNED: &str = "awk '$1==\"napi\"{o+=$NF} END{print o+0}' /sys/kernel/debug/kbp/stats";

/// One reading of the clock, the summed idle and in-idle handler time, and kbp.ko's
/// thread counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reading {
    now: u64,
    idle: u64,
    irq_in_idle: u64,
    empty_polls: Option<u64>,
    rounds: Option<u64>,
}

fn parse_snap(text: &str) -> Option<Reading> {
    let f: Vec<&str> = text.split_whitespace().collect();
    let [now, idle, irq, empty, rounds] = f.as_slice() else {
        return None;
    };
    let kbp = |v: &str| -> Option<Option<u64>> {
        if v == "-" {
            Some(None)
        } else {
            v.parse().ok().map(Some)
        }
    };
    Some(Reading {
        now: now.parse().ok()?,
        idle: idle.parse().ok()?,
        irq_in_idle: irq.parse().ok()?,
        empty_polls: kbp(empty)?,
        rounds: kbp(rounds)?,
    })
}

fn read(guest: &Guest) -> Result<Reading> {
    let text = guest.check(SNAP)?;
    parse_snap(&text).ok_or_else(|| format!("cost: unreadable clock/idle/counters {text:?}"))
}

/// The interval between two readings: busy = clock - idle + handlers in idle.
fn between(a: &Reading, b: &Reading) -> Interval {
    let clock = b.now.saturating_sub(a.now);
    let idle = b.idle.saturating_sub(a.idle);
    let in_idle = b.irq_in_idle.saturating_sub(a.irq_in_idle);
    Interval {
        clock_ns: clock,
        busy_ns: clock.saturating_sub(idle).saturating_add(in_idle),
        empty_polls: a
            .empty_polls
            .zip(b.empty_polls)
            .map(|(x, y)| y.saturating_sub(x)),
    }
}

/// The rounds between two readings (kbp.ko loaded).
fn rounds(a: &Reading, b: &Reading) -> Option<u64> {
    a.rounds.zip(b.rounds).map(|(x, y)| y.saturating_sub(x))
}

/// The mode on CPU 0 alone, and the accounting armed.
fn set_up_on_cpu0(guest: &Guest, mode: &str) -> Result {
    guest.check(&format!(
        "for c in $(seq 1 {}); do echo 0 > /sys/devices/system/cpu/cpu$c/online; done; test $(cat /sys/devices/system/cpu/online) = 0",
        VCPUS - 1
    ))?;
    enter_mode(guest, mode, 0)?;
    guest.check(ARM).map(drop)
}

fn spec(packets: u64, grace: Duration) -> TrialSpec {
    TrialSpec {
        target: target(),
        rate_pps: RATE,
        frame_bytes: 64,
        packets,
        warmup_packets: 0,
        grace,
        flows: 1,
        bursts: None,
        stop: None,
    }
}

/// What a configuration's figure is.
fn figure(mode: &str, params: &str) -> CostFigure {
    match (mode, params) {
        ("busy-poll", _) => CostFigure::Spins,
        ("kbp-adaptive", "") => CostFigure::WithSpinWindow,
        _ => CostFigure::PerPacket,
    }
}

/// The no-traffic intervals and the trials of one configuration.
fn measure(guest: &Guest, mode: &str, params: &str) -> Result<Vec<Cost>> {
    let figure = figure(mode, params);
    let regressor = if mode == "kbp-spin" {
        Regressor::EmptyPolls
    } else {
        Regressor::Clock
    };
    let record = |rep, idle_seconds, received, i: &Interval| Cost {
        mode: mode.into(),
        params: params.into(),
        rep,
        idle_seconds,
        received,
        clock_ns: i.clock_ns,
        busy_ns: i.busy_ns,
        empty_polls: i.empty_polls,
        net_busy_per_packet_ns: None,
        resolution_ns: None,
        figure,
    };
    // A spinning thread's intervals and trials stay inside the idle release's second,
    // each interval right after a few packets (so the instances are owned).
    let spinning = regressor == Regressor::EmptyPolls;
    let (idle, grace) = if spinning {
        (SPIN_IDLE, SPIN_IDLE)
    } else {
        (Duration::from_secs(IDLE_SECONDS), Duration::from_secs(2))
    };
    let mut out = Vec::new();
    let mut quiet = Vec::new();
    for pause in [Duration::ZERO, idle] {
        if spinning {
            run_trial(&spec(20, Duration::from_millis(100)))
                .map_err(|e| format!("cost {mode}: packets before an interval: {e}"))?;
        }
        let a = read(guest)?;
        std::thread::sleep(pause);
        let b = read(guest)?;
        if spinning {
            let owned = guest.check(OWNED)?;
            if owned.trim().parse::<u64>().unwrap_or(0) == 0 {
                return Err(format!(
                    "cost {mode} {params}: no instance owned after a {pause:?} interval: its empty polls are not the spinning's"
                ));
            }
        }
        let i = between(&a, &b);
        out.push(record(None, pause.as_secs_f64(), 0, &i));
        quiet.push((i, rounds(&a, &b)));
    }
    let (short, long) = (quiet[0].0, quiet[1].0);
    let background = Background::fit(&short, &long, regressor).ok_or_else(|| {
        format!("cost {mode} {params}: no background from {short:?} and {long:?}")
    })?;
    // Polls per step while spinning, for the counters' publication lag.
    let calibration_polls = long
        .empty_polls
        .unwrap_or(0)
        .saturating_sub(short.empty_polls.unwrap_or(0));
    let polls_per_step = quiet[1]
        .1
        .filter(|&r| r > 0)
        .map(|r| long.empty_polls.unwrap_or(0) as f64 / r as f64);
    for rep in 0..REPS {
        let a = read(guest)?;
        let r = run_trial(&spec(PACKETS, grace)).map_err(|e| format!("cost trial: {e}"))?;
        let b = read(guest)?;
        let i = between(&a, &b);
        let mut c = record(Some(rep), 0.0, r.received, &i);
        if figure != CostFigure::Spins {
            c.net_busy_per_packet_ns = net_per_packet(&i, &background, r.received);
        }
        if regressor == Regressor::EmptyPolls {
            c.resolution_ns = polls_per_step.and_then(|per_step| {
                empty_poll_resolution(
                    &background,
                    KBP_PUBLISH_EVERY_STEPS * per_step,
                    calibration_polls as f64,
                    i.empty_polls.unwrap_or(0) as f64,
                    r.received,
                )
            });
        }
        println!(
            "[xtask]   cost {mode} {params} #{rep}: {} received, busy {} ns over {} ns, net {:?} ns per packet (± {:?}), empty polls {:?}",
            c.received,
            c.busy_ns,
            c.clock_ns,
            c.net_busy_per_packet_ns,
            c.resolution_ns,
            c.empty_polls
        );
        out.push(c);
    }
    Ok(out)
}

/// The cost trials of one mode, in one icount boot.
pub fn cost_mode(mode: &str) -> Result<Vec<Cost>> {
    let stage = Stage::start(format!("cost {mode} (icount, one vCPU)"));
    let (_, guest) = build_and_boot(&format!("bench-cost-{mode}.log"), Tcg::Icount)?;
    set_up_on_cpu0(&guest, mode)?;
    let warm_up = || {
        // Discarded: ARP and the first packets' paths.
        run_trial(&spec(200, Duration::from_secs(2))).map_err(|e| format!("cost warm-up: {e}"))
    };
    let params = if mode == "kbp-spin" {
        guest.check(&format!(
            "rmmod kbp && insmod {MODULE_PATH} ifaces=eth0 cpus=0 mode=spin {SPIN_HOLD}"
        ))?;
        SPIN_HOLD
    } else {
        ""
    };
    warm_up()?;
    let mut out = measure(&guest, mode, params)?;
    if mode == "kbp-adaptive" {
        guest.check(&format!(
            "rmmod kbp && insmod {MODULE_PATH} ifaces=eth0 cpus=0 mode=adaptive {NO_WINDOW}"
        ))?;
        warm_up()?;
        out.extend(measure(&guest, mode, NO_WINDOW)?);
    }
    guest.power_off(Duration::from_secs(60))?;
    stage.done();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_parse_and_subtract() {
        let a = parse_snap("1000 500 0 - -\n").expect("reading");
        assert_eq!(a.empty_polls, None);
        let b = parse_snap("10000001000 9000000500 250 7 3").expect("reading");
        assert_eq!((b.empty_polls, b.rounds), (Some(7), Some(3)));
        assert_eq!(parse_snap("1 2 3"), None);
        assert_eq!(parse_snap("x 2 3 - -"), None);
        // 10 s of clock, 9 s in the idle task, 250 ns of it in handlers: 1 s + 250 ns busy.
        let i = between(&a, &b);
        assert_eq!((i.clock_ns, i.busy_ns), (10_000_000_000, 1_000_000_250));
        assert_eq!(i.empty_polls, None);
        let c = parse_snap("1 0 0 5 1").expect("reading");
        let d = parse_snap("2 0 0 9 2").expect("reading");
        assert_eq!(between(&c, &d).empty_polls, Some(4));
        assert_eq!(rounds(&c, &d), Some(1));
    }

    #[test]
    fn each_configuration_says_what_its_figure_is() {
        assert_eq!(figure("napi", ""), CostFigure::PerPacket);
        assert_eq!(figure("kbp-spin", ""), CostFigure::PerPacket);
        assert_eq!(figure("kbp-adaptive", ""), CostFigure::WithSpinWindow);
        assert_eq!(figure("kbp-adaptive", NO_WINDOW), CostFigure::PerPacket);
        assert_eq!(figure("busy-poll", ""), CostFigure::Spins);
    }
}
