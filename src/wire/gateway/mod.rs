//! The mcp-bridge gateway's wire formats: bytes only, no sockets, no tasks, no clocks.
//!
//! An mcp-bridge gateway speaks two transports, and this module owns the byte formats of
//! both (REFERENCE.md §3 and §4; the gateway's Go code is the authority):
//!
//! - [`envelope`]: the JSON envelope each WebSocket text frame carries
//!   (`{"id","timestamp","source","target_namespace","auth_token","mcp_payload"}`), the
//!   namespace rule that fills `target_namespace`, and reading the gateway's replies back out
//!   of it without copying.
//! - [`mcpb`]: the gateway's TCP binary framing ("MCPB", 12-byte header) as a
//!   `tokio_util` codec, with the exact control frames the router sends.
//! - [`legacy`]: the original Go router's 16-byte framing ("MCP\0"), which the stock gateway
//!   rejects; it exists only behind an explicit `framing: legacy` setting.
//!
//! What this module deliberately does not do: open connections, negotiate versions with a
//! timeout, decide whether a notification may be sent, or read the clock (callers pass
//! `now`). Those belong to `upstream::gateway`. The MCP payloads themselves are never parsed
//! beyond what a format needs and never re-serialized.

pub mod envelope;
pub mod legacy;
pub mod mcpb;

pub use envelope::{is_shutdown_notice, namespace, unwrap, wrap, EnvelopeError, Incoming};
pub use legacy::LegacyCodec;
pub use mcpb::{parse_version_ack, Frame, FrameError, FrameType, McpbCodec};
