//! One upstream as the core sees it: its readiness, its live connections (one, or a
//! pool's several, each on an endpoint lane), its outbox (owned here in every state, so
//! writers pull and nothing blocks the client reader) and its session. Plain data; the
//! core's methods change it under the lock (`dispatch.rs` decides which connection takes
//! what).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use super::admission::Limiter;
use super::dispatch::Lane;
use super::reconnects::Reconnects;
use super::session::UpstreamSession;
use super::SessionId;
use crate::wire::{Id, Kind, Message, RouterError};

/// Readiness of one upstream.
#[derive(Debug)]
pub enum Link {
    /// Not (yet) able to take messages: they wait in the outbox.
    Down,
    /// At least one connection (`Upstream::conns`) is pulling from the outbox.
    Up,
    /// Gave up: requests are answered at once with this error.
    Failed(RouterError),
}

/// The request ids an outbox entry carries (so a withdrawn request can be found).
#[derive(Debug)]
pub enum Tracked {
    None,
    One(Id),
    /// A JSON-RPC batch's request members.
    Many(Box<[Id]>),
}

/// A message waiting for a writer.
#[derive(Debug)]
pub struct Queued {
    pub msg: Message,
    pub tracked: Tracked,
    /// Meant for that connection only (a client's answer to its server request, a
    /// cancellation of a request it carried): dropped if another one pulls it.
    pub only_gen: Option<u64>,
    /// Not to be taken before then (a request waiting for its rate-limit token).
    pub not_before: Option<Instant>,
    /// Only connections on lanes with one of these tags may take it (namespace routing).
    pub tags: Option<Arc<[Box<str>]>>,
}

impl Queued {
    /// A message for whichever connection pulls it, at once.
    pub fn new(msg: Message, tracked: Tracked) -> Self {
        Self {
            msg,
            tracked,
            only_gen: None,
            not_before: None,
            tags: None,
        }
    }

    /// How many requests it carries (what the concurrency limit counts).
    pub fn requests(&self) -> usize {
        match &self.tracked {
            Tracked::None => 0,
            Tracked::One(_) => 1,
            Tracked::Many(ids) => ids.len(),
        }
    }
}

/// One live connection of an upstream.
#[derive(Debug)]
pub struct ConnSlot {
    pub gen: u64,
    /// Which endpoint lane it is on (an index into `Upstream::lanes`).
    pub lane: u16,
    /// Wakes its writer.
    pub wake: Arc<Notify>,
    pub opened_at: Instant,
    /// When it last took a request (what a pool's idle time counts from).
    pub last_used: Instant,
    /// Takes no new requests: it is closed once idle.
    pub draining: bool,
    /// Since when it has carried requests without answering any (`None`: idle, or it
    /// just answered); tracked only with a failover timeout.
    pub stalled_since: Option<Instant>,
    /// Opened with the client's session in place (replayed), or it carried the
    /// `initialize` that made it.
    pub primed: bool,
    /// Opened before the session existed and did not carry it: to be closed once idle
    /// and opened again (which replays the session).
    pub renew: bool,
}

#[derive(Debug)]
pub struct Upstream {
    pub name: Arc<str>,
    pub link: Link,
    /// Live connections, oldest first; each has its own generation.
    pub conns: Vec<ConnSlot>,
    /// The next connection's generation (never reused, so a stale one is told apart).
    pub next_gen: u64,
    pub outbox: VecDeque<Queued>,
    pub session: UpstreamSession,
    /// The endpoints connections go to (at least one), their breakers and weights.
    pub lanes: Vec<Lane>,
    /// Set when choosing a connection needs the dispatcher (several connections, a
    /// breaker, tags); otherwise the one connection takes everything.
    pub dispatching: bool,
    /// Spreads requests over the lanes.
    pub balancer: crate::resilience::balance::Balancer,
    /// The connection chosen for the first request that waits (see `dispatch`).
    pub designated: Option<u64>,
    /// Rotates which connection a push wakes when none is designated.
    pub wake_turn: usize,
    /// Set when a request waits behind lanes whose breakers are all open: the timer
    /// answers what waits (`circuit_open`).
    pub circuit_flush: bool,
    /// With a pool: how long a request may wait for a connection.
    pub acquire_timeout: Option<std::time::Duration>,
    /// With several lanes: a connection that has carried requests this long without
    /// answering any gets no more (`gateway_pool.load_balancer.failover_timeout`).
    pub failover: Option<std::time::Duration>,
    /// Namespace routing: which lanes (by tag) a request may go to.
    pub rules: Option<Arc<[super::namespace::Rule]>>,
    /// The client session its server-initiated messages go to.
    pub owner: Option<SessionId>,
    /// While set, how many more messages the writer may take (aggregation: the client's
    /// requests wait behind the router's probe of which era this server speaks).
    pub gate: Option<usize>,
    /// Requests in flight at once, at most (`max_concurrent_requests`); more wait here.
    pub max_concurrent: usize,
    /// The server's own rate limit.
    pub rate: Option<Limiter>,
    /// When the first request held back for its rate-limit turn may go.
    pub next_ready: Option<Instant>,
    /// Its retries so far, and when its latest connection went up.
    pub reconnects: Reconnects,
}

impl Upstream {
    pub fn new(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            link: Link::Down,
            conns: Vec::new(),
            next_gen: 0,
            outbox: VecDeque::new(),
            session: UpstreamSession::default(),
            lanes: vec![Lane::default()],
            dispatching: false,
            balancer: Default::default(),
            designated: None,
            wake_turn: 0,
            circuit_flush: false,
            acquire_timeout: None,
            rules: None,
            failover: None,
            owner: None,
            gate: None,
            max_concurrent: usize::MAX,
            rate: None,
            next_ready: None,
            reconnects: Reconnects::default(),
        }
    }

    /// Queues `bytes` (a message the router wrote: an answer or notice for the server)
    /// for connection `gen` only; a writer of another connection drops it.
    pub fn push_for(&mut self, gen: u64, bytes: bytes::Bytes) {
        // The router's own messages always parse; a failure would only lose this one.
        if let Ok(msg) = Message::parse(bytes) {
            self.push(Queued {
                only_gen: Some(gen),
                ..Queued::new(msg, Tracked::None)
            });
        }
    }

    /// Queues `q` first: before anything already waiting.
    pub fn push_front(&mut self, q: Queued) {
        self.outbox.push_front(q);
        self.wake();
    }

    /// Lets only the next `n` messages through (`None`: everything).
    pub fn set_gate(&mut self, n: Option<usize>) {
        self.gate = n;
        self.wake();
    }

    pub fn is_up(&self) -> bool {
        matches!(self.link, Link::Up)
    }

    /// Whether connection `gen` is live.
    pub fn has_conn(&self, gen: u64) -> bool {
        self.conns.iter().any(|c| c.gen == gen)
    }

    pub fn conn(&self, gen: u64) -> Option<&ConnSlot> {
        self.conns.iter().find(|c| c.gen == gen)
    }

    pub fn push(&mut self, q: Queued) {
        let only = q.only_gen;
        self.outbox.push_back(q);
        match only {
            // Only that connection's writer can take it.
            Some(gen) if self.conns.len() > 1 => self.wake_conn(gen),
            _ => self.wake(),
        }
    }

    /// Wakes the writer that should look at the outbox: the only one, the designated
    /// one, or (several, none chosen yet) the next in turn, which designates and passes
    /// the wake on.
    pub fn wake(&mut self) {
        let target = match (self.conns.len(), self.designated) {
            (0, _) => return,
            (1, _) => 0,
            (n, Some(gen)) => self.conns.iter().position(|c| c.gen == gen).unwrap_or(0) % n,
            (n, None) => {
                self.wake_turn = self.wake_turn.wrapping_add(1);
                self.wake_turn % n
            }
        };
        self.conns[target].wake.notify_one();
    }

    /// A request in flight ended: a writer looks again if something waits that a slot
    /// (the concurrency limit, a pooled connection, a designation) may have held back.
    pub fn slot_freed(&mut self) {
        if !self.outbox.is_empty() && (self.max_concurrent != usize::MAX || self.dispatching) {
            self.wake();
        }
    }

    /// Wakes connection `gen`'s writer.
    pub fn wake_conn(&self, gen: u64) {
        if let Some(c) = self.conn(gen) {
            c.wake.notify_one();
        }
    }

    /// Wakes every writer (the state they wait on changed for all of them).
    pub fn wake_all(&self) {
        for c in &self.conns {
            c.wake.notify_one();
        }
    }

    /// Takes request `id` out of the outbox (the server never sees it): a single request
    /// goes; a batch loses that member, and goes once nothing is left in it.
    pub fn withdraw(&mut self, id: &Id) {
        self.outbox.retain_mut(|q| match &mut q.tracked {
            Tracked::One(one) => one != id,
            Tracked::Many(ids) if ids.contains(id) => {
                let rest = q
                    .msg
                    .batch_keeping(|i| i.kind != Kind::Request || i.id.as_ref() != Some(id))
                    .and_then(|bytes| Message::parse(bytes).ok());
                match rest {
                    Some(msg) => {
                        q.msg = msg;
                        *ids = ids.iter().filter(|i| *i != id).cloned().collect();
                        true
                    }
                    None => false,
                }
            }
            _ => true,
        });
    }
}
