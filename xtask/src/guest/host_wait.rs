//! How long the guest's QEMU threads waited for a host CPU: each thread's run-queue
//! delay (the second field of `/proc/PID/task/TID/schedstat`, nanoseconds), sampled
//! while a fault's traffic runs.
//!
//! This is the evidence that tells an emulator stall from a guest one. The whole guest
//! runs in QEMU's threads (`ALL CPUs/TCG` under single-threaded TCG, QEMU's main loop
//! for the tap); when the host has no CPU for them, no vCPU runs and nothing reads the
//! tap, whatever the guest's kernel does. A loss whose time the TCG thread spent
//! waiting for a host CPU is the host's, with or without KBP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between two samples.
const INTERVAL: Duration = Duration::from_millis(50);

/// One sample: when, and every QEMU thread's cumulative run-queue wait (name -> ns).
type Sample = (Instant, BTreeMap<String, u64>);

/// Samples QEMU's threads on a thread of its own until [`HostWait::finish`].
pub struct HostWait {
    stop: Arc<AtomicBool>,
    sampler: JoinHandle<Vec<Sample>>,
}

/// The sampled run-queue waits of a finished [`HostWait`].
pub struct HostWaits {
    samples: Vec<Sample>,
}

/// Every thread of `pid`: name (with the thread id when names repeat) -> run-queue wait.
fn read(pid: u32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let wait = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok());
        if let Some(wait) = wait {
            let tid = task.file_name().to_string_lossy().into_owned();
            out.insert(format!("{} ({tid})", comm.trim()), wait);
        }
    }
    out
}

impl HostWait {
    /// Starts sampling QEMU process `pid`.
    pub fn start(pid: u32) -> HostWait {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Acquire) {
                samples.push((Instant::now(), read(pid)));
                std::thread::sleep(INTERVAL);
            }
            samples.push((Instant::now(), read(pid)));
            samples
        });
        HostWait { stop, sampler }
    }

    /// Stops sampling.
    pub fn finish(self) -> HostWaits {
        self.stop.store(true, Ordering::Release);
        HostWaits {
            samples: self.sampler.join().unwrap_or_default(),
        }
    }
}

impl HostWaits {
    /// The QEMU thread that waited longest for a host CPU between `from` and `to` (widened
    /// to the samples around them): its name, its wait and the sampled span.
    pub fn longest_wait(&self, from: Instant, to: Instant) -> Option<(String, Duration, Duration)> {
        let first = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| *t <= from)
            .or(self.samples.first())?;
        let last = self
            .samples
            .iter()
            .find(|(t, _)| *t >= to)
            .or(self.samples.last())?;
        let span = last.0.saturating_duration_since(first.0);
        last.1
            .iter()
            .map(|(name, &end)| {
                let start = first.1.get(name).copied().unwrap_or(end);
                (
                    name.clone(),
                    Duration::from_nanos(end.saturating_sub(start)),
                )
            })
            .max_by_key(|(_, wait)| *wait)
            .map(|(name, wait)| (name, wait, span))
    }

    /// The same over the whole sampled time.
    pub fn longest_wait_overall(&self) -> Option<(String, Duration, Duration)> {
        let (first, last) = (self.samples.first()?.0, self.samples.last()?.0);
        self.longest_wait(first, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_wait_takes_the_samples_around_the_span() {
        let t = Instant::now();
        let at = |ms: u64, a: u64, b: u64| {
            (
                t + Duration::from_millis(ms),
                BTreeMap::from([("tcg".to_string(), a), ("io".to_string(), b)]),
            )
        };
        let w = HostWaits {
            samples: vec![
                at(0, 0, 0),
                at(50, 10, 0),
                at(100, 40_000_000, 5),
                at(150, 40_000_000, 9),
            ],
        };
        let (name, wait, span) = w
            .longest_wait(t + Duration::from_millis(60), t + Duration::from_millis(90))
            .unwrap();
        assert_eq!(name, "tcg");
        assert_eq!(wait, Duration::from_nanos(40_000_000 - 10));
        assert_eq!(span, Duration::from_millis(50));
        assert_eq!(
            w.longest_wait_overall().unwrap().1,
            Duration::from_millis(40)
        );
    }

    #[test]
    fn this_process_threads_are_readable() {
        assert!(!read(std::process::id()).is_empty());
    }
}
