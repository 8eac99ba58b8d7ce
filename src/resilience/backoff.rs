//! Exponential backoff with jitter and an attempt limit, for restarts and reconnects.
//!
//! Given the policy from the configuration (`reconnect.*`) it answers "how long before the
//! next retry", or "give up". The n-th failure in a row waits
//! `initial_delay · multiplier^(n−1)`, capped at `max_delay`; that delay is then moved by
//! up to ±`jitter` of itself, uniformly (0.1: anywhere within ±10 %), so routers restarted
//! together do not all reconnect in the same instant, and capped at `max_delay` again:
//! every delay is within [0, max_delay]. `max_attempts: Some(n)` allows n retries in a row
//! (the failure after the n-th gives up); `None` retries forever. A success resets the
//! streak.
//!
//! The caller supplies the random sample, so tests are exact; nothing here sleeps or
//! reads a clock.

use std::time::Duration;

use crate::config::ReconnectPolicy;

#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    /// Failures in a row, the one that gave up included.
    failures: u32,
    /// Delays handed out in this streak: the retries made (or about to be made).
    retries: u32,
}

impl Backoff {
    pub fn new(policy: ReconnectPolicy) -> Self {
        Self {
            policy,
            failures: 0,
            retries: 0,
        }
    }

    pub fn policy(&self) -> &ReconnectPolicy {
        &self.policy
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Retries in this streak: how many delays [`Backoff::next_delay`] handed out since the
    /// last reset (after giving up: exactly `max_attempts`).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// A success: the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.retries = 0;
    }

    /// Records a failure and returns the delay before the next attempt, or `None` when
    /// `max_attempts` retries in a row were made already. `sample` is uniform in `[0, 1]`
    /// (0: the shortest delay the jitter allows, 0.5: the delay itself, 1: the longest).
    pub fn next_delay(&mut self, sample: f64) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if let Some(max) = self.policy.max_attempts {
            if self.retries >= max {
                return None;
            }
        }
        self.retries = self.retries.saturating_add(1);
        Some(self.delay(self.failures, sample))
    }

    /// The delay after the `failures`-th failure in a row. Computed in nanoseconds and
    /// rounded, so whole-millisecond policies give whole-millisecond delays.
    fn delay(&self, failures: u32, sample: f64) -> Duration {
        let p = &self.policy;
        let max = p.max_delay.as_nanos() as f64;
        // Past 2^63 ns (292 years) the cap has long been reached: a bounded exponent keeps
        // `powi` from overflowing into infinity for no reason.
        let exp = failures.saturating_sub(1).min(1024) as i32;
        let grown = p.initial_delay.as_nanos() as f64 * p.multiplier.powi(exp);
        // NaN (0 · ∞ from a zero initial delay and a huge multiplier) counts as the cap.
        let base = if grown.is_nan() { max } else { grown.min(max) };
        let jitter = if p.jitter.is_finite() {
            p.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let sample = if sample.is_finite() {
            sample.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let spread = base * (1.0 + jitter * (2.0 * sample - 1.0));
        // `as` saturates; the clamp keeps it within [0, max_delay] whatever the jitter did.
        Duration::from_nanos(spread.clamp(0.0, max).round() as u64)
    }
}

#[cfg(test)]
#[path = "backoff_tests.rs"]
mod tests;
