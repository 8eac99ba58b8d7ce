//! Bytes ↔ JSON-RPC messages. No I/O, no tasks, no clocks.
//!
//! Everything that turns bytes from a peer into something the router can route (and
//! back) lives here, and only here: the line codec, the once-per-message envelope parse,
//! request ids and their rewrite, the JSON-RPC errors the router itself writes, the
//! byte-splicing JSON field surgery aggregation is built on (`rewrite`), and the
//! mcp-bridge gateway's envelope and binary framings (`gateway`).
//! Payloads are never re-serialized: a [`Message`] keeps the exact bytes it arrived as.

pub mod error;
pub mod gateway;
pub mod id;
pub mod id_scan;
pub mod message;
pub mod ndjson;
pub mod rewrite;

pub use error::{ErrorKind, RouterError};
pub use id::Id;
pub use message::{Kind, Message, ParseError};
pub use ndjson::{release_after_large, Frame, NdjsonCodec};
