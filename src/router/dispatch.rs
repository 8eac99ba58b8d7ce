//! Which connection of an upstream takes the next request, and the circuit breakers that
//! say whether an endpoint may take any: an upstream's connections sit on endpoint
//! *lanes* (one lane for a server; one per gateway endpoint), each lane with its weight,
//! priority, tags and optional breaker.
//!
//! With one connection and no breaker or tags nothing here runs: that connection takes
//! everything in order (the pass-through fast path). Otherwise the first request waiting
//! is *designated* to one connection — the lane by the balancing strategy among lanes
//! that have a connection, whose breaker admits and whose tags match, then the lane's
//! connection with the fewest requests in flight — and only that connection's writer may
//! take it (the others are woken in turn). Breakers count transport failures (a lost
//! connection, a failed connect, a reply later than `timeout_duration`, an expiry, an
//! HTTP 5xx) and successes (any reply, a JSON-RPC error included); when every lane's is
//! open, requests are refused at once with `circuit_open` and what waits is answered by
//! the timer. Decisions only, under the core's lock, with the caller's clock; the
//! machines are `resilience::{breaker, balance}`'s. No I/O.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::pending::{Entry, SentTo, Stage};
use super::upstreams::{Tracked, Upstream};
use super::{Core, Delivery, State, UpstreamId};
use crate::resilience::balance::{Balancer, Candidate, Strategy};
use crate::resilience::breaker::{Admit, Breaker, BreakerConfig, Probe, State as BreakerState};
use crate::wire::{ErrorKind, RouterError};

/// One endpoint's lane as configured.
#[derive(Debug, Clone, Default)]
pub struct LaneConfig {
    /// What logs and errors call it (a URL without secrets, or empty for a server).
    pub label: String,
    pub breaker: Option<BreakerConfig>,
    pub weight: u32,
    pub priority: i64,
    /// Namespace-routing tags it serves.
    pub tags: Vec<String>,
    /// With a pool: how long a request may wait for one of its connections.
    pub acquire_timeout: Option<Duration>,
}

/// One lane's live state.
#[derive(Debug, Default)]
pub struct Lane {
    pub label: Arc<str>,
    pub breaker: Option<Breaker>,
    pub weight: u32,
    pub priority: i64,
    pub tags: Box<[Box<str>]>,
    /// Its connections come from a pool (idle times are tracked).
    pub pooled: bool,
    /// Gave up connecting (`reconnect.max_attempts`).
    pub gone: bool,
    /// Wakes its pool driver when a request it could take waits for a free connection.
    pub pressure: Arc<tokio::sync::Notify>,
}

impl Lane {
    /// Whether its breaker would let a request through at `now` (without taking a probe).
    /// Whether its breaker is open (refusing) at `now`; half-open is not: requests wait
    /// for a probe slot there.
    fn open(&self, now: Instant) -> bool {
        self.breaker
            .as_ref()
            .is_some_and(|b| matches!(b.state(), BreakerState::Open { until } if now < until))
    }

    fn admits(&self, now: Instant) -> bool {
        self.breaker.as_ref().is_none_or(|b| b.would_admit(now))
    }

    fn serves(&self, tags: Option<&Arc<[Box<str>]>>) -> bool {
        tags.is_none_or(|want| want.iter().any(|t| self.tags.contains(t)))
    }
}

/// How a sent request ended, for its lane's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A reply came (a JSON-RPC error is a reply).
    Answered,
    /// The transport failed it (lost, refused, HTTP 5xx, no reply in time).
    Failed,
    /// It ended without saying anything about the peer (cancelled, shutdown, too large).
    Void,
}

/// What the dispatcher says about the first request waiting, for connection `gen`.
pub(super) enum Turn {
    /// Take it (its breaker probe, if it is one).
    Take(Option<SentTo>),
    /// Another connection is to take it (woken), or none can now: hold it.
    Hold,
}

impl Core {
    /// The endpoint lanes of upstream `up` and how requests are spread over them (call
    /// before traffic starts). An upstream has one lane unless set here.
    pub fn set_lanes(&self, up: UpstreamId, lanes: Vec<LaneConfig>, strategy: Strategy) {
        let mut st = self.lock();
        let Some(u) = st.upstreams.get_mut(up.0 as usize) else {
            return;
        };
        u.acquire_timeout = lanes.iter().filter_map(|l| l.acquire_timeout).min();
        u.lanes = lanes
            .into_iter()
            .map(|l| Lane {
                label: Arc::from(l.label),
                breaker: l.breaker.map(Breaker::new),
                weight: l.weight,
                priority: l.priority,
                tags: l.tags.into_iter().map(Into::into).collect(),
                pooled: l.acquire_timeout.is_some(),
                gone: false,
                pressure: Default::default(),
            })
            .collect();
        if u.lanes.is_empty() {
            u.lanes.push(Lane::default());
        }
        u.balancer = Balancer::new(strategy);
        refresh(u);
    }

    /// With several lanes, how long a connection may carry requests without answering any
    /// before it is passed over (it still gets its replies; it takes new requests again
    /// once it answers).
    pub fn set_failover_timeout(&self, up: UpstreamId, timeout: Duration) {
        let mut st = self.lock();
        if let Some(u) = st.upstreams.get_mut(up.0 as usize) {
            u.failover = Some(timeout);
        }
    }

    /// The state of each lane's breaker of `up` (`None`: that lane has none).
    pub fn breaker_states(&self, up: UpstreamId) -> Vec<Option<BreakerState>> {
        let st = self.lock();
        st.upstreams
            .get(up.0 as usize)
            .map(|u| {
                u.lanes
                    .iter()
                    .map(|l| l.breaker.as_ref().map(|b| b.state()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A connect attempt on `lane` of `up` failed: its breaker counts it.
    pub fn connect_failed(&self, up: UpstreamId, lane: u16) {
        let mut st = self.lock();
        let moved = st
            .upstreams
            .get_mut(up.0 as usize)
            .is_some_and(|u| record(u, lane, None, Outcome::Failed, Instant::now()));
        if moved {
            self.breaker_moved(&mut st, up);
        }
    }

    /// The lanes (by tag) request `msg` may go to under `u`'s namespace rules (`None`:
    /// any); refused when no lane has one of them.
    pub(super) fn route_tags(
        u: &Upstream,
        msg: &crate::wire::Message,
    ) -> Result<Option<Arc<[Box<str>]>>, RouterError> {
        let Some(rules) = &u.rules else {
            return Ok(None);
        };
        let Some(tags) = super::namespace::tags_for(rules, msg) else {
            return Ok(None);
        };
        if u.lanes.iter().any(|l| l.serves(Some(&tags))) {
            return Ok(Some(tags));
        }
        Err(RouterError::new(
            ErrorKind::UpstreamUnavailable,
            format!(
                "no endpoint of server '{}' has the tag{} {} that namespace routing sends {} to (gateway_pool.namespace_routing, endpoints[].tags)",
                u.name,
                if tags.len() == 1 { "" } else { "s" },
                tags.join(", "),
                msg.method().unwrap_or("this request")
            ),
        ))
    }

    /// The refusal for a new request to `up` when every lane's breaker is open.
    pub(super) fn circuit_refusal(u: &Upstream, now: Instant) -> Option<RouterError> {
        if !u.dispatching || !u.lanes.iter().all(|l| l.open(now)) {
            return None;
        }
        Some(circuit_open(u, now))
    }

    /// Whether connection `gen` is to take `q`, the first request waiting on `up`.
    pub(super) fn turn(
        st: &mut State,
        up: UpstreamId,
        gen: u64,
        tags: Option<Arc<[Box<str>]>>,
        now: Instant,
    ) -> Turn {
        let u = &mut st.upstreams[up.0 as usize];
        // A designation made for an earlier first request (since cancelled, or answered
        // by the timer) stands only while its connection may take this one.
        let still = |g: &u64| {
            u.conn(*g).is_some_and(|c| {
                let l = &u.lanes[c.lane as usize];
                takes(l, c, &st.pending, up)
                    && l.admits(now)
                    && l.serves(tags.as_ref())
                    && !stalled(c, u.failover.filter(|_| u.lanes.len() > 1), now)
            })
        };
        let chosen = match u.designated.filter(still) {
            Some(g) => Some(g),
            None => designate(u, &st.pending, up, tags.as_ref(), now),
        };
        let Some(chosen) = chosen else {
            u.designated = None;
            // A pool with room opens another connection for it.
            for l in u
                .lanes
                .iter()
                .filter(|l| l.pooled && l.serves(tags.as_ref()))
            {
                l.pressure.notify_one();
            }
            if u.lanes.iter().all(|l| l.open(now)) {
                // Nothing will take it until a breaker recovers: answered now instead.
                u.circuit_flush = true;
            }
            return Turn::Hold;
        };
        if chosen != gen {
            u.designated = Some(chosen);
            u.wake_conn(chosen);
            return Turn::Hold;
        }
        u.designated = None;
        let failover = u.failover.is_some() && u.lanes.len() > 1;
        let lane = match u.conns.iter_mut().find(|c| c.gen == gen) {
            Some(c) => {
                c.last_used = now;
                if failover && c.stalled_since.is_none() {
                    c.stalled_since = Some(now);
                }
                c.lane
            }
            None => 0,
        };
        let Some(l) = u.lanes.get_mut(lane as usize) else {
            return Turn::Take(None);
        };
        let Some(b) = l.breaker.as_mut() else {
            return Turn::Take(None);
        };
        let (admit, transition) = b.admit(now);
        log_transition(&u.name, &l.label, transition.as_ref());
        match admit {
            Admit::Yes | Admit::Probe(_) => Turn::Take(Some(SentTo {
                lane,
                probe: admit.probe(),
                at: now,
            })),
            Admit::Rejected { .. } => {
                // Another lane may take it: its writers look again.
                u.wake_all();
                Turn::Hold
            }
        }
    }

    /// Request `entry` of `up` ended with `outcome`: its lane's breaker counts it.
    pub(super) fn account(&self, st: &mut State, up: UpstreamId, entry: &Entry, outcome: Outcome) {
        let Some(to) = entry.sent else { return };
        let now = Instant::now();
        let u = &mut st.upstreams[up.0 as usize];
        let late = u
            .lanes
            .get(to.lane as usize)
            .and_then(|l| l.breaker.as_ref())
            .is_some_and(|b| now.saturating_duration_since(to.at) > b.config().timeout_duration);
        let outcome = match outcome {
            // Answered, but later than the breaker waits: the peer is struggling.
            Outcome::Answered if late => Outcome::Failed,
            o => o,
        };
        if record(u, to.lane, to.probe, outcome, now) {
            self.breaker_moved(st, up);
        }
    }

    /// Connection `gen` (on `lane`) of `up` was lost: one transport failure for its lane,
    /// and the probes it carried end with it.
    pub(super) fn account_lost(&self, st: &mut State, up: UpstreamId, lane: u16, probes: &[Probe]) {
        let now = Instant::now();
        let u = &mut st.upstreams[up.0 as usize];
        let mut probes = probes.iter().copied();
        let moved = record(u, lane, probes.next(), Outcome::Failed, now);
        for p in probes {
            if let Some(b) = u
                .lanes
                .get_mut(lane as usize)
                .and_then(|l| l.breaker.as_mut())
            {
                b.cancel(p);
            }
        }
        if moved {
            self.breaker_moved(st, up);
        }
    }

    /// A breaker of `up` changed state: with every lane open, what waits is answered (by
    /// the timer, which can deliver); otherwise the writers look again.
    fn breaker_moved(&self, st: &mut State, up: UpstreamId) {
        let u = &mut st.upstreams[up.0 as usize];
        let now = Instant::now();
        if !u.outbox.is_empty() && u.lanes.iter().all(|l| l.open(now)) {
            u.circuit_flush = true;
            self.deadline_changed.notify_one();
        }
        u.wake_all();
    }

    /// Whether the timer has requests to answer because every breaker of their upstream
    /// is open (then it runs at once).
    pub(super) fn circuit_due(st: &State) -> bool {
        st.upstreams.iter().any(|u| u.circuit_flush)
    }

    /// Answers the requests waiting on upstreams whose every breaker is open.
    pub(super) fn flush_open(&self, st: &mut State, now: Instant, out: &mut Vec<Delivery>) {
        for i in 0..st.upstreams.len() {
            let u = &mut st.upstreams[i];
            if !std::mem::take(&mut u.circuit_flush) || !u.lanes.iter().all(|l| l.open(now)) {
                continue;
            }
            let err = circuit_open(u, now);
            let up = UpstreamId(i as u32);
            let mut ids = Vec::new();
            u.outbox.retain(|q| match &q.tracked {
                Tracked::None => true,
                Tracked::One(id) => {
                    ids.push(id.clone());
                    false
                }
                Tracked::Many(many) => {
                    ids.extend(many.iter().cloned());
                    false
                }
            });
            tracing::warn!(upstream = %u.name, waiting = ids.len(), "{}", err.message);
            for id in ids {
                let key = (up, id);
                let Some(e) = st.pending.remove(&key) else {
                    continue;
                };
                if e.stage != Stage::Queued {
                    continue;
                }
                let bytes = err.to_response(Some(&e.client_id));
                out.extend(self.settle(st, &key, e.session, bytes, true));
            }
        }
    }
}

/// Whether the dispatcher must choose (several connections, a breaker, several lanes).
pub(super) fn refresh(u: &mut Upstream) {
    u.dispatching = u.conns.len() > 1
        || u.lanes.len() > 1
        || u.lanes.iter().any(|l| l.breaker.is_some() || l.pooled);
}

/// The connection to take `q`: the lane by strategy, then its least busy connection
/// (among equals the most recently used: sequential traffic stays on one warm connection,
/// and a pool's extras go idle and are retired).
fn designate(
    u: &mut Upstream,
    pending: &super::pending::Pending,
    up: UpstreamId,
    tags: Option<&Arc<[Box<str>]>>,
    now: Instant,
) -> Option<u64> {
    let failover = u.failover.filter(|_| u.lanes.len() > 1);
    let candidates: smallvec::SmallVec<[Candidate; 4]> = u
        .lanes
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut any = false;
            let mut in_flight = 0;
            for c in u.conns.iter().filter(|c| c.lane as usize == i) {
                in_flight += pending.sent_on(up, c.gen);
                any |= takes(l, c, pending, up) && !stalled(c, failover, now);
            }
            Candidate {
                weight: l.weight,
                priority: l.priority,
                in_flight,
                healthy: any && l.admits(now) && l.serves(tags),
            }
        })
        .collect();
    let lane = if candidates.len() == 1 {
        candidates[0].healthy.then_some(0)
    } else {
        u.balancer.pick(&candidates)
    }?;
    u.conns
        .iter()
        .filter(|c| {
            c.lane as usize == lane
                && takes(&u.lanes[lane], c, pending, up)
                && !stalled(c, failover, now)
        })
        .min_by_key(|c| (pending.sent_on(up, c.gen), std::cmp::Reverse(c.last_used)))
        .map(|c| c.gen)
}

/// Whether connection `c` on lane `l` may take another request: not draining, and in a
/// pool only while it carries none (a pooled connection is one request's at a time, as
/// in the original: the gateway handles a connection's messages one by one, so more in
/// parallel needs more connections, and a request waits for a free one up to
/// `acquire_timeout_ms`).
fn takes(
    l: &Lane,
    c: &super::upstreams::ConnSlot,
    pending: &super::pending::Pending,
    up: UpstreamId,
) -> bool {
    !c.draining && (!l.pooled || pending.sent_on(up, c.gen) == 0)
}

/// Whether connection `c` has carried requests for `failover` without answering any (a
/// frozen endpoint that still accepts what is written): passed over until it answers.
fn stalled(c: &super::upstreams::ConnSlot, failover: Option<Duration>, now: Instant) -> bool {
    match (failover, c.stalled_since) {
        (Some(f), Some(since)) => now.saturating_duration_since(since) >= f,
        _ => false,
    }
}

/// A reply came on connection `gen` of `up`: it is making progress (see [`stalled`]).
pub(super) fn progressed(st: &mut State, up: UpstreamId, gen: u64) {
    let u = &mut st.upstreams[up.0 as usize];
    if u.failover.is_none() {
        return;
    }
    let still_busy = st.pending.sent_on(up, gen) > 0;
    if let Some(c) = u.conns.iter_mut().find(|c| c.gen == gen) {
        c.stalled_since = still_busy.then(Instant::now);
    }
}

/// Counts `outcome` on `lane`'s breaker; whether its state changed.
fn record(
    u: &mut Upstream,
    lane: u16,
    probe: Option<Probe>,
    outcome: Outcome,
    now: Instant,
) -> bool {
    let Some(l) = u.lanes.get_mut(lane as usize) else {
        return false;
    };
    let Some(b) = l.breaker.as_mut() else {
        return false;
    };
    let transition = match outcome {
        Outcome::Answered => b.on_success(now, probe),
        Outcome::Failed => b.on_failure(now, probe),
        Outcome::Void => {
            if let Some(p) = probe {
                b.cancel(p);
            }
            None
        }
    };
    log_transition(&u.name, &l.label, transition.as_ref());
    transition.is_some()
}

fn log_transition(name: &str, lane: &str, t: Option<&crate::resilience::breaker::Transition>) {
    let Some(t) = t else { return };
    let at = if lane.is_empty() {
        String::new()
    } else {
        format!(" ({lane})")
    };
    match t.to {
        BreakerState::Open { until } => {
            let secs = until
                .saturating_duration_since(Instant::now())
                .as_secs_f64();
            tracing::warn!(upstream = %name, from = t.from.name(), "circuit breaker opened for server '{name}'{at}: requests are refused for {secs:.1}s");
        }
        BreakerState::HalfOpen => {
            tracing::info!(upstream = %name, "circuit breaker half-open for server '{name}'{at}: letting probe requests through");
        }
        BreakerState::Closed => {
            tracing::info!(upstream = %name, "circuit breaker closed for server '{name}'{at}: traffic resumes");
        }
    }
}

/// `circuit_open` for `u`: which server, and when it is tried again (the earliest lane).
fn circuit_open(u: &Upstream, now: Instant) -> RouterError {
    let retry_at = u
        .lanes
        .iter()
        .filter_map(|l| match l.breaker.as_ref()?.state() {
            BreakerState::Open { until } => Some(until),
            _ => None,
        })
        .min()
        .unwrap_or(now);
    let wait = retry_at.saturating_duration_since(now);
    let when = SystemTime::now() + wait;
    let rfc = humantime::format_rfc3339_seconds(when);
    RouterError::new(
        ErrorKind::CircuitOpen,
        format!(
            "circuit breaker open for server '{}': too many transport failures; retrying in {} (at {rfc})",
            u.name,
            fmt_wait(wait)
        ),
    )
}

fn fmt_wait(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
