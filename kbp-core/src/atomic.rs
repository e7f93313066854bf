//! The atomic backend: the one primitive every shared word of kbp-core goes through.
//!
//! kbp-core never names `core::sync::atomic::AtomicU32` in its logic. It is generic over
//! [`AtomicWord`], a 32-bit cell with `load`, `store` and `compare_exchange_weak` only,
//! because that is the intersection of what the three targets offer:
//!
//! * userspace and the examples: [`core::sync::atomic::AtomicU32`] (implemented here);
//! * the model checker: `loom::sync::atomic::AtomicU32` (implemented in `kbp-model`);
//! * the kernel: the kernel's cmpxchg-based atomics (implemented in `kbp-linux`), which
//!   have no `fetch_or`/`fetch_and` and follow the kernel memory model.
//!
//! Every read-modify-write in the crate is therefore a compare-and-swap loop over a pure
//! function (see the state word's transitions in `state.rs`).

use core::sync::atomic::{AtomicU32, Ordering};

/// A 32-bit atomic cell. Implementations must give the usual C11 meaning to the
/// orderings passed in (a kernel backend may implement a weaker ordering with a stronger
/// one, never the reverse).
pub trait AtomicWord: Send + Sync {
    /// A new cell holding `value`.
    fn new(value: u32) -> Self;
    /// Reads the cell.
    fn load(&self, order: Ordering) -> u32;
    /// Writes the cell.
    fn store(&self, value: u32, order: Ordering);
    /// Replaces `current` with `new`; may fail spuriously. Returns the value seen.
    fn compare_exchange_weak(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
}

impl AtomicWord for AtomicU32 {
    #[inline]
    fn new(value: u32) -> Self {
        AtomicU32::new(value)
    }
    #[inline]
    fn load(&self, order: Ordering) -> u32 {
        AtomicU32::load(self, order)
    }
    #[inline]
    fn store(&self, value: u32, order: Ordering) {
        AtomicU32::store(self, value, order)
    }
    #[inline]
    fn compare_exchange_weak(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        AtomicU32::compare_exchange_weak(self, current, new, success, failure)
    }
}

/// Applies `f` to the cell's value through one compare-and-swap loop.
///
/// `f` is a pure function of the value it is given: it returns the value to write (or
/// `None` to leave the cell untouched) and an outcome. It may be called several times
/// when other CPUs race; only the outcome of the call whose write succeeded (or that
/// chose not to write) is returned. Success is `AcqRel`: the winner of a transition sees
/// everything the previous owner published and publishes its own writes.
#[inline]
pub fn transition<A: AtomicWord, T>(cell: &A, mut f: impl FnMut(u32) -> (Option<u32>, T)) -> T {
    let mut current = cell.load(Ordering::Acquire);
    loop {
        let (next, outcome) = f(current);
        let Some(next) = next else { return outcome };
        match cell.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return outcome,
            Err(seen) => current = seen,
        }
    }
}
