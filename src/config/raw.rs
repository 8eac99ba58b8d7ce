//! The serde mirror of the YAML users have: every key of the original router's schema
//! (the seed README's shape and the Go code's `gateway_pool:`/`direct:` shape), all
//! optional, no defaults and no validation (`mod.rs` does both).
//!
//! Keys whose only effect in the original was Go runtime tuning (`*.performance`,
//! `adaptive_*`, `timeout_tuning`, `observability`, pools inside `memory_optimization`) are
//! accepted as opaque YAML: they load, they are shown by `config check`, they do nothing.
//! Unknown keys are not errors here; `load` reports them as warnings. Keys marked "Ours"
//! are this router's additions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use super::duration::{ConfigDuration, ConfigSeconds};

/// Free-form YAML accepted for compatibility.
pub type Opaque = Option<Value>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub version: Option<u32>,
    pub servers: Option<Vec<RawServer>>,
    /// Ours: `mcpServers` JSON files (Claude Desktop, Cursor, VS Code …) whose servers are
    /// added after `servers:`.
    pub servers_from: Option<RawPaths>,
    /// Ours: how several servers are shown as one.
    pub aggregate: Option<RawAggregate>,
    pub gateway: Option<RawGateway>,
    pub gateway_pool: Option<RawGatewayPool>,
    #[serde(alias = "direct")]
    pub direct_clients: Option<RawDirect>,
    pub local: Option<RawLocal>,
    pub logging: Option<RawLogging>,
    pub metrics: Option<RawMetrics>,
    pub tracing: Option<RawTracing>,
    pub advanced: Option<RawAdvanced>,
}

/// `command: "python server.py"` or `command: [python, server.py]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawCommand {
    Line(String),
    Words(Vec<String>),
}

/// `servers_from: a.json` or `servers_from: [a.json, b.json]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawPaths {
    One(String),
    Many(Vec<String>),
}

impl RawPaths {
    pub fn as_slice(&self) -> &[String] {
        match self {
            RawPaths::One(p) => std::slice::from_ref(p),
            RawPaths::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawAggregate {
    pub separator: Option<String>,
}

/// `tools: { allow: [globs], deny: [globs] }` (and `prompts:`, `resources:`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawFilter {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawServer {
    pub name: Option<String>,
    /// Ours: `false` keeps the entry but does not start it.
    pub enabled: Option<bool>,
    /// Ours: before the server's item names when several servers are shown as one.
    pub prefix: Option<String>,
    pub connection_mode: Option<String>,
    pub command: Option<RawCommand>,
    pub args: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub cwd: Option<String>,
    pub url: Option<String>,
    pub auto_detect: Option<bool>,
    pub candidates: Option<Vec<String>>,
    pub fallback: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub reconnect: Option<RawReconnect>,
    /// Ours: `token_env` / `token_file` for a bearer token to a network server.
    pub auth: Option<RawAuth>,
    /// Ours: `verify`, `ca_cert_path` for an `https://` / `wss://` server.
    pub tls: Option<RawTls>,
    /// Ours: force a URL server's transport (`streamable-http`, `sse`, `websocket` …).
    pub transport: Option<String>,
    /// Ours: which tools, prompts and resources of this server the client sees.
    pub tools: Option<RawFilter>,
    pub prompts: Option<RawFilter>,
    pub resources: Option<RawFilter>,
    /// Ours: this server's requests in flight at once (instead of
    /// `local.max_concurrent_requests`).
    pub max_concurrent_requests: Option<u64>,
    /// Ours: a token bucket for this server's requests, shaped like `local.rate_limit`.
    pub rate_limit: Option<RawRateLimit>,
    /// Ours: a circuit breaker for this server, shaped like `gateway_pool.circuit_breaker`.
    pub circuit_breaker: Option<RawBreaker>,
    /// Where the entry came from when not `servers:` (`servers.json: mcpServers.github`),
    /// for messages; never read from or written to a file.
    #[serde(skip)]
    pub origin: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawGateway {
    pub url: Option<String>,
    pub endpoints: Option<Vec<RawEndpoint>>,
    pub protocol_preference: Option<String>,
    pub auto_select: Option<bool>,
    pub auth: Option<RawAuth>,
    pub connection: Option<RawConnection>,
    pub tls: Option<RawTls>,
    /// Our extension: `mcpb` (the gateway's framing, default) or `legacy` (the Go
    /// router's 16-byte header) for `tcp://` endpoints.
    pub framing: Option<String>,
    /// Our extension: send client notifications over the TCP protocol (the gateway's TCP
    /// handler closes the connection on a message without an id; default false).
    pub tcp_notifications: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawEndpoint {
    pub url: Option<String>,
    pub auth: Option<RawAuth>,
    pub connection: Option<RawConnection>,
    pub tls: Option<RawTls>,
    pub weight: Option<i64>,
    pub priority: Option<i64>,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawAuth {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    pub token_secure_key: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret_secure_key: Option<String>,
    pub token_endpoint: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub scope: Option<String>,
    pub grant_type: Option<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_secure_key: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub per_message_auth: Option<bool>,
    pub per_message_cache: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawConnection {
    pub timeout_ms: Option<u64>,
    pub keepalive_interval_ms: Option<u64>,
    pub max_connections: Option<i64>,
    pub max_connections_per_ip: Option<i64>,
    pub buffer_size: Option<i64>,
    pub reconnect: Option<RawReconnect>,
    pub pool: Option<RawPool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawReconnect {
    pub initial_delay_ms: Option<u64>,
    pub max_delay_ms: Option<u64>,
    pub multiplier: Option<f64>,
    pub max_attempts: Option<i64>,
    pub jitter: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawPool {
    pub enabled: Option<bool>,
    pub min_size: Option<i64>,
    pub max_size: Option<i64>,
    pub max_idle_time_ms: Option<u64>,
    pub max_lifetime_ms: Option<u64>,
    pub acquire_timeout_ms: Option<u64>,
    pub health_check_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawTls {
    pub enabled: Option<bool>,
    pub verify: Option<bool>,
    #[serde(alias = "ca_file")]
    pub ca_cert_path: Option<String>,
    pub min_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_auth: Option<String>,
    /// Our extension: SHA-256 pins of the server's SubjectPublicKeyInfo (base64 or hex).
    pub pinned_spki_sha256: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawGatewayPool {
    pub endpoints: Option<Vec<RawEndpoint>>,
    pub default_namespace: Option<String>,
    pub load_balancer: Option<RawLoadBalancer>,
    pub service_discovery: Option<RawServiceDiscovery>,
    pub circuit_breaker: Option<RawBreaker>,
    pub namespace_routing: Option<RawNamespaceRouting>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawLoadBalancer {
    pub strategy: Option<String>,
    pub health_check_path: Option<String>,
    pub failover_timeout: Option<ConfigDuration>,
    pub retry_count: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawServiceDiscovery {
    pub enabled: Option<bool>,
    pub refresh_interval: Option<ConfigDuration>,
    pub health_check_interval: Option<ConfigDuration>,
    pub unhealthy_threshold: Option<i64>,
    pub healthy_threshold: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawBreaker {
    pub enabled: Option<bool>,
    pub failure_threshold: Option<i64>,
    pub recovery_timeout: Option<ConfigDuration>,
    pub success_threshold: Option<i64>,
    pub timeout_duration: Option<ConfigDuration>,
    pub monitoring_window: Option<ConfigDuration>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawNamespaceRouting {
    pub enabled: Option<bool>,
    pub rules: Option<Vec<RawNamespaceRule>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawNamespaceRule {
    pub pattern: Option<String>,
    pub tags: Option<Vec<String>>,
    pub priority: Option<i64>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawDirect {
    pub enabled: Option<bool>,
    pub default_timeout: Option<ConfigDuration>,
    pub max_connections: Option<i64>,
    pub health_check: Option<RawHealthCheck>,
    pub auto_detection: Option<RawAutoDetection>,
    pub fallback: Opaque,
    pub connection_pool: Option<RawDirectPool>,
    pub adaptive_timeout: Opaque,
    pub adaptive_retry: Opaque,
    pub timeout_tuning: Opaque,
    pub stdio: Option<RawDirectStdio>,
    pub websocket: Option<RawDirectWebSocket>,
    pub http: Option<RawDirectHttp>,
    pub sse: Option<RawDirectSse>,
    pub observability: Opaque,
    pub memory_optimization: Option<RawMemoryOptimization>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawHealthCheck {
    pub enabled: Option<bool>,
    pub interval: Option<ConfigDuration>,
    pub timeout: Option<ConfigDuration>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawAutoDetection {
    pub enabled: Option<bool>,
    pub timeout: Option<ConfigDuration>,
    pub preferred_order: Option<Vec<String>>,
    pub cache_results: Option<bool>,
    pub cache_ttl: Option<ConfigDuration>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawDirectPool {
    pub max_idle_connections: Option<i64>,
    pub max_active_connections: Option<i64>,
    pub connection_ttl: Option<ConfigDuration>,
    pub idle_timeout: Option<ConfigDuration>,
    pub health_check_interval: Option<ConfigDuration>,
    pub enable_connection_reuse: Option<bool>,
    pub cleanup_interval: Option<ConfigDuration>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawDirectStdio {
    pub default_working_dir: Option<String>,
    pub default_env: Option<BTreeMap<String, String>>,
    pub process_timeout: Option<ConfigDuration>,
    pub max_buffer_size: Option<i64>,
    pub performance: Opaque,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawDirectWebSocket {
    pub handshake_timeout: Option<ConfigDuration>,
    pub ping_interval: Option<ConfigDuration>,
    pub pong_timeout: Option<ConfigDuration>,
    pub max_message_size: Option<i64>,
    pub default_headers: Option<BTreeMap<String, String>>,
    pub performance: Opaque,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawDirectHttp {
    pub request_timeout: Option<ConfigDuration>,
    pub max_idle_conns: Option<i64>,
    pub default_headers: Option<BTreeMap<String, String>>,
    pub follow_redirects: Option<bool>,
    pub performance: Opaque,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawDirectSse {
    pub stream_timeout: Option<ConfigDuration>,
    pub request_timeout: Option<ConfigDuration>,
    pub default_headers: Option<BTreeMap<String, String>>,
    pub buffer_size: Option<i64>,
    pub performance: Opaque,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawMemoryOptimization {
    pub enable_object_pooling: Option<bool>,
    pub buffer_pool: Opaque,
    pub json_pool: Opaque,
    pub gc_config: Option<RawGcConfig>,
    pub memory_monitoring: Opaque,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawGcConfig {
    pub enabled: Option<bool>,
    pub gc_percent: Option<i64>,
    pub memory_limit_bytes: Option<u64>,
    pub force_gc_interval: Option<ConfigDuration>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawLocal {
    pub read_buffer_size: Option<u64>,
    pub write_buffer_size: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub max_concurrent_requests: Option<u64>,
    pub max_queued_requests: Option<u64>,
    /// Ours: the largest message in either direction, in bytes.
    pub max_message_size: Option<u64>,
    /// Ours: how long shutdown waits for requests, and then for the server to exit.
    pub shutdown_grace_ms: Option<u64>,
    pub rate_limit: Option<RawRateLimit>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawRateLimit {
    pub enabled: Option<bool>,
    pub provider: Option<String>,
    #[serde(alias = "requests_per_sec")]
    pub requests_per_second: Option<f64>,
    pub burst: Option<i64>,
    /// Go's unit is whole seconds (`60`); a Go duration (`1m`) works too.
    pub window_size: Option<ConfigSeconds>,
    /// Ours: how long a request may wait for a token before it is refused.
    pub max_wait_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawLogging {
    pub level: Option<String>,
    pub format: Option<String>,
    pub output: Option<String>,
    pub include_caller: Option<bool>,
    pub sampling: Option<RawSampling>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawSampling {
    pub enabled: Option<bool>,
    pub initial: Option<i64>,
    pub thereafter: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
    pub endpoint: Option<String>,
    pub path: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawTracing {
    pub enabled: Option<bool>,
    pub service_name: Option<String>,
    pub service_version: Option<String>,
    pub environment: Option<String>,
    pub sampler_type: Option<String>,
    pub sampler_param: Option<f64>,
    pub exporter_type: Option<String>,
    pub otlp_endpoint: Option<String>,
    pub otlp_insecure: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawAdvanced {
    pub compression: Option<RawCompression>,
    pub circuit_breaker: Option<RawAdvancedBreaker>,
    pub deduplication: Option<RawDeduplication>,
    pub debug: Option<RawDebug>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawCompression {
    pub enabled: Option<bool>,
    pub algorithm: Option<String>,
    pub level: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawAdvancedBreaker {
    pub failure_threshold: Option<i64>,
    pub success_threshold: Option<i64>,
    pub timeout_seconds: Option<i64>,
    pub max_requests: Option<i64>,
    pub interval_seconds: Option<i64>,
    pub success_ratio: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawDeduplication {
    pub enabled: Option<bool>,
    pub cache_size: Option<i64>,
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawDebug {
    pub log_frames: Option<bool>,
    pub save_failures: Option<bool>,
    pub failure_dir: Option<String>,
    pub enable_pprof: Option<bool>,
    pub pprof_port: Option<i64>,
}

impl RawConfig {
    /// Every key path the schema knows (`servers[].name`, `gateway.tls.verify`, …), used to
    /// suggest the nearest valid name for an unknown key.
    pub fn known_paths() -> Vec<String> {
        let sample = RawConfig {
            servers: Some(vec![RawServer {
                reconnect: Some(RawReconnect::default()),
                rate_limit: Some(RawRateLimit::default()),
                circuit_breaker: Some(RawBreaker::default()),
                auth: Some(RawAuth::default()),
                tls: Some(RawTls::default()),
                tools: Some(RawFilter::default()),
                prompts: Some(RawFilter::default()),
                resources: Some(RawFilter::default()),
                ..RawServer::default()
            }]),
            aggregate: Some(RawAggregate::default()),
            gateway: Some(RawGateway {
                endpoints: Some(vec![RawEndpoint {
                    auth: Some(RawAuth::default()),
                    connection: Some(full_connection()),
                    tls: Some(RawTls::default()),
                    ..RawEndpoint::default()
                }]),
                auth: Some(RawAuth::default()),
                connection: Some(full_connection()),
                tls: Some(RawTls::default()),
                ..RawGateway::default()
            }),
            gateway_pool: Some(RawGatewayPool {
                endpoints: Some(vec![RawEndpoint {
                    auth: Some(RawAuth::default()),
                    connection: Some(full_connection()),
                    tls: Some(RawTls::default()),
                    ..RawEndpoint::default()
                }]),
                load_balancer: Some(RawLoadBalancer::default()),
                service_discovery: Some(RawServiceDiscovery::default()),
                circuit_breaker: Some(RawBreaker::default()),
                namespace_routing: Some(RawNamespaceRouting {
                    rules: Some(vec![RawNamespaceRule::default()]),
                    ..RawNamespaceRouting::default()
                }),
                ..RawGatewayPool::default()
            }),
            direct_clients: Some(RawDirect {
                health_check: Some(RawHealthCheck::default()),
                auto_detection: Some(RawAutoDetection::default()),
                connection_pool: Some(RawDirectPool::default()),
                stdio: Some(RawDirectStdio::default()),
                websocket: Some(RawDirectWebSocket::default()),
                http: Some(RawDirectHttp::default()),
                sse: Some(RawDirectSse::default()),
                memory_optimization: Some(RawMemoryOptimization {
                    gc_config: Some(RawGcConfig::default()),
                    ..RawMemoryOptimization::default()
                }),
                ..RawDirect::default()
            }),
            local: Some(RawLocal {
                rate_limit: Some(RawRateLimit::default()),
                ..RawLocal::default()
            }),
            logging: Some(RawLogging {
                sampling: Some(RawSampling::default()),
                ..RawLogging::default()
            }),
            metrics: Some(RawMetrics::default()),
            tracing: Some(RawTracing::default()),
            advanced: Some(RawAdvanced {
                compression: Some(RawCompression::default()),
                circuit_breaker: Some(RawAdvancedBreaker::default()),
                deduplication: Some(RawDeduplication::default()),
                debug: Some(RawDebug::default()),
            }),
            ..RawConfig::default()
        };
        let mut out = Vec::new();
        if let Ok(v) = serde_yaml_ng::to_value(&sample) {
            walk(&v, String::new(), &mut out);
        }
        out
    }
}

fn full_connection() -> RawConnection {
    RawConnection {
        reconnect: Some(RawReconnect::default()),
        pool: Some(RawPool::default()),
        ..RawConnection::default()
    }
}

fn walk(v: &Value, prefix: String, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                if let Some(k) = k.as_str() {
                    let path = if prefix.is_empty() {
                        k.to_owned()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.push(path.clone());
                    walk(child, path, out);
                }
            }
        }
        Value::Sequence(s) => {
            if let Some(first) = s.first() {
                walk(first, format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}
