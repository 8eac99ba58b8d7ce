//! What may enter an upstream's outbox and when it may leave: the concurrency limit
//! (requests in flight per upstream; more wait in the outbox, their deadline running)
//! and the outbox bounds that go with it.
//!
//! Decisions only, under the core's lock; the counting itself is `pending`'s (every stage
//! change and removal happens there) and the holding back is `Core::pull`'s. No I/O, no
//! clock of its own.

use super::{Core, State, UpstreamId, LIVE_OUTBOX};

/// How one upstream admits requests.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Requests in flight at once, at most (`max_concurrent_requests`).
    pub max_concurrent: usize,
}

impl Core {
    /// How upstream `up` admits requests (call before traffic starts).
    pub fn set_admission(&self, up: UpstreamId, admission: Admission) {
        let mut st = self.lock();
        if let Some(u) = st.upstreams.get_mut(up.0 as usize) {
            u.max_concurrent = admission.max_concurrent.max(1);
        }
    }

    /// Messages `up`'s outbox may hold before a request is refused with `queue full`: the
    /// original's `max_queued_requests` while the upstream is down or every slot is
    /// taken (requests are waiting, as in the original's queue), else room for a writer
    /// that is merely behind.
    pub(super) fn outbox_limit(&self, st: &State, up: UpstreamId) -> usize {
        let u = &st.upstreams[up.0 as usize];
        let saturated = st.pending.sent(up) >= u.max_concurrent;
        if u.is_up() && !saturated {
            self.limits.max_queued_requests.max(LIVE_OUTBOX)
        } else {
            self.limits.max_queued_requests
        }
    }
}
