//! Poller configuration: NAPI's defaults and the limits a module parameter must respect.

use crate::rx::Nanos;

/// What the poller does when it finds no work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleMode {
    /// The paper's KBP thread: never sleep; keep every instance owned with its
    /// interrupt masked, and poll it continuously, until it has found no work for
    /// [`Config::idle_release_ns`] (then it is released and its interrupt re-armed; the
    /// thread keeps spinning and takes the instance back at its next interrupt).
    Spin,
    /// Spin for `window_ns` after the last packet, then release every instance (re-arm
    /// its interrupt) and park until an interrupt lists one again.
    Adaptive {
        /// How long to keep polling after the last packet was seen.
        window_ns: Nanos,
    },
}

/// The knobs of one poller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Most packets one poll of one instance may process (NAPI weight, 64); the default
    /// of every instance ([`crate::Poller::set_weight`] sets one instance's).
    pub weight: u32,
    /// Most packets one round may process (`netdev_budget`, 300); a round overshoots
    /// it by less than one weight (the largest instance weight, with
    /// [`crate::Poller::set_weight`]).
    pub budget: u32,
    /// Longest a round may run (`netdev_budget_usecs`, 2 ms).
    pub time_limit_ns: Nanos,
    /// What to do when there is no work.
    pub idle: IdleMode,
    /// Longest an owned instance is kept with no work, whatever the idle policy says
    /// (2 ms): once its polls have found no packet for this long (counted from its last
    /// poll that found one, or from the first poll after it was taken), it is released
    /// with its interrupt re-armed ([`crate::PollerStats::idle_releases`]), and its next
    /// interrupt lists it again. This bounds how long the poller holds SCHED on a quiet
    /// instance: the kernel's `napi_synchronize()` (`e1000e_down()`, ring resize, MTU
    /// change) sleeps until SCHED clears, under RTNL. The default is above the 1 ms
    /// packet gap of 1000 pps, so a flow's queue stays owned under traffic.
    pub idle_release_ns: Nanos,
}

/// A parameter out of its range: which one, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The parameter's name, as a module parameter would spell it.
    pub param: &'static str,
    /// The accepted range, in words.
    pub expected: &'static str,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "invalid {}: expected {}", self.param, self.expected)
    }
}

impl Config {
    /// Largest accepted weight (a poll processes at most this many packets).
    pub const MAX_WEIGHT: u32 = 4096;
    /// Largest accepted round budget.
    pub const MAX_BUDGET: u32 = 1 << 20;
    /// Longest accepted round time limit (1 s).
    pub const MAX_TIME_LIMIT_NS: Nanos = 1_000_000_000;
    /// Longest accepted adaptive spin window (10 s).
    pub const MAX_WINDOW_NS: Nanos = 10_000_000_000;
    /// Shortest accepted idle release (1 µs).
    pub const MIN_IDLE_RELEASE_NS: Nanos = 1_000;
    /// Longest accepted idle release (1 s).
    pub const MAX_IDLE_RELEASE_NS: Nanos = 1_000_000_000;

    /// NAPI's defaults: weight 64, budget 300, 2 ms; the paper's never-sleeping thread;
    /// an instance idle for 2 ms is released.
    pub const DEFAULT: Config = Config {
        weight: 64,
        budget: 300,
        time_limit_ns: 2_000_000,
        idle: IdleMode::Spin,
        idle_release_ns: 2_000_000,
    };

    /// Checks every field; the first bad one is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.weight == 0 || self.weight > Self::MAX_WEIGHT {
            return Err(ConfigError {
                param: "weight",
                expected: "1..=4096 packets",
            });
        }
        if self.budget == 0 || self.budget > Self::MAX_BUDGET {
            return Err(ConfigError {
                param: "budget",
                expected: "1..=1048576 packets",
            });
        }
        if self.time_limit_ns < 1_000 || self.time_limit_ns > Self::MAX_TIME_LIMIT_NS {
            return Err(ConfigError {
                param: "time_limit_us",
                expected: "1..=1000000 microseconds",
            });
        }
        if self.idle_release_ns < Self::MIN_IDLE_RELEASE_NS
            || self.idle_release_ns > Self::MAX_IDLE_RELEASE_NS
        {
            return Err(ConfigError {
                param: "idle_release_us",
                expected: "1..=1000000 microseconds",
            });
        }
        if let IdleMode::Adaptive { window_ns } = self.idle {
            if window_ns > Self::MAX_WINDOW_NS {
                return Err(ConfigError {
                    param: "spin_window_us",
                    expected: "0..=10000000 microseconds",
                });
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}
