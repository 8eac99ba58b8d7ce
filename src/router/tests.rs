//! Decision tests for the routing core: every path a message can take, no I/O. Several
//! upstreams in one core even where the configuration has one.

use super::*;

pub(super) fn msg(s: &str) -> Message {
    Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

pub(super) fn json(b: &Bytes) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

/// A core with `n` upstreams and one client session.
pub(super) struct H {
    pub(super) core: Core,
    pub(super) s: SessionId,
    _rx: mpsc::Receiver<Bytes>,
}

pub(super) const A: UpstreamId = UpstreamId(0);
pub(super) const B: UpstreamId = UpstreamId(1);

pub(super) fn core(queue: usize, n: usize) -> H {
    let core = Core::new(Limits {
        request_timeout: Duration::from_secs(30),
        max_queued_requests: queue,
    });
    for i in 0..n {
        core.add_upstream(&format!("srv{i}"));
    }
    let (tx, rx) = mpsc::channel(16);
    let s = core.open_session(tx);
    H { core, s, _rx: rx }
}

impl H {
    pub(super) fn send(&self, up: UpstreamId, m: &str, now: Instant) -> ClientDecision {
        self.core.from_client_to(self.s, up, msg(m), now)
    }
    pub(super) fn pull(&self, up: UpstreamId, gen: u64) -> Vec<Message> {
        let mut out = Vec::new();
        assert!(
            self.core.pull(up, gen, &mut out, 100),
            "connection {gen} is stale"
        );
        out
    }
    pub(super) fn reply(&self, up: UpstreamId, gen: u64, m: &str) -> Option<Delivery> {
        self.core.from_upstream(up, gen, msg(m))
    }
}

fn methods(ms: &[Message]) -> Vec<String> {
    ms.iter()
        .map(|m| json(m.raw())["method"].as_str().unwrap_or("").to_owned())
        .collect()
}

const REQ1: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
const INIT: &str =
    r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

#[test]
fn requests_queue_while_down_and_flush_in_order_when_up() {
    let h = core(10, 1);
    let now = Instant::now();
    for m in [INIT, INITIALIZED, REQ1] {
        assert!(matches!(h.send(A, m, now), ClientDecision::Accepted));
    }
    let gen = h.core.up(A);
    assert_eq!(gen, 0);
    let queued = h.pull(A, gen);
    assert_eq!(
        methods(&queued),
        ["initialize", "notifications/initialized", "tools/list"]
    );
    // Pass-through: the bytes written are the bytes the client sent.
    assert_eq!(&queued[2].raw()[..], REQ1.as_bytes());
    let d = h
        .reply(A, gen, r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#)
        .unwrap();
    assert_eq!(d.session, h.s);
    assert_eq!(h.core.pending_len(), 1);
}

#[test]
fn queue_full_is_an_error_for_that_request_only() {
    let h = core(1, 1);
    let now = Instant::now();
    assert!(matches!(h.send(A, REQ1, now), ClientDecision::Accepted));
    let ClientDecision::Reply(err) = h.send(A, r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#, now)
    else {
        panic!("expected a reply");
    };
    let v = json(&err);
    assert_eq!(v["id"], 2);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("queue full"));
    assert_eq!(v["error"]["data"]["kind"], "queue_full");
}

#[test]
fn timeout_answers_client_and_cancels_upstream_then_drops_late_reply() {
    let h = core(10, 1);
    let gen = h.core.up(A);
    let t0 = Instant::now();
    h.send(A, REQ1, t0);
    assert_eq!(h.pull(A, gen).len(), 1);
    assert_eq!(h.core.next_deadline(), Some(t0 + Duration::from_secs(30)));
    let replies = h.core.expire(t0 + Duration::from_secs(31));
    assert_eq!(replies.len(), 1);
    let v = json(&replies[0].bytes);
    assert_eq!(v["error"]["message"], "request timeout after 30s");
    assert_eq!(v["error"]["data"]["kind"], "timeout");
    let cancels = h.pull(A, gen);
    assert_eq!(json(cancels[0].raw())["params"]["requestId"], 1);
    assert!(h
        .reply(A, gen, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
        .is_none());
}

#[test]
fn queued_timeout_says_so_and_sends_no_cancel() {
    let h = core(10, 1);
    let t0 = Instant::now();
    h.send(A, REQ1, t0);
    let replies = h.core.expire(t0 + Duration::from_secs(31));
    assert_eq!(
        json(&replies[0].bytes)["error"]["message"],
        "request timeout while queued"
    );
    let gen = h.core.up(A);
    assert!(
        h.pull(A, gen).is_empty(),
        "an expired request must not be sent later"
    );
}

#[test]
fn upstream_down_fails_in_flight_but_keeps_queued_and_session() {
    let h = core(10, 1);
    let gen = h.core.up(A);
    let now = Instant::now();
    h.send(A, INIT, now);
    h.pull(A, gen);
    h.reply(
        A,
        gen,
        r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#,
    );
    h.send(A, INITIALIZED, now);
    h.send(A, REQ1, now);
    h.pull(A, gen);
    let errs = h.core.down(
        A,
        gen,
        &RouterError::new(ErrorKind::UpstreamExited, "server 'srv' exited"),
    );
    assert_eq!(errs.len(), 1);
    assert_eq!(json(&errs[0].bytes)["id"], 1);
    // While down, new requests queue; the handshake is there to replay.
    assert!(matches!(
        h.send(A, r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#, now),
        ClientDecision::Accepted
    ));
    assert!(h.core.handshake(A).unwrap().initialized.is_some());
    // The dead connection's writer gets nothing more; the new one gets the queued request.
    let mut out = Vec::new();
    assert!(!h.core.pull(A, gen, &mut out, 10));
    let gen2 = h.core.up(A);
    assert_eq!((gen2, h.pull(A, gen2).len()), (1, 1));
    // A reply arriving late from the old connection answers nothing on the new one.
    assert!(h
        .reply(A, gen, r#"{"jsonrpc":"2.0","id":2,"result":{}}"#)
        .is_none());
    assert!(h
        .reply(A, gen2, r#"{"jsonrpc":"2.0","id":2,"result":{}}"#)
        .is_some());
}

#[test]
fn failed_upstream_answers_at_once() {
    let h = core(10, 1);
    let now = Instant::now();
    h.send(A, REQ1, now);
    let errs = h.core.failed(
        A,
        RouterError::new(ErrorKind::UpstreamUnavailable, "cannot start"),
    );
    assert_eq!(errs.len(), 1);
    let ClientDecision::Reply(e) = h.send(A, r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#, now)
    else {
        panic!("expected reply")
    };
    assert_eq!(json(&e)["error"]["data"]["kind"], "upstream_unavailable");
}

#[test]
fn client_cancel_withdraws_a_queued_request() {
    let h = core(10, 1);
    let now = Instant::now();
    h.send(A, REQ1, now);
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#;
    assert!(matches!(h.send(A, cancel, now), ClientDecision::Drop));
    assert_eq!(h.core.pending_len(), 0);
    let gen = h.core.up(A);
    assert!(h.pull(A, gen).is_empty());
}

#[test]
fn client_cancel_of_a_sent_request_goes_to_the_connection_that_carries_it() {
    let h = core(10, 2);
    let (ga, _gb) = (h.core.up(A), h.core.up(B));
    let now = Instant::now();
    h.send(A, REQ1, now);
    h.pull(A, ga);
    // Routed to B by default, the cancellation follows the request to A.
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#;
    assert!(matches!(h.send(B, cancel, now), ClientDecision::Accepted));
    assert_eq!(methods(&h.pull(A, ga)), ["notifications/cancelled"]);
    assert!(h
        .reply(A, ga, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
        .is_none());
}

#[test]
fn duplicate_in_flight_id_is_refused() {
    let h = core(10, 1);
    h.core.up(A);
    let now = Instant::now();
    h.send(A, REQ1, now);
    assert!(matches!(h.send(A, REQ1, now), ClientDecision::Reply(_)));
}

fn allow_batches(h: &H, up: UpstreamId, gen: u64) {
    let now = Instant::now();
    h.send(up, r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#, now);
    h.pull(up, gen);
    h.reply(
        up,
        gen,
        r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-03-26"}}"#,
    );
}

const BATCH: &str =
    r#"[{"jsonrpc":"2.0","id":5,"method":"ping"},{"jsonrpc":"2.0","id":6,"method":"ping"}]"#;

#[test]
fn batches_only_in_2025_03_26() {
    let h = core(10, 1);
    let gen = h.core.up(A);
    let now = Instant::now();
    let ClientDecision::Reply(e) = h.send(A, BATCH, now) else {
        panic!()
    };
    let v = json(&e);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["id"], 6);

    allow_batches(&h, A, gen);
    assert!(matches!(h.send(A, BATCH, now), ClientDecision::Accepted));
    assert_eq!(h.core.pending_len(), 2);
    h.pull(A, gen);
    let d = h
        .reply(
            A,
            gen,
            r#"[{"jsonrpc":"2.0","id":5,"result":{}},{"jsonrpc":"2.0","id":6,"result":{}}]"#,
        )
        .unwrap();
    assert_eq!(json(&d.bytes).as_array().unwrap().len(), 2);
    assert_eq!(h.core.pending_len(), 0);
}

#[test]
fn a_batch_with_a_member_in_flight_answers_every_member_under_its_own_id() {
    let h = core(10, 1);
    let gen = h.core.up(A);
    allow_batches(&h, A, gen);
    let now = Instant::now();
    h.send(A, r#"{"jsonrpc":"2.0","id":6,"method":"ping"}"#, now);
    let ClientDecision::Reply(e) = h.send(A, BATCH, now) else {
        panic!("expected the batch to be refused")
    };
    let v = json(&e);
    let ids: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [5, 6], "one error per member, none with id null: {v}");
    // The request already in flight is untouched.
    assert_eq!(h.core.pending_len(), 1);
}

#[test]
fn a_batch_to_a_failed_upstream_or_a_full_queue_is_answered_per_member() {
    let h = core(1, 1);
    let gen = h.core.up(A);
    allow_batches(&h, A, gen);
    let now = Instant::now();
    h.core
        .down(A, gen, &RouterError::new(ErrorKind::UpstreamExited, "gone"));
    h.send(A, REQ1, now);
    let ClientDecision::Reply(e) = h.send(A, BATCH, now) else {
        panic!()
    };
    let v = json(&e);
    assert_eq!(v[0]["id"], 5);
    assert_eq!(v[1]["error"]["data"]["kind"], "queue_full");
    h.core
        .failed(A, RouterError::new(ErrorKind::UpstreamUnavailable, "no"));
    let ClientDecision::Reply(e) = h.send(A, BATCH, now) else {
        panic!()
    };
    let v = json(&e);
    assert_eq!(
        (v[0]["id"].clone(), v[1]["id"].clone()),
        (5.into(), 6.into())
    );
    assert_eq!(v[1]["error"]["data"]["kind"], "upstream_unavailable");
}

#[test]
fn a_batch_reply_loses_the_members_that_timed_out() {
    let h = core(10, 1);
    let gen = h.core.up(A);
    allow_batches(&h, A, gen);
    let t0 = Instant::now();
    h.send(A, r#"[{"jsonrpc":"2.0","id":5,"method":"ping"}]"#, t0);
    h.send(
        A,
        r#"[{"jsonrpc":"2.0","id":6,"method":"ping"}]"#,
        t0 + Duration::from_secs(10),
    );
    h.pull(A, gen);
    // Member 5 times out; the reply carrying 5 and 6 delivers only 6, byte for byte.
    assert_eq!(h.core.expire(t0 + Duration::from_secs(31)).len(), 1);
    let d = h
        .reply(
            A,
            gen,
            r#"[{"jsonrpc":"2.0","id":5,"result":{}},{"jsonrpc":"2.0","id":6,"result":{"x":1}}]"#,
        )
        .unwrap();
    assert_eq!(
        &d.bytes[..],
        br#"[{"jsonrpc":"2.0","id":6,"result":{"x":1}}]"#
    );
    assert!(h
        .reply(A, gen, r#"[{"jsonrpc":"2.0","id":5,"result":{}}]"#)
        .is_none());
}

#[test]
fn server_requests_and_notifications_pass_and_null_id_errors_do_not() {
    let h = core(10, 1);
    let gen = h.core.up(A);
    assert!(h
        .reply(
            A,
            gen,
            r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#
        )
        .is_some());
    assert!(h
        .reply(
            A,
            gen,
            r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#
        )
        .is_some());
    assert!(h
        .reply(
            A,
            gen,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#
        )
        .is_none());
}

#[test]
fn a_client_answer_goes_to_the_connection_that_asked_and_never_to_a_new_one() {
    let h = core(10, 1);
    let gen = h.core.up(A);
    let now = Instant::now();
    h.reply(A, gen, r#"{"jsonrpc":"2.0","id":7,"method":"roots/list"}"#)
        .unwrap();
    let answer = r#"{"jsonrpc":"2.0","id":7,"result":{"roots":[]}}"#;
    assert!(matches!(h.send(A, answer, now), ClientDecision::Accepted));
    assert_eq!(&h.pull(A, gen)[0].raw()[..], answer.as_bytes());
    // Asked again; the process dies before the client answers.
    h.reply(A, gen, r#"{"jsonrpc":"2.0","id":8,"method":"roots/list"}"#)
        .unwrap();
    h.core
        .down(A, gen, &RouterError::new(ErrorKind::UpstreamExited, "gone"));
    let gen2 = h.core.up(A);
    assert!(matches!(
        h.send(A, r#"{"jsonrpc":"2.0","id":8,"result":{"roots":[]}}"#, now),
        ClientDecision::Drop
    ));
    assert!(h.pull(A, gen2).is_empty(), "the new process never asked");
}

#[test]
fn server_requests_with_the_same_id_from_two_upstreams_are_told_apart() {
    let h = core(10, 2);
    let (ga, gb) = (h.core.up(A), h.core.up(B));
    let now = Instant::now();
    let from_a = h
        .reply(A, ga, r#"{"jsonrpc":"2.0","id":1,"method":"roots/list"}"#)
        .unwrap();
    let from_b = h
        .reply(B, gb, r#"{"jsonrpc":"2.0","id":1,"method":"roots/list"}"#)
        .unwrap();
    let b_id = json(&from_b.bytes)["id"].clone();
    assert_eq!(json(&from_a.bytes)["id"], 1);
    assert_ne!(b_id, 1, "the second one travels under a router id");
    let answer_b = format!(r#"{{"jsonrpc":"2.0","id":{b_id},"result":{{"roots":["b"]}}}}"#);
    h.send(A, &answer_b, now);
    h.send(
        A,
        r#"{"jsonrpc":"2.0","id":1,"result":{"roots":["a"]}}"#,
        now,
    );
    assert_eq!(
        &h.pull(B, gb)[0].raw()[..],
        br#"{"jsonrpc":"2.0","id":1,"result":{"roots":["b"]}}"#
    );
    assert_eq!(
        &h.pull(A, ga)[0].raw()[..],
        br#"{"jsonrpc":"2.0","id":1,"result":{"roots":["a"]}}"#
    );
}

#[test]
fn one_failing_upstream_does_not_fail_the_others_requests() {
    let h = core(10, 2);
    let (ga, gb) = (h.core.up(A), h.core.up(B));
    let now = Instant::now();
    h.send(A, REQ1, now);
    h.send(B, r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#, now);
    h.pull(A, ga);
    h.pull(B, gb);
    let lost = h.core.down(
        A,
        ga,
        &RouterError::new(ErrorKind::UpstreamExited, "a died"),
    );
    assert_eq!(lost.len(), 1);
    assert_eq!(json(&lost[0].bytes)["id"], 1);
    let failed = h.core.failed(
        A,
        RouterError::new(ErrorKind::UpstreamUnavailable, "a gone"),
    );
    assert!(failed.is_empty());
    assert_eq!(h.core.pending_len(), 1);
    assert!(h
        .reply(B, gb, r#"{"jsonrpc":"2.0","id":2,"result":{}}"#)
        .is_some());
}

#[test]
fn a_stuck_upstream_never_blocks_another() {
    let h = core(2, 2);
    h.core.up(A);
    let gb = h.core.up(B);
    let now = Instant::now();
    // A's writer never pulls: its outbox fills until it refuses, B is untouched.
    for n in 0..LIVE_OUTBOX {
        let m = format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"ping"}}"#);
        assert!(matches!(h.send(A, &m, now), ClientDecision::Accepted));
    }
    let m = format!(
        r#"{{"jsonrpc":"2.0","id":{},"method":"ping"}}"#,
        LIVE_OUTBOX
    );
    assert!(matches!(h.send(A, &m, now), ClientDecision::Reply(_)));
    let m = r#"{"jsonrpc":"2.0","id":"b","method":"ping"}"#;
    assert!(matches!(h.send(B, m, now), ClientDecision::Accepted));
    assert_eq!(h.pull(B, gb).len(), 1);
}

#[test]
fn the_same_client_id_from_two_sessions_travels_under_distinct_wire_ids() {
    let h = core(10, 1);
    let (tx, _rx2) = mpsc::channel(4);
    let s2 = h.core.open_session(tx);
    let gen = h.core.up(A);
    let now = Instant::now();
    h.send(A, REQ1, now);
    h.core.from_client_to(s2, A, msg(REQ1), now);
    let sent = h.pull(A, gen);
    assert_eq!(&sent[0].raw()[..], REQ1.as_bytes());
    let wire2 = sent[1].id().unwrap().clone();
    assert_ne!(wire2.as_json(), "1");
    let reply2 = format!(r#"{{"jsonrpc":"2.0","id":{wire2},"result":{{}}}}"#);
    let d = h.reply(A, gen, &reply2).unwrap();
    assert_eq!(d.session, s2);
    assert_eq!(&d.bytes[..], br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    assert_eq!(
        h.reply(A, gen, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
            .unwrap()
            .session,
        h.s
    );
}

#[test]
fn http_version_comes_from_each_upstreams_own_negotiation() {
    let h = core(10, 2);
    let (ga, _) = (h.core.up(A), h.core.up(B));
    h.send(A, INIT, Instant::now());
    h.pull(A, ga);
    h.reply(
        A,
        ga,
        r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#,
    );
    assert_eq!(h.core.negotiated_version(A).as_deref(), Some("2025-06-18"));
    assert_eq!(h.core.negotiated_version(B), None);
}

#[test]
fn handed_back_messages_go_first_to_the_next_connection_still_waited_for() {
    let h = core(10, 1);
    let gen = h.core.up(A);
    let now = Instant::now();
    h.send(A, INIT, now);
    h.send(A, REQ1, now);
    let taken = h.pull(A, gen);
    h.send(A, r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#, now);
    // The transport turned out to be another one: nothing was sent, nothing is lost.
    h.core.hand_back(A, gen, taken);
    let mut out = Vec::new();
    assert!(
        !h.core.pull(A, gen, &mut out, 10),
        "the old connection is done"
    );
    let gen2 = h.core.up(A);
    assert_eq!(
        methods(&h.pull(A, gen2)),
        ["initialize", "tools/list", "ping"]
    );
    assert_eq!(h.core.pending_len(), 3);
    assert!(h
        .reply(A, gen2, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
        .is_some());
}
