//! The cost stage's part of `report.md` (`cost.rs`): one row per mode and kbp.ko
//! configuration with both repetitions' cost per packet, their spread and the ratio to
//! `napi`, and the verdict on issue 14's goal (KBP at most [`GOAL_VS_NAPI`] times
//! napi's cost per packet), which the bench also prints ([`goal_lines`]).

use std::fmt::Write;

use crate::suites::bench::cost::{GOAL_VS_NAPI, IDLE_SECONDS, PACKETS, RATE, REPS};
use crate::suites::bench::model::{Cost, CostFigure};

/// One mode and kbp.ko configuration.
struct Row<'a> {
    mode: &'a str,
    params: &'a str,
    figure: CostFigure,
    /// Busy share of the longer no-traffic interval, percent.
    quiet_busy_percent: Option<f64>,
    /// Per repetition: ns per packet (net, or busy per packet for [`CostFigure::Spins`]).
    reps: Vec<f64>,
    /// The widest resolution of the repetitions, ns.
    resolution: Option<f64>,
    /// Per repetition: kbp.ko's empty polls per packet.
    empty_per_packet: Vec<f64>,
    /// Per repetition: the guest clock's advance, s (host time while idle, instructions
    /// while busy: how far the host's speed left the guest behind its traffic).
    clock_s: Vec<f64>,
}

impl Row<'_> {
    fn name(&self) -> String {
        if self.params.is_empty() {
            self.mode.to_string()
        } else {
            format!("{} {}", self.mode, self.params)
        }
    }

    fn mean(&self) -> Option<f64> {
        (!self.reps.is_empty()).then(|| self.reps.iter().sum::<f64>() / self.reps.len() as f64)
    }

    fn spread_percent(&self) -> Option<f64> {
        let lo = self.reps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.reps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (self.reps.len() > 1 && lo > 0.0).then(|| (hi - lo) * 100.0 / lo)
    }

    /// Whether the goal applies: a KBP configuration whose figure is a per-packet cost.
    fn judged(&self) -> bool {
        self.mode.starts_with("kbp") && self.figure == CostFigure::PerPacket
    }
}

fn per_packet(c: &Cost) -> Option<f64> {
    match c.figure {
        CostFigure::Spins => (c.received > 0).then(|| c.busy_ns as f64 / c.received as f64),
        CostFigure::PerPacket | CostFigure::WithSpinWindow => c.net_busy_per_packet_ns,
    }
}

/// The rows in the order the stage ran them.
fn rows(costs: &[Cost]) -> Vec<Row<'_>> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for c in costs {
        if !keys.contains(&(c.mode.as_str(), c.params.as_str())) {
            keys.push((&c.mode, &c.params));
        }
    }
    keys.into_iter()
        .map(|(mode, params)| {
            let of: Vec<&Cost> = costs
                .iter()
                .filter(|c| c.mode == mode && c.params == params)
                .collect();
            let trials: Vec<&Cost> = of.iter().copied().filter(|c| c.rep.is_some()).collect();
            Row {
                mode,
                params,
                figure: of[0].figure,
                quiet_busy_percent: of
                    .iter()
                    .filter(|c| c.rep.is_none() && c.idle_seconds > 0.0)
                    .map(|c| c.busy_ns as f64 * 100.0 / c.clock_ns.max(1) as f64)
                    .next_back(),
                reps: trials.iter().filter_map(|c| per_packet(c)).collect(),
                resolution: trials
                    .iter()
                    .filter_map(|c| c.resolution_ns)
                    .reduce(f64::max),
                empty_per_packet: trials
                    .iter()
                    .filter(|c| c.received > 0)
                    .filter_map(|c| Some(c.empty_polls? as f64 / c.received as f64))
                    .collect(),
                clock_s: trials.iter().map(|c| c.clock_ns as f64 / 1e9).collect(),
            }
        })
        .collect()
}

/// Whether a configuration met the goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Met,
    NotMet,
    /// The goal lies within the figure's resolution.
    Undecided,
    /// Not a measurement: the figure is not positive, or its resolution is wider than
    /// the figure itself (a background that does not describe the trials).
    Invalid,
}

fn verdict(mean: f64, resolution: Option<f64>, napi: f64) -> Verdict {
    let r = resolution.unwrap_or(0.0);
    if mean <= 0.0 || napi <= 0.0 || r >= mean {
        Verdict::Invalid
    } else if (mean + r) / napi <= GOAL_VS_NAPI {
        Verdict::Met
    } else if (mean - r) / napi > GOAL_VS_NAPI {
        Verdict::NotMet
    } else {
        Verdict::Undecided
    }
}

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Met => "met",
        Verdict::NotMet => "not met",
        Verdict::Undecided => "undecided within the resolution",
        Verdict::Invalid => {
            "not judged: the figure is not a measurement (not positive, or its resolution is wider than itself)"
        }
    }
}

fn napi_cost(rows: &[Row<'_>]) -> Option<f64> {
    rows.iter()
        .find(|row| row.mode == "napi" && row.params.is_empty())
        .and_then(Row::mean)
}

/// One line per judged configuration: its ratio to napi and whether the goal was met.
pub fn goal_lines(costs: &[Cost]) -> Vec<String> {
    let rows = rows(costs);
    let Some(napi) = napi_cost(&rows) else {
        return Vec::new();
    };
    rows.iter()
        .filter(|row| row.judged())
        .filter_map(|row| {
            let mean = row.mean()?;
            Some(format!(
                "cost per packet, {}: {:.1} µs{} = {:.2}x napi's {:.1} µs: the {GOAL_VS_NAPI:.2}x goal {}",
                row.name(),
                mean / 1_000.0,
                row.resolution
                    .map_or(String::new(), |res| format!(" ± {:.1}", res / 1_000.0)),
                mean / napi,
                napi / 1_000.0,
                verdict_text(verdict(mean, row.resolution, napi))
            ))
        })
        .collect()
}

fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1_000.0)
}

/// Appends the section for the stage's intervals and failures (nothing when the stage
/// did not run).
pub fn section(s: &mut String, costs: &[Cost], errors: &[String]) {
    if costs.is_empty() && errors.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Guest CPU per received packet (icount: instructions, one vCPU)\n\n\
         One boot per mode under `-icount shift=0,sleep=on` (one ns of guest clock per instruction executed; the clock follows \
         the host's while the guest idles) with only CPU 0 online: the interrupts, NET_RX or the polling thread, and the echo \
         server all on it. Busy = the clock's advance outside the idle task, plus the interrupt handlers and softirqs run in \
         it. Per configuration: two intervals without traffic (readings back to back, and {IDLE_SECONDS} s apart) give the \
         background, a fixed part plus a part per clock ns (for `kbp-spin`, whose guest never idles, per empty poll of its \
         thread, over 0.4 s intervals right after a few packets, loaded with `idle_release_us=1000000` so that its instances \
         stay owned, checked after each interval); then {REPS} trials of {PACKETS} echoes of 64 B at {RATE} pps, each (busy - background) / echoes received: the \
         interrupt, NET_RX or the KBP thread and the echo server's work per packet, with `kbp-spin`'s empty polls excluded \
         (± from kbp.ko publishing its counters every 256 steps). `kbp-adaptive` as configured spins 1000 µs after each \
         packet, and that window's empty polls stay in its figure; reloaded with `spin_window_us=0` it never spins, so its \
         figure is KBP's path with nothing to exclude. `busy-poll` spins uncounted: busy per packet, not a cost.\n\n\
         | mode | no traffic: busy | per packet, repetition 1 / 2 | spread | vs napi | {GOAL_VS_NAPI:.2}x goal | kbp empty polls per packet | guest clock per trial |\n\
         |---|---|---|---|---|---|---|---|"
    );
    let rows = rows(costs);
    let napi = napi_cost(&rows);
    for row in &rows {
        let what = match row.figure {
            CostFigure::PerPacket => String::new(),
            CostFigure::WithSpinWindow => " (includes its spin window)".into(),
            CostFigure::Spins => " (spins: busy per packet, not a cost)".into(),
        };
        let reps = if row.reps.is_empty() {
            "-".to_string()
        } else {
            let list: Vec<String> = row.reps.iter().map(|v| us(*v)).collect();
            format!(
                "{} µs{}",
                list.join(" / "),
                row.resolution
                    .map_or(String::new(), |res| format!(" (± {})", us(res)))
            )
        };
        let (vs, goal) = match (row.mean(), napi) {
            (Some(mean), Some(napi)) if row.figure == CostFigure::PerPacket => (
                format!("{:.2}x", mean / napi),
                if row.judged() {
                    verdict_text(verdict(mean, row.resolution, napi)).to_string()
                } else {
                    "-".into()
                },
            ),
            _ => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "| {}{what} | {} | {reps} | {} | {vs} | {goal} | {} | {} s |",
            row.name(),
            row.quiet_busy_percent
                .map_or("-".into(), |p| format!("{p:.2}%")),
            row.spread_percent()
                .map_or("-".into(), |p| format!("{p:.1}%")),
            if row.empty_per_packet.is_empty() {
                "-".into()
            } else {
                row.empty_per_packet
                    .iter()
                    .map(|e| format!("{e:.1}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            },
            row.clock_s
                .iter()
                .map(|c| format!("{c:.2}"))
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
    for line in goal_lines(costs) {
        let _ = writeln!(s, "\n- {line}");
    }
    for e in errors {
        let _ = writeln!(s, "\n- cost stage failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(mode: &str, params: &str, rep: Option<u32>, net: Option<f64>) -> Cost {
        Cost {
            mode: mode.into(),
            params: params.into(),
            rep,
            idle_seconds: if rep.is_none() { 5.0 } else { 0.0 },
            received: 1000,
            clock_ns: 5_000_000_000,
            busy_ns: 5_000_000,
            empty_polls: mode.starts_with("kbp").then_some(3000),
            net_busy_per_packet_ns: net,
            resolution_ns: (mode == "kbp-spin" && rep.is_some()).then_some(1_000.0),
            figure: match (mode, params) {
                ("busy-poll", _) => CostFigure::Spins,
                ("kbp-adaptive", "") => CostFigure::WithSpinWindow,
                _ => CostFigure::PerPacket,
            },
        }
    }

    fn stage() -> Vec<Cost> {
        vec![
            cost("napi", "", None, None),
            cost("napi", "", Some(0), Some(40_000.0)),
            cost("napi", "", Some(1), Some(40_400.0)),
            cost("kbp-spin", "", None, None),
            cost("kbp-spin", "", Some(0), Some(42_000.0)),
            cost("kbp-spin", "", Some(1), Some(42_000.0)),
            cost("kbp-adaptive", "", Some(0), Some(1_000_000.0)),
            cost("kbp-adaptive", "spin_window_us=0", Some(0), Some(44_000.0)),
            cost("busy-poll", "", Some(0), None),
        ]
    }

    #[test]
    fn every_configuration_gets_a_row_with_both_repetitions() {
        let mut s = String::new();
        section(&mut s, &stage(), &["threaded: boom".into()]);
        assert!(
            s.contains("| napi | 0.10% | 40.0 / 40.4 µs | 1.0% | 1.00x | - | - | 5.00 / 5.00 s |"),
            "{s}"
        );
        assert!(
            s.contains("| kbp-spin | 0.10% | 42.0 / 42.0 µs (± 1.0) | 0.0% | 1.04x | undecided within the resolution | 3.0 / 3.0 | 5.00 / 5.00 s |"),
            "{s}"
        );
        assert!(
            s.contains(
                "| kbp-adaptive (includes its spin window) | - | 1000.0 µs | - | - | - | 3.0 | 5.00 s |"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "| kbp-adaptive spin_window_us=0 | - | 44.0 µs | - | 1.09x | not met | 3.0 | 5.00 s |"
            ),
            "{s}"
        );
        assert!(
            s.contains("| busy-poll (spins: busy per packet, not a cost) | - | 5.0 µs |"),
            "{s}"
        );
        assert!(s.contains("- cost stage failed: threaded: boom"));
    }

    #[test]
    fn the_goal_is_judged_against_napi_s_mean() {
        let mut costs = stage();
        let lines = goal_lines(&costs);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("cost per packet, kbp-spin: 42.0 µs ± 1.0 = 1.04x napi's 40.2 µs")
        );
        assert_eq!(verdict(41.0, None, 40.0), Verdict::Met);
        assert_eq!(verdict(43.0, None, 40.0), Verdict::NotMet);
        assert_eq!(verdict(43.0, Some(1.0), 40.0), Verdict::Undecided);
        // The 03:12 UTC run's kbp-spin: a background per empty poll fitted on
        // intervals where the idle release had let the instances go.
        assert_eq!(verdict(-67_867.6, Some(24_695.7), 25.6), Verdict::Invalid);
        assert_eq!(verdict(16.8, Some(20.0), 23.8), Verdict::Invalid);
        costs.retain(|c| c.mode != "napi");
        assert!(goal_lines(&costs).is_empty());
    }
}
