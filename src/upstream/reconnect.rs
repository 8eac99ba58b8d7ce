//! Reconnection pacing for the connection-based upstreams (WebSocket, legacy SSE): after
//! a lost connection, wait the backoff delay (with jitter) or give up when
//! `reconnect.max_attempts` ran out. A connection that stayed up long enough resets it.
//! Only pacing lives here; connecting and replaying the session are the transport's.

use std::time::{Duration, Instant};

use super::stdio::Links;
use crate::config::ReconnectPolicy;
use crate::resilience::backoff::Backoff;

/// A connection that stayed up this long has recovered: the backoff starts over.
const HEALTHY_UPTIME: Duration = Duration::from_secs(10);

/// A connection was lost: the requests it carried get one error each (they are not
/// resent: a tool call is not safe to repeat); what is queued waits for the next one.
pub(crate) async fn connection_lost(name: &str, reason: String, links: &Links) -> End {
    tracing::warn!(upstream = %name, "{reason}");
    let err = crate::wire::RouterError::new(
        crate::wire::ErrorKind::UpstreamExited,
        format!("{reason} before answering this request; reconnecting"),
    );
    for reply in links.router.upstream_down(&err) {
        let _ = links.to_client.send(reply).await;
    }
    End::Lost(reason)
}

/// How one connection ended.
pub(crate) enum End {
    Shutdown,
    Lost(String),
}

pub(crate) struct Pacing {
    name: String,
    backoff: Backoff,
}

impl Pacing {
    pub(crate) fn new(name: &str, policy: &ReconnectPolicy) -> Self {
        Self {
            name: name.to_owned(),
            backoff: Backoff::new(policy.clone()),
        }
    }

    /// After a connection (up since `started`) was lost for `reason`: waits before the
    /// next attempt and returns `true`; returns `false` on shutdown, or when the attempts
    /// ran out (then every waiting request was failed and later ones fail at once).
    pub(crate) async fn wait(&mut self, started: Instant, reason: &str, links: &Links) -> bool {
        if started.elapsed() >= HEALTHY_UPTIME {
            self.backoff.reset();
        }
        let Some(delay) = self.backoff.next_delay(rand::random::<f64>()) else {
            let text = format!(
                "server '{}' could not be reached: {reason}; gave up after {} attempts (reconnect.max_attempts)",
                self.name,
                self.backoff.failures()
            );
            super::give_up(links, text).await;
            return false;
        };
        tracing::warn!(upstream = %self.name, delay_ms = delay.as_millis() as u64, "{reason}; reconnecting");
        tokio::select! {
            _ = links.shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}
