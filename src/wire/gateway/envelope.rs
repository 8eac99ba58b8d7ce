//! The gateway's WebSocket JSON envelope: building requests, reading replies.
//!
//! Owns the exact bytes of one WebSocket text frame in each direction (REFERENCE.md §3):
//!
//! - out: `{"id":…,"timestamp":"…Z","source":"local-router","target_namespace":"…",
//!   "auth_token":"…","mcp_payload":…}` in exactly that key order with no whitespace — the
//!   order of the Go router's `WireMessage` struct, so frames compare byte for byte with
//!   the original's. `target_namespace` and `auth_token` are left out when empty (Go's
//!   `omitempty`). The MCP message is spliced in as bytes, never re-serialized.
//! - in: the gateway's reply envelope `{"id","timestamp","source":"gateway","mcp_payload"}`,
//!   from which only `mcp_payload` is taken (a zero-copy slice of the frame), or a bare
//!   JSON-RPC message (the gateway's shutdown notice is sent unwrapped).
//! - the namespace rule that picks `target_namespace` from the method.
//!
//! It does not decide which token to send (bearer only, per the Go router — the caller's
//! call), read the clock (the caller passes `now`), or interpret the reply beyond the
//! envelope: correlation uses the id inside `mcp_payload`, parsed later by `wire::message`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{Deserializer, IgnoredAny};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::wire::id::Id;

/// Methods the Go router always sends to the gateway's `system` namespace.
const SYSTEM_METHODS: [&str; 4] = ["initialize", "tools/list", "tools/call", "ping"];

/// The `source` the Go router writes; the gateway logs it but does not check it.
const SOURCE: &str = "local-router";

/// `YYYY-MM-DDTHH:MM:SSZ`: fixed width for every year humantime can format.
const TIMESTAMP_LEN: usize = 20;

/// The last second of year 9999, humantime's upper limit (beyond it, formatting fails).
const LAST_FORMATTABLE_SECOND: u64 = 253_402_300_799;

/// The `target_namespace` for a message with this method.
///
/// The Go router's rule (`extractNamespace` in `services/router/internal/gateway/client.go`
/// and `tcp_client.go`): the four core methods go to `system`; otherwise the text before
/// the first `.` (`k8s.getPods` → `k8s`); otherwise `default_ns`. A message without a
/// method (a response) is Go's empty string, which has no `.`, so it gets `default_ns`.
/// A method starting with `.` yields the empty namespace, as in Go, and [`wrap`] then
/// leaves `target_namespace` out.
pub fn namespace<'a>(method: Option<&'a str>, default_ns: &'a str) -> &'a str {
    let Some(method) = method else {
        return default_ns;
    };
    if SYSTEM_METHODS.contains(&method) {
        return "system";
    }
    match method.split_once('.') {
        Some((ns, _)) => ns,
        None => default_ns,
    }
}

/// Builds one WebSocket text frame carrying `payload` (a JSON-RPC message's exact bytes).
///
/// `id` is the payload's own JSON-RPC id (`null` for a notification), as the gateway
/// answers errors with the envelope's id. The timestamp is `now` in UTC, whole seconds;
/// times outside 1970..=9999 are clamped rather than failing, since the frame is still
/// useful and the gateway does not check the timestamp.
pub fn wrap(
    payload: &[u8],
    id: Option<&Id>,
    namespace: &str,
    auth_token: Option<&str>,
    now: SystemTime,
) -> Bytes {
    let id = id.map_or("null", Id::as_json);
    let token = auth_token.filter(|t| !t.is_empty());

    let mut out = BytesMut::with_capacity(wrapped_len(payload.len(), id, namespace, token));
    out.put_slice(b"{\"id\":");
    out.put_slice(id.as_bytes());
    out.put_slice(b",\"timestamp\":\"");
    put_timestamp(&mut out, now);
    out.put_slice(b"\",\"source\":\"");
    out.put_slice(SOURCE.as_bytes());
    out.put_slice(b"\"");
    if !namespace.is_empty() {
        out.put_slice(b",\"target_namespace\":");
        put_json_str(&mut out, namespace);
    }
    if let Some(token) = token {
        out.put_slice(b",\"auth_token\":");
        put_json_str(&mut out, token);
    }
    out.put_slice(b",\"mcp_payload\":");
    out.put_slice(payload);
    out.put_slice(b"}");
    out.freeze()
}

/// The exact length of [`wrap`]'s output, so it allocates once. `id` is its JSON text and
/// `token` is already filtered for emptiness.
fn wrapped_len(payload_len: usize, id: &str, namespace: &str, token: Option<&str>) -> usize {
    let mut len = r#"{"id":,"timestamp":"","source":"","mcp_payload":}"#.len()
        + id.len()
        + TIMESTAMP_LEN
        + SOURCE.len()
        + payload_len;
    if !namespace.is_empty() {
        len += r#","target_namespace":"#.len() + json_str_len(namespace);
    }
    if let Some(token) = token {
        len += r#","auth_token":"#.len() + json_str_len(token);
    }
    len
}

/// What one text frame from the gateway carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The `mcp_payload` of a reply envelope: exactly its bytes, a slice of the frame.
    Payload(Bytes),
    /// A JSON-RPC message sent without an envelope (the gateway's shutdown notice).
    Bare(Bytes),
}

/// Why a text frame from the gateway is unusable.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("gateway sent a text frame that is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("gateway sent a text frame that is not a JSON object (starts with {0:?})")]
    NotObject(char),
    #[error("gateway sent a JSON object with neither `mcp_payload` nor `jsonrpc`: not an envelope, not a JSON-RPC message")]
    NoPayload,
    #[error("gateway envelope's `mcp_payload` is not a JSON object (starts with {0:?})")]
    PayloadNotObject(char),
}

/// Reads a frame's `mcp_payload`, present even when it is `null` (a plain
/// `Option<&RawValue>` would turn `null` into "absent").
fn present_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The parts of a frame that tell an envelope from a bare message; the rest is skipped.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present_raw")]
    mcp_payload: Option<&'a RawValue>,
    jsonrpc: Option<IgnoredAny>,
}

/// Splits a gateway text frame into what the router forwards.
///
/// An object with `mcp_payload` is an envelope (whatever else it has); one with `jsonrpc`
/// and no `mcp_payload` is a bare JSON-RPC message; anything else is an error naming what
/// is wrong. The envelope's `id`, `timestamp` and `source` are not checked: correlation
/// uses the id inside the payload.
pub fn unwrap(frame: Bytes) -> Result<Incoming, EnvelopeError> {
    // Checked before deserializing because serde's derived structs also accept an array
    // (fields by position), which no gateway frame is.
    let first = first_non_space(&frame);
    if first != Some(b'{') {
        return Err(match first {
            None => EnvelopeError::NotJson(empty_input_error()),
            Some(b) => EnvelopeError::NotObject(char::from(b)),
        });
    }
    let envelope: Envelope<'_> = serde_json::from_slice(&frame)?;
    match envelope.mcp_payload {
        Some(raw) => {
            let text = raw.get();
            if !text.starts_with('{') {
                let c = text.chars().next().unwrap_or(' ');
                return Err(EnvelopeError::PayloadNotObject(c));
            }
            // `raw` borrows from `frame`, so its address lies inside `frame`'s bytes; the
            // offset is plain address arithmetic, checked rather than trusted.
            let start = (text.as_ptr() as usize).checked_sub(frame.as_ptr() as usize);
            match start {
                Some(start) if start + text.len() <= frame.len() => {
                    Ok(Incoming::Payload(frame.slice(start..start + text.len())))
                }
                // Unreachable with a borrowed RawValue; copying keeps it correct anyway.
                _ => Ok(Incoming::Payload(Bytes::copy_from_slice(text.as_bytes()))),
            }
        }
        None if envelope.jsonrpc.is_some() => Ok(Incoming::Bare(frame)),
        None => Err(EnvelopeError::NoPayload),
    }
}

/// True for the gateway's shutdown notice,
/// `{"jsonrpc":"2.0","error":{"code":-32603,"message":"Server shutting down"},"id":null}`.
///
/// Recognised by content (error message and a null id), not by bytes, so key order or
/// whitespace do not matter. The notice answers no request: the caller should treat it as
/// "the gateway is going away" rather than route it.
pub fn is_shutdown_notice(bare: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct ErrorObject {
        message: String,
    }
    #[derive(Deserialize)]
    struct Notice<'a> {
        error: Option<ErrorObject>,
        #[serde(borrow, default, deserialize_with = "present_raw")]
        id: Option<&'a RawValue>,
    }
    if first_non_space(bare) != Some(b'{') {
        return false;
    }
    match serde_json::from_slice::<Notice<'_>>(bare) {
        Ok(notice) => {
            // The gateway always writes `"id":null`; a missing id means the same thing.
            let id_null = notice.id.is_none_or(|id| id.get() == "null");
            id_null
                && notice
                    .error
                    .is_some_and(|e| e.message == "Server shutting down")
        }
        Err(_) => false,
    }
}

fn first_non_space(bytes: &[u8]) -> Option<u8> {
    bytes
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

fn empty_input_error() -> serde_json::Error {
    match serde_json::from_slice::<IgnoredAny>(b"") {
        Err(e) => e,
        // An empty input is never valid JSON; this arm only satisfies the type.
        Ok(_) => serde::de::Error::custom("empty frame"),
    }
}

/// The length of `s` as a JSON string literal, quotes included, as serde_json writes it
/// (`"` and `\` and the short control escapes take 2 bytes, other controls `\u00XX` 6).
/// Only a capacity hint: were it ever off, the buffer would grow, not break.
pub(super) fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\x08' | b'\x0c' | b'\n' | b'\r' | b'\t' => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Appends `s` as a JSON string literal; serde_json does the escaping.
pub(super) fn put_json_str(out: &mut BytesMut, s: &str) {
    // Writing into memory cannot fail, and a `&str` always serializes.
    let written = serde_json::to_writer(out.writer(), s);
    debug_assert!(written.is_ok());
}

/// Appends `now` as RFC 3339 UTC whole seconds, clamped to what humantime can format
/// (it refuses times before 1970 or after 9999).
fn put_timestamp(out: &mut BytesMut, now: SystemTime) {
    let last = UNIX_EPOCH + Duration::from_secs(LAST_FORMATTABLE_SECOND);
    let now = now.clamp(UNIX_EPOCH, last);
    let written = write!(out, "{}", humantime::format_rfc3339_seconds(now));
    debug_assert!(written.is_ok());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-11-24T10:30:45Z, REFERENCE.md's example time.
    fn example_now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_516_245)
    }

    const PAYLOAD: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

    #[test]
    fn request_envelope_matches_reference_byte_for_byte() {
        let id = Id::from_raw_json("1");
        let out = wrap(PAYLOAD, Some(&id), "system", Some("T"), example_now());
        assert_eq!(
            &out[..],
            &br#"{"id":1,"timestamp":"2026-11-24T10:30:45Z","source":"local-router","target_namespace":"system","auth_token":"T","mcp_payload":{"jsonrpc":"2.0","id":1,"method":"tools/list"}}"#[..]
        );
    }

    #[test]
    fn notification_envelope_has_null_id_and_no_token() {
        let payload = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let out = wrap(payload, None, "default", None, example_now());
        assert_eq!(
            &out[..],
            &br#"{"id":null,"timestamp":"2026-11-24T10:30:45Z","source":"local-router","target_namespace":"default","mcp_payload":{"jsonrpc":"2.0","method":"notifications/initialized"}}"#[..]
        );
        let empty_token = wrap(payload, None, "default", Some(""), example_now());
        assert_eq!(out, empty_token);
    }

    #[test]
    fn empty_namespace_is_omitted_and_strings_are_escaped() {
        let id = Id::router_owned("r-1");
        let out = wrap(b"{}", Some(&id), "", Some("a\"b\\c\n\u{1}"), example_now());
        assert_eq!(
            &out[..],
            &br#"{"id":"r-1","timestamp":"2026-11-24T10:30:45Z","source":"local-router","auth_token":"a\"b\\c\n\u0001","mcp_payload":{}}"#[..]
        );
        // Sized up front: the one allocation was exactly big enough.
        let token_len = json_str_len("a\"b\\c\n\u{1}");
        assert_eq!(token_len, 17);
        assert_eq!(out.len(), 102 + token_len);
        assert_eq!(
            out.len(),
            wrapped_len(2, "\"r-1\"", "", Some("a\"b\\c\n\u{1}"))
        );
    }

    #[test]
    fn timestamps_outside_the_formattable_range_are_clamped() {
        let before = UNIX_EPOCH - Duration::from_secs(10);
        let out = wrap(b"{}", None, "", None, before);
        assert!(out.starts_with(br#"{"id":null,"timestamp":"1970-01-01T00:00:00Z""#));
        let after = UNIX_EPOCH + Duration::from_secs(LAST_FORMATTABLE_SECOND + 10);
        let out = wrap(b"{}", None, "", None, after);
        assert!(out.starts_with(br#"{"id":null,"timestamp":"9999-12-31T23:59:59Z""#));
    }

    #[test]
    fn namespace_rule() {
        for m in ["initialize", "tools/list", "tools/call", "ping"] {
            assert_eq!(namespace(Some(m), "default"), "system");
        }
        assert_eq!(namespace(Some("k8s.getPods"), "default"), "k8s");
        assert_eq!(namespace(Some("a.b.c"), "default"), "a");
        assert_eq!(namespace(Some("resources/list"), "default"), "default");
        assert_eq!(namespace(Some("notifications/initialized"), "ns"), "ns");
        assert_eq!(namespace(Some(""), "default"), "default");
        assert_eq!(namespace(Some(".x"), "default"), "");
        // A response has no method: Go's empty string, so the default namespace.
        assert_eq!(namespace(None, "default"), "default");
    }

    #[test]
    fn unwrap_returns_exactly_the_payload_bytes() {
        let frame = Bytes::from_static(
            br#"{"id":1,"mcp_payload":{"id":1,"jsonrpc":"2.0","result":{"tools":[]}},"source":"gateway","timestamp":"2026-11-24T10:30:45Z"}"#,
        );
        match unwrap(frame.clone()) {
            Ok(Incoming::Payload(p)) => {
                assert_eq!(&p[..], br#"{"id":1,"jsonrpc":"2.0","result":{"tools":[]}}"#);
                // Zero-copy: the payload points into the frame.
                let off = p.as_ptr() as usize - frame.as_ptr() as usize;
                assert_eq!(off, 22);
            }
            other => panic!("expected a payload, got {other:?}"),
        }
        // Whitespace around the payload is not part of it.
        let spaced = Bytes::from_static(b"{ \"mcp_payload\" :  {\"a\" : 1}  , \"id\":null }");
        match unwrap(spaced) {
            Ok(Incoming::Payload(p)) => assert_eq!(&p[..], b"{\"a\" : 1}"),
            other => panic!("expected a payload, got {other:?}"),
        }
    }

    #[test]
    fn unwrap_of_the_shutdown_notice_is_bare() {
        let notice: &[u8] =
            br#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"Server shutting down"},"id":null}"#;
        match unwrap(Bytes::from_static(notice)) {
            Ok(Incoming::Bare(b)) => {
                assert_eq!(&b[..], notice);
                assert!(is_shutdown_notice(&b));
            }
            other => panic!("expected a bare message, got {other:?}"),
        }
    }

    #[test]
    fn shutdown_notice_is_recognised_by_content_only() {
        assert!(is_shutdown_notice(
            br#"{"id":null,"error":{"message":"Server shutting down","code":-32603},"jsonrpc":"2.0"}"#
        ));
        assert!(!is_shutdown_notice(
            br#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"Server shutting down"},"id":3}"#
        ));
        assert!(!is_shutdown_notice(
            br#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"other"},"id":null}"#
        ));
        assert!(!is_shutdown_notice(
            br#"{"jsonrpc":"2.0","result":{},"id":null}"#
        ));
        assert!(!is_shutdown_notice(b"[]"));
        assert!(!is_shutdown_notice(b"not json"));
    }

    #[test]
    fn unwrap_rejects_what_is_neither() {
        let err = |s: &'static [u8]| unwrap(Bytes::from_static(s)).err();
        assert!(matches!(err(b""), Some(EnvelopeError::NotJson(_))));
        assert!(matches!(err(b"{"), Some(EnvelopeError::NotJson(_))));
        assert!(matches!(err(b"[1,2]"), Some(EnvelopeError::NotObject('['))));
        assert!(matches!(err(b"{\"id\":1}"), Some(EnvelopeError::NoPayload)));
        assert!(matches!(
            err(b"{\"mcp_payload\":null}"),
            Some(EnvelopeError::PayloadNotObject('n'))
        ));
        assert!(matches!(
            err(b"{\"mcp_payload\":{},\"mcp_payload\":{}}"),
            Some(EnvelopeError::NotJson(_))
        ));
    }

    /// The envelope's length computed independently, with serde_json doing the escaping.
    fn expected_len(payload: &str, id: &str, ns: &str, token: Option<&str>) -> usize {
        let mut len = format!(
            r#"{{"id":{id},"timestamp":"2026-11-24T10:30:45Z","source":"local-router","mcp_payload":{payload}}}"#
        )
        .len();
        if !ns.is_empty() {
            len +=
                r#","target_namespace":"#.len() + serde_json::to_string(ns).map_or(0, |s| s.len());
        }
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            len += r#","auth_token":"#.len() + serde_json::to_string(t).map_or(0, |s| s.len());
        }
        len
    }

    proptest! {
        #[test]
        fn unwrap_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = unwrap(Bytes::from(bytes.clone()));
            let _ = is_shutdown_notice(&bytes);
        }

        #[test]
        fn unwrap_never_panics_on_near_envelopes(
            prefix in "[{}\\[\\]\":, a-z0-9_]{0,40}",
            suffix in "[{}\\[\\]\":, a-z0-9_]{0,40}",
        ) {
            let frame = format!("{{\"mcp_payload\":{prefix}{suffix}");
            let _ = unwrap(Bytes::from(frame));
        }

        #[test]
        fn escaped_length_is_exact(s in any::<String>()) {
            let json = serde_json::to_string(&s).unwrap_or_default();
            prop_assert_eq!(json_str_len(&s), json.len());
        }

        #[test]
        fn wrapped_payload_unwraps_to_itself(
            token in proptest::option::of("\\PC{0,20}"),
            ns in "[a-z.]{0,10}",
            n in 0u32..1000,
        ) {
            let payload = format!("{{\"jsonrpc\":\"2.0\",\"id\":{n},\"result\":{{}}}}");
            let id = Id::from_raw_json(&n.to_string());
            let frame = wrap(payload.as_bytes(), Some(&id), &ns, token.as_deref(), example_now());
            // Sized up front: the first allocation was exactly big enough.
            let token = token.as_deref().filter(|t| !t.is_empty());
            prop_assert_eq!(frame.len(), wrapped_len(payload.len(), &n.to_string(), &ns, token));
            prop_assert_eq!(frame.len(), expected_len(&payload, &n.to_string(), &ns, token));
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&frame).is_ok());
            match unwrap(frame) {
                Ok(Incoming::Payload(p)) => prop_assert_eq!(&p[..], payload.as_bytes()),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
