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
//! 2. [`state`]: an instance's scheduling word ([`StateFlags`]: SCHED, MISSED, DISABLE,
//!    NPSVC, BUSY, ATTACHED) with NAPI's meaning. Transitions are pure functions applied
//!    by one CAS loop; winning SCHED yields a [`SchedToken`], the proof of ownership.
//! 3. [`poll_list`]: a bounded MPSC FIFO of owned instances, pushed from interrupt
//!    context on any CPU, popped by the poller. Pushing consumes a token.
//! 4. [`park`]: the poller's sleep/wake word, free of the lost-wake-up race.
//! 5. [`shared`]: [`Shared`], everything interrupt context touches (schedule, disable,
//!    enable).
//! 6. [`poller`]: [`Poller`], the drain loop with NAPI's weight, budget and time limit,
//!    fair re-listing, the idle policy ([`IdleMode`]) and shutdown.
//! 7. [`rx`]: the two traits an embedder implements, [`RxInstance`] (one NAPI
//!    instance) and [`Platform`] (softirq mask, quiescent states, clock, park/unpark);
//!    [`counters`] (softnet_stat-like counts and each instance's poll-gap histogram,
//!    the wait a packet can see while its instance is owned) and [`config`] complete
//!    the picture.
//!
//! ```text
//!  IRQ, any CPU                              poller thread, one CPU
//!  ------------                              ----------------------
//!  Shared::schedule(id)                      loop {
//!    state: 0 -> SCHED  (token)                Poller::step()
//!    poll_list.push(token)  ------------------>  drain_round: pop, mask BH, poll, unmask
//!    park.notify() -> unpark if parked           idle: Spin | Adaptive -> park
//!                                                platform.quiescent()
//!                                            }   Poller::shutdown(): hand back, re-arm
//! ```
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod atomic;
pub mod config;
pub mod counters;
pub mod park;
pub mod poll_list;
pub mod poller;
pub mod rx;
pub mod shared;
pub mod state;

pub use atomic::AtomicWord;
pub use config::{Config, ConfigError, IdleMode};
pub use counters::{GapHistogram, InstanceStats, PollerStats, GAP_BUCKETS};
pub use poller::{Poller, RoundReport, ShutdownReport, StepOutcome};
pub use rx::{Nanos, Platform, RxInstance};
pub use shared::{ScheduleOutcome, Shared};
pub use state::{SchedToken, StateFlags};

// Layout facts the kernel binding and the exhaustive tests rely on.
static_assertions::const_assert!(StateFlags::all().bits() < (1 << 6));
static_assertions::assert_eq_size!(StateFlags, u32);
static_assertions::assert_eq_size!(SchedToken, usize);
static_assertions::assert_impl_all!(Shared<core::sync::atomic::AtomicU32, 8>: Send, Sync);
static_assertions::assert_not_impl_any!(SchedToken: Clone, Copy);
