//! Which of several gateway endpoints takes the next connection or request.
//!
//! It owns the strategy's memory (the round-robin cursor, the smooth weighted round
//! robin's running weights) and nothing else: health, weights and in-flight counts come
//! from the caller on every call (health being "the breaker admits and it is connected"),
//! so a changed endpoint list never leaves stale state behind here.

use std::fmt;
use std::str::FromStr;

/// The configured `load_balancer.strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    #[default]
    RoundRobin,
    LeastConnections,
    /// Smooth weighted round robin (nginx): each weight's share, interleaved.
    Weighted,
    /// The lowest priority number among the healthy, round robin within it.
    Priority,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::RoundRobin,
        Strategy::LeastConnections,
        Strategy::Weighted,
        Strategy::Priority,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastConnections => "least_connections",
            Strategy::Weighted => "weighted",
            Strategy::Priority => "priority",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Worded like the configuration's own check of the same key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not one of round_robin, least_connections, weighted, priority")]
pub struct UnknownStrategy(pub String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownStrategy(s.to_owned()))
    }
}

/// One endpoint as the caller sees it right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Weighted only; 0 counts as 1.
    pub weight: u32,
    /// Priority only; lower goes first.
    pub priority: i64,
    /// Least connections only.
    pub in_flight: usize,
    pub healthy: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Balancer {
    strategy: Strategy,
    /// The index after the last pick: where the next tie-break search starts.
    cursor: usize,
    /// Weighted: running weights, valid for `seen`.
    current: Vec<i64>,
    /// Weighted: the (weight, healthy) list `current` belongs to.
    seen: Vec<(u32, bool)>,
}

impl Balancer {
    pub fn new(strategy: Strategy) -> Self {
        Self {
            strategy,
            ..Self::default()
        }
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The index of the candidate to use, or `None` when none is healthy.
    pub fn pick(&mut self, candidates: &[Candidate]) -> Option<usize> {
        let picked = match self.strategy {
            Strategy::RoundRobin => self.first_least(candidates, |_| 0),
            Strategy::LeastConnections => self.first_least(candidates, |c| c.in_flight as i128),
            Strategy::Priority => self.first_least(candidates, |c| i128::from(c.priority)),
            Strategy::Weighted => self.smooth_weighted(candidates),
        }?;
        self.cursor = picked.wrapping_add(1);
        Some(picked)
    }

    /// The healthy candidate with the least `key`; among equals the first at or after the
    /// cursor (wrapping), which is what makes ties take turns.
    fn first_least(
        &self,
        candidates: &[Candidate],
        key: impl Fn(&Candidate) -> i128,
    ) -> Option<usize> {
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor % n;
        (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| candidates[i].healthy)
            .min_by_key(|&i| key(&candidates[i]))
    }

    /// nginx's smooth weighted round robin over the healthy candidates: every round each
    /// gains its weight, the largest is picked and pays the round's total. Over each cycle
    /// of `Σ weights` picks each is picked exactly its weight times, spread out rather
    /// than in runs.
    fn smooth_weighted(&mut self, candidates: &[Candidate]) -> Option<usize> {
        // A changed list, weight or health starts a fresh cycle: old running weights
        // would skew the shares of the new set for a whole cycle.
        let same = self.seen.len() == candidates.len()
            && self
                .seen
                .iter()
                .zip(candidates)
                .all(|(&s, c)| s == (c.weight.max(1), c.healthy));
        if !same {
            self.seen = candidates
                .iter()
                .map(|c| (c.weight.max(1), c.healthy))
                .collect();
            self.current = vec![0; candidates.len()];
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, &(weight, healthy)) in self.seen.iter().enumerate() {
            if !healthy {
                continue;
            }
            let w = i64::from(weight);
            total = total.saturating_add(w);
            self.current[i] = self.current[i].saturating_add(w);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.current[best] = self.current[best].saturating_sub(total);
        Some(best)
    }
}

#[cfg(test)]
#[path = "balance_tests.rs"]
mod tests;
