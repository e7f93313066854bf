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
    /// Of those, releases of an instance the idle policy would have kept but whose
    /// polls had found no work for [`crate::Config::idle_release_ns`].
    pub idle_releases: u64,
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
    /// Of those, releases because its polls had found no work for
    /// [`crate::Config::idle_release_ns`] (the idle policy would have kept it).
    pub idle_releases: u64,
    /// Longest time between two consecutive polls while the instance stayed owned.
    pub max_gap_ns: Nanos,
    /// Every such time, as a log2 histogram.
    pub poll_gaps: GapHistogram,
    /// Time of the last poll while owned (`None` once released).
    pub last_poll_ns: Option<Nanos>,
    /// Time of the last poll that found work while owned, or of the first poll of this
    /// ownership if none has (`None` once released): where the idle release's window
    /// starts.
    pub last_work_ns: Option<Nanos>,
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
            let gap = now.saturating_sub(last);
            self.max_gap_ns = self.max_gap_ns.max(gap);
            self.poll_gaps.record(gap);
        }
        self.last_poll_ns = Some(now);
        if work > 0 || self.last_work_ns.is_none() {
            self.last_work_ns = Some(now);
        }
    }

    /// How long the instance's polls have found no work at `now` (0 before its first
    /// poll of this ownership).
    #[inline]
    pub fn idle_for(&self, now: Nanos) -> Nanos {
        self.last_work_ns.map_or(0, |last| now.saturating_sub(last))
    }

    /// Records that the instance was released.
    #[inline]
    pub(crate) fn record_release(&mut self) {
        self.releases += 1;
        self.last_poll_ns = None;
        self.last_work_ns = None;
    }
}

/// Buckets of a [`GapHistogram`].
pub const GAP_BUCKETS: usize = 16;

/// The times between two consecutive polls of an owned instance, as a log2 histogram.
///
/// While an instance is owned its interrupt stays masked, so a packet that arrives just
/// after a poll waits for the next one: for a spinning poller this is the distribution
/// of the schedule-to-poll delay's bound. Bucket 0 counts gaps below 1024 ns; bucket
/// `k` counts gaps in `[2^(9+k), 2^(10+k))` ns; the last bucket also counts every longer
/// gap (from 2^24 ns, about 16.8 ms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GapHistogram(pub [u64; GAP_BUCKETS]);

impl GapHistogram {
    /// The bucket a gap of `gap_ns` falls in.
    pub const fn bucket(gap_ns: Nanos) -> usize {
        if gap_ns < 1024 {
            return 0;
        }
        let log2 = (Nanos::BITS - 1 - gap_ns.leading_zeros()) as usize;
        let k = log2 - 9;
        if k < GAP_BUCKETS {
            k
        } else {
            GAP_BUCKETS - 1
        }
    }

    /// The smallest gap bucket `k` counts, in nanoseconds.
    pub const fn lower_bound_ns(k: usize) -> Nanos {
        if k == 0 {
            0
        } else {
            1 << (9 + k)
        }
    }

    /// Counts one gap.
    #[inline]
    pub(crate) fn record(&mut self, gap_ns: Nanos) {
        // `bucket` is always in range; `get_mut` keeps a panic path out of the kernel.
        if let Some(count) = self.0.get_mut(Self::bucket(gap_ns)) {
            *count += 1;
        }
    }

    /// Gaps counted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_buckets_are_log2_from_one_microsecond_and_the_last_is_open() {
        let cases = [
            (0, 0),
            (1023, 0),
            (1024, 1),
            (2047, 1),
            (2048, 2),
            ((1 << 24) - 1, 14),
            (1 << 24, 15),
            (1 << 40, 15),
            (Nanos::MAX, 15),
        ];
        for (gap, bucket) in cases {
            assert_eq!(GapHistogram::bucket(gap), bucket, "gap {gap} ns");
        }
        for k in 0..GAP_BUCKETS {
            assert_eq!(GapHistogram::bucket(GapHistogram::lower_bound_ns(k)), k);
        }
    }

    #[test]
    fn a_gap_is_counted_between_polls_of_one_ownership_only() {
        let mut s = InstanceStats::default();
        s.record_poll(1_000, 1, 64);
        s.record_poll(4_000, 0, 64); // 3 us
        s.record_poll(4_500, 64, 64); // 500 ns
        s.record_release();
        s.record_poll(9_000_000, 2, 64); // first poll of a new ownership: no gap
        s.record_poll(9_040_000, 2, 64); // 40 us
        let mut expected = [0; GAP_BUCKETS];
        expected[0] = 1;
        expected[2] = 1;
        expected[6] = 1;
        assert_eq!(s.poll_gaps.0, expected);
        assert_eq!(s.poll_gaps.total(), s.polls - 2);
        assert_eq!(s.max_gap_ns, 40_000);
    }
}
