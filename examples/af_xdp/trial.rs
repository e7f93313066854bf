//! One trial: a consumer in the namespace (one of the five modes), the sender in the
//! host namespace at a fixed rate, the consumer's latencies and CPU time.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use kbp_core::{Config, IdleMode, Poller, Shared, StepOutcome};

use crate::bpf::XdpRedirect;
use crate::clock::{monotonic_ns, pin_to, set_fifo, thread_cpu_ns};
use crate::embed::{EventWaker, XskPlatform, XskQueue};
use crate::netns::{QUEUES, TestNet};
use crate::traffic::{self, Percentiles, SocketMode};
use crate::xsk::Xsk;

/// The consumers compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// kbp-core's poller over AF_XDP, `Spin`.
    KbpSpin,
    /// kbp-core's poller over AF_XDP, `Adaptive` (50 µs window), parking in `poll(2)`.
    KbpAdaptive,
    /// A blocking UDP socket (the kernel's softirq path).
    Blocking,
    /// A UDP socket with `SO_BUSY_POLL` / `SO_PREFER_BUSY_POLL`.
    BusyPoll,
    /// A blocking UDP socket with the veth's NAPI in the kernel's threaded mode.
    Threaded,
}

impl Mode {
    /// Every mode, in table order.
    pub const ALL: [Mode; 5] = [
        Mode::KbpSpin,
        Mode::KbpAdaptive,
        Mode::Blocking,
        Mode::BusyPoll,
        Mode::Threaded,
    ];

    /// The mode's name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Mode::KbpSpin => "KBP spin (AF_XDP)",
            Mode::KbpAdaptive => "KBP adaptive (AF_XDP)",
            Mode::Blocking => "blocking UDP socket",
            Mode::BusyPoll => "SO_BUSY_POLL socket",
            Mode::Threaded => "threaded NAPI + blocking socket",
        }
    }
}

/// The spin window of the adaptive mode.
pub const ADAPTIVE_WINDOW_NS: u64 = 50_000;

/// What one trial measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// One-way latency, sender's stamp to the consumer's read.
    pub latency: Percentiles,
    /// The consumer thread's CPU time over the trial's wall time.
    pub cpu: f64,
    /// Packets sent.
    pub sent: u64,
    /// Packets the consumer saw.
    pub received: u64,
}

/// What the consumer thread returns: latencies, CPU and wall time.
type Consumed = (Vec<u64>, u64, u64);

/// How the threads are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Sender and consumer run SCHED_FIFO (the same for every mode).
    pub fifo: bool,
}

/// Runs `mode` at `rate` packets per second for `seconds` (`rate` 0: idle).
pub fn run(
    net: &TestNet,
    mode: Mode,
    rate: u32,
    seconds: f64,
    placement: Placement,
) -> io::Result<Outcome> {
    let stop = AtomicBool::new(false);
    let ready = AtomicBool::new(false);
    thread::scope(|s| {
        let consumer = s.spawn(|| -> io::Result<Consumed> {
            pin_to(1);
            if placement.fifo && !set_fifo() {
                return Err(io::Error::last_os_error());
            }
            net.enter()?;
            let result = consume(mode, &stop, &ready);
            ready.store(true, Ordering::Release);
            result
        });
        while !ready.load(Ordering::Acquire) {
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(Duration::from_millis(50));
        pin_to(0);
        if placement.fifo && !set_fifo() {
            stop.store(true, Ordering::Release);
            return Err(io::Error::last_os_error());
        }
        let sent = if rate == 0 || consumer.is_finished() {
            thread::sleep(Duration::from_secs_f64(seconds));
            0
        } else {
            traffic::send(rate, seconds)?
        };
        thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Release);
        let (mut samples, cpu_ns, wall_ns) = consumer.join().expect("consumer panicked")?;
        if placement.fifo {
            // Back to SCHED_OTHER for the main thread between trials.
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: sched_setscheduler(0, ..) on the calling thread with a valid param.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
        }
        Ok(Outcome {
            received: samples.len() as u64,
            latency: Percentiles::of(&mut samples),
            cpu: cpu_ns as f64 / wall_ns.max(1) as f64,
            sent,
        })
    })
}

fn consume(mode: Mode, stop: &AtomicBool, ready: &AtomicBool) -> io::Result<Consumed> {
    match mode {
        Mode::KbpSpin => consume_xdp(IdleMode::Spin, stop, ready),
        Mode::KbpAdaptive => consume_xdp(
            IdleMode::Adaptive {
                window_ns: ADAPTIVE_WINDOW_NS,
            },
            stop,
            ready,
        ),
        Mode::Blocking => consume_socket(SocketMode::Blocking, false, stop, ready),
        Mode::BusyPoll => consume_socket(SocketMode::BusyPoll, false, stop, ready),
        Mode::Threaded => consume_socket(SocketMode::Blocking, true, stop, ready),
    }
}

/// Measures CPU and wall time around `body`, which signals `ready` when it serves.
fn timed(body: impl FnOnce(&mut dyn FnMut())) -> (u64, u64) {
    let mut start = (0, 0);
    body(&mut || start = (thread_cpu_ns(), monotonic_ns()));
    (thread_cpu_ns() - start.0, monotonic_ns() - start.1)
}

fn consume_socket(
    mode: SocketMode,
    threaded: bool,
    stop: &AtomicBool,
    ready: &AtomicBool,
) -> io::Result<Consumed> {
    // veth receives through its NAPI instance only with GRO (or XDP) on.
    TestNet::set_gro(true)?;
    if threaded {
        TestNet::set_threaded(true)?;
    }
    let sock = traffic::bind_receiver(mode)?;
    let mut samples = Vec::new();
    let (cpu, wall) = timed(|started| {
        started();
        ready.store(true, Ordering::Release);
        traffic::receive(&sock, stop, |stamp| {
            samples.push(monotonic_ns().saturating_sub(stamp))
        });
    });
    if threaded {
        TestNet::set_threaded(false)?;
    }
    Ok((samples, cpu, wall))
}

fn consume_xdp(idle: IdleMode, stop: &AtomicBool, ready: &AtomicBool) -> io::Result<Consumed> {
    let ifindex = TestNet::rx_ifindex()?;
    let xdp = retry_busy(|| XdpRedirect::attach(ifindex, QUEUES))?;
    let mut sockets = Vec::new();
    for queue in 0..QUEUES {
        let xsk = retry_busy(|| Xsk::bind(ifindex, queue))?;
        xdp.set_socket(queue, xsk.fd())?;
        sockets.push(xsk);
    }
    let samples = RefCell::new(Vec::new());
    let sink = |frame: &[u8]| {
        if let Some(stamp) = traffic::stamp_of_frame(frame) {
            samples
                .borrow_mut()
                .push(monotonic_ns().saturating_sub(stamp));
        }
    };
    let queues: Vec<XskQueue<'_>> = sockets
        .into_iter()
        .map(|xsk| XskQueue::new(xsk, &sink))
        .collect();
    let shared: Shared<AtomicU32, { crate::embed::CAP }> = Shared::new();
    let waker = EventWaker::new()?;
    let platform = XskPlatform::new(&queues, &shared, &waker, stop);
    // The default idle release: a socket quiet for 2 ms is let go (its "interrupt"
    // armed) even in spin mode, as kbp.ko lets go of a quiet NAPI instance.
    let config = Config {
        idle,
        idle_release_ns: Config::DEFAULT.idle_release_ns,
        ..Config::DEFAULT
    };
    let spins = idle == IdleMode::Spin;
    let mut poller = Poller::new(&shared, &queues, &platform, config)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let (cpu, wall) = timed(|started| {
        poller.attach_all();
        started();
        ready.store(true, Ordering::Release);
        while !stop.load(Ordering::Acquire) {
            if poller.step() == StepOutcome::Idle && spins {
                // A spinning poller never parks, so it never reaches this embedder's
                // interrupt (`poll(2)` in `park`): raise it for the released sockets.
                platform.raise_ready();
            }
        }
        let _ = poller.shutdown();
    });
    let per_queue: Vec<u64> = (0..queues.len())
        .map(|id| poller.instance_stats(id).map_or(0, |s| s.packets))
        .collect();
    eprintln!("    packets per queue (kbp-core's instance counters): {per_queue:?}");
    Ok((samples.take(), cpu, wall))
}

/// Retries `f` for up to 2 s while it fails with EBUSY: the previous trial's socket and
/// program are released by deferred kernel work after their descriptors closed.
fn retry_busy<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let give_up = monotonic_ns() + 2_000_000_000;
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy && monotonic_ns() < give_up => {
                thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}
