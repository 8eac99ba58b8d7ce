//! The gateway's WebSocket protocol on one connection: the upgrade (URL as given,
//! `Authorization: Bearer`, no subprotocol), each client message wrapped in the gateway's
//! JSON envelope (`wire::gateway::envelope`), each reply unwrapped to its `mcp_payload`.
//! Owns the socket halves; the connection lifecycle (replay, queue, reconnect) is in
//! `gateway/mod.rs`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsFrame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{ConnectError, Inbound, SendError};
use crate::config::Secret;
use crate::upstream::error_chain;
use crate::wire::gateway::envelope;
use crate::wire::Message;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The mcp-bridge gateway closes a WebSocket (1009) on a message over 1 MiB, which would
/// cost every request in flight; larger messages are refused one by one instead.
pub const GATEWAY_WS_MESSAGE_LIMIT: usize = 1024 * 1024;

/// Ping payload the Go router uses; the gateway answers pings but checks nothing.
const KEEPALIVE_PAYLOAD: &[u8] = b"keepalive";

pub struct Writer {
    sink: SplitSink<Socket, WsFrame>,
    default_namespace: Arc<str>,
}

pub struct Reader {
    stream: SplitStream<Socket>,
}

pub async fn connect(
    url: &str,
    token: Option<&Secret>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    max_incoming: usize,
    default_namespace: Arc<str>,
) -> Result<(Writer, Reader), ConnectError> {
    let mut req = url.into_client_request().map_err(|e| {
        ConnectError::Other(format!(
            "'{}' is not a usable WebSocket URL: {e}",
            crate::telemetry::redact::url(url)
        ))
    })?;
    if let Some(token) = token {
        let mut value =
            HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
                ConnectError::Other(
                    "the auth token holds characters an HTTP header cannot carry".into(),
                )
            })?;
        value.set_sensitive(true);
        req.headers_mut().insert("authorization", value);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_incoming))
        .max_frame_size(Some(max_incoming));
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        req,
        Some(config),
        true,
        Some(tokio_tungstenite::Connector::Rustls(tls)),
    );
    let socket = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(e)) => return Err(upgrade_error(e)),
        Err(_) => {
            return Err(ConnectError::Other(format!(
                "timed out after {timeout:?} (gateway.connection.timeout_ms)"
            )))
        }
    };
    let (sink, stream) = socket.split();
    Ok((
        Writer {
            sink,
            default_namespace,
        },
        Reader { stream },
    ))
}

fn upgrade_error(e: WsError) -> ConnectError {
    if let WsError::Http(resp) = &e {
        let status = resp.status();
        let body = resp
            .body()
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).trim().to_owned())
            .unwrap_or_default();
        return match status.as_u16() {
            401 | 403 => ConnectError::AuthRejected(format!(
                "the gateway refused the credentials (HTTP {status}); check gateway.auth"
            )),
            404 => ConnectError::Other(
                "HTTP 404: the gateway serves WebSocket on another path; check the path in the gateway URL".into(),
            ),
            503 => ConnectError::Other(format!("the gateway is at its connection limit (HTTP 503: {body})")),
            _ => ConnectError::Other(format!("the gateway answered the upgrade with HTTP {status} {body}")),
        };
    }
    let text = error_chain(&e);
    match crate::net::tls::explain(&text, "gateway.tls") {
        Some(hint) => ConnectError::Other(format!("{text} ({hint})")),
        None => ConnectError::Other(text),
    }
}

impl Writer {
    /// Queues one client message, wrapped in the envelope (not yet flushed).
    pub async fn feed(&mut self, msg: &Message, token: Option<&str>) -> Result<(), SendError> {
        let ns = envelope::namespace(msg.method(), &self.default_namespace);
        let wrapped = envelope::wrap(msg.raw(), msg.id(), ns, token, SystemTime::now());
        if wrapped.len() > GATEWAY_WS_MESSAGE_LIMIT {
            return Err(SendError::TooLarge(format!(
                "this message is {} bytes in the gateway's envelope, over the gateway's WebSocket limit of {} bytes (it would close the connection); use the gateway's TCP protocol (tcp://, 10 MiB) or a direct connection",
                wrapped.len(),
                GATEWAY_WS_MESSAGE_LIMIT
            )));
        }
        let frame = crate::upstream::ws::text_frame(wrapped).map_err(SendError::TooLarge)?;
        self.sink
            .feed(frame)
            .await
            .map_err(|e| SendError::Io(error_chain(&e)))
    }

    pub async fn flush(&mut self) -> Result<(), String> {
        self.sink.flush().await.map_err(|e| error_chain(&e))
    }

    pub async fn keepalive(&mut self) -> Result<(), String> {
        self.sink
            .send(WsFrame::Ping(Bytes::from_static(KEEPALIVE_PAYLOAD)))
            .await
            .map_err(|e| error_chain(&e))
    }

    pub async fn close(&mut self) {
        crate::upstream::ws::send_close(&mut self.sink).await;
    }
}

impl Reader {
    /// The next MCP message from the gateway, or why the connection ended.
    pub async fn next(&mut self) -> Inbound {
        while let Some(frame) = self.stream.next().await {
            let text = match frame {
                Ok(WsFrame::Text(t)) => Bytes::from(t),
                // The gateway ignores binary frames, and so do we.
                Ok(WsFrame::Close(c)) => {
                    return Inbound::Ended(match c {
                        Some(c) if c.code == CloseCode::Size => {
                            "closed the connection: a message was over its size limit (1009)".into()
                        }
                        Some(c) => format!("closed the connection ({}: {})", c.code, c.reason),
                        None => "closed the connection".into(),
                    })
                }
                Ok(WsFrame::Pong(_)) => return Inbound::Pong,
                Ok(_) => continue,
                Err(e) => return Inbound::Ended(format!("connection failed: {}", error_chain(&e))),
            };
            return match envelope::unwrap(text) {
                Ok(envelope::Incoming::Payload(p)) => Inbound::Message(p),
                Ok(envelope::Incoming::Bare(b)) if envelope::is_shutdown_notice(&b) => {
                    Inbound::Ended("is shutting down (it said \"Server shutting down\")".into())
                }
                // A bare JSON-RPC message (not wrapped): still a message for the client.
                Ok(envelope::Incoming::Bare(b)) => Inbound::Message(b),
                Err(e) => Inbound::Ended(format!(
                    "sent a frame that is not a gateway envelope ({e}); connection reset"
                )),
            };
        }
        Inbound::Ended("closed the connection".into())
    }
}
