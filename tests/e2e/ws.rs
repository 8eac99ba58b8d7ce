//! WebSocket upstreams: a real MCP server (the Python SDK's `MCPServer`) served over
//! WebSocket by the test bridge. The official client through `mcp-router -- ws://…` must
//! see what it sees talking to the server directly; a dropped connection is re-established
//! with the client's handshake replayed. A scripted peer (`support::ws_peer`) misbehaves
//! on purpose: stops reading (shutdown must not wait on it), stops answering pings (the
//! connection is treated as lost), answers with a message over the size limit.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::interop::{assert_same, run_scenario};
use crate::support::ws_bridge::WsBridge;
use crate::support::ws_peer::{answer, Act, WsPeer};
use crate::support::*;

fn sdk_stdio(py: &Path) -> Vec<String> {
    vec![
        py.display().to_string(),
        py_script("sdk_server.py").display().to_string(),
        "--transport".into(),
        "stdio".into(),
    ]
}

fn same_over_ws(py: &Path, mode: &str) {
    let bridge = WsBridge::start(sdk_stdio(py));
    let direct_args = [vec!["--".to_owned()], sdk_stdio(py)].concat();
    let direct = run_scenario(py, mode, "sdk", &direct_args, "direct stdio");
    let routed_args = vec![
        "--".into(),
        router_bin().display().to_string(),
        "--".into(),
        bridge.url.clone(),
    ];
    let routed = run_scenario(py, mode, "sdk", &routed_args, "router → ws");
    assert_same(mode, "sdk", &direct, &routed);
    assert_eq!(
        bridge.offered_protocol.lock().unwrap().as_deref(),
        Some("mcp")
    );
}

#[test]
fn python_sdk_server_over_websocket_legacy() {
    let Some(py) = sdk_python() else { return };
    same_over_ws(&py, "legacy");
}

#[test]
fn python_sdk_server_over_websocket_2026() {
    let Some(py) = sdk_python() else { return };
    same_over_ws(&py, "2026-07-28");
}

#[test]
fn python_sdk_server_over_websocket_auto() {
    let Some(py) = sdk_python() else { return };
    same_over_ws(&py, "auto");
}

#[test]
fn a_dropped_websocket_is_re_established_with_the_session_replayed() {
    let Some(py) = sdk_python() else { return };
    let bridge = WsBridge::start(sdk_stdio(&py));
    let mut router = RouterProc::start(&["--", &bridge.url], &[("MCP_LOGGING_LEVEL", "info")]);
    let init = router.initialize("2025-11-25");
    assert_eq!(
        init["result"]["serverInfo"]["name"], "sdk-test-server",
        "{init}"
    );
    let echo = |router: &mut RouterProc, id: i64| {
        router.request(
            json!(id),
            "tools/call",
            json!({"name": "echo", "arguments": {"text": format!("hi {id}")}}),
        )
    };
    assert_eq!(echo(&mut router, 2)["result"]["content"][0]["text"], "hi 2");

    bridge.drop_connections();
    assert!(
        router.wait_log(
            "client session replayed on the new connection",
            Duration::from_secs(15)
        ),
        "{}",
        router.stderr()
    );
    // A fresh server process behind the new connection answers as if nothing happened.
    let after = echo(&mut router, 3);
    assert_eq!(after["result"]["content"][0]["text"], "hi 3", "{after}");
    assert_eq!(bridge.connections.load(Ordering::SeqCst), 2);
    router.finish_ok();
}

#[test]
fn an_unreachable_websocket_server_fails_requests_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/mcp");
    let mut router = RouterProc::start(&["--", &url], &[("MCP_LOCAL_REQUEST_TIMEOUT_MS", "1500")]);
    let reply = router.initialize("2025-11-25");
    let text = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("timeout") || text.contains("cannot connect"),
        "{reply}"
    );
    assert!(
        router.wait_log("cannot connect to server", Duration::from_secs(5)),
        "{}",
        router.stderr()
    );
    router.finish_ok();
}

/// `n` echo calls of `size` bytes each, ids from `first`.
fn big_calls(first: i64, n: i64, size: usize) -> Vec<Value> {
    let text = "z".repeat(size);
    (first..first + n)
        .map(|id| json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"text":text}}}))
        .collect()
}

fn initialize_request() -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}})
}

#[test]
fn shutdown_is_not_held_by_a_websocket_server_that_stopped_reading() {
    // 16 MiB to a server that reads nothing: the router's writes block once the socket
    // buffers are full. Shutdown must still end in its grace plus the bounded close.
    let grace = Duration::from_millis(500);
    for stop in [Stop::Stdin, Stop::Signal("TERM")] {
        let peer = WsPeer::deaf();
        let mut router = RouterProc::start(
            &["--", &peer.url],
            &[
                ("MCP_LOCAL_SHUTDOWN_GRACE_MS", "500"),
                ("MCP_LOGGING_LEVEL", "info"),
            ],
        );
        assert!(router.wait_log("connected", WAIT), "{}", router.stderr());
        assert_eq!(peer.connections(), 1);
        let mut requests = vec![initialize_request()];
        requests.extend(big_calls(1, 8, 2 * 1024 * 1024));
        let took = router.flood_then_stop(&requests, stop, grace + Duration::from_secs(3));
        eprintln!("{stop:?}: exited {took:?} after the stop");
    }
}

/// Fast reconnects, pings every 300 ms that must be answered within 500 ms.
fn fast_pings(url: &str) -> String {
    format!(
        "servers:\n  - name: ws\n    url: {url}\n    reconnect: {{ initial_delay_ms: 50, max_delay_ms: 300, max_attempts: 0 }}\ndirect_clients:\n  websocket: {{ ping_interval: 300ms, pong_timeout: 500ms }}\nlocal:\n  request_timeout_ms: 15000\n"
    )
}

fn start_with_config(yaml: &str) -> RouterProc {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mcp-router.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    RouterProc::start_in(dir, &["--config", cfg.to_str().unwrap()], &[])
}

#[test]
fn a_websocket_server_that_stops_answering_pings_is_dropped_and_reconnected() {
    // The first connection answers the handshake, then goes silent on the first call
    // (reads nothing more, answers no ping, keeps the socket open); later ones behave.
    let peer = WsPeer::start(Box::new(|conn, msg| match msg {
        None => Act::Reply(vec![]),
        Some(m) if conn == 0 && m["method"] == "tools/call" => Act::GoSilent,
        Some(m) => answer(m),
    }));
    let mut router = start_with_config(&fast_pings(&peer.url));
    let init = router.initialize("2025-06-18");
    assert_eq!(init["result"]["serverInfo"]["name"], "ws-peer", "{init}");
    let t0 = Instant::now();
    let lost = router.request(
        json!(1),
        "tools/call",
        json!({"name":"echo","arguments":{"text":"into the void"}}),
    );
    let took = t0.elapsed();
    // A request in flight does not excuse a missing pong: the call fails as soon as
    // the keepalive says the connection is dead, long before its 15 s timeout.
    assert_eq!(
        lost["error"]["data"]["kind"],
        "upstream_exited",
        "after {took:?}: {lost}\n{}",
        router.stderr()
    );
    assert!(
        took < Duration::from_millis(2500),
        "noticed only after {took:?}"
    );
    assert!(
        router
            .stderr()
            .contains("did not answer a keepalive within 500ms; the connection is treated as lost"),
        "{}",
        router.stderr()
    );
    assert!(
        router.wait_log(
            "client session replayed on the new connection",
            Duration::from_secs(10)
        ),
        "{}",
        router.stderr()
    );
    assert_eq!(peer.connections(), 2);
    let after = router.request(
        json!(2),
        "tools/call",
        json!({"name":"echo","arguments":{"text":"back"}}),
    );
    assert_eq!(
        after["result"]["echo"]["arguments"]["text"], "back",
        "{after}"
    );
    eprintln!("lost after {took:?}");
    router.finish_ok();
}

#[test]
fn an_oversized_websocket_reply_fails_its_request_and_keeps_the_connection() {
    // 150 000 bytes against a 64 KiB limit (under 4×: read, then refused).
    let peer = WsPeer::start(Box::new(|_, msg| match msg {
        Some(m) if m["params"]["arguments"]["text"] == "big" => {
            let reply = json!({"jsonrpc":"2.0","id":m["id"],"result":{"content":[{"type":"text","text":"x".repeat(150_000)}]}});
            Act::Reply(vec![reply.to_string()])
        }
        Some(m) => answer(m),
        None => Act::Reply(vec![]),
    }));
    let mut router = RouterProc::start(
        &["--", &peer.url],
        &[("MCP_LOCAL_MAX_MESSAGE_SIZE", "65536")],
    );
    router.initialize("2025-06-18");
    let big = router.request(
        json!(1),
        "tools/call",
        json!({"name":"echo","arguments":{"text":"big"}}),
    );
    assert_eq!(
        big["error"]["data"]["kind"],
        "too_large",
        "{big}\n{}",
        router.stderr()
    );
    let next = router.request(
        json!(2),
        "tools/call",
        json!({"name":"echo","arguments":{"text":"small"}}),
    );
    assert_eq!(
        next["result"]["echo"]["arguments"]["text"], "small",
        "{next}"
    );
    assert_eq!(peer.connections(), 1, "{}", router.stderr());
    router.finish_ok();
    assert!(
        !router.stderr().contains("reconnecting"),
        "the connection was dropped: {}",
        router.stderr()
    );
}
