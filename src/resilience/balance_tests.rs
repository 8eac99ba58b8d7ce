use proptest::prelude::*;
// The prelude's `Strategy` is proptest's generator trait; ours is the balancing kind.
use proptest::strategy::Strategy as Gen;

use super::Strategy;
use super::*;

fn c(weight: u32, priority: i64, in_flight: usize, healthy: bool) -> Candidate {
    Candidate {
        weight,
        priority,
        in_flight,
        healthy,
    }
}

fn healthy(n: usize) -> Vec<Candidate> {
    vec![c(1, 0, 0, true); n]
}

fn picks(b: &mut Balancer, cands: &[Candidate], n: usize) -> Vec<Option<usize>> {
    (0..n).map(|_| b.pick(cands)).collect()
}

#[test]
fn strategies_parse_from_their_config_names() {
    for s in Strategy::ALL {
        assert_eq!(s.to_string().parse::<Strategy>(), Ok(s));
    }
    assert_eq!(Strategy::default(), Strategy::RoundRobin);
    assert_eq!(
        "random".parse::<Strategy>().map_err(|e| e.to_string()),
        Err("'random' is not one of round_robin, least_connections, weighted, priority".into())
    );
    assert!(
        "Round_Robin".parse::<Strategy>().is_err(),
        "names are exact"
    );
}

#[test]
fn round_robin_takes_turns_and_skips_the_unhealthy() {
    let mut b = Balancer::new(Strategy::RoundRobin);
    let all = healthy(3);
    assert_eq!(picks(&mut b, &all, 4), [Some(0), Some(1), Some(2), Some(0)]);
    let mut some = all.clone();
    some[2].healthy = false;
    assert_eq!(picks(&mut b, &some, 3), [Some(1), Some(0), Some(1)]);
    some[0].healthy = false;
    some[1].healthy = false;
    assert_eq!(b.pick(&some), None);
    assert_eq!(b.pick(&[]), None);
}

#[test]
fn least_connections_prefers_the_idlest_and_rotates_ties() {
    let mut b = Balancer::new(Strategy::LeastConnections);
    let cands = [
        c(1, 0, 3, true),
        c(1, 0, 1, true),
        c(1, 0, 0, false),
        c(1, 0, 1, true),
    ];
    assert_eq!(picks(&mut b, &cands, 3), [Some(1), Some(3), Some(1)]);
}

#[test]
fn weighted_interleaves_like_nginx() {
    let mut b = Balancer::new(Strategy::Weighted);
    let cands = [c(5, 0, 0, true), c(1, 0, 0, true), c(1, 0, 0, true)];
    let seq: Vec<usize> = picks(&mut b, &cands, 14).into_iter().flatten().collect();
    assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    // Mid-cycle, the set changes: a fresh cycle starts. A weight of 0 counts as 1; an
    // unhealthy one is left out of the cycle.
    picks(&mut b, &cands, 3);
    let cands = [c(0, 0, 0, true), c(2, 0, 0, true), c(9, 0, 0, false)];
    let seq: Vec<usize> = picks(&mut b, &cands, 6).into_iter().flatten().collect();
    assert_eq!(seq, [1, 0, 1, 1, 0, 1]);
}

#[test]
fn priority_uses_the_best_healthy_tier_in_turn() {
    let mut b = Balancer::new(Strategy::Priority);
    let mut cands = vec![
        c(1, 2, 0, true),
        c(1, 1, 0, true),
        c(1, 1, 0, true),
        c(1, -4, 0, false),
    ];
    assert_eq!(picks(&mut b, &cands, 3), [Some(1), Some(2), Some(1)]);
    cands[1].healthy = false;
    cands[2].healthy = false;
    assert_eq!(picks(&mut b, &cands, 2), [Some(0), Some(0)]);
    cands[3].healthy = true;
    assert_eq!(b.pick(&cands), Some(3));
}

fn candidate() -> impl Gen<Value = Candidate> {
    (0u32..6, -2i64..3, 0usize..4, any::<bool>()).prop_map(|(w, p, f, h)| c(w, p, f, h))
}

fn strategy() -> impl Gen<Value = Strategy> {
    prop::sample::select(Strategy::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn never_an_unhealthy_one(
        strategy in strategy(),
        calls in prop::collection::vec(prop::collection::vec(candidate(), 0..6), 1..50),
    ) {
        let mut b = Balancer::new(strategy);
        for cands in calls {
            match b.pick(&cands) {
                Some(i) => prop_assert!(cands.get(i).is_some_and(|c| c.healthy)),
                None => prop_assert!(cands.iter().all(|c| !c.healthy)),
            }
        }
    }

    /// Each set of candidates (same length, so that only weights and health change) held
    /// for a few cycles: every cycle gives each healthy one exactly its weight.
    #[test]
    fn weighted_matches_the_weights_in_every_cycle(
        sets in (1usize..6).prop_flat_map(|n| {
            prop::collection::vec(prop::collection::vec(candidate(), n), 1..4)
        }),
        cycles in 1usize..4,
    ) {
        let mut b = Balancer::new(Strategy::Weighted);
        for cands in sets {
            let cycle: usize =
                cands.iter().filter(|c| c.healthy).map(|c| c.weight.max(1) as usize).sum();
            for _ in 0..cycles {
                let mut counts = vec![0usize; cands.len()];
                for _ in 0..cycle {
                    if let Some(i) = b.pick(&cands) {
                        counts[i] += 1;
                    }
                }
                for (i, cand) in cands.iter().enumerate() {
                    let want = if cand.healthy { cand.weight.max(1) as usize } else { 0 };
                    prop_assert_eq!(counts[i], want, "candidate {} of {:?}", i, cands);
                }
            }
        }
    }

    /// Round robin, and ties in the other turn-taking strategies: over each run of
    /// "number of equals" picks, each equal is picked once.
    #[test]
    fn ties_take_exact_turns(
        strategy in prop::sample::select(vec![
            Strategy::RoundRobin, Strategy::LeastConnections, Strategy::Priority,
        ]),
        cands in prop::collection::vec(candidate(), 1..6),
        rounds in 1usize..4,
        warmup in 0usize..7,
    ) {
        let key = |c: &Candidate| match strategy {
            Strategy::LeastConnections => c.in_flight as i64,
            Strategy::Priority => c.priority,
            _ => 0,
        };
        let Some(best) = cands.iter().filter(|c| c.healthy).map(key).min() else {
            return Ok(());
        };
        let equals: Vec<usize> =
            (0..cands.len()).filter(|&i| cands[i].healthy && key(&cands[i]) == best).collect();
        let mut b = Balancer::new(strategy);
        for _ in 0..warmup {
            b.pick(&cands);
        }
        for _ in 0..rounds {
            let mut got: Vec<usize> = (0..equals.len()).filter_map(|_| b.pick(&cands)).collect();
            got.sort_unstable();
            prop_assert_eq!(&got, &equals);
        }
    }
}
