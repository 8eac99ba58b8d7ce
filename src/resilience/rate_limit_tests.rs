use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn bucket(rate: f64, burst: u32) -> RateLimiter {
    RateLimiter::new(RateLimit {
        requests_per_second: rate,
        burst,
        window: None,
    })
}

fn window(rate: f64, window: Duration) -> RateLimiter {
    RateLimiter::new(RateLimit {
        requests_per_second: rate,
        burst: 0,
        window: Some(window),
    })
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn a_burst_goes_now_and_the_rest_queue_at_the_rate() {
    let mut l = bucket(20.0, 5);
    let t0 = Instant::now();
    let ready: Vec<Duration> = (0..40)
        .map(|_| {
            l.reserve(t0, Duration::from_secs(10))
                .expect("within max wait")
                - t0
        })
        .collect();
    assert!(ready[..5].iter().all(|d| d.is_zero()));
    for (i, d) in ready.iter().enumerate().skip(5) {
        assert_eq!(*d, MS * 50 * (i as u32 - 4), "request {i}");
    }
    assert_eq!(ready[39], Duration::from_millis(1750));
}

#[test]
fn an_idle_bucket_refills_only_to_its_burst() {
    let mut l = bucket(20.0, 5);
    let t0 = Instant::now();
    for _ in 0..5 {
        assert_eq!(l.reserve(t0, Duration::ZERO), Ok(t0));
    }
    let t1 = t0 + Duration::from_secs(60);
    for _ in 0..5 {
        assert_eq!(l.reserve(t1, Duration::ZERO), Ok(t1));
    }
    assert_eq!(l.peek(t1), MS * 50);
}

#[test]
fn a_rejection_commits_nothing_and_says_when_to_retry() {
    let mut l = bucket(10.0, 1);
    let t0 = Instant::now();
    assert_eq!(l.reserve(t0, Duration::ZERO), Ok(t0));
    // The next token is 100 ms away; waiting 30 ms is not enough.
    assert_eq!(
        l.reserve(t0, MS * 30),
        Err(Rejected {
            retry_after: MS * 70
        })
    );
    assert_eq!(l.peek(t0), MS * 100, "the refusal took nothing");
    let t1 = t0 + MS * 70;
    assert_eq!(l.reserve(t1, MS * 30), Ok(t0 + MS * 100));
}

#[test]
fn two_limiters_are_checked_before_either_is_consumed() {
    let t0 = Instant::now();
    let mut global = bucket(100.0, 10);
    let mut server = bucket(10.0, 1);
    assert_eq!(
        reserve_all(&mut [&mut global, &mut server], t0, Duration::ZERO),
        Ok(t0)
    );
    // The server limiter refuses: the global one must keep its tokens.
    let before = global.peek(t0);
    let refused = reserve_all(&mut [&mut global, &mut server], t0, MS * 10);
    assert_eq!(
        refused,
        Err((
            1,
            Rejected {
                retry_after: MS * 90
            }
        ))
    );
    assert_eq!(global.peek(t0), before);
    // Waiting is allowed: both commit at the later go-time.
    assert_eq!(
        reserve_all(&mut [&mut global, &mut server], t0, Duration::from_secs(1)),
        Ok(t0 + MS * 100)
    );
    assert_eq!(server.peek(t0), MS * 200);
}

#[test]
fn a_commit_later_than_needed_is_accounted_when_it_goes() {
    // Burst 1 at 1/s: a request held back to t0+100ms by another limiter must push the
    // next one to t0+1.1s, not t0+1s.
    let t0 = Instant::now();
    let mut l = bucket(1.0, 1);
    l.commit(t0, t0 + MS * 100);
    assert_eq!(l.peek(t0 + Duration::from_secs(1)), MS * 100);
    // And a commit asking for earlier than allowed is moved to the allowed time.
    l.commit(t0, t0);
    assert_eq!(l.peek(t0), MS * 2100);
    // Same in window mode, where an early go-time would break the window's order.
    let mut w = window(1.0, Duration::from_secs(1));
    w.commit(t0, t0);
    w.commit(t0, t0);
    assert_eq!(w.peek(t0), Duration::from_secs(2));
}

#[test]
fn describe_says_what_the_original_said() {
    assert_eq!(
        bucket(10.0, 20).describe(),
        "rate limit exceeded (10.0 requests/sec, burst 20)"
    );
    assert_eq!(
        bucket(2.25, 1).describe(),
        "rate limit exceeded (2.2 requests/sec, burst 1)"
    );
    assert_eq!(
        window(10.0, Duration::from_secs(1)).describe(),
        "rate limit exceeded (10.0 requests/sec, window 1s)"
    );
    assert_eq!(
        window(10.0, MS * 1500).describe(),
        "rate limit exceeded (10.0 requests/sec, window 1500ms)"
    );
}

#[test]
fn a_window_admits_rate_times_window_then_waits_for_the_oldest() {
    let mut l = window(10.0, Duration::from_secs(1));
    let t0 = Instant::now();
    for i in 0..10 {
        let t = t0 + MS * 10 * i;
        assert_eq!(l.reserve(t, Duration::ZERO), Ok(t));
    }
    let t = t0 + MS * 500;
    assert_eq!(l.peek(t), MS * 500, "until the first is a window old");
    assert_eq!(
        l.reserve(t, Duration::from_secs(1)),
        Ok(t0 + Duration::from_secs(1))
    );
    assert_eq!(l.peek(t), MS * 510, "queued behind the second");
}

#[test]
fn a_window_always_admits_at_least_one() {
    let mut l = window(0.1, Duration::from_secs(1));
    let t0 = Instant::now();
    assert_eq!(l.reserve(t0, Duration::ZERO), Ok(t0));
    assert_eq!(l.peek(t0), Duration::from_secs(1));
}

#[test]
fn a_zero_window_is_a_token_bucket() {
    let l = window(10.0, Duration::ZERO);
    assert_eq!(
        l.describe(),
        "rate limit exceeded (10.0 requests/sec, burst 0)"
    );
}

#[test]
fn degenerate_settings_clamp_instead_of_panicking() {
    let t0 = Instant::now();
    for rate in [
        0.0,
        -5.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e-300,
        1e300,
    ] {
        for burst in [0, 1, u32::MAX] {
            let mut l = bucket(rate, burst);
            for _ in 0..3 {
                let _ = l.reserve(t0, Duration::MAX);
            }
            let _ = l.describe();
        }
        let mut w = window(rate, Duration::MAX);
        for _ in 0..3 {
            let _ = w.reserve(t0, Duration::MAX);
        }
    }
    // No usable rate reads as the slowest one, not as "unlimited".
    for rate in [0.0, -5.0, f64::NAN, f64::NEG_INFINITY] {
        let mut l = bucket(rate, 1);
        assert_eq!(l.reserve(t0, Duration::ZERO), Ok(t0));
        assert!(l.peek(t0) > Duration::from_secs(86_400), "rate {rate}");
        let mut w = window(rate, Duration::from_secs(1));
        assert_eq!(w.reserve(t0, Duration::ZERO), Ok(t0));
        assert_eq!(w.peek(t0), Duration::from_secs(1), "rate {rate}");
    }
    // Burst 0 behaves as 1: one immediate request, not none.
    let mut l = bucket(1.0, 0);
    assert_eq!(l.reserve(t0, Duration::ZERO), Ok(t0));
    assert!(l.reserve(t0, Duration::ZERO).is_err());
}

/// Arrival gaps (ms), each with the max wait (ms) the caller allows.
fn arrivals() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0u64..200, 0u64..2000), 1..200)
}

/// Drives `l` through `arrivals`, checking each answer against `peek`; returns the
/// accepted go-times.
fn drive(l: &mut RateLimiter, arrivals: &[(u64, u64)]) -> Result<Vec<Instant>, TestCaseError> {
    let t0 = Instant::now();
    let mut now = t0;
    let mut ready = Vec::new();
    for &(gap, max_wait) in arrivals {
        now += Duration::from_millis(gap);
        let max_wait = Duration::from_millis(max_wait);
        let wait = l.peek(now);
        match l.reserve(now, max_wait) {
            Ok(at) => {
                prop_assert!(wait <= max_wait);
                prop_assert_eq!(at, now + wait);
                ready.push(at);
            }
            Err(Rejected { retry_after }) => {
                prop_assert!(wait > max_wait, "rejected only past max_wait");
                prop_assert_eq!(retry_after, wait - max_wait);
                prop_assert_eq!(l.peek(now), wait, "a rejection commits nothing");
            }
        }
    }
    Ok(ready)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_bucket_never_admits_more_than_burst_plus_rate(
        rate in 0.5f64..500.0,
        burst in 1u32..30,
        arrivals in arrivals(),
    ) {
        let mut l = bucket(rate, burst);
        let ready = drive(&mut l, &arrivals)?;
        prop_assert!(ready.windows(2).all(|w| w[0] <= w[1]), "go-times are non-decreasing");
        for i in 0..ready.len() {
            for j in i..ready.len() {
                let admitted = (j - i + 1) as f64;
                let elapsed = (ready[j] - ready[i]).as_secs_f64();
                prop_assert!(
                    admitted <= f64::from(burst) + rate * elapsed + 1e-9,
                    "{} go-times within {}s at {}/s burst {}", admitted, elapsed, rate, burst
                );
            }
        }
    }

    #[test]
    fn a_window_never_holds_more_than_its_limit(
        rate in 0.5f64..100.0,
        window_ms in 1u64..3000,
        arrivals in arrivals(),
    ) {
        let w = Duration::from_millis(window_ms);
        let mut l = window(rate, w);
        let ready = drive(&mut l, &arrivals)?;
        prop_assert!(ready.windows(2).all(|p| p[0] <= p[1]), "go-times are non-decreasing");
        let limit = ((rate * w.as_secs_f64()).floor() as usize).max(1);
        for i in 0..ready.len().saturating_sub(limit) {
            prop_assert!(
                ready[i + limit] >= ready[i] + w,
                "{} go-times within one {:?} window", limit + 1, w
            );
        }
    }

    #[test]
    fn any_input_is_survived(
        rate in any::<f64>(),
        burst in any::<u32>(),
        window_ns in prop::option::of(any::<u64>()),
        steps in prop::collection::vec((any::<bool>(), 0u64..u64::MAX, any::<u64>()), 0..50),
    ) {
        let mut l = RateLimiter::new(RateLimit {
            requests_per_second: rate,
            burst,
            window: window_ns.map(Duration::from_nanos),
        });
        let t0 = Instant::now();
        for (back, offset, max_wait) in steps {
            // Callers' clocks are monotonic, but a confused one must not panic either.
            let now = if back { t0 } else { t0 + Duration::from_nanos(offset / 4) };
            let _ = l.peek(now);
            let _ = l.reserve(now, Duration::from_nanos(max_wait));
            l.commit(now, now);
        }
        let _ = l.describe();
    }
}
