use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const S: Duration = Duration::from_secs(1);

/// A ready, healthy, idle connection opened and last used at `t`.
fn conn(id: u64, t: Instant) -> ConnView {
    ConnView {
        id,
        opened_at: t,
        last_used: t,
        in_flight: 0,
        healthy: true,
        ready: true,
    }
}

fn busy(mut v: ConnView, n: usize) -> ConnView {
    v.in_flight = n;
    v
}

fn pool() -> Pool {
    Pool::new(PoolConfig::default())
}

#[test]
fn defaults_are_the_go_routers() {
    let c = PoolConfig::default();
    assert_eq!((c.min_size, c.max_size), (2, 10));
    assert_eq!(
        [
            c.max_idle_time,
            c.max_lifetime,
            c.acquire_timeout,
            c.health_check_interval
        ],
        [S * 300, S * 1800, S * 5, S * 30]
    );
    let t = Instant::now();
    assert_eq!(pool().acquire_deadline(t), t + S * 5);
}

#[test]
fn it_opens_up_to_min_size_counting_those_being_opened() {
    let t = Instant::now();
    let mut p = pool();
    assert_eq!(p.decide(&[], 0, 0, t).open, 2);
    assert_eq!(p.decide(&[], 1, 0, t).open, 1);
    assert_eq!(p.decide(&[conn(1, t)], 1, 0, t).open, 0);
}

#[test]
fn waiting_requests_open_more_only_when_every_ready_one_is_busy() {
    let t = Instant::now();
    let mut p = pool();
    let two_busy = [busy(conn(1, t), 1), busy(conn(2, t), 3)];
    assert_eq!(p.decide(&two_busy, 0, 3, t).open, 3);
    assert_eq!(p.decide(&two_busy, 2, 3, t).open, 1, "two already coming");
    let mut handshaking = conn(3, t);
    handshaking.ready = false;
    let with_coming = [two_busy[0], two_busy[1], handshaking];
    assert_eq!(p.decide(&with_coming, 0, 3, t).open, 2);
    let with_free = [two_busy[0], two_busy[1], conn(4, t)];
    assert_eq!(p.decide(&with_free, 0, 3, t).open, 0);
    // Capped at max_size, counting those being opened.
    assert_eq!(p.decide(&two_busy, 5, 100, t).open, 3);
    assert_eq!(p.decide(&two_busy, 9, 100, t).open, 0);
}

#[test]
fn broken_or_old_connections_are_replaced_once_idle() {
    let t0 = Instant::now();
    let t = t0 + S * 1800;
    let mut p = pool();
    let mut broken = conn(1, t);
    broken.healthy = false;
    let old = conn(2, t0);
    let d = p.decide(&[broken, old], 0, 0, t);
    assert_eq!((d.open, d.retire), (2, vec![1, 2]));
    // Busy: kept until idle, but its replacement is opened now.
    let d = p.decide(&[busy(broken, 1), busy(old, 2), conn(3, t)], 0, 0, t);
    assert_eq!((d.open, d.retire), (1, vec![]));
}

#[test]
fn idle_connections_close_down_to_min_size_longest_unused_first() {
    let t0 = Instant::now();
    let t = t0 + S * 400;
    let mut p = pool();
    let mut conns: Vec<ConnView> = (1..=5)
        .map(|i| conn(i, t0 + Duration::from_secs(10 - i)))
        .collect();
    conns[0].last_used = t; // recently used
    let d = p.decide(&conns, 0, 0, t);
    assert_eq!(d.retire, vec![5, 4, 3]);
    assert_eq!(d.open, 0);
    // Being opened counts towards min_size: one more can go.
    assert_eq!(p.decide(&conns, 1, 0, t).retire, vec![5, 4, 3, 2]);
    // Handshaking ones are not idle.
    conns.iter_mut().for_each(|v| v.ready = false);
    assert!(p.decide(&conns, 0, 0, t).retire.is_empty());
}

#[test]
fn pick_takes_the_least_loaded_then_the_longest_unused() {
    let t0 = Instant::now();
    let p = pool();
    let mut unready = conn(1, t0);
    unready.ready = false;
    let mut broken = conn(2, t0);
    broken.healthy = false;
    let conns = [
        unready,
        broken,
        busy(conn(3, t0), 1),
        conn(5, t0 + S),
        conn(4, t0 + S),
        conn(6, t0),
    ];
    assert_eq!(p.pick(&conns, t0 + S), Some(6), "the longest unused");
    assert_eq!(p.pick(&conns[..5], t0 + S), Some(4), "then the lowest id");
    assert_eq!(p.pick(&conns[..3], t0), Some(3));
    assert_eq!(p.pick(&conns[..2], t0), None);
    // Past its lifetime: only when nothing else is there.
    let t = t0 + S * 1800;
    let fresh = busy(conn(9, t), 7);
    assert_eq!(p.pick(&[conn(3, t0), fresh], t), Some(9));
    assert_eq!(p.pick(&[conn(3, t0)], t), Some(3));
}

#[test]
fn next_check_is_the_health_interval_or_the_nearest_expiry() {
    let t0 = Instant::now();
    let mut p = pool();
    assert_eq!(p.next_check(t0), t0 + S * 30);
    let d = p.decide(&[conn(1, t0)], 0, 0, t0);
    assert!(!d.check_health, "fresh connections are not checked at once");
    assert_eq!(p.next_check(t0), t0 + S * 30);
    let t = t0 + S * 30;
    assert!(p.decide(&[conn(1, t0)], 0, 0, t).check_health);
    assert!(
        !p.decide(&[conn(1, t0)], 0, 0, t).check_health,
        "once per interval"
    );
    // Idle expiry at t0+300 s comes before the health check (t+30 s) and the lifetime.
    let t = t0 + S * 290;
    p.decide(&[conn(1, t0), conn(2, t0 + S * 200)], 0, 0, t);
    assert_eq!(p.next_check(t), t0 + S * 300);
    // Idle past max_idle_time but kept for min_size: no expiry to wake up for.
    let mut p = pool();
    let t = t0 + S * 400;
    assert!(p
        .decide(&[conn(1, t0), conn(2, t0)], 0, 0, t)
        .retire
        .is_empty());
    assert_eq!(p.next_check(t), t + S * 30);
    // The next check never lies in the past.
    assert_eq!(p.next_check(t0 + S * 1000), t0 + S * 1000);
}

#[test]
fn degenerate_configs_clamp() {
    let t = Instant::now();
    let mut p = Pool::new(PoolConfig {
        min_size: 50,
        max_size: 0,
        max_idle_time: Duration::ZERO,
        max_lifetime: Duration::MAX,
        acquire_timeout: Duration::MAX,
        health_check_interval: Duration::ZERO,
    });
    assert_eq!((p.config().min_size, p.config().max_size), (1, 1));
    assert_eq!(p.decide(&[], 0, 9, t).open, 1);
    assert!(p.next_check(t) >= t + Duration::from_millis(100));
    let _ = p.acquire_deadline(t);
}

/// (id, opened, last used (s after the start), in flight, healthy, ready).
type Shape = (u64, u64, u64, usize, bool, bool);

fn shape() -> impl Strategy<Value = Shape> {
    (
        0u64..8,
        0u64..4000,
        0u64..4000,
        0usize..3,
        any::<bool>(),
        any::<bool>(),
    )
}

fn view(t0: Instant, (id, opened, used, in_flight, healthy, ready): Shape) -> ConnView {
    ConnView {
        id,
        opened_at: t0 + Duration::from_secs(opened.min(used)),
        last_used: t0 + Duration::from_secs(used.max(opened)),
        in_flight,
        healthy,
        ready,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn decisions_respect_busy_connections_and_the_size_bounds(
        min_size in 0usize..5,
        max_size in 0usize..8,
        idle_s in 0u64..600,
        life_s in 0u64..4000,
        shapes in prop::collection::vec(shape(), 0..10),
        opening in 0usize..4,
        waiting in 0usize..6,
        at_s in 0u64..5000,
    ) {
        let t0 = Instant::now();
        let mut conns: Vec<ConnView> = shapes.into_iter().map(|s| view(t0, s)).collect();
        // Unique ids, as the driver's are.
        conns.sort_by_key(|v| v.id);
        conns.dedup_by_key(|v| v.id);
        let now = t0 + Duration::from_secs(4000 + at_s);
        let mut p = Pool::new(PoolConfig {
            min_size,
            max_size,
            max_idle_time: Duration::from_secs(idle_s),
            max_lifetime: Duration::from_secs(life_s),
            ..PoolConfig::default()
        });
        let (min, max) = (p.config().min_size, p.config().max_size);
        let d = p.decide(&conns, opening, waiting, now);
        for id in &d.retire {
            let v = conns.iter().find(|v| v.id == *id);
            prop_assert!(v.is_some_and(|v| v.in_flight == 0), "retired {} busy or unknown", id);
        }
        let live = conns.len() - d.retire.len();
        if d.open > 0 {
            prop_assert!(live + opening + d.open <= max, "over max_size");
        }
        prop_assert!(live + opening + d.open >= min, "under min_size");
        prop_assert!(p.next_check(now) >= now);
        if let Some(id) = p.pick(&conns, now) {
            let v = conns.iter().find(|v| v.id == id);
            prop_assert!(v.is_some_and(|v| v.ready && v.healthy));
        } else {
            prop_assert!(!conns.iter().any(|v| v.ready && v.healthy));
        }
    }
}
