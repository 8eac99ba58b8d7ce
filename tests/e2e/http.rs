//! Streamable HTTP upstreams: the official Python SDK client, once connected straight to a
//! real HTTP server and once through `mcp-router -- http://…/mcp` (client → router over
//! stdio → server over HTTP), must see the same results. Servers: the Python SDK's
//! `MCPServer` (SSE and JSON replies, stateful and stateless) and server-everything's
//! `streamableHttp` mode. Plus: a server restarted mid-session (404 → re-initialize).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::interop::{assert_same, run_scenario};
use crate::support::*;

/// A test server and the URL clients use.
struct HttpServer {
    _process: NetServer,
    url: String,
}

fn sdk_http_server(py: &Path, flags: &[&str]) -> HttpServer {
    let server = sdk_net_server(py, "streamable-http", free_port(), flags);
    HttpServer {
        url: server.url("/mcp"),
        _process: server,
    }
}

fn everything_http_server() -> Option<HttpServer> {
    let js = server_everything()?;
    let port = free_port();
    let server = net_server(
        Command::new("node")
            .arg(js)
            .arg("streamableHttp")
            .env("PORT", port.to_string()),
        port,
    );
    Some(HttpServer {
        url: server.url("/mcp"),
        _process: server,
    })
}

fn same_over_http(py: &Path, mode: &str, peer: &str, url: &str) {
    same_over_http_with(py, mode, peer, url, &[]);
}

fn same_over_http_with(py: &Path, mode: &str, peer: &str, url: &str, extra: &[&str]) {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let direct_args = [extra.clone(), vec!["--url".into(), url.into()]].concat();
    let direct = run_scenario(py, mode, peer, &direct_args, "direct http");
    let routed_args = [
        extra,
        vec![
            "--".into(),
            router_bin().display().to_string(),
            "--".into(),
            url.into(),
        ],
    ]
    .concat();
    let routed = run_scenario(py, mode, peer, &routed_args, "router → http");
    assert_same(mode, peer, &direct, &routed);
}

#[test]
fn python_sdk_http_server_sse_replies() {
    let Some(py) = sdk_python() else { return };
    let server = sdk_http_server(&py, &[]);
    for mode in ["legacy", "auto"] {
        same_over_http(&py, mode, "sdk", &server.url);
    }
}

#[test]
fn python_sdk_http_server_json_replies() {
    let Some(py) = sdk_python() else { return };
    let server = sdk_http_server(&py, &["--json-response"]);
    // With JSON replies the server has no stream to ask the client on: the SDK's own
    // client fails that tool directly too, so the scenario leaves it out here.
    same_over_http_with(&py, "legacy", "sdk", &server.url, &["--no-server-requests"]);
}

#[test]
fn python_sdk_http_server_stateless_2026() {
    let Some(py) = sdk_python() else { return };
    let server = sdk_http_server(&py, &["--stateless"]);
    same_over_http(&py, "2026-07-28", "sdk", &server.url);
}

#[test]
fn server_everything_streamable_http() {
    let Some(py) = sdk_python() else { return };
    let Some(server) = everything_http_server() else {
        return;
    };
    for mode in ["legacy", "auto"] {
        same_over_http(&py, mode, "everything", &server.url);
    }
}

/// The server restarts mid-session (its sessions are gone: 404): the router replays the
/// client's handshake on a new session and the next request succeeds, with no error seen.
#[test]
fn a_lost_session_is_re_established() {
    let Some(py) = sdk_python() else { return };
    let port = free_port();
    let start = || {
        let server = sdk_net_server(&py, "streamable-http", port, &[]);
        HttpServer {
            url: server.url("/mcp"),
            _process: server,
        }
    };
    let server = start();
    let mut router = RouterProc::start(&["--", &server.url], &[]);
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
    let first = echo(&mut router, 2);
    assert_eq!(first["result"]["content"][0]["text"], "hi 2", "{first}");

    drop(server);
    let _server = start();
    let second = echo(&mut router, 3);
    assert_eq!(second["result"]["content"][0]["text"], "hi 3", "{second}");
    assert!(
        router.wait_log("replaying the client's handshake", Duration::from_secs(5)),
        "{}",
        router.stderr()
    );
    router.finish_ok();
}

/// Nothing listens: the request gets a JSON-RPC error naming the server, and the router
/// keeps serving.
#[test]
fn an_unreachable_server_is_an_error_for_that_request() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut router = RouterProc::start(&["--", &url], &[]);
    let reply: Value = router.initialize("2025-11-25");
    let message = reply["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("cannot reach server") && message.contains(&url),
        "{reply}"
    );
    assert_eq!(
        reply["error"]["data"]["kind"], "upstream_unavailable",
        "{reply}"
    );
    let again = router.request(json!(2), "tools/list", json!({}));
    assert!(again["error"].is_object(), "{again}");
    router.finish_ok();
}

fn same_over_sse(py: &Path, mode: &str, peer: &str, url: &str) {
    let direct = run_scenario(
        py,
        mode,
        peer,
        &["--sse-url".into(), url.into()],
        "direct sse",
    );
    let routed_args = vec![
        "--".into(),
        router_bin().display().to_string(),
        "--".into(),
        url.into(),
    ];
    let routed = run_scenario(py, mode, peer, &routed_args, "router → sse");
    assert_same(mode, peer, &direct, &routed);
}

#[test]
fn python_sdk_legacy_sse_server() {
    let Some(py) = sdk_python() else { return };
    let port = free_port();
    let _server = sdk_net_server(&py, "sse", port, &[]);
    same_over_sse(
        &py,
        "legacy",
        "sdk",
        &format!("http://127.0.0.1:{port}/sse"),
    );
}

#[test]
fn server_everything_legacy_sse() {
    let Some(py) = sdk_python() else { return };
    let Some(js) = server_everything() else {
        return;
    };
    let port = free_port();
    let _server = net_server(
        Command::new("node")
            .arg(js)
            .arg("sse")
            .env("PORT", port.to_string()),
        port,
    );
    same_over_sse(
        &py,
        "legacy",
        "everything",
        &format!("http://127.0.0.1:{port}/sse"),
    );
}

/// The SSE server restarts: the stream drops, the router opens a new one, replays the
/// client's handshake on the new session, and the next request succeeds.
#[test]
fn a_dropped_sse_stream_is_reopened_with_the_session_replayed() {
    let Some(py) = sdk_python() else { return };
    let port = free_port();
    let start = || {
        let server = sdk_net_server(&py, "sse", port, &[]);
        HttpServer {
            url: server.url("/sse"),
            _process: server,
        }
    };
    let server = start();
    let mut router = RouterProc::start(&["--", &server.url], &[("MCP_LOGGING_LEVEL", "info")]);
    let init = router.initialize("2024-11-05");
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
    drop(server);
    let _server = start();
    assert!(
        router.wait_log(
            "client session replayed on the new SSE session",
            Duration::from_secs(20)
        ),
        "{}",
        router.stderr()
    );
    let after = echo(&mut router, 3);
    assert_eq!(after["result"]["content"][0]["text"], "hi 3", "{after}");
    router.finish_ok();
}

/// A server with an event store closes a request's SSE reply mid-way (it wants the client
/// to poll): the router resumes the stream with `Last-Event-ID` and the client gets every
/// notification and the response, none twice.
#[test]
fn a_reply_stream_closed_by_the_server_is_resumed_with_last_event_id() {
    let Some(py) = sdk_python() else { return };
    let server = sdk_http_server(&py, &["--resumable"]);
    let mut router = RouterProc::start(&["--", &server.url], &[("MCP_LOGGING_LEVEL", "debug")]);
    let init = router.initialize("2025-11-25");
    assert!(init["result"].is_object(), "{init}");
    router.send(&json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
        "params":{"name":"interrupted","arguments":{},"_meta":{"progressToken":"p7"}}}));
    let (reply, others) = router.response(&json!(7));
    assert_eq!(reply["result"]["content"][0]["text"], "resumed", "{reply}");
    let progress: Vec<&Value> = others
        .iter()
        .filter(|m| m["method"] == "notifications/progress" && m["params"]["progressToken"] == "p7")
        .collect();
    assert_eq!(progress.len(), 2, "{others:?}");
    assert!(
        router.stderr().contains("resuming"),
        "the stream was not resumed: {}",
        router.stderr()
    );
    router.finish_ok();
}

/// 2026-07-28 over HTTP: a tool argument marked `x-mcp-header` must travel as an
/// `Mcp-Param-*` header too, and the SDK server checks it. The router learns the marks from
/// the `tools/list` reply it forwards (a call before any listing lacks the header, and the
/// server says so), then mirrors the argument on every call.
#[test]
fn mcp_param_headers_are_mirrored_after_tools_list() {
    let Some(py) = sdk_python() else { return };
    let server = sdk_http_server(&py, &["--stateless"]);
    let mut router = RouterProc::start(&["--", &server.url], &[]);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"}
    });
    let call = |router: &mut RouterProc, id: i64| {
        router.request(
            json!(id),
            "tools/call",
            json!({"name": "forecast", "arguments": {"region": "Zürich north", "days": 2}, "_meta": meta}),
        )
    };
    let before = call(&mut router, 1);
    assert_eq!(
        before["error"]["code"], -32020,
        "the server did not check the header: {before}"
    );
    let list = router.request(json!(2), "tools/list", json!({"_meta": meta}));
    assert!(list["result"]["tools"].is_array(), "{list}");
    let after = call(&mut router, 3);
    assert_eq!(
        after["result"]["content"][0]["text"], "sunny in Zürich north for 2 day(s)",
        "{after}"
    );
    router.finish_ok();
}

// ---- Misbehaving servers, start-up speed, limits, and secrets in URLs ----

/// `http_faults.py` (a deliberately misbehaving server, standard library only) on a free
/// port, with `flags`.
fn faults_server(flags: &[&str]) -> NetServer {
    let port = free_port();
    net_server(
        Command::new(python())
            .arg(py_script("http_faults.py"))
            .args(["--port", &port.to_string()])
            .args(flags),
        port,
    )
}

/// One POST straight to a server (no router), to warm it up; returns the raw answer.
fn post_direct(port: u16, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn init_body() -> String {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}).to_string()
}

fn echo(router: &mut RouterProc, id: i64, text: &str) -> Value {
    router.request(
        json!(id),
        "tools/call",
        json!({"name": "echo", "arguments": {"text": text}}),
    )
}

/// Defect: a lone URL was probed with a GET first, and a stateless server's GET stream
/// never sends the `endpoint` event the probe waited 2 s for. Now the client's first
/// message is the probe (the spec's backwards-compatibility rule): its reply comes in the
/// server's own time.
#[test]
fn a_stateless_server_answers_the_first_request_at_once() {
    let Some(py) = sdk_python() else { return };
    let server = sdk_net_server(&py, "streamable-http", free_port(), &["--stateless"]);
    // Warm the server (imports, first-request costs) so the bound measures the router.
    let warm = post_direct(server.port, "/mcp", &init_body());
    assert!(warm.contains("sdk-test-server"), "{warm}");
    let mut router = RouterProc::start(&["--", &server.url("/mcp")], &[]);
    let t0 = std::time::Instant::now();
    let init = router.initialize("2025-11-25");
    let took = t0.elapsed();
    assert_eq!(
        init["result"]["serverInfo"]["name"], "sdk-test-server",
        "{init}"
    );
    assert!(
        took < Duration::from_secs(1),
        "the first reply took {took:?} (a probe waited for the GET stream?)\n{}",
        router.stderr()
    );
    let reply = echo(&mut router, 2, "quick");
    assert_eq!(reply["result"]["content"][0]["text"], "quick", "{reply}");
    router.finish_ok();
}

/// A legacy HTTP+SSE server whose stream is not at `…/sse`: the first POST (405 from the
/// SDK's GET-only route) says "legacy", the router opens the SSE stream, sends that first
/// message there, and the session carries on as legacy SSE.
#[test]
fn a_legacy_sse_server_at_any_path_is_found_by_its_answer_to_the_first_post() {
    let Some(py) = sdk_python() else { return };
    let server = sdk_net_server(&py, "sse", free_port(), &["--sse-path", "/events"]);
    let mut router = RouterProc::start(
        &["--", &server.url("/events")],
        &[("MCP_LOGGING_LEVEL", "info")],
    );
    let init = router.initialize("2024-11-05");
    assert_eq!(
        init["result"]["serverInfo"]["name"],
        "sdk-test-server",
        "{init}\n{}",
        router.stderr()
    );
    let reply = echo(&mut router, 2, "over sse");
    assert_eq!(reply["result"]["content"][0]["text"], "over sse", "{reply}");
    assert!(
        router.stderr().contains("legacy HTTP+SSE"),
        "{}",
        router.stderr()
    );
    router.finish_ok();
}

/// Defect: notifications were POSTed inline without a bound, so a server that accepts
/// one and never answers held back every later message. Now a later request still gets
/// the server's reply (well within its 5 s timeout), and the stuck POST is given up on.
/// Defect: a JSON-RPC batch (protocol 2025-03-26) was POSTed like a notification: only
/// its status was read, so its requests waited for their timeout. Now its reply is read
/// and every member is answered.
#[test]
fn a_batch_over_streamable_http_gets_its_replies() {
    let server = faults_server(&[]);
    let mut router = RouterProc::start(
        &["--", &server.url("/mcp")],
        &[("MCP_LOCAL_REQUEST_TIMEOUT_MS", "5000")],
    );
    router.initialize("2025-03-26");
    let started = std::time::Instant::now();
    router.send_raw(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}]\n");
    let v = router
        .recv(Duration::from_secs(10))
        .expect("a reply to the batch");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered by a timeout: {v}"
    );
    let ids = batch_ids(&v);
    assert_eq!(ids, [&json!(1), &json!(2)], "{v}");
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|m| m.get("result").is_some()),
        "{v}"
    );
    router.finish_ok();
}

#[test]
fn a_notification_the_server_never_acknowledges_does_not_hold_back_later_requests() {
    let server = faults_server(&["--hang-notifications"]);
    let mut router = RouterProc::start(
        &["--", &server.url("/mcp")],
        &[
            ("MCP_LOCAL_REQUEST_TIMEOUT_MS", "5000"),
            ("MCP_LOGGING_LEVEL", "info"),
        ],
    );
    let init = router.initialize("2025-11-25");
    assert_eq!(
        init["result"]["serverInfo"]["name"], "http-faults",
        "{init}"
    );
    let reply = echo(&mut router, 2, "still here");
    assert_eq!(
        reply["result"]["content"][0]["text"],
        "still here",
        "{reply}\n{}",
        router.stderr()
    );
    assert!(
        router.wait_log("notifications/initialized", Duration::from_secs(10)),
        "the stuck POST was not reported: {}",
        router.stderr()
    );
    router.finish_ok();
}

/// Defect: request POSTs were never aborted, so with a server that never answers, the
/// router never exited. Now it exits within `shutdown_grace_ms` plus a moment, on stdin
/// EOF and on SIGTERM, and the client hears why its request ended.
#[test]
fn a_request_the_server_never_answers_does_not_keep_the_router_alive() {
    const GRACE: Duration = Duration::from_millis(1000);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("seen.txt");
    let server = faults_server(&[
        "--session",
        "--hang-tools",
        "--hang-delete",
        "--record",
        record.to_str().unwrap(),
    ]);
    for how in ["eof", "sigterm"] {
        let mut router = RouterProc::start(
            &["--", &server.url("/mcp")],
            &[("MCP_LOCAL_SHUTDOWN_GRACE_MS", "1000")],
        );
        let init = router.initialize("2025-11-25");
        assert!(init["result"].is_object(), "{init}");
        router.send(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
            "params":{"name":"echo","arguments":{"text":"never"}}}));
        let posted = || {
            read_lines(&record)
                .iter()
                .filter(|l| l.starts_with("POST /mcp tools/call"))
                .count()
        };
        let before = if how == "eof" { 0 } else { 1 };
        assert!(
            wait_until(Duration::from_secs(10), || posted() > before),
            "the server never saw the call: {}",
            router.stderr()
        );
        let t0 = std::time::Instant::now();
        match how {
            "eof" => router.close_stdin(),
            _ => router.signal("TERM"),
        }
        let status = router.wait_exit(GRACE + Duration::from_secs(5));
        let took = t0.elapsed();
        assert!(
            status.is_some() && took < GRACE + Duration::from_millis(1500),
            "{how}: the router took {took:?} to exit (grace {GRACE:?}): {}",
            router.stderr()
        );
        let (reply, _) = router.response(&json!(2));
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("shutting down")),
            "{how}: {reply}"
        );
    }
}

/// The same for legacy SSE: its POSTs were unbounded and not raced with shutdown, so a
/// server that never acknowledged one kept the router from exiting.
#[test]
fn a_legacy_sse_post_the_server_never_acknowledges_does_not_keep_the_router_alive() {
    const GRACE: Duration = Duration::from_millis(1000);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("seen.txt");
    let server = faults_server(&[
        "--legacy-endpoint",
        "/messages/?session_id=1",
        "--hang-posts",
        "--record",
        record.to_str().unwrap(),
    ]);
    let mut router = RouterProc::start(
        &["--", &server.url("/sse")],
        &[("MCP_LOCAL_SHUTDOWN_GRACE_MS", "1000")],
    );
    router.send(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}));
    assert!(
        wait_until(Duration::from_secs(10), || read_lines(&record)
            .iter()
            .any(|l| l.starts_with("POST /messages/?session_id=1 initialize"))),
        "the server never saw the initialize: {}",
        router.stderr()
    );
    let t0 = std::time::Instant::now();
    router.close_stdin();
    let status = router.wait_exit(GRACE + Duration::from_secs(5));
    let took = t0.elapsed();
    assert!(
        status.is_some() && took < GRACE + Duration::from_millis(1500),
        "the router took {took:?} to exit (grace {GRACE:?}): {}",
        router.stderr()
    );
    let (reply, _) = router.response(&json!(0));
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("shutting down")),
        "{reply}"
    );
}

/// Defect: one HTTP task per request, uncapped. With `max_concurrent_requests: 2` the
/// server never sees more than 2 request POSTs at once, and every request is still
/// answered exactly once.
#[test]
fn request_posts_are_capped_by_max_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.txt");
    let server = faults_server(&["--hold-ms", "300", "--stats", stats.to_str().unwrap()]);
    let mut router = RouterProc::start(
        &["--", &server.url("/mcp")],
        &[("MCP_LOCAL_MAX_CONCURRENT_REQUESTS", "2")],
    );
    let init = router.initialize("2025-11-25");
    assert!(init["result"].is_object(), "{init}");
    const N: i64 = 8;
    for n in 1..=N {
        router.send(&json!({"jsonrpc":"2.0","id":n,"method":"tools/call",
            "params":{"name":"hold","arguments":{"n":n}}}));
    }
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < N as usize {
        let Some(v) = router.recv(WAIT) else {
            panic!("only {seen:?} answered\n{}", router.stderr());
        };
        let id = v["id"].as_i64().expect("a response with an id");
        assert_eq!(
            v["result"]["content"][0]["text"],
            format!("held {id}"),
            "{v}"
        );
        *seen.entry(id).or_insert(0) += 1;
        assert_eq!(seen[&id], 1, "request {id} answered twice");
    }
    // Nothing more (no second answer to any of them).
    assert!(router.recv(Duration::from_millis(500)).is_none());
    let text = std::fs::read_to_string(&stats).unwrap_or_default();
    assert!(
        text.contains("max_concurrent=2 ") && text.contains("answered=8"),
        "the server saw: {text}"
    );
    router.finish_ok();
}

/// Defect: the GET stream honoured `retry: 0` literally, so a server that answers it and
/// closes the stream at once got a hot reconnect loop. Now the wait has a floor and backs
/// off on repeated immediate closes: a handful of GETs in 2 s, not thousands.
#[test]
fn a_get_stream_closed_at_once_with_retry_zero_is_not_reopened_in_a_hot_loop() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("seen.txt");
    let server = faults_server(&[
        "--session",
        "--get-retry-zero",
        "--record",
        record.to_str().unwrap(),
    ]);
    let mut router = RouterProc::start(&["--", &server.url("/mcp")], &[]);
    let init = router.initialize("2025-11-25");
    assert!(init["result"].is_object(), "{init}");
    let gets = || recorded(&record, "GET /mcp");
    assert!(
        wait_until(Duration::from_secs(5), || gets() >= 1),
        "no GET stream was opened: {}",
        router.stderr()
    );
    std::thread::sleep(Duration::from_secs(2));
    let n = gets();
    assert!(n <= 10, "{n} GETs in about 2 s");
    let reply = echo(&mut router, 2, "fine");
    assert_eq!(reply["result"]["content"][0]["text"], "fine", "{reply}");
    router.finish_ok();
}

/// Listens on a loopback port and notes every connection (and its first bytes).
struct Tripwire {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn tripwire() -> Tripwire {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            sink.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    Tripwire { port, seen }
}

/// Defect: a legacy SSE `endpoint` event may name any URL, and every message (with the
/// configured headers: the bearer token) was POSTed there. Now an endpoint on another
/// origin is refused: that listener sees nothing, the client gets a clear error.
#[test]
fn an_sse_endpoint_on_another_origin_is_refused() {
    let thief = tripwire();
    let server = faults_server(&[
        "--legacy-endpoint",
        &format!("http://127.0.0.1:{}/steal?sessionId=abc", thief.port),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("router.yaml");
    std::fs::write(
        &cfg,
        format!(
            "servers:\n  - name: legacy\n    url: {}\n    headers:\n      Authorization: Bearer TOPSECRET-e2e\n",
            server.url("/sse")
        ),
    )
    .unwrap();
    let mut router = RouterProc::start(
        &["--config", cfg.to_str().unwrap()],
        &[("MCP_LOGGING_LEVEL", "debug")],
    );
    let init = router.initialize("2024-11-05");
    let message = init["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("another origin") && message.contains(&server.url("/sse")),
        "{init}\n{}",
        router.stderr()
    );
    let again = echo(&mut router, 2, "x");
    assert!(again["error"].is_object(), "{again}");
    assert!(
        router.stderr().contains("another origin"),
        "{}",
        router.stderr()
    );
    std::thread::sleep(Duration::from_millis(300));
    let seen = thief.seen.lock().unwrap().clone();
    assert!(seen.is_empty(), "the other origin was contacted: {seen:?}");
    assert_no_secret(&router.stderr(), "TOPSECRET");
    router.finish_ok();
}

/// Defect: reqwest errors and our log lines printed whole URLs, userinfo and query
/// (API keys) included, to the log and into error replies. At `trace`, against a server
/// that is unreachable, one that refuses, and one that works: neither secret appears in
/// the log or in any reply.
#[test]
fn secrets_in_a_server_url_stay_out_of_logs_and_replies() {
    let server = faults_server(&[]);
    let dead = free_port();
    let urls = [
        format!("http://user:PWSECRET@127.0.0.1:{dead}/mcp?api_key=QSECRET"),
        format!(
            "http://user:PWSECRET@127.0.0.1:{}/nope?api_key=QSECRET",
            server.port
        ),
        format!(
            "http://user:PWSECRET@127.0.0.1:{}/mcp?api_key=QSECRET",
            server.port
        ),
    ];
    for (i, url) in urls.iter().enumerate() {
        let mut router = RouterProc::start(&["--", url], &[("MCP_LOGGING_LEVEL", "trace")]);
        let mut replies = vec![router.initialize("2025-11-25")];
        replies.push(echo(&mut router, 2, "hello"));
        if i == 2 {
            assert_eq!(
                replies[1]["result"]["content"][0]["text"], "hello",
                "{replies:?}"
            );
        } else {
            assert!(replies[1]["error"].is_object(), "{replies:?}");
        }
        router.finish_ok();
        let log = router.stderr();
        assert!(log.contains("TRACE") || log.contains("DEBUG"), "{log}");
        for secret in ["PWSECRET", "QSECRET"] {
            assert_no_secret(&log, secret);
            for r in &replies {
                assert!(!r.to_string().contains(secret), "{url}: {r}");
            }
        }
    }
}

/// `config check` prints server URLs with their userinfo and query masked.
#[test]
fn config_check_masks_userinfo_and_query_of_server_urls() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("router.yaml");
    std::fs::write(
        &cfg,
        "servers:\n  - name: a\n    url: https://user:PWSECRET@api.example.com/mcp?api_key=QSECRET\n",
    )
    .unwrap();
    let out = Command::new(router_bin())
        .args(["config", "check", "--config", cfg.to_str().unwrap()])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("https://***@api.example.com/mcp?***"),
        "{text}"
    );
    assert_no_secret(&text, "PWSECRET");
    assert_no_secret(&text, "QSECRET");
}
