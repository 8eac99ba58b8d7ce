//! The gateway's TCP binary framing, "MCPB", as a `tokio_util` codec.
//!
//! Owns the frame format (REFERENCE.md §4; the gateway's
//! `services/gateway/pkg/wire/protocol.go` is the authority): a 12-byte big-endian header —
//! magic `4D 43 50 42` ("MCPB"), version u16 (only 1), type u16 (1..=7), payload length
//! u32 (≤ 10 MiB) — then the payload. Also the exact payloads of the frames the router
//! itself sends (version negotiation, health check, requests with or without a token), and
//! [`Frame`], [`FrameType`] and [`FrameError`], which the legacy framing shares.
//!
//! The decoder trusts nothing before checking it: a header is validated whole (magic,
//! version, type, length) before a single byte is reserved for its payload, so a peer
//! claiming a 4 GiB frame costs nothing. Every error ends the connection — the gateway does
//! the same, closing without an answer — so the messages name the offending value for the
//! log line that explains the reset.
//!
//! It does not run the version handshake (waiting for the ack with a timeout belongs to the
//! connection task), decide between the bare and the `{auth_token,message}` request forms
//! (the caller's `per_message_auth`), or look inside Request/Response payloads.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Deserialize;
use tokio_util::codec::{Decoder, Encoder};

use super::envelope::{json_str_len, put_json_str};

/// "MCPB" as a big-endian u32.
pub const MAGIC: u32 = 0x4D43_5042;
/// The only frame version the gateway accepts (its `MinVersion` = `MaxVersion` = 1).
pub const VERSION: u16 = 1;
/// magic 4 + version 2 + type 2 + length 4.
pub const HEADER_LEN: usize = 12;
/// The gateway's payload limit (`readPayloadLength`: 10 MiB).
pub const DEFAULT_MAX_PAYLOAD: usize = 10 * 1024 * 1024;

/// The version negotiation payload, as the Go router's `json.Marshal` of a map writes it
/// (keys sorted). The gateway only decodes it, so the order is for byte-for-byte parity.
const VERSION_NEGOTIATION: &[u8] =
    br#"{"max_version":1,"min_version":1,"preferred_version":1,"supported_versions":[1]}"#;
const VERSION_ACK: &[u8] = br#"{"agreed_version":1}"#;

/// What a frame carries; the numbers are the wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum FrameType {
    /// A JSON-RPC message, bare or as `{"auth_token","message"}`.
    Request = 1,
    /// A bare JSON-RPC response.
    Response = 2,
    /// A JSON object; neither side sends one today.
    Control = 3,
    /// Keepalive; empty from the gateway.
    HealthCheck = 4,
    /// Plain UTF-8 text (not JSON); the gateway usually closes right after.
    Error = 5,
    /// `{"max_version","min_version","preferred_version","supported_versions"}`.
    VersionNegotiation = 6,
    /// `{"agreed_version":n}`.
    VersionAck = 7,
}

impl TryFrom<u16> for FrameType {
    type Error = FrameError;

    fn try_from(value: u16) -> Result<Self, FrameError> {
        Ok(match value {
            1 => FrameType::Request,
            2 => FrameType::Response,
            3 => FrameType::Control,
            4 => FrameType::HealthCheck,
            5 => FrameType::Error,
            6 => FrameType::VersionNegotiation,
            7 => FrameType::VersionAck,
            other => return Err(FrameError::UnknownType(other)),
        })
    }
}

/// One frame: its type and its payload bytes (zero-copy from the read buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameType,
    pub payload: Bytes,
}

impl Frame {
    /// The router's version negotiation: version 1 only (80 bytes of payload).
    pub fn version_negotiation() -> Self {
        Frame {
            kind: FrameType::VersionNegotiation,
            payload: Bytes::from_static(VERSION_NEGOTIATION),
        }
    }

    /// An ack agreeing on version 1 (what the gateway's handler sends; used by test peers).
    pub fn version_ack() -> Self {
        Frame {
            kind: FrameType::VersionAck,
            payload: Bytes::from_static(VERSION_ACK),
        }
    }

    /// A health check with an empty payload, as the gateway sends it.
    pub fn health_check() -> Self {
        Frame {
            kind: FrameType::HealthCheck,
            payload: Bytes::new(),
        }
    }

    /// A request carrying a JSON-RPC message as is (the form the running gateway routes).
    pub fn request(payload: Bytes) -> Self {
        Frame {
            kind: FrameType::Request,
            payload,
        }
    }

    /// A request as `{"auth_token":"<token>","message":<message>}`, the per-message auth
    /// form of the gateway's `AuthMessage` (same key order). `message` is spliced in
    /// verbatim; the token is JSON-escaped. The running gateway frontend skips this form
    /// without a reply, so it is only for `per_message_auth: true`.
    pub fn request_with_token(token: &str, message: &[u8]) -> Self {
        const OPEN: &[u8] = b"{\"auth_token\":";
        const MIDDLE: &[u8] = b",\"message\":";
        let len = OPEN.len() + json_str_len(token) + MIDDLE.len() + message.len() + 1;
        let mut out = BytesMut::with_capacity(len);
        out.put_slice(OPEN);
        put_json_str(&mut out, token);
        out.put_slice(MIDDLE);
        out.put_slice(message);
        out.put_slice(b"}");
        Frame::request(out.freeze())
    }

    /// The payload as text, for logging an Error frame (plain UTF-8, replaced if not).
    pub fn error_text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// The agreed version in a VersionAck payload, or `None` if it is not one.
pub fn parse_version_ack(payload: &[u8]) -> Option<u16> {
    #[derive(Deserialize)]
    struct Ack {
        agreed_version: u16,
    }
    serde_json::from_slice::<Ack>(payload)
        .ok()
        .map(|a| a.agreed_version)
}

/// Why a byte stream is not (or no longer) a valid frame sequence. Each one ends the
/// connection; the text is the logged reason.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(
        "bad frame magic 0x{0:08X} (MCPB is 0x4D435042, the legacy Go router framing \
         0x4D435000): the peer speaks another framing or protocol; check the gateway URL \
         and the `framing` setting"
    )]
    BadMagic(u32),
    #[error("unsupported frame version {0} (only version 1 exists)")]
    UnsupportedVersion(u16),
    #[error("unknown frame type {0} (types are 1 to 7)")]
    UnknownType(u16),
    #[error("frame payload of {len} bytes is over the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("frame I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The MCPB codec. `max_payload` bounds a payload both ways.
#[derive(Debug, Clone)]
pub struct McpbCodec {
    max_payload: usize,
}

impl McpbCodec {
    /// A codec with its own payload limit (capped at `u32::MAX`, the largest length a
    /// header can state).
    pub fn new(max_payload: usize) -> Self {
        McpbCodec {
            max_payload: cap_to_u32(max_payload),
        }
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }
}

impl Default for McpbCodec {
    /// The gateway's own limit, 10 MiB.
    fn default() -> Self {
        McpbCodec::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl Decoder for McpbCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let magic = be_u32(header, 0);
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let (kind, len) = check_header(
            be_u16(header, 4),
            be_u16(header, 6),
            be_u32(header, 8),
            self.max_payload,
        )?;
        Ok(take_payload(src, HEADER_LEN, kind, len))
    }
}

impl Encoder<Frame> for McpbCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = checked_len(&frame, self.max_payload)?;
        dst.reserve(HEADER_LEN + frame.payload.len());
        dst.put_u32(MAGIC);
        dst.put_u16(VERSION);
        dst.put_u16(frame.kind as u16);
        dst.put_u32(len);
        dst.put_slice(&frame.payload);
        Ok(())
    }
}

/// Validates the header fields after the magic, in the gateway's order (version, then
/// type, then length), and returns the payload length as a trusted `usize`.
pub(super) fn check_header(
    version: u16,
    kind: u16,
    len: u32,
    max: usize,
) -> Result<(FrameType, usize), FrameError> {
    if version != VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    let kind = FrameType::try_from(kind)?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    Ok((kind, len))
}

/// Splits off a frame whose validated header is at the front of `src`, or reserves room
/// for the rest of it (at most header + limit, since `len` was checked) and waits.
pub(super) fn take_payload(
    src: &mut BytesMut,
    header_len: usize,
    kind: FrameType,
    len: usize,
) -> Option<Frame> {
    let total = header_len + len;
    if src.len() < total {
        src.reserve(total - src.len());
        return None;
    }
    src.advance(header_len);
    let payload = src.split_to(len).freeze();
    Some(Frame { kind, payload })
}

/// The payload's length for the header, refusing one over the limit.
pub(super) fn checked_len(frame: &Frame, max: usize) -> Result<u32, FrameError> {
    let len = frame.payload.len();
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    // `max` is capped at u32::MAX, so this cannot fail; checked all the same.
    u32::try_from(len).map_err(|_| FrameError::TooLong { len, max })
}

pub(super) fn cap_to_u32(max: usize) -> usize {
    max.min(usize::try_from(u32::MAX).unwrap_or(usize::MAX))
}

/// Big-endian u16 at `at`; callers have checked the slice is long enough.
pub(super) fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Big-endian u32 at `at`; callers have checked the slice is long enough.
pub(super) fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap_or_default())
            .collect()
    }

    fn encode(frame: Frame) -> Vec<u8> {
        let mut buf = BytesMut::new();
        McpbCodec::default()
            .encode(frame, &mut buf)
            .unwrap_or_else(|e| panic!("encode failed: {e}"));
        buf.to_vec()
    }

    fn golden(frame: Frame, header: &str, payload: &[u8]) {
        let mut expected = hex(header);
        expected.extend_from_slice(payload);
        assert_eq!(encode(frame.clone()), expected);
        let mut buf = BytesMut::from(&expected[..]);
        let decoded = McpbCodec::default().decode(&mut buf);
        assert_eq!(decoded.ok().flatten(), Some(frame));
        assert!(buf.is_empty());
    }

    #[test]
    fn golden_version_negotiation() {
        assert_eq!(VERSION_NEGOTIATION.len(), 80);
        golden(
            Frame::version_negotiation(),
            "4d 43 50 42 00 01 00 06 00 00 00 50",
            br#"{"max_version":1,"min_version":1,"preferred_version":1,"supported_versions":[1]}"#,
        );
    }

    #[test]
    fn golden_version_ack() {
        golden(
            Frame::version_ack(),
            "4d 43 50 42 00 01 00 07 00 00 00 14",
            br#"{"agreed_version":1}"#,
        );
        assert_eq!(parse_version_ack(br#"{"agreed_version":1}"#), Some(1));
        assert_eq!(parse_version_ack(br#"{"agreed_version":"1"}"#), None);
        assert_eq!(parse_version_ack(b""), None);
    }

    #[test]
    fn golden_health_check() {
        golden(
            Frame::health_check(),
            "4d 43 50 42 00 01 00 04 00 00 00 00",
            b"",
        );
    }

    #[test]
    fn golden_requests() {
        let message: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let with_token: &[u8] =
            br#"{"auth_token":"T","message":{"jsonrpc":"2.0","id":1,"method":"tools/list"}}"#;
        assert_eq!(with_token.len(), 75);
        golden(
            Frame::request_with_token("T", message),
            "4d 43 50 42 00 01 00 01 00 00 00 4b",
            with_token,
        );
        assert_eq!(message.len(), 46);
        golden(
            Frame::request(Bytes::from_static(message)),
            "4d 43 50 42 00 01 00 01 00 00 00 2e",
            message,
        );
    }

    #[test]
    fn token_is_escaped() {
        let frame = Frame::request_with_token("a\"b", b"{}");
        assert_eq!(&frame.payload[..], br#"{"auth_token":"a\"b","message":{}}"#);
    }

    #[test]
    fn error_text_is_lossy_utf8() {
        let frame = Frame {
            kind: FrameType::Error,
            payload: Bytes::from_static(b"Version negotiation required \xff"),
        };
        assert_eq!(frame.error_text(), "Version negotiation required \u{fffd}");
    }

    fn decode_err(bytes: &str) -> FrameError {
        let mut buf = BytesMut::from(&hex(bytes)[..]);
        match McpbCodec::default().decode(&mut buf) {
            Err(e) => e,
            Ok(other) => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn bad_headers_are_named() {
        let e = decode_err("4d 43 50 00 00 01 00 01 00 00 00 00");
        assert!(matches!(e, FrameError::BadMagic(0x4D43_5000)));
        assert!(e.to_string().contains("0x4D435000"));
        let e = decode_err("4d 43 50 42 00 02 00 01 00 00 00 00");
        assert!(matches!(e, FrameError::UnsupportedVersion(2)));
        let e = decode_err("4d 43 50 42 00 01 00 08 00 00 00 00");
        assert!(matches!(e, FrameError::UnknownType(8)));
        let e = decode_err("4d 43 50 42 00 01 00 00 00 00 00 00");
        assert!(matches!(e, FrameError::UnknownType(0)));
        let e = decode_err("4d 43 50 42 00 01 00 01 00 a0 00 01");
        assert!(matches!(
            e,
            FrameError::TooLong {
                len: 10_485_761,
                max: DEFAULT_MAX_PAYLOAD
            }
        ));
        assert!(e.to_string().contains("10485761"));
    }

    #[test]
    fn a_frame_at_the_limit_is_accepted() {
        let mut codec = McpbCodec::new(4);
        let mut buf = BytesMut::new();
        let frame = Frame::request(Bytes::from_static(b"1234"));
        assert!(codec.encode(frame.clone(), &mut buf).is_ok());
        assert_eq!(codec.decode(&mut buf).ok().flatten(), Some(frame));
        let over = Frame::request(Bytes::from_static(b"12345"));
        assert!(matches!(
            codec.encode(over, &mut buf),
            Err(FrameError::TooLong { len: 5, max: 4 })
        ));
        assert!(buf.is_empty(), "a refused frame writes nothing");
    }

    #[test]
    fn a_4_gib_header_does_not_allocate() {
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&hex("4d 43 50 42 00 01 00 01 ff ff ff ff"));
        let result = McpbCodec::default().decode(&mut buf);
        assert!(matches!(result, Err(FrameError::TooLong { .. })));
        assert!(buf.capacity() < 1024, "capacity grew to {}", buf.capacity());
    }

    fn sample_stream() -> (Vec<Frame>, Vec<u8>) {
        let frames = vec![
            Frame::version_negotiation(),
            Frame::health_check(),
            Frame::request(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#,
            )),
            Frame {
                kind: FrameType::Error,
                payload: Bytes::from_static(b"Authentication failed"),
            },
        ];
        let bytes = frames.iter().cloned().flat_map(encode).collect();
        (frames, bytes)
    }

    /// Feeds `bytes` split at `at` and returns every frame decoded.
    pub(in crate::wire::gateway) fn decode_split<C>(
        codec: &mut C,
        bytes: &[u8],
        at: usize,
    ) -> Vec<Frame>
    where
        C: Decoder<Item = Frame, Error = FrameError>,
    {
        let mut out = Vec::new();
        let mut buf = BytesMut::from(&bytes[..at]);
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            out.push(f);
        }
        buf.extend_from_slice(&bytes[at..]);
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            out.push(f);
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn split_at_every_byte_decodes_the_same() {
        let (frames, bytes) = sample_stream();
        for at in 0..=bytes.len() {
            let got = decode_split(&mut McpbCodec::default(), &bytes, at);
            assert_eq!(got, frames, "split at {at}");
        }
    }

    #[test]
    fn two_frames_in_one_buffer_both_decode() {
        let mut bytes = encode(Frame::version_ack());
        bytes.extend(encode(Frame::health_check()));
        let mut buf = BytesMut::from(&bytes[..]);
        let mut codec = McpbCodec::default();
        assert_eq!(
            codec.decode(&mut buf).ok().flatten(),
            Some(Frame::version_ack())
        );
        assert_eq!(
            codec.decode(&mut buf).ok().flatten(),
            Some(Frame::health_check())
        );
        assert_eq!(codec.decode(&mut buf).ok().flatten(), None);
    }

    pub(in crate::wire::gateway) fn frame_type() -> impl Strategy<Value = FrameType> {
        (1u16..=7).prop_map(|t| FrameType::try_from(t).unwrap_or(FrameType::Request))
    }

    pub(in crate::wire::gateway) fn any_frame() -> impl Strategy<Value = Frame> {
        (
            frame_type(),
            proptest::collection::vec(any::<u8>(), 0..=64 * 1024),
        )
            .prop_map(|(kind, payload)| Frame {
                kind,
                payload: Bytes::from(payload),
            })
    }

    /// Decodes until the codec stops, asserting every reservation stayed within
    /// header + limit. BytesMut may round a reservation up to twice its old capacity, so
    /// growth is allowed up to the larger of the two — never to what a header claims.
    pub(in crate::wire::gateway) fn drain_bounded<C>(
        codec: &mut C,
        bytes: &[u8],
        header_len: usize,
        max: usize,
    ) -> Result<(), TestCaseError>
    where
        C: Decoder<Item = Frame, Error = FrameError>,
    {
        let mut buf = BytesMut::from(bytes);
        loop {
            let before = buf.capacity();
            let result = codec.decode(&mut buf);
            let after = buf.capacity();
            prop_assert!(
                after <= before || after <= (header_len + max).max(2 * before),
                "capacity {} -> {}",
                before,
                after
            );
            match result {
                Ok(Some(frame)) => prop_assert!(frame.payload.len() <= max),
                Ok(None) | Err(_) => return Ok(()),
            }
        }
    }

    proptest! {
        #[test]
        fn decode_encode_is_identity(frame in any_frame()) {
            let mut codec = McpbCodec::default();
            let mut buf = BytesMut::new();
            prop_assert!(codec.encode(frame.clone(), &mut buf).is_ok());
            prop_assert_eq!(codec.decode(&mut buf).ok().flatten(), Some(frame));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn random_bytes_never_panic_or_overreserve(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            max in prop_oneof![Just(DEFAULT_MAX_PAYLOAD), 0usize..64],
        ) {
            drain_bounded(&mut McpbCodec::new(max), &bytes, HEADER_LEN, max)?;
            // Random bytes behind a valid magic and version reach the type/length checks.
            let mut framed = hex("4d 43 50 42 00 01");
            framed.extend_from_slice(&bytes);
            drain_bounded(&mut McpbCodec::new(max), &framed, HEADER_LEN, max)?;
        }

        #[test]
        fn mutated_frames_never_panic_or_overreserve(
            frame in any_frame(),
            mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            max in prop_oneof![Just(DEFAULT_MAX_PAYLOAD), 0usize..1024],
        ) {
            let mut bytes = encode(frame);
            let header_only = bytes.len().min(HEADER_LEN + 4);
            for (i, b) in mutations {
                // Mostly the header, where the interesting damage is.
                let at = i.index(header_only);
                bytes[at] = b;
            }
            drain_bounded(&mut McpbCodec::new(max), &bytes, HEADER_LEN, max)?;
        }
    }
}
