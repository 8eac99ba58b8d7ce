//! Routing of one validated JSON-RPC message to the connection's backend, shared by the
//! WebSocket and TCP frontends: the `--delay-ms` fault, the request log line, and the
//! gateway's `-32603` text when forwarding fails.

use crate::backend::{response_text, Backend};
use crate::gojson;
use serde_json::Value;
use std::time::Duration;

/// Prefix of the gateway's error when the backend cannot answer.
pub const FORWARD_ERROR: &str = "[router] forward_request: INTERNAL: failed to forward request: ";

/// What to send back for one client message.
pub enum Outcome {
    /// A bare JSON-RPC response (Go re-marshalled) and its id.
    Reply { id: Value, text: String },
    /// A notification that was delivered: nothing to send.
    NoReply,
}

/// Whether a payload is a request that expects an answer (has an `id` member).
pub fn expects_reply(payload: &Value) -> bool {
    payload.get("id").is_some()
}

/// Forwards `payload` after the configured delay and builds the reply.
pub async fn route(backend: &mut Backend, payload: &Value, delay_ms: u64, conn: &str) -> Outcome {
    let method = payload.get("method").and_then(Value::as_str).unwrap_or("");
    let id = payload.get("id").cloned();
    match &id {
        Some(id) => eprintln!("[gw] {conn}: request {method} id={}", gojson::marshal(id)),
        None => eprintln!("[gw] {conn}: notification {method}"),
    }
    if delay_ms > 0 {
        eprintln!("[gw] {conn}: fault: delaying {delay_ms} ms");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    match backend.forward(payload).await {
        Ok(Some(resp)) => Outcome::Reply {
            id: resp.get("id").cloned().unwrap_or(Value::Null),
            text: response_text(&resp),
        },
        Ok(None) => Outcome::NoReply,
        Err(cause) => {
            eprintln!("[gw] {conn}: forward failed: {cause}");
            // Like the gateway: the error carries the request's id (null for a notification).
            let id = id.unwrap_or(Value::Null);
            let text = gojson::internal_error(&id, &format!("{FORWARD_ERROR}{cause}"));
            Outcome::Reply { id, text }
        }
    }
}
