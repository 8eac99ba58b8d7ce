//! Decision tests for the router state: every path a message can take, no I/O.

use super::*;

fn msg(s: &str) -> Message {
    Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

fn router(queue: usize) -> Router {
    Router::new(
        "srv",
        Limits {
            request_timeout: Duration::from_secs(30),
            max_queued_requests: queue,
        },
    )
}

fn json(b: &Bytes) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

const REQ1: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
const INIT: &str =
    r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;

#[test]
fn requests_queue_while_down_and_flush_in_order_when_up() {
    let r = router(10);
    let now = Instant::now();
    assert!(matches!(
        r.from_client(msg(INIT), now),
        ClientDecision::Queued
    ));
    assert!(matches!(
        r.from_client(
            msg(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            now
        ),
        ClientDecision::Queued
    ));
    assert!(matches!(
        r.from_client(msg(REQ1), now),
        ClientDecision::Queued
    ));
    let (gen, queued) = r.upstream_up();
    assert_eq!(gen, 0);
    let methods: Vec<String> = queued
        .iter()
        .map(|b| json(b.raw())["method"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        methods,
        ["initialize", "notifications/initialized", "tools/list"]
    );
    // Replies now resolve the pending entries.
    let reply = msg(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#);
    assert!(matches!(
        r.from_upstream(reply),
        UpstreamDecision::Deliver(_)
    ));
    assert_eq!(r.pending_len(), 1);
}

#[test]
fn queue_full_is_an_error_for_that_request_only() {
    let r = router(1);
    let now = Instant::now();
    assert!(matches!(
        r.from_client(msg(REQ1), now),
        ClientDecision::Queued
    ));
    let ClientDecision::Reply(err) =
        r.from_client(msg(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#), now)
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
    let r = router(10);
    r.upstream_up();
    let t0 = Instant::now();
    assert!(matches!(
        r.from_client(msg(REQ1), t0),
        ClientDecision::Forward(_)
    ));
    assert_eq!(r.next_deadline(), Some(t0 + Duration::from_secs(30)));
    let (replies, cancels) = r.expire(t0 + Duration::from_secs(31));
    assert_eq!(replies.len(), 1);
    let v = json(&replies[0]);
    assert_eq!(v["error"]["message"], "request timeout after 30s");
    assert_eq!(v["error"]["data"]["kind"], "timeout");
    assert_eq!(json(cancels[0].msg.raw())["params"]["requestId"], 1);
    let late = msg(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    assert!(matches!(r.from_upstream(late), UpstreamDecision::Drop));
}

#[test]
fn queued_timeout_says_so_and_sends_no_cancel() {
    let r = router(10);
    let t0 = Instant::now();
    r.from_client(msg(REQ1), t0);
    let (replies, cancels) = r.expire(t0 + Duration::from_secs(31));
    assert_eq!(
        json(&replies[0])["error"]["message"],
        "request timeout while queued"
    );
    assert!(cancels.is_empty());
    let (_, queued) = r.upstream_up();
    assert!(
        queued.is_empty(),
        "an expired request must not be sent later"
    );
}

#[test]
fn upstream_down_fails_in_flight_but_keeps_queued_and_session() {
    let r = router(10);
    r.upstream_up();
    let now = Instant::now();
    r.from_client(msg(INIT), now);
    r.from_upstream(msg(
        r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#,
    ));
    r.from_client(
        msg(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
        now,
    );
    r.from_client(msg(REQ1), now);
    let errs = r.upstream_down(&RouterError::new(
        ErrorKind::UpstreamExited,
        "server 'srv' exited",
    ));
    assert_eq!(errs.len(), 1);
    assert_eq!(json(&errs[0])["id"], 1);
    // While down, new requests queue; the handshake is there to replay.
    assert!(matches!(
        r.from_client(msg(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#), now),
        ClientDecision::Queued
    ));
    let hs = r.handshake().unwrap();
    assert!(hs.initialized.is_some());
    let (gen, queued) = r.upstream_up();
    assert_eq!((gen, queued.len()), (1, 1));
}

#[test]
fn failed_upstream_answers_at_once() {
    let r = router(10);
    let now = Instant::now();
    r.from_client(msg(REQ1), now);
    let errs = r.upstream_failed(RouterError::new(
        ErrorKind::UpstreamUnavailable,
        "cannot start",
    ));
    assert_eq!(errs.len(), 1);
    let ClientDecision::Reply(e) =
        r.from_client(msg(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#), now)
    else {
        panic!("expected reply")
    };
    assert_eq!(json(&e)["error"]["data"]["kind"], "upstream_unavailable");
}

#[test]
fn client_cancel_withdraws_a_queued_request() {
    let r = router(10);
    let now = Instant::now();
    r.from_client(msg(REQ1), now);
    let cancel =
        msg(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#);
    assert!(matches!(r.from_client(cancel, now), ClientDecision::Drop));
    assert_eq!(r.pending_len(), 0);
    assert!(r.upstream_up().1.is_empty());
}

#[test]
fn duplicate_in_flight_id_is_refused() {
    let r = router(10);
    r.upstream_up();
    let now = Instant::now();
    r.from_client(msg(REQ1), now);
    assert!(matches!(
        r.from_client(msg(REQ1), now),
        ClientDecision::Reply(_)
    ));
}

#[test]
fn batches_only_in_2025_03_26() {
    let r = router(10);
    r.upstream_up();
    let now = Instant::now();
    let batch =
        r#"[{"jsonrpc":"2.0","id":5,"method":"ping"},{"jsonrpc":"2.0","id":6,"method":"ping"}]"#;
    let ClientDecision::Reply(e) = r.from_client(msg(batch), now) else {
        panic!()
    };
    let v = json(&e);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["id"], 6);

    let r = router(10);
    r.upstream_up();
    r.from_client(msg(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#), now);
    r.from_upstream(msg(
        r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-03-26"}}"#,
    ));
    assert!(matches!(
        r.from_client(msg(batch), now),
        ClientDecision::Forward(_)
    ));
    assert_eq!(r.pending_len(), 2);
    let reply =
        msg(r#"[{"jsonrpc":"2.0","id":5,"result":{}},{"jsonrpc":"2.0","id":6,"result":{}}]"#);
    assert!(matches!(
        r.from_upstream(reply),
        UpstreamDecision::Deliver(_)
    ));
    assert_eq!(r.pending_len(), 0);
}

#[test]
fn server_requests_and_notifications_pass_and_null_id_errors_do_not() {
    let r = router(10);
    r.upstream_up();
    assert!(matches!(
        r.from_upstream(msg(
            r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#
        )),
        UpstreamDecision::Deliver(_)
    ));
    assert!(matches!(
        r.from_upstream(msg(
            r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#
        )),
        UpstreamDecision::Deliver(_)
    ));
    assert!(matches!(
        r.from_upstream(msg(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#
        )),
        UpstreamDecision::Drop
    ));
}
