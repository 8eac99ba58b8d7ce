//! The original Go router's 16-byte binary framing, behind `framing: legacy` only.
//!
//! The Go router (`services/router/internal/gateway/{binary_frame,constants,tcp_client}.go`)
//! writes a header the stock gateway rejects (`invalid magic bytes: 0x4D435000`), so this
//! framing is never the default; it exists for peers built against that router. What the
//! Go code says, at the reference commit:
//!
//! | offset | size | field    | value |
//! |---|---|---|---|
//! | 0  | 4 | magic    | `0x4D435000` ("MCP\0", `MagicBytes`) |
//! | 4  | 2 | version  | `ProtocolVersion` = 1 (later the version from the ack) |
//! | 6  | 2 | type     | the same numbers as MCPB: 1 Request … 7 VersionAck |
//! | 8  | 4 | reserved | written 0, read and ignored |
//! | 12 | 4 | length   | ≤ `MaxPayloadSize` = 10 MiB |
//!
//! All big-endian; `HeaderSize` = 16. Go's reader checks only the magic and the length;
//! this codec also requires version 1 and a known type (the only values the Go writer
//! produces), and, like Go, ignores the reserved field. Facts about what travels inside,
//! for the connection code that uses this codec: the Go router's version negotiation
//! payload is byte-identical to MCPB's; its health check carries `{}` rather than an empty
//! payload; and a Request frame carries the whole WebSocket envelope
//! (`{"id","timestamp","source","target_namespace","auth_token","mcp_payload"}`, see
//! [`super::envelope`]), not a bare message, with the reply expected as an envelope whose
//! `mcp_payload` is the response.
//!
//! This module owns only the header; frames, types and errors are shared with
//! [`super::mcpb`].

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::mcpb::{
    be_u16, be_u32, cap_to_u32, check_header, checked_len, take_payload, Frame, FrameError,
    DEFAULT_MAX_PAYLOAD, VERSION,
};

/// "MCP\0" as a big-endian u32.
pub const MAGIC: u32 = 0x4D43_5000;
/// magic 4 + version 2 + type 2 + reserved 4 + length 4.
pub const HEADER_LEN: usize = 16;

/// The legacy codec. `max_payload` bounds a payload both ways.
#[derive(Debug, Clone)]
pub struct LegacyCodec {
    max_payload: usize,
}

impl LegacyCodec {
    /// A codec with its own payload limit (capped at `u32::MAX`).
    pub fn new(max_payload: usize) -> Self {
        LegacyCodec {
            max_payload: cap_to_u32(max_payload),
        }
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }
}

impl Default for LegacyCodec {
    /// The Go router's limit, 10 MiB.
    fn default() -> Self {
        LegacyCodec::new(DEFAULT_MAX_PAYLOAD)
    }
}

impl Decoder for LegacyCodec {
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
        // Bytes 8..12 are the reserved field: ignored, as the Go reader does.
        let (kind, len) = check_header(
            be_u16(header, 4),
            be_u16(header, 6),
            be_u32(header, 12),
            self.max_payload,
        )?;
        Ok(take_payload(src, HEADER_LEN, kind, len))
    }
}

impl Encoder<Frame> for LegacyCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = checked_len(&frame, self.max_payload)?;
        dst.reserve(HEADER_LEN + frame.payload.len());
        dst.put_u32(MAGIC);
        dst.put_u16(VERSION);
        dst.put_u16(frame.kind as u16);
        dst.put_u32(0);
        dst.put_u32(len);
        dst.put_slice(&frame.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::gateway::mcpb::tests::{any_frame, decode_split, drain_bounded};
    use crate::wire::gateway::mcpb::{FrameType, McpbCodec};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn encode(frame: Frame) -> Vec<u8> {
        let mut buf = BytesMut::new();
        LegacyCodec::default()
            .encode(frame, &mut buf)
            .unwrap_or_else(|e| panic!("encode failed: {e}"));
        buf.to_vec()
    }

    #[test]
    fn golden_version_negotiation() {
        let bytes = encode(Frame::version_negotiation());
        assert_eq!(
            &bytes[..HEADER_LEN],
            &[0x4d, 0x43, 0x50, 0x00, 0x00, 0x01, 0x00, 0x06, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x50]
        );
        assert_eq!(
            &bytes[HEADER_LEN..],
            br#"{"max_version":1,"min_version":1,"preferred_version":1,"supported_versions":[1]}"#
        );
    }

    #[test]
    fn reserved_field_is_ignored_like_go() {
        let mut bytes = encode(Frame::health_check());
        bytes[8..12].copy_from_slice(&[1, 2, 3, 4]);
        let mut buf = BytesMut::from(&bytes[..]);
        let decoded = LegacyCodec::default().decode(&mut buf);
        assert_eq!(decoded.ok().flatten(), Some(Frame::health_check()));
    }

    #[test]
    fn the_two_framings_reject_each_other_by_magic() {
        let legacy = encode(Frame::health_check());
        let result = McpbCodec::default().decode(&mut BytesMut::from(&legacy[..]));
        assert!(matches!(result, Err(FrameError::BadMagic(MAGIC))));

        let mut mcpb = BytesMut::new();
        assert!(McpbCodec::default()
            .encode(Frame::health_check(), &mut mcpb)
            .is_ok());
        mcpb.extend_from_slice(&[0; 4]);
        let result = LegacyCodec::default().decode(&mut mcpb);
        assert!(matches!(result, Err(FrameError::BadMagic(0x4D43_5042))));
    }

    #[test]
    fn bad_headers_are_named() {
        let decode = |b: [u8; 16]| LegacyCodec::default().decode(&mut BytesMut::from(&b[..]));
        let base = [0x4d, 0x43, 0x50, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut v = base;
        v[5] = 2;
        assert!(matches!(decode(v), Err(FrameError::UnsupportedVersion(2))));
        let mut t = base;
        t[7] = 9;
        assert!(matches!(decode(t), Err(FrameError::UnknownType(9))));
        let mut l = base;
        l[12..].copy_from_slice(&[0xff; 4]);
        assert!(matches!(decode(l), Err(FrameError::TooLong { .. })));
    }

    #[test]
    fn split_at_every_byte_decodes_the_same() {
        let frames = vec![
            Frame::version_negotiation(),
            Frame::request(Bytes::from_static(b"{\"mcp_payload\":{}}")),
            Frame {
                kind: FrameType::HealthCheck,
                payload: Bytes::from_static(b"{}"),
            },
        ];
        let bytes: Vec<u8> = frames.iter().cloned().flat_map(encode).collect();
        for at in 0..=bytes.len() {
            let got = decode_split(&mut LegacyCodec::default(), &bytes, at);
            assert_eq!(got, frames, "split at {at}");
        }
    }

    #[test]
    fn a_4_gib_header_does_not_allocate() {
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&[
            0x4d, 0x43, 0x50, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
        ]);
        let result = LegacyCodec::default().decode(&mut buf);
        assert!(matches!(result, Err(FrameError::TooLong { .. })));
        assert!(buf.capacity() < 1024, "capacity grew to {}", buf.capacity());
    }

    proptest! {
        #[test]
        fn decode_encode_is_identity(frame in any_frame()) {
            let mut codec = LegacyCodec::default();
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
            drain_bounded(&mut LegacyCodec::new(max), &bytes, HEADER_LEN, max)?;
            let mut framed = vec![0x4d, 0x43, 0x50, 0x00, 0x00, 0x01];
            framed.extend_from_slice(&bytes);
            drain_bounded(&mut LegacyCodec::new(max), &framed, HEADER_LEN, max)?;
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
                let at = i.index(header_only);
                bytes[at] = b;
            }
            drain_bounded(&mut LegacyCodec::new(max), &bytes, HEADER_LEN, max)?;
        }
    }
}
