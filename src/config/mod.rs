//! Validated configuration: the plain structs every other module receives.
//!
//! Owns the merge of file → environment → flags (`load`) into these structs, once, at
//! start-up. Nothing outside `config/` reads the environment, the YAML or the `mcpServers`
//! JSON other clients use (`mcp_json.rs`). The serde mirror of what users write lives in
//! `raw.rs`; the `MCP_*` table in `env.rs`; the server filters in `filter.rs`; the
//! command-line server shorthands in `flags.rs`; the rate limit, circuit breaker and pool
//! settings in `resilience.rs`; the gateway's endpoints, load balancer and namespace
//! routing in `endpoints.rs`. This module never does network I/O and never starts tasks.

mod duration;
mod endpoints;
mod env;
mod filter;
mod flags;
mod inert;
mod load;
mod mcp_json;
mod raw;
mod render;
mod resilience;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use endpoints::{GatewayEndpoint, LoadBalancer, NamespaceRouting, NamespaceRule, Strategy};
pub use env::{EnvVar, Kind as EnvKind, ENV_VARS};
pub use filter::{glob_match, ItemFilter};
pub use flags::{parse_server_flag, FlagTarget, ServerFlag};
pub use load::{load, ConfigError, FlagOverrides, LoadOptions, Loaded};
pub use raw::{RawAdvanced, RawAuth, RawDirect, RawGatewayPool, RawTracing};
pub use render::render_effective;
pub use resilience::{CircuitBreaker, PoolConfig, RateLimit};
pub use validate::CIPHER_SUITES;

/// The whole, validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub version: u32,
    /// Every configured server in order: `servers:`, then those of `servers_from:`;
    /// disabled ones included (they are shown, never started).
    pub servers: Vec<ServerConfig>,
    /// How several servers are shown as one (`aggregate:`).
    pub aggregate: AggregateConfig,
    /// The remote gateway, when one is configured (`gateway.url` or `gateway.endpoints`).
    pub gateway: Option<GatewayConfig>,
    /// The Go router's multi-gateway shape as written (validated; its endpoints and
    /// policies are in `gateway`, `service_discovery` only here).
    pub gateway_pool: Option<RawGatewayPool>,
    #[serde(rename = "direct_clients")]
    pub direct: DirectConfig,
    pub local: LocalConfig,
    pub logging: LoggingConfig,
    pub metrics: MetricsConfig,
    /// Accepted and validated for compatibility; kept as written.
    pub tracing: Option<RawTracing>,
    pub advanced: Option<RawAdvanced>,
    /// Secrets from the environment; never printed.
    pub secrets: Secrets,
}

impl Default for Config {
    /// The defaults of an empty file.
    fn default() -> Self {
        validate::validate(
            &raw::RawConfig::default(),
            &mut validate::Problems::default(),
        )
    }
}

/// A secret value: `Debug` and `Display` print `***`, so it cannot leak through a log
/// line or an error message by accident. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Secrets given through the environment (`MCP_AUTH_TOKEN`, `MCP_CLIENT_SECRET`,
/// `MCP_OAUTH_PASSWORD`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Secrets {
    pub auth_token: Option<Secret>,
    pub client_secret: Option<Secret>,
    pub oauth_password: Option<Secret>,
}

/// The gateway connection settings (validated; used by the gateway upstream).
#[derive(Debug, Clone, Serialize)]
pub struct GatewayConfig {
    /// In order of preference: `gateway.url` first, then `gateway.endpoints[]` (with only
    /// `gateway_pool:`, its `endpoints[]`), each with its settings resolved.
    pub endpoints: Vec<GatewayEndpoint>,
    /// `websocket` or `tcp`.
    pub protocol_preference: String,
    pub auto_select: bool,
    /// The gateway's own auth, connection and TLS settings below (`gateway.auth`,
    /// `gateway.connection`, `gateway.tls`; with only `gateway_pool:`, its first
    /// endpoint's): what every endpoint without its own uses. `auth_type`: `bearer`,
    /// `mtls` or `oauth2`.
    pub auth_type: String,
    pub auth: RawAuth,
    #[serde(rename = "timeout_ms", serialize_with = "render::millis")]
    pub timeout: Duration,
    #[serde(rename = "keepalive_interval_ms", serialize_with = "render::millis")]
    pub keepalive_interval: Duration,
    pub reconnect: ReconnectPolicy,
    /// `None`: `pool.enabled: false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolConfig>,
    pub tls: TlsConfig,
    /// `mcpb` (default) or `legacy`.
    pub framing: String,
    pub tcp_notifications: bool,
    /// Namespace for methods that name none (`gateway_pool.default_namespace`).
    pub default_namespace: String,
    /// `gateway_pool.load_balancer` (its defaults when not given).
    pub load_balancer: LoadBalancer,
    /// `gateway_pool.circuit_breaker`, one breaker per endpoint; `None`: off (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// `gateway_pool.namespace_routing`; `None`: off (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_routing: Option<NamespaceRouting>,
}

/// `aggregate:`: how the names of several servers' items are told apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AggregateConfig {
    /// Between a server's prefix and an item's name (`github__create_issue`); 1 to 8 of
    /// `[A-Za-z0-9_-]`, default `__`.
    pub separator: String,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        Self {
            separator: "__".into(),
        }
    }
}

/// TLS client settings; verification is on unless explicitly turned off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsConfig {
    pub verify: bool,
    pub ca_cert_path: Option<PathBuf>,
    /// `1.2` or `1.3`.
    pub min_version: String,
    pub cipher_suites: Vec<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub pinned_spki_sha256: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            verify: true,
            ca_cert_path: None,
            min_version: "1.3".into(),
            cipher_suites: Vec::new(),
            client_cert: None,
            client_key: None,
            pinned_spki_sha256: Vec::new(),
        }
    }
}

/// `direct_clients:` (alias `direct:`): how servers are reached without the gateway.
#[derive(Debug, Clone, Serialize)]
pub struct DirectConfig {
    pub enabled: bool,
    pub auto_detection_enabled: bool,
    /// Per-candidate probe timeout.
    #[serde(serialize_with = "render::duration")]
    pub auto_detection_timeout: Duration,
    pub preferred_order: Vec<String>,
    pub cache_results: bool,
    #[serde(serialize_with = "render::duration")]
    pub cache_ttl: Duration,
    /// The whole section as written (transport tunables used by later transports).
    #[serde(skip)]
    pub raw: RawDirect,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// `host:port`; loopback unless configured otherwise.
    pub endpoint: String,
    pub path: String,
    pub labels: BTreeMap<String, String>,
}

/// One upstream MCP server reached directly (or, with `connection_mode: gateway`, through
/// the gateway).
#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub name: String,
    /// `enabled: false` (or `"disabled": true` in an `mcpServers` file): kept in the
    /// configuration so `config check` shows it, never started.
    pub enabled: bool,
    /// Put before this server's tool and prompt names when several servers are shown as
    /// one; `[A-Za-z0-9_-]{1,32}`, by default the name with other characters as `_`.
    pub prefix: String,
    pub connection_mode: ConnectionMode,
    #[serde(flatten)]
    pub target: ServerTarget,
    /// A network server's transport when the URL alone does not say (`transport:`, or an
    /// `mcpServers` entry's `type`); `None`: decided by the URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<TransportHint>,
    /// Restart (stdio) / reconnect (network) policy for this server.
    pub reconnect: ReconnectPolicy,
    /// Extra HTTP/WebSocket headers for network servers (values may be secrets).
    #[serde(
        serialize_with = "render::masked_values",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub headers: BTreeMap<String, String>,
    /// Where a bearer token for a network server comes from (`auth.token_env` /
    /// `auth.token_file`); read when the router starts, sent as `Authorization: Bearer`.
    #[serde(skip_serializing_if = "BearerSource::is_none")]
    pub bearer: BearerSource,
    /// TLS for `https://` and `wss://` servers.
    pub tls: TlsConfig,
    /// Which of the server's tools, prompts and resources the client sees.
    #[serde(skip_serializing_if = "ItemFilter::is_empty")]
    pub tools: ItemFilter,
    #[serde(skip_serializing_if = "ItemFilter::is_empty")]
    pub prompts: ItemFilter,
    #[serde(skip_serializing_if = "ItemFilter::is_empty")]
    pub resources: ItemFilter,
    /// Requests in flight to this server at once, ≥ 1; `None`: `local.max_concurrent_requests`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<usize>,
    /// A token bucket for this server's requests; `None`: no limit of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// `None`: no breaker (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

impl ServerConfig {
    /// This server's concurrency limit: its own, else `local.max_concurrent_requests`.
    pub fn max_concurrent(&self, local: &LocalConfig) -> usize {
        self.max_concurrent_requests
            .unwrap_or(local.max_concurrent_requests)
    }
}

/// The transport a URL server was declared with. Validation guarantees the URL's scheme
/// fits: `StreamableHttp` and `Sse` only with `http(s)://`, `WebSocket` only with `ws(s)://`.
/// Rendered as the value `transport:` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TransportHint {
    /// Streamable HTTP even when the path ends in `/sse`.
    #[serde(rename = "streamable-http")]
    StreamableHttp,
    /// The legacy HTTP+SSE transport whatever the path.
    #[serde(rename = "sse")]
    Sse,
    #[serde(rename = "websocket")]
    WebSocket,
}

/// A bearer token's source: an environment variable or a file (never the token itself).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BearerSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl BearerSource {
    pub fn is_none(&self) -> bool {
        self.token_env.is_none() && self.token_file.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionMode {
    #[default]
    Direct,
    Gateway,
}

/// Where a server lives.
#[derive(Debug, Clone)]
pub enum ServerTarget {
    /// A child process speaking newline-delimited JSON-RPC on its stdio.
    Stdio(StdioCommand),
    /// A network address (`http(s)://`, `ws(s)://`, `tcp://` …); the scheme decides the
    /// transport.
    Url(String),
    /// Try these candidates in order and use the first that answers as MCP.
    AutoDetect {
        candidates: Vec<String>,
        fallback_gateway: bool,
    },
}

/// A child process to spawn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StdioCommand {
    pub program: String,
    pub args: Vec<String>,
    #[serde(serialize_with = "render::masked_values")]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
}

/// Exponential backoff with jitter; `max_attempts: None` retries forever.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReconnectPolicy {
    #[serde(rename = "initial_delay_ms", serialize_with = "render::millis")]
    pub initial_delay: Duration,
    #[serde(rename = "max_delay_ms", serialize_with = "render::millis")]
    pub max_delay: Duration,
    pub multiplier: f64,
    #[serde(serialize_with = "render::attempts")]
    pub max_attempts: Option<u32>,
    pub jitter: f64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(1000),
            max_delay: Duration::from_millis(60_000),
            multiplier: 2.0,
            max_attempts: Some(10),
            jitter: 0.1,
        }
    }
}

/// The client-facing side: limits and timeouts that apply to every request.
#[derive(Debug, Clone, Serialize)]
pub struct LocalConfig {
    #[serde(rename = "request_timeout_ms", serialize_with = "render::millis")]
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub max_queued_requests: usize,
    /// Largest single JSON-RPC message (one line) accepted from either side, in bytes.
    pub max_message_size: usize,
    pub read_buffer_size: usize,
    pub write_buffer_size: usize,
    /// How long shutdown waits for in-flight requests, and then for a child to exit after
    /// its stdin is closed, before it is killed.
    #[serde(rename = "shutdown_grace_ms", serialize_with = "render::millis")]
    pub shutdown_grace: Duration,
    /// Token bucket for every client request; `None`: off (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_millis(30_000),
            max_concurrent_requests: 100,
            max_queued_requests: 100,
            max_message_size: 10 * 1024 * 1024,
            read_buffer_size: 65_536,
            write_buffer_size: 65_536,
            shutdown_grace: Duration::from_millis(2_000),
            rate_limit: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggingConfig {
    /// A `tracing` filter directive: `trace`, `debug`, `info`, `warn`, `error`.
    pub level: String,
    pub format: LogFormat,
    /// Add the source file and line to each log line.
    pub include_caller: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Json,
            include_caller: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod servers_tests;

#[cfg(test)]
mod resilience_tests;
