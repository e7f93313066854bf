//! Engine micro-benchmarks, each printed next to a minimal hand-written loop doing the
//! same atomic work, as a ratio measured side by side in one run (no absolute targets:
//! the machines are noisy). Goals: an empty round at most 1.5x the hand loop; the
//! per-packet share of dispatching one instance under 1 ns at weight 64.
//!
//! `cargo bench -p kbp-examples --bench engine`

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use kbp_core::{Config, Nanos, Platform, Poller, Reschedule, RxInstance, Shared};

const CAP: usize = 8;
const ROUNDS: u64 = 2_000_000;
const REPEATS: usize = 7;

/// A platform whose clock is a counter (no system call), softirq mask a no-op.
struct BenchPlatform {
    clock: AtomicU64,
}

impl Platform for BenchPlatform {
    type SoftirqGuard = ();
    fn mask_softirqs(&self) {}
    fn now(&self) -> Nanos {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }
    fn quiescent(&self) {}
    fn park(&self, _: &dyn Fn() -> bool, _: Option<Nanos>) {}
}

/// An instance that always has a full weight of packets, processed for free.
struct FullRx {
    packets: AtomicU64,
}

impl RxInstance for FullRx {
    fn poll(&self, budget: u32) -> u32 {
        self.packets.fetch_add(u64::from(budget), Ordering::Relaxed);
        black_box(budget)
    }
    fn take_idle(&self) -> bool {
        true
    }
    fn rearm_irq(&self, _: usize, _: &dyn Reschedule) {}
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// ns per iteration of `f`, median of REPEATS runs of ROUNDS iterations.
fn time(mut f: impl FnMut()) -> f64 {
    let mut runs = Vec::new();
    for _ in 0..REPEATS {
        let t = Instant::now();
        for _ in 0..ROUNDS {
            f();
        }
        runs.push(t.elapsed().as_nanos() as f64 / ROUNDS as f64);
    }
    median(runs)
}

fn main() {
    let platform = BenchPlatform {
        clock: AtomicU64::new(0),
    };
    let rx = [FullRx {
        packets: AtomicU64::new(0),
    }];

    // 1. Empty round: nothing listed.
    let shared = Shared::<AtomicU32, CAP>::new();
    let mut poller = Poller::new(&shared, &rx, &platform, Config::DEFAULT).unwrap();
    let empty_engine = time(|| {
        let _ = black_box(poller.step());
    });
    let (head, tail) = (AtomicU32::new(0), AtomicU32::new(0));
    let empty_hand = time(|| {
        let (head, tail) = (black_box(&head), black_box(&tail));
        black_box(
            tail.load(Ordering::Acquire)
                .wrapping_sub(head.load(Ordering::Relaxed))
                == 0,
        );
    });

    // 2. Dispatching one busy-owned instance that always returns a full weight.
    let shared = Shared::<AtomicU32, CAP>::new();
    let mut poller = Poller::new(&shared, &rx, &platform, Config::DEFAULT).unwrap();
    poller.attach_all();
    let dispatch_engine = time(|| {
        let _ = black_box(poller.step());
    });
    let weight = Config::DEFAULT.weight;
    let state = AtomicU32::new(1);
    let mut handled = 0u64;
    let dispatch_hand = time(|| {
        if black_box(&state).load(Ordering::Acquire) & 1 != 0 {
            handled += u64::from(rx[0].poll(weight));
        }
    });
    black_box(handled);

    println!(
        "kbp-core engine benchmark ({} x {} iterations, median; clock = counter)",
        REPEATS, ROUNDS
    );
    println!(
        "{:<34} {:>10} {:>12} {:>8}",
        "case", "engine ns", "hand loop ns", "ratio"
    );
    println!(
        "{:<34} {:>10.2} {:>12.2} {:>7.2}x",
        "empty round (step, nothing listed)",
        empty_engine,
        empty_hand,
        empty_engine / empty_hand
    );
    println!(
        "{:<34} {:>10.2} {:>12.2} {:>7.2}x",
        "dispatch one instance (weight 64)",
        dispatch_engine,
        dispatch_hand,
        dispatch_engine / dispatch_hand
    );
    println!(
        "per-packet share of dispatch at weight {weight}: {:.3} ns (hand loop {:.3} ns)",
        dispatch_engine / f64::from(weight),
        dispatch_hand / f64::from(weight)
    );
}
