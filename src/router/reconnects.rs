//! What the core keeps about each upstream's reconnects, for others to read: how many
//! times it was retried (restarted, or reconnected after a loss or a failed connect) — the
//! source of `mcp_router_connection_retries_total` — and when the latest connection on
//! each of its endpoint lanes came up, which tells the pacing a lane that recovered from
//! one that failed again at once. Written through the upstream's [`Port`](super::Port), read through the [`Core`];
//! when to retry and when to give up is `upstream::reconnect`'s decision, not the core's.

use std::time::Instant;

use super::{Core, UpstreamId};

/// One upstream's reconnect record.
#[derive(Debug, Default)]
pub struct Reconnects {
    /// Retries since start, never reset (a counter: a successful connection does not undo
    /// the retries that led to it).
    retries: u64,
    /// Per endpoint lane: when its latest connection (or process) went up.
    up_since: Vec<Option<Instant>>,
}

impl Core {
    /// How many times upstream `up` was retried since start: every restart of its process
    /// and every reconnect attempt, after a loss or a failed connect.
    pub fn connection_retries(&self, up: UpstreamId) -> u64 {
        self.lock()
            .upstreams
            .get(up.0 as usize)
            .map_or(0, |u| u.reconnects.retries)
    }

    /// Upstream `up` is about to be retried; returns its retries so far, this one included.
    pub(super) fn count_retry(&self, up: UpstreamId) -> u64 {
        let mut st = self.lock();
        let Some(u) = st.upstreams.get_mut(up.0 as usize) else {
            return 0;
        };
        u.reconnects.retries += 1;
        u.reconnects.retries
    }

    /// A connection of upstream `up` on endpoint lane `lane` went up at `at`.
    pub(super) fn note_up(&self, up: UpstreamId, lane: u16, at: Instant) {
        if let Some(u) = self.lock().upstreams.get_mut(up.0 as usize) {
            let lanes = &mut u.reconnects.up_since;
            let i = usize::from(lane);
            if lanes.len() <= i {
                lanes.resize(i + 1, None);
            }
            lanes[i] = Some(at);
        }
    }

    /// When the latest connection of upstream `up` on lane `lane` went up (`None`: none
    /// ever did).
    pub(super) fn up_since(&self, up: UpstreamId, lane: u16) -> Option<Instant> {
        self.lock().upstreams.get(up.0 as usize).and_then(|u| {
            u.reconnects
                .up_since
                .get(usize::from(lane))
                .copied()
                .flatten()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::router::Limits;

    fn core() -> Arc<Core> {
        let core = Arc::new(Core::new(Limits {
            request_timeout: Duration::from_secs(30),
            max_queued_requests: 10,
        }));
        core.add_upstream("a");
        core.add_upstream("b");
        core
    }

    #[test]
    fn retries_are_counted_per_upstream_through_its_port() {
        let core = core();
        let (a, b) = (core.port(UpstreamId(0)), core.port(UpstreamId(1)));
        assert_eq!(core.connection_retries(a.id()), 0);
        assert_eq!(a.count_retry(), 1);
        assert_eq!(a.clone().count_retry(), 2);
        // Another handle on the same upstream counts into the same counter.
        assert_eq!(core.port(UpstreamId(0)).count_retry(), 3);
        assert_eq!(b.count_retry(), 1);
        assert_eq!(core.connection_retries(a.id()), 3);
        assert_eq!(core.connection_retries(b.id()), 1);
        // A connection coming up does not reset the counter.
        a.connected();
        assert_eq!(core.connection_retries(a.id()), 3);
        assert_eq!(
            core.connection_retries(UpstreamId(7)),
            0,
            "no such upstream"
        );
    }

    #[test]
    fn up_since_is_when_the_latest_connection_went_up() {
        let core = core();
        let a = core.port(UpstreamId(0));
        assert_eq!(a.up_since(), None);
        let before = Instant::now();
        a.connected();
        let first = a.up_since().expect("up");
        assert!(first >= before);
        a.connected();
        assert!(a.up_since().expect("up") >= first);
        assert_eq!(core.port(UpstreamId(1)).up_since(), None);
        // Each endpoint lane has its own.
        let lane2 = a.on_lane(2);
        assert_eq!(lane2.up_since(), None);
        lane2.connected();
        assert!(lane2.up_since().expect("up") >= first);
        assert_eq!(a.on_lane(1).up_since(), None);
    }
}
