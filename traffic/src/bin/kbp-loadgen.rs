//! `kbp-loadgen ADDR:PORT [--rate PPS] [--frame BYTES] [--packets N] [--warmup N]
//!  [--flows N] [--search LOW HIGH SECONDS]`: UDP echo load and RTT meter; prints JSON.

use std::time::Duration;

use kbp_traffic::{TrialSpec, run_trial, zero_loss_search};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(target) = args.next().and_then(|a| a.parse().ok()) else {
        eprintln!(
            "usage: kbp-loadgen ADDR:PORT [--rate PPS] [--frame BYTES] [--packets N] [--warmup N] [--flows N] [--search LOW HIGH SECONDS]"
        );
        std::process::exit(2);
    };
    let mut spec = TrialSpec {
        target,
        rate_pps: 1_000,
        frame_bytes: 64,
        packets: 10_000,
        warmup_packets: 1_000,
        grace: Duration::from_secs(1),
        flows: 1,
        bursts: None,
        stop: None,
    };
    let mut search = None;
    let num = |v: Option<String>| -> u64 {
        v.and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            eprintln!("bad number");
            std::process::exit(2)
        })
    };
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--rate" => spec.rate_pps = num(args.next()),
            "--frame" => spec.frame_bytes = num(args.next()) as usize,
            "--packets" => spec.packets = num(args.next()),
            "--warmup" => spec.warmup_packets = num(args.next()),
            "--flows" => spec.flows = num(args.next()) as usize,
            "--search" => search = Some((num(args.next()), num(args.next()), num(args.next()))),
            other => {
                eprintln!("unknown flag {other}");
                std::process::exit(2);
            }
        }
    }
    if !(64..=1518).contains(&spec.frame_bytes) {
        eprintln!("--frame must be 64..=1518");
        std::process::exit(2);
    }
    let out = match search {
        Some((lo, hi, secs)) => {
            zero_loss_search(target, spec.frame_bytes, spec.flows, lo, hi, secs as f64, 8)
                .map(|r| format!("{r:?}"))
        }
        None => run_trial(&spec).map(|r| format!("{r:?}")),
    };
    match out {
        Ok(s) => println!("{s}"),
        Err(e) => {
            eprintln!("kbp-loadgen: {e}");
            std::process::exit(1);
        }
    }
}
