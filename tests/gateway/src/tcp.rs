//! The MCPB TCP frontend in its two flavours (`--tcp-mode frontend|handler`): frame
//! dispatch, version negotiation, request-id rules, per-connection auth, and the TCP
//! faults (`--refuse`, `--reject-auth`, `--drop-after` half-written reply).
//!
//! Auth (when `--token`/`--oauth` is on): a connection counts as authenticated once it
//! presented a verified client certificate or a valid token in an `{auth_token,message}`
//! request. Frontend mode, like the running gateway, never refuses a bare request (it
//! does not check auth at all); handler mode answers unauthenticated bare requests with
//! `Unauthorized: must initialize first` and a bad token with `Authentication failed`
//! (then closes), both as -32603 Response frames like `tcp_handler.go`.

use crate::backend::Backend;
use crate::cli::TcpMode;
use crate::gojson;
use crate::mcpb::{encode, read_frame, Frame, Kind};
use crate::route::{expects_reply, route, Outcome};
use crate::shared::Shared;
use crate::tls::{self, Accepted, Stream};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpListener;
use tokio::time::{sleep_until, Instant};
use tokio_rustls::TlsAcceptor;

const VERSION_ACK: &[u8] = br#"{"agreed_version":1}"#;

/// Accepts connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mode: TcpMode,
    shared: Arc<Shared>,
) {
    while let Some((tcp, peer)) = shared.next_connection(&listener, "tcp").await {
        let (tls, shared) = (tls.clone(), shared.clone());
        tokio::spawn(async move {
            let label = shared.label("tcp", peer);
            if shared.faults.refuse {
                return eprintln!("[gw] {label}: fault: refuse (closed at once)");
            }
            match tls::accept(tcp, tls.as_ref()).await {
                Ok(acc) => connection(acc, &label, mode, &shared).await,
                Err(e) => eprintln!("[gw] {label}: {e}"),
            }
        });
    }
}

/// What to do after one frame.
enum Next {
    Continue,
    Close,
}

struct Conn<'a> {
    label: &'a str,
    mode: TcpMode,
    shared: &'a Shared,
    out: WriteHalf<Box<dyn Stream>>,
    authenticated: bool,
    expiry: Option<Instant>,
    negotiated: bool,
    answered: u64,
}

async fn connection(acc: Accepted, label: &str, mode: TcpMode, shared: &Shared) {
    let auth = if !shared.auth.enabled() {
        "off"
    } else if acc.client_cert {
        "client certificate"
    } else {
        "pending"
    };
    eprintln!("[gw] {label}: connected ({mode:?} mode, auth: {auth})");
    let (mut input, out) = tokio::io::split(acc.stream);
    let mut conn = Conn {
        label,
        mode,
        shared,
        out,
        authenticated: acc.client_cert,
        expiry: None,
        negotiated: false,
        answered: 0,
    };
    let mut backend = Backend::spawn(&shared.backend);
    let far = Instant::now() + Duration::from_secs(100 * 365 * 86_400);
    loop {
        let frame = tokio::select! {
            biased;
            _ = shared.shutting_down() => break,
            _ = sleep_until(conn.expiry.unwrap_or(far)), if conn.expiry.is_some() => {
                eprintln!("[gw] {label}: token expired, closing");
                break;
            }
            f = read_frame(&mut input) => f,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(reason) => {
                eprintln!("[gw] {label}: closing: {reason}");
                break;
            }
        };
        if let Next::Close = conn.frame(frame, &mut backend).await {
            break;
        }
    }
    let _ = conn.out.shutdown().await;
    backend.shutdown().await;
    eprintln!("[gw] {label}: closed");
}

fn is_json_object_or_empty(payload: &[u8]) -> bool {
    payload.is_empty()
        || matches!(
            serde_json::from_slice::<Value>(payload),
            Ok(Value::Object(_) | Value::Null)
        )
}

impl Conn<'_> {
    async fn frame(&mut self, frame: Frame, backend: &mut Backend) -> Next {
        let handler = self.mode == TcpMode::Handler;
        if handler && !self.negotiated && frame.kind != Kind::VersionNegotiation {
            eprintln!(
                "[gw] {}: {:?} before version negotiation",
                self.label, frame.kind
            );
            self.write(Kind::Error, b"Version negotiation required")
                .await;
            return Next::Close;
        }
        match frame.kind {
            Kind::VersionNegotiation => {
                if !matches!(
                    serde_json::from_slice::<Value>(&frame.payload),
                    Ok(Value::Object(_))
                ) {
                    eprintln!(
                        "[gw] {}: closing: bad version negotiation payload",
                        self.label
                    );
                    return Next::Close;
                }
                if !handler {
                    eprintln!(
                        "[gw] {}: version negotiation ignored (frontend mode)",
                        self.label
                    );
                } else if self.negotiated {
                    self.write(Kind::Error, b"Version already negotiated").await;
                } else {
                    self.negotiated = true;
                    eprintln!("[gw] {}: version negotiated: 1", self.label);
                    return self.write(Kind::VersionAck, VERSION_ACK).await;
                }
                Next::Continue
            }
            Kind::HealthCheck | Kind::Control => {
                if !is_json_object_or_empty(&frame.payload) {
                    eprintln!("[gw] {}: closing: bad {:?} payload", self.label, frame.kind);
                    return Next::Close;
                }
                if handler && frame.kind == Kind::HealthCheck {
                    return self.write(Kind::HealthCheck, b"").await;
                }
                Next::Continue
            }
            Kind::VersionAck | Kind::Response => {
                if serde_json::from_slice::<Value>(&frame.payload).is_err() {
                    eprintln!("[gw] {}: closing: bad {:?} payload", self.label, frame.kind);
                    return Next::Close;
                }
                Next::Continue
            }
            Kind::Error => Next::Continue,
            Kind::Request => self.request(&frame.payload, backend).await,
        }
    }

    async fn request(&mut self, payload: &[u8], backend: &mut Backend) -> Next {
        let Ok(value) = serde_json::from_slice::<Value>(payload) else {
            eprintln!("[gw] {}: closing: request payload is not JSON", self.label);
            return Next::Close;
        };
        let (token, message) = match split_auth(&value) {
            Some((token, message)) => (Some(token), message),
            None => (None, value),
        };
        if let Err(why) = check_request_shape(&message) {
            eprintln!(
                "[gw] {}: closing: failed to unmarshal request: {why}",
                self.label
            );
            return Next::Close;
        }
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        if self.shared.faults.reject_auth {
            eprintln!("[gw] {}: fault: reject-auth", self.label);
            self.write(Kind::Error, b"Authentication failed").await;
            return Next::Close;
        }
        if let Some(token) = &token {
            if self.shared.auth.enabled() {
                match self.shared.auth.check(token) {
                    Some(grant) => {
                        if !self.authenticated {
                            eprintln!("[gw] {}: auth: token accepted", self.label);
                        }
                        self.authenticated = true;
                        if self.shared.auth.close_on_expiry && self.expiry.is_none() {
                            self.expiry = grant.expiry();
                        }
                    }
                    None if self.mode == TcpMode::Handler => {
                        eprintln!("[gw] {}: auth: token rejected", self.label);
                        self.reply_error(&id, "Authentication failed").await;
                        return Next::Close;
                    }
                    None => eprintln!("[gw] {}: auth: token rejected (ignored)", self.label),
                }
            }
        }
        match self.mode {
            TcpMode::Frontend if token.is_some() => {
                eprintln!(
                    "[gw] {}: {{auth_token,message}} request skipped (frontend mode)",
                    self.label
                );
                return Next::Continue;
            }
            TcpMode::Frontend => {}
            TcpMode::Handler => {
                if let Err(why) = check_handler_id(message.get("id")) {
                    eprintln!("[gw] {}: invalid request id: {why}", self.label);
                    self.reply_error(&id, &format!("Invalid request ID: {why}"))
                        .await;
                    return Next::Close;
                }
                if self.shared.auth.enabled() && !self.authenticated {
                    eprintln!("[gw] {}: auth: unauthenticated request refused", self.label);
                    return self
                        .reply_error(&id, "Unauthorized: must initialize first")
                        .await;
                }
            }
        }
        let wants_reply = expects_reply(&message);
        let drop_now = wants_reply && self.shared.faults.drop_after == Some(self.answered);
        let outcome = route(backend, &message, self.shared.faults.delay_ms, self.label).await;
        let Outcome::Reply { text, .. } = outcome else {
            return Next::Continue;
        };
        if drop_now {
            eprintln!(
                "[gw] {}: fault: drop-after {}: half a reply, then close",
                self.label, self.answered
            );
            let frame = encode(Kind::Response, text.as_bytes());
            let cut = 12 + text.len() / 2;
            let _ = self.out.write_all(&frame[..cut]).await;
            let _ = self.out.flush().await;
            return Next::Close;
        }
        if wants_reply {
            self.answered += 1;
        }
        self.write(Kind::Response, text.as_bytes()).await
    }

    async fn reply_error(&mut self, id: &Value, message: &str) -> Next {
        let text = gojson::internal_error(id, message);
        self.write(Kind::Response, text.as_bytes()).await
    }

    async fn write(&mut self, kind: Kind, payload: &[u8]) -> Next {
        match write_frame(&mut self.out, kind, payload).await {
            Ok(()) => Next::Continue,
            Err(e) => {
                eprintln!("[gw] {}: write error: {e}", self.label);
                Next::Close
            }
        }
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: Kind,
    payload: &[u8],
) -> std::io::Result<()> {
    w.write_all(&encode(kind, payload)).await?;
    w.flush().await
}

/// `{"auth_token":"T","message":{…}}`: used only when the token is a string and the message
/// is present and not null (as Go decodes `wire.AuthMessage`).
fn split_auth(v: &Value) -> Option<(String, Value)> {
    let obj = v.as_object()?;
    let message = obj.get("message").filter(|m| !m.is_null())?;
    let token = match obj.get("auth_token") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return None,
    };
    Some((token, message.clone()))
}

/// What Go's `json.Unmarshal` into `mcp.Request` accepts: an object whose `jsonrpc` and
/// `method` are strings when present.
fn check_request_shape(v: &Value) -> Result<(), String> {
    let obj = v.as_object().ok_or("not a JSON object")?;
    for field in ["jsonrpc", "method"] {
        if !matches!(
            obj.get(field),
            None | Some(Value::Null) | Some(Value::String(_))
        ) {
            return Err(format!("{field} is not a string"));
        }
    }
    Ok(())
}

/// `validation.ValidateRequestID`: a number, or a non-empty string of `[A-Za-z0-9_-]`
/// (at most 256 chars).
fn check_handler_id(id: Option<&Value>) -> Result<(), String> {
    let prefix = "[validation] VALIDATION: ";
    match id {
        Some(Value::Number(_)) => Ok(()),
        Some(Value::String(s)) if s.is_empty() => Err(format!("{prefix}ID cannot be empty")),
        Some(Value::String(s)) if s.len() > 256 => Err(format!("{prefix}ID too long")),
        Some(Value::String(s))
            if s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Ok(())
        }
        Some(Value::String(_)) => Err(format!("{prefix}ID contains invalid characters")),
        None | Some(Value::Null) => Err(format!("{prefix}invalid ID type: <nil>")),
        Some(Value::Bool(_)) => Err(format!("{prefix}invalid ID type: bool")),
        Some(Value::Array(_)) => Err(format!("{prefix}invalid ID type: []interface {{}}")),
        Some(Value::Object(_)) => Err(format!(
            "{prefix}invalid ID type: map[string]interface {{}}"
        )),
    }
}
