//! Upstreams: one supervisor task per MCP server, owning its connection or child process.
//!
//! The router hands each upstream [`Outgoing`](crate::router::Outgoing) messages (the
//! original bytes plus the envelope parsed once at the edge) through a bounded channel;
//! the upstream writes them, reads what comes back, asks the router what to
//! do with each message, and sends deliverable bytes to the client writer. Reading and
//! writing run in separate tasks so a peer that stops reading can never stop us reading it.
//! Only transports live here; routing decisions do not.

pub mod detect;
pub mod gateway;
pub mod http;
mod param_headers;
mod reconnect;
pub mod sse;
pub mod stdio;
pub mod ws;

/// Why an upstream cannot be used in this build (`None`: it can).
pub fn unsupported_target(url: &str) -> Option<String> {
    let scheme = url.split("://").next().unwrap_or(url);
    match scheme {
        "http" | "https" | "ws" | "wss" | "tcp" | "tcps" | "tcp+tls" => None,
        _ => Some(format!("'{url}' has an unknown scheme '{scheme}' (use a command line, http(s)://, ws(s)://, tcp://, tcps://)")),
    }
}

/// An error with its sources (`reqwest` and `tungstenite` keep the useful part, such as
/// "connection refused" or "certificate unknown", in the source chain).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

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

/// The upstream cannot be used at all: fail everything waiting, and answer every later
/// request at once with `text`.
pub(crate) async fn give_up(links: &stdio::Links, text: String) {
    tracing::error!("{text}");
    let err = crate::wire::RouterError::new(crate::wire::ErrorKind::UpstreamUnavailable, text);
    for reply in links.router.upstream_failed(err) {
        if links.to_client.send(reply).await.is_err() {
            break;
        }
    }
}

/// The id a connection-based upstream (WebSocket, SSE, gateway) gives the replayed
/// `initialize`, so its reply can be told apart and swallowed.
pub(crate) fn replay_id() -> crate::wire::Id {
    crate::wire::Id::router_owned("mcp-router-replay")
}

/// While a handshake is replayed on a new connection: `Some(outcome)` when `bytes` is the
/// reply to the replayed `initialize` (`id`), `None` for anything else (dropped: the
/// client has no requests on the new connection yet).
pub(crate) fn replay_reply(
    id: &crate::wire::Id,
    bytes: bytes::Bytes,
) -> Option<Result<(), String>> {
    let msg = crate::wire::Message::parse(bytes).ok()?;
    (msg.kind() == crate::wire::Kind::Response && msg.id() == Some(id)).then(|| {
        replay_outcome(&msg).map_err(|e| format!("the server refused the replayed initialize: {e}"))
    })
}

/// Waits (up to `timeout`) for `wait`, the search for the replayed `initialize`'s reply.
pub(crate) async fn await_replay(
    timeout: std::time::Duration,
    wait: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| "no answer to the replayed initialize".to_owned())?
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
