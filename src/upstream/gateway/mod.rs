//! The mcp-bridge gateway as an upstream (and, with the same framing, MCP servers that
//! speak the TCP binary protocol directly): one supervisor owning one connection at a
//! time to whichever endpoint answers.
//!
//! Lifecycle of a connection: pick an endpoint (`endpoints.rs`), connect with the current
//! credentials (one retry with fresh OAuth2 credentials if the gateway refuses them),
//! replay the client's handshake (reply swallowed), release the requests that queued
//! meanwhile in FIFO order, then write client messages while a separate task reads
//! replies. A lost connection fails exactly the requests it carried and is re-established
//! with backoff; queued requests wait in the router's outbox. Owns no routing decisions
//! (those are `router`'s) and no wire format (`wire::gateway`).
//!
//! Where the gateway departs from what a client expects, this module adapts and says so
//! once in the log: it never forwards server notifications or server→client requests (so
//! nothing waits for them); its TCP handler closes the connection on a message without an
//! id (so notifications are not sent over TCP unless `gateway.tcp_notifications: true`);
//! JSON-RPC batches cannot be carried (each request in one gets an error).

pub mod endpoints;
pub mod setup;
pub mod tcp;
pub mod ws;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::Instrument;

use super::reconnect::{connection_lost, End, Pacing};
use super::stdio::Links;
use crate::auth::GatewayAuth;
use crate::config::{ReconnectPolicy, Secret};
use crate::router::{Router, UpstreamDecision};
use crate::wire::{ErrorKind, Id, Kind, Message, RouterError};
use endpoints::{Endpoint, Order, Protocol};
pub use tcp::Framing;

/// What is at the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The mcp-bridge gateway: envelopes on WebSocket, its quirks handled.
    Gateway,
    /// An MCP server speaking the TCP binary framing itself: every message both ways.
    Server,
}

/// Everything a gateway supervisor needs.
pub struct GatewayUpstream {
    pub name: String,
    pub role: Role,
    pub endpoints: Vec<Endpoint>,
    pub protocol_preference: Protocol,
    pub auto_select: bool,
    /// `None` for TCP servers and mTLS-only gateways without a token.
    pub auth: Option<Arc<GatewayAuth>>,
    pub tls: Arc<rustls::ClientConfig>,
    /// The settings path named in TLS error hints (`gateway.tls`, `servers[0].tls`).
    pub tls_setting: String,
    pub reconnect: ReconnectPolicy,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub request_timeout: Duration,
    pub per_message_auth: bool,
    /// Send client notifications over the TCP protocol to a gateway.
    pub tcp_notifications: bool,
    pub default_namespace: String,
    pub framing: Framing,
    pub max_message_size: usize,
}

/// Why a connection attempt failed.
pub enum ConnectError {
    /// The gateway refused the credentials: worth one retry with fresh ones.
    AuthRejected(String),
    Other(String),
}

impl ConnectError {
    fn text(self) -> String {
        match self {
            ConnectError::AuthRejected(t) | ConnectError::Other(t) => t,
        }
    }
}

/// Why one message could not be written.
pub enum SendError {
    /// Only this message cannot go: answer its request, keep the connection.
    TooLarge(String),
    /// The connection is broken.
    Io(String),
}

/// What a connection's reader produced.
pub enum Inbound {
    Message(Bytes),
    Ended(String),
}

enum Writer {
    Ws(ws::Writer),
    Tcp(tcp::Writer),
}

enum Reader {
    Ws(ws::Reader),
    Tcp(tcp::Reader),
}

impl Writer {
    async fn feed(&mut self, msg: &Message, token: Option<&str>) -> Result<(), SendError> {
        match self {
            Writer::Ws(w) => w.feed(msg, token).await,
            Writer::Tcp(w) => w.feed(msg, token).await,
        }
    }
    async fn flush(&mut self) -> Result<(), String> {
        match self {
            Writer::Ws(w) => w.flush().await,
            Writer::Tcp(w) => w.flush().await,
        }
    }
    async fn keepalive(&mut self) -> Result<(), String> {
        match self {
            Writer::Ws(w) => w.keepalive().await,
            Writer::Tcp(w) => w.keepalive().await,
        }
    }
    async fn close(&mut self) {
        match self {
            Writer::Ws(w) => w.close().await,
            Writer::Tcp(w) => w.close().await,
        }
    }
}

impl Reader {
    async fn next(&mut self) -> Inbound {
        match self {
            Reader::Ws(r) => r.next().await,
            Reader::Tcp(r) => r.next().await,
        }
    }
}

/// One live connection.
struct Link {
    writer: Writer,
    reader: Reader,
    endpoint: usize,
    /// Whether client notifications go on this connection.
    notifications: bool,
    /// Sent with every message (WebSocket envelope; TCP with `per_message_auth`).
    token: Option<Secret>,
}

/// Ids sent on this connection and not yet answered: a reply for any other id means the
/// peer is confused, and the connection is reset.
type InFlight = Arc<Mutex<HashSet<Id>>>;

/// Log-once flags for the gateway's quirks.
#[derive(Default)]
struct Said {
    notifications_skipped: AtomicBool,
    batches_refused: AtomicBool,
}

impl Said {
    fn once(flag: &AtomicBool) -> bool {
        !flag.swap(true, Ordering::Relaxed)
    }
}

impl GatewayUpstream {
    /// Runs until shutdown or until the gateway can no longer be reached.
    pub async fn run(self, mut links: Links) {
        let mut pacing = Pacing::new(&self.name, &self.reconnect);
        let mut order = Order::new(&self.endpoints, self.protocol_preference, self.auto_select);
        let said = Said::default();
        if self.role == Role::Gateway {
            tracing::info!(upstream = %self.name, "through the mcp-bridge gateway, server notifications (progress, logs, list changes) and server requests (sampling, elicitation, roots) are not delivered: the gateway does not forward them");
        }
        loop {
            let started = Instant::now();
            let end = tokio::select! {
                _ = links.shutdown.cancelled() => End::Shutdown,
                c = self.connect_any(&mut order) => match c {
                    Ok(link) => self.connection(link, &mut links, &said).await,
                    Err(e) => End::Lost(e),
                },
            };
            let End::Lost(reason) = end else { return };
            if !pacing.wait(started, &reason, &links).await {
                return;
            }
        }
    }

    /// Tries the endpoints in order; the error lists why each failed.
    async fn connect_any(&self, order: &mut Order) -> Result<Link, String> {
        let mut failures = Vec::new();
        for i in order.attempts() {
            let ep = &self.endpoints[i];
            match self.connect(i).await {
                Ok(link) => {
                    tracing::info!(upstream = %self.name, url = %ep.url, "connected");
                    order.remember(i);
                    return Ok(link);
                }
                Err(e) => {
                    tracing::debug!(upstream = %self.name, url = %ep.url, "connect failed: {e}");
                    failures.push(format!("{}: {e}", ep.url));
                }
            }
        }
        Err(format!("cannot connect to {}", failures.join("; ")))
    }

    async fn connect(&self, index: usize) -> Result<Link, String> {
        let mut token = self.token().await?;
        match self.open(index, token.as_ref()).await {
            Ok(link) => return Ok(self.link(link, index, token)),
            Err(ConnectError::AuthRejected(why)) => {
                // OAuth2 tokens can be revoked or expire early: one retry with a fresh one.
                let fresh = match &self.auth {
                    Some(auth) => auth
                        .refresh_after_rejection()
                        .await
                        .map_err(|e| e.to_string())?,
                    None => None,
                };
                let Some(fresh) = fresh else { return Err(why) };
                tracing::info!(upstream = %self.name, "the gateway refused the credentials; retrying once with a fresh token");
                token = Some(fresh);
            }
            Err(e) => return Err(e.text()),
        }
        self.open(index, token.as_ref())
            .await
            .map(|link| self.link(link, index, token))
            .map_err(ConnectError::text)
    }

    fn link(
        &self,
        (writer, reader): (Writer, Reader),
        endpoint: usize,
        token: Option<Secret>,
    ) -> Link {
        let notifications = match (self.role, self.endpoints[endpoint].protocol) {
            (Role::Gateway, Protocol::Tcp) => self.tcp_notifications,
            _ => true,
        };
        Link {
            writer,
            reader,
            endpoint,
            notifications,
            token,
        }
    }

    async fn token(&self) -> Result<Option<Secret>, String> {
        match &self.auth {
            Some(auth) => auth.token().await.map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    async fn open(
        &self,
        index: usize,
        token: Option<&Secret>,
    ) -> Result<(Writer, Reader), ConnectError> {
        let ep = &self.endpoints[index];
        match ep.protocol {
            Protocol::WebSocket => ws::connect(
                &ep.url,
                token,
                self.tls.clone(),
                self.connect_timeout,
                self.max_message_size,
                Arc::from(self.default_namespace.as_str()),
            )
            .await
            .map(|(w, r)| (Writer::Ws(w), Reader::Ws(r))),
            Protocol::Tcp => tcp::connect(tcp::Settings {
                endpoint: ep,
                tls: ep.tls.then(|| self.tls.clone()),
                tls_setting: &self.tls_setting,
                timeout: self.connect_timeout,
                framing: self.framing,
                max_payload: self
                    .max_message_size
                    .min(crate::wire::gateway::mcpb::DEFAULT_MAX_PAYLOAD),
                per_message_auth: self.per_message_auth,
                default_namespace: Arc::from(self.default_namespace.as_str()),
            })
            .await
            .map(|(w, r)| (Writer::Tcp(w), Reader::Tcp(r))),
        }
    }

    /// One connection, from connect to loss.
    async fn connection(&self, mut link: Link, links: &mut Links, said: &Said) -> End {
        if let Some(hs) = links.router.handshake() {
            match self.replay(&mut link, hs).await {
                Ok(()) => {
                    tracing::info!(upstream = %self.name, "client session replayed on the new connection")
                }
                Err(e) => return End::Lost(format!("session replay failed: {e}")),
            }
        }
        let in_flight: InFlight = Arc::default();
        let Link {
            mut writer,
            reader,
            notifications,
            token,
            endpoint,
        } = link;
        let token = token.map(|t| t.expose().to_owned());
        let reader = tokio::spawn(
            read_replies(
                reader,
                links.router.clone(),
                links.to_client.clone(),
                in_flight.clone(),
            )
            .instrument(tracing::info_span!("gateway_reader", upstream = %self.name)),
        );
        let mut reader = std::pin::pin!(reader);
        // An OAuth2 token is renewed before it expires, off the message path (a slow token
        // endpoint must not hold up writes); envelopes then carry the current one.
        let (token_tx, mut token_rx) = tokio::sync::watch::channel(None);
        let renewer = links.tracker.spawn(renew_token(
            self.auth.clone(),
            self.keepalive_interval,
            token_tx,
        ));
        let mut out = Out {
            up: self,
            writer: &mut writer,
            in_flight: &in_flight,
            token,
            notifications,
            said,
            to_client: &links.to_client,
            router: &links.router,
        };
        let (gen, queued) = links.router.upstream_up();
        let mut result = async {
            for msg in queued {
                out.feed(msg).await?;
            }
            out.writer.flush().await
        }
        .await;
        let mut keepalive = tokio::time::interval(self.keepalive_interval);
        keepalive.tick().await;
        let reason = loop {
            if let Err(e) = &result {
                break format!("writing to {} failed: {e}", self.endpoints[endpoint].url);
            }
            tokio::select! {
                _ = links.shutdown.cancelled() => {
                    out.writer.close().await;
                    reader.abort();
                    renewer.abort();
                    return End::Shutdown;
                }
                r = &mut reader => {
                    break match r {
                        Ok(why) => format!("{} {why}", self.endpoints[endpoint].url),
                        Err(_) => "the connection reader stopped".to_owned(),
                    };
                }
                _ = keepalive.tick() => {
                    result = out.writer.keepalive().await;
                }
                Ok(()) = token_rx.changed() => {
                    out.token = token_rx.borrow_and_update().as_ref().map(|t| t.expose().to_owned());
                }
                msg = links.from_router.recv() => {
                    let Some(msg) = msg else {
                        reader.abort();
                        renewer.abort();
                        return End::Shutdown;
                    };
                    result = async {
                        let mut next = Some(msg);
                        while let Some(msg) = next {
                            if msg.gen == gen {
                                out.feed(msg.msg).await?;
                            }
                            next = links.from_router.try_recv().ok();
                        }
                        out.writer.flush().await
                    }
                    .await;
                }
            }
        };
        reader.abort();
        renewer.abort();
        connection_lost(&self.name, reason, links).await
    }

    /// The client's `initialize` (under our own id) and `initialized` on a new connection;
    /// the reply is swallowed.
    async fn replay(&self, link: &mut Link, hs: crate::router::Handshake) -> Result<(), String> {
        let id = super::replay_id();
        let init = hs.initialize.with_id(&id);
        let token = link.token.as_ref().map(|t| t.expose().to_owned());
        feed_or_fail(&mut link.writer, &init, token.as_deref()).await?;
        link.writer.flush().await?;
        let wait = async {
            loop {
                match link.reader.next().await {
                    Inbound::Ended(why) => {
                        return Err(format!("the connection {why} during the replay"))
                    }
                    Inbound::Message(bytes) => {
                        if let Some(outcome) = super::replay_reply(&id, bytes) {
                            return outcome;
                        }
                    }
                }
            }
        };
        super::await_replay(self.request_timeout, wait).await?;
        if let (Some(initialized), true) = (hs.initialized, link.notifications) {
            feed_or_fail(&mut link.writer, &initialized, token.as_deref()).await?;
            link.writer.flush().await?;
        }
        Ok(())
    }
}

async fn feed_or_fail(w: &mut Writer, msg: &Message, token: Option<&str>) -> Result<(), String> {
    w.feed(msg, token).await.map_err(|e| match e {
        SendError::TooLarge(t) | SendError::Io(t) => t,
    })
}

/// The writing side of one connection: decides per message whether and how it goes.
struct Out<'a> {
    up: &'a GatewayUpstream,
    writer: &'a mut Writer,
    in_flight: &'a InFlight,
    token: Option<String>,
    notifications: bool,
    said: &'a Said,
    to_client: &'a tokio::sync::mpsc::Sender<Bytes>,
    router: &'a Router,
}

impl Out<'_> {
    /// Feeds one message (not flushed). Errors only when the connection is broken; a
    /// message that cannot go alone gets its error reply here.
    async fn feed(&mut self, msg: Message) -> Result<(), String> {
        match msg.kind() {
            Kind::Notification if !self.notifications => {
                if Said::once(&self.said.notifications_skipped) {
                    tracing::warn!(upstream = %self.up.name, method = ?msg.method(), "client notifications are not sent over the gateway's TCP protocol: its handler closes the connection on a message without an id (set gateway.tcp_notifications: true for a gateway that accepts them)");
                }
                return Ok(());
            }
            Kind::Batch if self.up.role == Role::Gateway => {
                if Said::once(&self.said.batches_refused) {
                    tracing::warn!(upstream = %self.up.name, "the gateway cannot carry JSON-RPC batches; each request in one gets an error");
                }
                let err = RouterError::new(
                    ErrorKind::Unsupported,
                    "JSON-RPC batches cannot be sent through the mcp-bridge gateway; send the requests one by one",
                );
                for item in msg.items() {
                    if let Some(id) = &item.id {
                        if let Some(reply) = self.router.fail_request(id, &err) {
                            let _ = self.to_client.send(reply).await;
                        }
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        let request_id = (msg.kind() == Kind::Request)
            .then(|| msg.id().cloned())
            .flatten();
        if let Some(id) = &request_id {
            lock(self.in_flight).insert(id.clone());
        }
        match self.writer.feed(&msg, self.token.as_deref()).await {
            Ok(()) => Ok(()),
            Err(SendError::Io(e)) => Err(e),
            Err(SendError::TooLarge(text)) => {
                tracing::warn!(upstream = %self.up.name, id = ?msg.id(), method = ?msg.method(), "{text}");
                if let Some(id) = &request_id {
                    lock(self.in_flight).remove(id);
                    let err = RouterError::new(ErrorKind::TooLarge, text);
                    if let Some(reply) = self.router.fail_request(id, &err) {
                        let _ = self.to_client.send(reply).await;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Asks for the current token every `every` (a cached token costs nothing; one near
/// expiry is fetched here) and publishes changes. Ends when the connection does.
async fn renew_token(
    auth: Option<Arc<GatewayAuth>>,
    every: Duration,
    tx: tokio::sync::watch::Sender<Option<Secret>>,
) {
    // Bearer tokens and certificates do not change: nothing to renew (dropping `tx`
    // disables the writer's branch).
    let Some(auth) = auth.filter(|a| matches!(**a, GatewayAuth::OAuth2(_))) else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        match auth.token().await {
            Ok(Some(fresh)) => {
                tx.send_if_modified(|cur| {
                    let changed = cur.as_ref().map(Secret::expose) != Some(fresh.expose());
                    if changed {
                        *cur = Some(fresh);
                    }
                    changed
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("renewing the OAuth2 token failed (the next connect retries): {e}")
            }
        }
    }
}

fn lock(set: &InFlight) -> std::sync::MutexGuard<'_, HashSet<Id>> {
    set.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads replies until the connection ends; returns why it ended.
async fn read_replies(
    mut reader: Reader,
    router: Arc<Router>,
    to_client: tokio::sync::mpsc::Sender<Bytes>,
    in_flight: InFlight,
) -> String {
    loop {
        let bytes = match reader.next().await {
            Inbound::Ended(why) => return why,
            Inbound::Message(b) => b,
        };
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                return format!(
                    "sent a payload that is not a JSON-RPC message ({e}); connection reset"
                )
            }
        };
        if msg.kind() == Kind::Response {
            if let Some(id) = msg.id() {
                if !lock(&in_flight).remove(id) {
                    return format!("answered id {id}, which was never sent on this connection; connection reset");
                }
            }
        }
        if let UpstreamDecision::Deliver(bytes) = router.from_upstream(msg) {
            if to_client.send(bytes).await.is_err() {
                return "client is gone".into();
            }
        }
    }
}
