//! An upstream's connections coming and going: a new one on an endpoint lane, one lost
//! or handed back, one draining before it is retired (a pool shrinking, a connection past
//! its lifetime), a lane that gave up, and the view a pool driver sizes its lane from.
//!
//! Only the bookkeeping of the live set lives here, under the core's lock; what a lost
//! connection's requests get is `Core::down`'s, who takes what is `dispatch`'s, and how
//! many connections to have is `resilience::pool`'s (driven by `upstream::pool`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::upstreams::{ConnSlot, Link};
use super::{aggregating, dispatch, Core, Delivery, State, UpstreamId};
use crate::resilience::pool::ConnView;
use crate::wire::RouterError;

/// One lane's connections and what waits, for its pool driver.
#[derive(Debug, Default)]
pub struct LaneView {
    pub conns: Vec<ConnView>,
    /// Requests waiting in the outbox.
    pub waiting: usize,
}

impl Core {
    /// Upstream `up` has a live connection (on its first lane): returns its generation.
    pub fn up(&self, up: UpstreamId) -> u64 {
        self.connect(up, 0).0
    }

    /// Upstream `up` has a new live connection on endpoint lane `lane`: its generation
    /// and what wakes its writer, which pulls.
    pub fn connect(&self, up: UpstreamId, lane: u16) -> (u64, Arc<Notify>) {
        let mut st = self.lock();
        let u = &mut st.upstreams[up.0 as usize];
        let first = u.conns.is_empty();
        let gen = u.next_gen;
        u.next_gen += 1;
        let wake = Arc::new(Notify::new());
        wake.notify_one();
        let now = Instant::now();
        let primed = u.session.handshake().is_some();
        u.conns.push(ConnSlot {
            gen,
            lane,
            wake: wake.clone(),
            opened_at: now,
            last_used: now,
            draining: false,
            primed,
            renew: false,
            stalled_since: None,
        });
        if !matches!(u.link, Link::Failed(_)) {
            u.link = Link::Up;
        }
        dispatch::refresh(u);
        if first {
            for d in self.agg_changed(&mut st, up, true, now) {
                aggregating::notify_now(Some(d));
            }
        }
        (gen, wake)
    }

    /// Takes connection `gen` out of `up`'s live set: its lane, or `None` when it was not
    /// live. The upstream is down once none is left.
    /// Returns its lane and whether it was draining (closed on purpose, not lost).
    pub(super) fn remove_conn(st: &mut State, up: UpstreamId, gen: u64) -> Option<(u16, bool)> {
        let u = &mut st.upstreams[up.0 as usize];
        let i = u.conns.iter().position(|c| c.gen == gen)?;
        let slot = u.conns.remove(i);
        if u.designated == Some(gen) {
            u.designated = None;
        }
        if u.conns.is_empty() && !matches!(u.link, Link::Failed(_)) {
            u.link = Link::Down;
        }
        dispatch::refresh(u);
        // What waited for this connection goes to another one.
        u.wake();
        Some((slot.lane, slot.draining))
    }

    /// The client's session now exists, made on connection `gen`: every other connection
    /// opened before it is renewed (closed once idle, opened again with the replay).
    pub(super) fn primed(u: &mut super::upstreams::Upstream, gen: u64) {
        for c in &mut u.conns {
            if c.gen == gen {
                c.primed = true;
            } else if !c.primed {
                c.renew = true;
                c.draining = true;
                c.wake.notify_one();
            }
        }
        if u.designated.is_some_and(|g| g != gen) {
            u.designated = None;
        }
    }

    /// Whether connection `gen` of `up` is to be renewed (see [`Core::primed`]).
    pub fn renew_due(&self, up: UpstreamId, gen: u64) -> bool {
        self.lock().upstreams[up.0 as usize]
            .conn(gen)
            .is_some_and(|c| c.renew)
    }

    /// Connection `gen` of `up` takes no new requests from now on (it is to be closed
    /// once idle); answers meant for it still reach it.
    pub fn drain(&self, up: UpstreamId, gen: u64) {
        let mut st = self.lock();
        let u = &mut st.upstreams[up.0 as usize];
        if let Some(c) = u.conns.iter_mut().find(|c| c.gen == gen) {
            c.draining = true;
        }
        if u.designated == Some(gen) {
            u.designated = None;
        }
        u.wake();
    }

    /// Lane `lane` of `up` will not connect again (its attempts ran out). Once every lane
    /// has, the upstream has failed: everything waiting gets `reason`.
    pub fn lane_failed(&self, up: UpstreamId, lane: u16, reason: RouterError) -> Vec<Delivery> {
        let all_gone = {
            let mut st = self.lock();
            let u = &mut st.upstreams[up.0 as usize];
            if let Some(l) = u.lanes.get_mut(lane as usize) {
                l.gone = true;
            }
            u.lanes.iter().all(|l| l.gone)
        };
        if all_gone {
            return self.failed(up, reason);
        }
        tracing::warn!(upstream = %self.lock().upstreams[up.0 as usize].name, "{}; the other endpoints carry on", reason.message);
        Vec::new()
    }

    /// Lane `lane` of `up` as its pool driver sees it.
    pub fn lane_view(&self, up: UpstreamId, lane: u16) -> LaneView {
        let st = self.lock();
        let u = &st.upstreams[up.0 as usize];
        LaneView {
            conns: u
                .conns
                .iter()
                .filter(|c| c.lane == lane)
                .map(|c| ConnView {
                    id: c.gen,
                    opened_at: c.opened_at,
                    last_used: c.last_used,
                    in_flight: st.pending.sent_on(up, c.gen),
                    healthy: !c.draining,
                    ready: true,
                })
                .collect(),
            waiting: u.outbox.iter().map(|q| q.requests()).sum(),
        }
    }

    /// What wakes lane `lane`'s pool driver when a request waits and none of the
    /// connections that could take it is free.
    pub fn pressure(&self, up: UpstreamId, lane: u16) -> Arc<Notify> {
        let st = self.lock();
        st.upstreams[up.0 as usize]
            .lanes
            .get(lane as usize)
            .map(|l| l.pressure.clone())
            .unwrap_or_default()
    }

    /// How long a request may wait for a pool's connection (`acquire_timeout_ms`).
    pub(super) fn acquire_timeout(st: &State, up: UpstreamId) -> Option<Duration> {
        st.upstreams[up.0 as usize].acquire_timeout
    }
}
