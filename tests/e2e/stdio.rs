//! The stdio router against real child processes: bad input, limits, timeouts,
//! cancellation, crashes and recovery, passive mode, batches and shutdown.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

fn start(server_args: &[&str], env: &[(&str, &str)]) -> RouterProc {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let pidfile = dir.path().join("pids");
    let mut words = vec!["--".to_string()];
    words.extend(fault_server(&[
        "--record",
        record.to_str().unwrap(),
        "--pidfile",
        pidfile.to_str().unwrap(),
    ]));
    words.extend(server_args.iter().map(|s| s.to_string()));
    let args: Vec<&str> = words.iter().map(String::as_str).collect();
    RouterProc::start_in(dir, &args, env)
}

fn recorded(r: &RouterProc) -> Vec<Value> {
    read_lines(&r.path("record.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn pids(r: &RouterProc) -> Vec<u32> {
    read_lines(&r.path("pids"))
        .iter()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn kind(v: &Value) -> &str {
    v["error"]["data"]["kind"].as_str().unwrap_or("")
}

#[test]
fn malformed_input_gets_errors_and_the_session_goes_on() {
    let mut r = start(&[], &[]);
    r.initialize("2025-06-18");
    r.send_raw(b"this is not json\n");
    let v = r.recv(WAIT).unwrap();
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(v["id"], Value::Null);
    r.send_raw(b"{\"id\":7,\"method\":\"ping\"}\n");
    let v = r.recv(WAIT).unwrap();
    assert_eq!(
        (v["error"]["code"].clone(), v["id"].clone()),
        (json!(-32600), json!(7))
    );
    r.send_raw(b"[1,2]\n\"str\"\n");
    assert_eq!(r.recv(WAIT).unwrap()["error"]["code"], -32600);
    assert_eq!(r.recv(WAIT).unwrap()["error"]["code"], -32600);
    let v = r.request(json!(8), "ping", json!({}));
    assert_eq!(v["result"], json!({}));
}

#[test]
fn oversized_message_is_refused_for_its_id_and_the_next_one_works() {
    let mut r = start(&[], &[("MCP_LOCAL_MAX_MESSAGE_SIZE", "65536")]);
    r.initialize("2025-06-18");
    // The id comes last, as some SDKs write it: the router must still find it.
    let big = format!(
        r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}},"id":"big-1"}}"#,
        "y".repeat(200_000)
    );
    r.send_raw(format!("{big}\n").as_bytes());
    let v = r.recv(WAIT).unwrap();
    assert_eq!(v["id"], "big-1");
    assert_eq!(kind(&v), "too_large");
    assert!(v["error"]["message"].as_str().unwrap().contains("65536"));
    // The server never saw it.
    assert!(recorded(&r).iter().all(|m| m["id"] != "big-1"));
    let v = r.request(
        json!(2),
        "tools/call",
        json!({"name":"echo","arguments":{"text":"ok"}}),
    );
    assert_eq!(v["result"]["content"][0]["text"], "ok");
    // A reply over the limit is refused too, for the request it answers.
    let v = r.request(
        json!(3),
        "tools/call",
        json!({"name":"big","arguments":{"bytes":100000}}),
    );
    assert_eq!(kind(&v), "too_large");
    let v = r.request(json!(4), "ping", json!({}));
    assert_eq!(v["result"], json!({}));
}

#[test]
fn default_limit_refuses_an_11_mib_message_without_dying() {
    let mut r = start(&[], &[]);
    r.initialize("2025-06-18");
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "z".repeat(11 * 1024 * 1024)
    );
    r.send_raw(format!("{big}\n").as_bytes());
    let v = r.recv(WAIT).unwrap();
    assert_eq!(
        (v["id"].clone(), kind(&v).to_owned()),
        (json!(99), "too_large".to_owned())
    );
    // 9 MiB is under the limit and goes through both ways.
    let text = "w".repeat(9 * 1024 * 1024);
    let v = r.request(
        json!(100),
        "tools/call",
        json!({"name":"echo","arguments":{"text":text}}),
    );
    assert_eq!(
        v["result"]["content"][0]["text"].as_str().map(str::len),
        Some(text.len())
    );
}

#[test]
fn bytes_pass_through_unchanged_both_ways() {
    let mut r = start(&[], &[]);
    r.initialize("2025-06-18");
    let odd = "{ \"params\" : {\"name\":\"echo\",\"arguments\":{\"text\":\"\\u00e9\\n\"}, \"_meta\":{\"x-unknown\":[1,2.50,true]}} ,\"id\":\"s-1\", \"method\":\"tools/call\",\"jsonrpc\":\"2.0\" }";
    r.send_raw(format!("{odd}\n").as_bytes());
    let line = r.recv_line(WAIT).unwrap();
    assert_eq!(
        line,
        r#"{"jsonrpc":"2.0","id":"s-1","result":{"content":[{"type":"text","text":"\u00e9\n"}]}}"#
    );
    let rec = read_lines(&r.path("record.jsonl"));
    assert!(
        rec.iter().any(|l| l == odd),
        "server must receive the exact bytes"
    );
}

#[test]
fn timeout_answers_the_client_cancels_upstream_and_drops_the_late_reply() {
    // --ignore-cancel: the server answers anyway, after the router's timeout fired.
    let mut r = start(
        &["--ignore-cancel"],
        &[("MCP_LOCAL_REQUEST_TIMEOUT_MS", "400")],
    );
    r.initialize("2025-06-18");
    let t0 = Instant::now();
    r.send(&json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":1500}}}));
    let v = r.recv(WAIT).unwrap();
    let waited = t0.elapsed();
    assert_eq!(v["id"], 5);
    assert_eq!(kind(&v), "timeout");
    assert_eq!(v["error"]["message"], "request timeout after 0.4s");
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_millis(1400),
        "{waited:?}"
    );
    assert!(wait_until(WAIT, || recorded(&r)
        .iter()
        .any(
            |m| m["method"] == "notifications/cancelled" && m["params"]["requestId"] == 5
        )));
    // The server's late reply is on its stdout (it logs this line after writing it)...
    assert!(
        r.wait_log("fault_server late reply to 5 sent", WAIT),
        "the server never sent its late reply: {}",
        r.stderr()
    );
    // ...and the reply to the next request comes after it on the same pipe, so a late
    // reply the router forwarded would arrive before this one: nothing may.
    let (v, before) = r.response_with(&json!(6), "ping");
    assert_eq!(v["result"], json!({}), "{v}");
    assert!(
        before.is_empty(),
        "only the timeout error may answer id 5; the client also got: {before:?}"
    );
}

#[test]
fn client_cancellation_passes_through_and_no_timeout_follows() {
    let mut r = start(&[], &[("MCP_LOCAL_REQUEST_TIMEOUT_MS", "800")]);
    r.initialize("2025-06-18");
    r.send(&json!({"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{"name":"sleep","arguments":{"ms":3000}}}));
    // Once the server has the request (a request still in the router's outbox is
    // withdrawn instead: the server never sees it nor its cancellation).
    assert!(wait_until(WAIT, || recorded(&r)
        .iter()
        .any(|m| m["id"] == "slow")));
    r.send(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow","reason":"user"}}));
    assert!(wait_until(WAIT, || recorded(&r)
        .iter()
        .any(
            |m| m["method"] == "notifications/cancelled" && m["params"]["requestId"] == "slow"
        )));
    // No timeout error for a request the client cancelled.
    assert!(r.recv(Duration::from_millis(1200)).is_none());
    assert_eq!(r.request(json!(2), "ping", json!({}))["result"], json!({}));
}

#[test]
fn crash_mid_request_fails_that_request_then_recovers_with_the_replayed_handshake() {
    let mut r = start(&[], &[]);
    let init = r.initialize("2025-06-18");
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    let first_pid = pids(&r)[0];
    let v = r.request(json!(1), "tools/call", json!({"name":"crash"}));
    assert_eq!(kind(&v), "upstream_exited");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("exited with status 3"), "{msg}");
    assert!(
        msg.contains("fault_server") || msg.contains("python"),
        "names the server: {msg}"
    );
    // Sent while the server restarts: waits, then is answered by the new process.
    let (v, seen) = {
        r.send(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"again"}}}));
        r.response(&json!(2))
    };
    assert_eq!(v["result"]["content"][0]["text"], "again");
    assert!(
        seen.is_empty(),
        "the replayed handshake's reply must be swallowed: {seen:?}"
    );
    let ps = pids(&r);
    assert_eq!(ps.len(), 2);
    assert_ne!(ps[1], first_pid);
    assert!(!alive(first_pid));
    // The new process saw the client's own handshake (under a router id) before request 2.
    let rec = recorded(&r);
    let inits: Vec<&Value> = rec.iter().filter(|m| m["method"] == "initialize").collect();
    assert_eq!(inits.len(), 2);
    assert_eq!(inits[0]["id"], 0);
    assert!(inits[1]["id"]
        .as_str()
        .unwrap()
        .starts_with("mcp-router-replay-"));
    assert_eq!(inits[1]["params"], inits[0]["params"]);
    let after: Vec<&str> = rec
        .iter()
        .skip_while(|m| m["id"] != inits[1]["id"])
        .filter_map(|m| m["method"].as_str())
        .collect();
    assert_eq!(
        after,
        ["initialize", "notifications/initialized", "tools/call"]
    );
}

#[test]
fn queue_is_bounded_while_the_server_restarts() {
    let mut r = start(&[], &[("MCP_LOCAL_MAX_QUEUED_REQUESTS", "1")]);
    r.initialize("2025-06-18");
    let v = r.request(json!(1), "tools/call", json!({"name":"crash"}));
    assert_eq!(kind(&v), "upstream_exited");
    // The restart waits ~1 s (reconnect.initial_delay_ms): one request queues, the next is refused.
    r.send(&json!({"jsonrpc":"2.0","id":2,"method":"ping"}));
    r.send(&json!({"jsonrpc":"2.0","id":3,"method":"ping"}));
    let v = r.recv(WAIT).unwrap();
    assert_eq!(v["id"], 3);
    assert_eq!(kind(&v), "queue_full");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("queue full"));
    let v = r.recv(WAIT).unwrap();
    assert_eq!(
        (v["id"].clone(), v["result"].clone()),
        (json!(2), json!({}))
    );
}

#[test]
fn passive_mode_sends_nothing_before_the_client_does() {
    let mut r = start(&[], &[]);
    assert!(
        wait_until(WAIT, || !pids(&r).is_empty()),
        "server should be started eagerly"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        recorded(&r).is_empty(),
        "router spoke first: {:?}",
        recorded(&r)
    );
    // A 2026-07-28 client starts with server/discover, not initialize: it passes as is.
    let discover = json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}});
    r.send(&discover);
    r.response(&json!(1));
    let rec = recorded(&r);
    assert_eq!(rec, vec![discover]);
}

#[test]
fn stateless_session_is_not_replayed_after_a_crash() {
    let mut r = start(&[], &[]);
    let meta = json!({"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}});
    r.request(json!(1), "server/discover", json!({"_meta": meta}));
    let v = r.request(
        json!(2),
        "tools/call",
        json!({"name":"crash","_meta": meta}),
    );
    assert_eq!(kind(&v), "upstream_exited");
    let v = r.request(
        json!(3),
        "tools/call",
        json!({"name":"echo","arguments":{"text":"x"},"_meta": meta}),
    );
    assert_eq!(v["result"]["content"][0]["text"], "x");
    assert!(recorded(&r).iter().all(|m| m["method"] != "initialize"));
}

#[test]
fn batches_pass_in_2025_03_26_and_are_refused_otherwise() {
    let mut r = start(&[], &[]);
    r.initialize("2025-03-26");
    r.send_raw(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}]\n");
    let v = r.recv(WAIT).unwrap();
    let ids = batch_ids(&v);
    assert_eq!(ids, [&json!(1), &json!(2)]);

    let mut r = start(&[], &[]);
    r.initialize("2025-06-18");
    r.send_raw(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}]\n");
    let v = r.recv(WAIT).unwrap();
    let errs = v.as_array().unwrap();
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0]["error"]["code"], -32600);
    assert!(errs[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2025-06-18"));
}

#[test]
fn a_batch_with_a_member_id_in_flight_gets_one_error_per_member() {
    let mut r = start(&[], &[]);
    r.initialize("2025-03-26");
    r.send(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":500}}}));
    r.send_raw(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}]\n");
    let v = r.recv(WAIT).unwrap();
    let ids = batch_ids(&v);
    assert_eq!(ids, [&json!(1), &json!(2)], "{v}");
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|m| m["error"]["code"] == -32600),
        "{v}"
    );
    // The request already in flight still gets its own answer, once.
    let (reply, seen) = r.response(&json!(1));
    assert_eq!(reply["result"]["content"][0]["text"], "slept");
    assert!(seen.is_empty(), "{seen:?}");
}

#[test]
fn a_batch_reply_loses_members_nobody_waits_for() {
    let mut r = start(&[], &[]);
    r.initialize("2025-03-26");
    r.send_raw(b"[{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"tools/call\",\"params\":{\"name\":\"sleep\",\"arguments\":{\"ms\":600}}},{\"jsonrpc\":\"2.0\",\"id\":\"b\",\"method\":\"ping\"}]\n");
    assert!(wait_until(WAIT, || recorded(&r)
        .iter()
        .any(|m| m.is_array())));
    // The client gives up on "a"; the server answers the whole batch anyway.
    r.send(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"a"}}));
    let v = r.recv(WAIT).unwrap();
    let ids = batch_ids(&v);
    assert_eq!(ids, [&json!("b")], "only the member still waited for: {v}");
    assert!(r.recv(Duration::from_millis(300)).is_none());
}

#[test]
fn a_server_that_cannot_start_gets_a_clear_error_per_request() {
    let mut r = RouterProc::start(&["--", "/nonexistent/mcp-server", "--flag"], &[]);
    let v = r.request(
        json!(1),
        "initialize",
        json!({"protocolVersion":"2025-06-18","capabilities":{}}),
    );
    assert_eq!(kind(&v), "upstream_unavailable");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("/nonexistent/mcp-server") && msg.contains("No such file"),
        "{msg}"
    );
    let v = r.request(json!(2), "ping", json!({}));
    assert_eq!(kind(&v), "upstream_unavailable");
}

#[test]
fn stdin_eof_exits_zero_and_leaves_no_process_behind() {
    let mut r = start(&["--grandchild"], &[]);
    r.initialize("2025-06-18");
    assert!(wait_until(WAIT, || pids(&r).len() == 2));
    let ps = pids(&r);
    r.close_stdin();
    let status = r
        .wait_exit(WAIT)
        .expect("router should exit after stdin EOF");
    assert_eq!(status.code(), Some(0));
    assert!(
        wait_until(Duration::from_secs(5), || ps.iter().all(|p| !alive(*p))),
        "orphans: {ps:?}"
    );
}

#[test]
fn a_server_ignoring_eof_is_killed_after_the_grace_period() {
    let mut r = start(&["--ignore-eof"], &[]);
    r.initialize("2025-06-18");
    let ps = pids(&r);
    let t0 = Instant::now();
    r.close_stdin();
    let status = r.wait_exit(WAIT).expect("router exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "grace period is honoured"
    );
    assert!(wait_until(Duration::from_secs(5), || ps
        .iter()
        .all(|p| !alive(*p))));
    assert!(r
        .stderr()
        .contains("did not exit after its stdin was closed"));
}

#[test]
fn sigterm_fails_pending_requests_and_exits_zero() {
    let mut r = start(&[], &[]);
    r.initialize("2025-06-18");
    let ps = pids(&r);
    r.send(&json!({"jsonrpc":"2.0","id":"long","method":"tools/call","params":{"name":"sleep","arguments":{"ms":20000}}}));
    r.send(&json!({"jsonrpc":"2.0","id":"short","method":"tools/call","params":{"name":"sleep","arguments":{"ms":300}}}));
    assert!(wait_until(WAIT, || recorded(&r).len() >= 4));
    r.signal("TERM");
    // The short one finishes within the grace period; the long one is failed.
    let (short, _) = r.response(&json!("short"));
    assert_eq!(short["result"]["content"][0]["text"], "slept");
    let (long, _) = r.response(&json!("long"));
    assert_eq!(long["error"]["message"], "router shutting down");
    assert_eq!(kind(&long), "shutting_down");
    let status = r.wait_exit(WAIT).expect("exit");
    assert_eq!(status.code(), Some(0));
    assert!(wait_until(Duration::from_secs(5), || ps
        .iter()
        .all(|p| !alive(*p))));
}

#[test]
fn child_stderr_goes_to_the_log_tagged_and_never_to_stdout() {
    let mut r = start(&[], &[]);
    r.initialize("2025-06-18");
    assert!(r.wait_log("fault_server", WAIT));
    let log = r.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("fault_server") && l.contains(" up"))
        .unwrap();
    assert!(
        line.contains("upstream="),
        "tagged with the server name: {line}"
    );
    assert!(r.recv(Duration::from_millis(200)).is_none());
}

#[test]
fn a_server_that_stops_reading_cannot_hang_shutdown() {
    let mut r = start(&["--stall-after-init"], &[]);
    r.initialize("2025-06-18");
    let ps = pids(&r);
    // Far more than a pipe holds: the router's writes to the child block.
    let text = "q".repeat(512 * 1024);
    for i in 0..8 {
        r.send(&json!({"jsonrpc":"2.0","id":i + 10,"method":"tools/call","params":{"name":"echo","arguments":{"text":text}}}));
    }
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    r.signal("TERM");
    let status = r
        .wait_exit(Duration::from_secs(15))
        .expect("router must exit");
    assert_eq!(status.code(), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    // Every request got exactly one answer.
    let mut ids = Vec::new();
    while let Some(v) = r.recv(Duration::from_millis(200)) {
        assert_eq!(kind(&v), "shutting_down", "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (10..18).collect::<Vec<i64>>());
    assert!(wait_until(Duration::from_secs(5), || ps
        .iter()
        .all(|p| !alive(*p))));
}
