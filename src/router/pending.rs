//! Requests the client is waiting on: id → what was asked, when it expires, where it is.
//!
//! Pure bookkeeping with an injected clock: no tasks, no timers, no I/O. The driver asks
//! for the next deadline and hands back `now`; this module answers which entries expired.
//! It does not decide what to tell anyone; the router does.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::wire::Id;

/// Where a pending request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Held in the outbox until the upstream is ready.
    Queued,
    /// Written (or about to be) to the upstream incarnation `gen`.
    Sent { gen: u64 },
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub method: Option<Box<str>>,
    pub arrived: Instant,
    pub stage: Stage,
    deadline: (Instant, u64),
}

/// The pending table plus its deadline index.
#[derive(Debug, Default)]
pub struct Pending {
    entries: HashMap<Id, Entry>,
    deadlines: BTreeMap<(Instant, u64), Id>,
    seq: u64,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, id: &Id) -> bool {
        self.entries.contains_key(id)
    }

    pub fn get(&self, id: &Id) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// Adds a request; returns whether its deadline is now the earliest one.
    pub fn insert(
        &mut self,
        id: Id,
        method: Option<Box<str>>,
        now: Instant,
        timeout: Duration,
        stage: Stage,
    ) -> bool {
        self.seq += 1;
        let key = (now + timeout, self.seq);
        let earliest = self
            .deadlines
            .keys()
            .next()
            .is_none_or(|first| key < *first);
        self.deadlines.insert(key, id.clone());
        let entry = Entry {
            method,
            arrived: now,
            stage,
            deadline: key,
        };
        if let Some(old) = self.entries.insert(id, entry) {
            self.deadlines.remove(&old.deadline);
        }
        earliest
    }

    pub fn remove(&mut self, id: &Id) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        self.deadlines.remove(&entry.deadline);
        Some(entry)
    }

    pub fn set_stage(&mut self, id: &Id, stage: Stage) {
        if let Some(e) = self.entries.get_mut(id) {
            e.stage = stage;
        }
    }

    /// Moves every entry at stage `from` to stage `to`.
    pub fn restage(&mut self, from: Stage, to: Stage) {
        for e in self.entries.values_mut().filter(|e| e.stage == from) {
            e.stage = to;
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|(at, _)| *at)
    }

    /// Removes and returns every entry whose deadline is at or before `now`, oldest first.
    pub fn take_expired(&mut self, now: Instant) -> Vec<(Id, Entry)> {
        let mut out = Vec::new();
        while let Some((&key, _)) = self.deadlines.first_key_value() {
            if key.0 > now {
                break;
            }
            if let Some(id) = self.deadlines.remove(&key) {
                if let Some(entry) = self.entries.remove(&id) {
                    out.push((id, entry));
                }
            }
        }
        out
    }

    /// Removes every entry matching `pred`, in no particular order.
    pub fn take_where(&mut self, mut pred: impl FnMut(&Entry) -> bool) -> Vec<(Id, Entry)> {
        let ids: Vec<Id> = self
            .entries
            .iter()
            .filter(|(_, e)| pred(e))
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| self.remove(&id).map(|e| (id, e)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> Id {
        Id::router_owned(&format!("r{n}"))
    }

    #[test]
    fn expiry_is_ordered_and_exact() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        assert!(p.insert(id(1), None, t0, Duration::from_secs(10), Stage::Queued));
        assert!(!p.insert(id(2), None, t0, Duration::from_secs(20), Stage::Queued));
        assert!(p.insert(id(3), None, t0, Duration::from_secs(5), Stage::Queued));
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert!(p.take_expired(t0 + Duration::from_secs(4)).is_empty());
        let got: Vec<Id> = p
            .take_expired(t0 + Duration::from_secs(10))
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(got, vec![id(3), id(1)]);
        assert_eq!(p.len(), 1);
        assert!(p.remove(&id(2)).is_some());
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn take_where_selects_by_stage() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.insert(
            id(1),
            None,
            t0,
            Duration::from_secs(1),
            Stage::Sent { gen: 1 },
        );
        p.insert(id(2), None, t0, Duration::from_secs(1), Stage::Queued);
        let sent = p.take_where(|e| matches!(e.stage, Stage::Sent { gen: 1 }));
        assert_eq!(sent.len(), 1);
        assert!(p.contains(&id(2)));
    }
}
