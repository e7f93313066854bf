//! # kbp-core: the busy-poll engine of KBP
//!
//! KBP takes a NIC's receive processing out of `NET_RX_SOFTIRQ` and gives it to a
//! kernel thread that keeps draining a poll list, masking softirqs only while it polls
//! an instance. This crate is that thread's logic, with no allocation, no clock and no
//! platform code, so the same source runs in the Linux module (`kbp-linux`), under the
//! loom model checker and proptest (`kbp-model`), in the fuzzer and in the examples.
//!
//! The layers, bottom up:
//!
//! 1. [`atomic`]: [`AtomicWord`], the one 32-bit primitive (load, store, CAS) every
//!    shared word goes through, so core, loom and kernel atomics are interchangeable.
//! 2. `state`: an instance's scheduling word (`StateFlags`: SCHED, MISSED, DISABLE,
//!    NPSVC, BUSY, ATTACHED) with NAPI's meaning. Transitions are pure functions applied
//!    by one CAS loop; winning SCHED yields a [`SchedToken`], the proof of ownership of
//!    that one instance.
//! 3. `poll_list`: a bounded MPSC FIFO of owned instances, pushed from interrupt
//!    context on any CPU, popped by the poller. Pushing consumes a token.
//! 4. `park`: the poller's sleep/wake word, free of the lost-wake-up race.
//! 5. [`shared`]: [`Shared`], everything interrupt context touches (schedule, disable,
//!    enable), and [`producer`]: [`Producer`], the interrupt side's handle on it.
//! 6. [`poller`]: [`Poller`], the drain loop with NAPI's weight (per instance), budget
//!    and time limit, fair re-listing, attach/detach while running and shutdown;
//!    [`idle`]: the idle policy as a trait ([`IdlePolicy`]; [`Spin`] and [`Adaptive`]
//!    provided, [`ModePolicy`] selected by an [`IdleMode`]). Whatever the policy, an
//!    instance whose polls have found no work for [`Config::idle_release_ns`] is
//!    released with its interrupt re-armed: NAPI's contract that a SCHED holder lets
//!    go in bounded time (`napi_synchronize()` waits for it), kept even by [`Spin`].
//! 7. [`rx`]: the traits an embedder implements, [`RxInstance`] (one NAPI instance),
//!    [`Platform`] (the poller thread's softirq mask, quiescent states, clock, park
//!    with a deadline in the embedder's own wait) and [`Unpark`] (the producer's wake);
//!    [`counters`] (softnet_stat-like counts and each instance's poll-gap histogram,
//!    the wait a packet can see while its instance is owned) and [`config`] complete
//!    the picture.
//! 8. [`napi`]: the protocol by which a poller serves a kernel NAPI instance without
//!    borrowing the kernel's fields: the `__napi_schedule()` entry hook
//!    ([`on_schedule`]), IN_BUSY_POLL ownership and the `busy_poll_stop()` hand-back
//!    ([`NapiPort`]), generic over [`Napi`] so kbp-model checks what kbp.ko runs.
//! 9. [`binding`]: which device a slot's instance belongs to and whether the embedder
//!    still serves it ([`SlotWord`], [`DeviceWord`]): how a device is given up (kbp.ko:
//!    at `NETDEV_UNREGISTER` and at unload) while the hook adopts a new instance of it.
//!
//! ```text
//!  IRQ, any CPU                              poller thread, one CPU
//!  ------------                              ----------------------
//!  Producer::schedule(id)                    loop {
//!    state: 0 -> SCHED  (token)                Poller::step()
//!    poll_list.push(token)  ------------------>  drain_round: pop, mask BH, poll, unmask
//!    park.notify() -> Unpark::unpark             idle: IdlePolicy -> Stay | Park(deadline)
//!                                                platform.quiescent()
//!                                            }   Poller::shutdown(): hand back, re-arm
//! ```
//!
//! # Embedding guide
//!
//! kbp-core is a library for any busy-poll driver: kbp.ko (`kbp-linux/`) embeds it
//! over kernel NAPI instances, `examples/af_xdp` over AF_XDP sockets in userspace, and
//! kbp-model over simulated devices. An embedder writes four small things:
//!
//! 1. an [`RxInstance`] per receive queue: `poll(budget)` consumes at most `budget`
//!    packets; `take_idle` masks the interrupt of an idle queue a spinning poller takes
//!    (or declines); `rearm_irq(id, irq)` unmasks it and, if work arrived while it was
//!    masked, calls `irq.schedule(id)` as its interrupt handler would;
//! 2. a [`Platform`] for the poller thread: a softirq-mask guard (a unit in userspace),
//!    a monotonic clock, a quiescent point (yield, RCU), and `park(still_parked,
//!    deadline)`, which blocks in the embedder's own wait (kthread sleep, futex,
//!    `poll(2)`) while `still_parked()` holds;
//! 3. an [`Unpark`] for the producers: wake the parked poller thread;
//! 4. the glue: a [`Shared`] with capacity `N` (a power of two), a [`Producer`] per
//!    interrupt source, and one thread that runs [`Poller::step`] until asked to stop,
//!    then [`Poller::shutdown`].
//!
//! No feature is needed. Time is read only through [`Platform::now`]; nothing
//! allocates; the crate is `no_std`.
//!
//! ## Who calls what
//!
//! | method | interrupt context (any CPU) | poller thread | control (process context) |
//! |---|---|---|---|
//! | [`Producer::schedule`] / [`Shared::schedule`] | yes: the interrupt handler | yes: from `rearm_irq` (through [`Reschedule`]) and from its own wait in `park` | - |
//! | [`Producer::complete`] | with a `Fallback` token, after its normal path | - | - |
//! | [`Producer::disable`] / [`Producer::enable`] | - | never (`disable` waits for the poller) | yes; `disable` waits one round at most |
//! | [`Poller::step`], [`Poller::shutdown`] | - | yes | - |
//! | [`Poller::attach`], [`Poller::detach`], [`Poller::set_weight`] | - | yes, between steps, while the poller runs | forward the request to the poller thread |
//! | [`RxInstance`] methods | - | called by the poller (`poll` with softirqs masked) | - |
//! | [`Platform`] methods | - | called by the poller | - |
//! | [`Unpark::unpark`] | called by `schedule` when the poller is parked | - | - |
//! | [`IdlePolicy`] methods | - | called by the poller | - |
//!
//! ## A complete minimal embedder
//!
//! A "device" with one queue whose interrupt is a flag, a producer thread that writes
//! packets and raises the interrupt while it is armed, and a poller thread in adaptive
//! mode that parks with `std::thread::park` (the doctest runs it):
//!
//! ```
//! use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
//! use std::sync::OnceLock;
//! use std::thread::{self, Thread};
//! use std::time::Instant;
//!
//! use kbp_core::{
//!     Config, IdleMode, Nanos, Platform, Poller, Producer, Reschedule, RxInstance,
//!     ScheduleOutcome, Shared, Unpark,
//! };
//!
//! /// The device: packets written, packets consumed, the interrupt's mask.
//! struct Queue {
//!     written: AtomicU32,
//!     consumed: AtomicU32,
//!     armed: AtomicBool,
//! }
//!
//! impl RxInstance for Queue {
//!     fn poll(&self, budget: u32) -> u32 {
//!         let done = self.consumed.load(Ordering::Relaxed);
//!         let n = (self.written.load(Ordering::Acquire) - done).min(budget);
//!         self.consumed.store(done + n, Ordering::Release);
//!         n
//!     }
//!     fn take_idle(&self) -> bool {
//!         self.armed.store(false, Ordering::SeqCst);
//!         true
//!     }
//!     fn rearm_irq(&self, id: usize, irq: &dyn Reschedule) {
//!         self.armed.store(true, Ordering::SeqCst);
//!         // The re-check: a packet written while the interrupt was masked.
//!         if self.written.load(Ordering::SeqCst) != self.consumed.load(Ordering::Relaxed)
//!             && self.armed.swap(false, Ordering::SeqCst)
//!         {
//!             let _ = irq.schedule(id);
//!         }
//!     }
//! }
//!
//! /// The poller thread's environment, and the producers' wake.
//! struct Os {
//!     epoch: Instant,
//!     poller: OnceLock<Thread>,
//! }
//!
//! impl Platform for Os {
//!     type SoftirqGuard = ();
//!     fn mask_softirqs(&self) {}
//!     fn now(&self) -> Nanos {
//!         self.epoch.elapsed().as_nanos() as Nanos
//!     }
//!     fn quiescent(&self) {
//!         thread::yield_now();
//!     }
//!     fn park(&self, still_parked: &dyn Fn() -> bool, _deadline: Option<Nanos>) {
//!         while still_parked() {
//!             thread::park();
//!         }
//!     }
//! }
//!
//! impl Unpark for Os {
//!     fn unpark(&self) {
//!         if let Some(t) = self.poller.get() {
//!             t.unpark();
//!         }
//!     }
//! }
//!
//! let queues = [Queue {
//!     written: AtomicU32::new(0),
//!     consumed: AtomicU32::new(0),
//!     armed: AtomicBool::new(true),
//! }];
//! let os = Os { epoch: Instant::now(), poller: OnceLock::new() };
//! let shared: Shared<AtomicU32, 4> = Shared::new();
//! let producer = Producer::new(&shared, &os);
//! let config = Config { idle: IdleMode::Adaptive { window_ns: 50_000 }, ..Config::DEFAULT };
//! const PACKETS: u32 = 1000;
//!
//! thread::scope(|s| {
//!     let (queues, os, shared) = (&queues, &os, &shared);
//!     let poller_thread = s.spawn(move || {
//!         os.poller.set(thread::current()).unwrap();
//!         let mut poller = Poller::new(shared, queues, os, config).unwrap();
//!         poller.attach_all();
//!         while queues[0].consumed.load(Ordering::Acquire) < PACKETS {
//!             let _ = poller.step();
//!         }
//!         poller.shutdown()
//!     });
//!     // The interrupt side: write, and raise the interrupt if it is armed.
//!     while os.poller.get().is_none() {
//!         thread::yield_now();
//!     }
//!     for _ in 0..PACKETS {
//!         queues[0].written.fetch_add(1, Ordering::SeqCst);
//!         if queues[0].armed.swap(false, Ordering::SeqCst) {
//!             match producer.schedule(0) {
//!                 // Not attached yet: run the normal path, then hand it back.
//!                 ScheduleOutcome::Fallback(mut token) => loop {
//!                     while queues[0].poll(64) == 64 {}
//!                     match producer.complete(token) {
//!                         Ok(()) => break queues[0].rearm_irq(0, &producer),
//!                         Err(again) => token = again,
//!                     }
//!                 },
//!                 _ => {}
//!             }
//!         }
//!     }
//!     poller_thread.join().unwrap();
//! });
//! assert_eq!(queues[0].consumed.load(Ordering::Acquire), PACKETS);
//! ```
//!
//! ## Model-checking an embedder's driver with kbp-model and loom
//!
//! The embedder's own code (its `rearm_irq` re-check, its interrupt handler, its
//! fallback path) is where lost wake-ups hide, so check it the way kbp-model checks
//! its simulated NIC:
//!
//! 1. write the driver's shared words on `kbp_model::sync` (std atomics normally, loom's
//!    under `--cfg kbp_loom`) and build the [`Shared`] on `kbp_model::sync::Word`;
//! 2. use `kbp_model::sim::SimPlatform::blocking()` as the poller's [`Platform`] and as
//!    the producers' [`Unpark`] (its park blocks on loom's `thread::park`), or write your
//!    own on `kbp_model::sync::thread`;
//! 3. in a `loom::model`, spawn the interrupt side (produce, raise) on one or two
//!    threads and run the poller on the main thread, calling
//!    `kbp_model::invariants::shared(&shared, instances)` after every step (ownership,
//!    listing, state bits) and, at the end, your own "every packet consumed, interrupt
//!    armed, state idle" check (`kbp_model::invariants::quiescent` is that check for
//!    `kbp_model::sim::SimNic`);
//! 4. run it with `RUSTFLAGS="--cfg kbp_loom" LOOM_MAX_PREEMPTIONS=2 cargo test
//!    --release`; then seed the one-line bug you fear (drop the re-check in
//!    `rearm_irq`) and see the model fail. A lost wake-up shows as loom's deadlock
//!    report or an unconsumed packet.
//!
//! `kbp-model/tests/loom_models.rs` is the template (model (j) is eight lines of body):
//!
//! ```ignore
//! #[test]
//! fn my_irq_races_my_rearm() {
//!     loom::model(|| {
//!         let dev = Arc::new(MyDevice::new());          // on kbp_model::sync atomics
//!         let platform = SimPlatform::blocking();
//!         let irq = { let dev = dev.clone(); thread::spawn(move || dev.produce(0, 1)) };
//!         let mut poller = Poller::new(&dev.shared, &dev.queues, &&platform, config).unwrap();
//!         poller.attach_all();
//!         while dev.consumed() < 1 {
//!             let _ = poller.step();
//!             kbp_model::invariants::shared(&dev.shared, 1).unwrap();
//!         }
//!         poller.shutdown();
//!         irq.join().unwrap();
//!         dev.check_quiescent().unwrap();
//!     });
//! }
//! ```
//!
//! ## The embedder's surface and the `model` feature
//!
//! The list above is all an embedder needs; it does not enable any feature. Layers 2 to
//! 4 are private: a [`SchedToken`] is only ever minted by kbp-core, for the instance
//! whose SCHED bit was won, and nothing outside the crate can set a state bit or list an
//! instance except through [`Shared`] and [`Poller`].
//!
//! The `model` cargo feature exists for `kbp-model` (the model checker, proptest and
//! fuzz suites). It makes the `state`, `poll_list` and `park` modules public, which
//! exposes `StateFlags` with its pure transitions and their outcome types (for the
//! exhaustive tests), and adds inspection and stepwise methods to [`Shared`]: `flags`,
//! `list` (read-only: `len`, `is_empty`, `for_each_listed`), `is_parked`,
//! `begin_disable` and `try_finish_disable`. Even with it, live state words, pushing and
//! popping the poll list and minting tokens stay crate-private.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod atomic;
pub mod binding;
pub mod config;
pub mod counters;
pub mod idle;
pub mod napi;
#[cfg(feature = "model")]
pub mod park;
#[cfg(not(feature = "model"))]
mod park;
#[cfg(feature = "model")]
pub mod poll_list;
#[cfg(not(feature = "model"))]
mod poll_list;
pub mod poller;
pub mod producer;
pub mod rx;
pub mod shared;
#[cfg(feature = "model")]
pub mod state;
#[cfg(not(feature = "model"))]
mod state;

pub use atomic::AtomicWord;
pub use binding::{Bind, DeviceWord, SlotWord, Unserve};
pub use config::{Config, ConfigError, IdleMode};
pub use counters::{GapHistogram, InstanceStats, PollerStats, GAP_BUCKETS};
pub use idle::{Adaptive, Idle, IdlePolicy, ModePolicy, Spin};
pub use napi::{on_schedule, Hook, Napi, NapiBits, NapiPort};
pub use poller::{Poller, RoundReport, ShutdownReport, StepOutcome};
pub use producer::Producer;
pub use rx::{Nanos, Platform, Reschedule, RxInstance, Unpark};
pub use shared::{ScheduleOutcome, Shared};
#[cfg(feature = "model")]
pub use state::StateFlags;
pub use state::{Enable, SchedToken};

// Layout facts the kernel binding and the exhaustive tests rely on.
static_assertions::const_assert!(state::StateFlags::all().bits() < (1 << 6));
static_assertions::assert_eq_size!(state::StateFlags, u32);
static_assertions::assert_eq_size!(SchedToken, usize);
static_assertions::assert_impl_all!(Shared<core::sync::atomic::AtomicU32, 8>: Send, Sync);
static_assertions::assert_impl_all!(
    Producer<'static, core::sync::atomic::AtomicU32, producer::Running, 8>: Send, Sync, Copy
);
static_assertions::assert_not_impl_any!(SchedToken: Clone, Copy);
