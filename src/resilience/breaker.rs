//! Circuit breaker for one upstream or gateway endpoint.
//!
//! It owns the Closed → Open → HalfOpen → Closed cycle: counting transport failures in a
//! monitoring window, the recovery wait, and the probe slots that test a recovered peer.
//! It does not decide what a failure is (refused, reset, TLS, HTTP 5xx, or no reply within
//! `timeout_duration`: the caller classifies and times), nor does it log: every state
//! change is returned as a [`Transition`] for the caller to log and export.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::later;

/// The Go router's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures within `monitoring_window` that open the breaker; 0 counts as 1.
    pub failure_threshold: u32,
    /// How long it stays open before letting probes through.
    pub recovery_timeout: Duration,
    /// Successful probes that close it again, and the most probes in flight at once;
    /// 0 counts as 1.
    pub success_threshold: u32,
    /// How long the caller waits for a reply before calling it a failure.
    pub timeout_duration: Duration,
    /// Failures older than this are forgotten.
    pub monitoring_window: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            recovery_timeout: Duration::from_secs(30),
            success_threshold: 3,
            timeout_duration: Duration::from_secs(10),
            monitoring_window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

impl State {
    /// The metrics encoding: closed 0, open 1, half-open 2.
    pub fn as_gauge(&self) -> u8 {
        match self {
            State::Closed => 0,
            State::Open { .. } => 1,
            State::HalfOpen => 2,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// A state change, for the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: go ahead.
    Yes,
    /// Half-open: go ahead as a probe; hand the probe back with the outcome, or to
    /// [`Breaker::cancel`] when the request ends without one.
    Probe(Probe),
    /// Not now. Open: `retry_at` is the end of the recovery wait. Half-open with every
    /// probe slot taken: by `timeout_duration` from now the probes in flight have ended.
    Rejected { retry_at: Instant },
}

impl Admit {
    /// What to pass to `on_success` / `on_failure` for this admission.
    pub fn probe(&self) -> Option<Probe> {
        match self {
            Admit::Probe(p) => Some(*p),
            _ => None,
        }
    }
}

/// One half-open probe slot. It names its half-open period, so the outcome of a probe
/// that outlived its period (the breaker reopened or closed meanwhile) frees nobody
/// else's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    trial: u64,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
    /// Closed: times of the failures still inside the monitoring window. Reaching
    /// `failure_threshold` opens the breaker and clears them, and nothing else adds to
    /// them, so a breaker that closes again starts from none.
    failures: VecDeque<Instant>,
    /// Numbers the half-open periods; see [`Probe`].
    trial: u64,
    probes_in_flight: u32,
    successes: u32,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        let config = BreakerConfig {
            failure_threshold: config.failure_threshold.max(1),
            success_threshold: config.success_threshold.max(1),
            ..config
        };
        Self {
            config,
            state: State::Closed,
            failures: VecDeque::new(),
            trial: 0,
            probes_in_flight: 0,
            successes: 0,
        }
    }

    /// The state as of the last call. An open breaker whose recovery wait has passed
    /// still reads `Open` until the next `admit` moves it on.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration in effect (thresholds clamped to at least 1).
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Whether [`Breaker::admit`] at `now` would let a request through, without taking a
    /// probe slot or moving the state on.
    pub fn would_admit(&self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } => now >= until,
            State::HalfOpen => self.probes_in_flight < self.config.success_threshold,
        }
    }

    /// May a request go now? Moves an open breaker whose recovery wait has passed to
    /// half-open, which is returned as the transition.
    pub fn admit(&mut self, now: Instant) -> (Admit, Option<Transition>) {
        let mut transition = None;
        if let State::Open { until } = self.state {
            if now < until {
                return (Admit::Rejected { retry_at: until }, None);
            }
            self.trial = self.trial.wrapping_add(1);
            self.probes_in_flight = 0;
            self.successes = 0;
            transition = self.enter(State::HalfOpen);
        }
        let admit = match self.state {
            State::HalfOpen if self.probes_in_flight < self.config.success_threshold => {
                self.probes_in_flight += 1;
                Admit::Probe(Probe { trial: self.trial })
            }
            State::HalfOpen => Admit::Rejected {
                retry_at: later(now, self.config.timeout_duration),
            },
            // Open was handled above; a closed breaker lets everything through.
            State::Closed | State::Open { .. } => Admit::Yes,
        };
        (admit, transition)
    }

    /// A request ended well. `probe` is what its admission carried ([`Admit::probe`]).
    pub fn on_success(&mut self, now: Instant, probe: Option<Probe>) -> Option<Transition> {
        match self.state {
            State::Closed => {
                self.forget_old_failures(now);
                None
            }
            State::HalfOpen if self.is_current(probe) => {
                self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
                self.successes = self.successes.saturating_add(1);
                if self.successes >= self.config.success_threshold {
                    return self.enter(State::Closed);
                }
                None
            }
            // Outcomes of requests admitted before the breaker opened say nothing about
            // the peer since.
            State::HalfOpen | State::Open { .. } => None,
        }
    }

    /// A request ended in a transport failure. `probe` is what its admission carried.
    pub fn on_failure(&mut self, now: Instant, probe: Option<Probe>) -> Option<Transition> {
        match self.state {
            State::Closed => {
                self.forget_old_failures(now);
                self.failures.push_back(now);
                if self.failures.len() >= self.config.failure_threshold as usize {
                    self.failures.clear();
                    return self.open(now);
                }
                None
            }
            State::HalfOpen if self.is_current(probe) => self.open(now),
            State::HalfOpen | State::Open { .. } => None,
        }
    }

    /// A probe ended without an outcome (the client cancelled it, shutdown): its slot is
    /// free again and nothing is counted.
    pub fn cancel(&mut self, probe: Probe) {
        if self.state == State::HalfOpen && self.is_current(Some(probe)) {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    fn is_current(&self, probe: Option<Probe>) -> bool {
        probe.is_some_and(|p| p.trial == self.trial)
    }

    /// The probe counters are reset on the way into half-open, not here.
    fn open(&mut self, now: Instant) -> Option<Transition> {
        self.enter(State::Open {
            until: later(now, self.config.recovery_timeout),
        })
    }

    fn enter(&mut self, to: State) -> Option<Transition> {
        let from = std::mem::replace(&mut self.state, to);
        Some(Transition { from, to })
    }

    fn forget_old_failures(&mut self, now: Instant) {
        let window = self.config.monitoring_window;
        self.failures
            .retain(|&f| now.saturating_duration_since(f) < window);
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
