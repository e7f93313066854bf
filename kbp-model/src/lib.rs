//! # kbp-model: kbp-core under test, in userspace
//!
//! The same kbp-core source the kernel module compiles, run against test doubles:
//!
//! * [`sync`]: std or loom primitives (`RUSTFLAGS="--cfg kbp_loom"`), and the
//!   [`kbp_core::AtomicWord`] backend over loom's atomics;
//! * [`sim`]: a simulated NIC (receive instances with a masked/armed interrupt and the
//!   driver's re-arm race) and a simulated platform (clock, softirq mask, park);
//! * [`napi_sim`]: the kernel side of kbp.ko: a simulation of Linux 7.2's
//!   `napi->state` (prep, complete with IN_BUSY_POLL and MISSED, disable/enable, busy
//!   poll, delete), a virtio-net-like driver and the softirq path, implementing
//!   [`kbp_core::Napi`] so that kbp-core's `napi` protocol runs against it;
//! * [`invariants`]: **the** checker of the properties in `napi-semantics.md`, shared by
//!   every suite;
//! * [`reference`]: a plain sequential reference model;
//! * [`ops`]: operation sequences run on kbp-core and the reference side by side, and
//!   on kbp.ko's protocol over [`napi_sim`].
//!
//! The suites live in `tests/`: `exhaustive.rs` (every state x every operation),
//! `proptest_ops.rs` (random operation sequences), `loom_models.rs` (interleavings).
//! The fuzzer (`fuzz/`) runs [`ops::run`] and [`ops::run_napi`] on arbitrary bytes.

pub mod invariants;
pub mod napi_sim;
pub mod ops;
pub mod reference;
pub mod sim;
pub mod sync;
