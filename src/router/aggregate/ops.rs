//! Fan-out requests: one client request answered from several upstreams' replies.
//!
//! A client's `initialize`, `server/discover`, `*/list` or `logging/setLevel` goes to
//! every server concerned, each copy under a router-owned id (a *part*, tracked in the
//! core's pending table like any request, so timeouts, lost connections and shutdown
//! settle it). This table only remembers which parts belong to which client request and
//! collects their replies; it answers "is the client request complete" (every part
//! settled, or its own deadline passed: one slow server must not hold the others'
//! answer for a whole request timeout). A part that settles after its request was answered
//! is a *late* part: the caller decides what it still means (a late `initialize` reply
//! still initializes that server). Pure bookkeeping: no I/O, no clock of its own.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use foldhash::HashMap;

use super::super::pending::Key;
use super::super::{SessionId, UpstreamId};
use crate::wire::Id;

/// One of the four lists the router merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    pub fn from_method(method: &str) -> Option<Self> {
        Some(match method {
            "tools/list" => Self::Tools,
            "prompts/list" => Self::Prompts,
            "resources/list" => Self::Resources,
            "resources/templates/list" => Self::Templates,
            _ => return None,
        })
    }

    /// The member of the result that holds the items.
    pub fn items_key(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
            Self::Templates => "resourceTemplates",
        }
    }

    /// The server capability that says the server has this list.
    pub fn capability(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources | Self::Templates => "resources",
        }
    }

    /// The member of each item that the router rewrites (`name` is prefixed; a URI is
    /// made unique only where two servers list the same one).
    pub fn key_field(self) -> &'static str {
        match self {
            Self::Tools | Self::Prompts => "name",
            Self::Resources => "uri",
            Self::Templates => "uriTemplate",
        }
    }
}

/// What a fan-out request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// The client's `initialize`: every server initialized with it, one merged answer.
    Initialize,
    /// `server/discover` (2026-07-28).
    Discover,
    /// A list, one page of every server that still has pages.
    List(ListKind),
    /// `logging/setLevel`: every server told, one empty result.
    SetLevel,
    /// `subscriptions/listen` (2026-07-28): one stream from every server's stream,
    /// answered only when every server ended its stream.
    Listen,
    /// The router initializing a server that came up after the client's handshake:
    /// nobody waits for an answer.
    Background,
    /// The router asking servers which era they speak (`server/discover`) for a
    /// 2026-07-28 client that did not ask itself: nobody waits for an answer.
    Probe,
}

impl OpKind {
    /// Started by the router, not by a client request: never answered.
    fn is_background(self) -> bool {
        matches!(self, OpKind::Background | OpKind::Probe)
    }
}

/// How one part ended.
#[derive(Debug, Clone)]
pub enum Part {
    /// The server's reply (a result or a JSON-RPC error), as it arrived.
    Reply(Bytes),
    /// The router answered for the server (timeout, connection lost, queue full…).
    Failed(Bytes),
}

impl Part {
    pub fn bytes(&self) -> &Bytes {
        match self {
            Part::Reply(b) | Part::Failed(b) => b,
        }
    }
}

/// One client request spread over several servers.
#[derive(Debug)]
pub struct Op {
    pub session: SessionId,
    pub client_id: Id,
    pub kind: OpKind,
    pub deadline: Instant,
    /// Parts not settled yet.
    outstanding: usize,
    /// Settled parts, in the order they settled.
    pub parts: Vec<(UpstreamId, Part)>,
    answered: bool,
}

/// An op ready to be answered: its parts, taken out of the table.
#[derive(Debug)]
pub struct Ready {
    pub session: SessionId,
    pub client_id: Id,
    pub kind: OpKind,
    pub parts: Vec<(UpstreamId, Part)>,
}

/// What settling a part led to.
#[derive(Debug)]
pub enum Settled {
    /// Not a part of any fan-out request.
    NotAPart,
    /// More parts to come.
    Waiting,
    /// Every part is in: answer the client.
    Complete(Ready),
    /// A part of a request already answered.
    Late(OpKind, SessionId, UpstreamId, Part),
}

type OpId = u64;

/// The fan-out requests in flight.
#[derive(Debug, Default)]
pub struct Ops {
    next: OpId,
    ops: HashMap<OpId, Op>,
    parts: HashMap<Key, OpId>,
    by_client: HashMap<(SessionId, Id), OpId>,
    deadlines: BTreeMap<(Instant, OpId), ()>,
}

impl Ops {
    /// Starts a fan-out request; add its parts with [`Ops::add_part`].
    pub fn start(
        &mut self,
        session: SessionId,
        client_id: Id,
        kind: OpKind,
        deadline: Instant,
    ) -> u64 {
        let id = self.next;
        self.next += 1;
        if !kind.is_background() {
            self.by_client.insert((session, client_id.clone()), id);
            self.deadlines.insert((deadline, id), ());
        }
        self.ops.insert(
            id,
            Op {
                session,
                client_id,
                kind,
                deadline,
                outstanding: 0,
                parts: Vec::new(),
                answered: kind.is_background(),
            },
        );
        id
    }

    pub fn add_part(&mut self, op: u64, key: Key) {
        if let Some(o) = self.ops.get_mut(&op) {
            o.outstanding += 1;
            self.parts.insert(key, op);
        }
    }

    pub fn is_part(&self, key: &Key) -> bool {
        // Every reply asks, and no fan-out is in flight is the common case: skip hashing.
        !self.parts.is_empty() && self.parts.contains_key(key)
    }

    /// The fan-out request `key` is a part of, and its kind.
    pub fn op_of(&self, key: &Key) -> Option<(u64, OpKind)> {
        let op = *self.parts.get(key)?;
        Some((op, self.ops.get(&op)?.kind))
    }

    /// Whether `session` has a fan-out request in flight under `id`.
    pub fn client_has(&self, session: SessionId, id: &Id) -> bool {
        !self.by_client.is_empty() && self.by_client.contains_key(&(session, id.clone()))
    }

    /// Whether a part of `kind` for `up` is still outstanding.
    pub fn has_outstanding(&self, up: UpstreamId, kind: OpKind) -> bool {
        self.parts
            .iter()
            .any(|(k, op)| k.0 == up && self.ops.get(op).is_some_and(|o| o.kind == kind))
    }

    /// If an op has no parts at all (nothing could be asked), it is complete now.
    pub fn complete_if_empty(&mut self, op: u64) -> Option<Ready> {
        let o = self.ops.get(&op)?;
        if o.outstanding > 0 {
            return None;
        }
        self.answer(op)
    }

    /// Part `key` ended with `part`.
    pub fn settle(&mut self, key: &Key, part: Part) -> Settled {
        let Some(op) = self.parts.remove(key) else {
            return Settled::NotAPart;
        };
        let Some(o) = self.ops.get_mut(&op) else {
            return Settled::NotAPart;
        };
        o.outstanding = o.outstanding.saturating_sub(1);
        if o.answered {
            let late = Settled::Late(o.kind, o.session, key.0, part);
            if o.outstanding == 0 {
                self.ops.remove(&op);
            }
            return late;
        }
        o.parts.push((key.0, part));
        if o.outstanding > 0 {
            return Settled::Waiting;
        }
        match self.answer(op) {
            Some(r) => Settled::Complete(r),
            None => Settled::Waiting,
        }
    }

    /// Marks `op` answered and hands out what it collected; parts still outstanding
    /// become late parts.
    fn answer(&mut self, op: u64) -> Option<Ready> {
        let o = self.ops.get_mut(&op)?;
        if o.answered {
            return None;
        }
        o.answered = true;
        self.by_client.remove(&(o.session, o.client_id.clone()));
        self.deadlines.remove(&(o.deadline, op));
        let ready = Ready {
            session: o.session,
            client_id: o.client_id.clone(),
            kind: o.kind,
            parts: std::mem::take(&mut o.parts),
        };
        if o.outstanding == 0 {
            self.ops.remove(&op);
        }
        Some(ready)
    }

    /// Requests whose own deadline has passed: answered with what they have.
    pub fn due(&mut self, now: Instant) -> Vec<Ready> {
        let due: Vec<OpId> = self
            .deadlines
            .range(..=(now, OpId::MAX))
            .map(|((_, op), ())| *op)
            .collect();
        due.into_iter().filter_map(|op| self.answer(op)).collect()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|(at, _)| *at)
    }

    /// The client cancelled its fan-out request `id`: nobody is answered, and the
    /// parts still outstanding are forgotten and returned (the caller withdraws them or
    /// tells their servers). `None` when `id` is no fan-out request of `session`.
    pub fn cancel(&mut self, session: SessionId, id: &Id) -> Option<Vec<Key>> {
        let op = self.by_client.get(&(session, id.clone())).copied()?;
        let _ = self.answer(op);
        let keys: Vec<Key> = self
            .parts
            .iter()
            .filter(|(_, o)| **o == op)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            self.parts.remove(k);
        }
        self.ops.remove(&op);
        Some(keys)
    }

    /// Fan-out requests still tracked (answered ones stay until their last part).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(n: u64) -> Id {
        Id::from_raw_json(&n.to_string())
    }

    fn key(up: u32, n: u64) -> Key {
        (UpstreamId(up), id(n))
    }

    #[test]
    fn completes_when_every_part_settled_and_late_parts_are_reported() {
        let now = Instant::now();
        let mut ops = Ops::default();
        let op = ops.start(
            SessionId(0),
            id(7),
            OpKind::Initialize,
            now + Duration::from_secs(1),
        );
        ops.add_part(op, key(0, 100));
        ops.add_part(op, key(1, 101));
        assert!(ops.client_has(SessionId(0), &id(7)));
        assert!(matches!(
            ops.settle(&key(0, 100), Part::Reply(Bytes::from_static(b"a"))),
            Settled::Waiting
        ));
        match ops.settle(&key(1, 101), Part::Reply(Bytes::from_static(b"b"))) {
            Settled::Complete(r) => {
                assert_eq!(r.parts.len(), 2);
                assert_eq!(r.client_id, id(7));
            }
            other => panic!("{other:?}"),
        }
        assert!(!ops.client_has(SessionId(0), &id(7)));
        assert_eq!(ops.len(), 0);
        assert!(matches!(
            ops.settle(&key(1, 101), Part::Reply(Bytes::new())),
            Settled::NotAPart
        ));
    }

    #[test]
    fn a_due_request_is_answered_with_what_it_has_and_the_rest_is_late() {
        let now = Instant::now();
        let mut ops = Ops::default();
        let op = ops.start(SessionId(0), id(1), OpKind::List(ListKind::Tools), now);
        ops.add_part(op, key(0, 10));
        ops.add_part(op, key(1, 11));
        assert!(matches!(
            ops.settle(&key(0, 10), Part::Reply(Bytes::from_static(b"x"))),
            Settled::Waiting
        ));
        assert_eq!(ops.next_deadline(), Some(now));
        let due = ops.due(now);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].parts.len(), 1);
        assert!(ops.due(now).is_empty());
        assert!(matches!(
            ops.settle(&key(1, 11), Part::Reply(Bytes::new())),
            Settled::Late(OpKind::List(ListKind::Tools), _, UpstreamId(1), _)
        ));
        assert_eq!(ops.len(), 0);
    }

    #[test]
    fn an_op_without_parts_completes_at_once() {
        let mut ops = Ops::default();
        let op = ops.start(SessionId(0), id(1), OpKind::SetLevel, Instant::now());
        assert!(ops.complete_if_empty(op).is_some());
        assert_eq!(ops.len(), 0);
    }

    #[test]
    fn a_cancelled_op_is_never_answered() {
        let mut ops = Ops::default();
        let op = ops.start(
            SessionId(0),
            id(1),
            OpKind::List(ListKind::Prompts),
            Instant::now(),
        );
        ops.add_part(op, key(0, 5));
        assert_eq!(ops.cancel(SessionId(0), &id(1)), Some(vec![key(0, 5)]));
        assert!(!ops.client_has(SessionId(0), &id(1)));
        assert!(matches!(
            ops.settle(&key(0, 5), Part::Reply(Bytes::new())),
            Settled::NotAPart
        ));
        assert_eq!(ops.len(), 0);
        assert_eq!(ops.cancel(SessionId(0), &id(1)), None);
    }
}
