//! Process-wide shutdown: the signal that starts it and the order it runs in.
//!
//! The order is a contract (see docs/architecture.md): stop reading stdin → let pending
//! requests finish until the grace deadline, then fail the rest → stop upstreams (close
//! stdin, grace, end the process group) → flush stdout → exit 0. This module owns the
//! signal listening and the pending drain; tasks are stopped through their tokens.

use std::time::Duration;

use crate::router::{send_all, Core};
use crate::wire::{ErrorKind, RouterError};

/// Resolves on SIGTERM or SIGINT (or never, if signals cannot be installed).
pub async fn signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Waits up to `grace` for pending requests to be answered, then fails the rest.
pub async fn settle_pending(router: &Core, grace: Duration) {
    router.begin_shutdown();
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let idle = router.idle.notified();
        tokio::pin!(idle);
        idle.as_mut().enable();
        if router.pending_len() == 0 {
            return;
        }
        tokio::select! {
            _ = &mut idle => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let left = router.fail_all(&RouterError::new(
        ErrorKind::ShuttingDown,
        "router shutting down",
    ));
    tracing::info!(
        failed = left.len(),
        "shutdown grace over; failing requests still pending"
    );
    send_all(left).await;
}
