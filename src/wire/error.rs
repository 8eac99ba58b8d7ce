//! The JSON-RPC error responses the router writes itself: the only place they are built.
//!
//! Texts follow the original Go router where it had one (clients and scripts grep them);
//! every error also carries a stable `data.kind` so clients and tests can tell causes apart.
//! This module formats bytes only; deciding *when* to answer with an error is the router's.

use bytes::Bytes;

use super::id::Id;

/// A stable machine-readable cause, sent as `error.data.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Parse,
    InvalidRequest,
    Timeout,
    QueueFull,
    RateLimited,
    UpstreamUnavailable,
    UpstreamExited,
    CircuitOpen,
    TooLarge,
    ShuttingDown,
    Unsupported,
    /// The router answers this method itself and does not know it (aggregation).
    MethodNotFound,
    /// The request names something no server has (aggregation: an unknown tool, URI, cursor).
    InvalidParams,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Parse => "parse_error",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Timeout => "timeout",
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::UpstreamUnavailable => "upstream_unavailable",
            ErrorKind::UpstreamExited => "upstream_exited",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::MethodNotFound => "method_not_found",
            ErrorKind::InvalidParams => "invalid_params",
        }
    }

    /// The JSON-RPC code: the standard ones where they apply, else -32603 as the original.
    pub fn code(self) -> i64 {
        match self {
            ErrorKind::Parse => -32700,
            ErrorKind::InvalidRequest => -32600,
            ErrorKind::MethodNotFound => -32601,
            ErrorKind::InvalidParams => -32602,
            _ => -32603,
        }
    }
}

/// An error the router answers a request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterError {
    pub kind: ErrorKind,
    pub message: String,
}

impl RouterError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The complete JSON-RPC response line (without newline) for `id` (`None` → `null`).
    pub fn to_response(&self, id: Option<&Id>) -> Bytes {
        let message = serde_json::Value::String(self.message.clone()).to_string();
        let id = id.map_or("null", Id::as_json);
        Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{},"message":{message},"data":{{"kind":"{}"}}}}}}"#,
            self.kind.code(),
            self.kind.as_str()
        ))
    }
}

impl std::fmt::Display for RouterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// `notifications/cancelled` for a request the router gave up on.
pub fn cancelled_notification(id: &Id, reason: &str) -> Bytes {
    let reason = serde_json::Value::String(reason.to_owned()).to_string();
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{},"reason":{reason}}}}}"#,
        id.as_json()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_is_valid_json_rpc() {
        let id = Id::from_raw_json("\"x\"");
        let e = RouterError::new(ErrorKind::Timeout, "request timeout after 30s \"quoted\"");
        let v: serde_json::Value = serde_json::from_slice(&e.to_response(Some(&id))).unwrap();
        assert_eq!(v["id"], "x");
        assert_eq!(v["error"]["code"], -32603);
        assert_eq!(
            v["error"]["message"],
            "request timeout after 30s \"quoted\""
        );
        assert_eq!(v["error"]["data"]["kind"], "timeout");
        let v: serde_json::Value = serde_json::from_slice(
            &RouterError::new(ErrorKind::Parse, "invalid JSON").to_response(None),
        )
        .unwrap();
        assert_eq!(
            (v["id"].clone(), v["error"]["code"].clone()),
            (serde_json::Value::Null, (-32700).into())
        );
    }

    #[test]
    fn cancelled_names_the_request() {
        let v: serde_json::Value =
            serde_json::from_slice(&cancelled_notification(&Id::from_raw_json("9"), "timeout"))
                .unwrap();
        assert_eq!(v["params"]["requestId"], 9);
        assert_eq!(v["method"], "notifications/cancelled");
    }
}
