//! Backoff against exact numbers: delay sequences, the cap, the multiplier, the jitter band
//! at its edges, the attempt limit at its boundary, and forever.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn policy(initial: u64, max: u64, multiplier: f64, attempts: Option<u32>, jitter: f64) -> Backoff {
    Backoff::new(ReconnectPolicy {
        initial_delay: ms(initial),
        max_delay: ms(max),
        multiplier,
        max_attempts: attempts,
        jitter,
    })
}

/// Every delay until it gives up (at most `limit`), in milliseconds, at one sample.
fn sequence(b: &mut Backoff, sample: f64, limit: usize) -> Vec<u128> {
    std::iter::from_fn(|| b.next_delay(sample))
        .take(limit)
        .map(|d| d.as_millis())
        .collect()
}

#[test]
fn the_defaults_double_from_one_second_to_the_minute_and_give_up_after_ten() {
    let mut b = Backoff::new(ReconnectPolicy::default());
    assert_eq!(
        sequence(&mut b, 0.5, 100),
        [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000, 60000]
    );
    assert_eq!(b.retries(), 10);
    assert_eq!(b.failures(), 11);
}

#[test]
fn delays_grow_by_the_multiplier_exactly() {
    let mut b = policy(50, 200, 2.0, Some(3), 0.0);
    assert_eq!(sequence(&mut b, 0.5, 10), [50, 100, 200]);
    let mut b = policy(100, 100_000, 3.0, None, 0.0);
    assert_eq!(sequence(&mut b, 0.5, 6), [100, 300, 900, 2700, 8100, 24300]);
    let mut b = policy(1000, 100_000, 1.5, None, 0.0);
    assert_eq!(sequence(&mut b, 0.5, 5), [1000, 1500, 2250, 3375, 5062]);
    // Multiplier 1: a constant delay.
    let mut b = policy(250, 60_000, 1.0, None, 0.0);
    assert_eq!(sequence(&mut b, 0.5, 4), [250, 250, 250, 250]);
}

#[test]
fn the_cap_holds_from_where_it_is_reached_and_for_a_very_long_time() {
    let mut b = policy(100, 1000, 2.0, None, 0.0);
    assert_eq!(
        sequence(&mut b, 0.5, 7),
        [100, 200, 400, 800, 1000, 1000, 1000]
    );
    // Thousands of failures: the exponent would overflow; the delay stays the cap.
    for _ in 0..5000 {
        assert_eq!(b.next_delay(0.5), Some(ms(1000)));
    }
    // Initial equal to max: the cap at once.
    let mut b = policy(700, 700, 2.0, None, 0.0);
    assert_eq!(sequence(&mut b, 0.5, 3), [700, 700, 700]);
}

#[test]
fn jitter_spreads_each_delay_by_its_fraction_at_the_samples_edges() {
    // 10 %: 1000 ms becomes 900 at sample 0, 1000 at 0.5, 1100 at 1.
    for (sample, want) in [
        (0.0, 900),
        (0.25, 950),
        (0.5, 1000),
        (0.75, 1050),
        (1.0, 1100),
    ] {
        let mut b = policy(1000, 60_000, 2.0, None, 0.1);
        assert_eq!(b.next_delay(sample), Some(ms(want)), "sample {sample}");
    }
    // The second delay (2000 ms) moves by 10 % of itself, not of the first.
    let mut b = policy(1000, 60_000, 2.0, None, 0.1);
    b.next_delay(0.5);
    assert_eq!(b.next_delay(0.0), Some(ms(1800)));
    // Jitter 1: anywhere from 0 to twice the delay.
    let mut b = policy(400, 60_000, 2.0, None, 1.0);
    assert_eq!(b.next_delay(0.0), Some(Duration::ZERO));
    b.reset();
    assert_eq!(b.next_delay(1.0), Some(ms(800)));
}

#[test]
fn jitter_never_goes_past_the_cap() {
    // At the cap, the upper half of the band is cut to max_delay.
    let mut b = policy(1000, 1000, 2.0, None, 0.5);
    assert_eq!(b.next_delay(0.0), Some(ms(500)));
    assert_eq!(b.next_delay(0.5), Some(ms(1000)));
    assert_eq!(b.next_delay(1.0), Some(ms(1000)));
    // Below the cap, only the part that would cross it is cut.
    let mut b = policy(900, 1000, 2.0, None, 0.2);
    assert_eq!(b.next_delay(1.0), Some(ms(1000)));
    b.reset();
    assert_eq!(b.next_delay(0.0), Some(ms(720)));
}

#[test]
fn samples_outside_the_unit_interval_are_clamped() {
    let mut b = policy(1000, 60_000, 2.0, None, 0.1);
    assert_eq!(b.next_delay(-3.0), Some(ms(900)));
    b.reset();
    assert_eq!(b.next_delay(7.0), Some(ms(1100)));
    b.reset();
    assert_eq!(b.next_delay(f64::NAN), Some(ms(1000)));
}

#[test]
fn max_attempts_allows_exactly_that_many_retries_then_gives_up() {
    for n in [1u32, 2, 3, 10] {
        let mut b = policy(10, 100, 2.0, Some(n), 0.1);
        for i in 0..n {
            assert!(b.next_delay(0.3).is_some(), "retry {} of {n}", i + 1);
            assert_eq!(b.retries(), i + 1);
        }
        assert_eq!(b.next_delay(0.3), None, "the failure after retry {n}");
        assert_eq!(b.retries(), n);
        // Once given up, it stays given up until a success.
        assert_eq!(b.next_delay(0.3), None);
        b.reset();
        assert_eq!(b.next_delay(0.5), Some(ms(10)), "a success starts over");
    }
    // Zero retries allowed (not reachable from the config, where 0 means forever).
    let mut b = policy(10, 100, 2.0, Some(0), 0.0);
    assert_eq!(b.next_delay(0.5), None);
}

#[test]
fn a_reset_mid_streak_starts_from_the_initial_delay_and_a_fresh_budget() {
    let mut b = policy(100, 10_000, 2.0, Some(3), 0.0);
    assert_eq!(sequence(&mut b, 0.5, 2), [100, 200]);
    b.reset();
    assert_eq!(sequence(&mut b, 0.5, 10), [100, 200, 400]);
}

#[test]
fn forever_never_gives_up() {
    // `max_attempts` 0 and -1 both arrive here as `None` (see config::validate).
    let mut b = policy(1, 5, 2.0, None, 0.1);
    for i in 0..1000 {
        let d = b.next_delay((i % 7) as f64 / 6.0);
        assert!(d.is_some_and(|d| d <= ms(5)), "retry {i}: {d:?}");
    }
    assert_eq!(b.retries(), 1000);
}

#[test]
fn a_zero_initial_delay_stays_zero_and_does_not_poison_the_arithmetic() {
    let mut b = policy(0, 1000, 2.0, None, 0.1);
    assert_eq!(b.next_delay(1.0), Some(Duration::ZERO));
    let mut b = policy(0, 1000, f64::MAX, None, 0.0);
    for _ in 0..3 {
        assert!(b.next_delay(0.5).is_some_and(|d| d <= ms(1000)));
    }
}

proptest! {
    /// Whatever the policy and the sample: within [0, max_delay], and within ±jitter of the
    /// un-jittered delay.
    #[test]
    fn every_delay_is_within_the_band_and_the_cap(
        initial in 0u64..5000,
        extra in 0u64..100_000,
        multiplier in 1.0f64..10.0,
        jitter in 0.0f64..=1.0,
        samples in proptest::collection::vec(0.0f64..=1.0, 1..40),
    ) {
        let max = initial + extra;
        let mut plain = policy(initial, max, multiplier, None, 0.0);
        let mut b = policy(initial, max, multiplier, None, jitter);
        for s in samples {
            let d = b.next_delay(s).unwrap().as_nanos() as f64;
            let base = plain.next_delay(0.5).unwrap().as_nanos() as f64;
            prop_assert!(d <= max as f64 * 1e6);
            prop_assert!(d >= base * (1.0 - jitter) - 1.0, "{d} below the band of {base}");
            prop_assert!(d <= base * (1.0 + jitter) + 1.0, "{d} above the band of {base}");
        }
    }
}
