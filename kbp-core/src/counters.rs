//! Counters kept by a poller, per poller and per instance (softnet_stat's spirit).
//!
//! They are plain integers owned by the poller thread (no atomics on the hot path); an
//! embedder that shows them elsewhere copies them out from the poller's thread, e.g. at
//! the end of a step.

use crate::rx::Nanos;

/// Per-poller counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollerStats {
    /// Drain rounds that found at least one instance listed.
    pub rounds: u64,
    /// Packets processed.
    pub packets: u64,
    /// Instance polls.
    pub polls: u64,
    /// Polls that processed nothing.
    pub empty_polls: u64,
    /// Rounds that stopped because the round budget was used up.
    pub budget_exhausted: u64,
    /// Rounds that stopped because the time limit passed.
    pub time_exhausted: u64,
    /// Rounds that stopped early (budget or time) with listed instances left over.
    pub squeezes: u64,
    /// Times the poller parked.
    pub parks: u64,
    /// Times a producer woke the parked poller.
    pub wakes: u64,
    /// Instances released (interrupt re-armed).
    pub releases: u64,
    /// Polls that returned more than their budget (a driver bug, clamped).
    pub overruns: u64,
    /// Pushes refused by a full poll list (impossible with valid ids; released instead).
    pub list_overflows: u64,
}

/// Per-instance counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstanceStats {
    /// Packets processed.
    pub packets: u64,
    /// Polls.
    pub polls: u64,
    /// Polls that processed nothing.
    pub empty_polls: u64,
    /// Polls that used the whole weight (the instance stayed owned and was re-polled).
    pub weight_exhausted: u64,
    /// Times the instance was released with its interrupt re-armed.
    pub releases: u64,
    /// Longest time between two consecutive polls while the instance stayed owned.
    pub max_gap_ns: Nanos,
    /// Time of the last poll while owned (`None` once released).
    pub last_poll_ns: Option<Nanos>,
}

impl InstanceStats {
    /// Records a poll at `now` that processed `work` of `weight`.
    #[inline]
    pub(crate) fn record_poll(&mut self, now: Nanos, work: u32, weight: u32) {
        self.polls += 1;
        self.packets += u64::from(work);
        if work == 0 {
            self.empty_polls += 1;
        }
        if work == weight {
            self.weight_exhausted += 1;
        }
        if let Some(last) = self.last_poll_ns {
            self.max_gap_ns = self.max_gap_ns.max(now.saturating_sub(last));
        }
        self.last_poll_ns = Some(now);
    }

    /// Records that the instance was released.
    #[inline]
    pub(crate) fn record_release(&mut self) {
        self.releases += 1;
        self.last_poll_ns = None;
    }
}
