//! Go-compatible JSON output: what `encoding/json.Marshal` produces for values the
//! mcp-bridge gateway decoded into `interface{}` — object keys sorted, numbers through
//! float64 (integers above 2^53 lose precision), `<`, `>`, `&`, U+2028 and U+2029 escaped —
//! plus the gateway's struct shapes (`mcp.Request`, `mcp.Response`) in field order.

use serde_json::Value;
use std::fmt::Write as _;

/// Marshals `v` as Go would after decoding it into `interface{}`.
pub fn marshal(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

/// `mcp.Request` as the gateway writes it to a backend: `jsonrpc`, `method`, `params`
/// (dropped when null/absent), `id`. A notification (no `id` member) keeps having none.
pub fn request(payload: &Value) -> String {
    let mut out = String::from("{\"jsonrpc\":");
    write_value(&mut out, payload.get("jsonrpc").unwrap_or(&Value::Null));
    out.push_str(",\"method\":");
    write_value(&mut out, payload.get("method").unwrap_or(&Value::Null));
    if let Some(params) = payload.get("params").filter(|p| !p.is_null()) {
        out.push_str(",\"params\":");
        write_value(&mut out, params);
    }
    if let Some(id) = payload.get("id") {
        out.push_str(",\"id\":");
        write_value(&mut out, id);
    }
    out.push('}');
    out
}

/// `mcp.Response`: `jsonrpc`, `result` (omitted when null), `error` (`code`, `message`,
/// `data` omitted when null), `id` (always present, null when absent).
pub fn response(
    jsonrpc: &str,
    result: Option<&Value>,
    error: Option<&Value>,
    id: &Value,
) -> String {
    let mut out = String::from("{\"jsonrpc\":");
    write_str(&mut out, jsonrpc);
    if let Some(result) = result.filter(|r| !r.is_null()) {
        out.push_str(",\"result\":");
        write_value(&mut out, result);
    }
    if let Some(error) = error.filter(|e| !e.is_null()) {
        out.push_str(",\"error\":{\"code\":");
        match error.get("code") {
            Some(Value::Number(n)) => write_number(&mut out, n.as_f64().unwrap_or(0.0)),
            _ => out.push('0'),
        }
        out.push_str(",\"message\":");
        write_str(
            &mut out,
            error.get("message").and_then(Value::as_str).unwrap_or(""),
        );
        if let Some(data) = error.get("data").filter(|d| !d.is_null()) {
            out.push_str(",\"data\":");
            write_value(&mut out, data);
        }
        out.push('}');
    }
    out.push_str(",\"id\":");
    write_value(&mut out, id);
    out.push('}');
    out
}

/// A -32603 error response with the given message, as the gateway sends routing errors.
pub fn internal_error(id: &Value, message: &str) -> String {
    let error = serde_json::json!({"code": -32603, "message": message});
    response("2.0", None, Some(&error), id)
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n.as_f64().unwrap_or(0.0)),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, key);
                out.push(':');
                write_value(out, &map[key]);
            }
            out.push('}');
        }
    }
}

/// Go's float64 formatting: plain decimal for 1e-6 <= |f| < 1e21, else `1e+21` / `1e-7`.
fn write_number(out: &mut String, f: f64) {
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        let _ = write!(out, "{f}");
        return;
    }
    let exp = format!("{f:e}");
    match exp.split_once('e') {
        Some((mantissa, e)) if !e.starts_with('-') => {
            let _ = write!(out, "{mantissa}e+{e:0>2}");
        }
        _ => out.push_str(&exp),
    }
}

fn write_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                let b = c as u32 as usize;
                out.push_str("\\u00");
                out.push(HEX[b >> 4] as char);
                out.push(HEX[b & 0xF] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_escapes_like_go() {
        let v = json!({"b": "<a&b>", "a": [1, 2.5, 1e21, 1e-7, 9007199254740993u64]});
        assert_eq!(
            marshal(&v),
            r#"{"a":[1,2.5,1e+21,1e-7,9007199254740992],"b":"\u003ca\u0026b\u003e"}"#
        );
    }

    #[test]
    fn request_and_response_shapes() {
        let req = json!({"id": 1, "method": "tools/list", "jsonrpc": "2.0", "params": null});
        assert_eq!(
            request(&req),
            r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#
        );
        assert_eq!(
            internal_error(&Value::Null, "Server shutting down"),
            r#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"Server shutting down"},"id":null}"#
        );
    }
}
