//! The router's own answers when it stands for several servers: `initialize` and
//! `server/discover` built from the servers' answers (capabilities united, instructions
//! joined under each server's name, a protocol version every server accepts), and the
//! small results it writes itself (`ping`, `logging/setLevel`).
//!
//! These are the only messages the router composes from parsed JSON: they are its own,
//! once per session, off the hot path. Items of lists are spliced, never rebuilt (see
//! `lists.rs`). No I/O, no state beyond what the caller passes.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::wire::rewrite;
use crate::wire::Id;

/// What a server said about itself in its `initialize` or `server/discover` answer.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    /// The version it agreed to (handshake era).
    pub version: Option<String>,
    pub capabilities: Map<String, Value>,
    pub instructions: Option<String>,
    /// Versions it lists in `server/discover` (2026-07-28).
    pub supported: Vec<String>,
}

impl ServerInfo {
    pub fn has(&self, capability: &str) -> bool {
        self.capabilities.contains_key(capability)
    }
}

/// The handshake-era versions, oldest first: versions are a set, this is their order.
pub const HANDSHAKE_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

fn result_of(reply: &[u8]) -> Option<Map<String, Value>> {
    let span = rewrite::find(reply, &["result"])?;
    match serde_json::from_slice::<Value>(&reply[span]).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// What a server's `initialize` or `server/discover` result says (`None` for an error
/// reply): each reads the members it has, the others stay empty.
fn parse_info(reply: &[u8]) -> Option<ServerInfo> {
    let mut r = result_of(reply)?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    Some(ServerInfo {
        version: text(r.get("protocolVersion")),
        instructions: text(r.get("instructions")),
        supported: r
            .get("supportedVersions")
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        capabilities: match r.remove("capabilities") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        },
    })
}

/// The server's `initialize` result, or `None` for an error reply.
pub fn parse_initialize(reply: &[u8]) -> Option<ServerInfo> {
    parse_info(reply)
}

/// The server's `server/discover` result, or `None` for an error reply.
pub fn parse_discover(reply: &[u8]) -> Option<ServerInfo> {
    parse_info(reply)
}

/// A capability is present if any server has it; flags inside are OR-ed; the list
/// capabilities always announce `listChanged` (the router tells the client when a server
/// comes or goes).
pub fn union_capabilities<'a>(infos: impl Iterator<Item = &'a ServerInfo>) -> Map<String, Value> {
    let mut out = Map::new();
    for info in infos {
        unite(&mut out, &info.capabilities);
    }
    for list in ["tools", "prompts", "resources"] {
        if let Some(Value::Object(m)) = out.get_mut(list) {
            m.insert("listChanged".into(), Value::Bool(true));
        }
    }
    out
}

fn unite(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => unite(a, b),
            (Some(Value::Bool(a)), Value::Bool(b)) => *a |= *b,
            (None, v) => {
                into.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
}

/// The servers' instructions, each under its server's name.
pub fn joined_instructions<'a>(
    named: impl Iterator<Item = (&'a str, &'a ServerInfo)>,
) -> Option<String> {
    let parts: Vec<String> = named
        .filter_map(|(name, info)| {
            let text = info.instructions.as_deref()?.trim();
            (!text.is_empty()).then(|| format!("## {name}\n{text}"))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

/// The version to answer the client with: its own if every server agreed to it, else the
/// oldest any server agreed to (the newest all of them accept: a server answers with the
/// newest it has when it does not support the client's).
pub fn common_version<'a>(client: &str, agreed: impl Iterator<Item = &'a str>) -> String {
    let mut oldest: Option<usize> = None;
    let mut all_same = true;
    for v in agreed {
        if v != client {
            all_same = false;
        }
        if let Some(i) = HANDSHAKE_VERSIONS.iter().position(|k| *k == v) {
            oldest = Some(oldest.map_or(i, |o| o.min(i)));
        }
    }
    match (all_same, oldest) {
        (true, _) | (false, None) => client.to_owned(),
        (false, Some(i)) => HANDSHAKE_VERSIONS[i].to_owned(),
    }
}

/// `{"name":"mcp-router","version":…}`.
pub fn router_info() -> Value {
    serde_json::json!({"name": "mcp-router", "version": env!("CARGO_PKG_VERSION")})
}

/// The router's `initialize` result.
pub fn initialize_result(
    version: &str,
    capabilities: Map<String, Value>,
    instructions: Option<String>,
) -> Value {
    let mut r = Map::new();
    r.insert("protocolVersion".into(), Value::String(version.into()));
    r.insert("capabilities".into(), Value::Object(capabilities));
    r.insert("serverInfo".into(), router_info());
    if let Some(text) = instructions {
        r.insert("instructions".into(), Value::String(text));
    }
    Value::Object(r)
}

/// The router's `server/discover` result (2026-07-28).
pub fn discover_result(capabilities: Map<String, Value>, instructions: Option<String>) -> Value {
    let mut r = Map::new();
    r.insert(
        "supportedVersions".into(),
        Value::Array(vec![Value::String("2026-07-28".into())]),
    );
    r.insert("capabilities".into(), Value::Object(capabilities));
    if let Some(text) = instructions {
        r.insert("instructions".into(), Value::String(text));
    }
    r.insert("resultType".into(), Value::String("complete".into()));
    // Another server may come or go at any time: nothing here may be cached for long.
    r.insert("ttlMs".into(), Value::from(0));
    r.insert("cacheScope".into(), Value::String("private".into()));
    r.insert(
        "_meta".into(),
        serde_json::json!({"io.modelcontextprotocol/serverInfo": router_info()}),
    );
    Value::Object(r)
}

/// A complete JSON-RPC result response for `id`.
pub fn result(id: &Id, result_json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(32 + id.as_json().len() + result_json.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.as_json().as_bytes());
    out.extend_from_slice(br#","result":"#);
    out.extend_from_slice(result_json);
    out.push(b'}');
    Bytes::from(out)
}

/// A notification the router sends on its own (`notifications/tools/list_changed`…).
pub fn notification(method: &str) -> Bytes {
    Bytes::from(format!(r#"{{"jsonrpc":"2.0","method":"{method}"}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(caps: Value) -> ServerInfo {
        ServerInfo {
            capabilities: caps.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn capabilities_are_united_and_lists_announce_changes() {
        let a = info(serde_json::json!({"tools": {}, "logging": {}}));
        let b = info(
            serde_json::json!({"resources": {"subscribe": true}, "tools": {"listChanged": false}}),
        );
        let u = union_capabilities([&a, &b].into_iter());
        assert_eq!(
            Value::Object(u),
            serde_json::json!({"tools": {"listChanged": true}, "logging": {}, "resources": {"subscribe": true, "listChanged": true}})
        );
    }

    #[test]
    fn the_version_is_the_clients_when_all_agree_else_the_oldest_agreed() {
        assert_eq!(
            common_version("2025-11-25", ["2025-11-25", "2025-11-25"].into_iter()),
            "2025-11-25"
        );
        assert_eq!(
            common_version("2025-11-25", ["2025-11-25", "2025-06-18"].into_iter()),
            "2025-06-18"
        );
        assert_eq!(
            common_version("2025-06-18", std::iter::empty()),
            "2025-06-18"
        );
    }

    #[test]
    fn instructions_are_joined_under_each_name() {
        let a = ServerInfo {
            instructions: Some("Use me.".into()),
            ..Default::default()
        };
        let b = ServerInfo::default();
        assert_eq!(
            joined_instructions([("a", &a), ("b", &b)].into_iter()).as_deref(),
            Some("## a\nUse me.")
        );
    }

    #[test]
    fn results_are_framed_exactly() {
        let id = Id::from_raw_json("\"x\"");
        assert_eq!(
            &result(&id, b"{}")[..],
            br#"{"jsonrpc":"2.0","id":"x","result":{}}"#
        );
    }
}
