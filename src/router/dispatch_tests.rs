//! The dispatcher and the breakers in the core: which connection takes what (pools, lanes,
//! strategies), and what an open, half-open or closing breaker does to requests.

use super::tests::{core, json, A, H};
use super::*;
use crate::resilience::balance::Strategy;
use crate::resilience::breaker::BreakerConfig;

fn req(n: u32) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"x"}}}}"#)
}

fn ok(n: u32) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{n},"result":{{}}}}"#)
}

fn ids(ms: &[Message]) -> Vec<String> {
    ms.iter().map(|m| json(m.raw())["id"].to_string()).collect()
}

fn kind(d: &Delivery) -> String {
    json(&d.bytes)["error"]["data"]["kind"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn breaker(failures: u32, recovery_ms: u64, successes: u32) -> BreakerConfig {
    BreakerConfig {
        failure_threshold: failures,
        recovery_timeout: Duration::from_millis(recovery_ms),
        success_threshold: successes,
        ..Default::default()
    }
}

fn with_breaker(b: BreakerConfig) -> (H, u64) {
    let h = core(100, 1);
    let lane = LaneConfig {
        breaker: Some(b),
        ..Default::default()
    };
    h.core.set_lanes(A, vec![lane], Strategy::RoundRobin);
    let gen = h.core.up(A);
    (h, gen)
}

fn unreachable() -> RouterError {
    RouterError::new(ErrorKind::UpstreamUnavailable, "HTTP 500")
}

#[test]
fn transport_failures_open_the_breaker_and_then_requests_are_refused_at_once() {
    let (h, gen) = with_breaker(breaker(2, 60_000, 1));
    let now = Instant::now();
    for n in 1..=2 {
        h.send(A, &req(n), now);
        assert_eq!(ids(&h.pull(A, gen)), [n.to_string()]);
        let d = h.core.fail_request(
            A,
            &Id::from_raw_json(&n.to_string()),
            &unreachable(),
            Outcome::Failed,
        );
        assert_eq!(kind(&d.unwrap()), "upstream_unavailable");
    }
    match h.send(A, &req(3), now) {
        ClientDecision::Reply(b) => {
            let v = json(&b);
            assert_eq!(v["error"]["data"]["kind"], "circuit_open", "{v}");
            let text = v["error"]["message"].as_str().unwrap();
            assert!(
                text.contains("'srv0'") && text.contains("retrying in"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(h.pull(A, gen).is_empty(), "nothing is sent while open");
}

#[test]
fn answers_and_refusals_that_say_nothing_about_the_server_do_not_count() {
    let (h, gen) = with_breaker(breaker(1, 60_000, 1));
    let now = Instant::now();
    h.send(A, &req(1), now);
    h.pull(A, gen);
    // A JSON-RPC error is an answer.
    h.reply(
        A,
        gen,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"no"}}"#,
    );
    h.send(A, &req(2), now);
    h.pull(A, gen);
    h.core
        .fail_request(A, &Id::from_raw_json("2"), &unreachable(), Outcome::Void);
    assert!(matches!(h.send(A, &req(3), now), ClientDecision::Accepted));
    assert_eq!(ids(&h.pull(A, gen)), ["3"]);
}

#[test]
fn what_waits_when_the_breaker_opens_is_answered_by_the_timer() {
    let h = core(100, 1);
    let lane = LaneConfig {
        breaker: Some(breaker(1, 60_000, 1)),
        ..Default::default()
    };
    h.core.set_admission(
        A,
        Admission {
            max_concurrent: 1,
            ..Default::default()
        },
    );
    h.core.set_lanes(A, vec![lane], Strategy::RoundRobin);
    let gen = h.core.up(A);
    let now = Instant::now();
    for n in 1..=3 {
        h.send(A, &req(n), now);
    }
    assert_eq!(ids(&h.pull(A, gen)), ["1"], "one at a time");
    let lost = RouterError::new(ErrorKind::UpstreamExited, "gone");
    let out = h.core.down(A, gen, &lost);
    assert_eq!(out.len(), 1, "what the connection carried");
    assert!(
        h.core.next_deadline().is_some_and(|d| d <= Instant::now()),
        "the timer is due at once"
    );
    let out = h.core.expire(Instant::now());
    let kinds: Vec<String> = out.iter().map(kind).collect();
    assert_eq!(kinds, ["circuit_open", "circuit_open"]);
    assert_eq!(h.core.pending_len(), 0);
}

#[test]
fn half_open_lets_probes_through_and_their_successes_close_it() {
    let (h, gen) = with_breaker(breaker(1, 50, 2));
    let now = Instant::now();
    h.send(A, &req(1), now);
    h.pull(A, gen);
    h.core
        .fail_request(A, &Id::from_raw_json("1"), &unreachable(), Outcome::Failed);
    assert!(matches!(h.send(A, &req(2), now), ClientDecision::Reply(_)));
    std::thread::sleep(Duration::from_millis(60));
    let later = Instant::now();
    for n in 3..=5 {
        assert!(matches!(
            h.send(A, &req(n), later),
            ClientDecision::Accepted
        ));
    }
    // Two probe slots: 3 and 4 go, 5 waits for one of them.
    assert_eq!(ids(&h.pull(A, gen)), ["3", "4"]);
    assert!(h.pull(A, gen).is_empty());
    h.reply(A, gen, &ok(3));
    assert_eq!(ids(&h.pull(A, gen)), ["5"], "a freed probe slot");
    h.reply(A, gen, &ok(4));
    assert_eq!(
        h.core.breaker_states(A)[0].map(|s| s.name()),
        Some("closed")
    );
    for n in 6..=8 {
        h.send(A, &req(n), later);
    }
    assert_eq!(
        ids(&h.pull(A, gen)),
        ["6", "7", "8"],
        "closed: everything goes"
    );
}

#[test]
fn a_failing_probe_opens_it_again() {
    let (h, gen) = with_breaker(breaker(1, 50, 1));
    let now = Instant::now();
    h.send(A, &req(1), now);
    h.pull(A, gen);
    h.core
        .fail_request(A, &Id::from_raw_json("1"), &unreachable(), Outcome::Failed);
    std::thread::sleep(Duration::from_millis(60));
    h.send(A, &req(2), Instant::now());
    assert_eq!(ids(&h.pull(A, gen)), ["2"]);
    h.core
        .fail_request(A, &Id::from_raw_json("2"), &unreachable(), Outcome::Failed);
    assert!(matches!(
        h.send(A, &req(3), Instant::now()),
        ClientDecision::Reply(_)
    ));
}

fn pooled(conns: usize) -> (H, Vec<u64>) {
    let h = core(100, 1);
    let lane = LaneConfig {
        acquire_timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    h.core.set_lanes(A, vec![lane], Strategy::RoundRobin);
    let gens = (0..conns).map(|_| h.core.connect(A, 0).0).collect();
    (h, gens)
}

/// Pulls every connection until nothing more moves; which requests each took.
fn pull_all(h: &H, gens: &[u64]) -> Vec<Vec<String>> {
    let mut took = vec![Vec::new(); gens.len()];
    loop {
        let mut moved = false;
        for (i, g) in gens.iter().enumerate() {
            let got = ids(&h.pull(A, *g));
            moved |= !got.is_empty();
            took[i].extend(got);
        }
        if !moved {
            return took;
        }
    }
}

#[test]
fn a_pooled_connection_carries_one_request_at_a_time() {
    let (h, gens) = pooled(2);
    let now = Instant::now();
    for n in 1..=3 {
        h.send(A, &req(n), now);
    }
    let took = pull_all(&h, &gens);
    assert_eq!(
        took.iter().map(Vec::len).collect::<Vec<_>>(),
        [1, 1],
        "{took:?}"
    );
    // The one that answers first takes the third.
    let first = if took[0] == ["1"] { 0 } else { 1 };
    h.reply(A, gens[first], &ok(1));
    let next = pull_all(&h, &gens);
    assert_eq!(next[first], ["3"], "{next:?}");
    assert!(next[1 - first].is_empty());
}

#[test]
fn a_request_waiting_for_a_pooled_connection_times_out_after_acquire_timeout() {
    let (h, gens) = pooled(1);
    let now = Instant::now();
    h.send(A, &req(1), now);
    h.send(A, &req(2), now);
    assert_eq!(ids(&h.pull(A, gens[0])), ["1"]);
    let out = h.core.expire(now + Duration::from_millis(5_100));
    assert_eq!(out.len(), 1);
    let v = json(&out[0].bytes);
    assert_eq!(v["id"], 2);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("acquire_timeout_ms"),
        "{v}"
    );
    // The one that got its connection has its whole request timeout.
    assert!(h.core.expire(now + Duration::from_secs(29)).is_empty());
    assert_eq!(h.core.expire(now + Duration::from_secs(31)).len(), 1);
}

fn two_lanes(strategy: Strategy, weights: [u32; 2], priorities: [i64; 2]) -> (H, [u64; 2]) {
    let h = core(100, 1);
    let lanes = (0..2)
        .map(|i| LaneConfig {
            weight: weights[i],
            priority: priorities[i],
            ..Default::default()
        })
        .collect();
    h.core.set_lanes(A, lanes, strategy);
    let a = h.core.connect(A, 0).0;
    let b = h.core.connect(A, 1).0;
    (h, [a, b])
}

/// Sends, pulls and answers `n` requests one by one: how many went on each lane.
fn one_by_one(h: &H, gens: [u64; 2], n: u32) -> [usize; 2] {
    let mut count = [0; 2];
    for k in 1..=n {
        h.send(A, &req(k), Instant::now());
        let took = pull_all(h, &gens);
        let lane = took
            .iter()
            .position(|t| !t.is_empty())
            .expect("someone took it");
        count[lane] += 1;
        h.reply(A, gens[lane], &ok(k));
    }
    count
}

#[test]
fn lanes_are_chosen_by_the_strategy() {
    let (h, g) = two_lanes(Strategy::RoundRobin, [1, 1], [1, 1]);
    assert_eq!(one_by_one(&h, g, 10), [5, 5]);
    let (h, g) = two_lanes(Strategy::Weighted, [3, 1], [1, 1]);
    assert_eq!(one_by_one(&h, g, 8), [6, 2]);
    let (h, g) = two_lanes(Strategy::Priority, [1, 1], [2, 1]);
    assert_eq!(one_by_one(&h, g, 6), [0, 6]);
    // The preferred lane's connection is lost: the other takes over at once.
    h.core.down(
        A,
        g[1],
        &RouterError::new(ErrorKind::UpstreamExited, "gone"),
    );
    h.send(A, &req(50), Instant::now());
    assert_eq!(ids(&h.pull(A, g[0])), ["50"]);
}

#[test]
fn namespace_tags_keep_a_request_on_the_lanes_that_have_them() {
    let h = core(100, 1);
    let lanes = ["general", "special"]
        .iter()
        .map(|t| LaneConfig {
            tags: vec![t.to_string()],
            ..Default::default()
        })
        .collect();
    h.core.set_lanes(A, lanes, Strategy::RoundRobin);
    h.core.set_namespace_rules(
        A,
        vec![NamespaceRule {
            pattern: regex::Regex::new("^x$").unwrap(),
            tags: vec!["special".into()],
        }],
    );
    let g = [h.core.connect(A, 0).0, h.core.connect(A, 1).0];
    for n in 1..=4 {
        h.send(A, &req(n), Instant::now());
        let took = pull_all(&h, &g);
        assert_eq!(took[1], [n.to_string()], "{took:?}");
        h.reply(A, g[1], &ok(n));
    }
}

#[test]
fn a_connection_that_stops_answering_is_passed_over_after_the_failover_timeout() {
    let (h, g) = two_lanes(Strategy::Priority, [1, 1], [0, 1]);
    h.core.set_failover_timeout(A, Duration::from_millis(100));
    h.send(A, &req(1), Instant::now());
    assert_eq!(pull_all(&h, &g), [vec!["1".to_owned()], vec![]]);
    // Not yet: the preferred connection takes more while it may just be slow.
    h.send(A, &req(2), Instant::now());
    assert_eq!(pull_all(&h, &g), [vec!["2".to_owned()], vec![]]);
    std::thread::sleep(Duration::from_millis(120));
    for n in 3..=5 {
        h.send(A, &req(n), Instant::now());
        assert_eq!(pull_all(&h, &g)[1], [n.to_string()], "lane 0 is stalled");
        h.reply(A, g[1], &ok(n));
    }
    // It answers: it takes requests again.
    h.reply(A, g[0], &ok(1));
    h.reply(A, g[0], &ok(2));
    h.send(A, &req(6), Instant::now());
    assert_eq!(pull_all(&h, &g), [vec!["6".to_owned()], vec![]]);
}
