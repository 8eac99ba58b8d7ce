//! Upstreams: one supervisor task per MCP server, owning its connection or child process.
//!
//! `spec` turns the configuration into upstreams and starts them; `supervisor` is the one
//! loop (connect, replay, pull-and-write, keepalive, reconnect) every connection-shaped
//! transport shares, with a connector per transport (`stdio`, `ws`, `sse`, `gateway`);
//! Streamable HTTP (`http`) keeps its request-per-POST shape. Each reaches the routing
//! core only through its [`Port`](crate::router::Port): it pulls messages from the
//! outbox the core owns and hands what it reads to the core, which routes replies to the
//! client session that asked. Reading and writing run in separate tasks so a peer that
//! stops reading can never stop us reading it. Only transports live here; routing
//! decisions do not.

pub mod detect;
pub mod gateway;
pub mod http;
mod param_headers;
mod pool;
mod reconnect;
pub mod spec;
pub mod sse;
pub mod stdio;
mod supervisor;
pub mod ws;

pub use spec::{spawn, Spec};

/// Why an upstream cannot be used in this build (`None`: it can).
pub fn unsupported_target(url: &str) -> Option<String> {
    let scheme = url.split("://").next().unwrap_or(url);
    match scheme {
        "http" | "https" | "ws" | "wss" | "tcp" | "tcps" | "tcp+tls" => None,
        _ => Some(format!("'{}' has an unknown scheme '{scheme}' (use a command line, http(s)://, ws(s)://, tcp://, tcps://)", crate::telemetry::redact::masked(url))),
    }
}

pub(crate) use crate::telemetry::redact::chain as error_chain;

/// Headers from the configuration; invalid ones are named (never their values, which may
/// be secrets) and skipped. Values are marked sensitive so they stay out of debug output.
pub(crate) fn header_map(
    upstream: &str,
    headers: &std::collections::BTreeMap<String, String>,
) -> reqwest::header::HeaderMap {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        match (
            reqwest::header::HeaderName::try_from(k.as_str()),
            reqwest::header::HeaderValue::try_from(v.as_str()),
        ) {
            (Ok(key), Ok(mut value)) => {
                value.set_sensitive(true);
                map.insert(key, value);
            }
            _ => {
                tracing::warn!(upstream = %upstream, header = %k, "ignoring a header that is not valid HTTP")
            }
        }
    }
    map
}

/// The HTTP client every HTTP-based upstream uses: pooled keep-alive connections, HTTP/2
/// where offered, rustls with certificate verification on.
pub(crate) fn http_client(
    connect_timeout: std::time::Duration,
    tls: &crate::config::TlsConfig,
) -> Result<reqwest::Client, String> {
    let config = crate::net::tls::client_config(tls, &[b"h2", b"http/1.1"])?;
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .use_preconfigured_tls((*config).clone());
    // Proxy matching re-parses the URL on every request; skip it when no proxy is set.
    let proxy_vars = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ];
    if !proxy_vars
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| error_chain(&e))
}

/// Whether an `http(s)://` URL names a legacy HTTP+SSE endpoint (by the convention every
/// SDK follows: the path ends in `/sse`).
pub fn is_legacy_sse(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.trim_end_matches('/').ends_with("/sse")
}

/// Whether the server accepted a replayed `initialize`: its reply's `error` member, if any.
/// Parsed (not searched for), so a result that merely mentions "error" is not a refusal.
pub(crate) fn replay_outcome(reply: &crate::wire::Message) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Reply {
        error: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Reply>(reply.raw()) {
        Ok(Reply { error: Some(e) }) => Err(e.to_string()),
        _ => Ok(()),
    }
}
