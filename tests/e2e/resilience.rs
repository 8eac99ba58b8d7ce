//! Resilience against real servers: the concurrency limit, the rate limit and the circuit
//! breaker, each seen from the client's side (when replies arrive, what errors say) and
//! the server's (what it was sent).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// The official Python SDK test server over stdio, as `--` words.
fn sdk_words(py: &std::path::Path) -> Vec<String> {
    vec![
        "--".into(),
        py.display().to_string(),
        py_script("sdk_server.py").display().to_string(),
        "--transport".into(),
        "stdio".into(),
    ]
}

/// Sends `n` one-second `slow` calls at once; returns when each reply came, sorted, in
/// seconds from the send.
fn one_second_calls(r: &mut RouterProc, n: u64) -> Vec<f64> {
    let t0 = Instant::now();
    for id in 1..=n {
        r.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                       "params":{"name":"slow","arguments":{"steps":10,"delay":0.1}}}));
    }
    let mut at = Vec::new();
    while (at.len() as u64) < n {
        let v: Value = r
            .recv(Duration::from_secs(20))
            .expect("a reply within 20 s");
        if v.get("id").is_some() && v.get("method").is_none() {
            assert!(v["result"].is_object(), "call failed: {v}");
            at.push(t0.elapsed().as_secs_f64());
        }
    }
    at.sort_by(f64::total_cmp);
    at
}

#[test]
fn max_concurrent_requests_two_runs_six_one_second_calls_in_three_waves() {
    let Some(py) = sdk_python() else { return };
    let words = sdk_words(&py);
    let args: Vec<&str> = words.iter().map(String::as_str).collect();

    // Unlimited (the default 100): the server runs all six at once.
    let mut r = RouterProc::start(&args, &[]);
    r.initialize("2025-06-18");
    let at = one_second_calls(&mut r, 6);
    assert!(at[5] < 1.8, "the server answers six calls at once: {at:?}");

    let mut r = RouterProc::start(&args, &[("MCP_LOCAL_MAX_CONCURRENT_REQUESTS", "2")]);
    r.initialize("2025-06-18");
    let at = one_second_calls(&mut r, 6);
    let wave = |t: f64| (t + 0.4).floor() as u32;
    let waves: Vec<u32> = at.iter().map(|t| wave(*t)).collect();
    assert_eq!(waves, [1, 1, 2, 2, 3, 3], "two at a time: {at:?}");
}

#[test]
fn a_server_limit_overrides_local_and_applies_to_that_server_only() {
    let Some(py) = sdk_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cmd = sdk_words(&py)[1..].to_vec();
    let config = dir.path().join("router.yaml");
    std::fs::write(
        &config,
        format!(
            "servers:\n  - name: one\n    command: {}\n    max_concurrent_requests: 1\n  - name: two\n    command: {}\n",
            json!(cmd),
            json!(cmd)
        ),
    )
    .unwrap();
    let path = config.display().to_string();
    let mut r = RouterProc::start_in(dir, &["--config", &path], &[]);
    r.initialize("2025-06-18");
    let t0 = Instant::now();
    for (id, tool) in [
        (1, "one__slow"),
        (2, "one__slow"),
        (3, "two__slow"),
        (4, "two__slow"),
    ] {
        r.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                       "params":{"name":tool,"arguments":{"steps":10,"delay":0.1}}}));
    }
    let mut at = std::collections::BTreeMap::new();
    while at.len() < 4 {
        let v = r
            .recv(Duration::from_secs(20))
            .expect("a reply within 20 s");
        if let (Some(id), None) = (v["id"].as_u64(), v.get("method")) {
            assert!(v["result"].is_object(), "call failed: {v}");
            at.insert(id, t0.elapsed().as_secs_f64());
        }
    }
    assert!(
        at[&3] < 1.8 && at[&4] < 1.8,
        "server two is not limited: {at:?}"
    );
    let (first, second) = (at[&1].min(at[&2]), at[&1].max(at[&2]));
    assert!(
        first < 1.8 && second > 1.8,
        "server one takes one at a time: {at:?}"
    );
}

/// A config file with `local.rate_limit` set to `limit` (YAML flow), for the SDK server.
fn rate_limited_router(py: &std::path::Path, limit: &str) -> RouterProc {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("router.yaml");
    std::fs::write(&config, format!("local:\n  rate_limit: {limit}\n")).unwrap();
    let path = config.display().to_string();
    let words = sdk_words(py);
    let mut args = vec!["--config", path.as_str()];
    args.extend(words.iter().map(String::as_str));
    RouterProc::start_in(dir, &args, &[])
}

fn echo_call(id: u64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
           "params":{"name":"echo","arguments":{"text":format!("n{id}")}}})
}

#[test]
fn a_burst_over_the_rate_is_smoothed_and_every_request_answered() {
    let Some(py) = sdk_python() else { return };
    let mut r = rate_limited_router(&py, "{enabled: true, requests_per_second: 20, burst: 5}");
    r.initialize("2025-06-18");
    // The handshake took one token; let the bucket fill again.
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    for id in 1..=40 {
        r.send(&echo_call(id));
    }
    let mut at = std::collections::BTreeMap::new();
    while at.len() < 40 {
        let v = r
            .recv(Duration::from_secs(10))
            .expect("every request answered");
        let id = v["id"].as_u64().expect("a reply");
        assert!(v["result"].is_object(), "request {id} failed: {v}");
        at.insert(id, t0.elapsed().as_secs_f64());
    }
    // Five at once, then one every 50 ms: the 40th goes at 35 × 50 ms = 1.75 s.
    let last = at.values().cloned().fold(0.0, f64::max);
    assert!(
        (1.65..2.3).contains(&last),
        "the last reply after ≈1.75 s, got {last:.2} s"
    );
    assert!(at[&5] < 0.3, "the burst goes at once: {:.2} s", at[&5]);
    assert!(
        at[&20] > 0.7,
        "the 20th waits its turn (≈0.75 s): {:.2} s",
        at[&20]
    );
}

#[test]
fn a_request_that_would_wait_past_max_wait_is_refused_with_the_originals_text() {
    let Some(py) = sdk_python() else { return };
    let mut r = rate_limited_router(
        &py,
        "{enabled: true, requests_per_second: 10, burst: 2, max_wait_ms: 150}",
    );
    r.initialize("2025-06-18");
    std::thread::sleep(Duration::from_millis(300));
    for id in 1..=6 {
        r.send(&echo_call(id));
    }
    let mut ok = 0;
    let mut refused = Vec::new();
    for _ in 0..6 {
        let v = r
            .recv(Duration::from_secs(10))
            .expect("every request answered");
        if v["result"].is_object() {
            ok += 1;
        } else {
            assert_eq!(v["error"]["data"]["kind"], "rate_limited", "{v}");
            assert_eq!(
                v["error"]["message"],
                "rate limit exceeded (10.0 requests/sec, burst 2)"
            );
            refused.push(v["id"].as_u64().unwrap());
        }
    }
    // Two at once, then waits of 100 and 200 ms…: only the first wait fits in 150 ms.
    assert_eq!(ok, 3, "refused: {refused:?}");
    assert_eq!(refused, [4, 5, 6]);
    assert!(r.wait_log("rate limit exceeded", Duration::from_secs(2)));
}

/// `http_faults.py` on a free port, answering every `tools/call` with HTTP 500 while
/// `fail` exists, writing each request it sees to `record`.
fn failing_http_server(fail: &std::path::Path, record: &std::path::Path) -> NetServer {
    let port = free_port();
    let fail = fail.display().to_string();
    let record = record.display().to_string();
    net_server(
        std::process::Command::new(python())
            .arg(py_script("http_faults.py"))
            .args(["--port", &port.to_string(), "--fail-file", &fail])
            .args(["--record", &record]),
        port,
    )
}

fn tools_calls_seen(record: &std::path::Path) -> usize {
    recorded(record, "POST /mcp tools/call")
}

#[test]
fn an_http_server_answering_500_opens_the_breaker_which_closes_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let fail = dir.path().join("fail");
    let record = dir.path().join("record");
    let server = failing_http_server(&fail, &record);
    let config = dir.path().join("router.yaml");
    std::fs::write(
        &config,
        format!(
            "servers:\n  - name: flaky\n    url: http://127.0.0.1:{}/mcp\n    circuit_breaker:\n      enabled: true\n      failure_threshold: 3\n      recovery_timeout: 1500ms\n      success_threshold: 2\n      monitoring_window: 60s\n",
            server.port
        ),
    )
    .unwrap();
    let path = config.display().to_string();
    let mut r = RouterProc::start_in(dir, &["--config", &path], &[]);
    r.initialize("2025-06-18");
    let echo = |r: &mut RouterProc, id: u64| -> Value {
        r.request(
            json!(id),
            "tools/call",
            json!({"name":"echo","arguments":{"text":format!("n{id}")}}),
        )
    };
    assert_eq!(echo(&mut r, 1)["result"]["content"][0]["text"], "n1");

    std::fs::write(&fail, "").unwrap();
    for id in 2..=4 {
        let v = echo(&mut r, id);
        assert_eq!(v["error"]["data"]["kind"], "upstream_unavailable", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("500"),
            "{v}"
        );
    }
    let seen = tools_calls_seen(&record);
    assert_eq!(seen, 4, "the server saw every call so far");

    // Open: refused in microseconds, naming the server and when it is tried again; the
    // server sees none of them.
    let t0 = Instant::now();
    for id in 5..=14 {
        let v = echo(&mut r, id);
        assert_eq!(v["error"]["data"]["kind"], "circuit_open", "{v}");
        let text = v["error"]["message"].as_str().unwrap();
        assert!(
            text.contains("'flaky'") && text.contains("retrying in"),
            "{text}"
        );
    }
    let ten = t0.elapsed();
    assert!(
        ten < Duration::from_millis(200),
        "ten refusals took {ten:?}"
    );
    assert_eq!(
        tools_calls_seen(&record),
        seen,
        "an open breaker sends nothing"
    );
    assert!(r
        .stderr()
        .contains("circuit breaker opened for server 'flaky'"));

    // Recovered server, recovery wait over: probes go, two successes close it.
    std::fs::remove_file(&fail).unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    for id in 15..=20 {
        let v = echo(&mut r, id);
        assert_eq!(
            v["result"]["content"][0]["text"],
            format!("n{id}"),
            "{v}\n{}",
            r.stderr()
        );
    }
    assert_eq!(tools_calls_seen(&record), seen + 6);
    let log = r.stderr();
    assert!(
        log.contains("circuit breaker half-open for server 'flaky'"),
        "{log}"
    );
    assert!(
        log.contains("circuit breaker closed for server 'flaky'"),
        "{log}"
    );

    // Closed again: failures count from none, and three open it again.
    std::fs::write(&fail, "").unwrap();
    for id in 21..=23 {
        echo(&mut r, id);
    }
    assert_eq!(echo(&mut r, 24)["error"]["data"]["kind"], "circuit_open");
    r.finish_ok();
}
