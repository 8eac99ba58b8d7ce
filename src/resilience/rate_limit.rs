//! Request rate limiting by reservation: a token bucket, or a sliding window when one is
//! configured.
//!
//! A request over the rate is not refused outright: it may wait for its turn up to a
//! maximum, so the limiter answers *when* a request may go and commits that slot, and
//! later reservations queue behind it. `peek` + `commit` let a caller check several
//! limiters (global and per server) before consuming any of them. It owns no timer and
//! never sleeps: the caller waits until the returned instant. A reservation the caller
//! abandons is not refunded (the slot simply goes unused).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::later;

/// Slower than one request per ~11.6 days is treated as that: a zero, negative or NaN rate
/// must not divide by zero, and the slowest representable pace is the safe reading of it.
const MIN_RATE: f64 = 1e-6;
/// One request per nanosecond: the finest pace an `Instant` can express.
const MAX_RATE: f64 = 1e9;

/// What the configuration asks for; validated elsewhere, clamped here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub requests_per_second: f64,
    /// Token bucket capacity (ignored in window mode); 0 counts as 1.
    pub burst: u32,
    /// Sliding-window mode: at most `max(1, ⌊rate × window⌋)` requests in any window of
    /// this length. `None` or zero: token bucket.
    pub window: Option<Duration>,
}

/// The wait a reservation would need is longer than the caller is willing to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// How much later the same reservation (same `max_wait`) would be accepted, if nothing
    /// else reserves meanwhile. Always > 0.
    pub retry_after: Duration,
}

#[derive(Debug, Clone)]
pub struct RateLimiter {
    limit: RateLimit,
    mode: Mode,
}

#[derive(Debug, Clone)]
enum Mode {
    /// GCRA form of a token bucket: `tat` is when the bucket would be full again
    /// (`None`: full now). Kept as an instant rather than a float token count so that
    /// queued reservations are exact and nothing drifts.
    Bucket {
        interval: Duration,
        tolerance: Duration,
        tat: Option<Instant>,
    },
    /// The go-times of the last `limit` reservations (fewer once old ones age out).
    Window {
        window: Duration,
        limit: usize,
        admitted: VecDeque<Instant>,
    },
}

impl RateLimiter {
    /// A full bucket, or an empty window.
    pub fn new(limit: RateLimit) -> Self {
        let rate = clamp_rate(limit.requests_per_second);
        let mode = match limit.window.filter(|w| !w.is_zero()) {
            Some(window) => Mode::Window {
                window,
                // `as` saturates; the floor keeps "at most rate × window" true.
                limit: ((rate * window.as_secs_f64()).floor() as usize).max(1),
                admitted: VecDeque::new(),
            },
            None => {
                let interval = interval(rate);
                Mode::Bucket {
                    interval,
                    tolerance: interval.saturating_mul(limit.burst.max(1)),
                    tat: None,
                }
            }
        };
        Self { limit, mode }
    }

    /// The wait a reservation made at `now` would get (zero: it may go now). Commits
    /// nothing.
    pub fn peek(&self, now: Instant) -> Duration {
        match &self.mode {
            Mode::Bucket {
                interval,
                tolerance,
                tat,
            } => {
                let debt = tat.map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
                debt.saturating_add(*interval).saturating_sub(*tolerance)
            }
            Mode::Window {
                window,
                limit,
                admitted,
            } => {
                let mut ready = admitted.back().map_or(now, |&b| b.max(now));
                // Only the last `limit` go-times are kept, so a full deque's front is the
                // one the new request must stay a window behind.
                if admitted.len() >= *limit {
                    if let Some(&front) = admitted.front() {
                        ready = ready.max(later(front, *window));
                    }
                }
                ready.saturating_duration_since(now)
            }
        }
    }

    /// Commits one request that goes at `at`; `at` earlier than this limiter's own ready
    /// time (`now + peek(now)`) is moved to it, so a commit never over-admits. Pass the
    /// latest ready time of all the limiters checked, so that each accounts for when the
    /// request really goes.
    pub fn commit(&mut self, now: Instant, at: Instant) {
        let go = at.max(later(now, self.peek(now)));
        match &mut self.mode {
            Mode::Bucket { interval, tat, .. } => {
                let base = tat.map_or(go, |t| t.max(go));
                *tat = Some(later(base, *interval));
            }
            Mode::Window {
                window,
                limit,
                admitted,
            } => {
                // Go-times a window or more in the past constrain no later request.
                while admitted
                    .front()
                    .is_some_and(|&f| now.saturating_duration_since(f) >= *window)
                {
                    admitted.pop_front();
                }
                admitted.push_back(go);
                while admitted.len() > *limit {
                    admitted.pop_front();
                }
            }
        }
    }

    /// Reserves a slot for a request arriving at `now`: the instant it may go (`now` when
    /// immediate), committed so later reservations queue behind it; or `Rejected` when
    /// the wait would exceed `max_wait`, committing nothing.
    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Instant, Rejected> {
        let wait = self.peek(now);
        if wait > max_wait {
            return Err(Rejected {
                retry_after: wait - max_wait,
            });
        }
        let at = later(now, wait);
        self.commit(now, at);
        Ok(at)
    }

    /// The error text a refused request carries, as the original router worded it.
    pub fn describe(&self) -> String {
        let rate = self.limit.requests_per_second;
        match &self.mode {
            Mode::Bucket { .. } => format!(
                "rate limit exceeded ({rate:.1} requests/sec, burst {})",
                self.limit.burst
            ),
            Mode::Window { window, .. } => format!(
                "rate limit exceeded ({rate:.1} requests/sec, window {})",
                short(*window)
            ),
        }
    }
}

/// Reserves one request in every limiter or in none: the go-time is the latest any of
/// them needs, and each commits at that time. On refusal, the index of the first limiter
/// whose wait exceeds `max_wait` (its `describe()` is the error text).
pub fn reserve_all(
    limiters: &mut [&mut RateLimiter],
    now: Instant,
    max_wait: Duration,
) -> Result<Instant, (usize, Rejected)> {
    let mut wait = Duration::ZERO;
    for (i, l) in limiters.iter().enumerate() {
        let w = l.peek(now);
        if w > max_wait {
            return Err((
                i,
                Rejected {
                    retry_after: w - max_wait,
                },
            ));
        }
        wait = wait.max(w);
    }
    let at = later(now, wait);
    for l in limiters.iter_mut() {
        l.commit(now, at);
    }
    Ok(at)
}

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        MIN_RATE
    } else {
        rate.clamp(MIN_RATE, MAX_RATE)
    }
}

/// Rounded up to the next nanosecond: rounding down would let a long run of requests
/// through slightly faster than the rate.
fn interval(rate: f64) -> Duration {
    Duration::from_nanos((1e9 / rate).ceil() as u64)
}

fn short(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:?}", d)
    }
}

#[cfg(test)]
#[path = "rate_limit_tests.rs"]
mod tests;
