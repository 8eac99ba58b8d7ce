//! Which era the router speaks to whom when several servers are aggregated: the client's
//! era learnt from its first request, each server's from its answers; a 2026-07-28
//! client's servers probed with `server/discover`; a handshake-era server initialized by
//! the router for such a client, its requests stripped of the 2026 `_meta` keys and its
//! results given what that era requires. Part of [`Aggregate`]; no I/O.

use bytes::Bytes;

use super::{bridge_initialized, merge, Aggregate, Era, OpKind, VERSION_KEY};
use crate::router::UpstreamId;
use crate::wire::{rewrite, ErrorKind, Message, RouterError};

impl Aggregate {
    /// Servers owed a `notifications/initialized` (see [`Aggregate::bridge_initialize`]),
    /// with the message to send them.
    pub fn take_bridged(&mut self) -> Vec<(UpstreamId, Message)> {
        std::mem::take(&mut self.bridged)
            .into_iter()
            .map(|u| (u, bridge_initialized()))
            .collect()
    }

    /// Learns the client's era from a request; for a 2026-07-28 client that did not send
    /// `server/discover`, plans a probe of every server.
    pub(super) fn observe_client(
        &mut self,
        msg: &Message,
        method: &str,
        usable: impl Fn(&UpstreamId) -> bool,
    ) {
        if method == "initialize" {
            self.client_era = Era::Handshake;
            return;
        }
        if self.client_era == Era::Unknown {
            if rewrite::find(msg.raw(), VERSION_KEY).is_none() {
                return;
            }
            self.client_era = Era::Stateless;
            self.client_meta =
                rewrite::find(msg.raw(), &["params", "_meta"]).map(|s| msg.raw()[s].to_vec());
        }
        if self.client_era != Era::Stateless || self.probed {
            return;
        }
        self.probed = true;
        if method == "server/discover" {
            return;
        }
        let unknown: Vec<UpstreamId> = self
            .ids()
            .filter(|u| usable(u) && self.servers[u.0 as usize].era.is_none())
            .collect();
        if let Some(discover) = self.discover_message() {
            self.probe = unknown.into_iter().map(|u| (u, discover.clone())).collect();
        }
    }

    /// A `server/discover` carrying the client's `_meta`.
    pub(super) fn discover_message(&self) -> Option<Message> {
        let meta = self.client_meta.as_deref().unwrap_or(b"{}");
        let mut raw =
            br#"{"jsonrpc":"2.0","id":0,"method":"server/discover","params":{"_meta":"#.to_vec();
        raw.extend_from_slice(meta);
        raw.extend_from_slice(b"}}");
        Message::parse(Bytes::from(raw)).ok()
    }

    /// The `initialize` the router sends a handshake-era server on behalf of a
    /// 2026-07-28 client: the client's capabilities and identity from its `_meta`.
    pub fn bridge_initialize(&self) -> Option<Message> {
        let meta = self.client_meta.as_deref().unwrap_or(b"{}");
        let caps = rewrite::find(meta, &["io.modelcontextprotocol/clientCapabilities"])
            .map_or(&b"{}"[..], |s| &meta[s]);
        let info =
            rewrite::find(meta, &["io.modelcontextprotocol/clientInfo"]).map(|s| meta[s].to_vec());
        let info = info.unwrap_or_else(|| merge::router_info().to_string().into_bytes());
        let mut raw = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":"#.to_vec();
        raw.extend_from_slice(caps);
        raw.extend_from_slice(br#","clientInfo":"#);
        raw.extend_from_slice(&info);
        raw.extend_from_slice(b"}}");
        Message::parse(Bytes::from(raw)).ok()
    }

    /// Whether a fan-out part of `kind` that ended in a JSON-RPC error means the server
    /// speaks only the handshake era (the router then initializes it for the client).
    pub fn bridges(&self, kind: OpKind) -> bool {
        self.client_era == Era::Stateless && matches!(kind, OpKind::Discover | OpKind::Probe)
    }

    /// `msg` as server `up` must see it: for a handshake-era server behind a 2026-07-28
    /// client, without the 2026 keys of `_meta` (such a server may refuse them).
    pub(super) fn for_server(&self, up: UpstreamId, msg: Message) -> Message {
        let bridged = self.client_era == Era::Stateless
            && self.servers.get(up.0 as usize).and_then(|s| s.era) == Some(Era::Handshake);
        if !bridged {
            return msg;
        }
        rewrite::remove_members(msg.raw(), &["params", "_meta"], |k| {
            k.starts_with("io.modelcontextprotocol/")
        })
        .and_then(|b| Message::parse(Bytes::from(b)).ok())
        .unwrap_or(msg)
    }

    /// A reply from server `up` as the client must see it: a handshake-era server behind
    /// a 2026-07-28 client does not write what that era requires of results
    /// (`resultType`, and `ttlMs` / `cacheScope` on cacheable ones); the router adds them.
    pub fn reply_for_client(&self, up: UpstreamId, method: Option<&str>, bytes: Bytes) -> Bytes {
        let bridged = self.client_era == Era::Stateless
            && self.servers.get(up.0 as usize).and_then(|s| s.era) == Some(Era::Handshake);
        if !bridged || rewrite::find(&bytes, &["result"]).is_none() {
            return bytes;
        }
        let mut out = bytes.to_vec();
        let mut add = vec![("resultType", &b"\"complete\""[..])];
        if matches!(
            method,
            Some(
                "resources/read"
                    | "resources/list"
                    | "resources/templates/list"
                    | "tools/list"
                    | "prompts/list"
            )
        ) {
            add.push(("ttlMs", b"0"));
            add.push(("cacheScope", b"\"private\""));
        }
        for (key, value) in add {
            if rewrite::find(&out, &["result", key]).is_none() {
                if let Some(b) = rewrite::set_member(&out, &["result"], key, value) {
                    out = b;
                }
            }
        }
        Bytes::from(out)
    }

    /// Whether server `up`'s requests must be carried the 2026 way (a handshake-era
    /// server behind a 2026-07-28 client; see `input`).
    pub fn translates(&self, up: UpstreamId) -> bool {
        self.client_era == Era::Stateless
            && self.servers.get(up.0 as usize).and_then(|s| s.era) != Some(Era::Stateless)
    }

    /// A request from server `up` that cannot reach the 2026-07-28 client (a `ping`, or
    /// one that belongs to no single call in flight): the answer to send that server.
    pub fn refuse_server_request(&self, up: UpstreamId, msg: &Message) -> Option<Bytes> {
        let id = msg.id()?;
        if msg.method() == Some("ping") {
            return Some(merge::result(id, b"{}"));
        }
        tracing::warn!(upstream = %self.name(up), method = ?msg.method(), "a server request the 2026-07-28 client cannot take (no single call of its is running at that server); refused");
        Some(
            RouterError::new(
                ErrorKind::MethodNotFound,
                "the client speaks MCP 2026-07-28, which takes no server-to-client requests outside a call",
            )
            .to_response(Some(id)),
        )
    }
}
