//! How a fault runs and is judged ([`Fault::run`]): echo traffic around the fault's
//! operations, the operations timed in the guest ([`Ops`]), and the record written to
//! `faults.json` ([`FaultRecord`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kbp_traffic::{TrialSpec, run_trial};
use serde::Serialize;

use crate::base::Result;
use crate::base::progress::Stage;
use crate::build::initramfs::{ECHO_PORT, GUEST_ADDR};
use crate::guest::host_wait::HostWait;
use crate::guest::probes::net_rx_softirqs;
use crate::guest::stats_file::StatsFile;
use crate::guest::vm::{Guest, count_warnings};
use crate::harness::Drops;
use crate::suites::faults::loss::{self, AwayOp, Cluster, RECOVERY_BOUND};

/// The trailing window (see [`Fault::with_trailing_window`]) starts this long after the
/// last operation returned and lasts [`TRAILING_WINDOW`].
const TRAILING_SETTLE: Duration = Duration::from_millis(500);
/// How long the traffic must flow without NET_RX at the end of a fault that checks it.
const TRAILING_WINDOW: Duration = Duration::from_secs(1);

/// One fault's record in `faults.json`.
#[derive(Serialize)]
pub struct FaultRecord {
    /// Short name (`reload`, `link-flap`, ...).
    pub name: String,
    /// What was done.
    pub what: String,
    /// Echo packets sent, echoed, lost while the fault ran.
    pub sent: u64,
    /// Echoes received.
    pub received: u64,
    /// `sent - received`.
    pub lost: u64,
    /// Lost packets sent while the device was away (link down, unbound, rings being
    /// resized): excused.
    pub lost_while_device_away: u64,
    /// After the device-away operations: the longest time from an operation's return
    /// to the send time of the first packet echoed after it, milliseconds.
    pub back_after_ms_max: Option<f64>,
    /// The losses not excused, in clusters (largest first, at most 5).
    pub unexcused_loss_clusters: Vec<Cluster>,
    /// Every timed operation: label -> (count, max ms, mean ms).
    pub operations: BTreeMap<String, OpTimes>,
    /// Growth of the guest's NET_RX softirq count.
    pub net_rx_softirq_delta: u64,
    /// For the faults that check that ownership resumed: NET_RX growth over a trailing
    /// window of traffic after the last operation, module loaded (must be 0).
    pub net_rx_trailing: Option<u64>,
    /// Set when the fault cannot be injected in this guest (why); nothing ran, and
    /// `passed` is true (the run does not fail on it, the report lists it).
    pub not_possible: Option<String>,
    /// Kernel warnings (WARN, BUG, Oops, soft lockup, RCU stall, hung task) logged.
    pub kernel_warnings: usize,
    /// Counters never went backwards and reported no errors.
    pub counters_consistent: bool,
    /// Where datagrams were dropped during the fault's traffic (host and guest sockets,
    /// the host's tap): explains a loss; the pass criterion stays the loss itself.
    pub drops: Drops,
    /// Observations (e.g. the thread's CPU after hotplug, the counters' parks).
    pub notes: Vec<String>,
    /// No unexcused loss, no warning, every operation within its bound and
    /// succeeded, counters consistent, and the fault's own checks held.
    pub passed: bool,
    /// Not run: left out by `--only` (such records are dropped from the report).
    #[serde(skip)]
    pub skipped: bool,
}

/// Timing of one kind of operation.
#[derive(Clone, Copy, Default, Serialize)]
pub struct OpTimes {
    /// How many ran.
    pub count: u32,
    /// Longest, milliseconds.
    pub max_ms: f64,
    /// Mean, milliseconds.
    pub mean_ms: f64,
    /// The bound it must stay within, milliseconds.
    pub bound_ms: f64,
}

/// Bound for an operation label, milliseconds.
fn bound_ms(label: &str) -> f64 {
    match label {
        "unbind" | "bind" | "cpu-offline" | "cpu-online" => 5_000.0,
        "soak-traffic" => f64::INFINITY,
        // The namespace's cleanup and a module load under single-threaded TCG; a
        // deadlock never returns (the script gives up at its own bound, the same).
        l if l.starts_with("netns-") => 30_000.0,
        _ => 2_000.0,
    }
}

/// What a fault's operations collect while the traffic runs.
#[derive(Default)]
pub struct Ops {
    pub times: BTreeMap<String, Vec<f64>>,
    pub away: Vec<AwayOp>,
    /// Every script run: its timed labels (or its start), when it started and returned.
    pub timeline: Vec<(String, Instant, Instant)>,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
    pub stats_ok: bool,
}

/// Quotes `s` for a POSIX shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Ops {
    /// Runs `script` in the guest; its `kbp-ctl time` lines are recorded. With
    /// `device_away`, packets sent from now until the device echoes again may be lost
    /// (see `loss.rs`).
    pub fn run(&mut self, guest: &Guest, script: &str, device_away: bool) -> Result<String> {
        let t0 = Instant::now();
        let (code, out) = guest.exec(script)?;
        let end = Instant::now();
        if device_away {
            self.away.push(AwayOp { start: t0, end });
        }
        let labels: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("KBP-TIME ")?.split_whitespace().next())
            .collect();
        let what = if labels.is_empty() {
            script.chars().take(40).collect()
        } else {
            labels.join("+")
        };
        self.timeline.push((what, t0, end));
        for line in out.lines().filter(|l| l.starts_with("KBP-TIME ")) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [_, label, ms, status] = f.as_slice() {
                self.times
                    .entry(label.to_string())
                    .or_default()
                    .push(ms.parse().unwrap_or(f64::INFINITY));
                if *status != "0" {
                    self.failures.push(format!("{label} exited {status}"));
                }
            }
        }
        if code != 0 {
            self.failures
                .push(format!("`{script}` exited {code}: {out}"));
        }
        Ok(out)
    }

    /// `kbp-ctl time LABEL CMD` as a script fragment.
    pub fn timed(label: &str, command: &str) -> String {
        format!("kbp-ctl time {label} {}", quote(command))
    }

    /// Checks one stats read: parseable, no errors; later reads of the same load must
    /// not go backwards (`previous`).
    pub fn check_stats(&mut self, text: &str, previous: Option<&str>) {
        let Some(now) = StatsFile::parse(text) else {
            self.stats_ok = false;
            self.notes.push(format!("unreadable stats file: {text}"));
            return;
        };
        let backwards = previous
            .and_then(StatsFile::parse)
            .is_some_and(|before| !now.grew_from(&before));
        if backwards || now.has_errors() {
            self.stats_ok = false;
            self.notes.push(format!(
                "counters inconsistent (went backwards: {backwards}):\n{previous:?}\n{text}"
            ));
        }
    }
}

/// One fault: traffic around `op`.
pub struct Fault<'a> {
    pub guest: &'a Guest,
    pub name: String,
    pub what: String,
    pub flows: usize,
    pub rate: u64,
    /// Every operation's time bound is multiplied by this (1, or the debug kernel's
    /// slowdown).
    pub bound_scale: f64,
    pub bursts: Option<(u64, Duration)>,
    /// Check ownership resumed: a trailing window with no NET_RX growth.
    pub trailing: bool,
    /// Loss the driver itself counts (eth0 `rx_dropped`) is excused: an operation after
    /// which the driver drops buffers it had posted, with or without KBP (XDP attach).
    pub driver_drops_excused: bool,
    /// False when `--only` leaves this fault out: [`Fault::run`] does nothing.
    pub selected: bool,
    /// Where the echo traffic goes (None: the guest's own echo server on eth0).
    pub target: Option<SocketAddr>,
}

impl FaultRecord {
    /// The record of a fault this guest cannot inject, and why.
    pub fn not_possible(name: &str, what: String, why: String) -> FaultRecord {
        println!("[xtask] fault {name}: not possible in this guest: {why}");
        FaultRecord {
            not_possible: Some(why),
            ..FaultRecord::not_possible_quietly(name.to_string(), what)
        }
    }

    fn not_possible_quietly(name: String, what: String) -> FaultRecord {
        FaultRecord {
            name,
            what,
            sent: 0,
            received: 0,
            lost: 0,
            lost_while_device_away: 0,
            back_after_ms_max: None,
            unexcused_loss_clusters: Vec::new(),
            operations: BTreeMap::new(),
            net_rx_softirq_delta: 0,
            net_rx_trailing: None,
            not_possible: None,
            kernel_warnings: 0,
            counters_consistent: true,
            drops: Drops::default(),
            notes: Vec::new(),
            passed: true,
            skipped: false,
        }
    }

    /// The record of a fault left out by `--only`.
    fn skipped(name: String, what: String) -> FaultRecord {
        FaultRecord {
            skipped: true,
            ..FaultRecord::not_possible_quietly(name, what)
        }
    }
}

impl Fault<'_> {
    pub fn run(self, op: impl FnOnce(&Guest, &mut Ops) -> Result) -> Result<FaultRecord> {
        if !self.selected {
            return Ok(FaultRecord::skipped(self.name, self.what));
        }
        let stage = Stage::start(format!("fault {}: {}", self.name, self.what));
        let guest = self.guest;
        let log_before = std::fs::read_to_string(&guest.log)
            .unwrap_or_default()
            .len();
        let softirq_before = net_rx_softirqs(guest)?;
        let drops_before = Drops::read(guest)?;
        let stop = Arc::new(AtomicBool::new(false));
        let target: SocketAddr = self.target.unwrap_or_else(|| {
            format!("{GUEST_ADDR}:{ECHO_PORT}")
                .parse()
                .expect("address")
        });
        let spec = TrialSpec {
            target,
            rate_pps: self.rate,
            frame_bytes: 64,
            packets: self.rate * 3_600,
            warmup_packets: 0,
            grace: Duration::from_secs(2),
            flows: self.flows,
            bursts: self.bursts,
            stop: Some(stop.clone()),
        };
        let mut ops = Ops {
            stats_ok: true,
            ..Ops::default()
        };
        let mut trailing = None;
        let host_wait = guest.qemu_pid().map(HostWait::start);
        let traffic_start = Instant::now();
        let (result, op_result) = std::thread::scope(|scope| {
            let trial = scope.spawn(|| run_trial(&spec));
            std::thread::sleep(Duration::from_secs(1));
            let mut op_result = op(guest, &mut ops);
            if self.trailing && op_result.is_ok() {
                std::thread::sleep(TRAILING_SETTLE);
                let window = net_rx_softirqs(guest).and_then(|before| {
                    std::thread::sleep(TRAILING_WINDOW);
                    let after = net_rx_softirqs(guest)?;
                    Ok(after
                        .iter()
                        .sum::<u64>()
                        .saturating_sub(before.iter().sum()))
                });
                match window {
                    Ok(growth) => trailing = Some(growth),
                    Err(e) => op_result = Err(e),
                }
            }
            std::thread::sleep(Duration::from_secs(1));
            stop.store(true, Ordering::Release);
            (trial.join(), op_result)
        });
        let result = result
            .map_err(|_| "load generator panicked".to_string())?
            .map_err(|e| format!("load generator: {e}"))?;
        if let Err(e) = op_result {
            ops.failures.push(e);
        }
        let host_waits = host_wait.map(HostWait::finish);
        let softirq_after = net_rx_softirqs(guest)?;
        let drops = Drops::read(guest)?.since(drops_before);
        let log = std::fs::read_to_string(&guest.log).unwrap_or_default();
        let kernel_warnings = count_warnings(log.get(log_before..).unwrap_or(""));
        let windows: Vec<loss::Window> = ops
            .away
            .iter()
            .map(|&op| loss::excused_window(op, &result.echoed_sent_at))
            .collect();
        let lost_while_device_away = result
            .lost_sent_at
            .iter()
            .filter(|&&t| windows.iter().any(|w| t >= w.start && t <= w.end))
            .count() as u64;
        let back_after_ms_max = windows
            .iter()
            .filter_map(|w| w.back_after)
            .max()
            .map(|d| d.as_secs_f64() * 1e3);
        let not_back = windows.iter().filter(|w| w.back_after.is_none()).count();
        if not_back > 0 {
            ops.failures.push(format!(
                "after {not_back} device-away operation(s) the device echoed nothing sent within {} s",
                RECOVERY_BOUND.as_secs()
            ));
        }
        let mut unexcused_loss_clusters =
            loss::unexcused_clusters(&result.lost_sent_at, &windows, traffic_start);
        let cluster_count = unexcused_loss_clusters.len();
        unexcused_loss_clusters.truncate(5);
        for c in &mut unexcused_loss_clusters {
            c.qemu_host_wait = host_waits
                .as_ref()
                .and_then(|w| w.longest_wait(c.sent.0, c.sent.1))
                .map(|(name, wait, span)| {
                    (name, wait.as_secs_f64() * 1e3, span.as_secs_f64() * 1e3)
                });
        }
        let qemu_host_wait_total = host_waits.as_ref().and_then(|w| w.longest_wait_overall());
        let operations: BTreeMap<String, OpTimes> = ops
            .times
            .iter()
            .map(|(label, v)| {
                let max_ms = v.iter().copied().fold(0.0, f64::max);
                let mean_ms = v.iter().sum::<f64>() / v.len().max(1) as f64;
                (
                    label.clone(),
                    OpTimes {
                        count: v.len() as u32,
                        max_ms,
                        mean_ms,
                        bound_ms: bound_ms(label) * self.bound_scale,
                    },
                )
            })
            .collect();
        let slow: Vec<String> = operations
            .iter()
            .filter(|(_, t)| t.max_ms > t.bound_ms)
            .map(|(l, t)| format!("{l} took {:.0} ms", t.max_ms))
            .collect();
        let mut notes = ops.notes;
        if let Some(ms) = back_after_ms_max {
            notes.push(format!(
                "echoing again at most {ms:.0} ms after a device-away operation returned"
            ));
        }
        if let Some(c) = unexcused_loss_clusters.first() {
            notes.push(format!(
                "unexcused loss in {cluster_count} cluster(s); largest: {} packets sent from +{:.3} s over {:.0} ms{}",
                c.lost,
                c.at_s,
                c.span_ms,
                c.after_window_ms
                    .map(|ms| format!(", {ms:.0} ms after a device-away window ended"))
                    .unwrap_or_default()
            ));
        }
        for c in &unexcused_loss_clusters {
            // The operations running while it was sent, or the last one before it.
            let during: Vec<String> = ops
                .timeline
                .iter()
                .filter(|(_, a, b)| *a <= c.sent.1 && *b >= c.sent.0)
                .map(|(what, a, b)| {
                    format!(
                        "`{what}` (+{:.3}..+{:.3} s)",
                        (*a - traffic_start).as_secs_f64(),
                        (*b - traffic_start).as_secs_f64()
                    )
                })
                .collect();
            let before =
                ops.timeline
                    .iter()
                    .rfind(|(_, _, b)| *b < c.sent.0)
                    .map(|(what, _, b)| {
                        format!(
                            "`{what}`, returned {:.0} ms before",
                            (c.sent.0 - *b).as_secs_f64() * 1e3
                        )
                    });
            notes.push(format!(
                "  cluster of {} at +{:.3} s: sent during {}; last operation before it: {}",
                c.lost,
                c.at_s,
                if during.is_empty() {
                    "no operation".to_string()
                } else {
                    during.join(", ")
                },
                before.unwrap_or_else(|| "none".into())
            ));
            if let Some((name, wait, span)) = &c.qemu_host_wait {
                notes.push(format!(
                    "  cluster of {} at +{:.3} s: QEMU thread `{name}` waited {wait:.0} of the {span:.0} ms around it for a host CPU",
                    c.lost, c.at_s
                ));
            }
        }
        if let Some((name, wait, span)) = &qemu_host_wait_total {
            notes.push(format!(
                "QEMU thread `{name}` waited {:.0} ms of the {:.1} s of traffic for a host CPU",
                wait.as_secs_f64() * 1e3,
                span.as_secs_f64()
            ));
        }
        notes.extend(ops.failures.iter().map(|f| format!("failed: {f}")));
        notes.extend(slow.iter().map(|s| format!("too slow: {s}")));
        if let Some(growth @ 1..) = trailing {
            notes.push(format!(
                "failed: ownership did not resume: NET_RX +{growth} over the trailing {} ms of traffic",
                TRAILING_WINDOW.as_millis()
            ));
        }
        let excused = if self.driver_drops_excused {
            drops.guest_dev_rx_dropped
        } else {
            0
        };
        let passed = result.lost.saturating_sub(lost_while_device_away) <= excused
            && trailing.unwrap_or(0) == 0
            && kernel_warnings == 0
            && ops.stats_ok
            && ops.failures.is_empty()
            && slow.is_empty()
            && result.sent > 0;
        let record = FaultRecord {
            name: self.name.clone(),
            what: self.what,
            sent: result.sent,
            received: result.received,
            lost: result.lost,
            lost_while_device_away,
            back_after_ms_max,
            unexcused_loss_clusters,
            net_rx_softirq_delta: softirq_after
                .iter()
                .sum::<u64>()
                .saturating_sub(softirq_before.iter().sum()),
            operations,
            net_rx_trailing: trailing,
            not_possible: None,
            kernel_warnings,
            counters_consistent: ops.stats_ok,
            drops,
            notes,
            passed,
            skipped: false,
        };
        println!(
            "[xtask]   sent {} lost {} (while device away {}; guest rcvbuf {}, eth0 rx_dropped {}, tap {}, host rcvbuf {})  NET_RX +{}{}  warnings {}  counters {}  {}",
            record.sent,
            record.lost,
            record.lost_while_device_away,
            record.drops.guest_udp_rcvbuf_errors,
            record.drops.guest_dev_rx_dropped,
            record.drops.host_tap_tx_dropped,
            record.drops.host_udp_rcvbuf_errors,
            record.net_rx_softirq_delta,
            record
                .net_rx_trailing
                .map(|t| format!(" (trailing window +{t})"))
                .unwrap_or_default(),
            record.kernel_warnings,
            if record.counters_consistent {
                "ok"
            } else {
                "INCONSISTENT"
            },
            if record.passed { "ok" } else { "FAIL" }
        );
        for (label, t) in &record.operations {
            println!(
                "[xtask]     {label:<14} x{:<3} max {:>8.1} ms  mean {:>8.1} ms",
                t.count, t.max_ms, t.mean_ms
            );
        }
        for note in &record.notes {
            println!("[xtask]     {note}");
        }
        stage.done();
        Ok(record)
    }
}

impl<'a> Fault<'a> {
    pub fn with_flows(self, flows: usize) -> Fault<'a> {
        Fault { flows, ..self }
    }

    /// Fails the fault unless, after its operations, a trailing window of traffic
    /// ([`TRAILING_WINDOW`], starting [`TRAILING_SETTLE`] after the last operation)
    /// shows no NET_RX growth: KBP owns the instances again.
    pub fn with_trailing_window(self) -> Fault<'a> {
        Fault {
            trailing: true,
            ..self
        }
    }

    /// Sends the echo traffic to `target` (a container's published port) instead of the
    /// guest's own echo server.
    pub fn with_target(self, target: SocketAddr) -> Fault<'a> {
        Fault {
            target: Some(target),
            ..self
        }
    }

    /// Excuses loss that the driver counts as its own drops (eth0 `rx_dropped`).
    pub fn excusing_driver_drops(self) -> Fault<'a> {
        Fault {
            driver_drops_excused: true,
            ..self
        }
    }
}
