//! # kbp-model: kbp-core under test, in userspace
//!
//! The same kbp-core source the kernel module compiles, run against test doubles:
//!
//! * [`sync`]: std or loom primitives (`RUSTFLAGS="--cfg kbp_loom"`), and the
//!   [`kbp_core::AtomicWord`] backend over loom's atomics;
//! * [`sim`]: a simulated NIC (receive instances with a masked/armed interrupt and the
//!   driver's re-arm race) and a simulated platform (clock, softirq mask, park);
//! * [`invariants`]: **the** checker of the properties in `napi-semantics.md`, shared by
//!   every suite;
//! * [`reference`]: a plain sequential reference model;
//! * [`ops`]: operation sequences run on kbp-core and the reference side by side.
//!
//! The suites live in `tests/`: `exhaustive.rs` (every state x every operation),
//! `proptest_ops.rs` (random operation sequences), `loom_models.rs` (interleavings).
//! The fuzzer (`fuzz/`) runs [`ops::run`] on arbitrary bytes.

pub mod invariants;
pub mod ops;
pub mod reference;
pub mod sim;
pub mod sync;
