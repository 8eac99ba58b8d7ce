//! `mcp-router` (no subcommand): assemble the router for the configuration and run it.
//!
//! Builds the task set in one place (a current-thread runtime: the router is I/O-bound,
//! and one thread gives the lowest added latency and the smallest footprint), then runs the
//! shutdown sequence in its fixed order. Returns the exit code.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::{ConnectionMode, Loaded, ServerTarget};
use crate::frontend::fd::{Input, Output};
use crate::frontend::stdio::{read_client, write_client, ReaderEnd};
use crate::router::{Limits, Router};
use crate::upstream::http::HttpUpstream;
use crate::upstream::sse::SseUpstream;
use crate::upstream::stdio::{Links, StdioUpstream};
use crate::upstream::ws::WsUpstream;
use crate::{shutdown, telemetry, upstream};

/// Messages buffered between tasks (each way); bounded so a slow side slows the other.
const CHANNEL_DEPTH: usize = 256;

/// The transport the one configured server needs.
enum Target {
    Stdio(crate::config::StdioCommand),
    Http(String),
    Ws(String),
    Sse(String),
    /// An MCP server speaking the TCP binary framing (`tcp://`, `tcps://`).
    Tcp(String),
    /// The mcp-bridge gateway (`gateway:`).
    Gateway,
    /// Resolved by auto-detection once the runtime runs.
    Detect {
        candidates: Vec<String>,
        fallback_gateway: bool,
    },
}

impl Target {
    fn from_detected(d: upstream::detect::Detected) -> Self {
        use upstream::detect::Detected;
        match d {
            Detected::Stdio(cmd) => Target::Stdio(cmd),
            Detected::StreamableHttp(url) => Target::Http(url),
            Detected::Sse(url) => Target::Sse(url),
            Detected::WebSocket(url) => Target::Ws(url),
            Detected::Tcp(url) => Target::Tcp(url),
        }
    }
}

/// The implicit server when only a gateway is configured.
fn gateway_server() -> crate::config::ServerConfig {
    crate::config::ServerConfig {
        name: "gateway".into(),
        connection_mode: ConnectionMode::Gateway,
        target: ServerTarget::Url(String::new()),
        reconnect: Default::default(),
        headers: Default::default(),
        bearer: Default::default(),
        tls: Default::default(),
    }
}

pub fn run(loaded: Loaded) -> anyhow::Result<i32> {
    let cfg = loaded.config;
    telemetry::logging::init(&cfg.logging).map_err(anyhow::Error::msg)?;
    for w in &loaded.warnings {
        tracing::warn!("config: {w}");
    }
    let server = match cfg.servers.as_slice() {
        // The original's default: with a gateway and no servers, everything goes there.
        [] if cfg.gateway.is_some() => gateway_server(),
        [] => bail!(
            "nothing to route to: no servers and no gateway are configured.\n  Run one stdio server with `mcp-router -- <command> [args…]`,\n  use a gateway with `mcp-router --gateway wss://gateway.example.com`,\n  or list servers under `servers:` in the config file (see `mcp-router config check`)."
        ),
        [one] => one.clone(),
        [_, ..] => bail!(
            "{} servers are configured, but this build routes to one server only (several servers behind one router are not supported yet); keep one entry under `servers:`",
            cfg.servers.len()
        ),
    };
    let target = match &server.target {
        _ if server.connection_mode == ConnectionMode::Gateway => Target::Gateway,
        ServerTarget::Stdio(cmd) => Target::Stdio(cmd.clone()),
        ServerTarget::Url(url) => match upstream::unsupported_target(url) {
            None if url.starts_with("ws") => Target::Ws(url.clone()),
            None if url.starts_with("tcp") => Target::Tcp(url.clone()),
            None if upstream::is_legacy_sse(url) => Target::Sse(url.clone()),
            None => Target::Http(url.clone()),
            Some(why) => bail!("server '{}': {why}", server.name),
        },
        ServerTarget::AutoDetect {
            candidates,
            fallback_gateway,
        } => Target::Detect {
            candidates: candidates.clone(),
            fallback_gateway: *fallback_gateway,
        },
    };
    // Built before anything starts, so a missing token or a bad certificate file is one
    // clear error at start. Used for `Target::Gateway` and for `fallback: gateway`.
    let mut gateway = None;
    let wants_gateway = matches!(target, Target::Gateway)
        || matches!(
            target,
            Target::Detect {
                fallback_gateway: true,
                ..
            }
        );
    if wants_gateway {
        let gw = cfg
            .gateway
            .as_ref()
            .context("no gateway is configured: set gateway.url")?;
        gateway = Some(
            upstream::gateway::setup::gateway(&server.name, gw, &cfg.secrets, &cfg.local)
                .map_err(anyhow::Error::msg)?,
        );
    }

    // Credentials are read once, before anything starts, so a missing token is one clear
    // error at start instead of a failure on every request.
    let mut headers = server.headers.clone();
    if let Some(token) = crate::net::credentials::bearer_token(&server.name, &server.bearer)
        .map_err(anyhow::Error::msg)?
    {
        headers.insert("authorization".into(), format!("Bearer {}", token.expose()));
    }
    if !server.tls.verify {
        tracing::warn!(upstream = %server.name, "tls.verify is false: the server's certificate is not checked");
    }
    let tls = server.tls.clone();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let started = Instant::now();
    rt.block_on(async move {
        let target = match target {
            Target::Detect {
                candidates,
                fallback_gateway,
            } => {
                let probe = upstream::detect::Probe {
                    server: &server.name,
                    candidates: &candidates,
                    timeout: cfg.direct.auto_detection_timeout,
                    tls: &tls,
                    headers: &headers,
                    cache: cfg
                        .direct
                        .cache_results
                        .then(upstream::detect::default_cache_file)
                        .flatten()
                        .map(|f| (f, cfg.direct.cache_ttl)),
                    fallback_gateway,
                };
                match upstream::detect::detect(&probe).await {
                    Ok(found) => Target::from_detected(found),
                    // One URL (the `-- URL` shorthand) that is down right now: assume the
                    // modern transport and start anyway, so each request gets its own error
                    // and the server is used as soon as it is back.
                    Err(why) if candidates.len() == 1 && candidates[0].starts_with("http") && !fallback_gateway => {
                        tracing::warn!(upstream = %server.name, "{why}; using Streamable HTTP");
                        Target::Http(candidates[0].clone())
                    }
                    Err(why) if fallback_gateway => {
                        tracing::warn!(upstream = %server.name, "{why}; using the gateway (fallback: gateway)");
                        Target::Gateway
                    }
                    Err(why) => bail!("server '{}': {why}", server.name),
                }
            }
            other => other,
        };
        let local = cfg.local.clone();
        let connect_timeout = cfg.direct.raw.default_timeout.map_or(std::time::Duration::from_secs(10), |d| d.0);
        let ws_ping = cfg
            .direct
            .raw
            .websocket
            .as_ref()
            .and_then(|w| w.ping_interval)
            .map_or(std::time::Duration::from_secs(30), |d| d.0);
        let router = Arc::new(Router::new(
            server.name.clone(),
            Limits {
                request_timeout: local.request_timeout,
                max_queued_requests: local.max_queued_requests,
            },
        ));
        let tracker = TaskTracker::new();
        let (to_client, client_rx) = mpsc::channel(CHANNEL_DEPTH);
        let (to_upstream, upstream_rx) = mpsc::channel(CHANNEL_DEPTH);
        let reader_stop = CancellationToken::new();
        let upstream_stop = CancellationToken::new();
        let timer_stop = CancellationToken::new();

        let writer = tracker.spawn(
            write_client(Output::stdout(), client_rx, local.write_buffer_size)
                .instrument(tracing::info_span!("client_writer")),
        );
        let links = Links {
            router: router.clone(),
            from_router: upstream_rx,
            to_client: to_client.clone(),
            shutdown: upstream_stop.clone(),
            tracker: tracker.clone(),
        };
        let span = tracing::info_span!("upstream", upstream = %server.name);
        let sse = |url| SseUpstream {
            name: server.name.clone(),
            url,
            headers: headers.clone(),
            connect_timeout,
            tls: tls.clone(),
            reconnect: server.reconnect.clone(),
            max_message_size: local.max_message_size,
            request_timeout: local.request_timeout,
        };
        match target {
            Target::Stdio(command) => tracker.spawn(
                StdioUpstream {
                    name: server.name.clone(),
                    command,
                    reconnect: server.reconnect.clone(),
                    max_message_size: local.max_message_size,
                    write_buffer_size: local.write_buffer_size,
                    request_timeout: local.request_timeout,
                    shutdown_grace: local.shutdown_grace,
                }
                .run(links)
                .instrument(span),
            ),
            Target::Http(url) => {
                let http = HttpUpstream {
                    name: server.name.clone(),
                    url: url.clone(),
                    headers: headers.clone(),
                    max_message_size: local.max_message_size,
                    connect_timeout,
                    tls: tls.clone(),
                    shutdown_grace: local.shutdown_grace,
                    request_timeout: local.request_timeout,
                    max_concurrent_requests: local.max_concurrent_requests,
                };
                // A server that refuses the first POST is legacy HTTP+SSE.
                let legacy = sse(url);
                tracker.spawn(
                    async move {
                        if let Some(fallback) = http.run(links).await {
                            legacy.run_with(fallback.links, Some(fallback.first)).await;
                        }
                    }
                    .instrument(span),
                )
            }
            Target::Sse(url) => tracker.spawn(sse(url).run(links).instrument(span)),
            Target::Detect { .. } => bail!("server {}: auto-detection did not run", server.name),
            Target::Gateway => {
                let up = gateway.take().context("the gateway was not set up")?;
                tracker.spawn(up.run(links).instrument(span))
            }
            Target::Tcp(url) => {
                let up = upstream::gateway::setup::tcp_server(upstream::gateway::setup::ServerSettings {
                    name: &server.name,
                    url: &url,
                    tls: &tls,
                    reconnect: &server.reconnect,
                    connect_timeout,
                    keepalive_interval: ws_ping,
                    local: &local,
                })
                .map_err(|e| anyhow::anyhow!("server '{}': {e}", server.name))?;
                tracker.spawn(up.run(links).instrument(span))
            }
            Target::Ws(url) => tracker.spawn(
                WsUpstream {
                    name: server.name.clone(),
                    url,
                    headers: headers.clone(),
                    reconnect: server.reconnect.clone(),
                    max_message_size: local.max_message_size,
                    connect_timeout,
                    tls: tls.clone(),
                    ping_interval: ws_ping,
                    request_timeout: local.request_timeout,
                }
                .run(links)
                .instrument(span),
            ),
        };
        tracker.spawn(
            run_timer(router.clone(), to_upstream.clone(), to_client.clone(), timer_stop.clone())
                .instrument(tracing::info_span!("timeouts")),
        );
        let mut reader = tracker.spawn(
            read_client(
                Input::stdin(),
                local.max_message_size,
                local.read_buffer_size,
                router.clone(),
                to_upstream.clone(),
                to_client.clone(),
                reader_stop.clone(),
            )
            .instrument(tracing::info_span!("client_reader")),
        );
        tracing::info!(upstream = %server.name, startup_us = started.elapsed().as_micros() as u64, "mcp-router ready");

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
        tracing::info!(reason = why, pending = router.pending_len(), "shutting down");
        // 2. Let pending requests finish until the grace deadline, then fail the rest.
        tokio::select! {
            _ = shutdown::settle_pending(&router, local.shutdown_grace, &to_client) => {}
            sig = shutdown::signal() => tracing::warn!("{sig} again: not waiting for pending requests"),
        }
        for reply in router.fail_all(&crate::wire::RouterError::new(crate::wire::ErrorKind::ShuttingDown, "router shutting down")) {
            let _ = to_client.send(reply).await;
        }
        // 3. Stop the upstream (close its stdin, grace, end its process group) and timers.
        timer_stop.cancel();
        upstream_stop.cancel();
        drop(to_upstream);
        drop(to_client);
        tracker.close();
        // 4. The writer ends once every sender is gone, after a final flush.
        tracker.wait().await;
        let _ = writer.await;
        tracing::info!("mcp-router stopped");
        Ok(())
    })?;
    Ok(0)
}

/// Fires request timeouts: the earliest deadline is always the one being slept on.
async fn run_timer(
    router: Arc<Router>,
    to_upstream: mpsc::Sender<crate::router::Outgoing>,
    to_client: mpsc::Sender<bytes::Bytes>,
    stop: CancellationToken,
) {
    loop {
        let next = router.next_deadline();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = router.deadline_changed.notified() => continue,
            _ = sleep => {}
        }
        let (replies, cancels) = router.expire(Instant::now());
        for reply in replies {
            if to_client.send(reply).await.is_err() {
                return;
            }
        }
        for cancel in cancels {
            // The upstream may be gone already; the client has its answer either way.
            let _ = to_upstream.try_send(cancel);
        }
    }
}
