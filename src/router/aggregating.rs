//! The core's side of aggregation: performing an [`aggregate::Plan`] with the core's own
//! machinery, and settling the parts of fan-out requests.
//!
//! A fan-out part is an ordinary pending request under a router-owned id, so every way a
//! request can end (a reply, a timeout, a lost connection, a full queue, shutdown) ends
//! a part the same way; here those endings are fed to the fan-out table instead of the
//! client, and the merged answer goes out once the last part is in. Runs under the core's
//! lock like the rest of the core; never does I/O (the few courtesy notifications the
//! core sends on its own use `try_send`).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::aggregate::input::Resume;
use super::aggregate::{Avail, OpKind, Part, Plan};
use super::pending::Key;
use super::pending::Stage;
use super::upstreams::{Link, Queued, Tracked};
use super::{
    cancelled_request_id, error_batch, in_use, ClientDecision, Core, Delivery, SessionId, State,
    UpstreamId,
};
use crate::wire::{ErrorKind, Id, Kind, Message, RouterError};

/// The longest a merged answer waits for its slowest server (capped by the request
/// timeout): one server that does not answer must not hold up everyone's tools.
pub const FANOUT_WAIT: Duration = Duration::from_secs(10);

/// A listen stream has no deadline of its own; this only bounds the bookkeeping.
const LISTEN_WAIT: Duration = super::LISTEN_TIMEOUT;

impl Core {
    /// A client message when several servers are aggregated.
    pub(super) fn agg_client(
        &self,
        st: &mut State,
        session: SessionId,
        msg: Message,
        now: Instant,
    ) -> ClientDecision {
        match msg.kind() {
            Kind::Response => self.client_response(st, msg),
            Kind::Batch => {
                let err = RouterError::new(
                    ErrorKind::InvalidRequest,
                    "JSON-RPC batches are not supported when several servers are aggregated; send the requests one by one",
                );
                let ids: Vec<Id> = msg
                    .items()
                    .iter()
                    .filter(|i| i.kind == Kind::Request)
                    .filter_map(|i| i.id.clone())
                    .collect();
                if ids.is_empty() {
                    return ClientDecision::Drop;
                }
                ClientDecision::Reply(error_batch(ids.iter().map(|id| (&err, id))))
            }
            Kind::Notification => {
                if msg.method() == Some("notifications/cancelled") {
                    if let Some(target) = cancelled_request_id(msg.raw()) {
                        let parts = st.agg.as_mut().and_then(|agg| {
                            let ended = agg.end_listen(&target);
                            agg.ops.cancel(session, &target).or(ended.then(Vec::new))
                        });
                        if let Some(parts) = parts {
                            for key in parts {
                                self.withdraw_part(st, key);
                            }
                            return ClientDecision::Drop;
                        }
                    }
                    // Finds the server that carries it (or drops it).
                    return self.client_notification(st, session, UpstreamId(0), msg);
                }
                let avail = availability(st);
                let Some(agg) = st.agg.as_mut() else {
                    return ClientDecision::Drop;
                };
                let Plan::Broadcast(to) = agg.plan(&msg, &avail) else {
                    return ClientDecision::Drop;
                };
                for up in to {
                    let _ = self.client_notification(st, session, up, msg.clone());
                }
                ClientDecision::Accepted
            }
            Kind::Request => {
                let Some(id) = msg.id().cloned() else {
                    return ClientDecision::Drop;
                };
                if st.shutting_down {
                    let err = RouterError::new(ErrorKind::ShuttingDown, "router shutting down");
                    return ClientDecision::Reply(err.to_response(Some(&id)));
                }
                let busy = st.pending.client_has(session, &id)
                    || st
                        .agg
                        .as_ref()
                        .is_some_and(|a| a.ops.client_has(session, &id));
                if busy {
                    return ClientDecision::Reply(in_use(&id).to_response(Some(&id)));
                }
                let avail = availability(st);
                let Some(agg) = st.agg.as_mut() else {
                    return ClientDecision::Drop;
                };
                let plan = agg.plan(&msg, &avail);
                let probe = agg.take_probe();
                if !probe.is_empty() {
                    // Before the request itself, in each server's outbox: which era it
                    // speaks decides how the router talks to it from now on.
                    let client_id = self.ids.fresh("probe");
                    let op = agg.ops.start(session, client_id, OpKind::Probe, now);
                    for (up, m) in probe {
                        if self.queue_part(st, session, op, up, m, now).is_some() {
                            // Nothing else reaches the server before its answer: a
                            // handshake-era one must be initialized first.
                            Self::to_front_gated(st, up);
                        }
                    }
                }
                match plan {
                    Plan::Reply(bytes) => ClientDecision::Reply(bytes),
                    Plan::Forward(up, m) => self.client_request(st, session, up, m, now),
                    Plan::FanOut(kind, parts) => self.fan_out(st, session, &msg, kind, parts, now),
                    Plan::Broadcast(_) => ClientDecision::Drop,
                    Plan::Resume(token) => self.resume(st, &msg, &token),
                }
            }
        }
    }

    fn fan_out(
        &self,
        st: &mut State,
        session: SessionId,
        request: &Message,
        kind: OpKind,
        parts: Vec<(UpstreamId, Message)>,
        now: Instant,
    ) -> ClientDecision {
        let Some(client_id) = request.id().cloned() else {
            return ClientDecision::Drop;
        };
        let wait = self.limits.request_timeout.min(FANOUT_WAIT);
        let Some(agg) = st.agg.as_mut() else {
            return ClientDecision::Drop;
        };
        let deadline = if kind == OpKind::Listen {
            now + LISTEN_WAIT
        } else {
            now + wait
        };
        let op = agg.ops.start(session, client_id.clone(), kind, deadline);
        let mut keys = Vec::with_capacity(parts.len());
        for (up, m) in parts {
            keys.extend(self.queue_part(st, session, op, up, m, now));
        }
        let Some(agg) = st.agg.as_mut() else {
            return ClientDecision::Drop;
        };
        if kind == OpKind::Listen {
            // Acknowledged at once by the router; the stream stays open even with no
            // server stream behind it (the router's own changes go on it), and ends when
            // the client cancels it or every server ended its own.
            if keys.is_empty() {
                let _ = agg.ops.cancel(session, &client_id);
            }
            return ClientDecision::Reply(agg.start_listen(request, keys));
        }
        if let Some(ready) = agg.ops.complete_if_empty(op) {
            return ClientDecision::Reply(agg.complete(ready));
        }
        self.deadline_changed.notify_one();
        ClientDecision::Accepted
    }

    /// A part nobody waits for any more: out of the outbox if it is still there, else
    /// its server is told (the connection that carries it), and its late reply dropped.
    fn withdraw_part(&self, st: &mut State, key: Key) {
        let Some(entry) = st.pending.remove(&key) else {
            return;
        };
        let u = &mut st.upstreams[key.0 .0 as usize];
        match entry.stage {
            super::pending::Stage::Queued => u.withdraw(&key.1),
            super::pending::Stage::Sent { gen } => {
                if u.has_conn(gen) {
                    let notice = crate::wire::error::cancelled_notification(
                        &key.1,
                        "cancelled by the client",
                    );
                    u.push_for(gen, notice);
                }
                st.pending.abandon(key, gen);
            }
        }
        self.notify_if_idle(st);
    }

    /// Queues `m` for `up` under a fresh router id as a part of fan-out request `op`;
    /// its key, unless the server cannot take it (failed, queue full).
    fn queue_part(
        &self,
        st: &mut State,
        session: SessionId,
        op: u64,
        up: UpstreamId,
        m: Message,
        now: Instant,
    ) -> Option<Key> {
        let limit = self.outbox_limit(st, up);
        let u = &mut st.upstreams[up.0 as usize];
        if matches!(u.link, Link::Failed(_)) || u.outbox.len() >= limit {
            return None;
        }
        let wire = self.ids.fresh("agg");
        let m = m.with_id(&wire);
        let method = m.method().map(Into::into);
        u.session.observe_client(&m);
        u.push(Queued::new(m, Tracked::One(wire.clone())));
        self.track(st, (up, wire.clone()), session, wire.clone(), method, now);
        if let Some(agg) = st.agg.as_mut() {
            agg.ops.add_part(op, (up, wire.clone()));
        }
        Some((up, wire))
    }

    /// Request `key` (already out of the pending table) ended with `bytes`: a part is
    /// fed to its fan-out request; anything else answers its client.
    pub(super) fn settle(
        &self,
        st: &mut State,
        key: &Key,
        session: SessionId,
        bytes: Bytes,
        failed: bool,
    ) -> Option<Delivery> {
        if let Some(u) = st.upstreams.get_mut(key.0 .0 as usize) {
            u.slot_freed();
        }
        if let Some(agg) = st.agg.as_mut() {
            if agg.inputs.hold(key, &bytes) {
                // The client considers this call answered: its ending waits for the retry.
                return None;
            }
        }
        let is_part = st.agg.as_ref().is_some_and(|a| a.ops.is_part(key));
        if !is_part {
            return Self::delivery(st, session, bytes);
        }
        let era_probe = st
            .agg
            .as_ref()
            .and_then(|a| a.ops.op_of(key))
            .is_some_and(|(_, k)| matches!(k, OpKind::Probe | OpKind::Discover));
        let bridging = !failed && self.bridge_if_refused(st, key, session, &bytes);
        if era_probe && !bridging {
            st.upstreams[key.0 .0 as usize].set_gate(None);
        }
        let part = if failed {
            Part::Failed(bytes)
        } else {
            Part::Reply(bytes)
        };
        let out = self.settle_part(st, key, part);
        let bridged = st
            .agg
            .as_mut()
            .map(|a| a.take_bridged())
            .unwrap_or_default();
        for (up, initialized) in bridged {
            // Right after the initialize, before what the gate held back.
            let u = &mut st.upstreams[up.0 as usize];
            u.session.observe_client(&initialized);
            u.push_front(Queued::new(initialized, Tracked::None));
            u.set_gate(None);
        }
        out
    }

    fn settle_part(&self, st: &mut State, key: &Key, part: Part) -> Option<Delivery> {
        let agg = st.agg.as_mut()?;
        match agg.ops.settle(key, part) {
            super::aggregate::ops::Settled::Complete(ready) => {
                let session = ready.session;
                let bytes = agg.complete(ready);
                Self::delivery(st, session, bytes)
            }
            super::aggregate::ops::Settled::Late(kind, session, up, part) => {
                let effects = agg.late(kind, up, &part);
                if let Some(initialized) = effects.initialized {
                    let _ = self.client_notification(st, session, up, initialized);
                }
                for b in effects.to_client {
                    notify_now(Self::delivery(st, session, b));
                }
                None
            }
            _ => None,
        }
    }

    /// A server that refused `server/discover` speaks only the handshake era: for a
    /// 2026-07-28 client the router initializes it itself, as a part of the same
    /// fan-out request (so a client's discover answer includes that server).
    fn bridge_if_refused(
        &self,
        st: &mut State,
        key: &Key,
        session: SessionId,
        bytes: &Bytes,
    ) -> bool {
        let Some(agg) = st.agg.as_ref() else {
            return false;
        };
        let Some((op, kind)) = agg.ops.op_of(key) else {
            return false;
        };
        if !agg.bridges(kind) || crate::wire::rewrite::find(bytes, &["error"]).is_none() {
            return false;
        }
        let Some(init) = agg.bridge_initialize() else {
            return false;
        };
        tracing::info!(upstream = %agg.name(key.0), "server speaks only the handshake era: initializing it for the 2026-07-28 client");
        if self
            .queue_part(st, session, op, key.0, init, Instant::now())
            .is_none()
        {
            return false;
        }
        Self::to_front_gated(st, key.0);
        true
    }

    /// The message just queued for `up` goes first, and alone: the gate holds the rest
    /// until its answer.
    fn to_front_gated(st: &mut State, up: UpstreamId) {
        let u = &mut st.upstreams[up.0 as usize];
        if let Some(q) = u.outbox.pop_back() {
            u.outbox.push_front(q);
        }
        u.set_gate(Some(1));
    }

    /// Fan-out requests whose own deadline passed: answered with what they have.
    pub(super) fn agg_due(&self, st: &mut State, now: Instant, out: &mut Vec<Delivery>) {
        let Some(agg) = st.agg.as_mut() else { return };
        let due = agg.ops.due(now);
        if due.is_empty() {
            return;
        }
        let mut answers = Vec::with_capacity(due.len());
        for ready in due {
            tracing::warn!(method = ?ready.kind, "answering with the servers that replied in time");
            let session = ready.session;
            answers.push((session, agg.complete(ready)));
        }
        for (session, bytes) in answers {
            out.extend(Self::delivery(st, session, bytes));
        }
    }

    /// What the client is told when server `up` comes (`came: true`) or goes.
    pub(super) fn agg_changed(
        &self,
        st: &mut State,
        up: UpstreamId,
        came: bool,
        now: Instant,
    ) -> Vec<Delivery> {
        let Some(agg) = st.agg.as_ref() else {
            return Vec::new();
        };
        let Some(session) = st.upstreams[up.0 as usize].owner else {
            return Vec::new();
        };
        if came {
            if let Some((kind, greeting)) = agg.greeting(up) {
                let pending = [
                    OpKind::Initialize,
                    OpKind::Background,
                    OpKind::Discover,
                    OpKind::Probe,
                ]
                .into_iter()
                .any(|k| agg.ops.has_outstanding(up, k));
                if !pending {
                    // It missed the client's handshake (it was down, or did not answer in
                    // time): the router greets it on the client's behalf.
                    let client_id = self.ids.fresh("init");
                    if let Some(agg) = st.agg.as_mut() {
                        let op = agg.ops.start(session, client_id, kind, now);
                        self.queue_part(st, session, op, up, greeting, now);
                    }
                }
                return Vec::new();
            }
        }
        let Some(agg) = st.agg.as_ref() else {
            return Vec::new();
        };
        agg.list_changed(up)
            .into_iter()
            .filter_map(|b| Self::delivery(st, session, b))
            .collect()
    }

    /// A request from server `up` for a client that cannot take it (a handshake-era
    /// server behind a 2026-07-28 client): the one call of the client's running at that
    /// server is answered `input_required` and parked; with no such call (or several) the
    /// server is answered with an error. `None`: not for this path.
    pub(super) fn agg_server_request(
        &self,
        st: &mut State,
        up: UpstreamId,
        gen: u64,
        msg: &Message,
    ) -> Option<Option<Delivery>> {
        let agg = st.agg.as_ref()?;
        if !agg.translates(up) {
            return None;
        }
        let calls = st.pending.keys_where(|k, e| {
            k.0 == up
                && e.stage == Stage::Sent { gen }
                && matches!(
                    e.method.as_deref(),
                    Some("tools/call" | "prompts/get" | "resources/read")
                )
                && !agg.inputs.is_parked(k)
        });
        if let ([key], false) = (calls.as_slice(), msg.method() == Some("ping")) {
            let key = key.clone();
            let entry = st.pending.get(&key)?.clone();
            st.pending.detach_client(&key);
            let agg = st.agg.as_mut()?;
            tracing::info!(upstream = %agg.name(up), method = ?msg.method(), id = %entry.client_id, "a server request for a 2026-07-28 client: its call answers input_required");
            let bytes = agg.inputs.park(key, &entry.client_id, gen, msg)?;
            return Some(Self::delivery(st, entry.session, bytes));
        }
        let reply = agg.refuse_server_request(up, msg)?;
        st.upstreams[up.0 as usize].push_for(gen, reply);
        Some(None)
    }

    /// The client retried a parked call: the server gets the client's answer and the
    /// call goes on under the retry's id (or the retry gets how the call ended meanwhile).
    fn resume(&self, st: &mut State, retry: &Message, token: &str) -> ClientDecision {
        let Some(id) = retry.id().cloned() else {
            return ClientDecision::Drop;
        };
        let Some(resumed) = st.agg.as_mut().and_then(|a| a.inputs.resume(token, retry)) else {
            return ClientDecision::Drop;
        };
        match resumed {
            Resume::Ended(bytes) => match Message::parse(bytes) {
                Ok(m) => ClientDecision::Reply(m.with_id(&id).into_raw()),
                Err(_) => ClientDecision::Drop,
            },
            Resume::Answer { key, gen, reply } => {
                if !st.pending.attach_client(&key, id.clone()) {
                    return ClientDecision::Reply(in_use(&id).to_response(Some(&id)));
                }
                st.upstreams[key.0 .0 as usize].push_for(gen, reply);
                ClientDecision::Accepted
            }
        }
    }

    /// A server's notification, as the client should see it.
    pub(super) fn agg_from_server(st: &State, up: UpstreamId, msg: Message) -> Option<Message> {
        match st.agg.as_ref() {
            Some(agg) => agg.from_server(up, msg),
            None => Some(msg),
        }
    }
}

fn availability(st: &State) -> smallvec::SmallVec<[Avail; 8]> {
    st.upstreams
        .iter()
        .map(|u| match u.link {
            Link::Up => Avail::Up,
            Link::Down => Avail::Down,
            Link::Failed(_) => Avail::Failed,
        })
        .collect()
}

/// A notification the core sends on its own; dropped (and logged) when the client's
/// queue is full rather than waiting under the lock.
pub(super) fn notify_now(d: Option<Delivery>) {
    if let Some(d) = d {
        if d.tx.try_send(d.bytes).is_err() {
            tracing::warn!("client queue full: a list_changed notification was not sent");
        }
    }
}
