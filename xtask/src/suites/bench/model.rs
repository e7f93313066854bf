//! What the bench measures and writes to `results.json`: one [`Trial`] per echo trial,
//! one [`ZeroLoss`] per search, one [`Idle`] per mode, the traced delays
//! ([`Delay`], from [`crate::guest::tracing`]), all gathered in [`Results`].

use kbp_traffic::RttSummary;
use serde::Serialize;

use crate::guest::tracing::Delay;

/// One echo trial.
#[derive(Clone, Serialize)]
pub struct Trial {
    /// Mode.
    pub mode: String,
    /// `base`, `competition`, `many-queues` or `container`.
    pub variant: String,
    /// Ethernet frame size.
    pub frame_bytes: usize,
    /// Offered rate.
    pub rate_pps: u64,
    /// Repetition index.
    pub rep: u32,
    /// UDP flows.
    pub flows: usize,
    /// Counted packets sent.
    pub sent: u64,
    /// Echoes received.
    pub received: u64,
    /// `sent - received`.
    pub lost: u64,
    /// RTT percentiles, microseconds.
    pub rtt_us: RttSummary,
    /// Growth of the guest's NET_RX softirq count.
    pub net_rx_softirq_delta: u64,
    /// Guest CPU of the polling threads during the trial, percent of one CPU
    /// (measured in the `many-queues` variant).
    pub poller_cpu_percent: Option<f64>,
}

/// The zero-loss rate of one mode and frame size.
#[derive(Clone, Serialize)]
pub struct ZeroLoss {
    /// Mode.
    pub mode: String,
    /// Ethernet frame size.
    pub frame_bytes: usize,
    /// Highest rate with no loss, packets/s.
    pub pps: u64,
    /// Every trial of the search: (rate, lost).
    pub trials: Vec<(u64, u64)>,
}

/// What a mode costs with no traffic.
#[derive(Clone, Serialize)]
pub struct Idle {
    /// Mode.
    pub mode: String,
    /// All guest CPUs' busy time, percent of one CPU.
    pub guest_busy_percent: f64,
    /// The polling threads' CPU, percent of one CPU.
    pub poller_percent: f64,
}

/// What a cost row's figure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CostFigure {
    /// Guest CPU per packet, net of the background (and of kbp.ko's empty polls for a
    /// spinning poller).
    PerPacket,
    /// Busy per packet including a spin window's empty polls: kbp.ko in adaptive mode
    /// with a window (the spin after each packet is part of the mode, and how much of
    /// it is empty polls depends on which instances a round polls).
    WithSpinWindow,
    /// A poller that spins and does not count its empty polls (upstream busy-poll):
    /// busy per packet, not a per-packet cost.
    Spins,
}

/// One interval of the per-packet cost stage (`cost.rs`): without traffic, or a trial.
#[derive(Clone, Debug, Serialize)]
pub struct Cost {
    /// Mode.
    pub mode: String,
    /// kbp.ko parameters beyond the mode's (`spin_window_us=0`), or empty.
    pub params: String,
    /// `None`: no traffic, [`Cost::idle_seconds`] long; `Some(i)`: repetition `i`.
    pub rep: Option<u32>,
    /// Host seconds between the two readings of a no-traffic interval (0: back to back).
    pub idle_seconds: f64,
    /// Echoes received by the host.
    pub received: u64,
    /// The guest clock's advance, ns (instructions while busy; host time while idle).
    pub clock_ns: u64,
    /// Busy: the clock's advance outside the idle task, plus interrupt handlers and
    /// softirqs run in the idle task, ns.
    pub busy_ns: u64,
    /// kbp.ko's empty polls over the interval (kbp modes).
    pub empty_polls: Option<u64>,
    /// `(busy - background) / received`, ns (`cost_fit`); None without traffic.
    pub net_busy_per_packet_ns: Option<f64>,
    /// How far off the figure can be from kbp.ko's counter publication, ns per packet
    /// (a spinning kbp poller's figure; None otherwise).
    pub resolution_ns: Option<f64>,
    /// What the figure is.
    pub figure: CostFigure,
}

/// Everything measured; `results.json`.
#[derive(Serialize)]
pub struct Results {
    /// UTC date and time of the run.
    pub date: String,
    /// The host: CPU model, cores, kernel.
    pub machine: String,
    /// The guest kernel release.
    pub guest_kernel: String,
    /// Whether the run was oversubscribed: the host cores it used, QEMU's vCPU and I/O
    /// threads, and where they were pinned (one line per mode's boot, deduplicated;
    /// [`crate::guest::host_cpus`]).
    pub host_layout: Vec<String>,
    /// The run was oversubscribed (any mode's boot): wall-clock figures are the
    /// emulator's as much as the guest's.
    pub oversubscribed: bool,
    /// The guest's shape and the CPU plan.
    pub setup: String,
    /// `--quick` was given.
    pub quick: bool,
    /// The low and high fixed rates, packets/s.
    pub rates_pps: [u64; 2],
    /// Seconds of each measured trial.
    pub trial_seconds: f64,
    /// Repetitions of each trial.
    pub reps: u32,
    /// How the warm-up was discarded.
    pub warmup: String,
    /// Modes measured, in order.
    pub modes: Vec<String>,
    /// Every echo trial.
    pub trials: Vec<Trial>,
    /// Zero-loss searches.
    pub zero_loss: Vec<ZeroLoss>,
    /// Idle cost per mode.
    pub idle: Vec<Idle>,
    /// Inside-the-guest delays per mode (traced trials, not in the RTT tables).
    pub delays: Vec<Delay>,
    /// Guest CPU per received packet under icount, per mode: two no-traffic intervals
    /// and the repetitions (`cost.rs`).
    pub costs: Vec<Cost>,
    /// Modes whose cost stage failed, with the error.
    pub cost_errors: Vec<String>,
    /// Variants not run, and why (for example many queues on a one-queue NIC).
    pub not_run: Vec<String>,
    /// What went wrong outside the measurements (a guest that did not power off).
    pub incidents: Vec<String>,
    /// `cargo run --release --example simulated_nic` output (this machine, same run).
    pub userspace_example: String,
    /// `cargo bench -p kbp-examples --bench engine` output (same run).
    pub engine_bench: String,
}
