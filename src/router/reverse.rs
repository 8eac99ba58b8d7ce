//! Server→client requests in flight (sampling, elicitation, roots, ping from a server):
//! which upstream connection asked, under which id, and for which client session.
//!
//! Keyed by the id the client sees. That is the server's own id unless another upstream
//! already has a request under it, in which case the router gives it a router-owned id
//! (spliced in; restored on the way back). An entry belongs to one connection generation:
//! when that connection ends its entries go, so a client's late answer is dropped (and
//! logged) instead of reaching a new process or connection that may have its own request
//! under that id. Bounded: past `MAX_ENTRIES` the oldest is forgotten. No I/O.

use std::collections::BTreeMap;

use foldhash::HashMap;

use super::ids::Ids;
use super::{SessionId, UpstreamId};
use crate::wire::Id;

/// More unanswered server requests than this means the client ignores them.
pub const MAX_ENTRIES: usize = 4096;

/// Where a server→client request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub upstream: UpstreamId,
    pub gen: u64,
    /// The id the server used (the client may see another).
    pub server_id: Id,
    pub session: SessionId,
}

#[derive(Debug, Default)]
pub struct Reverse {
    entries: HashMap<Id, (Origin, u64)>,
    order: BTreeMap<u64, Id>,
    seq: u64,
}

impl Reverse {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records a server request; returns the id the client must see.
    pub fn record(&mut self, origin: Origin, ids: &Ids) -> Id {
        let client_id = if self.entries.contains_key(&origin.server_id) {
            ids.fresh("s2c")
        } else {
            origin.server_id.clone()
        };
        if self.entries.len() >= MAX_ENTRIES {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.entries.remove(&oldest);
                tracing::warn!(id = %oldest, "forgetting the oldest unanswered server request (the client answers none)");
            }
        }
        self.seq += 1;
        self.order.insert(self.seq, client_id.clone());
        self.entries.insert(client_id.clone(), (origin, self.seq));
        client_id
    }

    /// The client answered `client_id`: where the answer goes.
    pub fn take(&mut self, client_id: &Id) -> Option<Origin> {
        let (origin, seq) = self.entries.remove(client_id)?;
        self.order.remove(&seq);
        Some(origin)
    }

    /// The server withdrew its request `server_id` (its `notifications/cancelled`): the
    /// id the client knows it by, and the entry is gone (no answer is expected any more).
    /// A scan: server cancellations are rare and the table is bounded.
    pub fn withdraw(&mut self, upstream: UpstreamId, gen: u64, server_id: &Id) -> Option<Id> {
        let client_id = self
            .entries
            .iter()
            .find(|(_, (o, _))| o.upstream == upstream && o.gen == gen && o.server_id == *server_id)
            .map(|(id, _)| id.clone())?;
        self.take(&client_id);
        Some(client_id)
    }

    /// Connection `gen` of `upstream` ended: nobody is left to answer.
    pub fn forget(&mut self, upstream: UpstreamId, gen: Option<u64>) {
        let gone: Vec<Id> = self
            .entries
            .iter()
            .filter(|(_, (o, _))| o.upstream == upstream && gen.is_none_or(|g| o.gen == g))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.take(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(up: u32, gen: u64, id: &str) -> Origin {
        Origin {
            upstream: UpstreamId(up),
            gen,
            server_id: Id::router_owned(id),
            session: SessionId(0),
        }
    }

    #[test]
    fn a_colliding_server_id_gets_a_router_id_and_both_come_back() {
        let ids = Ids::default();
        let mut r = Reverse::default();
        let a = r.record(origin(0, 0, "1"), &ids);
        let b = r.record(origin(1, 0, "1"), &ids);
        assert_eq!(a, Id::router_owned("1"));
        assert_ne!(a, b);
        assert_eq!(r.take(&b).map(|o| o.upstream), Some(UpstreamId(1)));
        assert_eq!(r.take(&a).map(|o| o.upstream), Some(UpstreamId(0)));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_lost_connection_takes_its_entries_along() {
        let ids = Ids::default();
        let mut r = Reverse::default();
        let a = r.record(origin(0, 3, "1"), &ids);
        let b = r.record(origin(0, 4, "2"), &ids);
        r.forget(UpstreamId(0), Some(3));
        assert!(r.take(&a).is_none());
        assert!(r.take(&b).is_some());
    }

    #[test]
    fn bounded() {
        let ids = Ids::default();
        let mut r = Reverse::default();
        for n in 0..MAX_ENTRIES + 5 {
            r.record(origin(0, 0, &format!("x{n}")), &ids);
        }
        assert_eq!(r.len(), MAX_ENTRIES);
        assert!(r.take(&Id::router_owned("x0")).is_none());
    }
}
