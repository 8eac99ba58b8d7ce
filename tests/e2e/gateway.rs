//! The mcp-bridge gateway client: the official Python SDK client → mcp-router → the test
//! gateway (`tests/gateway`, which behaves on the wire as mcp-bridge does) → a real MCP
//! server, over WebSocket and the TCP binary protocol, plain and TLS, with bearer, mTLS
//! and OAuth2 credentials; and what happens when the gateway misbehaves or goes away.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::interop::{assert_same, run_scenario};
use crate::support::gateway::{pki, GatewayProc};
use crate::support::*;

pub(crate) const TOKEN: &str = "s3cr3t-gw-token-4711";

fn sdk_backend(py: &Path) -> String {
    format!(
        "{} {} --transport stdio",
        py.display(),
        py_script("sdk_server.py").display()
    )
}

/// The bundled echo server (fast, no peers needed): answers every request with its params.
pub(crate) fn echo_backend() -> String {
    let bin = built_bin_dir().join("examples").join("echo_server");
    assert!(
        bin.exists(),
        "{} is missing: build with --all-targets",
        bin.display()
    );
    bin.display().to_string()
}

pub(crate) fn gateway(backend: &str, extra: &[&str]) -> GatewayProc {
    let mut args = vec!["--backend".to_owned(), backend.to_owned()];
    args.extend(extra.iter().map(|s| s.to_string()));
    GatewayProc::start(&args)
}

/// Writes `mcp-router.yaml` into `dir` and returns its path.
fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("mcp-router.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn token_file(dir: &Path) -> PathBuf {
    let p = dir.join("token");
    std::fs::write(&p, format!("{TOKEN}\n")).unwrap();
    p
}

/// The scenario directly against the SDK server, and through router + gateway.
fn same_through_gateway(py: &Path, mode: &str, config: &Path) {
    same_through_gateway_env(py, mode, config, &[]);
}

/// The same, with `env` (`NAME=value`) set for the router only.
fn same_through_gateway_env(py: &Path, mode: &str, config: &Path, env: &[&str]) {
    let direct_args = vec![
        "--gateway-subset".to_owned(),
        "--".into(),
        py.display().to_string(),
        py_script("sdk_server.py").display().to_string(),
        "--transport".into(),
        "stdio".into(),
    ];
    let direct = run_scenario(py, mode, "sdk", &direct_args, "direct");
    let mut routed_args = vec!["--gateway-subset".to_owned(), "--".into()];
    if !env.is_empty() {
        routed_args.push("env".into());
        routed_args.extend(env.iter().map(|e| e.to_string()));
    }
    routed_args.extend([
        router_bin().display().to_string(),
        "--config".into(),
        config.display().to_string(),
    ]);
    let routed = run_scenario(py, mode, "sdk", &routed_args, "router → gateway");
    assert_same(mode, "sdk", &direct, &routed);
}

#[test]
fn python_sdk_through_gateway_websocket_bearer() {
    let Some(py) = sdk_python() else { return };
    let gw = gateway(
        &sdk_backend(&py),
        &["--ws", "127.0.0.1:0", "--token", TOKEN],
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "gateway:\n  url: {}\n  auth:\n    type: bearer\n    token_file: {}\n",
            gw.ws_url("/mcp"),
            token_file(dir.path()).display()
        ),
    );
    for mode in ["legacy", "auto"] {
        same_through_gateway(&py, mode, &cfg);
    }
}

#[test]
fn python_sdk_through_gateway_tcp() {
    let Some(py) = sdk_python() else { return };
    let gw = gateway(
        &sdk_backend(&py),
        &["--tcp", "127.0.0.1:0", "--tcp-mode", "handler"],
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "gateway:\n  url: {}\n  auth:\n    token_file: {}\n",
            gw.tcp_url(),
            token_file(dir.path()).display()
        ),
    );
    for mode in ["legacy", "auto"] {
        same_through_gateway(&py, mode, &cfg);
    }
    // The handler closes the connection on a message without an id (the client's
    // `notifications/initialized`): none was sent. The gateway logs
    // that refusal as `[gw] tcp …: invalid request id: …` (tests/gateway/src/tcp.rs); the
    // log must also show it served the router in handler mode, or a count of 0 proves
    // nothing.
    let log = gw.log();
    assert!(log.contains("connected (Handler mode"), "{log}");
    assert_eq!(gw.count(": invalid request id: "), 0, "{log}");
}

#[test]
fn python_sdk_through_gateway_tls_both_protocols() {
    let Some(py) = sdk_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut args = vec![
        "--ws",
        "127.0.0.1:0",
        "--tcp",
        "127.0.0.1:0",
        "--token",
        TOKEN,
    ];
    let tls = pki.gateway_args(false);
    args.extend(tls.iter().map(String::as_str));
    let gw = gateway(&sdk_backend(&py), &args);
    for url in [gw.wss_url("/"), gw.tcps_url()] {
        let cfg = write_config(
            dir.path(),
            &format!(
                "gateway:\n  url: {url}\n  auth:\n    token_file: {}\n  tls:\n    ca_cert_path: {}\n",
                token_file(dir.path()).display(),
                pki.ca.display()
            ),
        );
        same_through_gateway(&py, "legacy", &cfg);
    }
}

/// A router started with `yaml` as its config file (in its own temp dir).
pub(crate) fn router(yaml: &str, env: &[(&str, &str)], extra: &[&str]) -> RouterProc {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), yaml);
    let mut args = vec!["--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    RouterProc::start_in(dir, &args, env)
}

pub(crate) fn echo_call(r: &mut RouterProc, id: i64, text: &str) -> Value {
    r.request(
        json!(id),
        "tools/call",
        json!({"name":"echo","arguments":{"text":text}}),
    )
}

pub(crate) fn echo_text(reply: &Value) -> Option<&str> {
    reply["result"]["content"][0]["text"].as_str()
}

pub(crate) fn fast_reconnect() -> &'static str {
    "    reconnect:\n      initial_delay_ms: 50\n      max_delay_ms: 300\n      max_attempts: 0\n      jitter: 0.1\n"
}

/// One connection instead of the default pool (tests of what one connection does).
pub(crate) fn one_connection() -> &'static str {
    "    pool:\n      enabled: false\n"
}

#[test]
fn gateway_flag_with_env_token_and_no_secret_in_trace_logs() {
    let gw = gateway(&echo_backend(), &["--ws", "127.0.0.1:0", "--token", TOKEN]);
    let mut r = RouterProc::start(
        &["--gateway", &gw.ws_url("/"), "--log-level", "trace"],
        &[("MCP_AUTH_TOKEN", TOKEN)],
    );
    r.initialize("2025-06-18");
    let reply = echo_call(&mut r, 1, "through the gateway");
    assert_eq!(echo_text(&reply), Some("through the gateway"), "{reply}");
    r.finish_ok();
    let log = r.stderr();
    assert!(log.contains("connected"), "{log}");
    assert_no_secret(&log, TOKEN);
}

#[test]
fn wrong_token_is_a_clear_error_without_the_token() {
    let gw = gateway(&echo_backend(), &["--ws", "127.0.0.1:0", "--token", TOKEN]);
    let wrong = "wr0ng-t0ken-0815";
    let mut r = router(
        &format!(
            "gateway:\n  url: {}\n  connection:\n    reconnect:\n      initial_delay_ms: 50\n      max_attempts: 2\n",
            gw.ws_url("/")
        ),
        &[("MCP_AUTH_TOKEN", wrong)],
        &["--log-level", "debug"],
    );
    let reply = r.request(json!(1), "ping", json!({}));
    let text = reply["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.contains("refused the credentials") && text.contains("gateway.auth"),
        "{reply}"
    );
    assert!(!text.contains(wrong));
    r.finish_ok();
    assert_no_secret(&r.stderr(), wrong);
    assert!(
        gw.count("401") >= 1 || gw.log().to_lowercase().contains("unauthorized"),
        "{}",
        gw.log()
    );
}

#[test]
fn missing_token_stops_the_start_with_the_lookup_order() {
    let mut r = router("gateway:\n  url: ws://127.0.0.1:9/\n", &[], &[]);
    let status = r.wait_exit(WAIT).expect("router exits");
    assert!(!status.success());
    assert!(
        r.stderr().contains("no auth token found (check token_secure_key, MCP_AUTH_TOKEN env var, or token_file config)"),
        "{}",
        r.stderr()
    );
}

#[test]
fn tls_errors_say_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut args = vec!["--ws", "127.0.0.1:0", "--tcp", "127.0.0.1:0"];
    let tls = pki.gateway_args(true);
    args.extend(tls.iter().map(String::as_str));
    let gw = gateway(&echo_backend(), &args);
    // 1. No CA configured: unknown issuer.
    let mut r = router(
        &format!(
            "gateway:\n  url: {}\n  auth:\n    type: mtls\n    client_cert: {}\n    client_key: {}\n  connection:\n    reconnect:\n      max_attempts: 1\n",
            gw.wss_url("/"),
            pki.client_cert.display(),
            pki.client_key.display()
        ),
        &[],
        &[],
    );
    let reply = r.request(json!(1), "ping", json!({}));
    let text = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains("gateway.tls.ca_cert_path"), "{reply}");
    r.finish_ok();
    // 2. The gateway wants a client certificate and gets none.
    let mut r = router(
        &format!(
            "gateway:\n  url: {}\n  auth:\n    token_file: {}\n  tls:\n    ca_cert_path: {}\n  connection:\n    reconnect:\n      max_attempts: 1\n",
            gw.tcps_url(),
            token_file(dir.path()).display(),
            pki.ca.display()
        ),
        &[],
        &[],
    );
    let reply = r.request(json!(1), "ping", json!({}));
    let text = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains("client_cert"), "{reply}");
    r.finish_ok();
    // 3. mTLS done right, on both protocols.
    for url in [gw.wss_url("/"), gw.tcps_url()] {
        let mut r = router(
            &format!(
                "gateway:\n  url: {url}\n  auth:\n    type: mtls\n    client_cert: {}\n    client_key: {}\n  tls:\n    ca_cert_path: {}\n",
                pki.client_cert.display(),
                pki.client_key.display(),
                pki.ca.display()
            ),
            &[],
            &[],
        );
        r.initialize("2025-06-18");
        assert_eq!(
            echo_text(&echo_call(&mut r, 2, "mtls")),
            Some("mtls"),
            "{}",
            r.stderr()
        );
        r.finish_ok();
    }
}

#[test]
fn oauth2_client_credentials_and_password_grants() {
    let gw = gateway(
        &echo_backend(),
        &[
            "--ws",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--oauth",
            "127.0.0.1:0",
            "--oauth-client",
            "router-1:cl1ent-s3cret",
            "--oauth-user",
            "ada:pa55word",
        ],
    );
    let grants = [
        (
            "client_credentials",
            "    client_secret_env: GW_CLIENT_SECRET\n".to_owned(),
        ),
        (
            "password",
            "    username: ada\n    password_env: GW_PASSWORD\n".to_owned(),
        ),
    ];
    for (grant, extra) in grants {
        for url in [gw.ws_url("/"), gw.tcp_url()] {
            let mut r = router(
                &format!(
                    "gateway:\n  url: {url}\n  tcp_notifications: true\n  auth:\n    type: oauth2\n    client_id: router-1\n    token_endpoint: {}\n    grant_type: {grant}\n    scopes: [mcp.read, mcp.call]\n    per_message_auth: false\n{extra}",
                    gw.token_url()
                ),
                &[("GW_CLIENT_SECRET", "cl1ent-s3cret"), ("GW_PASSWORD", "pa55word")],
                &["--log-level", "debug"],
            );
            r.initialize("2025-06-18");
            assert_eq!(
                echo_text(&echo_call(&mut r, 1, grant)),
                Some(grant),
                "{}",
                r.stderr()
            );
            r.finish_ok();
            let log = r.stderr();
            assert_no_secret(&log, "cl1ent-s3cret");
            assert_no_secret(&log, "pa55word");
        }
    }
}

#[test]
fn oauth2_token_rejected_early_is_fetched_again_once() {
    // Tokens die after 2 s but are announced for an hour, and the gateway drops a
    // connection when its token dies: the reconnect presents a token the router thinks is
    // fine, gets 401, fetches a fresh one and retries once.
    let gw = gateway(
        &echo_backend(),
        &[
            "--ws",
            "127.0.0.1:0",
            "--oauth",
            "127.0.0.1:0",
            "--oauth-client",
            "router-1:cl1ent-s3cret",
            "--token-ttl-secs",
            "2",
            "--advertised-ttl-secs",
            "3600",
            "--close-on-expiry",
        ],
    );
    let mut r = router(
        &format!(
            "gateway:\n  url: {}\n  auth:\n    type: oauth2\n    client_id: router-1\n    token_endpoint: {}\n    client_secret_env: GW_CLIENT_SECRET\n  connection:\n{}",
            gw.ws_url("/"),
            gw.token_url(),
            fast_reconnect()
        ),
        &[("GW_CLIENT_SECRET", "cl1ent-s3cret")],
        &[],
    );
    r.initialize("2025-06-18");
    assert_eq!(echo_text(&echo_call(&mut r, 1, "first")), Some("first"));
    assert!(
        r.wait_log("retrying once with a fresh token", Duration::from_secs(10)),
        "{}",
        r.stderr()
    );
    assert!(
        r.wait_log("client session replayed", Duration::from_secs(10)),
        "{}",
        r.stderr()
    );
    assert_eq!(
        echo_text(&echo_call(&mut r, 2, "second")),
        Some("second"),
        "{}",
        r.stderr()
    );
    r.finish_ok();
}

/// Sends requests at a steady pace while the gateway is killed and restarted 20 times;
/// every request must get exactly one reply: its echo, or an error that says why.
fn chaos(protocol: &str) {
    // Each reply takes the gateway a few ms, so a kill always finds requests in flight.
    let mut gw = gateway(
        &echo_backend(),
        &[
            &format!("--{protocol}"),
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--delay-ms",
            "2",
        ],
    );
    let url = if protocol == "ws" {
        gw.ws_url("/")
    } else {
        gw.tcp_url()
    };
    let mut r = router(
        &format!(
            "gateway:\n  url: {url}\n  connection:\n    keepalive_interval_ms: 500\n    reconnect:\n      initial_delay_ms: 20\n      max_delay_ms: 100\n      max_attempts: 0\n      jitter: 0.1\nlocal:\n  request_timeout_ms: 15000\n  max_queued_requests: 1000\n"
        ),
        &[("MCP_AUTH_TOKEN", TOKEN)],
        &[],
    );
    r.initialize("2025-06-18");
    let total = 1000;
    let mut sent = 0;
    let mut send = |r: &mut RouterProc, n: usize, gap_ms: u64| {
        for _ in 0..n {
            sent += 1;
            r.send(&json!({"jsonrpc":"2.0","id":sent,"method":"tools/call","params":{"name":"echo","arguments":{"text":format!("m{sent}")}}}));
            std::thread::sleep(Duration::from_millis(gap_ms));
        }
    };
    for _ in 0..20 {
        // Sent in a burst, so some are in flight when the gateway dies ...
        send(&mut r, 20, 0);
        gw.kill();
        // ... these queue while it is down ...
        send(&mut r, 10, 2);
        gw.restart();
        // ... and these flow while it is up.
        send(&mut r, 20, 20);
    }
    let mut seen = std::collections::BTreeMap::new();
    let (mut ok, mut errors) = (0, 0);
    let mut kinds = std::collections::BTreeMap::new();
    while seen.len() < total {
        let Some(v) = r.recv(Duration::from_secs(30)) else {
            let missing: Vec<i64> = (1..=total as i64)
                .filter(|i| !seen.contains_key(i))
                .collect();
            panic!(
                "no reply for {} requests ({missing:?}); stderr:\n{}",
                missing.len(),
                r.stderr()
            );
        };
        let Some(id) = v["id"].as_i64() else { continue };
        assert!(
            seen.insert(id, v.clone()).is_none(),
            "two replies for id {id}: {v}"
        );
        if let Some(text) = echo_text(&v) {
            assert_eq!(text, format!("m{id}"), "reply for the wrong request");
            ok += 1;
        } else {
            let msg = v["error"]["message"].as_str().unwrap_or_default();
            assert!(!msg.is_empty(), "neither a result nor an error: {v}");
            *kinds
                .entry(v["error"]["data"]["kind"].to_string())
                .or_insert(0) += 1;
            if errors < 3 {
                eprintln!("error example: {msg}");
            }
            errors += 1;
        }
    }
    // Nothing more comes: no late duplicates.
    if let Some(extra) = r.recv(Duration::from_millis(500)) {
        assert!(
            extra.get("id").is_none() || !seen.contains_key(&extra["id"].as_i64().unwrap_or(-1)),
            "duplicate after the end: {extra}"
        );
    }
    eprintln!("chaos over {protocol}: {ok} answered, {errors} errors ({kinds:?}), of {total}");
    assert!(
        ok > total / 2,
        "most requests should get through ({ok}/{total})"
    );
    let after = echo_call(&mut r, 100_000, "after the storm");
    assert_eq!(echo_text(&after), Some("after the storm"), "{after}");
    r.finish_ok();
}

#[test]
fn chaos_gateway_restarted_20_times_websocket() {
    chaos("ws");
}

#[test]
fn chaos_gateway_restarted_20_times_tcp() {
    chaos("tcp");
}

#[test]
fn gateway_dropping_mid_message_costs_only_that_request() {
    for protocol in ["ws", "tcp"] {
        let gw = gateway(
            &echo_backend(),
            &[
                &format!("--{protocol}"),
                "127.0.0.1:0",
                "--token",
                TOKEN,
                "--drop-after",
                "2",
            ],
        );
        let url = if protocol == "ws" {
            gw.ws_url("/")
        } else {
            gw.tcp_url()
        };
        let mut r = router(
            &format!(
                "gateway:\n  url: {url}\n  connection:\n{}{}",
                fast_reconnect(),
                one_connection()
            ),
            &[("MCP_AUTH_TOKEN", TOKEN)],
            &[],
        );
        r.initialize("2025-06-18");
        assert_eq!(echo_text(&echo_call(&mut r, 1, "one")), Some("one"));
        // The gateway answers initialize and one call, then drops the connection mid-reply.
        let lost = echo_call(&mut r, 2, "two");
        assert_eq!(
            lost["error"]["data"]["kind"], "upstream_exited",
            "{protocol}: {lost}"
        );
        assert_eq!(
            echo_text(&echo_call(&mut r, 3, "three")),
            Some("three"),
            "{protocol}"
        );
        r.finish_ok();
    }
}

#[test]
fn queued_requests_drain_in_order_then_queue_full_then_queued_timeout() {
    let port = free_port();
    let mut r = router(
        &format!(
            "gateway:\n  url: ws://127.0.0.1:{port}/\n  connection:\n{}{}local:\n  max_queued_requests: 5\n  request_timeout_ms: 20000\n",
            fast_reconnect(),
            one_connection()
        ),
        &[("MCP_AUTH_TOKEN", TOKEN)],
        &[],
    );
    for id in 1..=5 {
        r.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"text":format!("q{id}")}}}));
    }
    let full = r.request(json!(6), "ping", json!({}));
    assert!(
        full["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("queue full"),
        "{full}"
    );
    assert_eq!(full["error"]["data"]["kind"], "queue_full");
    // The gateway comes up: the five drain, first in first out.
    let _gw = gateway(
        &echo_backend(),
        &["--ws", &format!("127.0.0.1:{port}"), "--token", TOKEN],
    );
    let mut order = Vec::new();
    while order.len() < 5 {
        let v = r
            .recv(WAIT)
            .unwrap_or_else(|| panic!("queued requests not answered: {}", r.stderr()));
        assert_eq!(echo_text(&v), Some(format!("q{}", v["id"]).as_str()), "{v}");
        order.push(v["id"].as_i64().unwrap());
    }
    assert_eq!(order, vec![1, 2, 3, 4, 5]);
    r.finish_ok();

    // Queued time counts toward the request timeout.
    let mut r = router(
        &format!(
            "gateway:\n  url: ws://127.0.0.1:{}/\nlocal:\n  request_timeout_ms: 700\n",
            free_port()
        ),
        &[("MCP_AUTH_TOKEN", TOKEN)],
        &[],
    );
    let t0 = std::time::Instant::now();
    let v = r.request(json!(1), "ping", json!({}));
    assert_eq!(v["error"]["message"], "request timeout while queued", "{v}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    r.finish_ok();
}

#[test]
fn websocket_message_over_the_gateway_limit_is_refused_alone() {
    let gw = gateway(&echo_backend(), &["--ws", "127.0.0.1:0", "--token", TOKEN]);
    let mut r = RouterProc::start(
        &["--gateway", &gw.ws_url("/")],
        &[("MCP_AUTH_TOKEN", TOKEN)],
    );
    r.initialize("2025-06-18");
    let big = "x".repeat(1024 * 1024 + 10);
    let v = echo_call(&mut r, 1, &big);
    assert_eq!(v["error"]["data"]["kind"], "too_large", "{}", v["error"]);
    assert!(v["error"]["message"].as_str().unwrap().contains("1048576"));
    assert_eq!(
        echo_text(&echo_call(&mut r, 2, "still here")),
        Some("still here")
    );
    // Just under the limit still goes.
    let near = "y".repeat(1000 * 1000);
    assert_eq!(
        echo_text(&echo_call(&mut r, 3, &near)).map(str::len),
        Some(near.len())
    );
    r.finish_ok();
    assert!(
        !r.stderr().contains("reconnecting"),
        "the connection was dropped: {}",
        r.stderr()
    );
}

#[test]
fn gateway_shutdown_notice_then_reconnect() {
    let mut gw = gateway(&echo_backend(), &["--ws", "127.0.0.1:0", "--token", TOKEN]);
    let mut r = router(
        &format!(
            "gateway:\n  url: {}\n  connection:\n{}",
            gw.ws_url("/"),
            fast_reconnect()
        ),
        &[("MCP_AUTH_TOKEN", TOKEN)],
        &[],
    );
    r.initialize("2025-06-18");
    assert_eq!(echo_text(&echo_call(&mut r, 1, "before")), Some("before"));
    gw.terminate();
    assert!(r.wait_log("Server shutting down", WAIT), "{}", r.stderr());
    gw.restart();
    assert_eq!(
        echo_text(&echo_call(&mut r, 2, "after")),
        Some("after"),
        "{}",
        r.stderr()
    );
    r.finish_ok();
}

#[test]
fn bad_frames_from_the_gateway_reset_the_connection() {
    use crate::support::mcpb_peer::{echo_reply, frame, Framing, McpbPeer};
    let peer = McpbPeer::start(
        Framing::Mcpb,
        Box::new(|n, req| {
            let mut bad_magic = frame(Framing::Mcpb, 2, b"{}");
            bad_magic[3] = b'X';
            let mut bad_version = frame(Framing::Mcpb, 2, b"{}");
            bad_version[5] = 9;
            let mut too_long = frame(Framing::Mcpb, 2, b"");
            too_long[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
            let unknown_id = frame(
                Framing::Mcpb,
                2,
                br#"{"jsonrpc":"2.0","id":"never-sent","result":{}}"#,
            );
            let not_json = frame(Framing::Mcpb, 2, b"\x00\x01 not json");
            match n {
                0 => vec![bad_magic],
                1 => vec![bad_version],
                2 => vec![too_long],
                3 => vec![unknown_id],
                4 => vec![not_json],
                _ => vec![echo_reply(Framing::Mcpb, req)],
            }
        }),
    );
    let mut r = router(
        &format!(
            "gateway:\n  url: tcp://127.0.0.1:{}\n  connection:\n{}",
            peer.port,
            fast_reconnect()
        ),
        &[("MCP_AUTH_TOKEN", TOKEN)],
        &[],
    );
    for id in 1..=5 {
        let v = r.request(json!(id), "ping", json!({}));
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("connection reset"),
            "request {id}: {v}"
        );
    }
    let v = r.request(json!(6), "ping", json!({}));
    assert_eq!(v["result"]["echo"], json!({}), "{v}");
    let log = r.stderr();
    for reason in [
        "magic",
        "version",
        "10485760",
        "never sent",
        "not a JSON-RPC message",
    ] {
        assert!(
            log.contains(reason),
            "no logged reason mentioning {reason:?}:\n{log}"
        );
    }
    assert_eq!(peer.connections(), 6);
    r.finish_ok();
}

#[test]
fn direct_tcp_binary_server_carries_notifications_both_ways() {
    use crate::support::mcpb_peer::{echo_reply, frame, Framing, McpbPeer};
    let peer = McpbPeer::start(
        Framing::Mcpb,
        Box::new(|_, req| {
            let progress = json!({"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"working"}});
            vec![
                frame(Framing::Mcpb, 1, &serde_json::to_vec(&progress).unwrap()),
                echo_reply(Framing::Mcpb, req),
            ]
        }),
    );
    let url = format!("tcp://127.0.0.1:{}", peer.port);
    let mut r = RouterProc::start(&["--", &url], &[]);
    r.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    let (v, before) = r.response_with(&json!(1), "tools/list");
    assert_eq!(v["result"]["echo"], json!({}));
    assert_eq!(
        before.len(),
        1,
        "the server's notification reaches the client: {before:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || peer
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|(_, m)| m["method"] == "notifications/initialized")));
    // The version negotiation came first, byte-exact.
    let first = peer.seen.lock().unwrap()[0].clone();
    assert_eq!(first.0, 6);
    assert_eq!(
        first.1,
        json!({"max_version":1,"min_version":1,"preferred_version":1,"supported_versions":[1]})
    );
    r.finish_ok();
}

#[test]
fn legacy_framing_when_asked() {
    use crate::support::mcpb_peer::{frame, Framing, McpbPeer};
    // The Go router's framing carries the WebSocket envelope in its frames.
    let peer = McpbPeer::start(
        Framing::Legacy,
        Box::new(|_, env| {
            let req = &env["mcp_payload"];
            let reply = json!({"id":req["id"],"timestamp":"2026-11-24T10:30:45Z","source":"gateway","mcp_payload":{"jsonrpc":"2.0","id":req["id"],"result":{"echo":req["params"]}}});
            vec![frame(
                Framing::Legacy,
                2,
                &serde_json::to_vec(&reply).unwrap(),
            )]
        }),
    );
    let mut r = router(
        &format!(
            "gateway:\n  url: tcp://127.0.0.1:{}\n  framing: legacy\n",
            peer.port
        ),
        &[("MCP_AUTH_TOKEN", TOKEN)],
        &[],
    );
    let v = r.request(json!(7), "ping", json!({"a":1}));
    assert_eq!(v["result"]["echo"], json!({"a":1}), "{v}");
    let seen = peer.seen.lock().unwrap().clone();
    let env = &seen
        .iter()
        .find(|(k, _)| *k == 1)
        .expect("a request frame")
        .1;
    assert_eq!(env["source"], "local-router");
    assert_eq!(env["target_namespace"], "system");
    assert_eq!(env["auth_token"], TOKEN);
    r.finish_ok();
}

#[test]
fn auto_select_falls_back_to_the_other_protocol_and_remembers_it() {
    let gw = gateway(&echo_backend(), &["--tcp", "127.0.0.1:0", "--token", TOKEN]);
    let dead = format!("ws://127.0.0.1:{}/", free_port());
    let mut r = router(
        &format!(
            "gateway:\n  protocol_preference: websocket\n  endpoints:\n    - url: {dead}\n    - url: {}\n  connection:\n{}",
            gw.tcp_url(),
            fast_reconnect()
        ),
        &[("MCP_AUTH_TOKEN", TOKEN)],
        &[],
    );
    r.initialize("2025-06-18");
    assert_eq!(echo_text(&echo_call(&mut r, 1, "picked")), Some("picked"));
    assert!(
        r.stderr().contains(&format!("url={}", gw.tcp_url())) || r.stderr().contains(&gw.tcp_url())
    );
    r.finish_ok();
}

#[test]
fn server_with_fallback_gateway_uses_the_gateway_when_no_candidate_answers() {
    let gw = gateway(&echo_backend(), &["--ws", "127.0.0.1:0", "--token", TOKEN]);
    let mut r = router(
        &format!(
            "gateway:\n  url: {}\nservers:\n  - name: tools\n    auto_detect: true\n    candidates: [\"ws://127.0.0.1:{}/\"]\n    fallback: gateway\ndirect_clients:\n  auto_detection:\n    timeout: 1s\n    cache_results: false\n",
            gw.ws_url("/"),
            free_port()
        ),
        &[("MCP_AUTH_TOKEN", TOKEN)],
        &[],
    );
    r.initialize("2025-06-18");
    assert_eq!(
        echo_text(&echo_call(&mut r, 1, "fell back")),
        Some("fell back"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains("fallback: gateway"));
    r.finish_ok();
}

#[test]
fn python_sdk_through_gateway_mtls_and_oauth2() {
    let Some(py) = sdk_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut args = vec!["--tcp", "127.0.0.1:0"];
    let tls = pki.gateway_args(true);
    args.extend(tls.iter().map(String::as_str));
    let gw = gateway(&sdk_backend(&py), &args);
    let cfg = write_config(
        dir.path(),
        &format!(
            "gateway:\n  url: {}\n  auth:\n    type: mtls\n    client_cert: {}\n    client_key: {}\n  tls:\n    ca_cert_path: {}\n",
            gw.tcps_url(),
            pki.client_cert.display(),
            pki.client_key.display(),
            pki.ca.display()
        ),
    );
    same_through_gateway(&py, "legacy", &cfg);

    let gw = gateway(
        &sdk_backend(&py),
        &[
            "--ws",
            "127.0.0.1:0",
            "--oauth",
            "127.0.0.1:0",
            "--oauth-client",
            "router-1:cl1ent-s3cret",
        ],
    );
    let cfg = write_config(
        dir.path(),
        &format!(
            "gateway:\n  url: {}\n  auth:\n    type: oauth2\n    client_id: router-1\n    token_endpoint: {}\n    client_secret_env: GW_SDK_CLIENT_SECRET\n",
            gw.ws_url("/mcp"),
            gw.token_url()
        ),
    );
    same_through_gateway_env(&py, "auto", &cfg, &["GW_SDK_CLIENT_SECRET=cl1ent-s3cret"]);
}

#[test]
fn certificate_pinning_accepts_the_pinned_key_only() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut args = vec!["--ws", "127.0.0.1:0"];
    let tls = pki.gateway_args(false);
    args.extend(tls.iter().map(String::as_str));
    let gw = gateway(&echo_backend(), &args);
    let der = rustls::pki_types::CertificateDer::from(pki.server_der.clone());
    let pin = mcp_router::net::tls::spki_sha256(&der).unwrap();
    let right = base64::engine::general_purpose::STANDARD.encode(pin);
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    for (pin, works) in [(right, true), (wrong, false)] {
        let mut r = router(
            &format!(
                "gateway:\n  url: {}\n  tls:\n    ca_cert_path: {}\n    pinned_spki_sha256: [\"{pin}\"]\n  connection:\n    reconnect:\n      max_attempts: 1\n",
                gw.wss_url("/"),
                pki.ca.display()
            ),
            &[("MCP_AUTH_TOKEN", TOKEN)],
            &[],
        );
        let v = r.request(json!(1), "ping", json!({}));
        if works {
            assert_eq!(v["result"], json!({}), "{v}");
        } else {
            let text = v["error"]["message"].as_str().unwrap_or_default();
            assert!(text.contains("pinned_spki_sha256"), "{v}");
        }
        r.finish_ok();
    }
}

#[test]
fn per_message_auth_puts_the_token_in_every_tcp_request() {
    use crate::support::mcpb_peer::{echo_reply, Framing, McpbPeer};
    let peer = McpbPeer::start(
        Framing::Mcpb,
        Box::new(|_, wrapped| vec![echo_reply(Framing::Mcpb, &wrapped["message"])]),
    );
    let mut r = router(
        &format!(
            "gateway:\n  url: tcp://127.0.0.1:{}\n  auth:\n    per_message_auth: true\n",
            peer.port
        ),
        &[("MCP_AUTH_TOKEN", TOKEN)],
        &[],
    );
    for id in 1..=3 {
        let v = r.request(json!(id), "tools/list", json!({"n": id}));
        assert_eq!(v["result"]["echo"], json!({"n": id}), "{v}");
    }
    r.finish_ok();
    let requests: Vec<Value> = peer
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k == 1)
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(requests.len(), 3);
    for req in requests {
        assert_eq!(req["auth_token"], TOKEN, "{req}");
        assert_eq!(req["message"]["method"], "tools/list");
    }
}

#[test]
fn a_refusing_gateway_gets_clear_errors() {
    for (flag, expect) in [
        ("--refuse", "connection limit"),
        ("--reject-auth", "refused the credentials"),
    ] {
        let gw = gateway(&echo_backend(), &["--ws", "127.0.0.1:0", flag]);
        let mut r = router(
            &format!(
                "gateway:\n  url: {}\n  connection:\n    reconnect:\n      initial_delay_ms: 20\n      max_attempts: 2\n",
                gw.ws_url("/")
            ),
            &[("MCP_AUTH_TOKEN", TOKEN)],
            &[],
        );
        let v = r.request(json!(1), "ping", json!({}));
        let text = v["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(expect), "{flag}: {v}");
        assert_eq!(v["error"]["data"]["kind"], "upstream_unavailable");
        // Later requests are answered at once with the same reason.
        let v = r.request(json!(2), "ping", json!({}));
        assert!(v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(expect));
        r.finish_ok();
    }
}

#[test]
fn auto_detection_finds_a_tcp_binary_server() {
    use crate::support::mcpb_peer::{echo_reply, Framing, McpbPeer};
    let peer = McpbPeer::start(
        Framing::Mcpb,
        Box::new(|_, req| vec![echo_reply(Framing::Mcpb, req)]),
    );
    let mut r = router(
        &format!(
            "servers:\n  - name: auto\n    auto_detect: true\n    candidates: [\"ws://127.0.0.1:{}/\", \"tcp://127.0.0.1:{}\"]\ndirect_clients:\n  auto_detection:\n    timeout: 1s\n    cache_results: false\n",
            free_port(),
            peer.port
        ),
        &[],
        &[],
    );
    let v = r.request(json!(1), "tools/list", json!({"x": 1}));
    assert_eq!(v["result"]["echo"], json!({"x": 1}), "{v}");
    assert!(
        r.stderr().contains("kind=tcp") || r.stderr().contains("kind=\"tcp\""),
        "{}",
        r.stderr()
    );
    r.finish_ok();
}

/// The gateway URL for `protocol` (`ws` or `tcp`).
fn gateway_url(gw: &GatewayProc, protocol: &str) -> String {
    if protocol == "ws" {
        gw.ws_url("/")
    } else {
        gw.tcp_url()
    }
}

#[test]
fn shutdown_is_not_held_by_a_gateway_that_stopped_reading() {
    // A frozen gateway (SIGSTOP) keeps its sockets open and reads nothing: 18 MB of
    // requests fill the socket buffers and the router's writes block. Shutdown must
    // still end in its grace plus the bounded close, every request answered once.
    let grace = Duration::from_millis(500);
    for (protocol, stop) in [
        ("ws", Stop::Signal("TERM")),
        ("ws", Stop::Stdin),
        ("tcp", Stop::Signal("TERM")),
    ] {
        let gw = gateway(
            &echo_backend(),
            &[&format!("--{protocol}"), "127.0.0.1:0", "--token", TOKEN],
        );
        let mut r = router(
            &format!(
                "gateway:\n  url: {}\n  connection:\n{}local:\n  shutdown_grace_ms: 500\n",
                gateway_url(&gw, protocol),
                fast_reconnect()
            ),
            &[("MCP_AUTH_TOKEN", TOKEN)],
            &[],
        );
        r.initialize("2025-06-18");
        assert_eq!(echo_text(&echo_call(&mut r, 1, "up")), Some("up"));
        gw.signal("STOP");
        let text = "g".repeat(900 * 1024);
        let calls: Vec<Value> = (2..22)
            .map(|id| json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"text":text}}}))
            .collect();
        let took = r.flood_then_stop(&calls, stop, grace + Duration::from_secs(3));
        eprintln!("{protocol} {stop:?}: exited {took:?} after the stop");
        gw.signal("CONT");
    }
}

/// A listener for `protocol`: WebSocket with the token, or TCP in `tcp_mode` (the
/// handler, which answers HealthCheck, without auth: it wants the token in every request).
fn gateway_args<'a>(protocol: &'a str, tcp_mode: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = if protocol == "ws" {
        vec!["--ws", "127.0.0.1:0", "--token", TOKEN]
    } else {
        vec!["--tcp", "127.0.0.1:0", "--tcp-mode", tcp_mode]
    };
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_frozen_gateway_is_noticed_by_the_keepalive_and_reconnected() {
    // Idle, a gateway that answers no keepalive (frozen: SIGSTOP, sockets open) is lost
    // within about two keepalive intervals; once it thaws, the router is back on it.
    for (protocol, mode) in [("ws", "frontend"), ("tcp", "handler")] {
        let gw = gateway(&echo_backend(), &gateway_args(protocol, mode, &[]));
        let mut r = router(
            &format!(
                "gateway:\n  url: {}\n  connection:\n    timeout_ms: 1000\n    keepalive_interval_ms: 400\n{}",
                gateway_url(&gw, protocol),
                fast_reconnect()
            ),
            &[("MCP_AUTH_TOKEN", TOKEN)],
            &[],
        );
        r.initialize("2025-06-18");
        assert_eq!(echo_text(&echo_call(&mut r, 1, "before")), Some("before"));
        // A few keepalives answered first (over TCP, only a peer that has answered one
        // is held to them).
        std::thread::sleep(Duration::from_millis(1000));
        gw.signal("STOP");
        let t0 = std::time::Instant::now();
        let noticed = r.wait_log(
            "did not answer a keepalive within 400ms; the connection is treated as lost",
            Duration::from_secs(5),
        );
        let took = t0.elapsed();
        gw.signal("CONT");
        assert!(noticed, "{protocol}: {}", r.stderr());
        assert!(
            took < Duration::from_millis(2000),
            "{protocol}: noticed after {took:?}"
        );
        assert!(
            r.wait_log("client session replayed", WAIT),
            "{protocol}: {}",
            r.stderr()
        );
        assert_eq!(
            echo_text(&echo_call(&mut r, 2, "after")),
            Some("after"),
            "{protocol}: {}",
            r.stderr()
        );
        assert!(gw.count(": connected (") >= 2, "{protocol}: {}", gw.log());
        eprintln!("{protocol}: frozen gateway noticed after {took:?}");
        r.finish_ok();
    }
}

#[test]
fn a_gateway_slow_to_answer_one_call_keeps_its_connection() {
    // The gateway reads nothing (no ping, no HealthCheck) while it handles a message: a
    // call that takes five keepalive intervals is not a dead connection.
    for (protocol, mode) in [("ws", "frontend"), ("tcp", "handler")] {
        let gw = gateway(
            &echo_backend(),
            &gateway_args(protocol, mode, &["--delay-ms", "1500"]),
        );
        let mut r = router(
            &format!(
                "gateway:\n  url: {}\n  connection:\n    keepalive_interval_ms: 300\n{}{}",
                gateway_url(&gw, protocol),
                fast_reconnect(),
                one_connection()
            ),
            &[("MCP_AUTH_TOKEN", TOKEN)],
            &[],
        );
        r.initialize("2025-06-18");
        let slow = echo_call(&mut r, 1, "slow but alive");
        assert_eq!(
            echo_text(&slow),
            Some("slow but alive"),
            "{protocol}: {slow}\n{}",
            r.stderr()
        );
        r.finish_ok();
        let log = r.stderr();
        assert!(
            !log.contains("did not answer a keepalive"),
            "{protocol}: {log}"
        );
        assert!(!log.contains("reconnecting"), "{protocol}: {log}");
        assert_eq!(gw.count(": connected ("), 1, "{protocol}: {}", gw.log());
    }
}
