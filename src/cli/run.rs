//! `mcp-router` (no subcommand): assemble the router for the configuration and run it.
//!
//! Builds the task set in one place (a current-thread runtime: the router is I/O-bound,
//! and one thread gives the lowest added latency and the smallest footprint): the routing
//! core, one upstream per configured server (`upstream::spawn`; this file names no
//! transport), the client session on stdio, the timer. Then runs the shutdown sequence in
//! its fixed order. Returns the exit code.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{Config, Loaded};
use crate::frontend::fd::{Input, Output};
use crate::frontend::stdio::{read_client, write_client, ReaderEnd};
use crate::router::{send_all, Admission, AggregateSetup, Core, Limits, ServerSetup};
use crate::wire::{ErrorKind, RouterError};
use crate::{router, shutdown, telemetry, upstream};

/// Messages buffered for the client writer; bounded so a slow client slows its upstreams.
const CHANNEL_DEPTH: usize = 256;

/// What aggregation needs of each server, in upstream order (`names`: the specs' names).
pub(super) fn aggregate_setup(cfg: &Config, names: &[String]) -> AggregateSetup {
    let servers = names
        .iter()
        .map(|name| match cfg.servers.iter().find(|s| s.name == *name) {
            Some(s) => ServerSetup {
                name: name.clone(),
                prefix: s.prefix.clone(),
                tools: s.tools.clone(),
                prompts: s.prompts.clone(),
                resources: s.resources.clone(),
            },
            None => ServerSetup {
                name: name.clone(),
                prefix: name.clone(),
                tools: Default::default(),
                prompts: Default::default(),
                resources: Default::default(),
            },
        })
        .collect();
    AggregateSetup {
        separator: cfg.aggregate.separator.clone(),
        servers,
    }
}

/// How the core admits requests to server `name`: its own limits, else `local`'s.
fn admission(cfg: &Config, name: &str) -> Admission {
    let server = cfg.servers.iter().find(|s| s.name == name);
    Admission {
        max_concurrent: server.map_or(cfg.local.max_concurrent_requests, |s| {
            s.max_concurrent(&cfg.local)
        }),
        rate_limit: server.and_then(|s| s.rate_limit.clone()),
    }
}

pub fn run(loaded: Loaded) -> anyhow::Result<i32> {
    let cfg = loaded.config;
    telemetry::logging::init(&cfg.logging).map_err(anyhow::Error::msg)?;
    for w in &loaded.warnings {
        tracing::warn!("config: {w}");
    }
    let specs = upstream::spec::from_config(&cfg).map_err(anyhow::Error::msg)?;
    let local = cfg.local.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let started = Instant::now();
    rt.block_on(async move {
        let mut resolved = Vec::with_capacity(specs.len());
        for spec in specs {
            resolved.push(spec.resolve().await.map_err(anyhow::Error::msg)?);
        }
        let core = Arc::new(Core::new(Limits {
            request_timeout: local.request_timeout,
            max_queued_requests: local.max_queued_requests,
        }));
        core.set_rate_limit(cfg.local.rate_limit.as_ref());
        let tracker = TaskTracker::new();
        let reader_stop = CancellationToken::new();
        let upstream_stop = CancellationToken::new();
        let timer_stop = CancellationToken::new();
        let names: Vec<String> = resolved.iter().map(|s| s.name.clone()).collect();
        if names.len() > 1 {
            core.aggregate(aggregate_setup(&cfg, &names));
        }
        for spec in resolved {
            let up = core.add_upstream(&spec.name);
            core.set_admission(up, admission(&cfg, &spec.name));
            let port = core.port(up);
            upstream::spawn(spec, port, upstream_stop.clone(), &tracker).map_err(anyhow::Error::msg)?;
        }
        let (to_client, client_rx) = mpsc::channel(CHANNEL_DEPTH);
        let session = core.open_session(to_client.clone());
        let writer = tracker.spawn(
            write_client(Output::stdout(), client_rx, local.write_buffer_size)
                .instrument(tracing::info_span!("client_writer")),
        );
        tracker.spawn(router::timer::run(core.clone(), timer_stop.clone()).instrument(tracing::info_span!("timeouts")));
        let mut reader = tracker.spawn(
            read_client(
                Input::stdin(),
                local.max_message_size,
                local.read_buffer_size,
                core.clone(),
                session,
                to_client.clone(),
                reader_stop.clone(),
            )
            .instrument(tracing::info_span!("client_reader")),
        );
        tracing::info!(upstream = %names.join(","), startup_us = started.elapsed().as_micros() as u64, "mcp-router ready");

        // 1. Stop reading stdin: on EOF (the client is done) or a signal.
        let why = tokio::select! {
            end = &mut reader => match end {
                Ok(ReaderEnd::Eof) => "stdin closed",
                _ => "stdin reader stopped",
            },
            sig = shutdown::signal() => {
                reader_stop.cancel();
                let _ = (&mut reader).await;
                sig
            }
        };
        tracing::info!(reason = why, pending = core.pending_len(), "shutting down");
        // 2. Let pending requests finish until the grace deadline, then fail the rest.
        tokio::select! {
            _ = shutdown::settle_pending(&core, local.shutdown_grace) => {}
            sig = shutdown::signal() => tracing::warn!("{sig} again: not waiting for pending requests"),
        }
        send_all(core.fail_all(&RouterError::new(ErrorKind::ShuttingDown, "router shutting down"))).await;
        // 3. Stop the upstreams (close stdin, grace, end process groups; close frames;
        //    abort POSTs) and the timer.
        timer_stop.cancel();
        upstream_stop.cancel();
        core.close_session(session);
        drop(to_client);
        tracker.close();
        // 4. The writer ends once every sender is gone, after a final flush.
        tracker.wait().await;
        let _ = writer.await;
        tracing::info!("mcp-router stopped");
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(0)
}
