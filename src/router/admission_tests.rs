//! The core's admission: the concurrency limit holds requests back in order, lets
//! notifications pass, frees a slot on every kind of ending, and bounds what waits.

use super::tests::{core, json, A, H};
use super::*;

fn req(n: u32) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"sleep"}}}}"#)
}

fn ids(ms: &[Message]) -> Vec<String> {
    ms.iter().map(|m| json(m.raw())["id"].to_string()).collect()
}

fn limited(queue: usize, max_concurrent: usize) -> (H, u64) {
    let h = core(queue, 1);
    h.core.set_admission(
        A,
        Admission {
            max_concurrent,
            ..Default::default()
        },
    );
    let gen = h.core.up(A);
    (h, gen)
}

#[test]
fn requests_past_the_limit_wait_in_order_and_go_as_slots_free() {
    let (h, gen) = limited(100, 2);
    let now = Instant::now();
    for n in 1..=5 {
        assert!(matches!(h.send(A, &req(n), now), ClientDecision::Accepted));
    }
    assert_eq!(ids(&h.pull(A, gen)), ["1", "2"]);
    assert!(h.pull(A, gen).is_empty(), "both slots are taken");
    h.reply(A, gen, r#"{"jsonrpc":"2.0","id":2,"result":{}}"#);
    assert_eq!(ids(&h.pull(A, gen)), ["3"]);
    // A timeout frees its slot too.
    let replies = h.core.expire(now + Duration::from_secs(31));
    assert_eq!(
        replies.len(),
        4,
        "1, 3 timed out after being sent; 4 and 5 while queued"
    );
    assert_eq!(h.core.pending_len(), 0);
}

#[test]
fn notifications_pass_requests_held_back_by_the_limit() {
    let (h, gen) = limited(100, 1);
    let now = Instant::now();
    h.send(A, &req(1), now);
    h.send(A, &req(2), now);
    assert_eq!(ids(&h.pull(A, gen)), ["1"]);
    let changed = r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#;
    h.send(A, changed, now);
    let out = h.pull(A, gen);
    assert_eq!(
        out.len(),
        1,
        "2 waits for the slot; the notification does not"
    );
    assert_eq!(
        json(out[0].raw())["method"],
        "notifications/roots/list_changed"
    );
    // The client's cancel of 1 frees the slot: 2 goes with it.
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#;
    h.send(A, cancel, now);
    let out = h.pull(A, gen);
    assert_eq!(out.len(), 2);
    assert_eq!(ids(&out), ["2", "null"]);
}

#[test]
fn a_lost_connection_frees_its_slots_for_the_next() {
    let (h, gen) = limited(100, 1);
    let now = Instant::now();
    h.send(A, &req(1), now);
    h.send(A, &req(2), now);
    assert_eq!(ids(&h.pull(A, gen)), ["1"]);
    let lost = RouterError::new(ErrorKind::UpstreamUnavailable, "gone");
    assert_eq!(h.core.down(A, gen, &lost).len(), 1);
    let gen = h.core.up(A);
    assert_eq!(ids(&h.pull(A, gen)), ["2"]);
}

#[test]
fn waiting_requests_are_bounded_by_max_queued_requests() {
    let (h, gen) = limited(2, 1);
    let now = Instant::now();
    h.send(A, &req(1), now);
    assert_eq!(ids(&h.pull(A, gen)), ["1"]);
    assert!(matches!(h.send(A, &req(2), now), ClientDecision::Accepted));
    assert!(matches!(h.send(A, &req(3), now), ClientDecision::Accepted));
    let ClientDecision::Reply(err) = h.send(A, &req(4), now) else {
        panic!("a third waiting request must be refused");
    };
    assert_eq!(json(&err)["error"]["data"]["kind"], "queue_full");
}

#[test]
fn a_request_over_the_rate_waits_in_the_outbox_and_the_timer_knows_when() {
    let (h, gen) = limited(100, 100);
    h.core.set_rate_limit(Some(&crate::config::RateLimit {
        requests_per_second: 10.0,
        burst: 1,
        window: None,
        max_wait: Duration::from_secs(30),
    }));
    let now = Instant::now();
    h.send(A, &req(1), now);
    h.send(A, &req(2), now);
    assert_eq!(ids(&h.pull(A, gen)), ["1"]);
    assert!(h.pull(A, gen).is_empty(), "2 waits for its turn");
    assert_eq!(
        h.core.next_deadline(),
        Some(now + Duration::from_millis(100)),
        "the timer wakes the writer when 2 may go"
    );
    std::thread::sleep(Duration::from_millis(110));
    h.core.expire(Instant::now());
    assert_eq!(ids(&h.pull(A, gen)), ["2"]);
}
