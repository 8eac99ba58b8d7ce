use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const S: Duration = Duration::from_secs(1);

fn open_breaker(t0: Instant) -> Breaker {
    let mut b = Breaker::new(BreakerConfig::default());
    for _ in 0..5 {
        b.on_failure(t0, None);
    }
    b
}

fn probe(b: &mut Breaker, now: Instant) -> Probe {
    match b.admit(now).0 {
        Admit::Probe(p) => p,
        other => panic!("expected a probe, got {other:?}"),
    }
}

#[test]
fn defaults_are_the_go_routers() {
    let c = BreakerConfig::default();
    assert_eq!(
        (c.failure_threshold, c.success_threshold),
        (5, 3),
        "thresholds"
    );
    assert_eq!(
        (c.recovery_timeout, c.timeout_duration, c.monitoring_window),
        (S * 30, S * 10, S * 60)
    );
}

#[test]
fn failures_within_the_window_open_it() {
    let t0 = Instant::now();
    let mut b = Breaker::new(BreakerConfig::default());
    for i in 0..4 {
        assert_eq!(b.on_failure(t0 + S * i, None), None);
        assert_eq!(b.admit(t0 + S * i), (Admit::Yes, None));
    }
    let t = t0 + S * 4;
    let until = t + S * 30;
    assert_eq!(
        b.on_failure(t, None),
        Some(Transition {
            from: State::Closed,
            to: State::Open { until }
        })
    );
    assert_eq!(b.state().as_gauge(), 1);
    assert_eq!(b.admit(t), (Admit::Rejected { retry_at: until }, None));
}

#[test]
fn failures_older_than_the_window_are_forgotten() {
    let t0 = Instant::now();
    let mut b = Breaker::new(BreakerConfig::default());
    for i in 0..20 {
        // One every 15 s: never five within 60 s.
        assert_eq!(b.on_failure(t0 + S * 15 * i, None), None, "failure {i}");
    }
    assert_eq!(b.state(), State::Closed);
    // Successes do not wipe the count: four recent failures plus one more still open it.
    b.on_success(t0 + S * 290, None);
    assert!(b.on_failure(t0 + S * 290, None).is_some());
}

#[test]
fn it_half_opens_after_recovery_and_closes_after_enough_probes() {
    let t0 = Instant::now();
    let mut b = open_breaker(t0);
    let t = t0 + S * 30;
    let (first, transition) = b.admit(t);
    assert_eq!(
        transition,
        Some(Transition {
            from: State::Open { until: t },
            to: State::HalfOpen
        })
    );
    assert_eq!(b.state().as_gauge(), 2);
    let p1 = first.probe().expect("a probe");
    let p2 = probe(&mut b, t);
    let p3 = probe(&mut b, t);
    assert_eq!(
        b.admit(t),
        (
            Admit::Rejected {
                retry_at: t + S * 10
            },
            None
        ),
        "only success_threshold probes in flight"
    );
    assert_eq!(b.on_success(t, Some(p1)), None);
    // A finished probe frees its slot.
    let p4 = probe(&mut b, t);
    assert_eq!(b.on_success(t, Some(p2)), None);
    assert_eq!(
        b.on_success(t, Some(p3)),
        Some(Transition {
            from: State::HalfOpen,
            to: State::Closed
        })
    );
    assert_eq!(b.state().as_gauge(), 0);
    // The straggling probe's failure is now an ordinary closed-state failure.
    assert_eq!(b.on_failure(t, Some(p4)), None);
    assert_eq!(b.admit(t), (Admit::Yes, None));
}

#[test]
fn a_failed_probe_reopens_for_a_new_recovery_wait() {
    let t0 = Instant::now();
    let mut b = open_breaker(t0);
    let t = t0 + S * 31;
    let p = probe(&mut b, t);
    let stale = probe(&mut b, t);
    let again = t + S * 2;
    assert_eq!(
        b.on_failure(again, Some(p)),
        Some(Transition {
            from: State::HalfOpen,
            to: State::Open {
                until: again + S * 30
            }
        })
    );
    assert_eq!(
        b.admit(again + S * 29).0,
        Admit::Rejected {
            retry_at: again + S * 30
        }
    );
    // Next period: the last one's probe neither fails nor frees anything.
    let fresh = probe(&mut b, again + S * 30);
    assert_eq!(b.on_failure(again + S * 30, Some(stale)), None);
    b.cancel(stale);
    assert_eq!(b.state(), State::HalfOpen);
    probe(&mut b, again + S * 30);
    probe(&mut b, again + S * 30);
    assert!(matches!(b.admit(again + S * 30).0, Admit::Rejected { .. }));
    b.cancel(fresh);
    probe(&mut b, again + S * 30);
}

#[test]
fn outcomes_while_open_or_of_ordinary_requests_in_half_open_count_for_nothing() {
    let t0 = Instant::now();
    let mut b = open_breaker(t0);
    assert_eq!(b.on_success(t0, None), None);
    assert_eq!(b.on_failure(t0 + S, None), None);
    assert_eq!(b.state(), State::Open { until: t0 + S * 30 });
    probe(&mut b, t0 + S * 30);
    assert_eq!(b.on_failure(t0 + S * 30, None), None);
    assert_eq!(b.on_success(t0 + S * 30, None), None);
    assert_eq!(b.state(), State::HalfOpen);
}

#[test]
fn zero_thresholds_count_as_one_and_huge_timeouts_do_not_overflow() {
    let t0 = Instant::now();
    let mut b = Breaker::new(BreakerConfig {
        failure_threshold: 0,
        success_threshold: 0,
        recovery_timeout: Duration::MAX,
        timeout_duration: Duration::MAX,
        monitoring_window: Duration::ZERO,
    });
    assert!(b.on_failure(t0, None).is_some(), "one failure opens it");
    assert!(matches!(b.admit(t0 + S * 1000).0, Admit::Rejected { .. }));
    // With success_threshold 0 a half-open breaker must still let one probe through.
    let mut b = Breaker::new(BreakerConfig {
        failure_threshold: 0,
        success_threshold: 0,
        recovery_timeout: Duration::ZERO,
        ..BreakerConfig::default()
    });
    b.on_failure(t0, None);
    let p = probe(&mut b, t0);
    assert!(matches!(b.admit(t0).0, Admit::Rejected { .. }));
    assert!(b.on_success(t0, Some(p)).is_some(), "one success closes it");
    assert_eq!(State::Closed.name(), "closed");
    assert_eq!(State::HalfOpen.name(), "half-open");
}

#[derive(Debug, Clone)]
enum Op {
    Admit,
    Success(usize),
    Failure(usize),
    Cancel(usize),
}

fn op() -> impl Strategy<Value = (u64, Op)> {
    let op = prop_oneof![
        3 => Just(Op::Admit),
        2 => any::<usize>().prop_map(Op::Success),
        2 => any::<usize>().prop_map(Op::Failure),
        1 => any::<usize>().prop_map(Op::Cancel),
    ];
    (0u64..20_000, op)
}

fn allowed(t: &Transition) -> bool {
    matches!(
        (t.from, t.to),
        (State::Closed, State::Open { .. })
            | (State::Open { .. }, State::HalfOpen)
            | (State::HalfOpen, State::Open { .. })
            | (State::HalfOpen, State::Closed)
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random admissions and outcomes (of the admitted requests, ordinary or probe,
    /// current or stale) against a model of the diagram.
    #[test]
    fn random_events_follow_the_diagram(
        failure_threshold in 0u32..6,
        success_threshold in 0u32..4,
        recovery_ms in 0u64..5000,
        window_ms in 0u64..20_000,
        ops in prop::collection::vec(op(), 0..300),
    ) {
        let config = BreakerConfig {
            failure_threshold,
            success_threshold,
            recovery_timeout: Duration::from_millis(recovery_ms),
            timeout_duration: Duration::from_secs(10),
            monitoring_window: Duration::from_millis(window_ms),
        };
        let mut b = Breaker::new(config);
        let probes_max = success_threshold.max(1) as usize;
        let mut now = Instant::now();
        // Admitted requests not ended yet, with their probes; the probes of the current
        // half-open period; the closed-state failures the model remembers.
        let mut outstanding: Vec<Option<Probe>> = Vec::new();
        let mut current: Vec<Probe> = Vec::new();
        let mut failures: Vec<Instant> = Vec::new();
        for (gap, op) in ops {
            now += Duration::from_millis(gap);
            let before = b.state();
            let transition = match op {
                Op::Admit => {
                    let (admit, transition) = b.admit(now);
                    if let State::Open { until } = before {
                        if now < until {
                            prop_assert_eq!(admit, Admit::Rejected { retry_at: until });
                        }
                    }
                    if transition.is_some() {
                        current.clear();
                    }
                    match admit {
                        Admit::Yes => prop_assert_eq!(b.state(), State::Closed),
                        Admit::Probe(p) => {
                            prop_assert_eq!(b.state(), State::HalfOpen);
                            current.push(p);
                            prop_assert!(current.len() <= probes_max, "too many probes");
                        }
                        Admit::Rejected { .. } => {}
                    }
                    if !matches!(admit, Admit::Rejected { .. }) {
                        outstanding.push(admit.probe());
                    }
                    transition
                }
                Op::Success(_) | Op::Failure(_) | Op::Cancel(_) if outstanding.is_empty() => None,
                Op::Success(i) | Op::Failure(i) | Op::Cancel(i) => {
                    let p = outstanding.swap_remove(i % outstanding.len());
                    let was_current = p.is_some_and(|p| current.contains(&p));
                    current.retain(|c| Some(*c) != p);
                    match op {
                        Op::Success(_) => b.on_success(now, p),
                        Op::Failure(_) => {
                            if before == State::Closed {
                                failures.retain(|&f| now - f < config.monitoring_window);
                                failures.push(now);
                            }
                            let t = b.on_failure(now, p);
                            if before == State::HalfOpen && was_current {
                                prop_assert!(
                                    matches!(b.state(), State::Open { .. }),
                                    "a failed probe reopens it"
                                );
                            }
                            t
                        }
                        _ => {
                            if let Some(p) = p {
                                b.cancel(p);
                            }
                            None
                        }
                    }
                }
            };
            match transition {
                Some(t) => {
                    prop_assert!(allowed(&t), "{:?}", t);
                    prop_assert_eq!(t.from, before);
                    prop_assert_eq!(t.to, b.state());
                    if let State::Open { until } = t.from {
                        prop_assert!(now >= until, "half-opened early");
                    }
                    if t.from == State::Closed {
                        prop_assert!(failures.len() >= failure_threshold.max(1) as usize);
                    }
                    if t.from == State::HalfOpen {
                        current.clear();
                    }
                    if t.from == State::Closed || t.to == State::Closed {
                        failures.clear();
                    }
                }
                None => {
                    prop_assert_eq!(b.state(), before);
                    if before == State::Closed {
                        prop_assert!(failures.len() < failure_threshold.max(1) as usize);
                    }
                }
            }
        }
    }
}
