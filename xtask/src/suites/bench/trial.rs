//! One echo trial of the bench: the load generator at a fixed rate against the guest's
//! echo server, with the NET_RX count and (optionally) the polling threads' CPU around
//! it.

use std::net::SocketAddr;
use std::time::Duration;

use kbp_traffic::{TrialSpec, run_trial};

use crate::base::Result;
use crate::build::initramfs::{ECHO_PORT, GUEST_ADDR};
use crate::guest::probes::{cpu_between, cpu_sample, net_rx_softirqs};
use crate::guest::vm::Guest;
use crate::suites::bench::model::Trial;

pub fn target() -> SocketAddr {
    format!("{GUEST_ADDR}:{ECHO_PORT}")
        .parse()
        .expect("address")
}

pub struct TrialPlan<'a> {
    pub target: SocketAddr,
    pub mode: &'a str,
    pub variant: &'a str,
    pub frame: usize,
    pub rate: u64,
    pub rep: u32,
    pub flows: usize,
    pub seconds: f64,
    pub measure_cpu: bool,
}

pub fn trial(guest: &Guest, p: &TrialPlan<'_>) -> Result<Trial> {
    let before = net_rx_softirqs(guest)?;
    let cpu0 = if p.measure_cpu {
        Some(cpu_sample(guest)?)
    } else {
        None
    };
    let spec = TrialSpec {
        target: p.target,
        rate_pps: p.rate,
        frame_bytes: p.frame,
        packets: (p.rate as f64 * p.seconds) as u64,
        warmup_packets: p.rate / 5,
        grace: Duration::from_secs(2),
        flows: p.flows,
        bursts: None,
        stop: None,
    };
    let r = run_trial(&spec).map_err(|e| format!("load generator: {e}"))?;
    let poller_cpu_percent = match cpu0 {
        Some(a) => Some(cpu_between(a, cpu_sample(guest)?).0),
        None => None,
    };
    let after = net_rx_softirqs(guest)?;
    let t = Trial {
        mode: p.mode.into(),
        variant: p.variant.into(),
        frame_bytes: p.frame,
        rate_pps: p.rate,
        rep: p.rep,
        flows: p.flows,
        sent: r.sent,
        received: r.received,
        lost: r.lost,
        rtt_us: r.rtt_us,
        net_rx_softirq_delta: after
            .iter()
            .sum::<u64>()
            .saturating_sub(before.iter().sum()),
        poller_cpu_percent,
    };
    println!(
        "[xtask]   {:<12} {:<11} {:>4} B {:>5} pps #{}  lost {:>4}  rtt us p50 {:>8.1} p99 {:>8.1} p99.9 {:>8.1} max {:>8.1}  NET_RX +{}{}",
        t.mode,
        t.variant,
        t.frame_bytes,
        t.rate_pps,
        t.rep,
        t.lost,
        t.rtt_us.p50,
        t.rtt_us.p99,
        t.rtt_us.p99_9,
        t.rtt_us.max,
        t.net_rx_softirq_delta,
        t.poller_cpu_percent
            .map_or(String::new(), |c| format!("  pollers {c:.0}%"))
    );
    Ok(t)
}
