//! Pacing between connections (or child processes) of one upstream, per its
//! `reconnect.*` policy: after a loss or a failed connect, wait the backoff delay (with
//! jitter) and count the retry, or give up once `reconnect.max_attempts` retries in a row
//! failed (0 / -1: never). A connection that stayed up long enough resets the streak.
//! Only pacing lives here; connecting and replaying are the supervisor's, the delays are
//! `resilience::backoff`'s, and the retry counter is kept by the core (`Port::count_retry`).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::ReconnectPolicy;
use crate::resilience::backoff::Backoff;
use crate::router::Port;

/// A connection that stayed up this long has recovered: the backoff starts over.
const HEALTHY_UPTIME: Duration = Duration::from_secs(10);

pub(crate) struct Pacing {
    name: String,
    backoff: Backoff,
    /// A child process is restarted; a connection is re-established (the words differ).
    process: bool,
}

impl Pacing {
    pub(crate) fn new(name: &str, policy: &ReconnectPolicy, process: bool) -> Self {
        Self {
            name: name.to_owned(),
            backoff: Backoff::new(policy.clone()),
            process,
        }
    }

    /// After an attempt (begun at `started`) that failed to connect, or whose connection
    /// was lost, for `reason`: waits before the next attempt and returns `true`; returns
    /// `false` on shutdown, or when the attempts ran out (then every waiting request was
    /// failed and later ones fail at once).
    pub(crate) async fn wait(
        &mut self,
        started: Instant,
        reason: &str,
        port: &Port,
        shutdown: &CancellationToken,
    ) -> bool {
        if recovered(port.up_since(), started, Instant::now()) {
            self.backoff.reset();
        }
        let Some(delay) = self.backoff.next_delay(rand::random::<f64>()) else {
            port.give_up(self.give_up_text(reason)).await;
            return false;
        };
        let attempt = self.backoff.retries();
        let delay_ms = delay.as_millis() as u64;
        if self.process {
            tracing::info!(upstream = %self.name, delay_ms, attempt, "{reason}; restarting the server");
        } else {
            tracing::warn!(upstream = %self.name, delay_ms, attempt, "{reason}; reconnecting");
        }
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => {
                port.count_retry();
                true
            }
        }
    }

    /// What every waiting and later request is answered with once the retries ran out.
    fn give_up_text(&self, reason: &str) -> String {
        let n = self.backoff.retries();
        let limit = self.backoff.policy().max_attempts.unwrap_or(n);
        let (what, retries) = if self.process {
            ("could not be kept running", plural(n, "restart"))
        } else {
            ("could not be reached", plural(n, "reconnect attempt"))
        };
        format!(
            "server '{}' {what}: {reason}; gave up after {retries} (reconnect.max_attempts: {limit})",
            self.name
        )
    }
}

/// Whether the attempt begun at `started` brought a connection up (at `up_since`) that
/// stayed up for [`HEALTHY_UPTIME`] until `now`. Only the time it was actually up counts:
/// an attempt that took long to fail (a connect timeout, a replay nobody answered) has
/// not recovered anything, and must not reset the streak that leads to giving up.
fn recovered(up_since: Option<Instant>, started: Instant, now: Instant) -> bool {
    up_since.is_some_and(|up| up >= started && now.saturating_duration_since(up) >= HEALTHY_UPTIME)
}

fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
#[path = "reconnect_tests.rs"]
mod tests;
