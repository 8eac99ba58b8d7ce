//! From validated configuration to upstreams, in one place: a closed enum of what each
//! configured server is ([`Spec`]), built before anything starts (so a missing token or a
//! bad certificate is one clear error at start), resolved by auto-detection where asked,
//! and started by the one [`spawn`]. Nothing outside this file names a transport.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::supervisor::{Connector, Supervisor};
use super::{detect, gateway, http, sse, stdio, ws};
use crate::config::{
    Config, ConnectionMode, ReconnectPolicy, ServerConfig, ServerTarget, StdioCommand, TlsConfig,
    TransportHint,
};
use crate::router::Port;

/// What one configured server is.
pub enum Transport {
    Stdio(StdioCommand),
    Http(String),
    Sse(String),
    Ws(String),
    /// An MCP server speaking the TCP binary framing (`tcp://`, `tcps://`).
    Tcp(String),
    /// Through the mcp-bridge gateway.
    Gateway(Box<gateway::setup::Lanes>),
    /// Resolved by auto-detection before it starts.
    Detect {
        candidates: Vec<String>,
        fallback: Option<Box<gateway::setup::Lanes>>,
    },
}

/// Everything one upstream needs, taken from the configuration.
pub struct Spec {
    pub name: String,
    pub transport: Transport,
    reconnect: ReconnectPolicy,
    /// Configured headers plus the bearer token (values are secrets).
    headers: BTreeMap<String, String>,
    tls: TlsConfig,
    settings: Settings,
    /// `servers[].circuit_breaker` (a gateway has one per endpoint instead).
    breaker: Option<crate::resilience::breaker::BreakerConfig>,
}

/// The process-wide settings upstreams use.
#[derive(Clone)]
struct Settings {
    max_message_size: usize,
    write_buffer_size: usize,
    request_timeout: Duration,
    shutdown_grace: Duration,
    connect_timeout: Duration,
    ws_ping: Duration,
    ws_pong: Duration,
    detect_timeout: Duration,
    detect_cache: Option<(std::path::PathBuf, Duration)>,
}

/// The implicit server when only a gateway is configured.
fn gateway_server() -> ServerConfig {
    ServerConfig {
        name: "gateway".into(),
        enabled: true,
        prefix: "gateway".into(),
        connection_mode: ConnectionMode::Gateway,
        target: ServerTarget::Url(String::new()),
        transport: None,
        reconnect: Default::default(),
        headers: Default::default(),
        bearer: Default::default(),
        tls: Default::default(),
        tools: Default::default(),
        prompts: Default::default(),
        resources: Default::default(),
        max_concurrent_requests: None,
        rate_limit: None,
        circuit_breaker: None,
    }
}

/// One upstream per enabled server, in configuration order (the gateway alone when no
/// server is listed).
pub fn from_config(cfg: &Config) -> Result<Vec<Spec>, String> {
    let enabled: Vec<&ServerConfig> = cfg.servers.iter().filter(|s| s.enabled).collect();
    let servers = match enabled.as_slice() {
        [] if !cfg.servers.is_empty() => return Err("every server is disabled (enabled: false): enable at least one under `servers:`".into()),
        // The original's default: with a gateway and no servers, everything goes there.
        [] if cfg.gateway.is_some() => vec![gateway_server()],
        [] => return Err("nothing to route to: no servers and no gateway are configured.\n  Run one stdio server with `mcp-router -- <command> [args…]`,\n  use a gateway with `mcp-router --gateway wss://gateway.example.com`,\n  or list servers under `servers:` in the config file (see `mcp-router config check`).".into()),
        _ => enabled.into_iter().cloned().collect(),
    };
    servers.iter().map(|s| spec(s, cfg)).collect()
}

fn spec(server: &ServerConfig, cfg: &Config) -> Result<Spec, String> {
    let gateway = || -> Result<Box<gateway::setup::Lanes>, String> {
        let gw = cfg
            .gateway
            .as_ref()
            .ok_or("no gateway is configured: set gateway.url")?;
        gateway::setup::gateway(&server.name, gw, &cfg.secrets, &cfg.local).map(Box::new)
    };
    let transport = match &server.target {
        _ if server.connection_mode == ConnectionMode::Gateway => Transport::Gateway(gateway()?),
        ServerTarget::Stdio(cmd) => Transport::Stdio(cmd.clone()),
        ServerTarget::Url(url) => match super::unsupported_target(url) {
            None if url.starts_with("ws") => Transport::Ws(url.clone()),
            None if url.starts_with("tcp") => Transport::Tcp(url.clone()),
            // Declared (`transport:`, an mcpServers entry's `type`) beats the path.
            None if server.transport == Some(TransportHint::Sse) => Transport::Sse(url.clone()),
            None if server.transport == Some(TransportHint::StreamableHttp) => {
                Transport::Http(url.clone())
            }
            None if super::is_legacy_sse(url) => Transport::Sse(url.clone()),
            None => Transport::Http(url.clone()),
            Some(why) => return Err(format!("server '{}': {why}", server.name)),
        },
        ServerTarget::AutoDetect {
            candidates,
            fallback_gateway,
        } => Transport::Detect {
            candidates: candidates.clone(),
            fallback: if *fallback_gateway {
                Some(gateway()?)
            } else {
                None
            },
        },
    };
    // Read once, before anything starts, so a missing token is one clear error at start
    // instead of a failure on every request.
    let mut headers = server.headers.clone();
    if let Some(token) = crate::net::credentials::bearer_token(&server.name, &server.bearer)? {
        headers.insert("authorization".into(), format!("Bearer {}", token.expose()));
    }
    if !server.tls.verify {
        tracing::warn!(upstream = %server.name, "tls.verify is false: the server's certificate is not checked");
    }
    let ws = cfg.direct.raw.websocket.as_ref();
    let local = &cfg.local;
    Ok(Spec {
        name: server.name.clone(),
        transport,
        reconnect: server.reconnect.clone(),
        breaker: server.circuit_breaker.as_ref().map(Into::into),
        headers,
        tls: server.tls.clone(),
        settings: Settings {
            max_message_size: local.max_message_size,
            write_buffer_size: local.write_buffer_size,
            request_timeout: local.request_timeout,
            shutdown_grace: local.shutdown_grace,
            connect_timeout: cfg
                .direct
                .raw
                .default_timeout
                .map_or(Duration::from_secs(10), |d| d.0),
            ws_ping: ws
                .and_then(|w| w.ping_interval)
                .map_or(Duration::from_secs(30), |d| d.0),
            ws_pong: ws
                .and_then(|w| w.pong_timeout)
                .map_or(Duration::from_secs(10), |d| d.0),
            detect_timeout: cfg.direct.auto_detection_timeout,
            detect_cache: cfg
                .direct
                .cache_results
                .then(detect::default_cache_file)
                .flatten()
                .map(|f| (f, cfg.direct.cache_ttl)),
        },
    })
}

impl Spec {
    /// Runs auto-detection, if this server asks for it; the error says why no candidate
    /// would do.
    pub async fn resolve(mut self) -> Result<Spec, String> {
        let (candidates, fallback) =
            match std::mem::replace(&mut self.transport, Transport::Http(String::new())) {
                Transport::Detect {
                    candidates,
                    fallback,
                } => (candidates, fallback),
                other => {
                    self.transport = other;
                    return Ok(self);
                }
            };
        let probe = detect::Probe {
            server: &self.name,
            candidates: &candidates,
            timeout: self.settings.detect_timeout,
            tls: &self.tls,
            headers: &self.headers,
            cache: self.settings.detect_cache.clone(),
            fallback_gateway: fallback.is_some(),
        };
        self.transport = match detect::detect(&probe).await {
            Ok(detect::Detected::Stdio(cmd)) => Transport::Stdio(cmd),
            Ok(detect::Detected::StreamableHttp(url)) => Transport::Http(url),
            Ok(detect::Detected::Sse(url)) => Transport::Sse(url),
            Ok(detect::Detected::WebSocket(url)) => Transport::Ws(url),
            Ok(detect::Detected::Tcp(url)) => Transport::Tcp(url),
            // One URL (the `-- URL` shorthand) that is down right now: assume the modern
            // transport and start anyway, so each request gets its own error and the
            // server is used as soon as it is back.
            Err(why)
                if candidates.len() == 1
                    && candidates[0].starts_with("http")
                    && fallback.is_none() =>
            {
                tracing::warn!(upstream = %self.name, "{why}; using Streamable HTTP");
                Transport::Http(candidates[0].clone())
            }
            Err(why) => match fallback {
                Some(gw) => {
                    tracing::warn!(upstream = %self.name, "{why}; using the gateway (fallback: gateway)");
                    Transport::Gateway(gw)
                }
                None => return Err(format!("server '{}': {why}", self.name)),
            },
        };
        Ok(self)
    }
}

/// Starts upstream `spec` on `port`: its supervisor runs on the tracker until shutdown.
pub fn spawn(
    spec: Spec,
    port: Port,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), String> {
    let span = tracing::info_span!("upstream", upstream = %spec.name);
    let s = spec.settings;
    let name = spec.name;
    let reconnect = spec.reconnect;
    if let (Some(breaker), false) = (
        spec.breaker,
        matches!(spec.transport, Transport::Gateway(_)),
    ) {
        let lane = crate::router::LaneConfig {
            breaker: Some(breaker),
            ..Default::default()
        };
        port.set_lanes(vec![lane], Default::default());
    }
    let connector = match spec.transport {
        Transport::Http(url) => {
            // A server whose answer to the first POST says "legacy HTTP+SSE" carries on
            // as one, on the same port, with what was taken handed back (the spec's
            // backwards-compatibility procedure: no probe before the client speaks).
            let legacy = sse_connector(&name, &url, &spec.headers, &spec.tls, &s, true);
            let up = http::HttpUpstream {
                name,
                url,
                headers: spec.headers,
                max_message_size: s.max_message_size,
                connect_timeout: s.connect_timeout,
                tls: spec.tls,
                shutdown_grace: s.shutdown_grace,
                request_timeout: s.request_timeout,
                reconnect: reconnect.clone(),
            };
            let supervisor = supervisor(port.clone(), reconnect, &s, &shutdown, tracker);
            tracker.spawn(
                async move {
                    if up.run(port, shutdown).await.is_some() {
                        supervisor.run(legacy).await;
                    }
                }
                .instrument(span),
            );
            return Ok(());
        }
        Transport::Detect { .. } => {
            return Err(format!("server '{name}': auto-detection did not run"))
        }
        Transport::Stdio(command) => Connector::Stdio(stdio::Connector {
            name,
            command,
            max_message_size: s.max_message_size,
            write_buffer_size: s.write_buffer_size,
            shutdown_grace: s.shutdown_grace,
        }),
        Transport::Ws(url) => Connector::Ws(ws::Connector {
            name,
            url,
            headers: spec.headers,
            max_message_size: s.max_message_size,
            connect_timeout: s.connect_timeout,
            tls: spec.tls,
            ping_interval: s.ws_ping,
            pong_timeout: s.ws_pong,
        }),
        Transport::Sse(url) => sse_connector(&name, &url, &spec.headers, &spec.tls, &s, false),
        Transport::Tcp(url) => Connector::Gateway(Box::new(
            gateway::setup::tcp_server(gateway::setup::ServerSettings {
                name: &name,
                url: &url,
                tls: &spec.tls,
                reconnect: &reconnect,
                connect_timeout: s.connect_timeout,
                keepalive_interval: s.ws_ping,
                max_message_size: s.max_message_size,
            })
            .map_err(|e| format!("server '{name}': {e}"))?,
        )),
        Transport::Gateway(lanes) => {
            let template = super::pool::Template {
                replay_timeout: s.request_timeout,
            };
            super::pool::spawn_lanes(*lanes, port, &template, &shutdown, tracker, span);
            return Ok(());
        }
    };
    let supervisor = supervisor(port, reconnect, &s, &shutdown, tracker);
    tracker.spawn(supervisor.run(connector).instrument(span));
    Ok(())
}

fn supervisor(
    port: Port,
    reconnect: ReconnectPolicy,
    s: &Settings,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Supervisor {
    Supervisor {
        port,
        reconnect,
        replay_timeout: s.request_timeout,
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        slot: None,
    }
}

/// A legacy HTTP+SSE server (configured as one, or found by its refusal of a POST).
fn sse_connector(
    name: &str,
    url: &str,
    headers: &BTreeMap<String, String>,
    tls: &TlsConfig,
    s: &Settings,
    after_http_refusal: bool,
) -> Connector {
    Connector::Sse(sse::Connector {
        name: name.to_owned(),
        url: url.to_owned(),
        headers: headers.clone(),
        connect_timeout: s.connect_timeout,
        tls: tls.clone(),
        max_message_size: s.max_message_size,
        request_timeout: s.request_timeout,
        client: None,
        after_http_refusal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, LoadOptions};

    fn config(yaml: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.yaml");
        std::fs::write(&path, yaml).unwrap();
        let opts = LoadOptions {
            config_path: Some(path),
            ..LoadOptions::default()
        };
        load(&opts).expect("loads").config
    }

    fn kinds(specs: &[Spec]) -> Vec<(&str, &str)> {
        specs
            .iter()
            .map(|s| {
                let kind = match &s.transport {
                    Transport::Stdio(_) => "stdio",
                    Transport::Http(_) => "http",
                    Transport::Sse(_) => "sse",
                    Transport::Ws(_) => "ws",
                    Transport::Tcp(_) => "tcp",
                    Transport::Gateway(_) => "gateway",
                    Transport::Detect { .. } => "detect",
                };
                (s.name.as_str(), kind)
            })
            .collect()
    }

    #[test]
    fn one_spec_per_enabled_server_in_order() {
        let cfg = config(
            "servers:\n  - { name: a, command: x }\n  - { name: off, command: y, enabled: false }\n  - { name: b, url: 'https://h/mcp' }\n  - { name: c, url: 'wss://h/mcp' }\n",
        );
        let specs = from_config(&cfg).expect("several servers are fine");
        assert_eq!(kinds(&specs), [("a", "stdio"), ("b", "http"), ("c", "ws")]);
    }

    #[test]
    fn a_declared_transport_beats_the_path() {
        let cfg = config(
            "servers:\n  - { name: a, url: 'https://h/sse', transport: streamable-http }\n  - { name: b, url: 'https://h/events', transport: sse }\n  - { name: c, url: 'https://h/sse' }\n  - { name: d, url: 'https://h/events' }\n",
        );
        let specs = from_config(&cfg).expect("specs");
        assert_eq!(
            kinds(&specs),
            [("a", "http"), ("b", "sse"), ("c", "sse"), ("d", "http")]
        );
    }

    #[test]
    fn no_enabled_server_is_refused() {
        let mut cfg = config("servers:\n  - { name: a, command: x }\n");
        cfg.servers[0].enabled = false;
        let err = from_config(&cfg).err().expect("refused");
        assert!(err.contains("every server is disabled"), "{err}");
    }
}
