//! The bundled example MCP server: tools `echo`, `add`, `sleep`, `large`, one resource and
//! one prompt, over newline-delimited JSON-RPC on stdio. `--tools N` offers N more tools,
//! `tool_000`, `tool_001`, … (small schemas; each echoes its `text` like `echo`), so
//! benchmarks can list many tools.
//!
//! It exists so the quickstart needs nothing outside this repository, and so benchmarks
//! have an upstream that is never the bottleneck: blocking, buffered std I/O on one thread
//! (plus one short-lived thread per `sleep` call). It speaks both MCP eras: `initialize`
//! (2024-11-05 … 2025-11-25) and 2026-07-28 (`server/discover`, `_meta` on requests).
//! Run: `cargo run --example echo_server` (then type JSON-RPC lines), or behind the router:
//! `mcp-router -- target/debug/examples/echo_server`.

use std::collections::HashSet;
use std::io::{BufRead, BufWriter, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

const HANDSHAKE_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
const STATELESS_VERSION: &str = "2026-07-28";
const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// How many extra tools (`--tools N`) this server offers; set once at start.
static EXTRA_TOOLS: OnceLock<usize> = OnceLock::new();

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<String>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

/// What handling one line produced.
#[derive(Debug, PartialEq)]
enum Outcome {
    Reply(String),
    /// `sleep`: answer `reply` after `ms`, unless cancelled first.
    Later {
        id: String,
        ms: u64,
        reply: String,
    },
    Cancel(String),
    Nothing,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "--verbose");
    let extra = args
        .iter()
        .position(|a| a == "--tools")
        .and_then(|i| args.get(i + 1).map(String::as_str))
        .or_else(|| args.iter().find_map(|a| a.strip_prefix("--tools=")));
    if let Some(n) = extra {
        match n.parse::<usize>() {
            Ok(n) => {
                let _ = EXTRA_TOOLS.set(n);
            }
            Err(_) => {
                eprintln!("echo_server: --tools wants a number, got {n:?}");
                std::process::exit(2);
            }
        }
    }
    eprintln!("echo_server: mcp-router example server ready on stdio");
    let out = Arc::new(Mutex::new(BufWriter::new(std::io::stdout())));
    let cancelled: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stdin = std::io::stdin();
    let mut line = String::new();
    let mut input = stdin.lock();
    loop {
        line.clear();
        match input.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                eprintln!("echo_server: reading stdin failed: {e}");
                break;
            }
        }
        if line.trim().is_empty() {
            continue;
        }
        if verbose {
            eprintln!("echo_server <- {}", line.trim_end());
        }
        match handle(line.trim_end()) {
            Outcome::Reply(reply) => send(&out, &reply),
            Outcome::Later { id, ms, reply } => {
                let (out, cancelled) = (out.clone(), cancelled.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    let was_cancelled =
                        cancelled.lock().map(|mut c| c.remove(&id)).unwrap_or(false);
                    if !was_cancelled {
                        send(&out, &reply);
                    }
                });
            }
            Outcome::Cancel(id) => {
                if let Ok(mut c) = cancelled.lock() {
                    c.insert(id);
                }
            }
            Outcome::Nothing => {}
        }
    }
}

fn send(out: &Mutex<BufWriter<std::io::Stdout>>, reply: &str) {
    if let Ok(mut w) = out.lock() {
        let ok = w
            .write_all(reply.as_bytes())
            .and_then(|_| w.write_all(b"\n"))
            .and_then(|_| w.flush());
        if let Err(e) = ok {
            eprintln!("echo_server: writing stdout failed: {e}");
            std::process::exit(1);
        }
    }
}

fn result(id: &RawValue, result: &Value) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
        id.get(),
        result
    )
}

fn error(id: Option<&RawValue>, code: i64, message: &str) -> String {
    let id = id.map_or("null", RawValue::get);
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{}}}}}"#,
        Value::String(message.to_owned())
    )
}

/// The whole server, as a pure function of one input line.
fn handle(line: &str) -> Outcome {
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return Outcome::Reply(error(None, -32700, &format!("parse error: {e}"))),
    };
    let params: Value = req
        .params
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or(Value::Null);
    let Some(method) = req.method.as_deref() else {
        return Outcome::Nothing; // a response to us: we never ask anything
    };
    let Some(id) = req.id else {
        if method == "notifications/cancelled" {
            if let Some(target) = params.get("requestId") {
                return Outcome::Cancel(target.to_string());
            }
        }
        return Outcome::Nothing;
    };
    let stateless = params
        .get("_meta")
        .and_then(|m| m.get(VERSION_KEY))
        .is_some();
    let complete = |mut v: Value| {
        if stateless {
            v["resultType"] = json!("complete");
        }
        v
    };
    let reply = match method {
        "initialize" => {
            let asked = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let version = if HANDSHAKE_VERSIONS.contains(&asked) {
                asked
            } else {
                "2025-11-25"
            };
            json!({
                "protocolVersion": version,
                "capabilities": capabilities(),
                "serverInfo": server_info(),
                "instructions": "An example server bundled with mcp-router: echo, add, sleep, large."
            })
        }
        "server/discover" => {
            let mut versions = vec![STATELESS_VERSION];
            versions.extend(HANDSHAKE_VERSIONS);
            json!({
                "supportedVersions": versions,
                "capabilities": capabilities(),
                "ttlMs": 60000,
                "cacheScope": "server",
                "resultType": "complete",
                "_meta": {"io.modelcontextprotocol/serverInfo": server_info()}
            })
        }
        "ping" => json!({}),
        "tools/list" => complete(json!({"tools": tools()})),
        "tools/call" => {
            let name = params.get("name").and_then(Value::as_str).unwrap_or("");
            let args = params.get("arguments").cloned().unwrap_or(Value::Null);
            match name {
                "echo" => {
                    let text = args.get("text").and_then(Value::as_str).unwrap_or("");
                    complete(text_content(text))
                }
                extra if is_extra_tool(extra, extra_tools()) => {
                    let text = args.get("text").and_then(Value::as_str).unwrap_or("");
                    complete(text_content(text))
                }
                "add" => {
                    let a = args.get("a").and_then(Value::as_f64).unwrap_or(0.0);
                    let b = args.get("b").and_then(Value::as_f64).unwrap_or(0.0);
                    complete(text_content(&format_number(a + b)))
                }
                "sleep" => {
                    let ms = args
                        .get("ms")
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                        .min(600_000);
                    return Outcome::Later {
                        id: id.get().to_owned(),
                        ms,
                        reply: result(id, &complete(text_content(&format!("slept {ms} ms")))),
                    };
                }
                "large" => {
                    let n = args
                        .get("bytes")
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                        .min(1 << 30);
                    complete(text_content(&"x".repeat(n as usize)))
                }
                other => {
                    return Outcome::Reply(error(
                        Some(id),
                        -32602,
                        &format!("unknown tool: {other}"),
                    ))
                }
            }
        }
        "resources/list" => complete(json!({"resources": [{
            "uri": "echo://readme", "name": "readme", "mimeType": "text/plain",
            "description": "What this server is"
        }]})),
        "resources/read" => match params.get("uri").and_then(Value::as_str) {
            Some("echo://readme") => complete(json!({"contents": [{
                "uri": "echo://readme", "mimeType": "text/plain",
                "text": "The example server bundled with mcp-router."
            }]})),
            other => {
                return Outcome::Reply(error(
                    Some(id),
                    -32002,
                    &format!("resource not found: {}", other.unwrap_or("")),
                ))
            }
        },
        "prompts/list" => complete(json!({"prompts": [{
            "name": "greet", "description": "Greets someone",
            "arguments": [{"name": "name", "required": true}]
        }]})),
        "prompts/get" => {
            let who = params
                .get("arguments")
                .and_then(|a| a.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("world");
            complete(
                json!({"messages": [{"role": "user", "content": {"type": "text", "text": format!("Hello, {who}!")}}]}),
            )
        }
        "logging/setLevel" => json!({}),
        other => {
            return Outcome::Reply(error(
                Some(id),
                -32601,
                &format!("method not found: {other}"),
            ))
        }
    };
    Outcome::Reply(result(id, &reply))
}

fn capabilities() -> Value {
    json!({"tools": {}, "resources": {}, "prompts": {}, "logging": {}})
}

fn server_info() -> Value {
    json!({"name": "mcp-router-echo", "version": env!("CARGO_PKG_VERSION")})
}

fn text_content(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": false})
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// The tool list: built once (the extra tools included), so listing costs this server only
/// the serialization.
fn tools() -> &'static Value {
    static TOOLS: OnceLock<Value> = OnceLock::new();
    TOOLS.get_or_init(|| tool_list(extra_tools()))
}

fn extra_tools() -> usize {
    EXTRA_TOOLS.get().copied().unwrap_or(0)
}

/// The four tools, then `extra` more: `tool_000`, `tool_001`, ….
fn tool_list(extra: usize) -> Value {
    let mut tools = base_tools();
    if let Value::Array(list) = &mut tools {
        list.extend((0..extra).map(|i| {
            json!({"name": format!("tool_{i:03}"), "description": format!("Extra tool {i}: returns its text"),
                   "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}})
        }));
    }
    tools
}

/// `tool_NNN`, as `tool_list(extra)` names it.
fn is_extra_tool(name: &str, extra: usize) -> bool {
    name.strip_prefix("tool_")
        .filter(|n| n.len() >= 3 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|i| i < extra && name == format!("tool_{i:03}"))
}

fn base_tools() -> Value {
    json!([
        {"name": "echo", "description": "Returns its text",
         "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
        {"name": "add", "description": "Adds two numbers",
         "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}},
        {"name": "sleep", "description": "Answers after ms milliseconds (cancellable)",
         "inputSchema": {"type": "object", "properties": {"ms": {"type": "integer"}}, "required": ["ms"]}},
        {"name": "large", "description": "Returns a text of the given size in bytes",
         "inputSchema": {"type": "object", "properties": {"bytes": {"type": "integer"}}, "required": ["bytes"]}}
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(line: &str) -> Value {
        match handle(line) {
            Outcome::Reply(r) => serde_json::from_str(&r).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn handshake_negotiates_known_versions() {
        let v = reply(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#,
        );
        assert_eq!(v["result"]["protocolVersion"], "2025-03-26");
        let v = reply(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}"#,
        );
        assert_eq!(v["result"]["protocolVersion"], "2025-11-25");
    }

    #[test]
    fn tools_answer_and_keep_the_id() {
        let v = reply(
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
        );
        assert_eq!(
            (v["id"].clone(), v["result"]["content"][0]["text"].clone()),
            (json!("a"), json!("hi"))
        );
        let v = reply(
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":40}}}"#,
        );
        assert_eq!(v["result"]["content"][0]["text"], "42");
        let v = reply(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope"}}"#);
        assert_eq!(v["error"]["code"], -32602);
    }

    #[test]
    fn stateless_requests_get_result_type() {
        let v = reply(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert_eq!(v["result"]["resultType"], "complete");
        let v = reply(r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}"#);
        assert!(v["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28")));
    }

    #[test]
    fn extra_tools_are_named_in_order_and_callable_by_name() {
        let list = tool_list(3);
        let names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["echo", "add", "sleep", "large", "tool_000", "tool_001", "tool_002"]
        );
        assert!(is_extra_tool("tool_002", 3));
        assert!(!is_extra_tool("tool_003", 3));
        assert!(!is_extra_tool("tool_2", 3));
        assert!(!is_extra_tool("tool_0002", 3));
        assert_eq!(tool_list(1000)[1003]["name"], "tool_999");
    }

    #[test]
    fn bad_input_and_notifications() {
        assert_eq!(reply("{nope")["error"]["code"], -32700);
        assert_eq!(
            handle(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Outcome::Nothing
        );
        assert_eq!(
            handle(
                r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":4}}"#
            ),
            Outcome::Cancel("4".into())
        );
        assert_eq!(
            reply(r#"{"jsonrpc":"2.0","id":9,"method":"x/y"}"#)["error"]["code"],
            -32601
        );
        assert!(matches!(
            handle(
                r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"sleep","arguments":{"ms":10}}}"#
            ),
            Outcome::Later { ms: 10, .. }
        ));
    }
}
