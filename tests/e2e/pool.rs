//! The gateway connection pool, load balancing over endpoints and failover, against real
//! test-gateway processes (which handle each connection's messages one at a time, as the
//! mcp-bridge gateway does: parallelism comes from the pool).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gateway::{echo_backend, echo_text, fast_reconnect, gateway, router, TOKEN};
use crate::support::*;

/// Sends `n` echo calls at once; returns the replies by id and when the last came.
fn calls_at_once(r: &mut RouterProc, first: u64, n: u64) -> (Vec<Value>, Duration) {
    let t0 = Instant::now();
    for id in first..first + n {
        r.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                       "params":{"name":"echo","arguments":{"text":format!("n{id}")}}}));
    }
    let mut replies = Vec::new();
    while (replies.len() as u64) < n {
        let v = r
            .recv(Duration::from_secs(30))
            .expect("every call answered");
        if v.get("id").is_some() && v.get("method").is_none() {
            replies.push(v);
        }
    }
    (replies, t0.elapsed())
}

fn pool_config(url: &str, min: u32, max: u32) -> String {
    format!(
        "gateway:\n  url: {url}\n  connection:\n{}    pool:\n      min_size: {min}\n      max_size: {max}\n",
        fast_reconnect()
    )
}

#[test]
fn eight_half_second_calls_take_a_second_through_a_pool_of_four_and_four_through_one() {
    let gw = gateway(
        &echo_backend(),
        &["--ws", "127.0.0.1:0", "--token", TOKEN, "--delay-ms", "500"],
    );
    let url = gw.ws_url("/");
    let env = [("MCP_AUTH_TOKEN", TOKEN)];

    let mut one = router(&pool_config(&url, 1, 1), &env, &[]);
    one.initialize("2025-06-18");
    let (replies, took) = calls_at_once(&mut one, 1, 8);
    for v in &replies {
        assert!(echo_text(v).is_some(), "{v}");
    }
    assert!(
        took >= Duration::from_millis(3900),
        "one connection carries one call at a time: {took:?}"
    );
    one.finish_ok();

    let mut four = router(&pool_config(&url, 4, 4), &env, &[]);
    four.initialize("2025-06-18");
    // The three connections opened before the session existed are opened again with it.
    let log = || four.stderr();
    assert!(
        wait_until(Duration::from_secs(10), || log()
            .matches("client session replayed")
            .count()
            >= 3),
        "{}",
        log()
    );
    let (replies, took) = calls_at_once(&mut four, 1, 8);
    for v in &replies {
        let id = v["id"].as_u64().unwrap();
        assert_eq!(echo_text(v), Some(format!("n{id}").as_str()), "{v}");
    }
    assert!(
        took < Duration::from_millis(1800),
        "four connections carry two calls each: {took:?}\n{}",
        four.stderr()
    );
    four.finish_ok();
}

#[test]
fn a_pool_grows_under_load_up_to_max_size_and_the_calls_spread() {
    let gw = gateway(
        &echo_backend(),
        &[
            "--tcp",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--delay-ms",
            "400",
        ],
    );
    let mut r = router(
        &pool_config(&gw.tcp_url(), 1, 4),
        &[("MCP_AUTH_TOKEN", TOKEN)],
        &[],
    );
    r.initialize("2025-06-18");
    // Twelve calls at once: one connection would take 4.8 s; the pool opens three more
    // (each replaying the session) while they wait.
    let (replies, took) = calls_at_once(&mut r, 1, 12);
    assert!(
        replies.iter().all(|v| echo_text(v).is_some()),
        "{replies:?}"
    );
    assert!(
        took < Duration::from_millis(3500),
        "the pool grew: {took:?}\n{}",
        r.stderr()
    );
    let connected = gw.count(": connected (");
    assert!(
        (2..=4).contains(&connected),
        "{connected} connections\n{}",
        gw.log()
    );
    r.finish_ok();
}

/// Two endpoints (one connection each) spread by `strategy`.
fn two_endpoints(a: &str, b: &str, strategy: &str) -> String {
    format!(
        "gateway:\n  endpoints:\n    - url: {a}\n    - url: {b}\n  connection:\n{}    pool:\n      enabled: false\ngateway_pool:\n  load_balancer:\n    strategy: {strategy}\n",
        fast_reconnect()
    )
}

/// The router with `cfg` (bearer `TOKEN`), initialized, connected to both gateways.
fn started(
    cfg: &str,
    a: &crate::support::gateway::GatewayProc,
    b: &crate::support::gateway::GatewayProc,
) -> RouterProc {
    let mut r = router(cfg, &[("MCP_AUTH_TOKEN", TOKEN)], &[]);
    r.initialize("2025-06-18");
    both_up(a, b);
    r
}

/// Waits until the router is connected to both gateways (the one that did not carry the
/// handshake has replayed it).
fn both_up(a: &crate::support::gateway::GatewayProc, b: &crate::support::gateway::GatewayProc) {
    assert!(wait_until(Duration::from_secs(10), || a
        .count(": connected (")
        >= 1
        && b.count(": connected (") >= 1));
    std::thread::sleep(Duration::from_millis(300));
}

fn echo_gateway() -> crate::support::gateway::GatewayProc {
    gateway(&echo_backend(), &["--ws", "127.0.0.1:0", "--token", TOKEN])
}

#[test]
fn round_robin_spreads_calls_over_two_gateways() {
    let (a, b) = (echo_gateway(), echo_gateway());
    let mut r = started(
        &two_endpoints(&a.ws_url("/"), &b.ws_url("/"), "round_robin"),
        &a,
        &b,
    );
    for id in 1..=20 {
        let v = crate::gateway::echo_call(&mut r, id, &format!("n{id}"));
        assert_eq!(echo_text(&v), Some(format!("n{id}").as_str()), "{v}");
    }
    let (on_a, on_b) = (a.count("request tools/call"), b.count("request tools/call"));
    assert_eq!(on_a + on_b, 20);
    assert!(
        (9..=11).contains(&on_a),
        "round robin: {on_a} on one, {on_b} on the other"
    );
    r.finish_ok();
}

#[test]
fn priority_sends_everything_to_the_first_endpoint_while_it_is_up() {
    let (a, b) = (echo_gateway(), echo_gateway());
    let cfg = format!(
        "gateway:\n  endpoints:\n    - url: {}\n      priority: 2\n    - url: {}\n      priority: 1\n  connection:\n{}    pool:\n      enabled: false\ngateway_pool:\n  load_balancer:\n    strategy: priority\n",
        a.ws_url("/"),
        b.ws_url("/"),
        fast_reconnect()
    );
    let mut r = started(&cfg, &a, &b);
    for id in 1..=10 {
        let v = crate::gateway::echo_call(&mut r, id, "p");
        assert_eq!(echo_text(&v), Some("p"), "{v}");
    }
    assert_eq!(b.count("request tools/call"), 10, "priority 1 takes all");
    assert_eq!(a.count("request tools/call"), 0);
    r.finish_ok();
}

#[test]
fn one_gateway_killed_under_a_steady_stream_moves_traffic_to_the_other_exactly_once() {
    let (mut a, b) = (echo_gateway(), echo_gateway());
    let mut r = started(
        &two_endpoints(&a.ws_url("/"), &b.ws_url("/"), "round_robin"),
        &a,
        &b,
    );
    // 200 calls, at most 8 outstanding; gateway A is SIGKILLed after the 60th is sent.
    let total = 200u64;
    let mut sent = 0u64;
    let mut replies: std::collections::BTreeMap<u64, Value> = Default::default();
    let mut killed_at = None;
    while (replies.len() as u64) < total {
        while sent < total && sent - (replies.len() as u64) < 8 {
            sent += 1;
            r.send(&json!({"jsonrpc":"2.0","id":sent,"method":"tools/call",
                           "params":{"name":"echo","arguments":{"text":format!("n{sent}")}}}));
            if sent == 60 {
                a.kill();
                killed_at = Some(sent);
            }
        }
        let v = r
            .recv(Duration::from_secs(15))
            .expect("every call answered");
        let Some(id) = v["id"].as_u64() else { continue };
        assert!(
            replies.insert(id, v.clone()).is_none(),
            "a second reply for {id}: {v}"
        );
    }
    assert!(killed_at.is_some());
    let failed: Vec<(u64, String)> = replies
        .iter()
        .filter(|(_, v)| v.get("error").is_some())
        .map(|(id, v)| {
            (
                *id,
                v["error"]["data"]["kind"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    // Only what was in flight on A when it died may fail, and only as a lost connection.
    assert!(failed.len() <= 8, "{failed:?}");
    assert!(
        failed.iter().all(|(_, k)| k == "upstream_exited"),
        "{failed:?}"
    );
    for (id, v) in &replies {
        if v.get("error").is_none() {
            assert_eq!(echo_text(v), Some(format!("n{id}").as_str()), "{v}");
        }
    }
    // After the loss, B carries everything.
    let after: usize = replies
        .range(80..)
        .filter(|(_, v)| v.get("error").is_some())
        .count();
    assert_eq!(after, 0, "calls after the failover all succeed");
    assert!(
        b.count("request tools/call") >= 140,
        "{}",
        b.count("request tools/call")
    );
    r.finish_ok();
}

#[test]
fn namespace_routing_sends_a_tool_to_the_endpoints_with_its_tag() {
    let (a, b) = (echo_gateway(), echo_gateway());
    let cfg = format!(
        "gateway:\n  endpoints:\n    - url: {}\n      tags: [general]\n    - url: {}\n      tags: [echoes]\n  connection:\n{}    pool:\n      enabled: false\ngateway_pool:\n  namespace_routing:\n    enabled: true\n    rules:\n      - pattern: '^(echo)$'\n        tags: ['$1es']\n      - pattern: '^nothing/'\n        tags: [nowhere]\n",
        a.ws_url("/"),
        b.ws_url("/"),
        fast_reconnect()
    );
    let mut r = started(&cfg, &a, &b);
    for id in 1..=8 {
        let v = crate::gateway::echo_call(&mut r, id, "routed");
        assert_eq!(echo_text(&v), Some("routed"), "{v}");
    }
    assert_eq!(b.count("request tools/call"), 8, "{}", b.log());
    assert_eq!(a.count("request tools/call"), 0);
    // Methods no rule names go anywhere.
    for id in 10..=13 {
        let v = r.request(json!(id), "tools/list", json!({}));
        assert!(v["result"].is_object(), "{v}");
    }
    assert_eq!(
        a.count("request tools/list") + b.count("request tools/list"),
        4
    );
    // A tag no endpoint has: refused at once, saying so.
    let v = r.request(json!(20), "nothing/here", json!({}));
    let text = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        text.contains("nowhere") && text.contains("namespace_routing"),
        "{v}"
    );
    r.finish_ok();
}

#[test]
fn each_endpoint_uses_its_own_auth() {
    let a = gateway(
        &echo_backend(),
        &["--ws", "127.0.0.1:0", "--token", "token-for-a"],
    );
    let b = gateway(
        &echo_backend(),
        &["--ws", "127.0.0.1:0", "--token", "token-for-b"],
    );
    let cfg = format!(
        "gateway:\n  auth: {{type: bearer, token_env: TOKEN_A}}\n  endpoints:\n    - url: {}\n    - url: {}\n      auth: {{type: bearer, token_env: TOKEN_B}}\n  connection:\n{}    pool:\n      enabled: false\n",
        a.ws_url("/"),
        b.ws_url("/"),
        fast_reconnect()
    );
    let mut r = router(
        &cfg,
        &[("TOKEN_A", "token-for-a"), ("TOKEN_B", "token-for-b")],
        &[],
    );
    r.initialize("2025-06-18");
    both_up(&a, &b);
    for id in 1..=6 {
        let v = crate::gateway::echo_call(&mut r, id, "own token");
        assert_eq!(echo_text(&v), Some("own token"), "{v}\n{}", r.stderr());
    }
    assert_eq!(a.count("request tools/call"), 3, "{}", a.log());
    assert_eq!(b.count("request tools/call"), 3, "{}", b.log());
    assert_no_secret(&r.stderr(), "token-for-b");
    r.finish_ok();
}

#[test]
fn a_frozen_gateway_is_passed_over_after_the_failover_timeout() {
    let (a, b) = (echo_gateway(), echo_gateway());
    let cfg = format!(
        "{}    failover_timeout: 500ms\nlocal:\n  request_timeout_ms: 3000\n",
        two_endpoints(&a.ws_url("/"), &b.ws_url("/"), "round_robin")
    );
    let mut r = started(&cfg, &a, &b);
    // A accepts what is written and answers nothing.
    a.signal("STOP");
    let t0 = Instant::now();
    for id in 1..=30u64 {
        r.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                       "params":{"name":"echo","arguments":{"text":format!("n{id}")}}}));
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut replies = std::collections::BTreeMap::new();
    while replies.len() < 30 {
        let v = r
            .recv(Duration::from_secs(10))
            .expect("every call answered");
        if let Some(id) = v["id"].as_u64() {
            assert!(replies.insert(id, v).is_none(), "one reply each");
        }
    }
    a.signal("CONT");
    let failed: Vec<u64> = replies
        .iter()
        .filter(|(_, v)| v.get("error").is_some())
        .map(|(id, _)| *id)
        .collect();
    // Only what went to A before it had been silent for 500 ms: about half of the
    // first five, none after.
    assert!(failed.len() <= 5, "{failed:?} after {:?}", t0.elapsed());
    assert!(failed.iter().all(|id| *id <= 8), "{failed:?}");
    for id in &failed {
        assert_eq!(
            replies[id]["error"]["data"]["kind"], "timeout",
            "{}",
            replies[id]
        );
    }
    r.finish_ok();
}
