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
