//! kbp-core embedded over AF_XDP sockets in userspace: each socket is an instance.
//!
//! | NAPI / kbp.ko | here |
//! |---|---|
//! | the device interrupt | the socket's descriptor turning readable while we `poll(2)` it |
//! | masking the interrupt | leaving the descriptor out of the `poll(2)` set (`armed` false) |
//! | re-arming it (`rearm_irq`) | putting it back, then the re-check: packets already on the RX ring reschedule at once |
//! | `napi->poll` | taking up to the budget from the RX ring, refilling the fill ring, and the kick `need_wakeup` asks for |
//! | the kthread's sleep (`park`) | `poll(2)` on the armed sockets and an eventfd, until the deadline if any |
//! | `wake_up_process` (`Unpark`) | writing the eventfd |
//!
//! The interrupt handler runs on the poller thread itself: inside `park`, for every
//! armed socket that `poll(2)` reports readable, it disarms it and calls
//! [`Producer::schedule`], which lists the instance and clears the park word. A
//! spinning poller never parks: its loop calls [`XskPlatform::raise_ready`] after a step
//! without work instead, which does the same for every armed socket whose RX ring holds
//! descriptors (the poller lets go of a socket quiet for `Config::idle_release_ns`).

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use kbp_core::{Nanos, Platform, Producer, Reschedule, RxInstance, Shared, Unpark};

use crate::clock::monotonic_ns;
use crate::xsk::Xsk;

/// Most sockets one poller serves (kbp-core's list capacity).
pub const CAP: usize = 4;

/// What the consumer does with each packet's bytes.
pub type Sink<'a> = &'a dyn Fn(&[u8]);

/// One AF_XDP socket as a kbp-core instance.
pub struct XskQueue<'a> {
    xsk: RefCell<Xsk>,
    /// The "interrupt" is armed: `park` polls this socket.
    armed: Cell<bool>,
    sink: Sink<'a>,
}

impl<'a> XskQueue<'a> {
    /// An instance over `xsk`, its interrupt armed.
    pub fn new(xsk: Xsk, sink: Sink<'a>) -> Self {
        XskQueue {
            xsk: RefCell::new(xsk),
            armed: Cell::new(true),
            sink,
        }
    }
}

impl RxInstance for XskQueue<'_> {
    fn poll(&self, budget: u32) -> u32 {
        self.xsk.borrow_mut().receive(budget, self.sink)
    }

    fn take_idle(&self) -> bool {
        self.armed.set(false);
        true
    }

    fn rearm_irq(&self, id: usize, irq: &dyn Reschedule) {
        self.armed.set(true);
        // The re-check (virtqueue_enable_cb's): packets that came while masked.
        if self.xsk.borrow().rx_pending() > 0 {
            self.armed.set(false);
            // Attached: Queued (the poller polls it next round). A Fallback only comes
            // after a detach, which this program does not do: hand it back at once.
            if let kbp_core::ScheduleOutcome::Fallback(mut token) = irq.schedule(id) {
                while let Err(again) = irq.complete(token) {
                    token = again;
                }
                self.armed.set(true);
            }
        }
    }
}

/// The poller's wake-up: an eventfd.
pub struct EventWaker {
    fd: OwnedFd,
}

impl EventWaker {
    /// A fresh eventfd.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain eventfd(2).
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventWaker { fd })
    }

    fn drain(&self) {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into `v`; non-blocking.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

impl Unpark for EventWaker {
    fn unpark(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from `one` to our eventfd.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// The poller thread's platform: the clock, and `poll(2)` as its park.
pub struct XskPlatform<'a> {
    /// The sockets (the same slice the poller polls).
    pub queues: &'a [XskQueue<'a>],
    /// The interrupt side's handle.
    pub producer: Producer<'a, AtomicU32, EventWaker, CAP>,
    waker: &'a EventWaker,
    /// Ends a park (and the poller's loop).
    pub stop: &'a AtomicBool,
    /// `poll(2)` calls that found a socket readable.
    pub wakeups: Cell<u64>,
}

impl<'a> XskPlatform<'a> {
    /// A platform for `queues` of `shared`, woken by `waker`.
    pub fn new(
        queues: &'a [XskQueue<'a>],
        shared: &'a Shared<AtomicU32, CAP>,
        waker: &'a EventWaker,
        stop: &'a AtomicBool,
    ) -> Self {
        XskPlatform {
            queues,
            producer: Producer::new(shared, waker),
            waker,
            stop,
            wakeups: Cell::new(0),
        }
    }
}

impl XskPlatform<'_> {
    /// The interrupt without `poll(2)`: lists every armed socket whose RX ring holds
    /// descriptors (a read of the mapped ring each). For a spinning poller, which never
    /// parks, after a step without work: the poller lets go of a socket quiet for
    /// `Config::idle_release_ns` and only an interrupt lists it again.
    pub fn raise_ready(&self) {
        for (id, queue) in self.queues.iter().enumerate() {
            if queue.armed.get()
                && queue.xsk.borrow().rx_pending() > 0
                && queue.armed.replace(false)
            {
                let _ = self.producer.schedule(id);
            }
        }
    }
}

impl Platform for XskPlatform<'_> {
    type SoftirqGuard = ();

    fn mask_softirqs(&self) {}

    fn now(&self) -> Nanos {
        monotonic_ns()
    }

    fn quiescent(&self) {
        std::hint::spin_loop();
    }

    fn park(&self, still_parked: &dyn Fn() -> bool, deadline: Option<Nanos>) {
        let waker = self.waker.fd.as_raw_fd();
        while still_parked() && !self.stop.load(Ordering::Acquire) {
            let mut fds = vec![libc::pollfd {
                fd: waker,
                events: libc::POLLIN,
                revents: 0,
            }];
            let armed: Vec<usize> = (0..self.queues.len())
                .filter(|&id| self.queues[id].armed.get())
                .collect();
            fds.extend(armed.iter().map(|&id| libc::pollfd {
                fd: self.queues[id].xsk.borrow().fd(),
                events: libc::POLLIN,
                revents: 0,
            }));
            // Wake at least every 20 ms to see a stop request; sooner for a deadline.
            let timeout_ms = match deadline {
                Some(d) => (d.saturating_sub(self.now()) / 1_000_000).min(20) as i32,
                None => 20,
            };
            // SAFETY: `fds` is a valid array of `fds.len()` pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
            if n > 0 {
                if fds[0].revents != 0 {
                    self.waker.drain();
                }
                for (pfd, &id) in fds[1..].iter().zip(&armed) {
                    if pfd.revents & libc::POLLIN != 0 && self.queues[id].armed.replace(false) {
                        // The interrupt handler: list the instance (this clears the park
                        // word, so `still_parked` turns false).
                        self.wakeups.set(self.wakeups.get() + 1);
                        let _ = self.producer.schedule(id);
                    }
                }
            }
            if deadline.is_some_and(|d| self.now() >= d) {
                return;
            }
        }
    }
}
