//! Pacing on tokio's paused clock against a real core: the waits it takes, the retries it
//! counts, the give-up it answers waiting requests with, shutdown, and when a streak resets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::router::{ClientDecision, Core, Limits};
use crate::wire::Message;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn policy(initial: u64, max: u64, attempts: Option<u32>) -> ReconnectPolicy {
    ReconnectPolicy {
        initial_delay: ms(initial),
        max_delay: ms(max),
        multiplier: 2.0,
        max_attempts: attempts,
        jitter: 0.0,
    }
}

struct World {
    core: Arc<Core>,
    port: Port,
    client: mpsc::Receiver<Bytes>,
    session: crate::router::SessionId,
}

fn world() -> World {
    let core = Arc::new(Core::new(Limits {
        request_timeout: Duration::from_secs(3600),
        max_queued_requests: 10,
    }));
    let up = core.add_upstream("srv");
    let (tx, client) = mpsc::channel(16);
    let session = core.open_session(tx);
    World {
        port: core.port(up),
        core,
        client,
        session,
    }
}

impl World {
    /// A client request, queued while the upstream is down.
    fn queue(&self, id: u64) {
        let raw = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
        let msg = Message::parse(Bytes::from(raw)).unwrap();
        let d = self
            .core
            .from_client_to(self.session, self.port.id(), msg, Instant::now());
        assert!(matches!(d, ClientDecision::Accepted));
    }

    /// Losses in a row until pacing says stop: the (paused-clock) wait before each retry.
    async fn lose_until_given_up(&self, pacing: &mut Pacing, limit: usize) -> Vec<Duration> {
        let shutdown = CancellationToken::new();
        let mut waits = Vec::new();
        for _ in 0..limit {
            let t = tokio::time::Instant::now();
            if !pacing
                .wait(
                    Instant::now(),
                    "it exited with status 1",
                    &self.port,
                    &shutdown,
                )
                .await
            {
                break;
            }
            waits.push(t.elapsed());
        }
        waits
    }
}

#[tokio::test(start_paused = true)]
async fn a_process_is_restarted_max_attempts_times_at_the_policys_delays_then_given_up() {
    let mut w = world();
    w.queue(1);
    let mut pacing = Pacing::new("srv", &policy(50, 200, Some(3)), true);
    let waits = w.lose_until_given_up(&mut pacing, 100).await;
    assert_eq!(waits, [ms(50), ms(100), ms(200)]);
    assert_eq!(w.core.connection_retries(w.port.id()), 3);
    // The request that waited gets the reason, and how many restarts were made.
    let reply: serde_json::Value = serde_json::from_slice(&w.client.recv().await.unwrap()).unwrap();
    let text = reply["error"]["message"].as_str().unwrap();
    assert_eq!(
        text,
        "server 'srv' could not be kept running: it exited with status 1; gave up after 3 restarts (reconnect.max_attempts: 3)"
    );
    assert_eq!(reply["error"]["data"]["kind"], "upstream_unavailable");
}

#[tokio::test(start_paused = true)]
async fn a_connection_says_reconnect_attempts() {
    let mut w = world();
    w.queue(1);
    let mut pacing = Pacing::new("srv", &policy(10, 10, Some(1)), false);
    assert_eq!(w.lose_until_given_up(&mut pacing, 100).await, [ms(10)]);
    let reply: serde_json::Value = serde_json::from_slice(&w.client.recv().await.unwrap()).unwrap();
    assert_eq!(
        reply["error"]["message"],
        "server 'srv' could not be reached: it exited with status 1; gave up after 1 reconnect attempt (reconnect.max_attempts: 1)"
    );
}

#[tokio::test(start_paused = true)]
async fn forever_keeps_retrying_and_counting() {
    let w = world();
    let mut pacing = Pacing::new("srv", &policy(1, 4, None), false);
    let waits = w.lose_until_given_up(&mut pacing, 1000).await;
    assert_eq!(waits.len(), 1000, "never gave up");
    assert!(waits[3..].iter().all(|d| *d == ms(4)), "capped");
    assert_eq!(w.core.connection_retries(w.port.id()), 1000);
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_the_wait_stops_without_counting_a_retry() {
    let w = world();
    let mut pacing = Pacing::new("srv", &policy(60_000, 60_000, None), true);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(ms(5)).await;
        stop.cancel();
    });
    assert!(
        !pacing
            .wait(Instant::now(), "lost", &w.port, &shutdown)
            .await
    );
    assert_eq!(w.core.connection_retries(w.port.id()), 0);
}

#[test]
fn only_a_connection_of_this_attempt_that_stayed_up_resets_the_streak() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // Up at 1 s, lost at 11 s: recovered.
    assert!(recovered(Some(at(1)), t0, at(11)));
    // Up for 9 s only.
    assert!(!recovered(Some(at(1)), t0, at(10)));
    // Never up: however long the attempt took (a 10 s connect timeout, a slow replay).
    assert!(!recovered(None, t0, at(60)));
    // Up long ago, but before this attempt began: that was an earlier connection.
    assert!(!recovered(Some(t0), at(5), at(60)));
}
