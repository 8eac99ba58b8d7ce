//! Decides where each message goes; never does I/O.
//!
//! The two directions of traffic run as separate tasks (client → upstream, upstream →
//! client) so that neither can block the other (a cycle of bounded channels through a
//! child process would deadlock). Both consult this one shared state, under a short
//! synchronous lock that is never held across an `.await`. The router owns: the pending
//! table (timeouts, late replies), the session copy for replay, the upstream's readiness
//! and the outbox of requests waiting for it. Callers do the sending.

pub mod pending;
pub mod session;

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::wire::error::cancelled_notification;
use crate::wire::{ErrorKind, Id, Kind, Message, RouterError};
use pending::{Pending, Stage};
pub use session::Handshake;
use session::Session;

/// Limits the router enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub request_timeout: Duration,
    pub max_queued_requests: usize,
}

/// A message for the upstream, stamped with the incarnation it was meant for: if that
/// incarnation died before the write, the request was already failed and must not be sent.
/// It carries the message as parsed once at the edge, so transports that need its id or
/// method (HTTP, the gateway envelope) never parse it again; `msg.raw()` is the bytes.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub msg: Message,
    pub gen: u64,
}

/// What to do with a message from the client.
#[derive(Debug)]
pub enum ClientDecision {
    Forward(Outgoing),
    /// Held in the outbox until the upstream is ready.
    Queued,
    /// Answer the client (an error), send nothing upstream.
    Reply(Bytes),
    /// Nothing to do (logged).
    Drop,
}

/// What to do with a message from the upstream.
#[derive(Debug)]
pub enum UpstreamDecision {
    Deliver(Bytes),
    Drop,
}

/// Readiness of the (single) upstream.
#[derive(Debug)]
enum Link {
    /// Not (yet) able to take messages: queue them.
    Down,
    Up,
    /// Gave up: answer at once with this error.
    Failed(RouterError),
}

#[derive(Debug)]
struct State {
    pending: Pending,
    session: Session,
    link: Link,
    gen: u64,
    outbox: VecDeque<(Option<Id>, Message)>,
    shutting_down: bool,
}

/// The shared routing state. Cheap to lock; never locked across an await.
#[derive(Debug)]
pub struct Router {
    upstream: String,
    limits: Limits,
    state: Mutex<State>,
    /// Wakes the timer when a new earliest deadline appears.
    pub deadline_changed: Notify,
    /// Wakes shutdown when the last pending request is settled.
    pub idle: Notify,
}

impl Router {
    pub fn new(upstream: impl Into<String>, limits: Limits) -> Self {
        Self {
            upstream: upstream.into(),
            limits,
            state: Mutex::new(State {
                pending: Pending::default(),
                session: Session::default(),
                link: Link::Down,
                gen: 0,
                outbox: VecDeque::new(),
                shutting_down: false,
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

    pub fn upstream_name(&self) -> &str {
        &self.upstream
    }

    /// A message from the client.
    pub fn from_client(&self, msg: Message, now: Instant) -> ClientDecision {
        let mut st = self.lock();
        if st.shutting_down && msg.kind() == Kind::Request {
            let err = RouterError::new(ErrorKind::ShuttingDown, "router shutting down");
            return ClientDecision::Reply(err.to_response(msg.id()));
        }
        st.session.observe_client(&msg);
        match msg.kind() {
            Kind::Request => self.client_request(&mut st, msg, now),
            Kind::Batch => self.client_batch(&mut st, msg, now),
            Kind::Notification => self.client_notification(&mut st, msg),
            Kind::Response => match st.link {
                Link::Up => ClientDecision::Forward(Outgoing { msg, gen: st.gen }),
                _ => {
                    // The server that asked is gone; a new one never asked.
                    tracing::debug!(upstream = %self.upstream, id = ?msg.id(), "dropping client response: upstream restarted since it asked");
                    ClientDecision::Drop
                }
            },
        }
    }

    fn client_request(&self, st: &mut State, msg: Message, now: Instant) -> ClientDecision {
        let Some(id) = msg.id().cloned() else {
            return ClientDecision::Drop;
        };
        if st.pending.contains(&id) {
            let err = RouterError::new(
                ErrorKind::InvalidRequest,
                format!("request id {id} is already in use by a request still in flight"),
            );
            return ClientDecision::Reply(err.to_response(Some(&id)));
        }
        let method = msg.method().map(Into::into);
        match &st.link {
            Link::Failed(err) => ClientDecision::Reply(err.to_response(Some(&id))),
            Link::Up => {
                let gen = st.gen;
                self.track(st, id, method, now, Stage::Sent { gen });
                ClientDecision::Forward(Outgoing { msg, gen })
            }
            Link::Down => {
                if st.outbox.len() >= self.limits.max_queued_requests {
                    return ClientDecision::Reply(queue_full(self.limits.max_queued_requests, &id));
                }
                self.track(st, id.clone(), method, now, Stage::Queued);
                st.outbox.push_back((Some(id), msg));
                ClientDecision::Queued
            }
        }
    }

    fn client_batch(&self, st: &mut State, msg: Message, now: Instant) -> ClientDecision {
        let ids: Vec<(Id, Option<Box<str>>)> = msg
            .items()
            .iter()
            .filter(|i| i.kind == Kind::Request)
            .filter_map(|i| i.id.clone().map(|id| (id, i.method.clone())))
            .collect();
        if !st.session.allows_batches() {
            let version = st.session.negotiated().unwrap_or("(none negotiated)");
            let err = RouterError::new(
                ErrorKind::InvalidRequest,
                format!("JSON-RPC batches are not allowed in protocol version {version}; only 2025-03-26 has them"),
            );
            if ids.is_empty() {
                return ClientDecision::Reply(err.to_response(None));
            }
            let parts: Vec<String> = ids
                .iter()
                .map(|(id, _)| String::from_utf8_lossy(&err.to_response(Some(id))).into_owned())
                .collect();
            return ClientDecision::Reply(Bytes::from(format!("[{}]", parts.join(","))));
        }
        if let Some((id, _)) = ids.iter().find(|(id, _)| st.pending.contains(id)) {
            let err = RouterError::new(
                ErrorKind::InvalidRequest,
                format!("request id {id} is already in use by a request still in flight"),
            );
            return ClientDecision::Reply(err.to_response(None));
        }
        match &st.link {
            Link::Failed(err) => ClientDecision::Reply(err.to_response(None)),
            Link::Up => {
                let gen = st.gen;
                for (id, method) in ids {
                    self.track(st, id, method, now, Stage::Sent { gen });
                }
                ClientDecision::Forward(Outgoing { msg, gen })
            }
            Link::Down => {
                if st.outbox.len() >= self.limits.max_queued_requests {
                    let err = RouterError::new(
                        ErrorKind::QueueFull,
                        queue_full_text(self.limits.max_queued_requests),
                    );
                    return ClientDecision::Reply(err.to_response(None));
                }
                for (id, method) in ids {
                    self.track(st, id, method, now, Stage::Queued);
                }
                st.outbox.push_back((None, msg));
                ClientDecision::Queued
            }
        }
    }

    fn client_notification(&self, st: &mut State, msg: Message) -> ClientDecision {
        if msg.method() == Some("notifications/cancelled") {
            if let Some(target) = cancelled_request_id(msg.raw()) {
                match st.pending.get(&target).map(|e| e.stage) {
                    Some(Stage::Queued) => {
                        // The server never saw it: withdraw it and tell nobody.
                        st.pending.remove(&target);
                        st.outbox.retain(|(id, _)| id.as_ref() != Some(&target));
                        self.notify_if_idle(st);
                        return ClientDecision::Drop;
                    }
                    Some(Stage::Sent { .. }) => {
                        // The client has given up on it: no timeout error, no late reply.
                        st.pending.remove(&target);
                        self.notify_if_idle(st);
                    }
                    None => {}
                }
            }
        }
        match &st.link {
            Link::Up => ClientDecision::Forward(Outgoing { msg, gen: st.gen }),
            Link::Down => {
                if msg.method() == Some("notifications/initialized") {
                    // Replayed from the session once the upstream is up; queueing it too
                    // would send it twice.
                    if st.session.handshake().is_none() {
                        st.outbox.push_back((None, msg));
                    }
                    return ClientDecision::Queued;
                }
                if st.outbox.len() >= self.limits.max_queued_requests {
                    tracing::warn!(upstream = %self.upstream, method = ?msg.method(), "queue full: dropping client notification");
                    return ClientDecision::Drop;
                }
                st.outbox.push_back((None, msg));
                ClientDecision::Queued
            }
            Link::Failed(_) => ClientDecision::Drop,
        }
    }

    fn track(&self, st: &mut State, id: Id, method: Option<Box<str>>, now: Instant, stage: Stage) {
        if st
            .pending
            .insert(id, method, now, self.limits.request_timeout, stage)
        {
            self.deadline_changed.notify_one();
        }
    }

    /// A message from the upstream.
    pub fn from_upstream(&self, msg: Message) -> UpstreamDecision {
        let mut st = self.lock();
        match msg.kind() {
            Kind::Response => {
                let Some(id) = msg.id() else {
                    tracing::warn!(upstream = %self.upstream, "upstream sent an error with id null (it could not read something we sent); not forwarded");
                    return UpstreamDecision::Drop;
                };
                match st.pending.remove(id) {
                    Some(entry) => {
                        if entry.method.as_deref() == Some("initialize") {
                            st.session.observe_initialize_reply(&msg);
                        }
                        tracing::debug!(upstream = %self.upstream, %id, method = ?entry.method, elapsed_us = entry.arrived.elapsed().as_micros() as u64, "reply");
                        self.notify_if_idle(&st);
                        UpstreamDecision::Deliver(msg.into_raw())
                    }
                    None => {
                        tracing::info!(upstream = %self.upstream, %id, "dropping a reply nobody waits for (timed out, cancelled or unknown id)");
                        UpstreamDecision::Drop
                    }
                }
            }
            Kind::Batch => {
                let mut matched = false;
                for item in msg.items().iter().filter(|i| i.kind == Kind::Response) {
                    if let Some(id) = &item.id {
                        matched |= st.pending.remove(id).is_some();
                    }
                }
                self.notify_if_idle(&st);
                if matched || msg.items().iter().any(|i| i.kind != Kind::Response) {
                    UpstreamDecision::Deliver(msg.into_raw())
                } else {
                    UpstreamDecision::Drop
                }
            }
            Kind::Request | Kind::Notification => UpstreamDecision::Deliver(msg.into_raw()),
        }
    }

    /// The upstream sent a message too large to forward; answer the request it answered.
    pub fn upstream_oversized(&self, id: Option<&Id>, len: usize, limit: usize) -> Option<Bytes> {
        let mut st = self.lock();
        let id = id?;
        st.pending.remove(id)?;
        self.notify_if_idle(&st);
        let err = RouterError::new(
            ErrorKind::TooLarge,
            format!(
                "the reply from server '{}' is {len} bytes, over the {limit}-byte message limit (raise local.max_message_size)",
                self.upstream
            ),
        );
        Some(err.to_response(Some(id)))
    }

    /// Requests whose time is up: errors for the client and cancellations for the server.
    pub fn expire(&self, now: Instant) -> (Vec<Bytes>, Vec<Outgoing>) {
        let mut st = self.lock();
        let expired = st.pending.take_expired(now);
        let mut replies = Vec::with_capacity(expired.len());
        let mut cancels = Vec::new();
        let secs = self.limits.request_timeout.as_secs_f64();
        for (id, entry) in expired {
            let text = match entry.stage {
                Stage::Queued => {
                    st.outbox.retain(|(q, _)| q.as_ref() != Some(&id));
                    "request timeout while queued".to_owned()
                }
                Stage::Sent { gen } => {
                    if gen == st.gen && matches!(st.link, Link::Up) {
                        // Built here, so it always parses; a failure would only lose the
                        // courtesy notice, never the client's error reply.
                        let notice = cancelled_notification(&id, "request timed out in mcp-router");
                        if let Ok(msg) = Message::parse(notice) {
                            cancels.push(Outgoing { msg, gen });
                        }
                    }
                    format!("request timeout after {}", fmt_secs(secs))
                }
            };
            tracing::warn!(upstream = %self.upstream, %id, method = ?entry.method, "{text}");
            replies.push(RouterError::new(ErrorKind::Timeout, text).to_response(Some(&id)));
        }
        self.notify_if_idle(&st);
        (replies, cancels)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.lock().pending.next_deadline()
    }

    /// The handshake to replay on a fresh upstream, if the client completed one.
    pub fn handshake(&self) -> Option<Handshake> {
        self.lock().session.handshake()
    }

    /// The upstream is ready: returns its incarnation and what waited for it, in order.
    pub fn upstream_up(&self) -> (u64, Vec<Message>) {
        let mut st = self.lock();
        st.link = Link::Up;
        let gen = st.gen;
        let queued: Vec<(Option<Id>, Message)> = st.outbox.drain(..).collect();
        for (id, _) in &queued {
            if let Some(id) = id {
                st.pending.set_stage(id, Stage::Sent { gen });
            }
        }
        // Batch members are queued under one outbox entry without an id.
        st.pending.restage(Stage::Queued, Stage::Sent { gen });
        (gen, queued.into_iter().map(|(_, m)| m).collect())
    }

    /// The upstream went away: fail what it had, keep what is queued for the next one.
    pub fn upstream_down(&self, reason: &RouterError) -> Vec<Bytes> {
        let mut st = self.lock();
        let gen = st.gen;
        st.gen += 1;
        if !matches!(st.link, Link::Failed(_)) {
            st.link = Link::Down;
        }
        let lost = st
            .pending
            .take_where(|e| matches!(e.stage, Stage::Sent { gen: g } if g == gen));
        self.notify_if_idle(&st);
        lost.into_iter()
            .map(|(id, _)| reason.to_response(Some(&id)))
            .collect()
    }

    /// The upstream cannot be reached and will not be retried (or not for a long time):
    /// fail everything waiting, and answer new requests at once with `reason`.
    pub fn upstream_failed(&self, reason: RouterError) -> Vec<Bytes> {
        let mut st = self.lock();
        st.gen += 1;
        let all = st.pending.take_where(|_| true);
        st.outbox.clear();
        let out = all
            .into_iter()
            .map(|(id, _)| reason.to_response(Some(&id)))
            .collect();
        st.link = Link::Failed(reason);
        self.notify_if_idle(&st);
        out
    }

    /// The upstream could not answer one request (a transport error for that message
    /// alone): the error for the client, if the request was still waiting.
    pub fn fail_request(&self, id: &Id, reason: &RouterError) -> Option<Bytes> {
        let mut st = self.lock();
        st.pending.remove(id)?;
        self.notify_if_idle(&st);
        Some(reason.to_response(Some(id)))
    }

    /// The protocol version the server agreed to in `initialize` (handshake era).
    pub fn negotiated_version(&self) -> Option<String> {
        self.lock().session.negotiated().map(str::to_owned)
    }

    /// Stop accepting new requests; pending ones may still complete.
    pub fn begin_shutdown(&self) {
        self.lock().shutting_down = true;
    }

    pub fn pending_len(&self) -> usize {
        self.lock().pending.len()
    }

    /// Fail everything still pending (end of the shutdown grace period).
    pub fn fail_all(&self, reason: &RouterError) -> Vec<Bytes> {
        let mut st = self.lock();
        st.outbox.clear();
        let all = st.pending.take_where(|_| true);
        all.into_iter()
            .map(|(id, _)| reason.to_response(Some(&id)))
            .collect()
    }

    fn notify_if_idle(&self, st: &State) {
        if st.pending.is_empty() {
            self.idle.notify_waiters();
        }
    }
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
    match raw_id.as_bytes().first() {
        Some(b'"' | b'-' | b'0'..=b'9') => Some(Id::from_raw_json(raw_id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
