//! What may enter an upstream's outbox and when it may leave: the concurrency limit
//! (requests in flight per upstream; more wait in the outbox, their deadline running),
//! the rate limits (the router's and the server's: a request over the rate waits for its
//! turn, up to `max_wait` and never past its own deadline, or is refused with the
//! original's text), and the outbox bounds that go with them.
//!
//! Decisions only, under the core's lock, with the caller's `now`; the counting of
//! requests in flight is `pending`'s (every stage change and removal happens there), the
//! holding back is `Core::pull`'s, the limiters are `resilience::rate_limit`'s. No I/O.
//! Only the client's requests are limited: notifications, answers, the router's own
//! messages and the parts of a fanned-out request are not.

use std::time::{Duration, Instant};

use super::{Core, State, UpstreamId, LIVE_OUTBOX};
use crate::config::RateLimit;
use crate::resilience::rate_limit::{self, RateLimiter};
use crate::wire::{ErrorKind, RouterError};

/// How one upstream admits requests.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// Requests in flight at once, at most (`max_concurrent_requests`).
    pub max_concurrent: usize,
    /// The server's own rate limit (`servers[].rate_limit`).
    pub rate_limit: Option<RateLimit>,
}

/// One rate limiter and how long a request may wait for it.
#[derive(Debug)]
pub struct Limiter {
    limiter: RateLimiter,
    max_wait: Duration,
}

impl Limiter {
    pub fn new(config: &RateLimit) -> Self {
        Self {
            limiter: RateLimiter::new(rate_limit::RateLimit {
                requests_per_second: config.requests_per_second,
                burst: config.burst,
                window: config.window,
            }),
            max_wait: config.max_wait,
        }
    }
}

impl Core {
    /// How upstream `up` admits requests (call before traffic starts).
    pub fn set_admission(&self, up: UpstreamId, admission: Admission) {
        let mut st = self.lock();
        if let Some(u) = st.upstreams.get_mut(up.0 as usize) {
            u.max_concurrent = admission.max_concurrent.max(1);
            u.rate = admission.rate_limit.as_ref().map(Limiter::new);
        }
    }

    /// The router's own rate limit (`local.rate_limit`), over every client request.
    pub fn set_rate_limit(&self, limit: Option<&RateLimit>) {
        self.lock().rate = limit.map(Limiter::new);
    }

    /// Messages `up`'s outbox may hold before a request is refused with `queue full`: the
    /// original's `max_queued_requests` while the upstream is down or every slot is
    /// taken (requests are waiting, as in the original's queue), else room for a writer
    /// that is merely behind.
    pub(super) fn outbox_limit(&self, st: &State, up: UpstreamId) -> usize {
        let u = &st.upstreams[up.0 as usize];
        let saturated = st.pending.sent(up) >= u.max_concurrent;
        if u.is_up() && !saturated {
            self.limits.max_queued_requests.max(LIVE_OUTBOX)
        } else {
            self.limits.max_queued_requests
        }
    }

    /// A turn for `requests` client requests to `up` arriving at `now`: `Ok(None)` to go
    /// at once, `Ok(Some(at))` to wait in the outbox until then, `Err` the refusal (one
    /// error for every request, the limiter's own words) when the wait would be longer
    /// than its `max_wait` or the request's deadline. Every limiter commits or none does.
    pub(super) fn rate_turn(
        &self,
        st: &mut State,
        up: UpstreamId,
        requests: usize,
        now: Instant,
    ) -> Result<Option<Instant>, RouterError> {
        let State {
            rate, upstreams, ..
        } = st;
        let u = &mut upstreams[up.0 as usize];
        let mut limiters: smallvec::SmallVec<[&mut Limiter; 2]> = smallvec::SmallVec::new();
        limiters.extend(rate.as_mut());
        limiters.extend(u.rate.as_mut());
        if limiters.is_empty() {
            return Ok(None);
        }
        let max_wait = limiters
            .iter()
            .map(|l| l.max_wait)
            .fold(self.limits.request_timeout, Duration::min);
        let mut at = now;
        for _ in 0..requests.max(1) {
            let mut each: smallvec::SmallVec<[&mut RateLimiter; 2]> =
                limiters.iter_mut().map(|l| &mut l.limiter).collect();
            let turn = rate_limit::reserve_all(&mut each, now, max_wait);
            drop(each);
            match turn {
                Ok(go) => at = at.max(go),
                Err((i, rejected)) => {
                    let text = limiters[i].limiter.describe();
                    tracing::warn!(upstream = %u.name, retry_after_ms = rejected.retry_after.as_millis() as u64, "{text}");
                    st.rate_limited += 1;
                    return Err(RouterError::new(ErrorKind::RateLimited, text));
                }
            }
        }
        if at <= now {
            return Ok(None);
        }
        if u.next_ready.is_none_or(|t| at < t) {
            u.next_ready = Some(at);
            self.deadline_changed.notify_one();
        }
        Ok(Some(at))
    }

    /// The earliest time a request held back for its rate-limit turn may go.
    pub(super) fn next_turn(st: &State) -> Option<Instant> {
        st.upstreams.iter().filter_map(|u| u.next_ready).min()
    }

    /// Wakes the writers whose held-back requests may go now.
    pub(super) fn turns_due(st: &mut State, now: Instant) {
        for u in &mut st.upstreams {
            if u.next_ready.is_some_and(|t| t <= now) {
                u.next_ready = u
                    .outbox
                    .iter()
                    .filter_map(|q| q.not_before)
                    .filter(|t| *t > now)
                    .min();
                u.wake();
            }
        }
    }
}
