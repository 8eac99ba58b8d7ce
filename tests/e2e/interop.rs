//! The official Python `mcp` SDK client and real servers (the Python SDK's `MCPServer`,
//! `@modelcontextprotocol/server-everything`), with and without the router in between:
//! the same scenario must give the same results.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `scenario_client.py` against `server` (directly or through the router) and returns
/// its normalized JSON document.
fn scenario(py: &Path, mode: &str, peer: &str, server: &[String], via_router: bool) -> Value {
    let mut args = vec!["--".to_owned()];
    if via_router {
        args.push(router_bin().display().to_string());
        args.push("--".into());
    }
    args.extend_from_slice(server);
    run_scenario(
        py,
        mode,
        peer,
        &args,
        if via_router { "router" } else { "direct" },
    )
}

/// Runs `scenario_client.py --mode MODE --peer PEER ARGS…` and returns its JSON document.
pub fn run_scenario(py: &Path, mode: &str, peer: &str, args: &[String], label: &str) -> Value {
    try_run_scenario(py, mode, peer, args, label).unwrap_or_else(|e| panic!("{e}"))
}

/// `run_scenario`, with a failed or unparsable run as an error (what it printed, for a
/// message) instead of a panic.
pub fn try_run_scenario(
    py: &Path,
    mode: &str,
    peer: &str,
    args: &[String],
    label: &str,
) -> Result<Value, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(py);
    cmd.arg(py_script("scenario_client.py"))
        .args(["--mode", mode, "--peer", peer])
        .current_dir(dir.path())
        .env("MCP_LOGGING_FORMAT", "text")
        .env_remove("MCP_ROUTER_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.args(args);
    let mut child = cmd.spawn().expect("start scenario client");
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > SCENARIO_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "scenario {mode}/{peer} ({label}) took over {SCENARIO_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "scenario {mode}/{peer} ({label}) failed: {}\nstdout: {stdout:.2000}\nstderr: {}",
            out.status,
            ends(&String::from_utf8_lossy(&out.stderr), 2000, 5000)
        ));
    }
    serde_json::from_str(&stdout).map_err(|e| {
        format!("scenario {mode}/{peer} ({label}): output is not JSON ({e}): {stdout:.500}")
    })
}

/// The first `head` and the last `tail` bytes of `s` (about: UTF-8 is kept whole), where
/// what went wrong is said: the router's messages come first, a traceback ends last.
fn ends(s: &str, head: usize, tail: usize) -> String {
    if s.len() <= head + tail {
        return s.to_owned();
    }
    let (mut a, mut b) = (head, s.len() - tail);
    while !s.is_char_boundary(a) {
        a -= 1;
    }
    while !s.is_char_boundary(b) {
        b += 1;
    }
    format!("{}\n[…]\n{}", &s[..a], &s[b..])
}

fn same_with_and_without_router(mode: &str, peer: &str, server: Vec<String>, py: &Path) {
    let direct = scenario(py, mode, peer, &server, false);
    let routed = scenario(py, mode, peer, &server, true);
    assert_same(mode, peer, &direct, &routed);
}

/// The two documents are equal; on failure, the differing lines.
pub fn assert_same(mode: &str, peer: &str, direct: &Value, routed: &Value) {
    if direct != routed {
        let a = serde_json::to_string_pretty(&direct).unwrap();
        let b = serde_json::to_string_pretty(&routed).unwrap();
        let diff: Vec<String> = a
            .lines()
            .zip(b.lines())
            .filter(|(x, y)| x != y)
            .take(20)
            .map(|(x, y)| format!("- {x}\n+ {y}"))
            .collect();
        panic!(
            "{mode}/{peer}: results differ through the router:\n{}",
            diff.join("\n")
        );
    }
    assert_exercised(mode, peer, direct);
}

/// The scenario really exercised the server: it listed tools, and two tool calls came back
/// with the right answers. Equal documents prove nothing when every call failed the same way
/// on both sides (an unknown tool, an error result), which a count of keys cannot see: the
/// handshake alone always gives `protocol_version`, `server_info` and `instructions`.
pub fn assert_exercised(mode: &str, peer: &str, doc: &Value) {
    let answer = |key: &str| {
        let result = &doc[key];
        if result["isError"] == Value::Bool(true) {
            return None;
        }
        result["content"][0]["text"].as_str()
    };
    // Each peer's adding tool: the SDK server's `add`, server-everything's `get-sum`.
    let sum = if peer == "everything" {
        "get-sum"
    } else {
        "add"
    };
    let tools = doc["tools"].as_array().map_or(0, Vec::len);
    assert!(
        tools > 0
            && answer("echo").is_some_and(|t| t.contains("héllo ✓"))
            && answer(sum).is_some_and(|t| t.contains("42")),
        "{mode}/{peer}: the scenario did not exercise the server ({tools} tools; echo: {}; {sum}: {}):\n{doc}",
        doc["echo"],
        doc[sum]
    );
}

fn sdk_server(py: &Path) -> Vec<String> {
    vec![
        py.display().to_string(),
        py_script("sdk_server.py").display().to_string(),
        "--transport".into(),
        "stdio".into(),
    ]
}

fn everything() -> Option<Vec<String>> {
    let js = server_everything()?;
    Some(vec![
        "node".into(),
        js.display().to_string(),
        "stdio".into(),
    ])
}

#[test]
fn python_sdk_server_legacy_mode() {
    let Some(py) = sdk_python() else { return };
    same_with_and_without_router("legacy", "sdk", sdk_server(&py), &py);
}

#[test]
fn python_sdk_server_2026_mode() {
    let Some(py) = sdk_python() else { return };
    same_with_and_without_router("2026-07-28", "sdk", sdk_server(&py), &py);
}

#[test]
fn python_sdk_server_auto_mode() {
    let Some(py) = sdk_python() else { return };
    same_with_and_without_router("auto", "sdk", sdk_server(&py), &py);
}

#[test]
fn server_everything_legacy_mode() {
    let Some(py) = sdk_python() else { return };
    let Some(server) = everything() else { return };
    same_with_and_without_router("legacy", "everything", server, &py);
}

#[test]
fn server_everything_auto_mode() {
    let Some(py) = sdk_python() else { return };
    let Some(server) = everything() else { return };
    same_with_and_without_router("auto", "everything", server, &py);
}
