//! The idle policy: what a poller does with an instance after a poll that left work
//! below its weight, and with itself after a round without packets.
//!
//! A policy is an [`IdlePolicy`] owned by the poller thread. Two are provided:
//!
//! | policy | keeps an instance owned (IRQ masked) | parks |
//! |---|---|---|
//! | [`Spin`] | always | never |
//! | [`Adaptive`] | for `window_ns` after the last packet any instance returned | when nothing is listed and the window has passed |
//!
//! Whatever the policy says, the poller itself releases an instance whose polls have
//! found no work for [`crate::Config::idle_release_ns`] (2 ms by default): the kernel
//! expects a holder of NAPI's SCHED to let go in bounded time (`napi_synchronize()`
//! sleeps until it does, under RTNL in `e1000e_down()`), so "always" above means
//! "while the instance has packets at least every `idle_release_ns`". A spinning
//! poller keeps spinning and takes the instance back at its next interrupt.
//!
//! [`ModePolicy`] is the one selected by [`IdleMode`] (a module parameter, a flag);
//! [`crate::Poller::new`] uses it. A custom policy (a spin window per instance, a park
//! deadline for a timer) goes to [`crate::Poller::with_policy`].

use crate::config::IdleMode;
use crate::rx::Nanos;

/// What a poller does after a round that processed no packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Idle {
    /// Keep stepping (spin).
    Stay,
    /// Park until an interrupt lists an instance, or until `deadline` (in
    /// [`crate::Platform::now`]'s time) if there is one.
    Park {
        /// When to come back without an interrupt.
        deadline: Option<Nanos>,
    },
}

/// An idle policy. Called on the poller thread only; time is passed in.
pub trait IdlePolicy {
    /// True for a policy that never parks and keeps every instance it polled: the
    /// poller then takes idle instances at attach ([`crate::RxInstance::take_idle`])
    /// and [`crate::Poller::step`] skips the round entirely while nothing is listed.
    fn spins(&self) -> bool {
        false
    }

    /// A poll of instance `id` at `now` processed `work` packets (called for every
    /// poll, before [`IdlePolicy::keep_busy`]).
    fn polled(&mut self, id: usize, work: u32, now: Nanos);

    /// Instance `id` finished a poll below its weight at `now`: keep owning it with its
    /// interrupt masked (true), or release it and re-arm its interrupt (false). True is
    /// a wish: the poller releases an instance idle for
    /// [`crate::Config::idle_release_ns`] anyway.
    fn keep_busy(&self, id: usize, now: Nanos) -> bool;

    /// A round at `now` processed no packet and nothing is listed.
    fn idle(&self, now: Nanos) -> Idle;
}

/// The paper's KBP thread: never sleep; keep every instance owned with its interrupt
/// masked and poll it continuously. The poller still releases an instance that has
/// found no work for [`crate::Config::idle_release_ns`] (it no longer keeps an idle
/// instance forever: `napi_synchronize()` would wait for it forever); its next
/// interrupt lists it again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spin;

impl IdlePolicy for Spin {
    fn spins(&self) -> bool {
        true
    }

    fn polled(&mut self, _id: usize, _work: u32, _now: Nanos) {}

    fn keep_busy(&self, _id: usize, _now: Nanos) -> bool {
        true
    }

    fn idle(&self, _now: Nanos) -> Idle {
        Idle::Stay
    }
}

/// Spin for `window_ns` after the last packet (of any instance), then release every
/// instance (re-arm its interrupt) and park until an interrupt lists one again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adaptive {
    window_ns: Nanos,
    last_work_ns: Option<Nanos>,
}

impl Adaptive {
    /// A policy with a spin window of `window_ns`, no packet seen yet.
    pub const fn new(window_ns: Nanos) -> Self {
        Adaptive {
            window_ns,
            last_work_ns: None,
        }
    }

    fn within_window(&self, now: Nanos) -> bool {
        self.last_work_ns
            .is_some_and(|last| now.saturating_sub(last) < self.window_ns)
    }
}

impl IdlePolicy for Adaptive {
    fn polled(&mut self, _id: usize, work: u32, now: Nanos) {
        if work > 0 {
            self.last_work_ns = Some(now);
        }
    }

    fn keep_busy(&self, _id: usize, now: Nanos) -> bool {
        self.within_window(now)
    }

    fn idle(&self, now: Nanos) -> Idle {
        if self.within_window(now) {
            Idle::Stay
        } else {
            Idle::Park { deadline: None }
        }
    }
}

/// The provided policy an [`IdleMode`] selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModePolicy {
    /// [`Spin`].
    Spin(Spin),
    /// [`Adaptive`].
    Adaptive(Adaptive),
}

impl From<IdleMode> for ModePolicy {
    fn from(mode: IdleMode) -> Self {
        match mode {
            IdleMode::Spin => ModePolicy::Spin(Spin),
            IdleMode::Adaptive { window_ns } => ModePolicy::Adaptive(Adaptive::new(window_ns)),
        }
    }
}

impl IdlePolicy for ModePolicy {
    #[inline]
    fn spins(&self) -> bool {
        matches!(self, ModePolicy::Spin(_))
    }

    fn polled(&mut self, id: usize, work: u32, now: Nanos) {
        match self {
            ModePolicy::Spin(p) => p.polled(id, work, now),
            ModePolicy::Adaptive(p) => p.polled(id, work, now),
        }
    }

    fn keep_busy(&self, id: usize, now: Nanos) -> bool {
        match self {
            ModePolicy::Spin(p) => p.keep_busy(id, now),
            ModePolicy::Adaptive(p) => p.keep_busy(id, now),
        }
    }

    fn idle(&self, now: Nanos) -> Idle {
        match self {
            ModePolicy::Spin(p) => p.idle(now),
            ModePolicy::Adaptive(p) => p.idle(now),
        }
    }
}
