//! A WebSocket MCP server (`ws://`, `wss://`): one JSON-RPC message per text frame.
//!
//! The connector opens one connection (subprotocol `mcp` offered, configured headers such
//! as `Authorization` on the upgrade, rustls with verification on); the supervisor does the
//! rest. Pings keep idle connections alive, and a ping not answered within
//! `direct_clients.websocket.pong_timeout` means the connection is dead. A message over the
//! size limit is answered with `too_large` and the connection stays up (frames far over it
//! end the connection: the limit that protects memory). On shutdown: close 1000.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as Frame, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::error_chain;
use super::supervisor::{ConnectError, Enforce, Inbound, Keepalive, SendError};
use crate::telemetry::redact;
use crate::wire::id_scan::IdScanner;
use crate::wire::Message;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Frames up to this multiple of the message limit are read (and answered `too_large`)
/// rather than ending the connection.
const OVERSIZE_TOLERANCE: usize = 4;

/// How to open a connection to the server.
pub struct Connector {
    pub name: String,
    pub url: String,
    /// Extra headers on the upgrade request (values may be secrets).
    pub headers: BTreeMap<String, String>,
    pub max_message_size: usize,
    pub connect_timeout: Duration,
    pub tls: crate::config::TlsConfig,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
}

pub struct Writer {
    sink: SplitSink<Socket, Frame>,
}

pub struct Reader {
    name: String,
    stream: SplitStream<Socket>,
    max: usize,
}

impl Connector {
    pub(crate) fn keepalive(&self) -> Keepalive {
        Keepalive {
            every: self.ping_interval,
            deadline: self.pong_timeout,
            enforce: Enforce::Always,
        }
    }

    pub(crate) async fn connect(&self) -> Result<(Writer, Reader), ConnectError> {
        let shown = redact::url(&self.url);
        let mut req = self.url.as_str().into_client_request().map_err(|e| {
            ConnectError::Permanent(format!("'{shown}' is not a usable WebSocket URL: {}", e))
        })?;
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("mcp"));
        for (name, value) in super::header_map(&self.name, &self.headers) {
            if let Some(name) = name {
                req.headers_mut().insert(name, value);
            }
        }
        let limit = self.max_message_size.saturating_mul(OVERSIZE_TOLERANCE);
        let config = WebSocketConfig::default()
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit));
        let tls =
            crate::net::tls::client_config(&self.tls, &[]).map_err(ConnectError::Permanent)?;
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            req,
            Some(config),
            true,
            Some(tokio_tungstenite::Connector::Rustls(tls)),
        );
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok((socket, _))) => {
                tracing::info!(upstream = %self.name, url = %shown, "connected");
                let (sink, stream) = socket.split();
                Ok((
                    Writer { sink },
                    Reader {
                        name: self.name.clone(),
                        stream,
                        max: self.max_message_size,
                    },
                ))
            }
            Ok(Err(e)) => Err(ConnectError::Retry(format!(
                "cannot connect to server '{}' at {shown}: {}",
                self.name,
                error_chain(&e)
            ))),
            Err(_) => Err(ConnectError::Retry(format!(
                "connecting to server '{}' at {shown} timed out after {:?}",
                self.name, self.connect_timeout
            ))),
        }
    }
}

impl Writer {
    pub(crate) async fn feed(&mut self, msg: Message) -> Result<(), SendError> {
        let frame = text_frame(msg.into_raw()).map_err(SendError::Broken)?;
        self.sink
            .feed(frame)
            .await
            .map_err(|e| SendError::Broken(e.to_string()))
    }

    pub(crate) async fn flush(&mut self) -> Result<(), String> {
        self.sink.flush().await.map_err(|e| e.to_string())
    }

    pub(crate) async fn ping(&mut self) -> Result<(), String> {
        self.sink
            .send(Frame::Ping(Bytes::new()))
            .await
            .map_err(|e| e.to_string())
    }

    pub(crate) async fn close(mut self) {
        send_close(&mut self.sink).await;
    }
}

/// Close 1000 at shutdown, bounded: a peer that stopped reading must not hold us.
pub(crate) async fn send_close(sink: &mut SplitSink<Socket, Frame>) {
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "mcp-router shutting down".into(),
    };
    let _ =
        tokio::time::timeout(Duration::from_secs(1), sink.send(Frame::Close(Some(close)))).await;
}

/// A text frame over the message's own bytes (checked, not copied).
pub(crate) fn text_frame(bytes: Bytes) -> Result<Frame, String> {
    // The router only forwards messages that parsed as JSON, so they are UTF-8.
    Utf8Bytes::try_from(bytes)
        .map(Frame::Text)
        .map_err(|_| "message is not UTF-8".to_owned())
}

impl Reader {
    pub(crate) async fn next(&mut self) -> Inbound {
        while let Some(frame) = self.stream.next().await {
            let data = match frame {
                Ok(Frame::Text(t)) => Bytes::from(t),
                Ok(Frame::Binary(b)) => b,
                Ok(Frame::Pong(_)) => return Inbound::Pong,
                Ok(Frame::Close(c)) => {
                    return Inbound::Ended(match c {
                        Some(c) => format!(
                            "server '{}' closed the connection ({}: {})",
                            self.name, c.code, c.reason
                        ),
                        None => format!("server '{}' closed the connection", self.name),
                    });
                }
                Ok(_) => continue,
                Err(e) => {
                    return Inbound::Ended(format!(
                        "server '{}' connection failed: {}",
                        self.name,
                        error_chain(&e)
                    ))
                }
            };
            if data.len() > self.max {
                let mut scan = IdScanner::new();
                scan.feed(&data);
                return Inbound::Oversized {
                    id: scan.id(),
                    len: data.len(),
                    limit: self.max,
                };
            }
            match Message::parse(data) {
                Ok(msg) => return Inbound::Message(msg),
                Err(e) => {
                    tracing::warn!(upstream = %self.name, "server sent a frame that is not a JSON-RPC message (ignored): {e}")
                }
            }
        }
        Inbound::Ended(format!("server '{}' closed the connection", self.name))
    }
}
