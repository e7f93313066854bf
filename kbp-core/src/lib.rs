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
//!    enable).
//! 6. [`poller`]: [`Poller`], the drain loop with NAPI's weight, budget and time limit,
//!    fair re-listing, the idle policy ([`IdleMode`]) and shutdown.
//! 7. [`rx`]: the two traits an embedder implements, [`RxInstance`] (one NAPI
//!    instance) and [`Platform`] (softirq mask, quiescent states, clock, park/unpark);
//!    [`counters`] (softnet_stat-like counts and each instance's poll-gap histogram,
//!    the wait a packet can see while its instance is owned) and [`config`] complete
//!    the picture.
//! 8. [`napi`]: the protocol by which a poller serves a kernel NAPI instance without
//!    borrowing the kernel's fields: the `__napi_schedule()` entry hook
//!    ([`on_schedule`]), IN_BUSY_POLL ownership and the `busy_poll_stop()` hand-back
//!    ([`NapiPort`]), generic over [`Napi`] so kbp-model checks what kbp.ko runs.
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
//!
//! ## The embedder's surface and the `model` feature
//!
//! An embedder implements [`RxInstance`] and [`Platform`] (and [`AtomicWord`], for its
//! own atomics), builds a [`Shared`] and a [`Poller`] from a [`Config`], calls
//! [`Shared::schedule`] from its interrupt handler ([`Shared::complete`] after running
//! its normal path for a `Fallback`), [`Shared::disable`] / [`Shared::enable`] around
//! reconfiguration, and drives the poller with [`Poller::step`] and
//! [`Poller::shutdown`], reading [`PollerStats`] and [`InstanceStats`]. That is all it
//! needs; it does not enable any feature. Layers 2 to 4 are private: a [`SchedToken`] is
//! only ever minted by kbp-core, for the instance whose SCHED bit was won, and nothing
//! outside the crate can set a state bit or list an instance except through [`Shared`]
//! and [`Poller`].
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
static_assertions::assert_not_impl_any!(SchedToken: Clone, Copy);
