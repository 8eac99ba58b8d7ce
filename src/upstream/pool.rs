//! The gateway's endpoint lanes as running connections: for each lane either one
//! supervised connection, or a pool of them sized by `resilience::pool` — `min_size`
//! opened at start (each replays the client's handshake), more up to `max_size` while
//! requests wait and no connection is free, an idle one beyond `min_size` closed after
//! `max_idle_time`, each renewed after `max_lifetime`; never closed while a request is on
//! it (it drains first). Health checks are each connection's keepalive (WebSocket ping,
//! MCPB HealthCheck) at the pool's interval, and a connection that fails one is replaced
//! by its supervisor.
//!
//! Owns only the sizing loop; connecting, replaying, reconnecting and draining are the
//! supervisor's, which request goes on which connection is the core's (`dispatch`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::gateway::setup::Lanes;
use super::gateway::Connector as GatewayConnector;
use super::supervisor::{Connector, Slot, Supervisor};
use crate::resilience::pool::{Pool, PoolConfig};
use crate::router::Port;

/// What every supervisor of the gateway shares.
pub(crate) struct Template {
    pub replay_timeout: std::time::Duration,
}

/// Starts every lane of the gateway upstream behind `port`.
pub(crate) fn spawn_lanes(
    lanes: Lanes,
    port: Port,
    template: &Template,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    span: tracing::Span,
) {
    port.set_lanes(
        lanes.lanes.iter().map(|l| l.config.clone()).collect(),
        lanes.strategy,
    );
    port.set_failover_timeout(lanes.failover_timeout);
    if let Some(routing) = &lanes.namespace_routing {
        port.set_namespace_rules(
            routing
                .rules
                .iter()
                .map(|r| crate::router::NamespaceRule {
                    pattern: r.pattern.clone(),
                    tags: r.tags.clone(),
                })
                .collect(),
        );
    }
    for (i, lane) in lanes.lanes.into_iter().enumerate() {
        let port = port.on_lane(i as u16);
        let sup = Supervisor {
            port: port.clone(),
            // The endpoint's own reconnect policy, not the (implicit) server's.
            reconnect: lane.connector.reconnect.clone(),
            replay_timeout: template.replay_timeout,
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            slot: None,
        };
        let span = span.clone();
        match lane.pool {
            None => {
                tracker.spawn(
                    sup.run(Connector::Gateway(Box::new(lane.connector)))
                        .instrument(span),
                );
            }
            Some(cfg) => {
                tracker.spawn(run_pool(sup, lane.connector, cfg).instrument(span));
            }
        }
    }
}

struct Running {
    slot: Slot,
    task: JoinHandle<()>,
}

/// Sizes one lane's pool until shutdown, or until its standing connections gave up.
async fn run_pool(template: Supervisor, connector: GatewayConnector, cfg: PoolConfig) {
    let mut pool = Pool::new(cfg);
    let cfg = *pool.config();
    let port = template.port.clone();
    let pressure = port.pressure();
    let ended = Arc::new(Notify::new());
    let standing = cfg.min_size.max(1);
    let mut slots: Vec<Running> = (0..standing)
        .map(|_| open(&template, &connector, &cfg, false, &ended))
        .collect();
    tracing::debug!(upstream = %port.name(), lane = port.lane(), min = cfg.min_size, max = cfg.max_size, "connection pool started");
    loop {
        slots.retain(|r| !r.task.is_finished());
        if template.shutdown.is_cancelled() || !slots.iter().any(|r| !r.slot.extra) {
            // Shut down, or the standing connections gave up (the lane is gone).
            for r in &slots {
                r.slot.retire.cancel();
            }
            return;
        }
        let view = port.lane_view();
        let now = Instant::now();
        let opening = slots.len().saturating_sub(view.conns.len());
        let decision = pool.decide(&view.conns, opening, view.waiting, now);
        tracing::trace!(upstream = %port.name(), lane = port.lane(), live = view.conns.len(), opening, waiting = view.waiting, open = decision.open, retire = decision.retire.len(), "pool");
        // More for load only while some connection is up: while none is, the standing
        // ones are reconnecting at their own pace.
        if !view.conns.is_empty() {
            for _ in 0..decision.open {
                slots.push(open(&template, &connector, &cfg, true, &ended));
            }
        }
        for gen in decision.retire {
            // Standing connections renew themselves; only load's extras are retired.
            if let Some(r) = slots
                .iter()
                .find(|r| r.slot.extra && r.slot.gen.load(Ordering::Relaxed) == gen)
            {
                tracing::debug!(upstream = %port.name(), gen, "closing an idle pool connection");
                r.slot.retire.cancel();
            }
        }
        let next = pool.next_check(now);
        tokio::select! {
            _ = template.shutdown.cancelled() => {}
            _ = tokio::time::sleep_until(next.into()) => {}
            _ = pressure.notified() => {}
            // A connection ended for good (retired, gave up): look again.
            _ = ended.notified() => {}
        }
    }
}

fn open(
    template: &Supervisor,
    connector: &GatewayConnector,
    cfg: &PoolConfig,
    extra: bool,
    ended: &Arc<Notify>,
) -> Running {
    let slot = Slot {
        retire: CancellationToken::new(),
        max_lifetime: cfg.max_lifetime,
        extra,
        gen: Arc::new(AtomicU64::new(u64::MAX)),
    };
    let sup = Supervisor {
        port: template.port.clone(),
        reconnect: template.reconnect.clone(),
        replay_timeout: template.replay_timeout,
        shutdown: template.shutdown.clone(),
        tracker: template.tracker.clone(),
        slot: Some(slot.clone()),
    };
    let connector = Connector::Gateway(Box::new(connector.duplicate()));
    let ended = ended.clone();
    let task = template.tracker.spawn(
        async move {
            sup.run(connector).await;
            ended.notify_one();
        }
        .in_current_span(),
    );
    Running { slot, task }
}
