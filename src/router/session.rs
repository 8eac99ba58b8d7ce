//! Each upstream's session: the handshake to replay, the version that server agreed to,
//! and the era the client speaks to it.
//!
//! Passive mode: the router never invents a handshake. An upstream's session remembers the
//! client's `initialize` (and `notifications/initialized`) exactly as sent to it, and the
//! protocol version that server agreed to, so that after an upstream restart or reconnect
//! it can replay them under a router-owned id. Upstream state is per upstream: the version
//! one server negotiated says nothing about another. No I/O here.

use bytes::Bytes;
use serde::Deserialize;

use crate::wire::Message;

/// Which half of MCP's history the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// Nothing seen yet.
    Unknown,
    /// 2024-11-05 … 2025-11-25: `initialize` first.
    Handshake,
    /// 2026-07-28: no handshake, `_meta` on every request.
    Stateless,
}

/// What to send a fresh upstream before anything else.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub initialize: Message,
    pub initialized: Option<Message>,
}

/// One upstream's session: what to replay on a fresh connection, and what it agreed to.
#[derive(Debug)]
pub struct UpstreamSession {
    era: Era,
    initialize: Option<Message>,
    initialized: Option<Message>,
    /// Set once the server answered `initialize` successfully.
    negotiated: Option<String>,
}

impl Default for UpstreamSession {
    fn default() -> Self {
        Self {
            era: Era::Unknown,
            initialize: None,
            initialized: None,
            negotiated: None,
        }
    }
}

#[derive(Deserialize)]
struct InitReply {
    result: Option<InitResult>,
}

#[derive(Deserialize)]
struct InitResult {
    #[serde(rename = "protocolVersion")]
    protocol_version: Option<String>,
}

#[derive(Deserialize)]
struct MetaProbe<'a> {
    #[serde(borrow)]
    params: Option<MetaParams<'a>>,
}

#[derive(Deserialize)]
struct MetaParams<'a> {
    #[serde(rename = "_meta", borrow)]
    meta: Option<std::collections::HashMap<std::borrow::Cow<'a, str>, serde::de::IgnoredAny>>,
}

const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

impl UpstreamSession {
    pub fn era(&self) -> Era {
        self.era
    }

    /// Protocol version agreed in the handshake, if any.
    pub fn negotiated(&self) -> Option<&str> {
        self.negotiated.as_deref()
    }

    /// Looks at a message from the client; only handshake messages are parsed further.
    pub fn observe_client(&mut self, msg: &Message) {
        match msg.method() {
            Some("initialize") => {
                self.era = Era::Handshake;
                self.initialize = Some(msg.clone());
                self.initialized = None;
                self.negotiated = None;
            }
            Some("notifications/initialized") => self.initialized = Some(msg.clone()),
            Some(_) if self.era == Era::Unknown && carries_version_meta(msg.raw()) => {
                self.era = Era::Stateless;
            }
            _ => {}
        }
    }

    /// Records the server's answer to the client's `initialize`.
    pub fn observe_initialize_reply(&mut self, reply: &Message) {
        let parsed = serde_json::from_slice::<InitReply>(reply.raw()).ok();
        match parsed.and_then(|r| r.result) {
            Some(result) => {
                self.negotiated = Some(result.protocol_version.unwrap_or_default());
            }
            None => {
                // An error: there is no session to restore.
                self.initialize = None;
                self.initialized = None;
                self.negotiated = None;
            }
        }
    }

    /// The handshake to replay on a fresh upstream, once one has succeeded.
    pub fn handshake(&self) -> Option<Handshake> {
        self.negotiated.as_ref()?;
        Some(Handshake {
            initialize: self.initialize.clone()?,
            initialized: self.initialized.clone(),
        })
    }

    /// JSON-RPC batches exist only in protocol version 2025-03-26.
    pub fn allows_batches(&self) -> bool {
        self.negotiated.as_deref() == Some("2025-03-26")
    }
}

fn carries_version_meta(raw: &Bytes) -> bool {
    serde_json::from_slice::<MetaProbe>(raw)
        .ok()
        .and_then(|p| p.params)
        .and_then(|p| p.meta)
        .is_some_and(|m| m.contains_key(VERSION_KEY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    #[test]
    fn handshake_is_kept_only_after_a_successful_reply() {
        let mut s = UpstreamSession::default();
        s.observe_client(&msg(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#));
        assert_eq!(s.era(), Era::Handshake);
        assert!(s.handshake().is_none());
        s.observe_initialize_reply(&msg(r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-03-26","capabilities":{}}}"#));
        s.observe_client(&msg(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ));
        let hs = s.handshake().unwrap();
        assert_eq!(hs.initialize.method(), Some("initialize"));
        assert!(hs.initialized.is_some());
        assert!(s.allows_batches());
    }

    #[test]
    fn failed_initialize_leaves_nothing_to_replay() {
        let mut s = UpstreamSession::default();
        s.observe_client(&msg(r#"{"jsonrpc":"2.0","id":0,"method":"initialize"}"#));
        s.observe_initialize_reply(&msg(
            r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32602,"message":"no"}}"#,
        ));
        assert!(s.handshake().is_none());
    }

    #[test]
    fn stateless_era_is_told_by_meta() {
        let mut s = UpstreamSession::default();
        s.observe_client(&msg(r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#));
        assert_eq!(s.era(), Era::Stateless);
        assert!(s.handshake().is_none());
        assert!(!s.allows_batches());
    }
}
