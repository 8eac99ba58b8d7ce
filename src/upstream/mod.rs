//! Upstreams: one supervisor task per MCP server, owning its connection or child process.
//!
//! The router hands each upstream [`Outgoing`](crate::router::Outgoing) bytes through a
//! bounded channel; the upstream writes them, reads what comes back, asks the router what to
//! do with each message, and sends deliverable bytes to the client writer. Reading and
//! writing run in separate tasks so a peer that stops reading can never stop us reading it.
//! Only transports live here; routing decisions do not.

pub mod http;
pub mod stdio;
pub mod ws;

/// Why an upstream cannot be used in this build (`None`: it can).
pub fn unsupported_target(url: &str) -> Option<String> {
    let scheme = url.split("://").next().unwrap_or(url);
    let what = match scheme {
        "http" | "https" => return None,
        "ws" | "wss" => return None,
        "tcp" | "tcps" | "tcp+tls" => "the TCP binary protocol",
        _ => return Some(format!("'{url}' has an unknown scheme '{scheme}' (use a command line, http(s)://, ws(s)://, tcp://, tcps://)")),
    };
    Some(format!(
        "servers with url '{url}' need {what}, which this build of mcp-router does not support yet; use a stdio command instead"
    ))
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
