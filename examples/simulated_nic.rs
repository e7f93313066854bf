//! A simulated NIC served three ways, side by side, with real threads:
//!
//! 1. `irq`: the NAPI analogue. The "interrupt" hands the owned instance to a consumer
//!    thread that sleeps on a channel (a futex) until woken, polls, completes, re-arms.
//! 2. `kbp-spin`: a kbp-core poller that never sleeps (the paper's KBP thread); it lets
//!    go of an instance that has had no packet for `--idle-release-us` (2000, kbp-core's
//!    default), whose next interrupt lists it again.
//! 3. `kbp-adaptive`: a kbp-core poller that spins for a window after the last packet,
//!    then re-arms interrupts and parks until one wakes it.
//!
//! A producer thread writes timestamped packets into the rings of several instances at
//! a fixed rate and "raises the interrupt" of an instance whose interrupt is armed. The
//! consumer records, for every packet, the delay from being written to being polled.
//!
//! `cargo run --release --example simulated_nic -- [--rate PPS] [--seconds S]
//!  [--instances N] [--window-us US] [--idle-release-us US]
//!  [--mode irq|kbp-spin|kbp-adaptive|all]`

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use kbp_core::{
    Config, IdleMode, Nanos, Platform, Poller, Reschedule, RxInstance, SchedToken, ScheduleOutcome,
    Shared, Unpark,
};

/// Instances the poll list can hold.
const CAP: usize = 16;
/// Slots per ring (a power of two).
const RING: usize = 4096;
const IRQ_ARMED: u32 = 1;

struct Options {
    rate: u64,
    seconds: f64,
    instances: usize,
    window_us: u64,
    idle_release_us: u64,
    modes: Vec<Mode>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Irq,
    KbpSpin,
    KbpAdaptive,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Irq => "irq (napi-like)",
            Mode::KbpSpin => "kbp-spin",
            Mode::KbpAdaptive => "kbp-adaptive",
        }
    }
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        rate: 20_000,
        seconds: 5.0,
        instances: 4,
        window_us: 50,
        idle_release_us: Config::DEFAULT.idle_release_ns / 1_000,
        modes: vec![Mode::Irq, Mode::KbpSpin, Mode::KbpAdaptive],
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rate" => o.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--instances" => {
                o.instances = value()?.parse().map_err(|e| format!("--instances: {e}"))?
            }
            "--window-us" => {
                o.window_us = value()?.parse().map_err(|e| format!("--window-us: {e}"))?
            }
            "--idle-release-us" => {
                o.idle_release_us = value()?
                    .parse()
                    .map_err(|e| format!("--idle-release-us: {e}"))?
            }
            "--mode" => {
                o.modes = match value()?.as_str() {
                    "irq" => vec![Mode::Irq],
                    "kbp-spin" => vec![Mode::KbpSpin],
                    "kbp-adaptive" => vec![Mode::KbpAdaptive],
                    "all" => o.modes.clone(),
                    other => return Err(format!("--mode: unknown mode {other}")),
                }
            }
            "-h" | "--help" => {
                return Err(
                    "usage: simulated_nic [--rate PPS] [--seconds S] [--instances 1..=16] [--window-us US] [--idle-release-us US] [--mode irq|kbp-spin|kbp-adaptive|all]".into()
                );
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if o.rate == 0 || o.rate > 5_000_000 {
        return Err("--rate must be 1..=5000000 packets/s".into());
    }
    if !(o.instances >= 1 && o.instances <= CAP) {
        return Err(format!("--instances must be 1..={CAP}"));
    }
    if !(1..=1_000_000).contains(&o.idle_release_us) {
        return Err("--idle-release-us must be 1..=1000000".into());
    }
    if !(o.seconds > 0.0 && o.seconds <= 600.0) {
        return Err("--seconds must be in (0, 600]".into());
    }
    Ok(o)
}

/// One receive ring: a single-producer single-consumer queue of packet timestamps, and
/// the "hardware" word `pending << 1 | IRQ_ARMED` that decides the interrupt race.
struct Ring {
    slots: Box<[AtomicU64]>,
    head: AtomicU64,
    tail: AtomicU64,
    hw: AtomicU32,
    lost: AtomicU64,
}

impl Ring {
    fn new() -> Self {
        Ring {
            slots: (0..RING).map(|_| AtomicU64::new(0)).collect(),
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            hw: AtomicU32::new(IRQ_ARMED),
            lost: AtomicU64::new(0),
        }
    }
}

/// The simulated NIC shared by the producer, the interrupt path and the consumer.
struct Nic {
    epoch: Instant,
    rings: Vec<Ring>,
    shared: Shared<AtomicU32, CAP>,
    platform: StdPlatform,
    /// Where the `irq` mode's interrupt sends owned instances (the "softirq raise").
    irq_tx: OnceLock<mpsc::Sender<SchedToken>>,
}

impl Nic {
    fn now(&self) -> Nanos {
        self.epoch.elapsed().as_nanos() as Nanos
    }

    /// DMA one packet into `id`'s ring; raise the interrupt if it is armed.
    fn receive(&self, id: usize) {
        let ring = &self.rings[id];
        let tail = ring.tail.load(Ordering::Relaxed);
        if tail - ring.head.load(Ordering::Acquire) >= RING as u64 {
            ring.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        ring.slots[(tail as usize) & (RING - 1)].store(self.now(), Ordering::Relaxed);
        ring.tail.store(tail + 1, Ordering::Release);
        let before = ring
            .hw
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hw| {
                Some(((hw >> 1) + 1) << 1)
            })
            .unwrap_or(0);
        if before & IRQ_ARMED != 0 {
            self.interrupt(id);
        }
    }

    /// The interrupt handler: schedule; an unattached instance goes to the `irq` consumer.
    fn interrupt(&self, id: usize) {
        self.handle(self.shared.schedule(id, &self.platform));
    }

    /// The interrupt handler's treatment of a schedule: a `Fallback` goes to the
    /// interrupt-driven consumer.
    fn handle(&self, outcome: ScheduleOutcome) {
        if let ScheduleOutcome::Fallback(token) = outcome {
            if let Some(tx) = self.irq_tx.get() {
                let _ = tx.send(token);
            }
        }
    }
}

/// Userspace platform: no softirqs to mask, `Instant` as the clock, thread park/unpark.
struct StdPlatform {
    epoch: Instant,
    poller: OnceLock<thread::Thread>,
    /// A stop request also ends a park (like `kthread_should_stop`).
    stop: AtomicBool,
}

impl Platform for StdPlatform {
    type SoftirqGuard = ();
    fn mask_softirqs(&self) {}
    fn now(&self) -> Nanos {
        self.epoch.elapsed().as_nanos() as Nanos
    }
    fn quiescent(&self) {
        std::hint::spin_loop();
    }
    fn park(&self, still_parked: &dyn Fn() -> bool, deadline: Option<Nanos>) {
        while still_parked() && !self.stop.load(Ordering::Acquire) {
            match deadline {
                None => thread::park(),
                Some(deadline) => match deadline.checked_sub(self.now()) {
                    Some(left) if left > 0 => thread::park_timeout(Duration::from_nanos(left)),
                    _ => return,
                },
            }
        }
    }
}

impl Unpark for StdPlatform {
    fn unpark(&self) {
        if let Some(t) = self.poller.get() {
            t.unpark();
        }
    }
}

/// One instance as the consumer sees it; records latencies in the consumer's thread.
struct Port<'a> {
    nic: &'a Nic,
    id: usize,
    latencies: &'a RefCell<Vec<u64>>,
}

impl RxInstance for Port<'_> {
    fn poll(&self, budget: u32) -> u32 {
        let ring = &self.nic.rings[self.id];
        let head = ring.head.load(Ordering::Relaxed);
        let tail = ring.tail.load(Ordering::Acquire);
        let n = (tail - head).min(u64::from(budget));
        let now = self.nic.now();
        let mut lat = self.latencies.borrow_mut();
        for i in head..head + n {
            let stamp = ring.slots[(i as usize) & (RING - 1)].load(Ordering::Relaxed);
            lat.push(now.saturating_sub(stamp));
        }
        ring.head.store(head + n, Ordering::Release);
        let _ = ring
            .hw
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hw| {
                Some(hw - ((n as u32) << 1))
            });
        n as u32
    }
    fn take_idle(&self) -> bool {
        let _ =
            self.nic.rings[self.id]
                .hw
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hw| {
                    Some(hw & !IRQ_ARMED)
                });
        true
    }
    fn rearm_irq(&self, id: usize, irq: &dyn Reschedule) {
        if self.rearm_finds_work() {
            self.nic.handle(irq.schedule(id));
        }
    }
}

impl Port<'_> {
    /// Re-arms the interrupt from the interrupt-driven consumer.
    fn rearm(&self) {
        if self.rearm_finds_work() {
            self.nic.interrupt(self.id);
        }
    }

    /// Arms the interrupt unless packets are pending (then it stays masked and the
    /// caller raises the interrupt path).
    fn rearm_finds_work(&self) -> bool {
        let before = self.nic.rings[self.id]
            .hw
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |hw| {
                Some(if hw >> 1 != 0 { hw } else { hw | IRQ_ARMED })
            })
            .unwrap_or(0);
        before >> 1 != 0
    }
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

struct Outcome {
    latencies: Vec<u64>,
    lost: u64,
    cpu: Duration,
    wall: Duration,
}

fn run(mode: Mode, o: &Options) -> Outcome {
    let epoch = Instant::now();
    let nic = Arc::new(Nic {
        epoch,
        rings: (0..o.instances).map(|_| Ring::new()).collect(),
        shared: Shared::new(),
        platform: StdPlatform {
            epoch,
            poller: OnceLock::new(),
            stop: AtomicBool::new(false),
        },
        irq_tx: OnceLock::new(),
    });
    let (tx, rx) = mpsc::channel::<SchedToken>();
    let _ = nic.irq_tx.set(tx);
    let ready = Arc::new(AtomicBool::new(false));

    let consumer = {
        let (nic, ready) = (nic.clone(), ready.clone());
        let stop = |nic: &Nic| nic.platform.stop.load(Ordering::Acquire);
        let (window_ns, instances) = (o.window_us * 1_000, o.instances);
        let idle_release_ns = o.idle_release_us * 1_000;
        thread::spawn(move || {
            let latencies = RefCell::new(Vec::with_capacity(1 << 20));
            let ports: Vec<Port<'_>> = (0..instances)
                .map(|id| Port {
                    nic: &nic,
                    id,
                    latencies: &latencies,
                })
                .collect();
            let cpu0 = thread_cpu_time();
            match mode {
                Mode::Irq => {
                    ready.store(true, Ordering::Release);
                    loop {
                        let mut token = match rx.recv_timeout(Duration::from_millis(20)) {
                            Ok(token) => token,
                            Err(mpsc::RecvTimeoutError::Timeout) if !stop(&nic) => continue,
                            Err(_) => break,
                        };
                        let port = &ports[token.id()];
                        loop {
                            if port.poll(64) == 64 {
                                continue;
                            }
                            match nic.shared.complete(token) {
                                Ok(()) => break,
                                Err(again) => token = again,
                            }
                        }
                        port.rearm();
                    }
                }
                Mode::KbpSpin | Mode::KbpAdaptive => {
                    let _ = nic.platform.poller.set(thread::current());
                    let idle = if mode == Mode::KbpSpin {
                        IdleMode::Spin
                    } else {
                        IdleMode::Adaptive { window_ns }
                    };
                    let config = Config {
                        idle,
                        idle_release_ns,
                        ..Config::DEFAULT
                    };
                    let mut poller = Poller::new(&nic.shared, &ports, &nic.platform, config)
                        .expect("valid config");
                    poller.attach_all();
                    ready.store(true, Ordering::Release);
                    while !stop(&nic) {
                        let _ = poller.step();
                    }
                    let _ = poller.shutdown();
                }
            }
            let cpu = thread_cpu_time() - cpu0;
            drop(ports);
            (latencies.into_inner(), cpu)
        })
    };
    while !ready.load(Ordering::Acquire) {
        thread::yield_now();
    }

    // The producer: fixed rate, round-robin over the instances, paced by spinning.
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / o.rate as f64);
    let total = (o.rate as f64 * o.seconds) as u64;
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        nic.receive((i as usize) % o.instances);
    }
    let wall = start.elapsed();
    // Let the consumer drain, then stop it (an adaptive poller may be parked: unpark).
    let drain_deadline = Instant::now() + Duration::from_secs(2);
    while nic
        .rings
        .iter()
        .any(|r| r.head.load(Ordering::Acquire) < r.tail.load(Ordering::Acquire))
        && Instant::now() < drain_deadline
    {
        thread::sleep(Duration::from_millis(1));
    }
    nic.platform.stop.store(true, Ordering::Release);
    nic.platform.unpark();
    let (latencies, cpu) = consumer.join().expect("consumer thread");
    let lost = nic
        .rings
        .iter()
        .map(|r| {
            r.lost.load(Ordering::Relaxed)
                + (r.tail.load(Ordering::Relaxed) - r.head.load(Ordering::Relaxed))
        })
        .sum();
    Outcome {
        latencies,
        lost,
        cpu,
        wall,
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1_000.0
}

fn main() {
    let o = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "simulated NIC: {} instances, {} packets/s, {:.1} s per mode, adaptive window {} us, {} CPUs",
        o.instances,
        o.rate,
        o.seconds,
        o.window_us,
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "latency = packet written by the NIC -> polled by the consumer (includes the wake-up)\n"
    );
    println!(
        "{:<16} {:>9} {:>6} {:>9} {:>9} {:>10} {:>11} {:>9} {:>11}",
        "mode", "packets", "lost", "p50 us", "p99 us", "p99.9 us", "p99.99 us", "max us", "cpu %"
    );
    for &mode in &o.modes {
        let mut out = run(mode, &o);
        out.latencies.sort_unstable();
        let l = &out.latencies;
        println!(
            "{:<16} {:>9} {:>6} {:>9.2} {:>9.2} {:>10.2} {:>11.2} {:>9.2} {:>10.1}%",
            mode.name(),
            l.len(),
            out.lost,
            percentile(l, 50.0),
            percentile(l, 99.0),
            percentile(l, 99.9),
            percentile(l, 99.99),
            l.last().copied().unwrap_or(0) as f64 / 1_000.0,
            100.0 * out.cpu.as_secs_f64() / out.wall.as_secs_f64(),
        );
    }
}
