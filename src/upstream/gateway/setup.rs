//! From validated configuration to ready gateway connectors, one per endpoint lane:
//! endpoints parsed, each with its own auth, connection and TLS settings (the gateway's
//! where it has none), credentials resolved (a missing token is an error at start, not on
//! every request), the TLS configuration built once per endpoint; the lanes' weights,
//! priorities, tags, breakers and pools. Only translation lives here.

use std::sync::Arc;
use std::time::Duration;

use super::endpoints::{Endpoint, Order, Protocol};
use super::{Connector, Framing, Role};
use crate::config::{
    GatewayConfig, LocalConfig, NamespaceRouting, ReconnectPolicy, Secrets, TlsConfig,
};
use crate::resilience::balance::Strategy;
use crate::router::LaneConfig;

/// One gateway endpoint: how to connect, and how the core sees its lane.
pub struct Lane {
    pub connector: Connector,
    /// `None`: one connection (`connection.pool.enabled: false`).
    pub pool: Option<crate::resilience::pool::PoolConfig>,
    pub config: LaneConfig,
}

/// The gateway as lanes, one per endpoint in use.
pub struct Lanes {
    pub lanes: Vec<Lane>,
    pub strategy: Strategy,
    /// `load_balancer.failover_timeout`.
    pub failover_timeout: Duration,
    pub namespace_routing: Option<NamespaceRouting>,
}

/// The gateway (`gateway:` / `gateway_pool:`) as an upstream named `name`: with
/// `auto_select` every endpoint is a lane, the preferred protocol's first; without it
/// only the first endpoint is used.
pub fn gateway(
    name: &str,
    gw: &GatewayConfig,
    secrets: &Secrets,
    local: &LocalConfig,
) -> Result<Lanes, String> {
    let preferred = if gw.protocol_preference == "tcp" {
        Protocol::Tcp
    } else {
        Protocol::WebSocket
    };
    let mut order: Vec<usize> = (0..gw.endpoints.len()).collect();
    if gw.auto_select {
        let protocol = |i: usize| {
            Endpoint::parse(&gw.endpoints[i].url)
                .map(|e| e.protocol)
                .ok()
        };
        order.sort_by_key(|&i| protocol(i) != Some(preferred));
    } else {
        order.truncate(1);
    }
    let mut lanes = Vec::with_capacity(order.len());
    for i in order {
        let e = &gw.endpoints[i];
        let mut one = gw.clone();
        one.endpoints = vec![e.clone()];
        one.auth_type = e.auth_type.clone();
        one.auth = e.auth.clone();
        one.timeout = e.timeout;
        one.reconnect = e.reconnect.clone();
        one.tls = e.tls.clone();
        one.pool = e.pool.clone();
        // A pool checks each connection's health at its own interval (WebSocket ping,
        // MCPB HealthCheck): the keepalive of a pooled connection.
        one.keepalive_interval = match &e.pool {
            Some(p) => e.keepalive_interval.min(p.health_check_interval),
            None => e.keepalive_interval,
        };
        let connector = endpoint_connector(name, &one, secrets, local)?;
        let pool: Option<crate::resilience::pool::PoolConfig> = e.pool.as_ref().map(Into::into);
        lanes.push(Lane {
            config: LaneConfig {
                label: crate::telemetry::redact::url(&e.url),
                breaker: gw.circuit_breaker.as_ref().map(Into::into),
                weight: e.weight,
                priority: e.priority,
                tags: e.tags.clone(),
                acquire_timeout: pool.map(|p| p.acquire_timeout),
            },
            connector,
            pool,
        });
    }
    if lanes.is_empty() {
        return Err("no gateway endpoint is configured: set gateway.url".into());
    }
    Ok(Lanes {
        lanes,
        strategy: gw.load_balancer.strategy.into(),
        failover_timeout: gw.load_balancer.failover_timeout,
        namespace_routing: gw.namespace_routing.clone(),
    })
}

/// One endpoint's connector (`gw` holds only that endpoint, with its settings).
fn endpoint_connector(
    name: &str,
    gw: &GatewayConfig,
    secrets: &Secrets,
    local: &LocalConfig,
) -> Result<Connector, String> {
    let endpoints = gw
        .endpoints
        .iter()
        .map(|e| Endpoint::parse(&e.url))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tls = gw.tls.clone();
    if let Some((cert, key)) = crate::auth::mtls_files(gw) {
        tls.client_cert.get_or_insert(cert);
        tls.client_key.get_or_insert(key);
    }
    if !tls.verify {
        tracing::warn!(upstream = %name, "gateway.tls.verify is false: the gateway's certificate is not checked; anyone on the path can read and change this traffic");
    }
    let auth = crate::auth::from_config(gw, secrets, &tls).map_err(|e| e.to_string())?;
    let config =
        crate::net::tls::client_config(&tls, &[]).map_err(|e| format!("gateway.tls: {e}"))?;
    let protocol_preference = if gw.protocol_preference == "tcp" {
        Protocol::Tcp
    } else {
        Protocol::WebSocket
    };
    Ok(Connector {
        name: name.to_owned(),
        role: Role::Gateway,
        order: Order::new(&endpoints, protocol_preference, gw.auto_select),
        said: Default::default(),
        reconnect: gw.reconnect.clone(),
        connected: None,
        endpoints,
        auth: Some(Arc::new(auth)),
        tls: config,
        tls_setting: "gateway.tls".into(),
        connect_timeout: gw.timeout,
        keepalive_interval: gw.keepalive_interval,
        per_message_auth: gw.auth.per_message_auth.unwrap_or(false),
        tcp_notifications: gw.tcp_notifications,
        default_namespace: gw.default_namespace.clone(),
        framing: if gw.framing == "legacy" {
            Framing::Legacy
        } else {
            Framing::Mcpb
        },
        max_message_size: local.max_message_size,
    })
}

/// An MCP server that speaks the TCP binary framing itself (`servers[].url: tcp://…`).
pub struct ServerSettings<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub tls: &'a TlsConfig,
    pub reconnect: &'a ReconnectPolicy,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub max_message_size: usize,
}

pub fn tcp_server(s: ServerSettings<'_>) -> Result<Connector, String> {
    let endpoint = Endpoint::parse(s.url)?;
    let config = crate::net::tls::client_config(s.tls, &[])?;
    Ok(Connector {
        name: s.name.to_owned(),
        role: Role::Server,
        order: Order::new(std::slice::from_ref(&endpoint), endpoint.protocol, false),
        said: Default::default(),
        reconnect: s.reconnect.clone(),
        connected: None,
        endpoints: vec![endpoint],
        auth: None,
        tls: config,
        tls_setting: format!("servers.{}.tls", s.name),
        connect_timeout: s.connect_timeout,
        keepalive_interval: s.keepalive_interval,
        per_message_auth: false,
        tcp_notifications: true,
        default_namespace: String::new(),
        framing: Framing::Mcpb,
        max_message_size: s.max_message_size,
    })
}
