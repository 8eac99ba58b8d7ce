//! A WebSocket MCP server (`ws://`, `wss://`): one JSON-RPC message per text frame.
//!
//! The supervisor owns the connection for its whole life: connect (subprotocol `mcp`
//! offered, configured headers such as `Authorization` on the upgrade, rustls with
//! verification on), replay the client's handshake on a new connection (reply swallowed),
//! flush what queued meanwhile, then write the client's messages while a separate task
//! reads frames (so a server that stops reading can't stop us reading it). Pings keep idle
//! connections alive and detect dead ones. When the connection drops, the requests it
//! carried get an error and it is re-established with backoff. On shutdown: close 1000.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use tracing::Instrument;

use super::error_chain;
use super::reconnect::{connection_lost, End, Pacing};
use super::stdio::Links;
use crate::config::ReconnectPolicy;
use crate::router::{Router, UpstreamDecision};
use crate::wire::Message;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Everything a WebSocket supervisor needs.
pub struct WsUpstream {
    pub name: String,
    pub url: String,
    /// Extra headers on the upgrade request (values may be secrets).
    pub headers: BTreeMap<String, String>,
    pub reconnect: ReconnectPolicy,
    pub max_message_size: usize,
    pub connect_timeout: Duration,
    pub tls: crate::config::TlsConfig,
    pub ping_interval: Duration,
    pub request_timeout: Duration,
}

impl WsUpstream {
    /// Runs until shutdown or until the server can no longer be reached.
    pub async fn run(self, mut links: Links) {
        let mut pacing = Pacing::new(&self.name, &self.reconnect);
        loop {
            let started = Instant::now();
            let end = tokio::select! {
                _ = links.shutdown.cancelled() => End::Shutdown,
                c = self.connect() => match c {
                    Ok(socket) => self.connection(socket, &mut links).await,
                    Err(e) => End::Lost(e),
                },
            };
            let End::Lost(reason) = end else { return };
            if !pacing.wait(started, &reason, &links).await {
                return;
            }
        }
    }

    async fn connect(&self) -> Result<Socket, String> {
        let mut req = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("'{}' is not a usable WebSocket URL: {e}", self.url))?;
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("mcp"));
        for (name, value) in super::header_map(&self.name, &self.headers) {
            if let Some(name) = name {
                req.headers_mut().insert(name, value);
            }
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size));
        let tls = crate::net::tls::client_config(&self.tls, &[])?;
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            req,
            Some(config),
            true,
            Some(tokio_tungstenite::Connector::Rustls(tls)),
        );
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok((socket, _))) => {
                tracing::info!(upstream = %self.name, url = %self.url, "connected");
                Ok(socket)
            }
            Ok(Err(e)) => Err(format!(
                "cannot connect to server '{}' at {}: {}",
                self.name,
                self.url,
                error_chain(&e)
            )),
            Err(_) => Err(format!(
                "connecting to server '{}' at {} timed out after {:?}",
                self.name, self.url, self.connect_timeout
            )),
        }
    }

    /// One connection, from connect to loss.
    async fn connection(&self, socket: Socket, links: &mut Links) -> End {
        let (mut sink, mut stream) = socket.split();
        if let Some(hs) = links.router.handshake() {
            match self.replay(&mut sink, &mut stream, hs).await {
                Ok(()) => {
                    tracing::info!(upstream = %self.name, "client session replayed on the new connection")
                }
                Err(e) => return End::Lost(format!("session replay failed: {e}")),
            }
        }
        let reader = tokio::spawn(
            read_frames(stream, links.router.clone(), links.to_client.clone())
                .instrument(tracing::info_span!("ws_reader", upstream = %self.name)),
        );
        let mut reader = std::pin::pin!(reader);
        let (gen, queued) = links.router.upstream_up();
        let mut result = async {
            for msg in queued {
                sink.feed(text_frame(msg.into_raw())?)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            sink.flush().await.map_err(|e| e.to_string())
        }
        .await;
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.tick().await;
        let reason = loop {
            if let Err(e) = &result {
                break format!("writing to server '{}' failed: {e}", self.name);
            }
            tokio::select! {
                _ = links.shutdown.cancelled() => {
                    let close = CloseFrame { code: CloseCode::Normal, reason: "mcp-router shutting down".into() };
                    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Frame::Close(Some(close)))).await;
                    reader.abort();
                    return End::Shutdown;
                }
                r = &mut reader => {
                    break match r {
                        Ok(why) => format!("server '{}' {why}", self.name),
                        Err(_) => format!("server '{}' connection reader stopped", self.name),
                    };
                }
                _ = ping.tick() => {
                    result = sink.send(Frame::Ping(Bytes::new())).await.map_err(|e| e.to_string());
                }
                out = links.from_router.recv() => {
                    let Some(out) = out else {
                        reader.abort();
                        return End::Shutdown;
                    };
                    result = async {
                        let mut next = Some(out);
                        while let Some(out) = next {
                            if out.gen == gen {
                                sink.feed(text_frame(out.msg.into_raw())?).await.map_err(|e| e.to_string())?;
                            }
                            next = links.from_router.try_recv().ok();
                        }
                        sink.flush().await.map_err(|e| e.to_string())
                    }
                    .await;
                }
            }
        };
        reader.abort();
        connection_lost(&self.name, reason, links).await
    }

    /// Sends the client's `initialize` (with our own id) and `initialized` on a new
    /// connection; the reply is swallowed. Frames that arrive meanwhile are dropped: the
    /// client has no requests on this connection yet.
    async fn replay(
        &self,
        sink: &mut SplitSink<Socket, Frame>,
        stream: &mut SplitStream<Socket>,
        hs: crate::router::Handshake,
    ) -> Result<(), String> {
        let id = super::replay_id();
        let init = hs.initialize.with_id(&id);
        sink.send(text_frame(init.into_raw())?)
            .await
            .map_err(|e| e.to_string())?;
        let wait = async {
            while let Some(frame) = stream.next().await {
                let Ok(Frame::Text(text)) = frame else {
                    continue;
                };
                if let Some(outcome) = super::replay_reply(&id, Bytes::from(text)) {
                    return outcome;
                }
            }
            Err("the connection closed during the replay".to_owned())
        };
        super::await_replay(self.request_timeout, wait).await?;
        if let Some(initialized) = hs.initialized {
            sink.send(text_frame(initialized.into_raw())?)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A text frame over the message's own bytes (checked, not copied).
pub(crate) fn text_frame(bytes: Bytes) -> Result<Frame, String> {
    // The router only forwards messages that parsed as JSON, so they are UTF-8.
    Utf8Bytes::try_from(bytes)
        .map(Frame::Text)
        .map_err(|_| "message is not UTF-8".to_owned())
}

/// Reads frames until the connection ends; returns why it ended.
async fn read_frames(
    mut stream: SplitStream<Socket>,
    router: Arc<Router>,
    to_client: tokio::sync::mpsc::Sender<Bytes>,
) -> String {
    while let Some(frame) = stream.next().await {
        let data = match frame {
            Ok(Frame::Text(t)) => Bytes::from(t),
            Ok(Frame::Binary(b)) => b,
            Ok(Frame::Close(c)) => {
                return match c {
                    Some(c) => format!("closed the connection ({}: {})", c.code, c.reason),
                    None => "closed the connection".into(),
                };
            }
            Ok(_) => continue,
            Err(e) => return format!("connection failed: {}", error_chain(&e)),
        };
        match Message::parse(data) {
            Ok(msg) => {
                if let UpstreamDecision::Deliver(bytes) = router.from_upstream(msg) {
                    if to_client.send(bytes).await.is_err() {
                        return "client is gone".into();
                    }
                }
            }
            Err(e) => {
                tracing::warn!("server sent a frame that is not a JSON-RPC message (ignored): {e}")
            }
        }
    }
    "closed the connection".into()
}
