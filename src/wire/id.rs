//! JSON-RPC request ids, kept as their exact JSON text.
//!
//! Ids are correlation keys, not values to interpret: `1` and `"1"` are different ids and
//! both must come back to the client exactly as sent, so the key is the raw JSON text.
//! This module also owns the one rewrite the router does on ids (replaying a client's
//! handshake under a router-owned id), done by splicing bytes, never by re-serializing.

use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// A request id as it appeared on the wire (`1`, `"abc"`), shared cheaply.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(Arc<str>);

impl Id {
    /// Wraps raw JSON text that is already known to be a JSON string or number.
    pub(crate) fn from_raw_json(raw: &str) -> Self {
        Id(Arc::from(raw.trim()))
    }

    /// A router-owned string id; `text` must be plain ASCII without quotes or backslashes.
    pub fn router_owned(text: &str) -> Self {
        debug_assert!(!text.contains(['"', '\\']));
        Id(Arc::from(format!("\"{text}\"")))
    }

    /// The id's JSON text, ready to splice into a message.
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Replaces the bytes `raw[span]` (the id's JSON text) with `new_id`'s JSON text.
pub(crate) fn splice(raw: &[u8], span: (usize, usize), new_id: &Id) -> Bytes {
    let (start, end) = span;
    let new = new_id.as_json().as_bytes();
    let mut out = BytesMut::with_capacity(raw.len() - (end - start) + new.len());
    out.extend_from_slice(&raw[..start]);
    out.extend_from_slice(new);
    out.extend_from_slice(&raw[end..]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_and_string_ids_differ() {
        assert_ne!(Id::from_raw_json("1"), Id::from_raw_json("\"1\""));
        assert_eq!(Id::from_raw_json(" 7 "), Id::from_raw_json("7"));
    }

    #[test]
    fn splice_replaces_exactly_the_span() {
        let raw = br#"{"jsonrpc":"2.0","id":12,"method":"initialize"}"#;
        let start = raw.windows(2).position(|w| w == b"12").unwrap_or(0);
        let out = splice(raw, (start, start + 2), &Id::router_owned("r-1"));
        assert_eq!(
            &out[..],
            br#"{"jsonrpc":"2.0","id":"r-1","method":"initialize"}"#
        );
    }
}
