//! # mcp-router
//!
//! A transparent, fast MCP router: an MCP client starts it as a stdio server, and it
//! forwards every JSON-RPC message, as bytes, to the MCP server configured, and back;
//! with several servers configured it is one MCP server standing for all of them.
//!
//! # Layout — the tree is the message path
//!
//! ```text
//! main.rs            thin entry: parse the CLI, call cli::main, map errors to exit codes
//! auth/              gateway credentials: mod.rs (Bearer | Mtls | OAuth2), oauth.rs (token cache)
//! cli/               commands (run, version, config check [--list-tools]); the only anyhow user
//! config/            validated plain structs + load(file, env, flags); raw, env, validate, render,
//!                    mcp_json (other clients' mcpServers JSON), flags (--server), filter (globs),
//!                    resilience (rate limit, breaker, pool), endpoints (gateway endpoints, balancing)
//! frontend/          the client's side: stdio.rs (reader; sole stdout writer), fd.rs
//! router/            the routing core, decides, never does I/O: mod.rs (Core: identities in,
//!                    deliveries out), upstreams.rs (outbox per upstream), pending.rs,
//!                    reverse.rs (server→client requests), session.rs, ids.rs, port.rs
//!                    (an upstream's only handle), reconnects.rs (retries counted per
//!                    upstream), timer.rs; aggregating.rs (fan-out
//!                    parts settled through the pending table) and aggregate/ (several
//!                    servers as one: mod.rs plans, ops.rs fan-out table, merge.rs the
//!                    router's own answers, catalog.rs names/URIs shown and list merge,
//!                    names.rs, cursor.rs, uri.rs)
//! upstream/          spec.rs (config → upstreams, the one spawn), supervisor.rs (the one
//!                    connect/replay/write/keepalive loop), reconnect.rs (its pacing per
//!                    reconnect.*), connectors: stdio.rs, ws.rs,
//!                    sse.rs, gateway/ (mcp-bridge WebSocket + TCP); http.rs; detect.rs
//! wire/              bytes ↔ messages, no I/O: message.rs, id.rs, id_scan.rs,
//!                    ndjson.rs, error.rs (the only place JSON-RPC errors are built),
//!                    rewrite.rs (find / set / remove JSON members by splicing bytes),
//!                    gateway/ (envelope, MCPB and legacy frame codecs)
//! net/               tls.rs (the one rustls config builder), credentials.rs
//! resilience/        pure state machines with injected time: backoff.rs, rate_limit.rs,
//!                    breaker.rs, balance.rs, pool.rs
//! telemetry/         logging.rs, redact.rs (URLs without userinfo or query)
//! shutdown.rs        signals and the ordered drain of pending requests
//! ```
//!
//! Message path: `frontend::stdio` frames stdin with `wire::ndjson`, parses the envelope
//! once (`wire::message`) and hands it to the core, which queues it in the upstream's
//! outbox; the upstream's writer pulls it through its `Port`; its reader hands each reply
//! to the core, which routes it to the session that asked (the stdout writer). `docs/architecture.md` has the full picture.

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
