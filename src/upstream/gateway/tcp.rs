//! The TCP binary protocol on one connection: connect (TLS for `tcps://`/`tcp+tls://`),
//! negotiate the version (a bounded wait for the ack: the gateway's running frontend
//! never sends one), then MCPB frames both ways (`wire::gateway::mcpb`, or the Go
//! router's 16-byte variant with `framing: legacy`, whose Request and Response frames
//! carry the WebSocket envelope rather than bare JSON-RPC, as that router's code does).
//! Owns the stream halves; the lifecycle is in `gateway/mod.rs`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite};
use tokio_util::either::Either;

use super::endpoints::Endpoint;
use super::{ConnectError, Inbound, SendError};
use crate::upstream::error_chain;
use crate::wire::gateway::envelope;
use crate::wire::gateway::legacy::LegacyCodec;
use crate::wire::gateway::mcpb::{self, Frame, FrameError, FrameType, McpbCodec};
use crate::wire::Message;

type Stream = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

/// How long the first connection to an endpoint waits for a VersionAck. The gateway's
/// running TCP frontend never sends one; after one silent wait the endpoint is marked and
/// later connections go on at once.
const VERSION_ACK_WAIT: Duration = Duration::from_secs(2);

/// Which framing the endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The gateway's 12-byte "MCPB" header (the default).
    Mcpb,
    /// The original Go router's 16-byte "MCP\0" header, which the gateway rejects; only
    /// for peers built against that router.
    Legacy,
}

/// One codec type over both framings, so the stream types stay concrete.
pub enum Codec {
    Mcpb(McpbCodec),
    Legacy(LegacyCodec),
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = FrameError;
    fn decode(&mut self, src: &mut bytes::BytesMut) -> Result<Option<Frame>, FrameError> {
        match self {
            Codec::Mcpb(c) => c.decode(src),
            Codec::Legacy(c) => c.decode(src),
        }
    }
}

impl Encoder<Frame> for Codec {
    type Error = FrameError;
    fn encode(&mut self, item: Frame, dst: &mut bytes::BytesMut) -> Result<(), FrameError> {
        match self {
            Codec::Mcpb(c) => c.encode(item, dst),
            Codec::Legacy(c) => c.encode(item, dst),
        }
    }
}

impl Framing {
    fn codec(self, max: usize) -> Codec {
        match self {
            Framing::Mcpb => Codec::Mcpb(McpbCodec::new(max)),
            Framing::Legacy => Codec::Legacy(LegacyCodec::new(max)),
        }
    }
}

pub struct Writer {
    sink: FramedWrite<WriteHalf<Stream>, Codec>,
    framing: Framing,
    default_namespace: Arc<str>,
    max_payload: usize,
    /// Send `{"auth_token","message"}` instead of bare JSON-RPC.
    per_message_auth: bool,
}

pub struct Reader {
    frames: FramedRead<ReadHalf<Stream>, Codec>,
    framing: Framing,
}

pub struct Settings<'a> {
    pub endpoint: &'a Endpoint,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub tls_setting: &'a str,
    pub timeout: Duration,
    pub framing: Framing,
    pub max_payload: usize,
    pub per_message_auth: bool,
    pub default_namespace: Arc<str>,
}

pub async fn connect(s: Settings<'_>) -> Result<(Writer, Reader), ConnectError> {
    let ep = s.endpoint;
    let open = async {
        let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", ep.host, ep.port))?;
        let _ = tcp.set_nodelay(true);
        let stream: Stream = match &s.tls {
            None => Either::Left(tcp),
            Some(config) => {
                let name = ServerName::try_from(ep.host.clone())
                    .map_err(|_| format!("'{}' is not a valid TLS server name", ep.host))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        let text = format!("TLS handshake failed: {}", error_chain(&e));
                        match crate::net::tls::explain(&text, s.tls_setting) {
                            Some(hint) => format!("{text} ({hint})"),
                            None => text,
                        }
                    })?;
                Either::Right(tls)
            }
        };
        Ok::<_, String>(stream)
    };
    let stream = match tokio::time::timeout(s.timeout, open).await {
        Ok(r) => r.map_err(ConnectError::Other)?,
        Err(_) => {
            return Err(ConnectError::Other(format!(
                "timed out after {:?} (gateway.connection.timeout_ms)",
                s.timeout
            )))
        }
    };
    let (read, write) = tokio::io::split(stream);
    let mut writer = Writer {
        sink: FramedWrite::new(write, s.framing.codec(s.max_payload)),
        framing: s.framing,
        default_namespace: s.default_namespace.clone(),
        max_payload: s.max_payload,
        per_message_auth: s.per_message_auth,
    };
    let mut reader = Reader {
        frames: FramedRead::new(read, s.framing.codec(s.max_payload)),
        framing: s.framing,
    };
    if s.framing == Framing::Mcpb {
        // With TLS 1.3 a refused client certificate is only reported here, at the first
        // read after the handshake: explain it like a handshake failure.
        negotiate(ep, &mut writer, &mut reader)
            .await
            .map_err(|e| match e {
                ConnectError::Other(text) => match crate::net::tls::explain(&text, s.tls_setting) {
                    Some(hint) => ConnectError::Other(format!("{text} ({hint})")),
                    None => ConnectError::Other(text),
                },
                other => other,
            })?;
    }
    Ok((writer, reader))
}

/// Sends VersionNegotiation and waits (boundedly) for the ack. An Error frame in answer
/// means the gateway refused us; silence means the running frontend, which never acks:
/// go on at version 1.
async fn negotiate(ep: &Endpoint, w: &mut Writer, r: &mut Reader) -> Result<(), ConnectError> {
    w.sink
        .send(Frame::version_negotiation())
        .await
        .map_err(|e| ConnectError::Other(format!("writing version negotiation failed: {e}")))?;
    if ep.skips_version_ack() {
        return Ok(());
    }
    match tokio::time::timeout(VERSION_ACK_WAIT, r.frames.next()).await {
        Err(_) => {
            ep.mark_no_version_ack();
            tracing::debug!(url = %ep.url, "no VersionAck within {VERSION_ACK_WAIT:?}; the gateway's TCP frontend does not send one: going on at version 1");
            Ok(())
        }
        Ok(Some(Ok(frame))) => match frame.kind {
            FrameType::VersionAck => {
                let agreed = mcpb::parse_version_ack(&frame.payload);
                tracing::debug!(url = %ep.url, ?agreed, "version negotiated");
                match agreed {
                    Some(1) | None => Ok(()),
                    Some(v) => Err(ConnectError::Other(format!(
                        "the gateway agreed to protocol version {v}, but only version 1 is supported"
                    ))),
                }
            }
            FrameType::Error => Err(ConnectError::Other(format!(
                "the gateway refused the connection: {}",
                frame.error_text()
            ))),
            other => Err(ConnectError::Other(format!(
                "the gateway answered version negotiation with a {other:?} frame"
            ))),
        },
        Ok(Some(Err(e))) => Err(ConnectError::Other(format!(
            "bad frame during version negotiation: {e}"
        ))),
        Ok(None) => Err(ConnectError::Other(
            "the gateway closed the connection during version negotiation".into(),
        )),
    }
}

impl Writer {
    pub async fn feed(&mut self, msg: &Message, token: Option<&str>) -> Result<(), SendError> {
        let frame = match (self.framing, token) {
            (Framing::Legacy, _) => {
                let ns = envelope::namespace(msg.method(), &self.default_namespace);
                Frame::request(envelope::wrap(
                    msg.raw(),
                    msg.id(),
                    ns,
                    token,
                    SystemTime::now(),
                ))
            }
            (Framing::Mcpb, Some(token)) if self.per_message_auth => {
                Frame::request_with_token(token, msg.raw())
            }
            (Framing::Mcpb, _) => Frame::request(msg.raw().clone()),
        };
        if frame.payload.len() > self.max_payload {
            return Err(SendError::TooLarge(format!(
                "this message is {} bytes, over the TCP protocol's frame limit of {} bytes",
                frame.payload.len(),
                self.max_payload
            )));
        }
        self.sink
            .feed(frame)
            .await
            .map_err(|e| SendError::Io(e.to_string()))
    }

    pub async fn flush(&mut self) -> Result<(), String> {
        self.sink.flush().await.map_err(|e| e.to_string())
    }

    pub async fn keepalive(&mut self) -> Result<(), String> {
        self.sink
            .send(Frame::health_check())
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            SinkExt::<Frame>::close(&mut self.sink),
        )
        .await;
    }
}

impl Reader {
    pub async fn next(&mut self) -> Inbound {
        loop {
            let frame = match self.frames.next().await {
                None => return Inbound::Ended("closed the connection".into()),
                Some(Err(FrameError::Io(e))) => {
                    return Inbound::Ended(format!("connection failed: {}", error_chain(&e)))
                }
                Some(Err(e)) => {
                    return Inbound::Ended(format!("sent a bad frame ({e}); connection reset"))
                }
                Some(Ok(f)) => f,
            };
            match frame.kind {
                // A gateway answers in Response frames; a TCP MCP server may also send
                // its own requests and notifications, which travel as Request frames.
                FrameType::Response | FrameType::Request if self.framing == Framing::Legacy => {
                    return match envelope::unwrap(frame.payload) {
                        Ok(envelope::Incoming::Payload(p) | envelope::Incoming::Bare(p)) => {
                            Inbound::Message(p)
                        }
                        Err(e) => Inbound::Ended(format!(
                            "sent a frame that is not a gateway envelope ({e}); connection reset"
                        )),
                    };
                }
                FrameType::Response | FrameType::Request => return Inbound::Message(frame.payload),
                FrameType::Error => {
                    tracing::warn!("the gateway reported an error: {}", frame.error_text());
                }
                // The handler answers our HealthCheck with one: the peer is alive.
                FrameType::HealthCheck => return Inbound::Pong,
                FrameType::VersionAck | FrameType::VersionNegotiation | FrameType::Control => {
                    tracing::trace!(kind = ?frame.kind, "control frame");
                }
            }
        }
    }
}
