//! The resilience sections, raw → validated: rate limits (`local.rate_limit`,
//! `servers[].rate_limit`), circuit breakers (`servers[].circuit_breaker`,
//! `gateway_pool.circuit_breaker`, with `advanced.circuit_breaker` as the values they
//! share) and the gateway connection pool (`…connection.pool`). Also the whole-number and
//! non-zero-duration rules the other pool sections use.
//!
//! Every value given is checked, also in a section that is off: a mistake is reported
//! before the day the section is switched on.

use std::time::Duration;

use super::{ms, Problems};
use crate::config::raw::{RawAdvancedBreaker, RawBreaker, RawPool, RawRateLimit};
use crate::config::{CircuitBreaker, PoolConfig, RateLimit};

/// A whole number from `min` to `u32::MAX`; `default` when not given, or after reporting
/// one that is not allowed.
pub fn count(v: Option<i64>, default: u32, min: u32, at: &str, p: &mut Problems) -> u32 {
    let Some(n) = v else {
        return default;
    };
    if n > i64::from(u32::MAX) {
        p.err(at, format!("{n} is too large (at most {})", u32::MAX));
        return default;
    }
    match u32::try_from(n) {
        Ok(n) if n >= min => n,
        _ => {
            p.err(at, format!("{n} must be a whole number ≥ {min}"));
            default
        }
    }
}

/// `d`, after reporting it when it is zero; `what` says what the value is for.
pub fn nonzero(d: Duration, at: &str, what: &str, p: &mut Problems) -> Duration {
    if d.is_zero() {
        p.err(at, format!("0 is not allowed ({what})"));
    }
    d
}

/// Whether a section that is off by default is on. Settings given without `enabled`
/// would otherwise be unused without a word, so that gets a warning saying what to add.
pub fn switched_on(
    enabled: Option<bool>,
    has_settings: bool,
    at: &str,
    what: &str,
    p: &mut Problems,
) -> bool {
    if enabled.is_none() && has_settings {
        p.warnings.push(format!(
            "{at}: settings are given but enabled is not, so {what} stays off (add enabled: true to use them)"
        ));
    }
    enabled.unwrap_or(false)
}

/// `at`: `local.rate_limit` or `servers[i].rate_limit`.
pub fn rate_limit(r: Option<&RawRateLimit>, at: &str, p: &mut Problems) -> Option<RateLimit> {
    let r = r?;
    let rate = match r.requests_per_second {
        Some(rate) if rate > 0.0 && rate.is_finite() => Some(rate),
        Some(rate) => {
            p.err(
                &format!("{at}.requests_per_second"),
                format!("{rate} must be a number > 0 (requests per second; 0.5 is one every 2 s)"),
            );
            None
        }
        None => None,
    };
    let burst = r
        .burst
        .map(|_| count(r.burst, 1, 1, &format!("{at}.burst"), p));
    let window = r.window_size.map(|w| {
        nonzero(
            w.0,
            &format!("{at}.window_size"),
            "leave it out for the token bucket alone, or give a length such as 1s or 60",
            p,
        )
    });
    let max_wait = ms(r.max_wait_ms, 30_000);
    // The seed's example sets only the rate: a rate given is a limit asked for.
    if !r.enabled.unwrap_or(r.requests_per_second.is_some()) {
        return None;
    }
    if r.requests_per_second.is_none() {
        p.err(
            &format!("{at}.requests_per_second"),
            "is required when the rate limit is enabled",
        );
    }
    let rate = rate?;
    Some(RateLimit {
        requests_per_second: rate,
        burst: burst.unwrap_or_else(|| RateLimit::default_burst(rate)),
        window,
        max_wait,
    })
}

/// `at`: `servers[i].circuit_breaker` or `gateway_pool.circuit_breaker`; `shared`: the
/// values `advanced.circuit_breaker` gives (else the defaults).
pub fn breaker(
    b: Option<&RawBreaker>,
    at: &str,
    shared: &CircuitBreaker,
    p: &mut Problems,
) -> Option<CircuitBreaker> {
    let b = b?;
    let key = |k: &str| format!("{at}.{k}");
    let cb = CircuitBreaker {
        failure_threshold: count(
            b.failure_threshold,
            shared.failure_threshold,
            1,
            &key("failure_threshold"),
            p,
        ),
        recovery_timeout: nonzero(
            b.recovery_timeout.map_or(shared.recovery_timeout, |d| d.0),
            &key("recovery_timeout"),
            "how long the circuit stays open before requests are tried again",
            p,
        ),
        success_threshold: count(
            b.success_threshold,
            shared.success_threshold,
            1,
            &key("success_threshold"),
            p,
        ),
        timeout_duration: nonzero(
            b.timeout_duration.map_or(shared.timeout_duration, |d| d.0),
            &key("timeout_duration"),
            "how long a request may take before it counts as a failure",
            p,
        ),
        monitoring_window: nonzero(
            b.monitoring_window
                .map_or(shared.monitoring_window, |d| d.0),
            &key("monitoring_window"),
            "how far back failures are counted",
            p,
        ),
    };
    let has_settings = b.failure_threshold.is_some()
        || b.recovery_timeout.is_some()
        || b.success_threshold.is_some()
        || b.timeout_duration.is_some()
        || b.monitoring_window.is_some();
    switched_on(b.enabled, has_settings, at, "the circuit breaker", p).then_some(cb)
}

/// `advanced.circuit_breaker`: the values every breaker takes when its own section does
/// not give them. The Go router's names: `timeout_seconds` is how long the circuit stays
/// open (`recovery_timeout`), `interval_seconds` how far back failures count
/// (`monitoring_window`). `max_requests` and `success_ratio` are checked but have no
/// counterpart (a breaker closes after `success_threshold` successes in a row).
pub fn shared_breaker(a: Option<&RawAdvancedBreaker>, p: &mut Problems) -> CircuitBreaker {
    let d = CircuitBreaker::default();
    let Some(a) = a else {
        return d;
    };
    let at = "advanced.circuit_breaker";
    let mut seconds = |v: Option<i64>, default: Duration, key: &str| match v {
        None => default,
        Some(n) if n >= 1 => Duration::from_secs(n.unsigned_abs()),
        Some(n) => {
            p.err(
                &format!("{at}.{key}"),
                format!("{n} must be a whole number of seconds ≥ 1"),
            );
            default
        }
    };
    let recovery_timeout = seconds(a.timeout_seconds, d.recovery_timeout, "timeout_seconds");
    let monitoring_window = seconds(a.interval_seconds, d.monitoring_window, "interval_seconds");
    count(a.max_requests, 1, 1, &format!("{at}.max_requests"), p);
    if let Some(r) = a.success_ratio {
        if !(r > 0.0 && r <= 1.0) {
            p.err(
                &format!("{at}.success_ratio"),
                format!("{r} must be a fraction > 0 and ≤ 1"),
            );
        }
    }
    CircuitBreaker {
        failure_threshold: count(
            a.failure_threshold,
            d.failure_threshold,
            1,
            &format!("{at}.failure_threshold"),
            p,
        ),
        recovery_timeout,
        success_threshold: count(
            a.success_threshold,
            d.success_threshold,
            1,
            &format!("{at}.success_threshold"),
            p,
        ),
        timeout_duration: d.timeout_duration,
        monitoring_window,
    }
}

/// `at`: `gateway.connection.pool` or `…endpoints[i].connection.pool`. Not given: the
/// defaults (the pool is on unless `enabled: false`).
pub fn pool(r: Option<&RawPool>, at: &str, p: &mut Problems) -> Option<PoolConfig> {
    let d = PoolConfig::default();
    let Some(r) = r else {
        return Some(d);
    };
    let key = |k: &str| format!("{at}.{k}");
    let max_size = count(r.max_size, d.max_size, 1, &key("max_size"), p);
    let min_size = match r.min_size {
        // `max_size: 1` alone is a pool of one, not a mistake.
        None => d.min_size.min(max_size),
        Some(_) => count(r.min_size, d.min_size, 0, &key("min_size"), p),
    };
    let min_valid = r
        .min_size
        .is_some_and(|n| (0..=i64::from(u32::MAX)).contains(&n));
    if min_valid && min_size > max_size {
        p.err(
            &key("min_size"),
            format!("{min_size} is larger than max_size ({max_size})"),
        );
    }
    let mut millis = |v: Option<u64>, default: Duration, k: &str, what: &str| {
        let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        nonzero(ms(v, default), &key(k), what, p)
    };
    let cfg = PoolConfig {
        min_size,
        max_size,
        max_idle_time: millis(
            r.max_idle_time_ms,
            d.max_idle_time,
            "max_idle_time_ms",
            "how long a connection may sit idle before it is closed",
        ),
        max_lifetime: millis(
            r.max_lifetime_ms,
            d.max_lifetime,
            "max_lifetime_ms",
            "how long a connection is used before it is replaced",
        ),
        acquire_timeout: millis(
            r.acquire_timeout_ms,
            d.acquire_timeout,
            "acquire_timeout_ms",
            "how long a request waits for a free connection",
        ),
        health_check_interval: millis(
            r.health_check_interval_ms,
            d.health_check_interval,
            "health_check_interval_ms",
            "how often idle connections are checked",
        ),
    };
    r.enabled.unwrap_or(true).then_some(cfg)
}
