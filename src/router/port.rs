//! The one handle an upstream's tasks have on the router: which upstream they are, and
//! which connection (a [`Conn`], one generation per connection or process). Every call
//! goes through the core's lock and performs the effects it returns (bytes to the client
//! session that asked), so an upstream never holds a client writer. Nothing here blocks
//! on another upstream: a send waits only on the one session it is for.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use super::{Core, Delivery, Handshake, Outcome, UpstreamId};
use crate::wire::{ErrorKind, Id, Message, RouterError};

/// One connection (or process) of an upstream.
#[derive(Debug, Clone)]
pub struct Conn {
    gen: u64,
    lane: u16,
    wake: Arc<Notify>,
}

impl Conn {
    pub fn gen(&self) -> u64 {
        self.gen
    }

    pub fn lane(&self) -> u16 {
        self.lane
    }

    /// Resolves when the outbox may have something for this connection (a permit is
    /// kept if nobody waits).
    pub async fn ready(&self) {
        self.wake.notified().await
    }
}

/// Upstream `id`'s view of the core.
#[derive(Clone, Debug)]
pub struct Port {
    core: Arc<Core>,
    up: UpstreamId,
    name: Arc<str>,
    /// The endpoint lane its connections are on.
    lane: u16,
}

/// Sends each delivery to its session (a session that is gone is skipped).
pub async fn send_all(deliveries: Vec<Delivery>) {
    for d in deliveries {
        let _ = d.tx.send(d.bytes).await;
    }
}

async fn send(delivery: Option<Delivery>) {
    if let Some(d) = delivery {
        let _ = d.tx.send(d.bytes).await;
    }
}

impl Port {
    pub(super) fn new(core: Arc<Core>, up: UpstreamId, name: Arc<str>) -> Self {
        Self {
            core,
            up,
            name,
            lane: 0,
        }
    }

    /// The same upstream's handle for connections to endpoint lane `lane`.
    pub fn on_lane(&self, lane: u16) -> Port {
        Port {
            lane,
            ..self.clone()
        }
    }

    pub fn lane(&self) -> u16 {
        self.lane
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> UpstreamId {
        self.up
    }

    /// The client handshake to replay on a fresh connection, if one succeeded before.
    pub fn handshake(&self) -> Option<Handshake> {
        self.core.handshake(self.up)
    }

    /// The protocol version this upstream agreed to (handshake era).
    pub fn negotiated_version(&self) -> Option<String> {
        self.core.negotiated_version(self.up)
    }

    /// A router-owned id (replay, re-initialization).
    pub fn fresh_id(&self, what: &str) -> Id {
        self.core.fresh_id(what)
    }

    /// A connection (on this port's lane) is ready for traffic: what waited is released.
    pub fn connected(&self) -> Conn {
        let (gen, wake) = self.core.connect(self.up, self.lane);
        self.core.note_up(self.up, self.lane, Instant::now());
        Conn {
            gen,
            lane: self.lane,
            wake,
        }
    }

    /// When the latest connection on this port's lane went up (`None`: none ever did).
    pub fn up_since(&self) -> Option<Instant> {
        self.core.up_since(self.up, self.lane)
    }

    /// This upstream is about to be retried (restarted, or reconnected): counted for
    /// `mcp_router_connection_retries_total`. Returns the count, this retry included.
    pub fn count_retry(&self) -> u64 {
        self.core.count_retry(self.up)
    }

    /// A connect attempt failed (the lane's breaker counts it).
    pub fn connect_failed(&self) {
        self.core.connect_failed(self.up, self.lane)
    }

    /// Whether `conn` opened before the client's session existed and is to be opened
    /// again (its writer saw `pull` refuse it).
    pub fn renew_due(&self, conn: &Conn) -> bool {
        self.core.renew_due(self.up, conn.gen)
    }

    /// `conn` takes no new requests (it is closed once idle).
    pub fn drain(&self, conn: &Conn) {
        self.core.drain(self.up, conn.gen)
    }

    /// This lane's connections and what waits (for its pool driver).
    pub fn lane_view(&self) -> super::LaneView {
        self.core.lane_view(self.up, self.lane)
    }

    /// Notified when requests wait and every connection is busy.
    pub fn pressure(&self) -> Arc<Notify> {
        self.core.pressure(self.up, self.lane)
    }

    /// With several lanes: a connection busy this long without answering is passed over.
    pub fn set_failover_timeout(&self, timeout: std::time::Duration) {
        self.core.set_failover_timeout(self.up, timeout)
    }

    /// Namespace routing: which lanes (by tag) requests go to (before traffic starts).
    pub fn set_namespace_rules(&self, rules: Vec<super::NamespaceRule>) {
        self.core.set_namespace_rules(self.up, rules)
    }

    /// The endpoint lanes and how requests are spread over them (before traffic starts).
    pub fn set_lanes(
        &self,
        lanes: Vec<super::LaneConfig>,
        strategy: crate::resilience::balance::Strategy,
    ) {
        self.core.set_lanes(self.up, lanes, strategy)
    }

    /// Takes up to `max` messages for `conn`'s writer; `false` once `conn` is stale.
    pub fn pull(&self, conn: &Conn, out: &mut Vec<Message>, max: usize) -> bool {
        self.core.pull(self.up, conn.gen, out, max)
    }

    /// A message the server sent on `conn`.
    pub async fn deliver(&self, conn: &Conn, msg: Message) {
        send(self.core.from_upstream(self.up, conn.gen, msg)).await
    }

    /// The server sent a message over the size limit (its id, if it could be read).
    pub async fn oversized(&self, conn: &Conn, id: Option<&Id>, len: usize, limit: usize) {
        send(self.core.oversized(self.up, conn.gen, id, len, limit)).await
    }

    /// `conn` is gone: the requests it carried get `reason`; queued ones wait.
    pub async fn lost(&self, conn: &Conn, reason: &RouterError) {
        send_all(self.core.down(self.up, conn.gen, reason)).await
    }

    /// `conn` turned out to be the wrong transport: `msgs` (taken, not sent) go back to
    /// the front of the outbox for the next connection.
    pub fn hand_back(&self, conn: &Conn, msgs: Vec<Message>) {
        self.core.hand_back(self.up, conn.gen, msgs)
    }

    /// One request (`id` as sent upstream) could not be carried: its client gets `reason`,
    /// which counts as a transport failure where it says the server could not be reached
    /// (`upstream_unavailable`, `upstream_exited`, `timeout`).
    pub async fn fail_request(&self, id: &Id, reason: &RouterError) {
        let outcome = match reason.kind {
            ErrorKind::UpstreamUnavailable | ErrorKind::UpstreamExited | ErrorKind::Timeout => {
                Outcome::Failed
            }
            _ => Outcome::Void,
        };
        send(self.core.fail_request(self.up, id, reason, outcome)).await
    }

    /// One request could not be carried for a reason that says nothing about the
    /// server's health (it refused this request: HTTP 4xx): its client gets `reason`.
    pub async fn refuse_request(&self, id: &Id, reason: &RouterError) {
        send(self.core.fail_request(self.up, id, reason, Outcome::Void)).await
    }

    /// This lane cannot be used any more; once no lane can, the upstream cannot be used
    /// at all: everything waiting fails, and every later request is answered at once with
    /// `text`.
    pub async fn give_up(&self, text: String) {
        tracing::error!(upstream = %self.name, "{text}");
        let err = RouterError::new(ErrorKind::UpstreamUnavailable, text);
        send_all(self.core.lane_failed(self.up, self.lane, err)).await
    }

    /// Whether `conn` carries requests still waiting for replies.
    pub fn busy(&self, conn: &Conn) -> bool {
        self.core.busy(self.up, conn.gen)
    }
}
