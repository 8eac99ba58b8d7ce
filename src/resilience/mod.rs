//! Pure resilience state machines: they take `now` (and randomness) as input and return
//! decisions. No I/O, no timers, no tasks: the drivers in `upstream/` own those, which is
//! what makes these testable without sleeping.

use std::time::{Duration, Instant};

pub mod backoff;
pub mod balance;
pub mod breaker;
pub mod pool;
pub mod rate_limit;

/// `now + d`, or the furthest instant past `now` the platform can represent when that
/// overflows: a huge configured duration means "practically never", never a panic.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    let mut d = d;
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        // Halving reaches zero, which always fits, in at most 64 steps.
        d /= 2;
    }
}
