//! The routing core: decides where each message goes; never does I/O.
//!
//! One monitor for every upstream and every client session: synchronous state behind a
//! short lock that is never held across an `.await` (two directions through a child
//! process must never wait on each other; see docs/architecture.md). Its calls take
//! identities — which session a client message came from, which upstream and which
//! connection generation a server message came from — and return effects: bytes for a
//! session ([`Delivery`]) for the caller to send, and wake-ups for upstream writers (done
//! here: `Notify` never blocks). The core owns each upstream's outbox in every state, so
//! the client reader never waits on an upstream and one stuck upstream cannot hold up
//! another. Upstreams reach it only through their [`Port`]. Pass-through stays the fast
//! path: with one session the wire id is the client's id and nothing is rewritten.

mod admission;
pub mod aggregate;
mod aggregating;
mod conns;
mod dispatch;
pub mod ids;
mod namespace;
pub mod pending;
mod port;
mod reconnects;
pub mod reverse;
pub mod session;
pub mod timer;
mod upstreams;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use crate::wire::error::cancelled_notification;
use crate::wire::id::splice;
use crate::wire::{ErrorKind, Id, Kind, Message, RouterError};
pub use admission::Admission;
pub use aggregate::{ServerSetup, Setup as AggregateSetup};
pub use conns::LaneView;
pub use dispatch::{LaneConfig, Outcome};
use ids::Ids;
pub use namespace::Rule as NamespaceRule;
use pending::{NewEntry, Pending, Stage};
pub use port::{send_all, Conn, Port};
use reverse::{Origin, Reverse};
pub use session::Handshake;
use upstreams::{Link, Queued, Tracked, Upstream};

/// Which upstream (an index into the core's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamId(pub(crate) u32);

/// Which client session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub(crate) u32);

/// Limits the core enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub request_timeout: Duration,
    /// Requests waiting for an upstream that is down (the original's queue).
    pub max_queued_requests: usize,
}

/// How long a `subscriptions/listen` stream may stay open (it has no reply until it ends).
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Messages waiting for a live upstream's writer, at most (beyond, it is not reading).
pub const LIVE_OUTBOX: usize = 4096;

/// Bytes for one client session.
#[derive(Debug)]
pub struct Delivery {
    pub session: SessionId,
    pub tx: mpsc::Sender<Bytes>,
    pub bytes: Bytes,
}

/// What became of a message from a client.
#[derive(Debug)]
pub enum ClientDecision {
    /// In an upstream's outbox; its writer was woken.
    Accepted,
    /// Answer the client (an error); nothing goes upstream.
    Reply(Bytes),
    /// Nothing to do (logged).
    Drop,
}

#[derive(Debug)]
struct ClientSession {
    tx: mpsc::Sender<Bytes>,
}

#[derive(Debug)]
struct State {
    upstreams: Vec<Upstream>,
    sessions: Vec<Option<ClientSession>>,
    pending: Pending,
    reverse: Reverse,
    shutting_down: bool,
    /// Set when several servers are aggregated; `None` keeps the router byte-transparent.
    agg: Option<aggregate::Aggregate>,
    /// The router's own rate limit (`local.rate_limit`).
    rate: Option<admission::Limiter>,
    /// Requests refused for the rate so far.
    rate_limited: u64,
}

/// The routing core. Cheap to lock; never locked across an await.
#[derive(Debug)]
pub struct Core {
    limits: Limits,
    ids: Ids,
    state: Mutex<State>,
    /// Wakes the timer when a new earliest deadline appears.
    pub deadline_changed: Notify,
    /// Wakes shutdown when the last pending request is settled.
    pub idle: Notify,
}

pub(super) fn in_use(id: &Id) -> RouterError {
    RouterError::new(
        ErrorKind::InvalidRequest,
        format!("request id {id} is already in use by a request still in flight"),
    )
}

impl Core {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ids: Ids::default(),
            state: Mutex::new(State {
                upstreams: Vec::new(),
                sessions: Vec::new(),
                pending: Pending::default(),
                reverse: Reverse::default(),
                shutting_down: false,
                agg: None,
                rate: None,
                rate_limited: 0,
            }),
            deadline_changed: Notify::new(),
            idle: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the tables half-updated in a way
        // that matters more than stopping; keep serving with what is there.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an upstream; it starts down (messages for it queue).
    pub fn add_upstream(&self, name: &str) -> UpstreamId {
        let mut st = self.lock();
        st.upstreams.push(Upstream::new(name));
        UpstreamId((st.upstreams.len() - 1) as u32)
    }

    /// The handle an upstream's tasks use.
    pub fn port(self: &Arc<Self>, up: UpstreamId) -> Port {
        let name = self.lock().upstreams[up.0 as usize].name.clone();
        Port::new(self.clone(), up, name)
    }

    /// Several servers behind this router: it answers as one server (see `aggregate`).
    /// Call after adding the upstreams, in the same order as `setup.servers`.
    pub fn aggregate(&self, setup: AggregateSetup) {
        self.lock().agg = Some(aggregate::Aggregate::new(setup));
    }

    /// Name collisions aggregation resolved so far (for `config check --list-tools`).
    pub fn name_collisions(&self) -> Vec<String> {
        self.lock()
            .agg
            .as_ref()
            .map(|a| a.collisions().to_vec())
            .unwrap_or_default()
    }

    /// A client session whose bytes go to `tx`. Upstreams without one send their
    /// server-initiated messages to it.
    pub fn open_session(&self, tx: mpsc::Sender<Bytes>) -> SessionId {
        let mut st = self.lock();
        let id = SessionId(st.sessions.len() as u32);
        st.sessions.push(Some(ClientSession { tx }));
        for u in st.upstreams.iter_mut().filter(|u| u.owner.is_none()) {
            u.owner = Some(id);
        }
        id
    }

    /// The session is over: its writer is released (it ends once every sender is gone).
    pub fn close_session(&self, session: SessionId) {
        let mut st = self.lock();
        if let Some(slot) = st.sessions.get_mut(session.0 as usize) {
            *slot = None;
        }
    }

    pub fn fresh_id(&self, what: &str) -> Id {
        self.ids.fresh(what)
    }

    /// Which upstream a client message goes to. One upstream serves everything until
    /// aggregation routes by name.
    fn route(_st: &State, _msg: &Message) -> UpstreamId {
        UpstreamId(0)
    }

    /// A message from client session `session`.
    pub fn from_client(&self, session: SessionId, msg: Message, now: Instant) -> ClientDecision {
        let mut st = self.lock();
        if st.upstreams.is_empty() {
            return ClientDecision::Drop;
        }
        if st.agg.is_some() {
            return self.agg_client(&mut st, session, msg, now);
        }
        let up = Self::route(&st, &msg);
        self.client_message(&mut st, session, up, msg, now)
    }

    /// A message from client session `session` for upstream `up`.
    pub fn from_client_to(
        &self,
        session: SessionId,
        up: UpstreamId,
        msg: Message,
        now: Instant,
    ) -> ClientDecision {
        let mut st = self.lock();
        self.client_message(&mut st, session, up, msg, now)
    }

    fn client_message(
        &self,
        st: &mut State,
        session: SessionId,
        up: UpstreamId,
        msg: Message,
        now: Instant,
    ) -> ClientDecision {
        match msg.kind() {
            Kind::Request => self.client_request(st, session, up, msg, now),
            Kind::Batch => self.client_batch(st, session, up, msg, now),
            Kind::Notification => self.client_notification(st, session, up, msg),
            Kind::Response => self.client_response(st, msg),
        }
    }

    fn client_request(
        &self,
        st: &mut State,
        session: SessionId,
        up: UpstreamId,
        msg: Message,
        now: Instant,
    ) -> ClientDecision {
        let Some(id) = msg.id().cloned() else {
            return ClientDecision::Drop;
        };
        if st.shutting_down {
            let err = RouterError::new(ErrorKind::ShuttingDown, "router shutting down");
            return ClientDecision::Reply(err.to_response(Some(&id)));
        }
        if st.pending.client_has(session, &id) {
            return ClientDecision::Reply(in_use(&id).to_response(Some(&id)));
        }
        // Another session's request under the same id on this upstream (or one given up
        // on that its server may still answer): this one travels under a router-owned id.
        let key = (up, id.clone());
        let wire = if st.pending.contains(&key) || st.pending.is_abandoned(&key) {
            self.ids.fresh("rq")
        } else {
            id.clone()
        };
        let limit = self.outbox_limit(st, up);
        let u = &mut st.upstreams[up.0 as usize];
        u.session.observe_client(&msg);
        if let Link::Failed(err) = &u.link {
            return ClientDecision::Reply(err.to_response(Some(&id)));
        }
        if let Some(err) = Self::circuit_refusal(u, now) {
            return ClientDecision::Reply(err.to_response(Some(&id)));
        }
        if u.outbox.len() >= limit {
            tracing::warn!(upstream = %u.name, %id, queued = u.outbox.len(), "queue full");
            return ClientDecision::Reply(queue_full(limit, &id));
        }
        let tags = match Self::route_tags(u, &msg) {
            Ok(tags) => tags,
            Err(err) => return ClientDecision::Reply(err.to_response(Some(&id))),
        };
        let not_before = match self.rate_turn(st, up, 1, now) {
            Ok(at) => at,
            Err(err) => return ClientDecision::Reply(err.to_response(Some(&id))),
        };
        let method = msg.method().map(Into::into);
        let msg = if wire == id { msg } else { msg.with_id(&wire) };
        st.upstreams[up.0 as usize].push(Queued {
            not_before,
            tags,
            ..Queued::new(msg, Tracked::One(wire.clone()))
        });
        self.track(st, (up, wire), session, id, method, now);
        ClientDecision::Accepted
    }

    fn client_batch(
        &self,
        st: &mut State,
        session: SessionId,
        up: UpstreamId,
        msg: Message,
        now: Instant,
    ) -> ClientDecision {
        let members: Vec<(Id, Option<Box<str>>)> = msg
            .items()
            .iter()
            .filter(|i| i.kind == Kind::Request)
            .filter_map(|i| i.id.clone().map(|id| (id, i.method.clone())))
            .collect();
        // Every request member gets exactly one answer, under its own id.
        let refuse = |err: &RouterError| -> ClientDecision {
            if members.is_empty() {
                return ClientDecision::Reply(err.to_response(None));
            }
            ClientDecision::Reply(error_batch(members.iter().map(|(id, _)| (err, id))))
        };
        if st.shutting_down {
            return refuse(&RouterError::new(
                ErrorKind::ShuttingDown,
                "router shutting down",
            ));
        }
        let u = &st.upstreams[up.0 as usize];
        if !u.session.allows_batches() {
            let version = u.session.negotiated().unwrap_or("(none negotiated)");
            return refuse(&RouterError::new(
                ErrorKind::InvalidRequest,
                format!("JSON-RPC batches are not allowed in protocol version {version}; only 2025-03-26 has them"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        let clash = members.iter().find(|(id, _)| {
            !seen.insert(id.clone())
                || st.pending.client_has(session, id)
                || st.pending.contains(&(up, id.clone()))
                || st.pending.is_abandoned(&(up, id.clone()))
        });
        if let Some((clash, _)) = clash {
            let named = in_use(clash);
            let others = RouterError::new(
                ErrorKind::InvalidRequest,
                format!("batch not sent: its request id {clash} is already in use by a request still in flight"),
            );
            return ClientDecision::Reply(error_batch(
                members
                    .iter()
                    .map(|(id, _)| (if id == clash { &named } else { &others }, id)),
            ));
        }
        if let Link::Failed(err) = &u.link {
            return refuse(&err.clone());
        }
        if let Some(err) = Self::circuit_refusal(u, now) {
            return refuse(&err);
        }
        let limit = self.outbox_limit(st, up);
        if u.outbox.len() >= limit {
            return refuse(&RouterError::new(
                ErrorKind::QueueFull,
                queue_full_text(limit),
            ));
        }
        let ids: Box<[Id]> = members.iter().map(|(id, _)| id.clone()).collect();
        let not_before = match self.rate_turn(st, up, ids.len(), now) {
            Ok(at) => at,
            Err(err) => return refuse(&err),
        };
        st.upstreams[up.0 as usize].push(Queued {
            not_before,
            ..Queued::new(msg, Tracked::Many(ids))
        });
        for (id, method) in members {
            self.track(st, (up, id.clone()), session, id, method, now);
        }
        ClientDecision::Accepted
    }

    fn client_notification(
        &self,
        st: &mut State,
        session: SessionId,
        up: UpstreamId,
        mut msg: Message,
    ) -> ClientDecision {
        let mut up = up;
        let mut only_gen = None;
        if msg.method() == Some("notifications/cancelled") {
            if let Some(target) = cancelled_request_id(msg.raw()) {
                if let Some(key) = st.pending.key_of(session, &target).cloned() {
                    let entry = st.pending.remove(&key);
                    let stage = entry.as_ref().map(|e| e.stage);
                    if let Some(e) = &entry {
                        self.account(st, key.0, e, Outcome::Void);
                    }
                    self.notify_if_idle(st);
                    match stage {
                        Some(Stage::Queued) => {
                            // The server never saw it: withdraw it and tell nobody.
                            st.upstreams[key.0 .0 as usize].withdraw(&key.1);
                            return ClientDecision::Drop;
                        }
                        Some(Stage::Sent { gen }) => {
                            // The client has given up on it: no timeout error, no late
                            // reply; the connection that carried it is told.
                            up = key.0;
                            only_gen = Some(gen);
                            st.pending.abandon(key.clone(), gen);
                            if key.1 != target {
                                // It travels under a router id: the server knows it by
                                // that one (the client's may name another session's).
                                let spliced = cancelled_request(msg.raw()).and_then(|(_, span)| {
                                    Message::parse(splice(msg.raw(), span, &key.1)).ok()
                                });
                                match spliced {
                                    Some(m) => msg = m,
                                    None => return ClientDecision::Drop,
                                }
                            }
                        }
                        None => {}
                    }
                } else {
                    // Nothing of this session's is in flight under that id (answered
                    // already, or never asked): passed on, it could cancel another
                    // session's request under the same id.
                    return ClientDecision::Drop;
                }
            }
        }
        let limit = self.outbox_limit(st, up);
        let u = &mut st.upstreams[up.0 as usize];
        u.session.observe_client(&msg);
        match &u.link {
            Link::Failed(_) => ClientDecision::Drop,
            Link::Down
                if msg.method() == Some("notifications/initialized")
                    && u.session.handshake().is_some() =>
            {
                // Replayed from the session once the upstream is up; queueing it too
                // would send it twice.
                ClientDecision::Accepted
            }
            _ if only_gen.is_some_and(|g| !u.has_conn(g)) => {
                // The connection that carried the cancelled request is gone already.
                ClientDecision::Drop
            }
            _ => {
                if u.outbox.len() >= limit && only_gen.is_none() {
                    tracing::warn!(upstream = %u.name, method = ?msg.method(), "queue full: dropping client notification");
                    return ClientDecision::Drop;
                }
                if only_gen.is_none() && u.conns.len() > 1 {
                    // Each connection of a pool is its own session at the server: each
                    // hears what the client says (a renewing one replays it instead).
                    let handshake = u.session.handshake().is_some();
                    let gens: smallvec::SmallVec<[u64; 8]> = u
                        .conns
                        .iter()
                        .filter(|c| c.primed || !handshake)
                        .map(|c| c.gen)
                        .collect();
                    for gen in gens {
                        u.push(Queued {
                            only_gen: Some(gen),
                            ..Queued::new(msg.clone(), Tracked::None)
                        });
                    }
                    return ClientDecision::Accepted;
                }
                u.push(Queued {
                    only_gen,
                    ..Queued::new(msg, Tracked::None)
                });
                ClientDecision::Accepted
            }
        }
    }

    /// The client answered a server→client request: to the connection that asked, or
    /// nowhere.
    fn client_response(&self, st: &mut State, msg: Message) -> ClientDecision {
        let Some(id) = msg.id().cloned() else {
            return ClientDecision::Drop;
        };
        let Some(origin) = st.reverse.take(&id) else {
            tracing::debug!(%id, "dropping a client response to a request no server has pending");
            return ClientDecision::Drop;
        };
        let u = &mut st.upstreams[origin.upstream.0 as usize];
        if !u.has_conn(origin.gen) {
            tracing::info!(upstream = %u.name, %id, "dropping the client's answer: the server connection that asked is gone");
            return ClientDecision::Drop;
        }
        let msg = if origin.server_id == id {
            msg
        } else {
            msg.with_id(&origin.server_id)
        };
        u.push(Queued {
            only_gen: Some(origin.gen),
            ..Queued::new(msg, Tracked::None)
        });
        ClientDecision::Accepted
    }

    fn track(
        &self,
        st: &mut State,
        key: pending::Key,
        session: SessionId,
        client_id: Id,
        method: Option<Box<str>>,
        now: Instant,
    ) {
        // A listen stream (2026-07-28) is answered only when it ends: no request timeout.
        let method_is_listen = method.as_deref() == Some("subscriptions/listen");
        let timeout = if method_is_listen {
            LISTEN_TIMEOUT
        } else {
            self.limits.request_timeout
        };
        // Waiting for a pool's connection has its own bound; once sent, the rest of the
        // request's time applies (see `pull`).
        let timeout = Self::acquire_timeout(st, key.0).map_or(timeout, |a| a.min(timeout));
        let earliest = st.pending.insert(NewEntry {
            key,
            session,
            client_id,
            method,
            now,
            timeout,
        });
        if earliest {
            self.deadline_changed.notify_one();
        }
    }

    fn delivery(st: &State, session: SessionId, bytes: Bytes) -> Option<Delivery> {
        let s = st.sessions.get(session.0 as usize)?.as_ref()?;
        Some(Delivery {
            session,
            tx: s.tx.clone(),
            bytes,
        })
    }

    /// A message from connection `gen` of upstream `up`.
    pub fn from_upstream(&self, up: UpstreamId, gen: u64, msg: Message) -> Option<Delivery> {
        let mut st = self.lock();
        let name = st.upstreams[up.0 as usize].name.clone();
        match msg.kind() {
            Kind::Response => {
                let Some(id) = msg.id().cloned() else {
                    tracing::warn!(upstream = %name, "upstream sent an error with id null (it could not read something we sent); not forwarded");
                    return None;
                };
                let key = (up, id);
                match st.pending.get(&key).map(|e| e.stage) {
                    Some(Stage::Sent { gen: g }) if g == gen => {}
                    Some(_) => {
                        tracing::warn!(upstream = %name, id = %key.1, "dropping a reply from a connection that did not carry that request");
                        return None;
                    }
                    None => {
                        tracing::info!(upstream = %name, id = %key.1, "dropping a reply nobody waits for (timed out, cancelled or unknown id)");
                        st.pending.settle_abandoned(&key, gen);
                        return None;
                    }
                }
                let entry = st.pending.remove(&key)?;
                self.account(&mut st, up, &entry, Outcome::Answered);
                dispatch::progressed(&mut st, up, gen);
                if entry.method.as_deref() == Some("initialize") {
                    let u = &mut st.upstreams[up.0 as usize];
                    u.session.observe_initialize_reply(&msg);
                    if u.session.handshake().is_some() {
                        Self::primed(u, gen);
                    }
                }
                tracing::debug!(upstream = %name, id = %entry.client_id, method = ?entry.method, elapsed_us = entry.arrived.elapsed().as_micros() as u64, "reply");
                self.notify_if_idle(&st);
                let bytes = if entry.client_id == key.1 {
                    msg.into_raw()
                } else {
                    msg.with_id(&entry.client_id).into_raw()
                };
                let bytes = match st.agg.as_ref() {
                    Some(agg) => agg.reply_for_client(up, entry.method.as_deref(), bytes),
                    None => bytes,
                };
                self.settle(&mut st, &key, entry.session, bytes, false)
            }
            Kind::Batch => self.upstream_batch(&mut st, up, gen, msg),
            Kind::Request => {
                if !st.upstreams[up.0 as usize].has_conn(gen) {
                    // Its connection is gone: nobody could carry the client's answer.
                    tracing::info!(upstream = %name, "dropping a server request from a connection already lost");
                    return None;
                }
                let session = st.upstreams[up.0 as usize].owner?;
                if let Some(handled) = self.agg_server_request(&mut st, up, gen, &msg) {
                    return handled;
                }
                let server_id = msg.id().cloned()?;
                let origin = Origin {
                    upstream: up,
                    gen,
                    server_id: server_id.clone(),
                    session,
                };
                let client_id = st.reverse.record(origin, &self.ids);
                let bytes = if client_id == server_id {
                    msg.into_raw()
                } else {
                    msg.with_id(&client_id).into_raw()
                };
                Self::delivery(&st, session, bytes)
            }
            Kind::Notification => {
                let session = st.upstreams[up.0 as usize].owner?;
                let msg = Self::agg_from_server(&st, up, msg)?;
                let msg = if msg.method() == Some("notifications/cancelled") {
                    Self::server_cancelled(&mut st, up, gen, msg)?
                } else {
                    msg
                };
                Self::delivery(&st, session, msg.into_raw())
            }
        }
    }

    /// A server withdrew one of its own requests: the client hears of it under the id it
    /// was shown (a router id where two servers' ids collided); one the client never saw
    /// (or already answered) is not passed on.
    fn server_cancelled(st: &mut State, up: UpstreamId, gen: u64, msg: Message) -> Option<Message> {
        let Some((server_id, span)) = cancelled_request(msg.raw()) else {
            return Some(msg);
        };
        let client_id = st.reverse.withdraw(up, gen, &server_id)?;
        if client_id == server_id {
            return Some(msg);
        }
        Message::parse(splice(msg.raw(), span, &client_id)).ok()
    }

    /// A batch reply: members nobody waits for any more are stripped; the rest goes on.
    fn upstream_batch(
        &self,
        st: &mut State,
        up: UpstreamId,
        gen: u64,
        msg: Message,
    ) -> Option<Delivery> {
        let mut session = None;
        let mut keep = Vec::with_capacity(msg.items().len());
        for item in msg.items() {
            let kept = match (&item.kind, &item.id) {
                (Kind::Response, Some(id)) => {
                    let key = (up, id.clone());
                    // A batch answers one batch's members: one session's, under their own
                    // ids. A member under a router id or for another session answers
                    // something else (it would reach the wrong client or the right one under
                    // the router's id): stripped, that request waits for its own reply.
                    let ours = st.pending.get(&key).is_some_and(|e| {
                        e.stage == Stage::Sent { gen }
                            && e.client_id == *id
                            && session.is_none_or(|s| s == e.session)
                    });
                    if ours {
                        if let Some(e) = st.pending.remove(&key) {
                            self.account(st, up, &e, Outcome::Answered);
                            session.get_or_insert(e.session);
                        }
                    } else if !st.pending.contains(&key) {
                        st.pending.settle_abandoned(&key, gen);
                    }
                    ours
                }
                (Kind::Response, None) => false,
                _ => true,
            };
            keep.push(kept);
        }
        self.notify_if_idle(st);
        dispatch::progressed(st, up, gen);
        st.upstreams[up.0 as usize].slot_freed();
        let session = session.or(st.upstreams[up.0 as usize].owner)?;
        let bytes = if keep.iter().all(|k| *k) {
            msg.into_raw()
        } else {
            let mut flags = keep.iter();
            msg.batch_keeping(|_| flags.next().copied().unwrap_or(false))?
        };
        Self::delivery(st, session, bytes)
    }

    /// Moves up to `max` messages from `up`'s outbox into `out` for connection `gen`;
    /// `false` when that connection is no longer the current one (its writer must stop).
    ///
    /// Requests leave in order, and only while fewer than the upstream's
    /// `max_concurrent` are in flight and their rate-limit time has come; the first one
    /// held back holds back every request after it, while notifications and answers
    /// behind it still go (a cancellation must not wait for a slot).
    pub fn pull(&self, up: UpstreamId, gen: u64, out: &mut Vec<Message>, max: usize) -> bool {
        let mut st = self.lock();
        let st = &mut *st;
        match st.upstreams[up.0 as usize].conn(gen) {
            None => return false,
            // Opened before the session existed: closed once idle and opened again.
            Some(c) if c.renew && st.pending.sent_on(up, gen) == 0 => return false,
            Some(_) => {}
        }
        let mut in_flight = st.pending.sent(up);
        let mut now = None;
        let mut held = false;
        let mut i = 0;
        loop {
            let u = &mut st.upstreams[up.0 as usize];
            if out.len() >= max || i >= u.outbox.len() || u.gate == Some(0) {
                break;
            }
            let q = &u.outbox[i];
            if q.only_gen.is_some_and(|g| g != gen) {
                // Another connection's (an answer to its server, a cancellation of what
                // it carries, its copy of a notification): left for its writer.
                i += 1;
                continue;
            }
            let requests = q.requests();
            let mut to = None;
            if requests > 0 {
                let full = in_flight > 0 && in_flight + requests > u.max_concurrent;
                let early = q
                    .not_before
                    .is_some_and(|t| t > *now.get_or_insert_with(Instant::now));
                if !(held || full || early) && u.dispatching {
                    let tags = q.tags.clone();
                    let at = *now.get_or_insert_with(Instant::now);
                    match Self::turn(st, up, gen, tags, at) {
                        dispatch::Turn::Take(t) => to = t,
                        dispatch::Turn::Hold => held = true,
                    }
                }
                if held || full || early {
                    held = true;
                    i += 1;
                    continue;
                }
            }
            let u = &mut st.upstreams[up.0 as usize];
            let Some(q) = u.outbox.remove(i) else { break };
            if let Some(n) = u.gate.as_mut() {
                *n -= 1;
            }
            in_flight += requests;
            let acquired = u.acquire_timeout.is_some();
            let ids: &[Id] = match &q.tracked {
                Tracked::None => &[],
                Tracked::One(id) => std::slice::from_ref(id),
                Tracked::Many(ids) => ids,
            };
            for id in ids {
                let key = (up, id.clone());
                st.pending.set_stage(&key, Stage::Sent { gen }, to);
                // One probe is one request's: the other members only count.
                to = to.map(|t| pending::SentTo { probe: None, ..t });
                if acquired {
                    // It has its connection: from now on its own timeout runs.
                    let listen = st.pending.get(&key).and_then(|e| e.method.as_deref())
                        == Some("subscriptions/listen");
                    let timeout = if listen {
                        LISTEN_TIMEOUT
                    } else {
                        self.limits.request_timeout
                    };
                    if st.pending.reschedule(&key, timeout) {
                        self.deadline_changed.notify_one();
                    }
                }
            }
            out.push(q.msg);
        }
        true
    }

    /// Connection `gen` of `up` hands back messages it took but could not send (the
    /// transport turned out to be another one): they go back to the front of the outbox,
    /// in order, queued again; the upstream is down until its next connection.
    pub fn hand_back(&self, up: UpstreamId, gen: u64, msgs: Vec<Message>) {
        let mut st = self.lock();
        let State {
            upstreams, pending, ..
        } = &mut *st;
        let u = &mut upstreams[up.0 as usize];
        if !u.has_conn(gen) {
            return;
        }
        pending.forget_abandoned(up, Some(gen));
        for msg in msgs.into_iter().rev() {
            let tracked = match msg.kind() {
                Kind::Request => msg.id().cloned().map_or(Tracked::None, Tracked::One),
                Kind::Batch => Tracked::Many(
                    msg.items()
                        .iter()
                        .filter(|i| i.kind == Kind::Request)
                        .filter_map(|i| i.id.clone())
                        .collect(),
                ),
                _ => Tracked::None,
            };
            let ids: Vec<Id> = match &tracked {
                Tracked::One(id) => vec![id.clone()],
                Tracked::Many(ids) => ids.to_vec(),
                Tracked::None => Vec::new(),
            };
            // A request answered meanwhile (timed out, cancelled) is not sent again.
            if !ids.is_empty() && !ids.iter().any(|id| pending.contains(&(up, id.clone()))) {
                continue;
            }
            for id in ids {
                pending.set_stage(&(up, id), Stage::Queued, None);
            }
            u.outbox.push_front(Queued::new(msg, tracked));
        }
        Self::remove_conn(&mut st, up, gen);
    }

    /// Connection `gen` of `up` was lost: fail what it carried, keep what is queued.
    pub fn down(&self, up: UpstreamId, gen: u64, reason: &RouterError) -> Vec<Delivery> {
        let mut st = self.lock();
        let Some((lane, draining)) = Self::remove_conn(&mut st, up, gen) else {
            return Vec::new();
        };
        let u = &mut st.upstreams[up.0 as usize];
        u.outbox.retain(|q| q.only_gen.is_none_or(|g| g != gen));
        let last = u.conns.is_empty();
        if last {
            u.gate = None;
        }
        st.reverse.forget(up, Some(gen));
        st.pending.forget_abandoned(up, Some(gen));
        let lost = st
            .pending
            .take_where(|k, e| k.0 == up && e.stage == Stage::Sent { gen });
        // A drained connection closed once idle is pool upkeep, not a failure.
        if !(draining && lost.is_empty()) {
            let probes: Vec<_> = lost.iter().filter_map(|(_, e)| e.sent?.probe).collect();
            self.account_lost(&mut st, up, lane, &probes);
        }
        self.notify_if_idle(&st);
        let mut out: Vec<Delivery> = lost
            .into_iter()
            .filter_map(|(k, e)| {
                let bytes = reason.to_response(Some(&e.client_id));
                self.settle(&mut st, &k, e.session, bytes, true)
            })
            .collect();
        if last {
            out.extend(self.agg_changed(&mut st, up, false, Instant::now()));
        }
        out
    }

    /// Upstream `up` cannot be reached and will not be retried: fail everything waiting
    /// for it, and answer its new requests at once with `reason`.
    pub fn failed(&self, up: UpstreamId, reason: RouterError) -> Vec<Delivery> {
        let mut st = self.lock();
        let u = &mut st.upstreams[up.0 as usize];
        u.conns.clear();
        u.designated = None;
        u.outbox.clear();
        st.reverse.forget(up, None);
        st.pending.forget_abandoned(up, None);
        let all = st.pending.take_where(|k, _| k.0 == up);
        let mut out: Vec<Delivery> = all
            .into_iter()
            .filter_map(|(k, e)| {
                let bytes = reason.to_response(Some(&e.client_id));
                self.settle(&mut st, &k, e.session, bytes, true)
            })
            .collect();
        let was_up = !matches!(st.upstreams[up.0 as usize].link, Link::Failed(_));
        st.upstreams[up.0 as usize].link = Link::Failed(reason);
        if was_up {
            out.extend(self.agg_changed(&mut st, up, false, Instant::now()));
        }
        self.notify_if_idle(&st);
        out
    }

    /// Upstream `up` could not carry one request (`wire_id`): the error for its client.
    /// `outcome` is what it says about the peer (a transport failure, or nothing).
    pub fn fail_request(
        &self,
        up: UpstreamId,
        wire_id: &Id,
        reason: &RouterError,
        outcome: Outcome,
    ) -> Option<Delivery> {
        let mut st = self.lock();
        let key = (up, wire_id.clone());
        let e = st.pending.remove(&key)?;
        self.account(&mut st, up, &e, outcome);
        self.notify_if_idle(&st);
        self.settle(
            &mut st,
            &key,
            e.session,
            reason.to_response(Some(&e.client_id)),
            true,
        )
    }

    /// Upstream `up` sent a message too large to forward; answer the request it answered.
    pub fn oversized(
        &self,
        up: UpstreamId,
        gen: u64,
        id: Option<&Id>,
        len: usize,
        limit: usize,
    ) -> Option<Delivery> {
        let id = id?;
        let name = {
            let st = self.lock();
            // Like any reply: only from the connection that carries the request.
            let carried =
                st.pending.get(&(up, id.clone())).map(|e| e.stage) == Some(Stage::Sent { gen });
            if !carried {
                return None;
            }
            st.upstreams[up.0 as usize].name.clone()
        };
        let err = RouterError::new(
            ErrorKind::TooLarge,
            format!("the reply from server '{name}' is {len} bytes, over the {limit}-byte message limit (raise local.max_message_size)"),
        );
        self.fail_request(up, id, &err, Outcome::Void)
    }

    /// Requests whose time is up: errors for their clients; the connections that carry
    /// them get a `notifications/cancelled`.
    pub fn expire(&self, now: Instant) -> Vec<Delivery> {
        let mut st = self.lock();
        let expired = st.pending.take_expired(now);
        let mut out = Vec::with_capacity(expired.len());
        let secs = self.limits.request_timeout.as_secs_f64();
        for ((up, wire), entry) in expired {
            let mut late = None;
            let u = &mut st.upstreams[up.0 as usize];
            let text = match entry.stage {
                Stage::Queued => {
                    u.withdraw(&wire);
                    match u.acquire_timeout {
                        Some(a) if a < self.limits.request_timeout => format!(
                            "no connection to server '{}' became free within {} (connection.pool.acquire_timeout_ms)",
                            u.name,
                            fmt_secs(a.as_secs_f64())
                        ),
                        _ => "request timeout while queued".to_owned(),
                    }
                }
                Stage::Sent { gen } => {
                    if u.has_conn(gen) {
                        late = Some(gen);
                        // A courtesy notice: losing it never loses the client's error reply.
                        let notice =
                            cancelled_notification(&wire, "request timed out in mcp-router");
                        u.push_for(gen, notice);
                    }
                    format!("request timeout after {}", fmt_secs(secs))
                }
            };
            tracing::warn!(upstream = %u.name, id = %entry.client_id, method = ?entry.method, "{text}");
            self.account(&mut st, up, &entry, Outcome::Failed);
            let reply =
                RouterError::new(ErrorKind::Timeout, text).to_response(Some(&entry.client_id));
            let key = (up, wire);
            out.extend(self.settle(&mut st, &key, entry.session, reply, true));
            if let Some(gen) = late {
                st.pending.abandon(key, gen);
            }
        }
        self.agg_due(&mut st, now, &mut out);
        self.flush_open(&mut st, now, &mut out);
        Self::turns_due(&mut st, now);
        self.notify_if_idle(&st);
        out
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let st = self.lock();
        let ops = st.agg.as_ref().and_then(|a| a.ops.next_deadline());
        let flush = Self::circuit_due(&st).then(Instant::now);
        [st.pending.next_deadline(), ops, Self::next_turn(&st), flush]
            .into_iter()
            .flatten()
            .min()
    }

    /// The handshake to replay on a fresh connection of `up`, if one succeeded on it.
    pub fn handshake(&self, up: UpstreamId) -> Option<Handshake> {
        self.lock().upstreams[up.0 as usize].session.handshake()
    }

    /// The protocol version upstream `up` agreed to in `initialize` (handshake era).
    pub fn negotiated_version(&self, up: UpstreamId) -> Option<String> {
        self.lock().upstreams[up.0 as usize]
            .session
            .negotiated()
            .map(str::to_owned)
    }

    /// Whether connection `gen` of `up` carries requests still waiting for replies.
    pub fn busy(&self, up: UpstreamId, gen: u64) -> bool {
        self.lock()
            .pending
            .any(|k, e| k.0 == up && e.stage == Stage::Sent { gen })
    }

    /// Stop accepting new requests; pending ones may still complete.
    pub fn begin_shutdown(&self) {
        self.lock().shutting_down = true;
    }

    pub fn pending_len(&self) -> usize {
        self.lock().pending.len()
    }

    /// Fail everything still pending (end of the shutdown grace period).
    pub fn fail_all(&self, reason: &RouterError) -> Vec<Delivery> {
        let mut st = self.lock();
        for u in &mut st.upstreams {
            u.outbox.clear();
        }
        let all = st.pending.take_where(|_, _| true);
        let out = all
            .into_iter()
            .filter_map(|(k, e)| {
                let bytes = reason.to_response(Some(&e.client_id));
                self.settle(&mut st, &k, e.session, bytes, true)
            })
            .collect();
        self.notify_if_idle(&st);
        out
    }

    fn notify_if_idle(&self, st: &State) {
        if st.pending.is_empty() {
            self.idle.notify_waiters();
        }
    }
}

/// A JSON array of error responses, one per (error, id).
pub(super) fn error_batch<'a>(parts: impl Iterator<Item = (&'a RouterError, &'a Id)>) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.push(b'[');
    for (i, (err, id)) in parts.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&err.to_response(Some(id)));
    }
    out.push(b']');
    Bytes::from(out)
}

fn queue_full_text(size: usize) -> String {
    format!("failed to queue request: request queue full (size: {size})")
}

fn queue_full(size: usize, id: &Id) -> Bytes {
    RouterError::new(ErrorKind::QueueFull, queue_full_text(size)).to_response(Some(id))
}

fn fmt_secs(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{secs:.0}s")
    } else {
        format!("{secs}s")
    }
}

/// `params.requestId` of a `notifications/cancelled`, parsed only for that method.
pub(crate) fn cancelled_request_id(raw: &Bytes) -> Option<Id> {
    cancelled_request(raw).map(|(id, _)| id)
}

/// `params.requestId` of a `notifications/cancelled` and the span of its text in `raw`.
fn cancelled_request(raw: &Bytes) -> Option<(Id, (usize, usize))> {
    #[derive(serde::Deserialize)]
    struct Cancel<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(rename = "requestId", borrow)]
        request_id: Option<&'a serde_json::value::RawValue>,
    }
    let c: Cancel = serde_json::from_slice(raw).ok()?;
    let raw_id = c.params?.request_id?.get();
    // Borrowed from `raw`, so the offset is exact.
    let start = (raw_id.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    match raw_id.as_bytes().first() {
        Some(b'"' | b'-' | b'0'..=b'9') => {
            Some((Id::from_raw_json(raw_id), (start, start + raw_id.len())))
        }
        _ => None,
    }
}

#[cfg(test)]
mod admission_tests;
#[cfg(test)]
mod aggregate_props;
#[cfg(test)]
mod aggregate_tests;
#[cfg(test)]
mod dispatch_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;
