//! The bench's outputs: `results.json` (every figure), `report.md` (tables, ratios to
//! `napi` and to `busy-poll`, and where KBP does not win) and SVG plots in the spirit
//! of the paper's Fig. 8 (max RTT per frame size and mode) and Fig. 9 (zero-loss
//! throughput), drawn with plotters' SVG backend.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use plotters::prelude::*;

use crate::base::Result;
use crate::guest::stats_file::{gap_bucket_text, gap_percentile_bucket};
use crate::suites::bench::cost_report;
use crate::suites::bench::model::{Results, Trial};

/// Medians over the repetitions of one (variant, frame, rate, mode), with the spread.
#[derive(Clone, Copy, Default)]
struct Agg {
    p50: f64,
    p99: f64,
    p99_9: f64,
    max: f64,
    max_lo: f64,
    max_hi: f64,
    p99_lo: f64,
    p99_hi: f64,
    lost: u64,
    sent: u64,
    poller_cpu: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn aggregate(trials: &[&Trial]) -> Agg {
    let col = |f: fn(&Trial) -> f64| trials.iter().map(|t| f(t)).collect::<Vec<f64>>();
    let maxes = col(|t| t.rtt_us.max);
    let p99s = col(|t| t.rtt_us.p99);
    let cpu: Vec<f64> = trials.iter().filter_map(|t| t.poller_cpu_percent).collect();
    Agg {
        p50: median(col(|t| t.rtt_us.p50)),
        p99: median(p99s.clone()),
        p99_9: median(col(|t| t.rtt_us.p99_9)),
        max: median(maxes.clone()),
        max_lo: maxes.iter().copied().fold(f64::INFINITY, f64::min),
        max_hi: maxes.iter().copied().fold(0.0, f64::max),
        p99_lo: p99s.iter().copied().fold(f64::INFINITY, f64::min),
        p99_hi: p99s.iter().copied().fold(0.0, f64::max),
        lost: trials.iter().map(|t| t.lost).sum(),
        sent: trials.iter().map(|t| t.sent).sum(),
        poller_cpu: (!cpu.is_empty()).then(|| median(cpu)),
    }
}

type Key = (String, usize, u64);

/// (variant, frame, rate) -> mode -> aggregate.
fn table(results: &Results) -> BTreeMap<Key, BTreeMap<String, Agg>> {
    let mut groups: BTreeMap<Key, BTreeMap<String, Vec<&Trial>>> = BTreeMap::new();
    for t in &results.trials {
        groups
            .entry((t.variant.clone(), t.frame_bytes, t.rate_pps))
            .or_default()
            .entry(t.mode.clone())
            .or_default()
            .push(t);
    }
    groups
        .into_iter()
        .map(|(k, modes)| {
            (
                k,
                modes
                    .into_iter()
                    .map(|(m, ts)| (m, aggregate(&ts)))
                    .collect(),
            )
        })
        .collect()
}

fn ms(us: f64) -> String {
    if us >= 1_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 && a.is_finite() => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// Writes results.json, report.md and the plots into `dir`.
pub fn write(dir: &Path, results: &Results) -> Result {
    let json = serde_json::to_string_pretty(results).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("results.json"), json).map_err(|e| e.to_string())?;
    let tables = table(results);
    std::fs::write(dir.join("report.md"), report(results, &tables)).map_err(|e| e.to_string())?;
    for (variant, file, title) in [
        (
            "base",
            "fig8-max-rtt.svg",
            "max RTT (median of repetitions), low rate",
        ),
        (
            "competition",
            "fig8-max-rtt-competition.svg",
            "max RTT with softirq competition, low rate",
        ),
        (
            "deferral",
            "fig8-max-rtt-deferral.svg",
            "max RTT with NET_RX deferred to a contended ksoftirqd, low rate",
        ),
    ] {
        let low = results.rates_pps[0];
        let groups: Vec<(String, Vec<f64>)> = tables
            .iter()
            .filter(|((v, _, rate), _)| v == variant && *rate == low)
            .map(|((_, frame, _), modes)| {
                (
                    format!("{frame} B"),
                    results
                        .modes
                        .iter()
                        .map(|m| modes.get(m).map_or(0.0, |a| a.max / 1_000.0))
                        .collect(),
                )
            })
            .collect();
        bars(&dir.join(file), title, "ms", &results.modes, &groups)?;
    }
    let mut frames: Vec<usize> = results.zero_loss.iter().map(|z| z.frame_bytes).collect();
    frames.dedup();
    let groups: Vec<(String, Vec<f64>)> = frames
        .iter()
        .map(|&f| {
            (
                format!("{f} B"),
                results
                    .modes
                    .iter()
                    .map(|m| {
                        results
                            .zero_loss
                            .iter()
                            .find(|z| &z.mode == m && z.frame_bytes == f)
                            .map_or(0.0, |z| z.pps as f64 / 1_000.0)
                    })
                    .collect(),
            )
        })
        .collect();
    bars(
        &dir.join("fig9-zero-loss.svg"),
        "zero-loss throughput (RFC 2544 binary search)",
        "kpps",
        &results.modes,
        &groups,
    )
}

fn report(r: &Results, tables: &BTreeMap<Key, BTreeMap<String, Agg>>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# KBP bench report\n");
    // First, so that no figure below is read as a property of KBP when the emulator
    // shared too few cores out.
    for line in &r.host_layout {
        let _ = writeln!(s, "**Host: {line}.**\n");
    }
    let _ = writeln!(s, "{}", short_answer(r, tables));
    let _ = writeln!(
        s,
        "- date: {}\n- machine: {}\n- guest: Linux {}; {}",
        r.date, r.machine, r.guest_kernel, r.setup
    );
    let _ = writeln!(
        s,
        "- workload: UDP echo to the unmodified echo server; {} s per trial, {} repetition(s) (tables show the median, spreads in brackets); rates {} and {} pps{}",
        r.trial_seconds,
        r.reps,
        r.rates_pps[0],
        r.rates_pps[1],
        if r.quick { "; `--quick` run" } else { "" }
    );
    let _ = writeln!(s, "- warm-up: {}", r.warmup);
    let capacity = r
        .zero_loss
        .iter()
        .filter(|z| z.mode == "napi" && z.frame_bytes == 64)
        .map(|z| z.pps)
        .next();
    let load = capacity.map_or(String::new(), |c| {
        format!(
            "this emulated (TCG) guest echoed {c} pps of 64 B without loss in `napi` mode (below), so the low rate is {:.0}% of that and the high rate {:.0}%; ",
            r.rates_pps[0] as f64 * 100.0 / c.max(1) as f64,
            r.rates_pps[1] as f64 * 100.0 / c.max(1) as f64
        )
    });
    let _ = writeln!(
        s,
        "- scale: {load}absolute times are inflated and noisy (vCPUs are host threads on {}). Compare modes within this run; the ratios are the result.\n",
        r.machine
    );
    let _ = writeln!(
        s,
        "Modes: `napi` (NET_RX softirq), `threaded` (sysfs threaded=1), `busy-poll` (upstream threaded busy poll via netlink napi-set, RX NAPIs), `kbp-spin`, `kbp-adaptive` (kbp.ko, one thread on CPU 3 for all four NAPIs).\n"
    );

    let variants = [
        ("base", "Echo RTT"),
        (
            "competition",
            "Echo RTT with softirq competition (a loopback flood on the IRQ CPU)",
        ),
        (
            "deferral",
            "Echo RTT under the paper's mechanism (softirq work on the IRQ CPU beyond __do_softirq's limits, deferred to ksoftirqd, which competes with CPU-bound threads at its priority)",
        ),
        (
            "many-queues",
            "Many queues, one poller: 16 flows over both queue pairs (64 B)",
        ),
        (
            "container",
            "Container configuration: echo server in a network namespace behind veth + bridge + NAT (a published port, DNAT by nftables)",
        ),
        (
            "container-veth",
            "Container configuration with veth NAPI: GRO on both veth ends; the kbp modes own both ends too (ifaces=eth0,veth0,ceth0@PID; NET_RX per trial in results.json)",
        ),
    ];
    for (variant, title) in variants {
        let _ = writeln!(s, "## {title}\n");
        for ((_, frame, rate), modes) in tables.iter().filter(|((v, _, _), _)| v == variant) {
            let napi = modes.get("napi").map(|a| a.max);
            let busy = modes.get("busy-poll").map(|a| a.max);
            let napi99 = modes.get("napi").map(|a| a.p99);
            let busy99 = modes.get("busy-poll").map(|a| a.p99);
            let _ = writeln!(s, "### {frame} B at {rate} pps\n");
            let cpu_col = variant == "many-queues";
            let _ = writeln!(
                s,
                "| mode | p50 | p99 [spread] | p99.9 | max [spread] | lost/sent | max vs napi | max vs busy-poll | p99 vs napi | p99 vs busy-poll |{}",
                if cpu_col { " polling CPU |" } else { "" }
            );
            let _ = writeln!(
                s,
                "|---|---|---|---|---|---|---|---|---|---|{}",
                if cpu_col { "---|" } else { "" }
            );
            for m in &r.modes {
                let Some(a) = modes.get(m) else { continue };
                let _ = writeln!(
                    s,
                    "| {m} | {} | {} [{}-{}] | {} | {} [{}-{}] | {}/{} | {} | {} | {} | {} |{}",
                    ms(a.p50),
                    ms(a.p99),
                    ms(a.p99_lo),
                    ms(a.p99_hi),
                    ms(a.p99_9),
                    ms(a.max),
                    ms(a.max_lo),
                    ms(a.max_hi),
                    a.lost,
                    a.sent,
                    ratio(a.max, napi),
                    ratio(a.max, busy),
                    ratio(a.p99, napi99),
                    ratio(a.p99, busy99),
                    if cpu_col {
                        format!(
                            " {} |",
                            a.poller_cpu.map_or("-".into(), |c| format!("{c:.0}%"))
                        )
                    } else {
                        String::new()
                    }
                );
            }
            let _ = writeln!(s);
        }
    }

    let _ = writeln!(
        s,
        "## Zero-loss throughput (64 B first; binary search, one trial per step)\n"
    );
    let mut frames: Vec<usize> = r.zero_loss.iter().map(|z| z.frame_bytes).collect();
    frames.sort_unstable();
    frames.dedup();
    let _ = writeln!(
        s,
        "| mode |{} vs napi | vs busy-poll |",
        frames
            .iter()
            .map(|f| format!(" {f} B |"))
            .collect::<String>()
    );
    let _ = writeln!(s, "|---|{}---|---|", "---|".repeat(frames.len()));
    let pps = |m: &str, f: usize| {
        r.zero_loss
            .iter()
            .find(|z| z.mode == m && z.frame_bytes == f)
            .map(|z| z.pps as f64)
    };
    for m in &r.modes {
        let first = frames.first().copied().unwrap_or(64);
        let cells: String = frames
            .iter()
            .map(|&f| {
                format!(
                    " {} |",
                    pps(m, f).map_or("-".into(), |p| format!("{p:.0} pps"))
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "| {m} |{cells} {} | {} |",
            ratio(pps(m, first).unwrap_or(f64::NAN), pps("napi", first)),
            ratio(pps(m, first).unwrap_or(f64::NAN), pps("busy-poll", first))
        );
    }

    let _ = writeln!(
        s,
        "\n## Inside-the-guest delay (kernel tracing: hist triggers feeding a synthetic event)\n\n\
         What KBP exists to remove, measured in the guest and so least blurred by emulation: for `napi` the time from raising \
         NET_RX on a CPU to the softirq running there (the paper's Table 2); for polling-thread modes the time from waking the \
         polling thread (the IRQ's napi_schedule) to it running. A spinning poller is never woken (no events): while it owns an \
         instance the interrupt stays masked and a packet waits at most until the next poll. The last column is KBP's own \
         account of that wait, kbp.ko's poll-gap histogram (log2 buckets of the time between two polls of an owned instance) \
         over the same trial. It counts gaps, not packets: a packet arriving at a random time lands in a long gap more often than \
         its share of the count. The `ksoftirqd/0 wake -> running` rows (every mode, same trials) are the other half of the \
         paper's mechanism: how long the IRQ CPU's ksoftirqd, woken when __do_softirq gives up, waited for the CPU. One traced \
         64 B trial at the low rate per load (none, `competition`, `deferral`).\n\n\
         | mode | variant | measured | events | p50 | p99 | p99.9 | max | KBP poll gaps (own histogram): count, p99, p99.9, max |\n\
         |---|---|---|---|---|---|---|---|---|"
    );
    let us = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v} µs"));
    for d in &r.delays {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            d.mode,
            d.variant,
            d.what,
            d.count,
            us(d.p50_us),
            us(d.p99_us),
            us(d.p99_9_us),
            us(d.max_us),
            d.kbp_poll_gaps.map_or("-".to_string(), |g| {
                let at =
                    |p: f64| gap_percentile_bucket(&g, p).map_or("-".to_string(), gap_bucket_text);
                format!(
                    "{}: {}, {}, {}",
                    g.iter().sum::<u64>(),
                    at(99.0),
                    at(99.9),
                    at(100.0)
                )
            })
        );
    }

    let _ = writeln!(
        s,
        "\n### ksoftirqd/0 over the traced trials (`/proc/PID/schedstat`, `/proc/softirqs`, `/proc/net/softnet_stat`)\n\n\
         How much of CPU 0's softirq work ran in ksoftirqd, and how long ksoftirqd waited for the CPU while runnable (woken or \
         preempted; the wake-to-run histogram above sees only wakes, and a ksoftirqd with work left is rarely asleep).\n\n\
         | mode | variant | ran | waited (runnable) | slices | mean wait per slice | CPU 0 NET_RX | time_squeeze |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for d in &r.delays {
        let Some(k) = d.ksoftirqd else { continue };
        let _ = writeln!(
            s,
            "| {} | {} | {} ms | {} ms | {} | {} | {} | {} |",
            d.mode,
            d.variant,
            k.ran_ms,
            k.waited_ms,
            k.slices,
            if k.slices > 0 {
                format!("{:.2} ms", k.waited_ms as f64 / k.slices as f64)
            } else {
                "-".into()
            },
            k.net_rx,
            k.time_squeeze
        );
    }

    cost_report::section(&mut s, &r.costs, &r.cost_errors);
    if !r.incidents.is_empty() {
        let _ = writeln!(s, "\n## Incidents\n");
        for what in &r.incidents {
            let _ = writeln!(s, "- {what}");
        }
    }
    if !r.not_run.is_empty() {
        let _ = writeln!(s, "\n## Not run\n");
        for why in &r.not_run {
            let _ = writeln!(s, "- {why}");
        }
    }

    let _ = writeln!(
        s,
        "\n## Idle cost (no traffic, 3 s)\n\n| mode | polling threads | whole guest |\n|---|---|---|"
    );
    for i in &r.idle {
        let _ = writeln!(
            s,
            "| {} | {:.0}% of a CPU | {:.0}% of a CPU |",
            i.mode, i.poller_percent, i.guest_busy_percent
        );
    }

    let _ = writeln!(s, "\n## Where KBP does not win\n");
    let mut losses = 0;
    for ((variant, frame, rate), modes) in tables {
        for kbp in ["kbp-spin", "kbp-adaptive"] {
            let Some(k) = modes.get(kbp) else { continue };
            for base in ["napi", "busy-poll"] {
                let Some(b) = modes.get(base) else { continue };
                for (what, kv, bv) in [("max", k.max, b.max), ("p99", k.p99, b.p99)] {
                    if kv > bv {
                        losses += 1;
                        let _ = writeln!(
                            s,
                            "- {variant}, {frame} B at {rate} pps: {kbp} {what} {} vs {base} {} ({:.2}x)",
                            ms(kv),
                            ms(bv),
                            kv / bv
                        );
                    }
                }
            }
        }
    }
    if losses == 0 {
        let _ = writeln!(s, "- nowhere in this run (max and p99 of every table).");
    }

    let _ = writeln!(
        s,
        "\n## Userspace figures (same run, before the guests)\n\n`cargo run --release --example simulated_nic`:\n\n```text\n{}\n```\n",
        r.userspace_example.trim()
    );
    let _ = writeln!(
        s,
        "`cargo bench -p kbp-examples --bench engine`:\n\n```text\n{}\n```\n",
        r.engine_bench.trim()
    );
    let _ = writeln!(
        s,
        "Plots: `fig8-max-rtt.svg`, `fig8-max-rtt-competition.svg`, `fig8-max-rtt-deferral.svg`, `fig9-zero-loss.svg`. Every figure: `results.json`."
    );
    s
}

/// The report's opening: does the paper's mechanism (NET_RX deferred to a ksoftirqd
/// that waits for the CPU) appear in this run, and what does each mode do under it?
/// From `napi`'s traced delays and ksoftirqd counters under the `deferral` load and the
/// `deferral` RTT tables.
fn short_answer(r: &Results, tables: &BTreeMap<Key, BTreeMap<String, Agg>>) -> String {
    let mut s = String::from(
        "## Short answer: does the paper's mechanism appear, and what does each mode do under it?\n\n",
    );
    let find = |variant: &str, ksoftirqd: bool| {
        r.delays.iter().find(|d| {
            d.mode == "napi" && d.variant == variant && d.ksoftirqd.is_some() == ksoftirqd
        })
    };
    let us = |v: Option<u64>| v.map_or("-".to_string(), |v| ms(v as f64));
    match (
        find("deferral", false),
        find("deferral", true),
        find("base", false),
    ) {
        (Some(net_rx), Some(ksd), base) => {
            let k = ksd.ksoftirqd.unwrap_or_default();
            let appears = net_rx.max_us.unwrap_or(0) >= 1_000 && k.waited_ms > 0;
            let _ = writeln!(
                s,
                "- {}: under the `deferral` load, `napi`'s NET_RX raise-to-run on the IRQ CPU was p99 {}, p99.9 {}, max {} over {} events{}; \
                 over the same trial ksoftirqd/0 ran {} ms and waited {} ms for the CPU in {} slices (time_squeeze +{}).",
                if appears {
                    "Yes, NET_RX waits for a contended ksoftirqd"
                } else {
                    "Not in this run (no millisecond NET_RX delay with a waiting ksoftirqd)"
                },
                us(net_rx.p99_us),
                us(net_rx.p99_9_us),
                us(net_rx.max_us),
                net_rx.count,
                base.map_or(String::new(), |b| format!(
                    " (without load: p99.9 {}, max {})",
                    us(b.p99_9_us),
                    us(b.max_us)
                )),
                k.ran_ms,
                k.waited_ms,
                k.slices,
                k.time_squeeze
            );
        }
        _ => {
            let _ = writeln!(
                s,
                "- `napi` was not traced under the `deferral` load in this run: no answer."
            );
        }
    }
    let low = r.rates_pps[0];
    if let Some(modes) = tables.get(&("deferral".to_string(), 64, low)) {
        let napi = modes.get("napi");
        let cells: Vec<String> = r
            .modes
            .iter()
            .filter_map(|m| {
                let a = modes.get(m)?;
                Some(format!(
                    "{m} p99 {} / max {}{}",
                    ms(a.p99),
                    ms(a.max),
                    napi.filter(|_| m != "napi")
                        .map_or(String::new(), |n| format!(
                            " ({:.2}x / {:.2}x napi)",
                            a.p99 / n.p99,
                            a.max / n.max
                        ))
                ))
            })
            .collect();
        let _ = writeln!(
            s,
            "- Host-side echo RTT under it (64 B, {low} pps, medians): {}.",
            cells.join("; ")
        );
    }
    // Side by side: each mode's in-guest delay under the load and its RTT.
    let deferral = |m: &String, ksoftirqd: bool| {
        r.delays
            .iter()
            .find(|d| &d.mode == m && d.variant == "deferral" && d.ksoftirqd.is_some() == ksoftirqd)
    };
    let _ = writeln!(
        s,
        "\n| mode (under `deferral`) | in-guest delay measured | p99.9 / max | ksoftirqd/0 waited / ran | RTT p99 / max (64 B, {low} pps) |\n|---|---|---|---|---|"
    );
    for m in &r.modes {
        let delay = deferral(m, false);
        let k = deferral(m, true).and_then(|d| d.ksoftirqd);
        let rtt = tables
            .get(&("deferral".to_string(), 64, low))
            .and_then(|t| t.get(m));
        if delay.is_none() && rtt.is_none() {
            continue;
        }
        let _ = writeln!(
            s,
            "| {m} | {} | {} | {} | {} |",
            delay.map_or("-".to_string(), |d| d.what.clone()),
            delay.map_or("-".to_string(), |d| {
                if d.count == 0 {
                    "no events".to_string()
                } else {
                    format!("{} / {}", us(d.p99_9_us), us(d.max_us))
                }
            }),
            k.map_or("-".to_string(), |k| format!(
                "{} / {} ms",
                k.waited_ms, k.ran_ms
            )),
            rtt.map_or("-".to_string(), |a| format!(
                "{} / {}",
                ms(a.p99),
                ms(a.max)
            ))
        );
    }
    s
}

/// Grouped bar chart: one group per label, one bar per series.
fn bars(
    path: &Path,
    title: &str,
    unit: &str,
    series: &[String],
    groups: &[(String, Vec<f64>)],
) -> Result {
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let top = groups
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.15;
    let root = SVGBackend::new(path, (800, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let n = groups.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n, 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(unit)
        .draw()
        .map_err(|e| err(&e))?;
    let width = 0.8 / series.len().max(1) as f64;
    for (i, name) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let rects: Vec<Rectangle<(f64, f64)>> = groups
            .iter()
            .enumerate()
            .map(|(g, (_, values))| {
                let x0 = g as f64 + 0.1 + i as f64 * width;
                Rectangle::new(
                    [
                        (x0, 0.0),
                        (x0 + width * 0.9, values.get(i).copied().unwrap_or(0.0)),
                    ],
                    color.filled(),
                )
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    for (g, (label, _)) in groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        root.draw(&Text::new(
            label.clone(),
            (x - 20, y + 8),
            ("sans-serif", 14),
        ))
        .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use kbp_traffic::RttSummary;

    use super::*;
    use crate::guest::tracing::{Delay, KsoftirqdStats};

    fn delay(mode: &str, variant: &str, max_us: u64, ksoftirqd: Option<KsoftirqdStats>) -> Delay {
        Delay {
            mode: mode.into(),
            variant: variant.into(),
            what: "x".into(),
            count: 100,
            p50_us: Some(10),
            p99_us: Some(max_us / 2),
            p99_9_us: Some(max_us),
            max_us: Some(max_us),
            kbp_poll_gaps: None,
            dropped: 0,
            ksoftirqd,
        }
    }

    fn trial(mode: &str, p99: f64, max: f64) -> Trial {
        Trial {
            mode: mode.into(),
            variant: "deferral".into(),
            frame_bytes: 64,
            rate_pps: 1000,
            rep: 0,
            flows: 1,
            sent: 10,
            received: 10,
            lost: 0,
            rtt_us: RttSummary {
                p99,
                max,
                ..RttSummary::default()
            },
            net_rx_softirq_delta: 0,
            poller_cpu_percent: None,
        }
    }

    fn results(napi_deferral_max_us: u64) -> Results {
        let k = KsoftirqdStats {
            ran_ms: 3245,
            waited_ms: 6529,
            slices: 525,
            net_rx: 3086,
            time_squeeze: 1218,
        };
        Results {
            date: String::new(),
            machine: String::new(),
            guest_kernel: String::new(),
            host_layout: vec!["oversubscribed: 2 host cores (0-1) for 4 vCPUs".into()],
            oversubscribed: true,
            setup: String::new(),
            quick: true,
            rates_pps: [1000, 5000],
            trial_seconds: 4.0,
            reps: 1,
            warmup: String::new(),
            modes: vec!["napi".into(), "kbp-spin".into()],
            trials: vec![
                trial("napi", 9000.0, 24000.0),
                trial("kbp-spin", 4500.0, 6000.0),
            ],
            zero_loss: Vec::new(),
            idle: Vec::new(),
            costs: Vec::new(),
            cost_errors: Vec::new(),
            not_run: Vec::new(),
            incidents: Vec::new(),
            delays: vec![
                delay("napi", "base", 447, None),
                delay("napi", "deferral", napi_deferral_max_us, None),
                delay("napi", "deferral", 18173, Some(k)),
            ],
            userspace_example: String::new(),
            engine_bench: String::new(),
        }
    }

    #[test]
    fn the_report_opens_with_the_host_and_the_answer() {
        let r = results(24245);
        let text = report(&r, &table(&r));
        let host = text.find("**Host: oversubscribed").expect("host line");
        let answer = text.find("## Short answer").expect("short answer");
        assert!(host < answer && answer < text.find("- date:").unwrap());
        assert!(
            text.contains("- Yes, NET_RX waits for a contended ksoftirqd: under the `deferral` load, `napi`'s NET_RX raise-to-run on the IRQ CPU was p99 12.12 ms, p99.9 24.25 ms, max 24.25 ms over 100 events (without load: p99.9 447 µs, max 447 µs); over the same trial ksoftirqd/0 ran 3245 ms and waited 6529 ms for the CPU in 525 slices (time_squeeze +1218)."),
            "{text}"
        );
        assert!(
            text.contains("napi p99 9.00 ms / max 24.00 ms; kbp-spin p99 4.50 ms / max 6.00 ms (0.50x / 0.25x napi)"),
            "{text}"
        );
        assert!(
            text.contains("| napi | deferral | 3245 ms | 6529 ms | 525 | 12.44 ms | 3086 | 1218 |")
        );
        assert!(
            text.contains(
                "| napi | x | 24.25 ms / 24.25 ms | 6529 / 3245 ms | 9.00 ms / 24.00 ms |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| kbp-spin | - | - | - | 4.50 ms / 6.00 ms |"),
            "{text}"
        );
        assert!(!text.contains("Guest CPU per received packet"));
        let no = results(900);
        assert!(report(&no, &table(&no)).contains("- Not in this run"));
    }
}
