//! WebSocket upstreams: a real MCP server (the Python SDK's `MCPServer`) served over
//! WebSocket by the test bridge. The official client through `mcp-router -- ws://…` must
//! see what it sees talking to the server directly; a dropped connection is re-established
//! with the client's handshake replayed.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use crate::interop::{assert_same, run_scenario};
use crate::support::ws_bridge::WsBridge;
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
