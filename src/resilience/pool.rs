//! Connection pool sizing for one upstream: how many connections to open, which to
//! retire, which to hand a request, and when to look again.
//!
//! It decides from a snapshot the driver passes in (the connections with their state,
//! how many are being opened, how many requests wait) and remembers only its own
//! schedule (the next health check). It opens, closes and pings nothing, and never
//! retires a connection that is carrying requests: such a connection drains first, and
//! the driver calls again once it is idle.

use std::time::{Duration, Instant};

use super::later;

/// A zero health-check interval would make the driver spin.
const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(100);

/// The Go router's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Kept open even when idle; clamped to `max_size`.
    pub min_size: usize,
    /// Never more open or opening; 0 counts as 1.
    pub max_size: usize,
    /// An idle connection above `min_size` is closed after this long unused.
    pub max_idle_time: Duration,
    /// A connection is replaced once this old (and idle).
    pub max_lifetime: Duration,
    /// How long a request waits for a connection (the driver's deadline).
    pub acquire_timeout: Duration,
    pub health_check_interval: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            min_size: 2,
            max_size: 10,
            max_idle_time: Duration::from_secs(300),
            max_lifetime: Duration::from_secs(1800),
            acquire_timeout: Duration::from_secs(5),
            health_check_interval: Duration::from_secs(30),
        }
    }
}

/// One open connection as the driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnView {
    pub id: u64,
    pub opened_at: Instant,
    pub last_used: Instant,
    pub in_flight: usize,
    /// False once a health check or a transport error says it is broken.
    pub healthy: bool,
    /// False while its handshake is still running.
    pub ready: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Connections to start opening.
    pub open: usize,
    /// Connections to close (all idle).
    pub retire: Vec<u64>,
    /// The health-check interval has passed: check the connections now.
    pub check_health: bool,
}

#[derive(Debug, Clone)]
pub struct Pool {
    config: PoolConfig,
    health_due: Option<Instant>,
    /// The earliest idle or lifetime expiry seen by the last decision.
    expiry_due: Option<Instant>,
}

impl Pool {
    pub fn new(config: PoolConfig) -> Self {
        let max_size = config.max_size.max(1);
        let config = PoolConfig {
            max_size,
            min_size: config.min_size.min(max_size),
            health_check_interval: config.health_check_interval.max(MIN_HEALTH_INTERVAL),
            ..config
        };
        Self {
            config,
            health_due: None,
            expiry_due: None,
        }
    }

    /// The configuration in effect (sizes and interval clamped).
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// When a request queued at `queued_at` gives up waiting for a connection.
    pub fn acquire_deadline(&self, queued_at: Instant) -> Instant {
        later(queued_at, self.config.acquire_timeout)
    }

    /// What to do now, given every open connection, how many are being opened, and how
    /// many requests wait for a connection. Call on every change (a connection opened,
    /// lost or gone idle, a request queued) and at [`Pool::next_check`].
    pub fn decide(
        &mut self,
        conns: &[ConnView],
        opening: usize,
        waiting: usize,
        now: Instant,
    ) -> Decision {
        let c = self.config;
        let expired = |v: &ConnView| now.saturating_duration_since(v.opened_at) >= c.max_lifetime;
        let idle_for = |v: &ConnView| now.saturating_duration_since(v.last_used);

        // Broken or too old: replaced regardless of the pool's size, but only once idle.
        let mut retire: Vec<u64> = conns
            .iter()
            .filter(|v| v.in_flight == 0 && (!v.healthy || expired(v)))
            .map(|v| v.id)
            .collect();

        // Unused too long: closed only down to min_size, the longest unused first.
        let mut spare = (conns.len() - retire.len() + opening).saturating_sub(c.min_size);
        let mut stale: Vec<&ConnView> = conns
            .iter()
            .filter(|v| v.in_flight == 0 && v.ready && !retire.contains(&v.id))
            .filter(|v| idle_for(v) >= c.max_idle_time)
            .collect();
        stale.sort_by_key(|v| (v.last_used, v.id));
        for v in stale {
            if spare == 0 {
                break;
            }
            retire.push(v.id);
            spare -= 1;
        }

        let kept: Vec<&ConnView> = conns.iter().filter(|v| !retire.contains(&v.id)).collect();
        let live = kept.len();
        // Busy but broken or too old: still open (they count against max_size), but
        // on their way out, so they do not count towards min_size.
        let draining = kept.iter().filter(|v| !v.healthy || expired(v)).count();
        let need_min = c.min_size.saturating_sub(live - draining + opening);
        // More connections help waiting requests only when none is free, and only as
        // many as are not already coming (being opened, or handshaking).
        let free = kept
            .iter()
            .any(|v| v.ready && v.healthy && v.in_flight == 0);
        let coming = opening + kept.iter().filter(|v| !v.ready && v.healthy).count();
        let demand = if free {
            0
        } else {
            waiting.saturating_sub(coming)
        };
        let room = c.max_size.saturating_sub(live + opening);
        let open = need_min.max(demand).min(room);

        // Only future expiries: one already past belongs to a busy connection (retired
        // when it goes idle, which is a call of its own) or to one kept for min_size.
        self.expiry_due = kept
            .iter()
            .flat_map(|v| {
                let idle =
                    (v.in_flight == 0 && v.ready).then(|| later(v.last_used, c.max_idle_time));
                [Some(later(v.opened_at, c.max_lifetime)), idle]
            })
            .flatten()
            .filter(|&t| t > now)
            .min();

        // The first decision only starts the schedule: fresh connections need no check.
        let check_health = self.health_due.is_some_and(|due| now >= due);
        if check_health || self.health_due.is_none() {
            self.health_due = Some(later(now, c.health_check_interval));
        }

        Decision {
            open,
            retire,
            check_health,
        }
    }

    /// The connection to hand the next request: ready and healthy, least in flight, then
    /// the longest unused, then the lowest id. One past its lifetime is used only when
    /// no other is available, so that it can drain and be replaced.
    pub fn pick(&self, conns: &[ConnView], now: Instant) -> Option<u64> {
        conns
            .iter()
            .filter(|v| v.ready && v.healthy)
            .min_by_key(|v| {
                let expired =
                    now.saturating_duration_since(v.opened_at) >= self.config.max_lifetime;
                (expired, v.in_flight, v.last_used, v.id)
            })
            .map(|v| v.id)
    }

    /// When the driver should call [`Pool::decide`] again if nothing else happens: the
    /// next health check or the nearest idle or lifetime expiry, never before `now`.
    pub fn next_check(&self, now: Instant) -> Instant {
        let health = self
            .health_due
            .unwrap_or_else(|| later(now, self.config.health_check_interval));
        self.expiry_due.map_or(health, |e| e.min(health)).max(now)
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
