//! The one place that chooses between std and loom primitives (`--cfg kbp_loom`).

#[cfg(kbp_loom)]
pub use loom::{
    sync::Arc,
    sync::atomic::{AtomicBool, AtomicU32},
    thread,
};
#[cfg(not(kbp_loom))]
pub use std::{
    sync::Arc,
    sync::atomic::{AtomicBool, AtomicU32},
    thread,
};

pub use core::sync::atomic::Ordering;

/// The [`kbp_core::AtomicWord`] the model runs kbp-core on: `core`'s atomic normally,
/// loom's under `--cfg kbp_loom` (so loom explores every interleaving of the core).
#[cfg(not(kbp_loom))]
pub type Word = core::sync::atomic::AtomicU32;

/// The [`kbp_core::AtomicWord`] the model runs kbp-core on (loom's atomic).
#[cfg(kbp_loom)]
pub struct Word(loom::sync::atomic::AtomicU32);

#[cfg(kbp_loom)]
impl kbp_core::AtomicWord for Word {
    fn new(value: u32) -> Self {
        Word(loom::sync::atomic::AtomicU32::new(value))
    }
    fn load(&self, order: Ordering) -> u32 {
        self.0.load(order)
    }
    fn store(&self, value: u32, order: Ordering) {
        self.0.store(value, order)
    }
    fn compare_exchange_weak(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        self.0.compare_exchange_weak(current, new, success, failure)
    }
}
