//! The poll list: a bounded multi-producer, single-consumer FIFO of owned instances.
//!
//! NAPI's `softnet_data::poll_list` is per-CPU and protected by disabling interrupts.
//! A KBP poller runs on one CPU while the interrupts that schedule its instances fire on
//! any CPU, so its list must take pushes from other CPUs while the poller pops. This is
//! Vyukov's bounded queue specialised to one consumer, on [`AtomicWord`] only:
//!
//! * every cell carries a sequence number; a producer claims `tail` with a CAS, writes
//!   the instance id and publishes it by storing `seq = pos + 1` (Release);
//! * the consumer takes the cell at `head` when `seq == head + 1` (Acquire) and frees it
//!   for the next lap with `seq = head + N`.
//!
//! A push consumes the [`SchedToken`] and a pop mints it again, so an instance is listed
//! only by its owner and at most once; with at most `N` tokens the list can never be
//! full (`N` instances, capacity `N`). `N` must be a power of two so positions can wrap.
//!
//! Pushing and popping are crate-private (the interrupt side pushes through
//! [`crate::Shared::schedule`], the poller pops); outside the crate the list can only be
//! inspected, through `Shared::list` with the `model` feature.

use core::sync::atomic::Ordering;

use crate::atomic::AtomicWord;
use crate::state::SchedToken;

struct Cell<A> {
    seq: A,
    id: A,
}

/// A fixed-capacity list of owned instances (`N` a power of two).
pub struct PollList<A: AtomicWord, const N: usize> {
    cells: [Cell<A>; N],
    /// Next position a producer claims.
    tail: A,
    /// Next position the consumer reads (written only by the consumer).
    head: A,
}

impl<A: AtomicWord, const N: usize> PollList<A, N> {
    const MASK: u32 = {
        assert!(
            N.is_power_of_two() && N <= 1 << 16,
            "poll list capacity must be a power of two <= 65536"
        );
        (N - 1) as u32
    };

    /// An empty list.
    pub fn new() -> Self {
        PollList {
            cells: core::array::from_fn(|i| Cell {
                seq: A::new(i as u32),
                id: A::new(0),
            }),
            tail: A::new(0),
            head: A::new(0),
        }
    }

    /// Lists an owned instance behind everything already listed (any CPU, IRQ context).
    ///
    /// Fails only when the list is full, which the token discipline rules out when every
    /// instance id is below `N`; the token is then handed back, never lost.
    pub(crate) fn push(&self, token: SchedToken) -> Result<(), SchedToken> {
        let mut pos = self.tail.load(Ordering::Relaxed);
        loop {
            let cell = &self.cells[(pos & Self::MASK) as usize];
            let seq = cell.seq.load(Ordering::Acquire);
            let lag = seq.wrapping_sub(pos) as i32;
            if lag == 0 {
                match self.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        cell.id.store(token.id() as u32, Ordering::Relaxed);
                        cell.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(seen) => pos = seen,
                }
            } else if lag < 0 {
                return Err(token);
            } else {
                // Another producer took this position; look again.
                pos = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Takes the oldest published instance (the poller only). `None` when empty or when the
    /// oldest push is still being published (its producer will notify the poller).
    pub(crate) fn pop(&self) -> Option<SchedToken> {
        let pos = self.head.load(Ordering::Relaxed);
        let cell = &self.cells[(pos & Self::MASK) as usize];
        if cell.seq.load(Ordering::Acquire) != pos.wrapping_add(1) {
            return None;
        }
        let id = cell.id.load(Ordering::Relaxed);
        cell.seq
            .store(pos.wrapping_add(N as u32), Ordering::Release);
        self.head.store(pos.wrapping_add(1), Ordering::Relaxed);
        Some(SchedToken::mint(id as usize))
    }

    /// Number of claimed positions not yet popped (pushes in flight included).
    pub fn len(&self) -> usize {
        let tail = self.tail.load(Ordering::Acquire);
        let head = self.head.load(Ordering::Relaxed);
        tail.wrapping_sub(head) as usize
    }

    /// True when nothing is listed or being listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids currently published, oldest first (for checkers; not linearizable
    /// against concurrent pushes). Calls `f` for each.
    #[cfg(feature = "model")]
    pub fn for_each_listed(&self, mut f: impl FnMut(usize)) {
        let mut pos = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        while pos != tail {
            let cell = &self.cells[(pos & Self::MASK) as usize];
            if cell.seq.load(Ordering::Acquire) != pos.wrapping_add(1) {
                break;
            }
            f(cell.id.load(Ordering::Relaxed) as usize);
            pos = pos.wrapping_add(1);
        }
    }
}

impl<A: AtomicWord, const N: usize> Default for PollList<A, N> {
    fn default() -> Self {
        Self::new()
    }
}
