//! # A second real embedder of kbp-core: userspace busy-poll receive over AF_XDP
//!
//! Creates a veth pair with its receiving end in a network namespace, and measures,
//! side by side on the same veth and the same paced UDP traffic, one-way latency
//! (a CLOCK_MONOTONIC stamp in the packet) and the consumer thread's CPU for:
//! kbp-core's poller over an AF_XDP socket in `Spin` and in `Adaptive` mode, a
//! blocking UDP socket, a `SO_BUSY_POLL` socket, and the veth's NAPI in the kernel's
//! threaded mode. Needs root (netns, veth, bpf(2), AF_XDP).
//!
//! ```sh
//! cargo run --release --example af_xdp                     # the table, about 40 s
//! cargo run --release --example af_xdp -- --seconds 1 --low 1000 --high 20000
//! cargo run --release --example af_xdp -- --fifo           # sender and consumer SCHED_FIFO
//! ```
//!
//! Files: `xsk.rs` (the socket, UMEM and rings), `bpf.rs` (XSKMAP, program, link),
//! `netns.rs` (the test network), `embed.rs` (kbp-core's `RxInstance`, `Platform`
//! and `Unpark` over sockets), `traffic.rs` (sender, parser, socket consumers,
//! percentiles), `clock.rs`, `trial.rs` (one mode at one rate), this file (the
//! command line and the table).
//!
//! Dependencies: `libc` only (MIT OR Apache-2.0). AF_XDP is driven through its
//! documented `setsockopt`/`mmap` interface and the program through bpf(2), as the
//! guest's `kbp-ctl` does, rather than through `xsk-rs`/`libxdp-sys` or `aya`: those
//! add a C build of libxdp and libbpf (LGPL-2.1 OR BSD-2-Clause) or an eBPF toolchain
//! for a five-instruction program, which this workspace (GPL-2.0-only OR MIT) would
//! have to vet and CI would have to build.

use std::process::ExitCode;

mod bpf;
mod clock;
mod embed;
mod netns;
mod traffic;
mod trial;
mod xsk;

use netns::TestNet;
use trial::{Mode, Outcome, Placement};

struct Args {
    fifo: bool,
    seconds: f64,
    low: u32,
    high: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        fifo: false,
        seconds: 3.0,
        low: 1_000,
        high: 20_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => args.seconds = value()?.parse().map_err(|e| format!("{e}"))?,
            "--low" => args.low = value()?.parse().map_err(|e| format!("{e}"))?,
            "--high" => args.high = value()?.parse().map_err(|e| format!("{e}"))?,
            "--fifo" => args.fifo = true,
            "--help" | "-h" => {
                return Err("usage: af_xdp [--seconds S] [--low PPS] [--high PPS] [--fifo]".into());
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn us(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

/// Every mode at `rate`; a mode that cannot run (threaded NAPI not settable) is
/// reported with the reason.
fn measure(
    net: &TestNet,
    rate: u32,
    seconds: f64,
    placement: Placement,
) -> Vec<(Mode, Result<Outcome, String>)> {
    Mode::ALL
        .iter()
        .map(|&mode| {
            eprintln!("  {} at {rate} pps ...", mode.name());
            (
                mode,
                trial::run(net, mode, rate, seconds, placement).map_err(|e| e.to_string()),
            )
        })
        .collect()
}

fn print_table(rate: u32, rows: &[(Mode, Result<Outcome, String>)]) {
    println!(
        "\n| {rate} pps, 16 B UDP payload | p50 | p99 | p99.9 | max | consumer CPU | received / sent |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (mode, row) in rows {
        match row {
            Ok(o) => println!(
                "| {} | {} | {} | {} | {} | {:.0}% | {} / {} |",
                mode.name(),
                us(o.latency.p50),
                us(o.latency.p99),
                us(o.latency.p999),
                us(o.latency.max),
                o.cpu * 100.0,
                o.received,
                o.sent
            ),
            Err(e) => println!("| {} | not run: {e} | | | | | |", mode.name()),
        }
    }
}

fn find(rows: &[(Mode, Result<Outcome, String>)], mode: Mode) -> Option<&Outcome> {
    rows.iter()
        .find(|(m, _)| *m == mode)
        .and_then(|(_, r)| r.as_ref().ok())
}

/// The issue's goals, judged on the measured rows.
fn print_goals(rate: u32, rows: &[(Mode, Result<Outcome, String>)]) {
    let (Some(spin), Some(adaptive), Some(blocking), Some(busy)) = (
        find(rows, Mode::KbpSpin),
        find(rows, Mode::KbpAdaptive),
        find(rows, Mode::Blocking),
        find(rows, Mode::BusyPoll),
    ) else {
        return;
    };
    let ratio = spin.latency.p999 as f64 / blocking.latency.p999.max(1) as f64;
    println!(
        "- {rate} pps: KBP spin p99.9 / blocking p99.9 = {ratio:.2} (goal <= 0.2: {})",
        if ratio <= 0.2 { "met" } else { "NOT met" }
    );
    for (name, kbp) in [("spin", spin), ("adaptive", adaptive)] {
        let lat_ok = kbp.latency.p99 <= busy.latency.p99;
        let cpu_ok = kbp.cpu <= busy.cpu + 0.01;
        println!(
            "- {rate} pps: KBP {name} vs SO_BUSY_POLL: p99 {} vs {}, CPU {:.0}% vs {:.0}% (goal: as good at equal or lower CPU: {})",
            us(kbp.latency.p99),
            us(busy.latency.p99),
            kbp.cpu * 100.0,
            busy.cpu * 100.0,
            if lat_ok && cpu_ok { "met" } else { "NOT met" }
        );
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("af_xdp needs root (network namespace, veth, bpf(2), AF_XDP)");
        return ExitCode::from(2);
    }
    let net = match TestNet::create() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cannot create the test network: {e}");
            return ExitCode::FAILURE;
        }
    };
    let placement = Placement { fifo: args.fifo };
    println!(
        "# KBP over AF_XDP vs the kernel's receive paths (veth, netns; kernel {}; {} s per trial; consumer on CPU 1, sender on CPU 0, {})",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        args.seconds,
        if args.fifo {
            "both SCHED_FIFO 50"
        } else {
            "both SCHED_OTHER"
        }
    );
    println!(
        "# load average before the run: {} (other work on the machine shares its two CPUs)",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut failed = false;
    eprintln!("idle (no traffic):");
    let idle: Vec<_> = [Mode::KbpSpin, Mode::KbpAdaptive]
        .iter()
        .map(|&m| (m, trial::run(&net, m, 0, 1.0, placement)))
        .collect();
    let mut all = Vec::new();
    for rate in [args.low, args.high] {
        eprintln!("{rate} pps:");
        let rows = measure(&net, rate, args.seconds, placement);
        print_table(rate, &rows);
        failed |= rows.iter().any(|(m, r)| *m != Mode::Threaded && r.is_err());
        all.push((rate, rows));
    }
    println!("\n| idle, no traffic | consumer CPU |");
    println!("|---|---|");
    for (mode, r) in &idle {
        match r {
            Ok(o) => println!("| {} | {:.1}% |", mode.name(), o.cpu * 100.0),
            Err(e) => {
                failed = true;
                println!("| {} | not run: {e} |", mode.name());
            }
        }
    }
    println!("\nGoals (issue 15):");
    if let Some((_, Ok(o))) = idle.iter().find(|(m, _)| *m == Mode::KbpAdaptive) {
        println!(
            "- KBP adaptive idle CPU {:.1}% (goal < 5%: {})",
            o.cpu * 100.0,
            if o.cpu < 0.05 { "met" } else { "NOT met" }
        );
    }
    for (rate, rows) in &all {
        print_goals(*rate, rows);
    }
    if failed {
        eprintln!("a KBP or socket mode could not run");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root: both KBP modes and the blocking socket receive every packet sent over
    /// the veth. Skipped (with a message) when not root.
    #[test]
    fn kbp_over_af_xdp_receives_every_packet() {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (netns, veth, bpf(2), AF_XDP)");
            return;
        }
        let net = TestNet::create().expect("test network");
        for mode in [Mode::KbpSpin, Mode::KbpAdaptive, Mode::Blocking] {
            let o = trial::run(&net, mode, 2_000, 0.5, Placement { fifo: false }).expect("trial");
            assert!(o.sent > 0);
            assert_eq!(o.received, o.sent, "{}: every packet received", mode.name());
            assert!(o.latency.p50 > 0 && o.latency.max >= o.latency.p99);
        }
    }
}
