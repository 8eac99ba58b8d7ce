//! Exponential backoff with jitter and an attempt limit, for restarts and reconnects.
//!
//! Given the policy from the configuration it answers "how long before attempt n", or
//! "give up". The caller supplies the random sample so tests are deterministic; it never
//! sleeps itself.

use std::time::Duration;

use crate::config::ReconnectPolicy;

#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: ReconnectPolicy) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure and returns the delay before the next attempt, or `None` when the
    /// attempt limit is reached. `sample` is uniform in `[0, 1)`.
    pub fn next_delay(&mut self, sample: f64) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if let Some(max) = self.policy.max_attempts {
            if self.failures > max {
                return None;
            }
        }
        let exp = self.failures.saturating_sub(1).min(64) as i32;
        let base = self.policy.initial_delay.as_secs_f64() * self.policy.multiplier.powi(exp);
        let capped = base.min(self.policy.max_delay.as_secs_f64());
        let jitter = self.policy.jitter.clamp(0.0, 1.0);
        // Spread evenly over [capped·(1−j), capped·(1+j)], never past max_delay·(1+j).
        let factor = 1.0 + jitter * (2.0 * sample.clamp(0.0, 1.0) - 1.0);
        Some(Duration::from_secs_f64((capped * factor).max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: Option<u32>, jitter: f64) -> ReconnectPolicy {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            multiplier: 2.0,
            max_attempts,
            jitter,
        }
    }

    #[test]
    fn grows_caps_and_gives_up() {
        let mut b = Backoff::new(policy(Some(6), 0.0));
        let delays: Vec<u128> = std::iter::from_fn(|| b.next_delay(0.5))
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(0.5), Some(Duration::from_millis(100)));
    }

    #[test]
    fn jitter_stays_in_band() {
        let mut b = Backoff::new(policy(None, 0.1));
        let lo = b.next_delay(0.0).unwrap();
        b.reset();
        let hi = b.next_delay(0.999_999).unwrap();
        assert_eq!(lo.as_millis(), 90);
        assert!((109..=110).contains(&hi.as_millis()));
        for _ in 0..1000 {
            assert!(b.next_delay(0.7).is_some(), "no limit means forever");
        }
    }
}
