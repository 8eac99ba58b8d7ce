//! One JSON-RPC message (or batch): its exact bytes plus the envelope parsed once.
//!
//! The envelope is what routing needs and nothing more: kind, `id`, `method`. The payload
//! (`params`, `result`, `error`, `_meta` …) is validated as JSON but never materialized or
//! re-serialized, so what leaves the router is byte-identical to what entered it.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{Deserializer, IgnoredAny};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::id::{splice, Id};

/// What a message is, from the router's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`: expects exactly one response.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `result` or `error` and an `id` (null only for errors about unreadable input).
    Response,
    /// A JSON array of messages (allowed by protocol version 2025-03-26 only).
    Batch,
}

/// The routing-relevant part of one element of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub kind: Kind,
    pub id: Option<Id>,
    pub method: Option<Box<str>>,
}

/// A message as it travels through the router: bytes in, same bytes out.
#[derive(Clone)]
pub struct Message {
    raw: Bytes,
    kind: Kind,
    id: Option<Id>,
    /// Byte range of the id's JSON text inside `raw`, for splicing a new id.
    id_span: Option<(usize, usize)>,
    method: Option<Box<str>>,
    items: Vec<Item>,
}

/// Why bytes are not a usable JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON at all (→ -32700, id null).
    NotJson(String),
    /// JSON, but not a JSON-RPC message (→ -32600, with the id when one could be read).
    Invalid { reason: String, id: Option<Id> },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotJson(detail) => write!(f, "invalid JSON: {detail}"),
            ParseError::Invalid { reason, .. } => write!(f, "invalid JSON-RPC message: {reason}"),
        }
    }
}

/// Records that a field was present, whatever its value (even `null`).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// The envelope fields; every other field is skipped (validated, not kept).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "raw_present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(default)]
    result: Present,
    #[serde(default)]
    error: Present,
}

/// Keeps an explicit `null` id as `Some("null")` (absent stays `None`).
fn raw_present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Top<'a> {
    #[serde(borrow)]
    One(Envelope<'a>),
    #[serde(borrow)]
    Many(Vec<Envelope<'a>>),
}

impl Message {
    /// Parses the envelope of one line (without its newline). The bytes are kept as given.
    pub fn parse(raw: Bytes) -> Result<Message, ParseError> {
        let first = raw.iter().copied().find(|b| !b.is_ascii_whitespace());
        let parsed = match first {
            Some(b'{') => serde_json::from_slice::<Envelope>(&raw).map(Top::One),
            Some(b'[') => serde_json::from_slice::<Vec<Envelope>>(&raw).map(Top::Many),
            _ => {
                return match serde_json::from_slice::<IgnoredAny>(&raw) {
                    Ok(_) => Err(invalid("expected a JSON object or array", None)),
                    Err(e) => Err(ParseError::NotJson(e.to_string())),
                }
            }
        };
        let top = parsed.map_err(|e| {
            if e.is_data() {
                invalid(&e.to_string(), None)
            } else {
                ParseError::NotJson(e.to_string())
            }
        })?;
        match top {
            Top::One(env) => {
                let item = classify(&env)?;
                let id_span = env.id.map(|v| span_of(&raw, v.get()));
                let Item { kind, id, method } = item;
                Ok(Message {
                    raw,
                    kind,
                    id,
                    id_span,
                    method,
                    items: Vec::new(),
                })
            }
            Top::Many(envs) => {
                if envs.is_empty() {
                    return Err(invalid("empty batch", None));
                }
                let items = envs.iter().map(classify).collect::<Result<Vec<_>, _>>()?;
                Ok(Message {
                    raw,
                    kind: Kind::Batch,
                    id: None,
                    id_span: None,
                    method: None,
                    items,
                })
            }
        }
    }

    /// The exact bytes, without a line terminator.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The elements of a batch (empty for a single message).
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The same message with the JSON value at `span` (inside `params`, `result` or
    /// `error`, never the id or method) replaced by the JSON value `write` appends (`hint`:
    /// about how many bytes), straight into the new message. The envelope is carried over
    /// rather than parsed again (aggregation's name splice is on every routed call);
    /// `None` when `span` is out of range or touches the id. A batch is re-parsed.
    pub fn spliced_with(
        &self,
        span: std::ops::Range<usize>,
        hint: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Option<Message> {
        if span.start > span.end || span.end > self.raw.len() {
            return None;
        }
        if self
            .id_span
            .is_some_and(|(s, e)| s < span.end && span.start < e)
        {
            return None;
        }
        let mut raw = Vec::with_capacity(self.raw.len() - span.len() + hint);
        raw.extend_from_slice(&self.raw[..span.start]);
        write(&mut raw);
        let written = raw.len() - span.start;
        raw.extend_from_slice(&self.raw[span.end..]);
        if self.kind == Kind::Batch {
            return Message::parse(Bytes::from(raw)).ok();
        }
        let id_span = self.id_span.map(|(s, e)| {
            if e <= span.start {
                (s, e)
            } else {
                let moved = |x: usize| x - span.len() + written;
                (moved(s), moved(e))
            }
        });
        let out = Message {
            raw: Bytes::from(raw),
            kind: self.kind,
            id: self.id.clone(),
            id_span,
            method: self.method.clone(),
            items: Vec::new(),
        };
        debug_assert!(
            Message::parse(out.raw.clone()).is_ok_and(|m| m.kind == out.kind
                && m.id == out.id
                && m.id_span == out.id_span
                && m.method == out.method),
            "spliced: the edit changed the envelope or broke the JSON"
        );
        Some(out)
    }

    /// The same message under another id, spliced into the original bytes.
    pub fn with_id(&self, id: &Id) -> Message {
        match self.id_span {
            Some(span) => Message {
                raw: splice(&self.raw, span, id),
                kind: self.kind,
                id: Some(id.clone()),
                id_span: Some((span.0, span.0 + id.as_json().len())),
                method: self.method.clone(),
                items: Vec::new(),
            },
            None => self.clone(),
        }
    }
}

impl Message {
    /// A batch with only the members `keep` says yes to, as the bytes they arrived as
    /// (`None` when none is kept). Batches are rare (2025-03-26 only), so the members'
    /// spans are found here rather than kept for every batch.
    pub fn batch_keeping(&self, mut keep: impl FnMut(&Item) -> bool) -> Option<Bytes> {
        let members: Vec<&RawValue> = serde_json::from_slice(&self.raw).ok()?;
        let mut out = Vec::with_capacity(self.raw.len());
        out.push(b'[');
        let mut any = false;
        for (member, item) in members.iter().zip(&self.items) {
            if !keep(item) {
                continue;
            }
            if any {
                out.push(b',');
            }
            out.extend_from_slice(member.get().as_bytes());
            any = true;
        }
        out.push(b']');
        any.then(|| Bytes::from(out))
    }
}

impl fmt::Debug for Message {
    // Payloads may carry secrets or user data: Debug shows the envelope only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("method", &self.method)
            .field("len", &self.raw.len())
            .finish()
    }
}

fn invalid(reason: &str, id: Option<Id>) -> ParseError {
    ParseError::Invalid {
        reason: reason.to_owned(),
        id,
    }
}

fn span_of(raw: &[u8], part: &str) -> (usize, usize) {
    // `part` borrows from `raw` (serde_json's borrowed RawValue), so the offset is exact.
    let start = (part.as_ptr() as usize).saturating_sub(raw.as_ptr() as usize);
    (start, start + part.len())
}

fn classify(env: &Envelope<'_>) -> Result<Item, ParseError> {
    let id = match env.id {
        None => None,
        Some(raw) => {
            let text = raw.get();
            match text.as_bytes().first() {
                Some(b'"' | b'-' | b'0'..=b'9') => Some(Id::from_raw_json(text)),
                Some(b'n') => None, // null: only legal on error responses
                _ => {
                    return Err(invalid("\"id\" must be a string or a number", None));
                }
            }
        }
    };
    if env.jsonrpc.as_deref() != Some("2.0") {
        return Err(invalid("\"jsonrpc\" must be \"2.0\"", id));
    }
    if let Some(method) = &env.method {
        if env.id.is_some() && id.is_none() {
            return Err(invalid("a request id must not be null", None));
        }
        let kind = if id.is_some() {
            Kind::Request
        } else {
            Kind::Notification
        };
        return Ok(Item {
            kind,
            id,
            method: Some(method.as_ref().into()),
        });
    }
    if env.result.0 || env.error.0 {
        if env.id.is_none() {
            return Err(invalid("a response needs an \"id\"", None));
        }
        return Ok(Item {
            kind: Kind::Response,
            id,
            method: None,
        });
    }
    Err(invalid(
        "a message needs \"method\" (request, notification) or \"result\"/\"error\" (response)",
        id,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Message, ParseError> {
        Message::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// Splices `value` over the first occurrence of `what` in `m`.
    fn splice_over(m: &Message, what: &str, value: &str) -> Option<Message> {
        let at = m
            .raw()
            .windows(what.len())
            .position(|w| w == what.as_bytes())?;
        m.spliced_with(at..at + what.len(), value.len(), |out| {
            out.extend_from_slice(value.as_bytes())
        })
    }

    #[test]
    fn spliced_keeps_the_envelope_and_moves_an_id_after_the_edit() {
        let before = parse(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"one__echo"}}"#,
        )
        .unwrap();
        let m = splice_over(&before, r#""one__echo""#, r#""echo""#).unwrap();
        assert_eq!(
            &m.raw()[..],
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#
        );
        assert_eq!((m.kind(), m.method()), (Kind::Request, Some("tools/call")));
        assert_eq!(m.id().map(Id::as_json), Some("7"));

        // The id comes after the edit: its span moves, so a later id splice still lands.
        let after = parse(
            r#"{"params":{"name":"one__echo"},"id":"a","method":"tools/call","jsonrpc":"2.0"}"#,
        )
        .unwrap();
        let m = splice_over(&after, r#""one__echo""#, r#""e""#).unwrap();
        let renamed = m.with_id(&Id::router_owned("r-1"));
        assert_eq!(
            &renamed.raw()[..],
            br#"{"params":{"name":"e"},"id":"r-1","method":"tools/call","jsonrpc":"2.0"}"#
        );
        let reparsed = Message::parse(renamed.raw().clone()).unwrap();
        assert_eq!(reparsed.id(), renamed.id());
    }

    #[test]
    fn spliced_refuses_an_edit_of_the_id_or_out_of_range() {
        let m = parse(r#"{"jsonrpc":"2.0","id":12,"method":"x","params":{}}"#).unwrap();
        assert!(splice_over(&m, "12", "13").is_none());
        assert!(m
            .spliced_with(0..m.raw().len() + 1, 1, |o| o.push(b'1'))
            .is_none());
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 5..2;
        assert!(m.spliced_with(backwards, 1, |o| o.push(b'1')).is_none());
    }

    #[test]
    fn batch_keeping_keeps_members_byte_for_byte() {
        let m = parse(r#"[ {"jsonrpc":"2.0","id":1,"result":{"a" : 1}} , {"jsonrpc":"2.0","id":2,"result":{}},{"jsonrpc":"2.0","method":"x"}]"#).unwrap();
        let kept = m
            .batch_keeping(|i| i.id.as_ref().map(Id::as_json) != Some("2"))
            .unwrap();
        assert_eq!(
            &kept[..],
            br#"[{"jsonrpc":"2.0","id":1,"result":{"a" : 1}},{"jsonrpc":"2.0","method":"x"}]"#
        );
        assert!(m.batch_keeping(|_| false).is_none());
    }

    #[test]
    fn classifies_the_four_kinds() {
        let m = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#).unwrap();
        assert_eq!((m.kind(), m.method()), (Kind::Request, Some("tools/list")));
        assert_eq!(m.id().map(Id::as_json), Some("1"));
        let m = parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!(m.kind(), Kind::Notification);
        let m = parse(r#"{"jsonrpc":"2.0","id":"a","result":null}"#).unwrap();
        assert_eq!(m.kind(), Kind::Response);
        assert_eq!(m.id().map(Id::as_json), Some("\"a\""));
        let m = parse(r#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#)
            .unwrap();
        assert_eq!(m.kind(), Kind::Batch);
        assert_eq!(m.items().len(), 2);
    }

    #[test]
    fn error_response_with_null_id_is_a_response_without_id() {
        let m =
            parse(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#).unwrap();
        assert_eq!((m.kind(), m.id()), (Kind::Response, None));
    }

    #[test]
    fn rejects_what_is_not_json_rpc() {
        assert!(matches!(parse("{oops"), Err(ParseError::NotJson(_))));
        assert!(matches!(parse(""), Err(ParseError::NotJson(_))));
        assert!(matches!(parse("42"), Err(ParseError::Invalid { .. })));
        assert!(matches!(parse("[]"), Err(ParseError::Invalid { .. })));
        assert!(matches!(
            parse(r#"{"id":1,"method":"x"}"#),
            Err(ParseError::Invalid { id: Some(_), .. })
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#),
            Err(ParseError::Invalid { .. })
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#),
            Err(ParseError::Invalid { .. })
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":3}"#),
            Err(ParseError::Invalid { .. })
        ));
    }

    #[test]
    fn keeps_bytes_untouched() {
        let line =
            r#"{ "method" : "x\u0041", "id" : 5 , "jsonrpc":"2.0", "params":{"_meta":{"k":1}} }"#;
        let m = parse(line).unwrap();
        assert_eq!(&m.raw()[..], line.as_bytes());
        assert_eq!(m.method(), Some("xA"));
    }

    #[test]
    fn with_id_splices_the_new_id() {
        let m = parse(r#"{"jsonrpc":"2.0","id": 12 ,"method":"initialize","params":{"id":12}}"#)
            .unwrap();
        let r = m.with_id(&Id::router_owned("mcp-router-replay-1"));
        assert_eq!(
            std::str::from_utf8(r.raw()).unwrap(),
            r#"{"jsonrpc":"2.0","id": "mcp-router-replay-1" ,"method":"initialize","params":{"id":12}}"#
        );
        let again = Message::parse(r.raw().clone()).unwrap();
        assert_eq!(again.id(), r.id());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn valid_message() -> impl Strategy<Value = (String, Option<i64>, String)> {
            (
                proptest::option::of(any::<i64>()),
                "[a-z/]{1,20}",
                "[ -~]{0,40}",
            )
                .prop_map(|(id, method, text)| {
                    let params = serde_json::json!({"text": text, "_meta": {"k": [1, null, "x"]}});
                    let mut obj =
                        serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params});
                    if let Some(id) = id {
                        obj["id"] = id.into();
                    }
                    (obj.to_string(), id, method)
                })
        }

        proptest! {
            #[test]
            fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
                let _ = Message::parse(Bytes::from(data));
            }

            #[test]
            fn mutated_messages_never_panic((line, _, _) in valid_message(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
                let mut b = line.into_bytes();
                let i = pos.index(b.len());
                b[i] = byte;
                let _ = Message::parse(Bytes::from(b));
            }

            #[test]
            fn envelope_is_read_and_bytes_are_kept((line, id, method) in valid_message()) {
                let m = Message::parse(Bytes::from(line.clone())).unwrap();
                prop_assert_eq!(&m.raw()[..], line.as_bytes());
                prop_assert_eq!(m.method(), Some(method.as_str()));
                prop_assert_eq!(m.id().map(|i| i.as_json().to_owned()), id.map(|i| i.to_string()));
                let want = if id.is_some() { Kind::Request } else { Kind::Notification };
                prop_assert_eq!(m.kind(), want);
            }

            #[test]
            fn with_id_then_parse_round_trips((line, id, _) in valid_message(), n in 0u32..1000) {
                prop_assume!(id.is_some());
                let m = Message::parse(Bytes::from(line)).unwrap();
                let new = Id::router_owned(&format!("r-{n}"));
                let again = Message::parse(m.with_id(&new).into_raw()).unwrap();
                prop_assert_eq!(again.id(), Some(&new));
                prop_assert_eq!(again.method(), m.method());
            }
        }
    }
}
