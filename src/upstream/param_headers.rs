//! 2026-07-28 `Mcp-Param-*` headers: a tool may mark arguments with `"x-mcp-header":
//! "<Token>"` in its input schema, and every `tools/call` over HTTP must then mirror those
//! arguments as `Mcp-Param-<Token>` headers. The router learns the marks from the
//! `tools/list` replies it forwards and adds the headers to the calls it forwards.
//! Parsing happens only for replies that contain `x-mcp-header` and calls to marked tools.

use std::collections::HashMap;

use serde_json::Value;

/// Property path (through `properties` only) → header token, per tool.
pub type Marks = HashMap<String, Vec<(Vec<String>, String)>>;

/// Learns the marks from a `tools/list` response; leaves `marks` alone for anything else.
pub fn learn(response: &[u8], marks: &mut Marks) {
    static MARK: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"x-mcp-header"));
    if MARK.find(response).is_none() {
        return;
    }
    let Ok(v) = serde_json::from_slice::<Value>(response) else {
        return;
    };
    let Some(tools) = v.pointer("/result/tools").and_then(Value::as_array) else {
        return;
    };
    for tool in tools {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            continue;
        };
        let mut found = Vec::new();
        if let Some(schema) = tool.get("inputSchema") {
            walk(schema, &mut Vec::new(), &mut found);
        }
        marks.insert(name.to_owned(), found);
    }
}

fn walk(schema: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (key, sub) in props {
        path.push(key.clone());
        if let Some(token) = sub.get("x-mcp-header").and_then(Value::as_str) {
            out.push((path.clone(), token.to_owned()));
        }
        if path.len() < 32 {
            walk(sub, path, out);
        }
        path.pop();
    }
}

/// The `Mcp-Param-*` headers for a call's arguments.
pub fn headers(marks: &[(Vec<String>, String)], arguments: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, token) in marks {
        let value = path.iter().try_fold(arguments, |node, key| node.get(key));
        let rendered = match value {
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        out.push((format!("mcp-param-{token}"), header_value(&rendered)));
    }
    out
}

/// A value as the spec carries it in a header: verbatim when it is visible ASCII without
/// edge whitespace, else `=?base64?…?=`.
pub fn header_value(text: &str) -> String {
    let plain = text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && text == text.trim()
        && !(text.starts_with("=?base64?") && text.ends_with("?="));
    if plain {
        text.to_owned()
    } else {
        use base64::Engine;
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn learns_marks_and_mirrors_arguments() {
        let list = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"weather","inputSchema":{"type":"object","properties":{
                "region":{"type":"string","x-mcp-header":"Region"},
                "opts":{"type":"object","properties":{"metric":{"type":"boolean","x-mcp-header":"Metric"}}},
                "city":{"type":"string"}}}},
            {"name":"plain","inputSchema":{"type":"object"}}]}});
        let mut marks = Marks::new();
        learn(list.to_string().as_bytes(), &mut marks);
        let mut h = headers(
            &marks["weather"],
            &json!({"region":"eu-west","opts":{"metric":true},"city":"Oslo"}),
        );
        h.sort();
        assert_eq!(
            h,
            [
                ("mcp-param-Metric".into(), "true".into()),
                ("mcp-param-Region".into(), "eu-west".into())
            ]
        );
        assert!(marks["plain"].is_empty());
        // Absent values are omitted.
        assert!(headers(&marks["weather"], &json!({})).is_empty());
    }

    #[test]
    fn values_that_would_not_survive_a_header_are_base64() {
        assert_eq!(header_value("plain value"), "plain value");
        assert_eq!(header_value("Zürich"), "=?base64?WsO8cmljaA==?=");
        assert_eq!(header_value(" padded"), "=?base64?IHBhZGRlZA==?=");
        assert!(header_value("=?base64?abc?=").starts_with("=?base64?PT9i"));
    }

    #[test]
    fn other_replies_are_ignored() {
        let mut marks = Marks::new();
        learn(
            br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
            &mut marks,
        );
        learn(b"not json x-mcp-header", &mut marks);
        assert!(marks.is_empty());
    }
}
