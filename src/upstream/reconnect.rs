//! Pacing between connections (or child processes) of one upstream: after a loss, wait
//! the backoff delay (with jitter) or give up when `reconnect.max_attempts` ran out. A
//! connection that stayed up long enough resets it. Only pacing lives here; connecting
//! and replaying are the supervisor's.

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

    /// After a connection (up since `started`) was lost for `reason`: waits before the
    /// next attempt and returns `true`; returns `false` on shutdown, or when the attempts
    /// ran out (then every waiting request was failed and later ones fail at once).
    pub(crate) async fn wait(
        &mut self,
        started: Instant,
        reason: &str,
        port: &Port,
        shutdown: &CancellationToken,
    ) -> bool {
        if started.elapsed() >= HEALTHY_UPTIME {
            self.backoff.reset();
        }
        let Some(delay) = self.backoff.next_delay(rand::random::<f64>()) else {
            let text = if self.process {
                format!(
                    "server '{}' could not be kept running: {reason}; gave up after {} restarts (reconnect.max_attempts)",
                    self.name,
                    self.backoff.failures().saturating_sub(1)
                )
            } else {
                format!(
                    "server '{}' could not be reached: {reason}; gave up after {} attempts (reconnect.max_attempts)",
                    self.name,
                    self.backoff.failures()
                )
            };
            port.give_up(text).await;
            return false;
        };
        if self.process {
            tracing::info!(upstream = %self.name, delay_ms = delay.as_millis() as u64, attempt = self.backoff.failures(), "restarting server");
        } else {
            tracing::warn!(upstream = %self.name, delay_ms = delay.as_millis() as u64, "{reason}; reconnecting");
        }
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}
