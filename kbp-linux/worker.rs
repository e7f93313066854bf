// SPDX-License-Identifier: GPL-2.0
//! One KBP thread and the NAPI instances it serves.
//!
//! A [`Worker`] is pinned to one CPU of the `cpus` parameter and runs kbp-core's
//! [`Poller`] over its [`Slot`]s. At load the module splits the instances of the
//! configured devices, in the order the devices list them, into one contiguous run per
//! thread (so with one thread per queue pair a queue's RX and TX instances stay
//! together); an instance a driver creates later is adopted by the entry hook into the
//! emptiest thread. The poller and the ports live on the heap, not on the kthread's
//! stack, under which the whole receive path (bridge, netfilter, TCP) runs.

use core::ffi::{c_int, c_void};

use kbp_core::{Bind, Config, DeviceWord, IdleMode, NapiPort, Poller, Shared};
use kernel::prelude::*;
use kernel::sync::atomic::ordering;

use crate::platform::{KernelPlatform, KernelWord, Thread};
use crate::slot::{Slot, SlotNapi, NO_DEV};
use crate::stats::{InstanceRecord, Published, Snapshot, ThreadView};
use crate::sys::{self, RawNapi};

/// Most NAPI instances one KBP thread serves (kbp-core's poll-list capacity).
pub(crate) const CAP: usize = 16;

/// Steps between two publications of the counters.
const PUBLISH_EVERY: u32 = 256;

/// A KBP thread's instances and the state its callers share with it.
pub(crate) struct Worker {
    /// The CPU the thread is pinned to.
    pub(crate) cpu: i32,
    /// The validated configuration (the same for every thread).
    pub(crate) config: Config,
    /// kbp-core's shared state for the slots below (instance `id` is slot `id`).
    pub(crate) shared: Shared<KernelWord, CAP>,
    /// The instances.
    pub(crate) slots: [Slot; CAP],
    thread: Thread,
    snapshot: Snapshot<CAP>,
}

// SAFETY: the raw pointers in the slots are kernel objects whose lifetime rule is
// written in `slot.rs`; everything other CPUs touch is atomic.
unsafe impl Sync for Worker {}
// SAFETY: as above; nothing is tied to the creating thread.
unsafe impl Send for Worker {}

/// What the thread allocates for itself: the ports (and the platform they use).
struct Ports<'a> {
    ports: [NapiPort<SlotNapi<'a>>; CAP],
    platform: KernelPlatform<'a>,
}

impl Worker {
    /// A worker with empty slots and no thread yet.
    pub(crate) fn new(cpu: i32, config: Config) -> Self {
        Worker {
            cpu,
            config,
            shared: Shared::new(),
            slots: core::array::from_fn(|_| Slot::new()),
            thread: Thread::new(),
            snapshot: Snapshot::new(),
        }
    }

    /// Creates the (not yet running) pinned kthread. The worker must not move or be
    /// freed until [`Worker::stop`] returned.
    pub(crate) fn create_thread(&self, fifo: bool) -> Result {
        let data = self as *const Worker as *mut c_void;
        // SAFETY: the module stops the thread (`stop`) before it frees the worker.
        unsafe { self.thread.create(kbp_thread, data, self.cpu, fifo) }
    }

    /// Wakes the thread.
    pub(crate) fn wake(&self) {
        self.thread.wake();
    }

    /// Stops the thread: it hands every instance back first.
    pub(crate) fn stop(&self) {
        self.thread.stop();
    }

    /// Pins the thread to its CPU again (that CPU came back online; while it was
    /// offline the scheduler ran the thread elsewhere, and it kept serving).
    pub(crate) fn repin(&self) {
        self.thread.repin(self.cpu);
    }

    /// The platform the entry hook uses to unpark this worker's thread.
    pub(crate) fn platform(&self) -> KernelPlatform<'_> {
        KernelPlatform {
            thread: &self.thread,
        }
    }

    /// The slot holding `napi`.
    pub(crate) fn find(&self, napi: *mut RawNapi) -> Option<usize> {
        self.slots.iter().position(|s| s.get() == napi)
    }

    /// Slots holding an instance.
    pub(crate) fn live(&self) -> usize {
        self.slots.iter().filter(|s| !s.get().is_null()).count()
    }

    /// Puts `napi` of device `dev` (whose served word is `device`) into an empty slot:
    /// the slot and whether it serves the instance ([`Slot::claim`]); None if every
    /// slot is taken.
    pub(crate) fn adopt(
        &self,
        napi: *mut RawNapi,
        dev: u32,
        device: &DeviceWord<KernelWord>,
    ) -> Option<(usize, Bind)> {
        self.slots
            .iter()
            .enumerate()
            .find_map(|(id, s)| s.claim(napi, dev, device).map(|bind| (id, bind)))
    }

    /// The stats file's view of this thread.
    pub(crate) fn view<'a>(&'a self, dev_name: impl Fn(u32) -> &'a [u8]) -> ThreadView<'a, CAP> {
        ThreadView {
            cpu: self.cpu,
            mode: match self.config.idle {
                IdleMode::Spin => "spin",
                IdleMode::Adaptive { .. } => "adaptive",
            },
            snapshot: &self.snapshot,
            instances: core::array::from_fn(|id| {
                let slot = &self.slots[id];
                let dev = slot.shown_dev.load(ordering::Relaxed);
                (dev != NO_DEV).then(|| {
                    let napi_id = if slot.get().is_null() {
                        -1
                    } else {
                        slot.napi_id.load(ordering::Relaxed)
                    };
                    (napi_id, dev_name(dev))
                })
            }),
        }
    }

    fn publish(
        &self,
        poller: &Poller<'_, KernelWord, NapiPort<SlotNapi<'_>>, KernelPlatform<'_>, CAP>,
        ports: &Ports<'_>,
        published: &mut Published<CAP>,
    ) {
        let handback = ports.ports.iter().map(NapiPort::release_packets).sum();
        self.snapshot
            .publish(published, poller.stats(), handback, |id| InstanceRecord {
                stats: poller.instance_stats(id).copied().unwrap_or_default(),
                owned: ports.ports.get(id).is_some_and(NapiPort::busy),
            });
    }

    /// The thread's body: serve every slot until asked to stop, then hand back.
    fn serve(&self) -> Result {
        let ports = KBox::new(
            Ports {
                ports: core::array::from_fn(|id| NapiPort::new(SlotNapi(&self.slots[id]))),
                platform: self.platform(),
            },
            GFP_KERNEL,
        )?;
        let poller = Poller::new(&self.shared, &ports.ports, &ports.platform, self.config)
            .map_err(|_| EINVAL)?;
        let mut poller = KBox::new(poller, GFP_KERNEL)?;
        // Every allocation before `attach_all`: from there on the hook diverts the
        // instances' schedules to this thread, so it must reach `shutdown`.
        let mut published = KBox::new(Published::new(), GFP_KERNEL)?;
        poller.attach_all();
        let mut steps: u32 = 0;
        while !sys::should_stop() {
            // Published just before each park (so an idle period shows the counts of
            // the packets before it) and every `PUBLISH_EVERY` steps.
            let _ = poller.step_then(|poller| self.publish(poller, &ports, &mut published));
            steps = steps.wrapping_add(1);
            if steps % PUBLISH_EVERY == 0 {
                self.publish(&poller, &ports, &mut published);
            }
        }
        // The entry hook is gone (the module removes it before stopping threads), so
        // nothing lists an instance any more: hand back every one this thread owns.
        let report = poller.shutdown();
        self.publish(&poller, &ports, &mut published);
        pr_info!(
            "thread on CPU {} stopped; handed back {} instance(s), {} packet(s) on the way\n",
            self.cpu,
            report.released,
            report.packets
        );
        Ok(())
    }
}

/// The KBP kthread.
extern "C" fn kbp_thread(data: *mut c_void) -> c_int {
    // SAFETY: `data` is a `Worker`, freed only after `Worker::stop` returned.
    let w = unsafe { &*(data as *const Worker) };
    match w.serve() {
        Ok(()) => 0,
        Err(e) => {
            pr_err!("thread on CPU {} could not start ({:?})\n", w.cpu, e);
            // Wait for kthread_stop, as a kthread must not return early and leave
            // its task to be reaped under the module (kthread_stop_put handles both).
            while !sys::should_stop() {
                // SAFETY: this is the worker's kthread, in process context, holding no
                // lock; the condition does not sleep.
                unsafe { sys::sleep_unless(&|| true, None) };
            }
            e.to_errno()
        }
    }
}
