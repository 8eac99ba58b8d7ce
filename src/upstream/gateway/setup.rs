//! From validated configuration to a ready gateway connector: endpoints parsed,
//! credentials resolved (a missing token is an error at start, not on every request), the
//! TLS configuration built once. Only translation lives here.

use std::sync::Arc;
use std::time::Duration;

use super::endpoints::{Endpoint, Order, Protocol};
use super::{Connector, Framing, Role};
use crate::config::{GatewayConfig, LocalConfig, ReconnectPolicy, Secrets, TlsConfig};

/// The gateway (`gateway:` / `gateway_pool:`) as an upstream named `name`.
pub fn gateway(
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
