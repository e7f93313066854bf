//! The arithmetic of the per-packet cost stage (`cost.rs`): what a trial's busy time
//! would have been without traffic, and what is left per packet.
//!
//! Every interval the stage measures (a no-traffic one or a trial) is bracketed by the
//! same two agent commands, whose own work lands partly inside it, so the guest's
//! busy time without traffic is modelled as a fixed part plus a part proportional to
//! a regressor ([`Regressor`]): the clock's advance for a guest that idles (timers,
//! housekeeping), or kbp.ko's empty polls for a poller that spins (every instruction
//! of a spinning guest is the poller's, the timer ticks between its polls included).
//! Two no-traffic intervals of different length give both parts ([`Background::fit`]);
//! a trial's net busy time is its busy time less [`Background::of`] it, per received
//! packet ([`net_per_packet`]).

/// What the no-traffic busy time grows with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regressor {
    /// The clock's advance (a guest that idles between packets).
    Clock,
    /// kbp.ko's empty polls (a spinning poller: the guest never idles).
    EmptyPolls,
}

/// One measured interval: the clock's advance, the busy time within it, and kbp.ko's
/// empty polls (when loaded).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Clock advance, ns.
    pub clock_ns: u64,
    /// Busy time, ns.
    pub busy_ns: u64,
    /// kbp.ko's empty polls.
    pub empty_polls: Option<u64>,
}

/// The no-traffic busy time of an interval: `fixed_ns + per_unit_ns x` the regressor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Background {
    /// What grows the busy time.
    pub regressor: Regressor,
    /// The bracketing commands' share, ns.
    pub fixed_ns: f64,
    /// Busy ns per ns of clock ([`Regressor::Clock`]) or per empty poll.
    pub per_unit_ns: f64,
}

impl Regressor {
    fn of(self, i: &Interval) -> Option<f64> {
        match self {
            Regressor::Clock => Some(i.clock_ns as f64),
            Regressor::EmptyPolls => i.empty_polls.map(|e| e as f64),
        }
    }
}

impl Background {
    /// The line through a short and a long no-traffic interval; None when the
    /// regressor is missing or does not grow between them.
    pub fn fit(short: &Interval, long: &Interval, regressor: Regressor) -> Option<Background> {
        let (x0, x1) = (regressor.of(short)?, regressor.of(long)?);
        if x1 <= x0 {
            return None;
        }
        let per_unit_ns = (long.busy_ns as f64 - short.busy_ns as f64) / (x1 - x0);
        Some(Background {
            regressor,
            fixed_ns: short.busy_ns as f64 - per_unit_ns * x0,
            per_unit_ns,
        })
    }

    /// The busy time `i` would have had without traffic.
    pub fn of(&self, i: &Interval) -> Option<f64> {
        Some(self.fixed_ns + self.per_unit_ns * self.regressor.of(i)?)
    }
}

/// `(busy - background) / received`, ns; None without echoes or a regressor.
pub fn net_per_packet(trial: &Interval, background: &Background, received: u64) -> Option<f64> {
    if received == 0 {
        return None;
    }
    Some((trial.busy_ns as f64 - background.of(trial)?) / received as f64)
}

/// How far off a [`Regressor::EmptyPolls`] figure can be, ns per packet: kbp.ko
/// publishes its counters every `lag_polls` polls or so (at most), so each reading of
/// the empty polls may be short by up to that many; a trial has two readings, and
/// the fit's slope was taken from two more over `calibration_polls`, and it is
/// applied to the trial's `trial_polls`.
pub fn empty_poll_resolution(
    background: &Background,
    lag_polls: f64,
    calibration_polls: f64,
    trial_polls: f64,
    received: u64,
) -> Option<f64> {
    if received == 0 || calibration_polls <= 0.0 {
        return None;
    }
    let trial = 2.0 * lag_polls * background.per_unit_ns;
    let slope = 2.0 * lag_polls / calibration_polls * background.per_unit_ns * trial_polls;
    Some((trial + slope) / received as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(clock_ns: u64, busy_ns: u64, empty_polls: Option<u64>) -> Interval {
        Interval {
            clock_ns,
            busy_ns,
            empty_polls,
        }
    }

    #[test]
    fn an_idling_guest_s_background_is_fixed_plus_a_rate() {
        // 3 ms of bracketing commands, then 0.4 ms per s.
        let short = at(3_000_000, 3_000_000, None);
        let long = at(5_003_000_000, 5_000_000, None);
        let bg = Background::fit(&short, &long, Regressor::Clock).expect("fit");
        assert!((bg.per_unit_ns - 0.0004).abs() < 1e-12, "{bg:?}");
        assert!((bg.fixed_ns - 2_998_800.0).abs() < 1e-3, "{bg:?}");
        // A 5 s trial with 1000 echoes and 60 ms busy: (60 - 5) ms / 1000.
        let trial = at(5_003_000_000, 60_000_000, None);
        let net = net_per_packet(&trial, &bg, 1000).expect("net");
        assert!((net - 55_000.0).abs() < 1e-6, "{net}");
        assert_eq!(net_per_packet(&trial, &bg, 0), None);
    }

    #[test]
    fn a_spinning_poller_s_background_is_its_empty_polls() {
        // 2000 ns per empty poll, 0.1 ms of commands.
        let short = at(100_000, 100_000, Some(0));
        let long = at(2_000_100_000, 2_000_100_000, Some(1_000_000));
        let bg = Background::fit(&short, &long, Regressor::EmptyPolls).expect("fit");
        assert!((bg.per_unit_ns - 2000.0).abs() < 1e-9);
        // A trial: 2 s of 999,000 empty polls plus 1000 packets of 50 us.
        let trial = at(2_050_100_000, 2_050_100_000, Some(1_000_000));
        let net = net_per_packet(&trial, &bg, 1000).expect("net");
        assert!((net - 50_000.0).abs() < 1e-6, "{net}");
        // Without a count there is no figure.
        assert_eq!(net_per_packet(&at(1, 1, None), &bg, 10), None);
        // Lag of 512 polls per reading: 2 x 512 x 2000 ns over 1000 packets for the
        // trial, plus the slope's 2 x 512 / 1e6 relative error over 1e6 polls.
        let r = empty_poll_resolution(&bg, 512.0, 1e6, 1e6, 1000).expect("resolution");
        assert!((r - (2048.0 + 2048.0)).abs() < 1e-6, "{r}");
    }

    #[test]
    fn no_fit_without_growth_or_a_count() {
        let a = at(5, 5, None);
        assert_eq!(Background::fit(&a, &a, Regressor::Clock), None);
        assert_eq!(
            Background::fit(&a, &at(9, 9, None), Regressor::EmptyPolls),
            None
        );
    }
}
