//! # mcp-router
//!
//! A transparent, fast MCP router: an MCP client starts it as a stdio server, and it
//! forwards every JSON-RPC message, as bytes, to the MCP server configured, and back.
//!
//! # Layout — the tree is the message path
//!
//! ```text
//! main.rs            thin entry: parse the CLI, call cli::main, map errors to exit codes
//! auth/              gateway credentials: mod.rs (Bearer | Mtls | OAuth2), oauth.rs (token cache)
//! cli/               commands (run, version, config check); the only anyhow user
//! config/            validated plain structs + load(file, env, flags); raw, env, validate, render
//! frontend/          the client's side: stdio.rs (reader; sole stdout writer), fd.rs
//! router/            decides, never does I/O: mod.rs (shared state), pending.rs,
//!                    session.rs (client handshake kept for replay)
//! upstream/          one supervisor per server: stdio.rs (child process), http.rs,
//!                    sse.rs, ws.rs, detect.rs, gateway/ (mcp-bridge WebSocket + TCP)
//! wire/              bytes ↔ messages, no I/O: message.rs, id.rs, id_scan.rs,
//!                    ndjson.rs, error.rs (the only place JSON-RPC errors are built),
//!                    gateway/ (envelope, MCPB and legacy frame codecs)
//! net/               tls.rs (the one rustls config builder), credentials.rs
//! resilience/        pure state machines with injected time: backoff.rs
//! telemetry/         logging.rs
//! shutdown.rs        signals and the ordered drain of pending requests
//! ```
//!
//! Message path: `frontend::stdio` frames stdin with `wire::ndjson`, parses the envelope
//! once (`wire::message`), asks `router` what to do, and hands bytes to the upstream's
//! channel; the upstream's reader asks `router` about each reply and hands bytes to the
//! single stdout writer. `docs/architecture.md` has the full picture.

pub mod auth;
pub mod cli;
pub mod config;
pub mod frontend;
pub mod net;
pub mod resilience;
pub mod router;
pub mod shutdown;
pub mod telemetry;
pub mod upstream;
pub mod wire;
