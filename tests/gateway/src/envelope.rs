//! The WebSocket wire envelope: parsing a router's request envelope with the gateway's
//! validation errors, and building the gateway's reply envelope.

use crate::gojson;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// A request envelope that passed validation.
#[derive(Debug)]
pub struct Envelope {
    pub target_namespace: String,
    pub payload: Value,
}

/// A validation failure: the id to answer with (the envelope's top-level id) and the text.
#[derive(Debug, PartialEq)]
pub struct Invalid {
    pub id: Value,
    pub message: String,
}

/// Parses and validates one text frame as the gateway does.
pub fn parse(data: &str) -> Result<Envelope, Invalid> {
    let invalid = |id: Value, message: String| Invalid {
        id,
        message: format!("VALIDATION: {message}"),
    };
    let v: Value = serde_json::from_str(data)
        .map_err(|e| invalid(Value::Null, format!("invalid wire message: {e}")))?;
    let obj = match &v {
        Value::Object(obj) => obj.clone(),
        Value::Null => serde_json::Map::new(),
        other => {
            let msg = format!(
                "invalid wire message: json: cannot unmarshal {} into Go value of type websocket.WireMessage",
                kind(other)
            );
            return Err(invalid(Value::Null, msg));
        }
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    for field in ["timestamp", "source", "target_namespace", "auth_token"] {
        match obj.get(field) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(other) => {
                let msg = format!(
                    "invalid wire message: json: cannot unmarshal {} into Go struct field WireMessage.{field} of type string",
                    kind(other)
                );
                return Err(invalid(id, msg));
            }
        }
    }
    let payload = match obj.get("mcp_payload") {
        None | Some(Value::Null) => return Err(invalid(id, "missing MCP payload".into())),
        Some(p) => p.clone(),
    };
    if let Err(why) = check_request(&payload) {
        return Err(invalid(id, format!("invalid MCP request: {why}")));
    }
    let target_namespace = obj
        .get("target_namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(Envelope {
        target_namespace,
        payload,
    })
}

/// A JSON-RPC request or notification: an object with `jsonrpc: "2.0"` and a method.
fn check_request(payload: &Value) -> Result<(), String> {
    let Value::Object(obj) = payload else {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type mcp.Request",
            kind(payload)
        ));
    };
    for field in ["jsonrpc", "method"] {
        match obj.get(field) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(other) => {
                return Err(format!(
                    "json: cannot unmarshal {} into Go struct field Request.{field} of type string",
                    kind(other)
                ))
            }
        }
    }
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err("jsonrpc must be \"2.0\"".into());
    }
    match obj.get("method").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => Ok(()),
        _ => Err("missing method".into()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The reply envelope around a Go-marshalled bare JSON-RPC response.
pub fn reply(id: &Value, payload: &str) -> String {
    format!(
        "{{\"id\":{},\"timestamp\":\"{}\",\"source\":\"gateway\",\"mcp_payload\":{payload}}}",
        gojson::marshal(id),
        rfc3339_now()
    )
}

/// Current UTC time as RFC 3339 with whole seconds, e.g. `2026-11-24T10:30:45Z`.
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_516_245), "2026-11-24T10:30:45Z");
    }

    #[test]
    fn validation_errors() {
        assert!(parse("nope")
            .unwrap_err()
            .message
            .starts_with("VALIDATION: invalid wire message: "));
        let e = parse(r#"{"id":7,"timestamp":"x","source":"local-router"}"#).unwrap_err();
        assert_eq!(
            e,
            Invalid {
                id: json!(7),
                message: "VALIDATION: missing MCP payload".into()
            }
        );
        let e = parse(r#"{"id":"a","mcp_payload":{"id":"a","result":{}}}"#).unwrap_err();
        assert!(e.message.starts_with("VALIDATION: invalid MCP request: "));
        assert_eq!(e.id, json!("a"));
        let ok =
            parse(r#"{"id":1,"mcp_payload":{"jsonrpc":"2.0","id":1,"method":"ping"}}"#).unwrap();
        assert_eq!(ok.payload["method"], "ping");
    }
}
