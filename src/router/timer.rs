//! The core's clock: sleeps until the earliest request deadline, then lets the core
//! expire what is due and sends the errors to the sessions that asked. The core decides;
//! this task only waits and delivers. Ends on its stop token.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{send_all, Core};

/// Fires request timeouts: the earliest deadline is always the one being slept on.
pub async fn run(core: Arc<Core>, stop: CancellationToken) {
    loop {
        let next = core.next_deadline();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = core.deadline_changed.notified() => continue,
            _ = sleep => {}
        }
        send_all(core.expire(Instant::now())).await;
    }
}
