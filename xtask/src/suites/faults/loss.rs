//! Where a fault's lost packets fall in time: the device-away windows that excuse some of
//! them, and the clusters that describe the rest.
//!
//! A device-away operation (link down, unbind, ring resize) excuses the loss of packets
//! sent from its start until the device echoes again: the first echoed packet sent after
//! the operation returned, and at least [`SETTLE`] after it returned. The device must be
//! back within [`RECOVERY_BOUND`] of the operation's return, or the fault fails.
//!
//! Why "until it echoes again" and not a fixed time: after an unbind and rebind, the
//! host's tap has queued up to `txqueuelen` (1000) packets sent while the device was
//! gone, and drops the rest, ARP replies included. The new device starts with an empty
//! neighbour table, so its first echoes wait on ARP; an ARP reply dropped at the full tap
//! is retried by the guest after `retrans_time_ms` (1 s). The device is legitimately away
//! until then, with or without KBP; the recovery time is recorded and bounded instead.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Loss is excused for packets sent up to at least this long after a device-away
/// operation returned.
pub const SETTLE: Duration = Duration::from_millis(700);

/// A device that went away must echo a packet sent within this long after the operation
/// returned.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(3);

/// Two losses further apart than this are in different clusters.
const CLUSTER_GAP: Duration = Duration::from_millis(100);

/// One device-away operation: when it started and when it returned.
#[derive(Clone, Copy)]
pub struct AwayOp {
    pub start: Instant,
    pub end: Instant,
}

/// The excused window of one device-away operation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
    /// From the operation's return to the send time of the first packet echoed after it;
    /// `None` if none was within [`RECOVERY_BOUND`].
    pub back_after: Option<Duration>,
}

/// The window in which loss is excused for `op`, given the send times of the echoed
/// packets (ascending).
pub fn excused_window(op: AwayOp, echoed_sent_at: &[Instant]) -> Window {
    let first = echoed_sent_at.partition_point(|&t| t < op.end);
    let back_after = echoed_sent_at
        .get(first)
        .map(|&t| t - op.end)
        .filter(|&d| d <= RECOVERY_BOUND);
    let end = op.end + back_after.unwrap_or(RECOVERY_BOUND).max(SETTLE);
    Window {
        start: op.start,
        end,
        back_after,
    }
}

/// A run of losses with no gap longer than [`CLUSTER_GAP`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cluster {
    /// Send time of its first lost packet, seconds after the fault's traffic started.
    pub at_s: f64,
    /// From its first lost packet to its last, milliseconds.
    pub span_ms: f64,
    /// Lost packets in it.
    pub lost: u64,
    /// From the end of the nearest earlier excused window to the cluster's first loss,
    /// milliseconds (`None`: no window before it).
    pub after_window_ms: Option<f64>,
    /// Send times of its first and last lost packet.
    #[serde(skip)]
    pub sent: (Instant, Instant),
    /// The QEMU thread that waited longest for a host CPU around it, and how long, and
    /// over what sampled span (milliseconds): filled in by the caller.
    pub qemu_host_wait: Option<(String, f64, f64)>,
}

/// Clusters of the losses in `lost` (ascending send times) outside every window, the
/// largest first.
pub fn unexcused_clusters(lost: &[Instant], windows: &[Window], origin: Instant) -> Vec<Cluster> {
    let excused = |t: Instant| windows.iter().any(|w| t >= w.start && t <= w.end);
    let mut clusters: Vec<(Instant, Instant, u64)> = Vec::new();
    for &t in lost.iter().filter(|&&t| !excused(t)) {
        match clusters.last_mut() {
            Some((_, last, n)) if t - *last <= CLUSTER_GAP => {
                *last = t;
                *n += 1;
            }
            _ => clusters.push((t, t, 1)),
        }
    }
    let mut out: Vec<Cluster> = clusters
        .into_iter()
        .map(|(first, last, lost)| Cluster {
            at_s: first.saturating_duration_since(origin).as_secs_f64(),
            span_ms: (last - first).as_secs_f64() * 1e3,
            lost,
            after_window_ms: windows
                .iter()
                .filter(|w| w.end <= first)
                .map(|w| first - w.end)
                .min()
                .map(|d| d.as_secs_f64() * 1e3),
            sent: (first, last),
            qemu_host_wait: None,
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.lost));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(origin: Instant, v: u64) -> Instant {
        origin + Duration::from_millis(v)
    }

    #[test]
    fn window_lasts_until_the_first_echo_after_the_operation() {
        let o = Instant::now();
        let op = AwayOp {
            start: ms(o, 100),
            end: ms(o, 200),
        };
        // Echoed before the operation and long after it returned: away until 1500.
        let echoed = [ms(o, 50), ms(o, 1_500), ms(o, 1_600)];
        let w = excused_window(op, &echoed);
        assert_eq!(w.back_after, Some(Duration::from_millis(1_300)));
        assert_eq!(w.end, ms(o, 1_500));
        // Back at once: the window still lasts SETTLE.
        let w = excused_window(op, &[ms(o, 210)]);
        assert_eq!(w.back_after, Some(Duration::from_millis(10)));
        assert_eq!(w.end, op.end + SETTLE);
        // Never back: not excused past the bound, and reported as not back.
        let w = excused_window(
            op,
            &[ms(o, 200) + RECOVERY_BOUND + Duration::from_millis(1)],
        );
        assert_eq!(w.back_after, None);
        assert_eq!(w.end, op.end + RECOVERY_BOUND);
    }

    #[test]
    fn losses_outside_windows_cluster_by_gap() {
        let o = Instant::now();
        let w = excused_window(
            AwayOp {
                start: ms(o, 0),
                end: ms(o, 100),
            },
            &[ms(o, 150)],
        );
        let lost = [
            ms(o, 10),    // excused
            ms(o, 1_000), // cluster A
            ms(o, 1_050),
            ms(o, 1_140),
            ms(o, 5_000), // cluster B
        ];
        let c = unexcused_clusters(&lost, &[w], o);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].lost, c[0].span_ms), (3, 140.0));
        assert_eq!(c[0].at_s, 1.0);
        assert_eq!(c[0].after_window_ms, Some(200.0));
        assert_eq!((c[1].lost, c[1].at_s), (1, 5.0));
    }
}
