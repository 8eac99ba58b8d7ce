//! A handshake-era server's request to a 2026-07-28 client, carried the 2026 way.
//!
//! Such a server asks the client something (elicitation, sampling, roots) with a live
//! request while one of the client's calls to it runs; a 2026-07-28 client takes no server
//! requests but understands `input_required`. So the router answers the client's call with
//! `{"resultType":"input_required","inputRequests":{"server":{method, params}},
//! "requestState":"<token>"}`, keeps the call running at the server (*parked*: its
//! client id released, since the client considers it answered), and when the client sends
//! the call again with `requestState` and `inputResponses`, answers the server's request
//! with the client's response and lets the server's result go to the retry's id. A call
//! that ends while parked (the server answered anyway, timed out, or its connection was
//! lost) keeps its ending for the retry. Bookkeeping only; the core moves the bytes.

use std::collections::VecDeque;

use bytes::Bytes;
use foldhash::HashMap;

use super::super::pending::Key;
use crate::wire::{rewrite, Id, Message};

/// Parked calls remembered at most (a client that never retries must not grow this).
const MAX_PARKED: usize = 1024;

/// The key under which the server's request travels in `inputRequests`.
const INPUT_KEY: &str = "server";

/// One parked call.
#[derive(Debug)]
pub struct Parked {
    /// The call, in the pending table.
    pub key: Key,
    /// The connection that asked, and the id it asked under.
    pub gen: u64,
    pub server_id: Id,
    /// How the call ended while parked (a reply or the router's error), if it did.
    pub held: Option<Bytes>,
}

/// What the client's retry leads to.
#[derive(Debug)]
pub enum Resume {
    /// The call ended meanwhile: its ending, for the retry.
    Ended(Bytes),
    /// Answer the server's request with this, on connection `gen`; the call (`key`)
    /// continues under the retry's id.
    Answer { key: Key, gen: u64, reply: Bytes },
}

/// Parked calls by their request state token.
#[derive(Debug, Default)]
pub struct Inputs {
    parked: HashMap<String, Parked>,
    by_key: HashMap<Key, String>,
    order: VecDeque<String>,
    next: u64,
}

impl Inputs {
    /// Parks call `key` (asked as `client_id`) for the server request `server` (on
    /// connection `gen`); returns the `input_required` response for the client.
    pub fn park(&mut self, key: Key, client_id: &Id, gen: u64, server: &Message) -> Option<Bytes> {
        let server_id = server.id()?.clone();
        let method = server.method()?;
        let params =
            rewrite::find(server.raw(), &["params"]).map_or(&b"{}"[..], |s| &server.raw()[s]);
        self.next += 1;
        let token = format!("mcp-router-input-{}", self.next);
        let mut result = format!(
            r#"{{"resultType":"input_required","inputRequests":{{"{INPUT_KEY}":{{"method":{},"params":"#,
            rewrite::quote(method)
        )
        .into_bytes();
        result.extend_from_slice(params);
        result.extend_from_slice(format!(r#"}}}},"requestState":"{token}"}}"#).as_bytes());
        if self.order.len() >= MAX_PARKED {
            if let Some(old) = self.order.pop_front() {
                if let Some(p) = self.parked.remove(&old) {
                    self.by_key.remove(&p.key);
                }
            }
        }
        self.by_key.insert(key.clone(), token.clone());
        self.order.push_back(token.clone());
        self.parked.insert(
            token,
            Parked {
                key,
                gen,
                server_id,
                held: None,
            },
        );
        Some(super::merge::result(client_id, &result))
    }

    pub fn is_parked(&self, key: &Key) -> bool {
        self.by_key.contains_key(key)
    }

    /// A parked call ended: kept for the retry. `false` when `key` is not parked.
    pub fn hold(&mut self, key: &Key, ending: &Bytes) -> bool {
        if self.by_key.is_empty() {
            // Every reply asks: nothing parked is the common case.
            return false;
        }
        let Some(token) = self.by_key.remove(key) else {
            return false;
        };
        if let Some(p) = self.parked.get_mut(&token) {
            p.held = Some(ending.clone());
        }
        true
    }

    /// Whether `msg` is the retry of a parked call (its `params.requestState`).
    pub fn token_of(&self, msg: &Message) -> Option<String> {
        if self.parked.is_empty() {
            // The common case, and every routed call asks: no parse at all.
            return None;
        }
        let span = rewrite::find(msg.raw(), &["params", "requestState"])?;
        let token = rewrite::string_at(msg.raw(), span)?;
        self.parked
            .contains_key(token.as_ref())
            .then(|| token.into_owned())
    }

    /// The client retried the parked call `token` with `retry`.
    pub fn resume(&mut self, token: &str, retry: &Message) -> Option<Resume> {
        let p = self.parked.remove(token)?;
        self.order.retain(|t| t != token);
        self.by_key.remove(&p.key);
        if let Some(ended) = p.held {
            return Some(Resume::Ended(ended));
        }
        let raw = retry.raw();
        let answer = rewrite::find(raw, &["params", "inputResponses", INPUT_KEY]);
        let reply = match answer {
            Some(span) => super::merge::result(&p.server_id, &raw[span]),
            None => crate::wire::RouterError::new(
                crate::wire::ErrorKind::InvalidRequest,
                "the client retried without a response to this request",
            )
            .to_response(Some(&p.server_id)),
        };
        Some(Resume::Answer {
            key: p.key,
            gen: p.gen,
            reply,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::UpstreamId;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    #[test]
    fn a_parked_call_is_answered_with_input_required_and_resumed_by_its_retry() {
        let mut inputs = Inputs::default();
        let key = (UpstreamId(1), Id::from_raw_json("5"));
        let asked = msg(
            r#"{"jsonrpc":"2.0","id":9,"method":"elicitation/create","params":{"message":"Name?"}}"#,
        );
        let reply = inputs
            .park(key.clone(), &Id::from_raw_json("5"), 3, &asked)
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&reply),
            r#"{"jsonrpc":"2.0","id":5,"result":{"resultType":"input_required","inputRequests":{"server":{"method":"elicitation/create","params":{"message":"Name?"}}},"requestState":"mcp-router-input-1"}}"#
        );
        assert!(inputs.is_parked(&key));
        let retry = msg(
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"x","inputResponses":{"server":{"action":"accept","content":{"n":"Ada"}}},"requestState":"mcp-router-input-1"}}"#,
        );
        assert_eq!(
            inputs.token_of(&retry).as_deref(),
            Some("mcp-router-input-1")
        );
        match inputs.resume("mcp-router-input-1", &retry) {
            Some(Resume::Answer { key: k, gen, reply }) => {
                assert_eq!((k, gen), (key.clone(), 3));
                assert_eq!(
                    String::from_utf8_lossy(&reply),
                    r#"{"jsonrpc":"2.0","id":9,"result":{"action":"accept","content":{"n":"Ada"}}}"#
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!inputs.is_parked(&key));
        assert!(inputs.token_of(&retry).is_none());
    }

    #[test]
    fn a_call_that_ends_while_parked_keeps_its_ending_for_the_retry() {
        let mut inputs = Inputs::default();
        let key = (UpstreamId(0), Id::from_raw_json("1"));
        let asked = msg(r#"{"jsonrpc":"2.0","id":"s","method":"roots/list"}"#);
        inputs
            .park(key.clone(), &Id::from_raw_json("1"), 0, &asked)
            .unwrap();
        assert!(inputs.hold(&key, &Bytes::from_static(b"ended")));
        assert!(!inputs.hold(&key, &Bytes::new()));
        let retry = msg(
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"requestState":"mcp-router-input-1"}}"#,
        );
        assert!(
            matches!(inputs.resume("mcp-router-input-1", &retry), Some(Resume::Ended(b)) if &b[..] == b"ended")
        );
    }

    #[test]
    fn parked_calls_are_bounded() {
        let mut inputs = Inputs::default();
        let asked = msg(r#"{"jsonrpc":"2.0","id":1,"method":"roots/list"}"#);
        for n in 0..(MAX_PARKED as u64 + 10) {
            let key = (UpstreamId(0), Id::from_raw_json(&n.to_string()));
            inputs.park(key, &Id::from_raw_json("1"), 0, &asked);
        }
        assert_eq!(inputs.parked.len(), MAX_PARKED);
        assert_eq!(inputs.by_key.len(), MAX_PARKED);
    }
}
