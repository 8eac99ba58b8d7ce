//! The mcp-bridge gateway as an upstream (and, with the same framing, MCP servers that
//! speak the TCP binary protocol directly): the connector for the shared supervisor,
//! one connection at a time to whichever endpoint answers.
//!
//! Connecting: pick an endpoint (`endpoints.rs`), connect with the current credentials
//! (one retry with fresh OAuth2 credentials if the gateway refuses them), and start the
//! token renewer for that connection. Replay, queueing, reconnecting and keepalive are
//! the supervisor's. The writer wraps each message for its protocol and remembers which
//! request ids went out on this connection (bounded); the reader resets the connection on
//! a reply to an id never sent on it. Owns no routing decisions (those are the core's)
//! and no wire format (`wire::gateway`).
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

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::task::TaskTracker;

use super::supervisor::{self, Enforce, Keepalive};
use crate::auth::GatewayAuth;
use crate::config::{ReconnectPolicy, Secret};
use crate::router::Port;
use crate::telemetry::redact;
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

/// How to connect to the gateway (or a TCP server).
pub struct Connector {
    pub name: String,
    pub role: Role,
    pub endpoints: Vec<Endpoint>,
    /// `None` for TCP servers and mTLS-only gateways without a token.
    pub auth: Option<Arc<GatewayAuth>>,
    pub tls: Arc<rustls::ClientConfig>,
    /// The settings path named in TLS error hints (`gateway.tls`, `servers[0].tls`).
    pub tls_setting: String,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub per_message_auth: bool,
    /// Send client notifications over the TCP protocol to a gateway.
    pub tcp_notifications: bool,
    pub default_namespace: String,
    pub framing: Framing,
    pub max_message_size: usize,
    pub order: Order,
    pub said: Arc<Said>,
    /// Between connections (the gateway's `connection.reconnect`, or the server's).
    pub reconnect: ReconnectPolicy,
    /// The protocol of the endpoint that answered last (its keepalive rule).
    pub connected: Option<Protocol>,
}

impl Connector {
    /// Another connector to the same endpoints for another connection of a pool.
    pub fn duplicate(&self) -> Connector {
        Connector {
            name: self.name.clone(),
            role: self.role,
            endpoints: self.endpoints.iter().map(Endpoint::duplicate).collect(),
            auth: self.auth.clone(),
            tls: self.tls.clone(),
            tls_setting: self.tls_setting.clone(),
            connect_timeout: self.connect_timeout,
            keepalive_interval: self.keepalive_interval,
            per_message_auth: self.per_message_auth,
            tcp_notifications: self.tcp_notifications,
            default_namespace: self.default_namespace.clone(),
            framing: self.framing,
            max_message_size: self.max_message_size,
            order: self.order.clone(),
            said: self.said.clone(),
            reconnect: self.reconnect.clone(),
            connected: self.connected,
        }
    }
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

/// What a protocol's reader produced.
pub enum Inbound {
    Message(Bytes),
    /// A keepalive was answered (WebSocket pong, TCP HealthCheck).
    Pong,
    Ended(String),
}

enum ProtoWriter {
    Ws(ws::Writer),
    Tcp(tcp::Writer),
}

enum ProtoReader {
    Ws(ws::Reader),
    Tcp(tcp::Reader),
}

impl ProtoWriter {
    async fn feed(&mut self, msg: &Message, token: Option<&str>) -> Result<(), SendError> {
        match self {
            ProtoWriter::Ws(w) => w.feed(msg, token).await,
            ProtoWriter::Tcp(w) => w.feed(msg, token).await,
        }
    }
    async fn flush(&mut self) -> Result<(), String> {
        match self {
            ProtoWriter::Ws(w) => w.flush().await,
            ProtoWriter::Tcp(w) => w.flush().await,
        }
    }
    async fn keepalive(&mut self) -> Result<(), String> {
        match self {
            ProtoWriter::Ws(w) => w.keepalive().await,
            ProtoWriter::Tcp(w) => w.keepalive().await,
        }
    }
    async fn close(&mut self) {
        match self {
            ProtoWriter::Ws(w) => w.close().await,
            ProtoWriter::Tcp(w) => w.close().await,
        }
    }
}

impl ProtoReader {
    async fn next(&mut self) -> Inbound {
        match self {
            ProtoReader::Ws(r) => r.next().await,
            ProtoReader::Tcp(r) => r.next().await,
        }
    }
}

/// Request ids sent on this connection and not yet answered: a reply for any other id
/// means the peer is confused, and the connection is reset. Bounded (a gateway that never
/// answers some requests must not grow it forever): past `IN_FLIGHT_MAX` the oldest go.
#[derive(Default)]
struct InFlight {
    ids: HashSet<Id>,
    order: VecDeque<Id>,
}

const IN_FLIGHT_MAX: usize = 4096;

impl InFlight {
    fn insert(&mut self, id: Id) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.ids.len() > IN_FLIGHT_MAX {
            match self.order.pop_front() {
                Some(old) => {
                    self.ids.remove(&old);
                }
                None => break,
            }
        }
        // Answered ids leave `ids` at once and `order` lazily.
        if self.order.len() > 2 * IN_FLIGHT_MAX {
            let ids = &self.ids;
            self.order.retain(|i| ids.contains(i));
        }
    }

    fn remove(&mut self, id: &Id) -> bool {
        self.ids.remove(id)
    }
}

type Shared = Arc<Mutex<InFlight>>;

fn lock(set: &Shared) -> std::sync::MutexGuard<'_, InFlight> {
    set.lock().unwrap_or_else(|p| p.into_inner())
}

/// Log-once flags for the gateway's quirks (kept across connections).
#[derive(Default)]
pub struct Said {
    intro: AtomicBool,
    notifications_skipped: AtomicBool,
    batches_refused: AtomicBool,
}

impl Said {
    fn once(flag: &AtomicBool) -> bool {
        !flag.swap(true, Ordering::Relaxed)
    }
}

/// The writing side of one connection: decides per message whether and how it goes.
pub struct Writer {
    name: String,
    role: Role,
    proto: ProtoWriter,
    in_flight: Shared,
    /// Sent with every message (WebSocket envelope; TCP with `per_message_auth`).
    token: Option<String>,
    /// The renewer's latest OAuth2 token.
    token_rx: Option<tokio::sync::watch::Receiver<Option<Secret>>>,
    /// Whether client notifications go on this connection.
    notifications: bool,
    said: Arc<Said>,
    renewer: Option<tokio::task::AbortHandle>,
}

/// The reading side of one connection.
pub struct Reader {
    url: String,
    proto: ProtoReader,
    in_flight: Shared,
    max: usize,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}

impl Connector {
    pub(crate) fn keepalive(&self) -> Keepalive {
        let tcp = self.connected == Some(Protocol::Tcp);
        Keepalive {
            every: self.keepalive_interval,
            deadline: self.keepalive_interval,
            // The gateway handles one message at a time and reads no ping meanwhile; its
            // TCP frontend never answers HealthCheck at all.
            enforce: if tcp {
                Enforce::WhenIdleAfterFirstPong
            } else {
                Enforce::WhenIdle
            },
        }
    }

    pub(crate) async fn connect(
        &mut self,
        _port: &Port,
        tracker: &TaskTracker,
    ) -> Result<(Writer, Reader), supervisor::ConnectError> {
        if self.role == Role::Gateway && Said::once(&self.said.intro) {
            tracing::info!(upstream = %self.name, "through the mcp-bridge gateway, server notifications (progress, logs, list changes) and server requests (sampling, elicitation, roots) are not delivered: the gateway does not forward them");
        }
        let mut failures = Vec::new();
        for i in self.order.attempts() {
            let shown = redact::url(&self.endpoints[i].url);
            match self.connect_one(i).await {
                Ok((proto_w, proto_r, token)) => {
                    tracing::info!(upstream = %self.name, url = %shown, "connected");
                    self.order.remember(i);
                    self.connected = Some(self.endpoints[i].protocol);
                    return Ok(self.halves(i, proto_w, proto_r, token, tracker));
                }
                Err(e) => {
                    tracing::debug!(upstream = %self.name, url = %shown, "connect failed: {e}");
                    failures.push(format!("{shown}: {e}"));
                }
            }
        }
        Err(supervisor::ConnectError::Retry(format!(
            "cannot connect to {}",
            failures.join("; ")
        )))
    }

    fn halves(
        &self,
        endpoint: usize,
        proto: ProtoWriter,
        reader: ProtoReader,
        token: Option<Secret>,
        tracker: &TaskTracker,
    ) -> (Writer, Reader) {
        let notifications = match (self.role, self.endpoints[endpoint].protocol) {
            (Role::Gateway, Protocol::Tcp) => self.tcp_notifications,
            _ => true,
        };
        // An OAuth2 token is renewed before it expires, off the message path (a slow
        // token endpoint must not hold up writes); envelopes then carry the current one.
        let (token_tx, token_rx) = tokio::sync::watch::channel(None);
        let renewing = self
            .auth
            .as_ref()
            .is_some_and(|a| matches!(**a, GatewayAuth::OAuth2(_)));
        let renewer = renewing.then(|| {
            tracker
                .spawn(renew_token(
                    self.auth.clone(),
                    self.keepalive_interval,
                    token_tx,
                ))
                .abort_handle()
        });
        let in_flight: Shared = Arc::default();
        let writer = Writer {
            name: self.name.clone(),
            role: self.role,
            proto,
            in_flight: in_flight.clone(),
            token: token.map(|t| t.expose().to_owned()),
            token_rx: renewing.then_some(token_rx),
            notifications,
            said: self.said.clone(),
            renewer,
        };
        let reader = Reader {
            url: redact::url(&self.endpoints[endpoint].url),
            proto: reader,
            in_flight,
            max: self.max_message_size,
        };
        (writer, reader)
    }

    async fn connect_one(
        &self,
        index: usize,
    ) -> Result<(ProtoWriter, ProtoReader, Option<Secret>), String> {
        let token = self.token().await?;
        match self.open(index, token.as_ref()).await {
            Ok((w, r)) => Ok((w, r, token)),
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
                let (w, r) = self
                    .open(index, Some(&fresh))
                    .await
                    .map_err(ConnectError::text)?;
                Ok((w, r, Some(fresh)))
            }
            Err(e) => Err(e.text()),
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
    ) -> Result<(ProtoWriter, ProtoReader), ConnectError> {
        let ep = &self.endpoints[index];
        match ep.protocol {
            Protocol::WebSocket => ws::connect(
                &ep.url,
                token,
                self.tls.clone(),
                self.connect_timeout,
                self.max_message_size.saturating_mul(4),
                Arc::from(self.default_namespace.as_str()),
            )
            .await
            .map(|(w, r)| (ProtoWriter::Ws(w), ProtoReader::Ws(r))),
            Protocol::Tcp => tcp::connect(tcp::Settings {
                endpoint: ep,
                tls: ep.tls.then(|| self.tls.clone()),
                tls_setting: &self.tls_setting,
                timeout: self.connect_timeout,
                framing: self.framing,
                // The protocol's own limit: a frame over `local.max_message_size` but
                // within it is read and answered `too_large`; the connection stays.
                max_payload: crate::wire::gateway::mcpb::DEFAULT_MAX_PAYLOAD,
                per_message_auth: self.per_message_auth,
                default_namespace: Arc::from(self.default_namespace.as_str()),
            })
            .await
            .map(|(w, r)| (ProtoWriter::Tcp(w), ProtoReader::Tcp(r))),
        }
    }
}

impl Writer {
    /// Feeds one message (not flushed). Errors only when the connection is broken; a
    /// message that cannot go alone is refused (its requests get an error).
    pub(crate) async fn feed(&mut self, msg: Message) -> Result<(), supervisor::SendError> {
        use supervisor::SendError as E;
        if let Some(rx) = &mut self.token_rx {
            if rx.has_changed().unwrap_or(false) {
                self.token = rx
                    .borrow_and_update()
                    .as_ref()
                    .map(|t| t.expose().to_owned());
            }
        }
        match msg.kind() {
            Kind::Notification if !self.notifications => {
                if Said::once(&self.said.notifications_skipped) {
                    tracing::warn!(upstream = %self.name, method = ?msg.method(), "client notifications are not sent over the gateway's TCP protocol: its handler closes the connection on a message without an id (set gateway.tcp_notifications: true for a gateway that accepts them)");
                }
                return Ok(());
            }
            Kind::Batch if self.role == Role::Gateway => {
                if Said::once(&self.said.batches_refused) {
                    tracing::warn!(upstream = %self.name, "the gateway cannot carry JSON-RPC batches; each request in one gets an error");
                }
                let ids = msg.items().iter().filter_map(|i| i.id.clone()).collect();
                return Err(E::Refused {
                    ids,
                    error: RouterError::new(
                        ErrorKind::Unsupported,
                        "JSON-RPC batches cannot be sent through the mcp-bridge gateway; send the requests one by one",
                    ),
                });
            }
            _ => {}
        }
        let request_id = (msg.kind() == Kind::Request)
            .then(|| msg.id().cloned())
            .flatten();
        if let Some(id) = &request_id {
            lock(&self.in_flight).insert(id.clone());
        }
        match self.proto.feed(&msg, self.token.as_deref()).await {
            Ok(()) => Ok(()),
            Err(SendError::Io(e)) => Err(E::Broken(e)),
            Err(SendError::TooLarge(text)) => {
                if let Some(id) = &request_id {
                    lock(&self.in_flight).remove(id);
                }
                Err(E::Refused {
                    ids: request_id.into_iter().collect(),
                    error: RouterError::new(ErrorKind::TooLarge, text),
                })
            }
        }
    }

    pub(crate) async fn flush(&mut self) -> Result<(), String> {
        self.proto.flush().await
    }

    pub(crate) async fn ping(&mut self) -> Result<(), String> {
        self.proto.keepalive().await
    }

    pub(crate) async fn close(mut self) {
        self.proto.close().await;
    }
}

impl Reader {
    /// The next message, or why the connection ended (or must be reset).
    pub(crate) async fn next(&mut self) -> supervisor::Inbound {
        use supervisor::Inbound as I;
        let bytes = match self.proto.next().await {
            Inbound::Ended(why) => return I::Ended(format!("{} {why}", self.url)),
            Inbound::Pong => return I::Pong,
            Inbound::Message(b) => b,
        };
        if bytes.len() > self.max {
            let mut scan = crate::wire::id_scan::IdScanner::new();
            scan.feed(&bytes);
            let id = scan.id();
            if let Some(id) = &id {
                lock(&self.in_flight).remove(id);
            }
            return I::Oversized {
                id,
                len: bytes.len(),
                limit: self.max,
            };
        }
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                return I::Ended(format!(
                    "{} sent a payload that is not a JSON-RPC message ({e}); connection reset",
                    self.url
                ))
            }
        };
        if msg.kind() == Kind::Response {
            if let Some(id) = msg.id() {
                if !lock(&self.in_flight).remove(id) {
                    return I::Ended(format!("{} answered id {id}, which was never sent on this connection; connection reset", self.url));
                }
            }
        }
        I::Message(msg)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_ids_are_bounded_and_answered_ones_leave() {
        let mut f = InFlight::default();
        for n in 0..IN_FLIGHT_MAX + 10 {
            f.insert(Id::router_owned(&format!("q{n}")));
        }
        assert_eq!(f.ids.len(), IN_FLIGHT_MAX);
        assert!(!f.remove(&Id::router_owned("q0")), "the oldest went");
        assert!(f.remove(&Id::router_owned(&format!("q{}", IN_FLIGHT_MAX + 9))));
        for n in 0..3 * IN_FLIGHT_MAX {
            let id = Id::router_owned(&format!("r{n}"));
            f.insert(id.clone());
            f.remove(&id);
        }
        assert!(f.order.len() <= 2 * IN_FLIGHT_MAX + 1, "{}", f.order.len());
    }
}
