//! Validated resilience settings: rate limits, circuit breakers and the gateway connection
//! pool, as plain data with the documented defaults.
//!
//! Owns the shapes and the defaults only: `validate/resilience.rs` builds them from the
//! raw tree (every rule with its key path), and the state machines in `resilience/` take
//! them as they are. Where a section can be off, the field that holds it is an `Option`:
//! `None` is off.

use std::time::Duration;

use serde::Serialize;

use super::render;

/// A token bucket for requests (`local.rate_limit`: every client request;
/// `servers[].rate_limit`: the requests to one server). On with `enabled: true`, or when
/// `enabled` is not given and `requests_per_second` is (the seed's example sets only the
/// rate); `enabled: false` is off whatever else is set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimit {
    /// Tokens added per second (`requests_per_second`, alias `requests_per_sec`): a number
    /// > 0, fractions allowed (`0.5` is one request every 2 s).
    pub requests_per_second: f64,
    /// The bucket's size: requests that may go at once after a quiet spell; ≥ 1, by
    /// default the rate rounded up (at least 1).
    pub burst: u32,
    /// `window_size`: a sliding window this long instead of the token bucket: at most
    /// `requests_per_second × window` in any window; `None`: the token bucket. A bare
    /// number is seconds (the Go router's unit), else a Go duration; never 0.
    #[serde(
        rename = "window_size",
        serialize_with = "render::duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub window: Option<Duration>,
    /// `max_wait_ms`: how long a request may wait for a token before it is refused with
    /// `rate limit exceeded`; 0 refuses at once. Default 30 s.
    #[serde(rename = "max_wait_ms", serialize_with = "render::millis")]
    pub max_wait: Duration,
}

impl RateLimit {
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_millis(30_000);

    /// The burst when none is given: the rate rounded up, at least 1.
    pub fn default_burst(requests_per_second: f64) -> u32 {
        // `as` saturates: a rate beyond u32::MAX gives u32::MAX.
        (requests_per_second.ceil() as u32).max(1)
    }
}

/// A circuit breaker: `servers[].circuit_breaker` (one for that server) and
/// `gateway_pool.circuit_breaker` (one per gateway endpoint). Off unless `enabled: true`
/// (for the gateway also `MCP_CIRCUIT_BREAKER_ENABLED`). A value a section does not give
/// comes from `advanced.circuit_breaker` (the Go router's router-wide breaker settings:
/// `failure_threshold`, `success_threshold`, `timeout_seconds` → `recovery_timeout`,
/// `interval_seconds` → `monitoring_window`), else from the defaults here; that section
/// switches nothing on by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CircuitBreaker {
    /// Failures in a row, within `monitoring_window`, that open the circuit; ≥ 1, default 5.
    pub failure_threshold: u32,
    /// How long the circuit stays open (requests refused at once) before requests are let
    /// through on trial (half-open); > 0, default 30 s.
    #[serde(serialize_with = "render::duration")]
    pub recovery_timeout: Duration,
    /// Successes in a row while half-open that close the circuit again (one failure opens
    /// it); ≥ 1, default 3.
    pub success_threshold: u32,
    /// A request not answered within this counts as a failure; > 0, default 10 s.
    #[serde(serialize_with = "render::duration")]
    pub timeout_duration: Duration,
    /// How far back failures are counted; > 0, default 60 s.
    #[serde(serialize_with = "render::duration")]
    pub monitoring_window: Duration,
}

impl Default for CircuitBreaker {
    /// The Go router's, kept once in `resilience::breaker`.
    fn default() -> Self {
        let d = crate::resilience::breaker::BreakerConfig::default();
        Self {
            failure_threshold: d.failure_threshold,
            recovery_timeout: d.recovery_timeout,
            success_threshold: d.success_threshold,
            timeout_duration: d.timeout_duration,
            monitoring_window: d.monitoring_window,
        }
    }
}

impl From<&CircuitBreaker> for crate::resilience::breaker::BreakerConfig {
    fn from(c: &CircuitBreaker) -> Self {
        Self {
            failure_threshold: c.failure_threshold,
            recovery_timeout: c.recovery_timeout,
            success_threshold: c.success_threshold,
            timeout_duration: c.timeout_duration,
            monitoring_window: c.monitoring_window,
        }
    }
}

impl From<&PoolConfig> for crate::resilience::pool::PoolConfig {
    fn from(c: &PoolConfig) -> Self {
        Self {
            min_size: c.min_size as usize,
            max_size: c.max_size as usize,
            max_idle_time: c.max_idle_time,
            max_lifetime: c.max_lifetime,
            acquire_timeout: c.acquire_timeout,
            health_check_interval: c.health_check_interval,
        }
    }
}

/// The gateway connection pool (`gateway.connection.pool`, and each endpoint's own under
/// `…endpoints[].connection.pool`). On by default; `enabled: false` is `None`: one
/// connection per endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolConfig {
    /// Connections kept open even while idle; from 0 to `max_size`, default 2 (or
    /// `max_size` when that is smaller and `min_size` is not given).
    pub min_size: u32,
    /// Connections at most; ≥ 1, default 10.
    pub max_size: u32,
    /// An idle connection beyond `min_size` is closed after this; > 0, default 5 min.
    #[serde(rename = "max_idle_time_ms", serialize_with = "render::millis")]
    pub max_idle_time: Duration,
    /// A connection is replaced after this long whatever it does; > 0, default 30 min.
    #[serde(rename = "max_lifetime_ms", serialize_with = "render::millis")]
    pub max_lifetime: Duration,
    /// How long a request waits for a free connection; > 0, default 5 s.
    #[serde(rename = "acquire_timeout_ms", serialize_with = "render::millis")]
    pub acquire_timeout: Duration,
    /// How often idle connections are checked; > 0, default 30 s.
    #[serde(rename = "health_check_interval_ms", serialize_with = "render::millis")]
    pub health_check_interval: Duration,
}

impl Default for PoolConfig {
    /// The Go router's, kept once in `resilience::pool`.
    fn default() -> Self {
        let d = crate::resilience::pool::PoolConfig::default();
        Self {
            min_size: d.min_size as u32,
            max_size: d.max_size as u32,
            max_idle_time: d.max_idle_time,
            max_lifetime: d.max_lifetime,
            acquire_timeout: d.acquire_timeout,
            health_check_interval: d.health_check_interval,
        }
    }
}
