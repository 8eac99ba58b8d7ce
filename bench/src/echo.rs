//! A minimal MCP server's answers: `initialize`, `ping`, `tools/list` (one tool, `echo`),
//! `tools/call echo`, empty resource/prompt lists. Transport-free: a message in, the reply
//! (if any) out. Written to be cheap, so an echo upstream is never what a benchmark measures.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

const VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<&'a str>,
    params: Option<Params>,
}

#[derive(Deserialize, Default)]
struct Params {
    #[serde(rename = "protocolVersion")]
    protocol_version: Option<String>,
    name: Option<String>,
    arguments: Option<Value>,
}

/// What a message asks of the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A response to send back (the JSON text).
    Reply(String),
    /// A notification or a response: nothing to answer.
    None,
}

/// Answers one JSON-RPC message.
pub fn answer(message: &[u8]) -> Answer {
    let Ok(req) = serde_json::from_slice::<Request>(message) else {
        return Answer::Reply(error(None, -32700, "parse error"));
    };
    let (Some(id), Some(method)) = (req.id, req.method) else {
        return Answer::None;
    };
    let params = req.params.unwrap_or_default();
    let result = match method {
        "initialize" => {
            let asked = params.protocol_version.unwrap_or_default();
            let version = if VERSIONS.contains(&asked.as_str()) {
                asked.as_str()
            } else {
                VERSIONS[3]
            };
            json!({
                "protocolVersion": version,
                "capabilities": {"tools": {}, "resources": {}, "prompts": {}},
                "serverInfo": {"name": "mcp-bench-echo", "version": "0.1.0"}
            })
        }
        "ping" => json!({}),
        "tools/list" => json!({"tools": [{
            "name": "echo",
            "description": "Returns its text",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
        }]}),
        "tools/call" if params.name.as_deref() == Some("echo") => {
            let text = params
                .arguments
                .as_ref()
                .and_then(|a| a.get("text"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            json!({"content": [{"type": "text", "text": text}], "isError": false})
        }
        "tools/call" => return Answer::Reply(error(Some(id), -32602, "unknown tool")),
        "resources/list" => json!({"resources": []}),
        "resources/templates/list" => json!({"resourceTemplates": []}),
        "prompts/list" => json!({"prompts": []}),
        _ => return Answer::Reply(error(Some(id), -32601, "method not found")),
    };
    Answer::Reply(format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
        id.get(),
        result
    ))
}

fn error(id: Option<&RawValue>, code: i64, message: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":{code},"message":"{message}"}}}}"#,
        id.map_or("null", RawValue::get)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(msg: &str) -> Value {
        match answer(msg.as_bytes()) {
            Answer::Reply(r) => serde_json::from_str(&r).unwrap(),
            Answer::None => panic!("no reply to {msg}"),
        }
    }

    #[test]
    fn echoes_and_keeps_the_id() {
        let r = reply(
            r#"{"jsonrpc":"2.0","id":"x-1","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi \"there\""}}}"#,
        );
        assert_eq!(r["id"], "x-1");
        assert_eq!(r["result"]["content"][0]["text"], "hi \"there\"");
    }

    #[test]
    fn negotiates_and_ignores_notifications() {
        let r = reply(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#,
        );
        assert_eq!(r["result"]["protocolVersion"], "2025-03-26");
        let r = reply(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}"#,
        );
        assert_eq!(r["result"]["protocolVersion"], "2025-11-25");
        assert_eq!(
            answer(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Answer::None
        );
        assert_eq!(
            reply(r#"{"jsonrpc":"2.0","id":3,"method":"nope"}"#)["error"]["code"],
            -32601
        );
        assert_eq!(reply("not json")["error"]["code"], -32700);
    }
}
