//! Requests the client is waiting on, keyed by where they went: (upstream, wire id) →
//! who asked (session, client id), what was asked, when it expires, where it is.
//!
//! Pure bookkeeping with an injected clock: no tasks, no timers, no I/O. An index by
//! (session, client id) answers "is this id already in flight for this client" and finds
//! the entry a client's `notifications/cancelled` names. The driver asks for the next
//! deadline and hands back `now`; this module answers which entries expired. It does not
//! decide what to tell anyone; the core does.

use std::collections::BTreeMap;

use foldhash::HashMap;
use std::time::{Duration, Instant};

use super::{SessionId, UpstreamId};
use crate::wire::Id;

/// Where a pending request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// In the upstream's outbox, not yet taken by a writer.
    Queued,
    /// Taken by the writer of connection `gen` (written, or about to be).
    Sent { gen: u64 },
}

/// A request's identity on the upstream side.
pub type Key = (UpstreamId, Id);

#[derive(Debug, Clone)]
pub struct Entry {
    pub session: SessionId,
    /// The id the client used; the wire id differs only where the router rewrote it.
    pub client_id: Id,
    pub method: Option<Box<str>>,
    pub arrived: Instant,
    pub stage: Stage,
    /// Where it went, once sent: the endpoint lane of its connection, the breaker probe
    /// it carries, and when it left (what `timeout_duration` measures); see `dispatch`.
    pub sent: Option<SentTo>,
    deadline: (Instant, u64),
}

/// Where a sent request went, for its breaker's account.
#[derive(Debug, Clone, Copy)]
pub struct SentTo {
    pub lane: u16,
    pub probe: Option<crate::resilience::breaker::Probe>,
    pub at: Instant,
}

/// Abandoned requests remembered, at most (beyond, the oldest is forgotten).
pub const MAX_ABANDONED: usize = 4096;

/// The pending table, its client index and its deadline index.
#[derive(Debug, Default)]
pub struct Pending {
    entries: HashMap<Key, Entry>,
    by_client: HashMap<(SessionId, Id), Key>,
    deadlines: BTreeMap<(Instant, u64), Key>,
    seq: u64,
    /// Requests given up on (cancelled by their client, timed out) after connection `gen`
    /// took them: its server may still answer, so their wire id is not used again on
    /// that upstream until it does or that connection ends. Key → (gen, seq).
    abandoned: HashMap<Key, (u64, u64)>,
    abandoned_order: BTreeMap<u64, Key>,
    /// Entries a writer took (`Stage::Sent`), per upstream index: what the concurrency
    /// limit counts. Kept here, where every stage change and removal happens, so no
    /// ending can be missed.
    sent: Vec<usize>,
    /// The same per connection (upstream index, generation, count): what "least in
    /// flight" compares across a pool's connections. A connection with none has no entry;
    /// a short list scanned in place (a few live connections) costs less than hashing on
    /// every request.
    sent_by_conn: Vec<(u32, u64, usize)>,
}

/// What a new entry records.
pub struct NewEntry {
    pub key: Key,
    pub session: SessionId,
    pub client_id: Id,
    pub method: Option<Box<str>>,
    pub now: Instant,
    pub timeout: Duration,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.entries.contains_key(key)
    }

    /// Whether `session` already has a request `id` in flight.
    pub fn client_has(&self, session: SessionId, id: &Id) -> bool {
        self.by_client.contains_key(&(session, id.clone()))
    }

    /// The upstream-side key of the client's request `id`.
    pub fn key_of(&self, session: SessionId, id: &Id) -> Option<&Key> {
        self.by_client.get(&(session, id.clone()))
    }

    pub fn get(&self, key: &Key) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Adds a request (queued); returns whether its deadline is now the earliest one.
    pub fn insert(&mut self, new: NewEntry) -> bool {
        self.seq += 1;
        let deadline = (new.now + new.timeout, self.seq);
        let earliest = self
            .deadlines
            .keys()
            .next()
            .is_none_or(|first| deadline < *first);
        self.deadlines.insert(deadline, new.key.clone());
        self.by_client
            .insert((new.session, new.client_id.clone()), new.key.clone());
        let entry = Entry {
            session: new.session,
            client_id: new.client_id,
            method: new.method,
            arrived: new.now,
            stage: Stage::Queued,
            sent: None,
            deadline,
        };
        let up = new.key.0;
        if let Some(old) = self.entries.insert(new.key, entry) {
            self.deadlines.remove(&old.deadline);
            self.count_sent(up, old.stage, false);
        }
        earliest
    }

    pub fn remove(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.deadlines.remove(&entry.deadline);
        self.count_sent(key.0, entry.stage, false);
        let index = (entry.session, entry.client_id.clone());
        // A detached entry's client id may name another request of that client by now
        // (one lookup in the usual case; the rare other one puts it back).
        if let Some(other) = self.by_client.remove(&index) {
            if other != *key {
                self.by_client.insert(index, other);
            }
        }
        Some(entry)
    }

    /// The client considers request `key` answered (it got an `input_required` result)
    /// while its server still works on it: the client's id is free for reuse.
    pub fn detach_client(&mut self, key: &Key) {
        if let Some(e) = self.entries.get(key) {
            let index = (e.session, e.client_id.clone());
            if self.by_client.get(&index) == Some(key) {
                self.by_client.remove(&index);
            }
        }
    }

    /// Request `key` is the client's request `id` from now on (its retry); `false` when
    /// that id is in flight already.
    pub fn attach_client(&mut self, key: &Key, id: Id) -> bool {
        let Some(e) = self.entries.get_mut(key) else {
            return false;
        };
        let index = (e.session, id.clone());
        if self.by_client.contains_key(&index) {
            return false;
        }
        e.client_id = id;
        self.by_client.insert(index, key.clone());
        true
    }

    /// Moves request `key` to `stage`; `to` records where a sent one went (`None` when
    /// nobody needs to know: no breaker on its way).
    pub fn set_stage(&mut self, key: &Key, stage: Stage, to: Option<SentTo>) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        let was = std::mem::replace(&mut e.stage, stage);
        e.sent = to;
        if was != stage {
            self.count_sent(key.0, was, false);
            self.count_sent(key.0, stage, true);
        }
    }

    /// Request `key`'s deadline becomes its arrival + `timeout`; whether that is now the
    /// earliest deadline.
    pub fn reschedule(&mut self, key: &Key, timeout: Duration) -> bool {
        let Some(e) = self.entries.get_mut(key) else {
            return false;
        };
        self.seq += 1;
        let deadline = (e.arrived + timeout, self.seq);
        let old = std::mem::replace(&mut e.deadline, deadline);
        self.deadlines.remove(&old);
        self.deadlines.insert(deadline, key.clone());
        self.deadlines.keys().next() == Some(&deadline)
    }

    /// Requests of upstream `up` a writer took and no reply settled yet.
    pub fn sent(&self, up: UpstreamId) -> usize {
        self.sent.get(up.0 as usize).copied().unwrap_or(0)
    }

    /// Requests connection `gen` of `up` took and no reply settled yet.
    pub fn sent_on(&self, up: UpstreamId, gen: u64) -> usize {
        self.sent_by_conn
            .iter()
            .find(|(u, g, _)| *u == up.0 && *g == gen)
            .map_or(0, |e| e.2)
    }

    /// One more (`more`) or one fewer request in `stage`; only `Sent` is counted.
    fn count_sent(&mut self, up: UpstreamId, stage: Stage, more: bool) {
        let Stage::Sent { gen } = stage else { return };
        let i = up.0 as usize;
        if self.sent.len() <= i {
            self.sent.resize(i + 1, 0);
        }
        let n = &mut self.sent[i];
        *n = if more { *n + 1 } else { n.saturating_sub(1) };
        let at = self
            .sent_by_conn
            .iter()
            .position(|(u, g, _)| *u == up.0 && *g == gen);
        match (at, more) {
            (Some(i), true) => self.sent_by_conn[i].2 += 1,
            (None, true) => self.sent_by_conn.push((up.0, gen, 1)),
            (Some(i), false) => {
                self.sent_by_conn[i].2 -= 1;
                if self.sent_by_conn[i].2 == 0 {
                    self.sent_by_conn.swap_remove(i);
                }
            }
            (None, false) => {}
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|(at, _)| *at)
    }

    /// Removes and returns every entry whose deadline is at or before `now`, oldest first.
    pub fn take_expired(&mut self, now: Instant) -> Vec<(Key, Entry)> {
        let mut out = Vec::new();
        while let Some((&deadline, _)) = self.deadlines.first_key_value() {
            if deadline.0 > now {
                break;
            }
            if let Some(key) = self.deadlines.get(&deadline).cloned() {
                if let Some(entry) = self.remove(&key) {
                    out.push((key, entry));
                    continue;
                }
            }
            self.deadlines.remove(&deadline);
        }
        out
    }

    /// Removes every entry matching `pred`, in no particular order.
    pub fn take_where(&mut self, mut pred: impl FnMut(&Key, &Entry) -> bool) -> Vec<(Key, Entry)> {
        let keys: Vec<Key> = self
            .entries
            .iter()
            .filter(|(k, e)| pred(k, e))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.remove(&k).map(|e| (k, e)))
            .collect()
    }

    /// The request `key`, taken by connection `gen`, was given up on: a late reply may come.
    pub fn abandon(&mut self, key: Key, gen: u64) {
        if self.abandoned.len() >= MAX_ABANDONED {
            if let Some((_, oldest)) = self.abandoned_order.pop_first() {
                self.abandoned.remove(&oldest);
            }
        }
        self.seq += 1;
        if let Some((_, old)) = self.abandoned.insert(key.clone(), (gen, self.seq)) {
            self.abandoned_order.remove(&old);
        }
        self.abandoned_order.insert(self.seq, key);
    }

    /// Whether a server may still answer an abandoned request under `key`.
    pub fn is_abandoned(&self, key: &Key) -> bool {
        self.abandoned.contains_key(key)
    }

    /// A reply nobody waits for came from connection `gen`: if it answers an abandoned
    /// request, that one is settled (its id is free again).
    pub fn settle_abandoned(&mut self, key: &Key, gen: u64) {
        if let Some(&(g, seq)) = self.abandoned.get(key) {
            if g == gen {
                self.abandoned.remove(key);
                self.abandoned_order.remove(&seq);
            }
        }
    }

    /// Connection `gen` of `up` (every one, for `None`) ended: no late reply comes from it.
    pub fn forget_abandoned(&mut self, up: UpstreamId, gen: Option<u64>) {
        let order = &mut self.abandoned_order;
        self.abandoned.retain(|k, (g, seq)| {
            let keep = k.0 != up || gen.is_some_and(|gen| gen != *g);
            if !keep {
                order.remove(seq);
            }
            keep
        });
    }

    /// Whether any entry matches `pred`.
    /// The keys of the entries matching `pred`.
    pub fn keys_where(&self, mut pred: impl FnMut(&Key, &Entry) -> bool) -> Vec<Key> {
        self.entries
            .iter()
            .filter(|(k, e)| pred(k, e))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub fn any(&self, mut pred: impl FnMut(&Key, &Entry) -> bool) -> bool {
        self.entries.iter().any(|(k, e)| pred(k, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UP: UpstreamId = UpstreamId(0);
    const S: SessionId = SessionId(0);

    fn id(n: u32) -> Id {
        Id::router_owned(&format!("r{n}"))
    }

    fn new(n: u32, now: Instant, secs: u64) -> NewEntry {
        NewEntry {
            key: (UP, id(n)),
            session: S,
            client_id: id(n),
            method: None,
            now,
            timeout: Duration::from_secs(secs),
        }
    }

    #[test]
    fn expiry_is_ordered_and_exact() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        assert!(p.insert(new(1, t0, 10)));
        assert!(!p.insert(new(2, t0, 20)));
        assert!(p.insert(new(3, t0, 5)));
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert!(p.take_expired(t0 + Duration::from_secs(4)).is_empty());
        let got: Vec<Id> = p
            .take_expired(t0 + Duration::from_secs(10))
            .into_iter()
            .map(|((_, i), _)| i)
            .collect();
        assert_eq!(got, vec![id(3), id(1)]);
        assert_eq!(p.len(), 1);
        assert!(!p.client_has(S, &id(1)));
        assert!(p.client_has(S, &id(2)));
        assert!(p.remove(&(UP, id(2))).is_some());
        assert_eq!(p.next_deadline(), None);
        assert!(p.by_client.is_empty());
    }

    #[test]
    fn sent_counts_every_stage_change_and_every_way_out() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        for n in 1..=4 {
            p.insert(new(n, t0, n.into()));
            p.set_stage(&(UP, id(n)), Stage::Sent { gen: 1 }, None);
        }
        assert_eq!(p.sent_on(UP, 1), 4);
        p.set_stage(&(UP, id(1)), Stage::Sent { gen: 2 }, None);
        assert_eq!(p.sent(UP), 4);
        assert_eq!((p.sent_on(UP, 1), p.sent_on(UP, 2)), (3, 1));
        p.set_stage(&(UP, id(4)), Stage::Queued, None);
        assert_eq!(p.sent(UP), 3);
        assert_eq!(p.sent_on(UP, 1), 2);
        p.remove(&(UP, id(2)));
        assert_eq!(p.sent(UP), 2);
        assert_eq!(p.sent_on(UP, 1), 1);
        p.take_expired(t0 + Duration::from_secs(1));
        assert_eq!(p.sent(UP), 1);
        assert_eq!((p.sent_on(UP, 1), p.sent_on(UP, 2)), (1, 0));
        p.insert(new(3, t0, 9));
        assert_eq!(
            p.sent(UP),
            0,
            "an entry replaced under its key is no longer sent"
        );
        assert_eq!(p.sent_on(UP, 1), 0);
        assert!(
            p.sent_by_conn.is_empty(),
            "no connection keeps an entry at 0"
        );
        assert_eq!(p.sent(UpstreamId(7)), 0);
    }

    #[test]
    fn take_where_selects_by_upstream_and_stage() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.insert(new(1, t0, 1));
        p.set_stage(&(UP, id(1)), Stage::Sent { gen: 1 }, None);
        p.insert(new(2, t0, 1));
        let mut other = new(3, t0, 1);
        other.key.0 = UpstreamId(1);
        p.insert(other);
        p.set_stage(&(UpstreamId(1), id(3)), Stage::Sent { gen: 1 }, None);
        let sent = p.take_where(|k, e| k.0 == UP && matches!(e.stage, Stage::Sent { gen: 1 }));
        assert_eq!(sent.len(), 1);
        assert_eq!((p.sent(UP), p.sent(UpstreamId(1))), (0, 1));
        assert!(p.contains(&(UP, id(2))));
        assert!(p.contains(&(UpstreamId(1), id(3))));
    }
}
